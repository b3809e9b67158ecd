//! The `Custom::` resources of the platform's templates (`cfn/*.yaml`), with their intrinsic
//! functions resolved, so tests and the demo send exactly the properties the stacks send.
//!
//! CloudFormation stringifies every property value, and so does [`resolve`]: numbers and booleans
//! become strings. Intrinsic functions (`!Ref`, `!Sub`, `!GetAtt`, `Fn::ImportValue`, `!Join`,
//! `!If`, ...), in short or long form, are handed to a [`Resolver`].
//!
//! [`TemplateResolver`] evaluates the template's `Conditions` (`Fn::Equals`, `Fn::Not`,
//! `Fn::And`, `Fn::Or`, `Condition`) with the stack's parameters, takes the matching branch of
//! `Fn::If`, and, as CloudFormation does, drops a property or list item whose value is
//! `AWS::NoValue` ([`resolve`] removes what resolves to [`is_no_value`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// One template.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    pub body: Yaml,
}

/// A `Custom::` resource in a template.
#[derive(Debug, Clone)]
pub struct CustomResource {
    /// The template's file name, e.g. `service.yaml`.
    pub file: String,
    pub logical_id: String,
    pub resource_type: String,
    /// The resource's `Condition` (the stack has the resource only when it holds), if any.
    pub condition: Option<String>,
    /// `Properties` as written, intrinsics unresolved.
    pub properties: Yaml,
}

impl Template {
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let body = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        Self {
            path: path.to_path_buf(),
            body,
        }
    }

    /// Every `cfn/*.yaml` of the repository, sorted by name.
    pub fn all() -> Vec<Self> {
        let dir = crate::services::repo_root().join("cfn");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Self::load(p)).collect()
    }

    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A parameter's `Default`, as CloudFormation would pass it (a string).
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let default = self.body.get("Parameters")?.get(name)?.get("Default")?;
        Some(scalar_string(default).unwrap_or_else(|| {
            default
                .as_sequence()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(scalar_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        }))
    }

    /// The parameters with `AllowedValues` that the template's `Conditions` refer to, with those
    /// values: each value is a variant of the stack (e.g. `AdminCredentialSource`).
    pub fn condition_parameters(&self) -> Vec<(String, Vec<String>)> {
        let mut referenced = Vec::new();
        if let Some(conditions) = self.body.get("Conditions") {
            collect_refs(conditions, &mut referenced);
        }
        let Some(parameters) = self.body.get("Parameters").and_then(Yaml::as_mapping) else {
            return Vec::new();
        };
        parameters
            .iter()
            .filter_map(|(name, parameter)| {
                let name = name.as_str()?;
                let values = parameter.get("AllowedValues")?.as_sequence()?;
                referenced.iter().any(|r| r == name).then(|| {
                    (
                        name.to_string(),
                        values.iter().filter_map(scalar_string).collect(),
                    )
                })
            })
            .collect()
    }

    pub fn custom_resources(&self) -> Vec<CustomResource> {
        let Some(resources) = self.body.get("Resources").and_then(Yaml::as_mapping) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|(id, resource)| {
                let resource_type = resource.get("Type")?.as_str()?;
                resource_type.starts_with("Custom::").then(|| CustomResource {
                    file: self.file_name(),
                    logical_id: id.as_str().unwrap_or_default().to_string(),
                    resource_type: resource_type.to_string(),
                    condition: resource
                        .get("Condition")
                        .and_then(Yaml::as_str)
                        .map(str::to_string),
                    properties: resource.get("Properties").cloned().unwrap_or(Yaml::Null),
                })
            })
            .collect()
    }
}

/// Gives values to intrinsic functions. `name` is the long form (`Ref`, `Fn::Sub`,
/// `Fn::GetAtt`, ...); `argument` is the function's argument, unresolved.
pub trait Resolver {
    fn resolve(&self, name: &str, argument: &Yaml) -> Json;
}

