//! The `Custom::` resources of the platform's templates (`cfn/*.yaml`), with their intrinsic
//! functions resolved, so tests and the demo send exactly the properties the stacks send.
//!
//! CloudFormation stringifies every property value, and so does [`resolve`]: numbers and booleans
//! become strings. Intrinsic functions (`!Ref`, `!Sub`, `!GetAtt`, `Fn::ImportValue`, `!Join`,
//! `!If`, ...), in short or long form, are handed to a [`Resolver`].

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
        Yaml::Sequence(items) => Json::Array(items.iter().map(|v| resolve(v, resolver)).collect()),
        Yaml::Mapping(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (scalar_string(k).unwrap_or_default(), resolve(v, resolver)))
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
/// value in `parameters`), pseudo parameters get local values, `Fn::Sub` and `Fn::Join` are
/// evaluated, and everything else (`Fn::GetAtt`, `Fn::ImportValue`, `Ref` to a resource) is asked
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
    use super::*;

    #[test]
    fn substitute_handles_variables_and_literals() {
        let mut lookup = |name: &str| format!("<{name}>");
        assert_eq!(
            substitute("a${X}b${!Y}c${Z.Arn}", &mut lookup),
            "a<X>b${Y}c<Z.Arn>"
        );
    }
}
