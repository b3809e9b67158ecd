//! The allocation id codec: the priorities a resource holds, as its physical id and its `Data`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use cfn_custom_resource::{Data, HandlerError, PhysicalId};

/// Priorities claimed on one listener: what the physical id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub listener_arn: String,
    /// Ascending, distinct, non-empty.
    pub priorities: Vec<u32>,
}

const ID_SEPARATOR: &str = "/priority/";

impl Allocation {
    pub(crate) fn new(listener_arn: &str, priorities: impl IntoIterator<Item = u32>) -> Self {
        let priorities: BTreeSet<u32> = priorities.into_iter().collect();
        Self {
            listener_arn: listener_arn.to_string(),
            priorities: priorities.into_iter().collect(),
        }
    }

    /// `<listener arn>/priority/<p1>,<p2>,...`
    pub fn physical_id(&self) -> String {
        let mut id = format!("{}{ID_SEPARATOR}", self.listener_arn);
        for (i, p) in self.priorities.iter().enumerate() {
            let _ = write!(id, "{}{p}", if i == 0 { "" } else { "," });
        }
        id
    }

    /// Reads an id made by [`Allocation::physical_id`]; anything else is `None`.
    pub fn parse(physical_id: &str) -> Option<Self> {
        let (listener_arn, list) = physical_id.rsplit_once(ID_SEPARATOR)?;
        let priorities: Vec<u32> = list.split(',').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if listener_arn.is_empty() || priorities.is_empty() {
            return None;
        }
        Some(Self::new(listener_arn, priorities))
    }

    /// `Priority`, and `Priorities` when there is more than one.
    pub fn data(&self) -> Data {
        let mut data = Data::new();
        if let Some(first) = self.priorities.first() {
            data.insert("Priority".into(), first.to_string());
        }
        if self.priorities.len() > 1 {
            let all: Vec<String> = self.priorities.iter().map(u32::to_string).collect();
            data.insert("Priorities".into(), all.join(","));
        }
        data
    }

    pub(crate) fn id(&self) -> Result<PhysicalId, HandlerError> {
        PhysicalId::new(self.physical_id())
            .map_err(|e| HandlerError::new(format!("{e} (listener ARN too long?)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HIGHEST_PRIORITY, MAX_COUNT};

    const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/alb/50dc6c495c0c9188/f2f7dc8efc522ab2";

    #[test]
    fn physical_ids_round_trip_and_fit() {
        let a = Allocation::new(ARN, [8, 6, 7]);
        assert_eq!(a.physical_id(), format!("{ARN}/priority/6,7,8"));
        assert_eq!(Allocation::parse(&a.physical_id()), Some(a.clone()));
        assert_eq!(a.data()["Priority"], "6");
        assert_eq!(a.data()["Priorities"], "6,7,8");
        assert!(!Allocation::new(ARN, [6]).data().contains_key("Priorities"));
        assert_eq!(Allocation::parse("create-failed:X:r"), None);
        assert_eq!(Allocation::parse(&format!("{ARN}/priority/6,x")), None);
        let widest = Allocation::new(ARN, HIGHEST_PRIORITY - MAX_COUNT + 1..=HIGHEST_PRIORITY);
        assert!(widest.id().is_ok(), "{}", widest.physical_id().len());
    }
}
