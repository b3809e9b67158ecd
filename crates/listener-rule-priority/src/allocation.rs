//! The allocation id codec: the priorities a resource holds, as its physical id and its `Data`.

use std::collections::BTreeSet;
use std::fmt;

use cfn_custom_resource::{Data, HandlerError, PhysicalId};

/// Priorities one resource holds: ascending, distinct and never empty, so there is always a
/// lowest and a highest. Displayed as `<p1>,<p2>,...`, the form the physical id, `Data` and the
/// reservation carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Priorities(Vec<u32>);

// Never empty: an `is_empty` would always answer `false`.
#[allow(clippy::len_without_is_empty)]
impl Priorities {
    /// The distinct values of `priorities`, ascending; `None` when there are none.
    pub fn new(priorities: impl IntoIterator<Item = u32>) -> Option<Self> {
        let sorted: BTreeSet<u32> = priorities.into_iter().collect();
        (!sorted.is_empty()).then(|| Self(sorted.into_iter().collect()))
    }

    /// Reads `<p1>,<p2>,...` (in any order); anything else, or nothing, is `None`.
    pub fn parse(list: &str) -> Option<Self> {
        let priorities: Vec<u32> = list.split(',').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        Self::new(priorities)
    }

    /// The lowest priority (`Data.Priority`).
    pub fn lowest(&self) -> u32 {
        self.0[0]
    }

    /// The highest priority (what the hint moves to).
    pub fn highest(&self) -> u32 {
        self.0[self.0.len() - 1]
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Whether `priority` is one of them.
    pub fn contains(&self, priority: u32) -> bool {
        self.0.binary_search(&priority).is_ok()
    }
}

/// As a list, `[6, 7]`, so log lines read as they did when this was a `Vec`.
impl fmt::Debug for Priorities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// `<p1>,<p2>,...`
impl fmt::Display for Priorities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Priorities claimed on one listener: what the physical id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The listener the priorities are claimed on.
    pub listener_arn: String,
    /// The claimed priorities.
    pub priorities: Priorities,
}

const ID_SEPARATOR: &str = "/priority/";

impl Allocation {
    pub(crate) fn new(listener_arn: &str, priorities: Priorities) -> Self {
        Self {
            listener_arn: listener_arn.to_string(),
            priorities,
        }
    }

    /// `<listener arn>/priority/<p1>,<p2>,...`
    pub fn physical_id(&self) -> String {
        format!("{}{ID_SEPARATOR}{}", self.listener_arn, self.priorities)
    }

    /// Reads an id made by [`Allocation::physical_id`]; anything else is `None`.
    pub fn parse(physical_id: &str) -> Option<Self> {
        let (listener_arn, list) = physical_id.rsplit_once(ID_SEPARATOR)?;
        if listener_arn.is_empty() {
            return None;
        }
        Some(Self::new(listener_arn, Priorities::parse(list)?))
    }

    /// `Priority`, and `Priorities` when there is more than one.
    pub fn data(&self) -> Data {
        let mut data = Data::new();
        data.insert("Priority".into(), self.priorities.lowest().to_string());
        if self.priorities.len() > 1 {
            data.insert("Priorities".into(), self.priorities.to_string());
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

    impl Allocation {
        /// An allocation of `priorities` (at least one) on the test listener.
        fn of(listener_arn: &str, priorities: impl IntoIterator<Item = u32>) -> Self {
            Self::new(
                listener_arn,
                Priorities::new(priorities).expect("at least one priority"),
            )
        }
    }

    #[test]
    fn physical_ids_round_trip_and_fit() {
        let a = Allocation::of(ARN, [8, 6, 7]);
        assert_eq!(a.physical_id(), format!("{ARN}/priority/6,7,8"));
        assert_eq!(Allocation::parse(&a.physical_id()), Some(a.clone()));
        assert_eq!(a.data()["Priority"], "6");
        assert_eq!(a.data()["Priorities"], "6,7,8");
        assert!(!Allocation::of(ARN, [6]).data().contains_key("Priorities"));
        assert_eq!(Allocation::parse("create-failed:X:r"), None);
        assert_eq!(Allocation::parse(&format!("{ARN}/priority/6,x")), None);
        let widest = Allocation::of(ARN, HIGHEST_PRIORITY - MAX_COUNT + 1..=HIGHEST_PRIORITY);
        assert!(widest.id().is_ok(), "{}", widest.physical_id().len());
    }

    #[test]
    fn priorities_are_sorted_distinct_and_never_empty() {
        let p = Priorities::new([9, 6, 9, 7]).unwrap();
        assert_eq!((p.lowest(), p.highest(), p.len()), (6, 9, 3));
        assert_eq!(p.to_string(), "6,7,9");
        assert_eq!(format!("{p:?}"), "[6, 7, 9]");
        assert!(p.contains(7) && !p.contains(8));
        assert_eq!(Priorities::new([]), None);
        assert_eq!(Priorities::parse(""), None);
        assert_eq!(Priorities::parse("7,6"), Priorities::new([6, 7]));
        assert_eq!(Priorities::parse("6,,7"), None);
    }
}
