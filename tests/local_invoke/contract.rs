//! The templates in `cfn/` and the handlers share one contract: every `Custom::` resource's
//! properties, with intrinsic functions replaced by placeholders of the right shape, parse with
//! the handler's own property type, through the same code the Lambda runs. That holds for the
//! parameters' defaults and for every variant a template offers: each value of a parameter with
//! `AllowedValues` that its `Conditions` use (e.g. rds-cluster's and service's
//! `AdminCredentialSource`), where `Fn::If` may give a resource other properties.

use std::collections::BTreeMap;

use libtest_mimic::{Failed, Trial};
use local_invoke::templates::{CustomResource, Template, TemplateResolver, resolve};
use serde_json::Value;

/// Placeholder for a value only AWS knows (an import, an attribute, a resource id). A number, so
/// it also fits numeric properties: every value reaches a handler as a string anyway.
const PLACEHOLDER: &str = "1";

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        sync contract;
        every_custom_resource_parses_with_its_handler_types,
        every_variant_of_every_custom_resource_parses_with_its_handler_types,
        unknown_and_missing_properties_are_named,
    ]
}

fn every_custom_resource_parses_with_its_handler_types() -> Result<(), Failed> {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for template in Template::all() {
        for resource in template.custom_resources() {
            match check(&template, &resource, &BTreeMap::new()) {
                Ok(true) => checked.push(format!("{}:{}", resource.file, resource.logical_id)),
                Ok(false) => {}
                Err(problem) => problems.push(problem),
            }
        }
    }
    for expected in [
        "Custom::AdminSecret",
        "Custom::ServiceDatabase",
        "Custom::ListenerRulePriority",
    ] {
        let used = Template::all()
            .iter()
            .flat_map(Template::custom_resources)
            .any(|r| r.resource_type == expected);
        if !used {
            problems.push(format!("no template uses {expected}"));
        }
    }
    verdict("", &checked, &problems)
}

fn every_variant_of_every_custom_resource_parses_with_its_handler_types() -> Result<(), Failed> {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for template in Template::all() {
        for (parameter, values) in template.condition_parameters() {
            let default = template.parameter_default(&parameter);
            for value in values.into_iter().filter(|v| Some(v) != default.as_ref()) {
                let parameters = BTreeMap::from([(parameter.clone(), value.clone())]);
                for resource in template.custom_resources() {
                    match check(&template, &resource, &parameters) {
                        Ok(true) => checked.push(format!(
                            "{}:{} ({parameter}={value})",
                            resource.file, resource.logical_id
                        )),
                        Ok(false) => {}
                        Err(problem) => problems.push(format!("{parameter}={value}: {problem}")),
                    }
                }
            }
        }
    }
    if !checked
        .iter()
        .any(|c| c.contains("AdminCredentialSource=RdsManaged"))
    {
        problems.push("no custom resource checked with AdminCredentialSource=RdsManaged".into());
    }
    verdict(" in other variants", &checked, &problems)
}

/// Passes, printing what was `checked`, when there are no `problems`; else fails listing them.
fn verdict(variants: &str, checked: &[String], problems: &[String]) -> Result<(), Failed> {
    if problems.is_empty() {
        eprintln!(
            "contract: {} custom resources checked{variants}: {}",
            checked.len(),
            checked.join(", ")
        );
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn unknown_and_missing_properties_are_named() -> Result<(), Failed> {
    let template: Template = Template {
        path: "bad.yaml".into(),
        body: serde_yaml::from_str(
            "Resources:\n  Priority:\n    Type: Custom::ListenerRulePriority\n    Properties:\n      ServiceToken: x\n      ServiceTimeout: 300\n      ListenerArn: !ImportValue listener\n      Colour: red\n  Secret:\n    Type: Custom::AdminSecret\n    Properties:\n      ServiceToken: x\n      ServiceTimeout: 300\n      KeyId: !Ref Key\n  Mystery:\n    Type: Custom::Mystery\n    Properties:\n      ServiceToken: x\n      ServiceTimeout: 300\n",
        )
        .unwrap(),
    };
    let problems: Vec<String> = template
        .custom_resources()
        .iter()
        .filter_map(|r| check(&template, r, &BTreeMap::new()).err())
        .collect();
    let all = problems.join("\n");
    for expected in [
        "bad.yaml: Priority (Custom::ListenerRulePriority): unknown property `Colour`",
        "bad.yaml: Secret (Custom::AdminSecret): missing required property `ParameterName`",
        "bad.yaml: Mystery (Custom::Mystery): no handler",
    ] {
        if !all.contains(expected) {
            return Err(format!("expected {expected:?} in:\n{all}").into());
        }
    }
    Ok(())
}

/// Resolves the resource's properties with placeholders and the given parameters (the rest at
/// their defaults) and parses them with its handler's type. `Ok(false)`: the stack has no such
/// resource with these parameters (its `Condition` is false).
fn check(
    template: &Template,
    resource: &CustomResource,
    parameters: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let resolver = TemplateResolver {
        template,
        stack_name: "contract".into(),
        parameters: parameters.clone(),
        lookup: Box::new(|_, _| Value::String(PLACEHOLDER.into())),
    };
    if !resolver.creates(resource) {
        return Ok(false);
    }
    let mut properties = resolve(&resource.properties, &resolver);
    let where_ = format!(
        "{}: {} ({})",
        resource.file, resource.logical_id, resource.resource_type
    );
    let map = properties
        .as_object_mut()
        .ok_or_else(|| format!("{where_}: Properties is not a mapping"))?;
    if !map.contains_key("ServiceTimeout") {
        return Err(format!(
            "{where_}: no ServiceTimeout (CloudFormation would wait an hour)"
        ));
    }
    map.remove("ServiceToken");
    map.remove("ServiceTimeout");
    use cfn_custom_resource::parse_property_map as parse;
    let parsed = match resource.resource_type.as_str() {
        "Custom::AdminSecret" => parse::<admin_secret::Properties>(properties).map(drop),
        "Custom::ServiceDatabase" => parse::<service_database::Properties>(properties).map(drop),
        "Custom::ListenerRulePriority" => parse::<listener_rule_priority::Properties>(properties).map(drop),
        other => Err(format!("no handler in this repository serves {other}")),
    };
    parsed
        .map(|()| true)
        .map_err(|problem| format!("{where_}: {problem}"))
}
