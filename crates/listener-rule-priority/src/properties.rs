//! The `Custom::ListenerRulePriority` properties, their defaults and ELBv2's limits.

use std::ops::RangeInclusive;

use serde::Deserialize;

use crate::allocation::Priorities;
use crate::error::Error;

/// The lowest priority ELBv2 accepts.
pub const LOWEST_PRIORITY: u32 = 1;
/// The highest priority ELBv2 accepts.
pub const HIGHEST_PRIORITY: u32 = 50_000;
/// The most priorities one resource may claim.
pub const MAX_COUNT: u32 = 100;

/// The `Custom::ListenerRulePriority` properties, as CloudFormation sends them (see the crate
/// doc's table). [`Properties::validate`] turns them into the [`Validated`] values the handlers
/// act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Properties {
    /// `ListenerArn`: the ELBv2 listener whose rule priorities are handed out.
    pub listener_arn: String,
    /// `MinPriority`: the lowest priority to hand out (default [`LOWEST_PRIORITY`]).
    #[serde(default = "default_min", deserialize_with = "cfn_custom_resource::de::number")]
    pub min_priority: u32,
    /// `MaxPriority`: the highest priority to hand out (default [`HIGHEST_PRIORITY`]).
    #[serde(default = "default_max", deserialize_with = "cfn_custom_resource::de::number")]
    pub max_priority: u32,
    /// `Count`: how many priorities to claim (default 1, at most [`MAX_COUNT`]).
    #[serde(
        default = "default_count",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub count: u32,
}

/// The properties once checked: every value Create and Update act on. Delete acts on the
/// physical id alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// `ListenerArn`: a listener ARN.
    pub listener_arn: String,
    /// `MinPriority..=MaxPriority`: inside ELBv2's limits, not empty.
    pub range: RangeInclusive<u32>,
    /// `Count`: `1..=MAX_COUNT`, and no more than the range holds.
    pub count: usize,
}

fn default_min() -> u32 {
    LOWEST_PRIORITY
}

fn default_max() -> u32 {
    HIGHEST_PRIORITY
}

fn default_count() -> u32 {
    1
}

impl Properties {
    /// Checks the values against ELBv2's limits and each other and returns the values the
    /// handlers act on; the error names the property.
    pub fn validate(&self) -> Result<Validated, Error> {
        let arn = self.listener_arn.trim();
        let is_listener_arn = arn.starts_with("arn:")
            && arn.split(':').nth(2) == Some("elasticloadbalancing")
            && arn.split_once(":listener/").is_some_and(|(_, id)| !id.is_empty());
        if !is_listener_arn || arn != self.listener_arn {
            return Err(Error::property(
                "ListenerArn",
                format!(
                    "{:?} is not a listener ARN; expected arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<name>/<id>/<id>",
                    self.listener_arn
                ),
            ));
        }
        let limits = format!("{LOWEST_PRIORITY}..={HIGHEST_PRIORITY}");
        if !(LOWEST_PRIORITY..=HIGHEST_PRIORITY).contains(&self.min_priority) {
            return Err(Error::property(
                "MinPriority",
                format!("{} is outside {limits}", self.min_priority),
            ));
        }
        if !(LOWEST_PRIORITY..=HIGHEST_PRIORITY).contains(&self.max_priority) {
            return Err(Error::property(
                "MaxPriority",
                format!("{} is outside {limits}", self.max_priority),
            ));
        }
        if self.min_priority > self.max_priority {
            return Err(Error::property(
                "MaxPriority",
                format!("{} is below MinPriority {}", self.max_priority, self.min_priority),
            ));
        }
        let size = self.max_priority - self.min_priority + 1;
        if self.count < 1 || self.count > MAX_COUNT {
            return Err(Error::property(
                "Count",
                format!("{} is outside 1..={MAX_COUNT}", self.count),
            ));
        }
        if self.count > size {
            return Err(Error::property(
                "Count",
                format!(
                    "{} is more than the {size} priorities in MinPriority..MaxPriority {}..={}",
                    self.count, self.min_priority, self.max_priority
                ),
            ));
        }
        let count = usize::try_from(self.count)
            .map_err(|_| Error::property("Count", format!("{} is outside 1..={MAX_COUNT}", self.count)))?;
        Ok(Validated {
            listener_arn: self.listener_arn.clone(),
            range: self.min_priority..=self.max_priority,
            count,
        })
    }
}