/// Converts a property value to the JSON CloudFormation would send, resolving intrinsics.
pub fn resolve(value: &Yaml, resolver: &dyn Resolver) -> Json {
    if let Some((name, argument)) = intrinsic(value) {
        return resolver.resolve(&name, argument);
    }
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::String(b.to_string()),
        Yaml::Number(n) => Json::String(n.to_string()),
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .map(|v| resolve(v, resolver))
                .filter(|v| !is_no_value(v))
                .collect(),
        ),
        Yaml::Mapping(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (scalar_string(k).unwrap_or_default(), resolve(v, resolver)))
                .filter(|(_, v)| !is_no_value(v))
                .collect(),
        ),
        Yaml::Tagged(tagged) => resolve(&tagged.value, resolver),
    }
}

/// `Some((long name, argument))` when the value is an intrinsic function call.
pub fn intrinsic(value: &Yaml) -> Option<(String, &Yaml)> {
    match value {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let short = tag.trim_start_matches('!');
            let name = match short {
                "Ref" | "Condition" => short.to_string(),
                other => format!("Fn::{other}"),
            };
            Some((name, &tagged.value))
        }
        Yaml::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key.starts_with("Fn::") || key == "Condition")
                .then(|| (key.to_string(), argument))
        }
        _ => None,
    }
}

/// The names every `Ref` under `value` refers to.
fn collect_refs(value: &Yaml, into: &mut Vec<String>) {
    if let Some((name, argument)) = intrinsic(value)
        && name == "Ref"
    {
        into.extend(argument.as_str().map(str::to_string));
        return;
    }
    match value {
        Yaml::Sequence(items) => items.iter().for_each(|v| collect_refs(v, into)),
        Yaml::Mapping(map) => map.values().for_each(|v| collect_refs(v, into)),
        Yaml::Tagged(tagged) => collect_refs(&tagged.value, into),
        _ => {}
    }
}

/// What `AWS::NoValue` resolves to: its own unresolved form, which [`resolve`] drops from
/// mappings and sequences (so a property set to it is absent, as in CloudFormation).
pub fn no_value() -> Json {
    serde_json::json!({"Ref": "AWS::NoValue"})
}

/// Whether a resolved value is `AWS::NoValue` (see [`no_value`]).
pub fn is_no_value(value: &Json) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.get("Ref").and_then(Json::as_str) == Some("AWS::NoValue"))
}

