use std::ops::RangeInclusive;

/// Why a priority could not be allocated, kept or released. Each message says what to fix; it
/// becomes the `Reason` of a FAILED response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("property `{property}`: {reason}")]
    InvalidProperty { property: &'static str, reason: String },

    #[error("cannot read the rules of listener {listener}: {message}")]
    DescribeRules { listener: String, message: String },

    #[error("cannot read the priority claims under SSM path {path}: {message}")]
    ReadClaims { path: String, message: String },

    #[error("cannot claim priority {priority} (SSM parameter {name}): {message}")]
    Claim {
        priority: u32,
        name: String,
        message: String,
    },

    #[error("cannot release the claim on priority {priority} (SSM parameter {name}): {message}")]
    Release {
        priority: u32,
        name: String,
        message: String,
    },

    #[error("cannot read or write SSM parameter {name}: {message}")]
    State { name: String, message: String },

    #[error(
        "no free listener-rule priority left on listener {listener} in MinPriority..MaxPriority \
         {}..={}: needed {needed}, found {found} ({rules} priorities in that range are used by rules, \
         {claims} more are claimed by other resources); widen the range or free priorities",
        range.start(), range.end()
    )]
    Exhausted {
        listener: String,
        range: RangeInclusive<u32>,
        needed: u32,
        found: u32,
        rules: usize,
        claims: usize,
    },
}

impl Error {
    pub(crate) fn property(property: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidProperty {
            property,
            reason: reason.into(),
        }
    }
}