impl Validated {
    /// Whether `priority` is inside `MinPriority..=MaxPriority`.
    pub(crate) fn contains(&self, priority: u32) -> bool {
        self.range.contains(&priority)
    }

    /// Whether `priorities` can answer these properties: `Count` of them, all in the range.
    pub(crate) fn fits(&self, priorities: &Priorities) -> bool {
        priorities.len() == self.count && priorities.iter().all(|p| self.contains(p))
    }

    /// `MinPriority`.
    pub(crate) fn min(&self) -> u32 {
        *self.range.start()
    }

    /// `MaxPriority`.
    pub(crate) fn max(&self) -> u32 {
        *self.range.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Allocation;

    const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/alb/50dc6c495c0c9188/f2f7dc8efc522ab2";

    fn parse(value: serde_json::Value) -> Result<Properties, String> {
        serde_json::from_value::<Properties>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_strings() {
        let p = parse(json!({"ListenerArn": ARN})).unwrap();
        assert_eq!((p.min_priority, p.max_priority, p.count), (1, 50_000, 1));
        p.validate().unwrap();
        let p =
            parse(json!({"ListenerArn": ARN, "MinPriority": "10", "MaxPriority": 20, "Count": "3"})).unwrap();
        assert_eq!((p.min_priority, p.max_priority, p.count), (10, 20, 3));
        p.validate().unwrap();
        assert!(
            parse(json!({"ListenerArn": ARN, "Priority": "1"}))
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse(json!({"MinPriority": "1"}))
                .unwrap_err()
                .contains("ListenerArn")
        );
    }

    #[test]
    fn validation_names_the_property() {
        let check = |v: serde_json::Value| parse(v).unwrap().validate().unwrap_err().to_string();
        assert!(check(json!({"ListenerArn": "arn:aws:s3:::bucket"})).starts_with("property `ListenerArn`"));
        assert!(check(json!({"ListenerArn": ARN, "MinPriority": "0"})).starts_with("property `MinPriority`"));
        assert!(
            check(json!({"ListenerArn": ARN, "MaxPriority": "50001"})).starts_with("property `MaxPriority`")
        );
        let e = check(json!({"ListenerArn": ARN, "MinPriority": "9", "MaxPriority": "8"}));
        assert!(
            e.starts_with("property `MaxPriority`") && e.contains("MinPriority 9"),
            "{e}"
        );
        assert!(check(json!({"ListenerArn": ARN, "Count": "0"})).starts_with("property `Count`"));
        assert!(check(json!({"ListenerArn": ARN, "Count": "101"})).starts_with("property `Count`"));
        let e = check(json!({"ListenerArn": ARN, "MinPriority": "1", "MaxPriority": "2", "Count": "3"}));
        assert!(e.starts_with("property `Count`") && e.contains("1..=2"), "{e}");
    }

    #[test]
    fn sample_events_parse_and_validate() {
        let events = [
            include_str!("../../../tests/events/listener-rule-priority-create.json"),
            include_str!("../../../tests/events/listener-rule-priority-update.json"),
            include_str!("../../../tests/events/listener-rule-priority-delete.json"),
        ];
        for text in events {
            let event: serde_json::Value = serde_json::from_str(text).unwrap();
            for key in ["ResourceProperties", "OldResourceProperties"] {
                let Some(mut properties) = event.get(key).cloned() else {
                    continue;
                };
                let map = properties.as_object_mut().unwrap();
                map.remove("ServiceToken");
                map.remove("ServiceTimeout");
                parse(properties).unwrap().validate().unwrap();
            }
            if let Some(id) = event["PhysicalResourceId"].as_str() {
                assert_eq!(Allocation::parse(id).unwrap().physical_id(), id);
            }
        }
    }
}