fn scalar_string(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Substitutes `${Name}` in a `Fn::Sub` string, looking names up with `lookup` (`${!Literal}`
/// stays literal).
pub fn substitute(template: &str, lookup: &mut dyn FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else {
            out.push_str(&lookup(name));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Resolves intrinsics against one template: `Ref` to a parameter gives its `Default` (or the
/// value in `parameters`), pseudo parameters get local values, `Fn::Sub`, `Fn::Join`, `Fn::If`
/// and the condition functions are evaluated, and everything else (`Fn::GetAtt`, `Fn::ImportValue`, `Ref` to a resource) is asked
/// of `lookup`, with the intrinsic's long name and its resolved argument as a string
/// (`Key.Arn`, `platform-support-AdminSecretServiceToken`, `Key`).
pub type Lookup<'a> = Box<dyn Fn(&str, &str) -> Json + 'a>;

pub struct TemplateResolver<'a> {
    pub template: &'a Template,
    pub stack_name: String,
    pub parameters: BTreeMap<String, String>,
    pub lookup: Lookup<'a>,
}

impl TemplateResolver<'_> {
    fn reference(&self, name: &str) -> Json {
        match name {
            "AWS::StackName" => return Json::String(self.stack_name.clone()),
            "AWS::Region" => return Json::String("us-east-1".into()),
            "AWS::AccountId" => return Json::String("123456789012".into()),
            "AWS::Partition" => return Json::String("aws".into()),
            "AWS::URLSuffix" => return Json::String("amazonaws.com".into()),
            "AWS::NoValue" => return no_value(),
            "AWS::StackId" => {
                return Json::String(format!(
                    "arn:aws:cloudformation:us-east-1:123456789012:stack/{}/local",
                    self.stack_name
                ));
            }
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Json::String(value.clone());
        }
        if let Some(default) = self.template.parameter_default(name) {
            return Json::String(default);
        }
        (self.lookup)("Ref", name)
    }

    /// Whether the template's condition `name` holds for this stack's parameters.
    ///
    /// Panics on a condition the template does not define (CloudFormation rejects such a
    /// template; here it would otherwise quietly pick a branch).
    pub fn condition(&self, name: &str) -> bool {
        let definition = self
            .template
            .body
            .get("Conditions")
            .and_then(|c| c.get(name))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no condition {name:?} in Conditions",
                    self.template.file_name()
                )
            });
        self.holds(definition)
    }

    /// Whether the stack has the resource (its `Condition` holds, or it has none).
    pub fn creates(&self, resource: &CustomResource) -> bool {
        resource.condition.as_deref().is_none_or(|c| self.condition(c))
    }

    /// Evaluates a condition function (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`,
    /// `Condition`).
    fn holds(&self, value: &Yaml) -> bool {
        let Some((name, argument)) = intrinsic(value) else {
            panic!(
                "{}: not a condition function: {value:?}",
                self.template.file_name()
            );
        };
        self.evaluate(&name, argument)
    }

    fn evaluate(&self, name: &str, argument: &Yaml) -> bool {
        let items = || argument.as_sequence().cloned().unwrap_or_default();
        match name {
            "Condition" => self.condition(argument.as_str().unwrap_or_default()),
            "Fn::Equals" => {
                let items = items();
                let [a, b] = items.as_slice() else {
                    panic!("{}: Fn::Equals takes two values", self.template.file_name());
                };
                self.text(a) == self.text(b)
            }
            "Fn::Not" => !items().first().is_some_and(|c| self.holds(c)),
            "Fn::And" => items().iter().all(|c| self.holds(c)),
            "Fn::Or" => items().iter().any(|c| self.holds(c)),
            other => panic!(
                "{}: {other} is not a condition function",
                self.template.file_name()
            ),
        }
    }

    fn text(&self, value: &Yaml) -> String {
        match resolve(value, self) {
            Json::String(s) => s,
            other => other.to_string(),
        }
    }
}

impl Resolver for TemplateResolver<'_> {
    fn resolve(&self, name: &str, argument: &Yaml) -> Json {
        match name {
            "Ref" => self.reference(argument.as_str().unwrap_or_default()),
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Yaml::Sequence(items) if !items.is_empty() => (
                        items[0].as_str().unwrap_or_default().to_string(),
                        items.get(1).and_then(Yaml::as_mapping).cloned(),
                    ),
                    other => (other.as_str().unwrap_or_default().to_string(), None),
                };
                let mut lookup = |var: &str| -> String {
                    if let Some(value) = variables.as_ref().and_then(|v| v.get(var)) {
                        return self.text(value);
                    }
                    if let Some((resource, _)) = var.split_once('.')
                        && !resource.starts_with("AWS::")
                    {
                        return match (self.lookup)("Fn::GetAtt", var) {
                            Json::String(s) => s,
                            other => other.to_string(),
                        };
                    }
                    match self.reference(var) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    }
                };
                Json::String(substitute(&text, &mut lookup))
            }
            "Fn::Join" => {
                let items = argument.as_sequence().cloned().unwrap_or_default();
                let separator = items
                    .first()
                    .and_then(Yaml::as_str)
                    .unwrap_or_default()
                    .to_string();
                let parts = match items.get(1).map(|v| resolve(v, self)) {
                    Some(Json::Array(parts)) => parts,
                    Some(Json::String(s)) => s.split(',').map(|p| Json::String(p.into())).collect(),
                    _ => Vec::new(),
                };
                let parts: Vec<String> = parts
                    .into_iter()
                    .map(|p| p.as_str().map(str::to_string).unwrap_or_else(|| p.to_string()))
                    .collect();
                Json::String(parts.join(&separator))
            }
            "Fn::GetAtt" => {
                let target = match argument {
                    Yaml::Sequence(items) => items
                        .iter()
                        .filter_map(scalar_string)
                        .collect::<Vec<_>>()
                        .join("."),
                    other => scalar_string(other).unwrap_or_default(),
                };
                (self.lookup)("Fn::GetAtt", &target)
            }
            "Fn::ImportValue" => {
                let export = self.text(argument);
                (self.lookup)("Fn::ImportValue", &export)
            }
            // Only the branch taken is resolved: the other's imports and attributes are not
            // asked of `lookup`.
            "Fn::If" => {
                let items = argument.as_sequence().cloned().unwrap_or_default();
                let [condition, then, otherwise] = items.as_slice() else {
                    panic!(
                        "{}: Fn::If takes [condition, value if true, value if false]",
                        self.template.file_name()
                    );
                };
                let branch = if self.condition(condition.as_str().unwrap_or_default()) {
                    then
                } else {
                    otherwise
                };
                resolve(branch, self)
            }
            "Condition" | "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                Json::String(self.evaluate(name, argument).to_string())
            }
            other => {
                let argument = self.text(argument);
                (self.lookup)(other, &argument)
            }
        }
    }
}

