use std::ops::RangeInclusive;

/// What an AWS call answered, kept whole: the useful part (`ParameterNotFound: ...`) is in its
/// `source()` chain, which is rendered once, where an [`Error`] becomes the `Reason` of a FAILED
/// response (`cfn_custom_resource::HandlerError`'s `From`, with
/// [`cfn_custom_resource::error_chain`]).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a priority could not be allocated, kept or released. Each message says what to fix; with
/// its sources it becomes the `Reason` of a FAILED response. Log lines show the whole chain too
/// ([`cfn_custom_resource::error_chain`]): `Display` alone leaves the sources out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("property `{property}`: {reason}")]
    InvalidProperty { property: &'static str, reason: String },

    #[error("cannot read the rules of listener {listener}")]
    DescribeRules {
        listener: String,
        #[source]
        source: Source,
    },

    #[error("cannot read the priority claims under SSM path {path}")]
    ReadClaims {
        path: String,
        #[source]
        source: Source,
    },

    #[error("cannot claim priority {priority} (SSM parameter {name})")]
    Claim {
        priority: u32,
        name: String,
        #[source]
        source: Source,
    },

    #[error("cannot release the claim on priority {priority} (SSM parameter {name})")]
    Release {
        priority: u32,
        name: String,
        #[source]
        source: Source,
    },

    #[error("cannot read or write SSM parameter {name}")]
    State {
        name: String,
        #[source]
        source: Source,
    },

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("service error")]
    struct Sdk(#[source] Service);

    #[derive(Debug, thiserror::Error)]
    #[error("ParameterNotFound: no such parameter")]
    struct Service;

    #[test]
    fn the_reason_holds_the_whole_chain_once() {
        let error = Error::Claim {
            priority: 6,
            name: "/c/6".into(),
            source: Box::new(Sdk(Service)),
        };
        assert_eq!(error.to_string(), "cannot claim priority 6 (SSM parameter /c/6)");
        assert_eq!(
            cfn_custom_resource::HandlerError::from(error).message(),
            "cannot claim priority 6 (SSM parameter /c/6): service error: ParameterNotFound: no such parameter"
        );
    }
}