/// What the demo's driver sends a custom resource: `logical_id`'s properties in `cfn/{file}`,
/// resolved for `stack` with `parameters` (the rest take their `Default`); `Fn::GetAtt`,
/// `Fn::ImportValue` and `Ref` to a resource are asked of `lookup` (`"Fn::GetAtt"`, `"Key.Arn"`).
/// `ServiceToken` and `ServiceTimeout` are left out: they are CloudFormation's own.
pub fn driver_properties(
    file: &str,
    logical_id: &str,
    stack: &str,
    parameters: &[(&str, &str)],
    lookup: &dyn Fn(&str, &str) -> Json,
) -> Json {
    let template = Template::all()
        .into_iter()
        .find(|t| t.file_name() == file)
        .unwrap_or_else(|| panic!("cfn/{file} is missing"));
    let resource = template
        .custom_resources()
        .into_iter()
        .find(|r| r.logical_id == logical_id)
        .unwrap_or_else(|| panic!("cfn/{file} has no custom resource {logical_id}"));
    let resolver = TemplateResolver {
        template: &template,
        stack_name: stack.to_string(),
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        lookup: Box::new(lookup),
    };
    let mut written = resource.properties.clone();
    if let Some(map) = written.as_mapping_mut() {
        map.remove("ServiceToken");
        map.remove("ServiceTimeout");
    }
    resolve(&written, &resolver)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn repo_template(file: &str) -> Template {
        Template::all()
            .into_iter()
            .find(|t| t.file_name() == file)
            .unwrap_or_else(|| panic!("cfn/{file} is missing"))
    }

    /// The resource's properties with `parameters`, every lookup answered `<function argument>`;
    /// also what was asked of the lookup.
    fn resolved(
        template: &Template,
        logical_id: &str,
        parameters: &[(&str, &str)],
    ) -> (bool, Json, Vec<String>) {
        let asked = RefCell::new(Vec::new());
        let resolver = TemplateResolver {
            template,
            stack_name: "s".into(),
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lookup: Box::new(|function, argument| {
                let key = format!("{function} {argument}");
                asked.borrow_mut().push(key.clone());
                Json::String(format!("<{key}>"))
            }),
        };
        let resource = template
            .custom_resources()
            .into_iter()
            .find(|r| r.logical_id == logical_id)
            .unwrap_or_else(|| panic!("no custom resource {logical_id}"));
        let created = resolver.creates(&resource);
        let properties = resolve(&resource.properties, &resolver);
        drop(resolver);
        (created, properties, asked.into_inner())
    }

    #[test]
    fn service_database_of_an_admin_secret_cluster_names_the_ssm_parameter() {
        let template = repo_template("service.yaml");
        let (created, p, _) = resolved(&template, "ServiceDatabase", &[]);
        assert!(created);
        assert_eq!(
            p["AdminUsername"],
            "<Fn::ImportValue platform-rds-cluster-AdminUsername>"
        );
        assert_eq!(
            p["AdminPasswordParameterName"],
            "<Fn::ImportValue platform-rds-cluster-AdminCredential>"
        );
        assert!(p.get("AdminSecretArn").is_none(), "{p:#}");
    }

    #[test]
    fn service_database_of_an_rds_managed_cluster_names_only_the_secret() {
        let template = repo_template("service.yaml");
        let (created, p, asked) = resolved(
            &template,
            "ServiceDatabase",
            &[("AdminCredentialSource", "RdsManaged")],
        );
        assert!(created);
        assert_eq!(
            p["AdminSecretArn"],
            "<Fn::ImportValue platform-rds-cluster-AdminCredential>"
        );
        for absent in ["AdminUsername", "AdminPasswordParameterName"] {
            assert!(p.get(absent).is_none(), "{absent} in {p:#}");
        }
        assert!(
            !asked.iter().any(|k| k.ends_with("-AdminUsername")),
            "the untaken branch was resolved: {asked:?}"
        );
        // Everything else is the same in both variants.
        let (_, default, _) = resolved(&template, "ServiceDatabase", &[]);
        let strip = |mut v: Json| {
            for key in ["AdminUsername", "AdminPasswordParameterName", "AdminSecretArn"] {
                v.as_object_mut().unwrap().remove(key);
            }
            v
        };
        assert_eq!(strip(p), strip(default));
    }

    #[test]
    fn the_admin_secret_exists_only_in_the_admin_secret_variant() {
        let template = repo_template("rds-cluster.yaml");
        let (created, p, _) = resolved(&template, "AdminSecret", &[]);
        assert!(created);
        assert_eq!(
            p["ParameterName"]
                .as_str()
                .map(|s| s.ends_with("/s/admin-password")),
            Some(true)
        );
        let (created, _, _) = resolved(
            &template,
            "AdminSecret",
            &[("AdminCredentialSource", "RdsManaged")],
        );
        assert!(!created);
        assert_eq!(
            template.condition_parameters(),
            vec![
                (
                    "AdminCredentialSource".to_string(),
                    vec!["AdminSecret".to_string(), "RdsManaged".to_string()]
                ),
                (
                    "CreateReaderInstance".to_string(),
                    vec!["true".to_string(), "false".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn conditions_if_and_no_value_evaluate_as_cloudformation_does() {
        let template = Template {
            path: "t.yaml".into(),
            body: serde_yaml::from_str(
                r#"
Parameters:
  Mode: { Type: String, Default: a, AllowedValues: [a, b] }
Conditions:
  IsA: !Equals [!Ref Mode, a]
  IsB: !Not [!Condition IsA]
  Both: !And [!Condition IsA, !Condition IsB]
  Either: { "Fn::Or": [{ Condition: IsA }, { Condition: IsB }] }
Resources:
  R:
    Type: Custom::Thing
    Condition: Either
    Properties:
      OnlyA: !If [IsA, yes-a, !Ref AWS::NoValue]
      OnlyB: { "Fn::If": [IsB, yes-b, { Ref: AWS::NoValue }] }
      Never: !If [Both, x, !Ref AWS::NoValue]
      List: [one, !If [IsB, two, !Ref AWS::NoValue], three]
      Nested: !If [IsA, { Key: !Ref Mode }, !Ref AWS::NoValue]
"#,
            )
            .unwrap(),
        };
        let (created, a, _) = resolved(&template, "R", &[]);
        assert!(created);
        assert_eq!(
            a,
            serde_json::json!({"OnlyA": "yes-a", "List": ["one", "three"], "Nested": {"Key": "a"}})
        );
        let (created, b, _) = resolved(&template, "R", &[("Mode", "b")]);
        assert!(created);
        assert_eq!(
            b,
            serde_json::json!({"OnlyB": "yes-b", "List": ["one", "two", "three"]})
        );
        assert_eq!(
            template.condition_parameters(),
            vec![("Mode".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
    }

    #[test]
    fn substitute_handles_variables_and_literals() {
        let mut lookup = |name: &str| format!("<{name}>");
        assert_eq!(
            substitute("a${X}b${!Y}c${Z.Arn}", &mut lookup),
            "a<X>b${Y}c<Z.Arn>"
        );
    }
}
