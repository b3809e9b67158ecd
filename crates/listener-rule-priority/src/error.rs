use std::ops::RangeInclusive;

/// What an AWS call answered, kept whole: the useful part (`ParameterNotFound: ...`) is in its
/// `source()` chain, which is rendered once, where an [`Error`] becomes the `Reason` of a FAILED
/// response (`cfn_custom_resource::HandlerError`'s `From`, with
/// [`cfn_custom_resource::error_chain`]).
pub(crate) type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a priority could not be allocated, kept or released. Each message says what to fix; with
/// its sources it becomes the `Reason` of a FAILED response. Log lines show the whole chain too
/// ([`cfn_custom_resource::error_chain`]): `Display` alone leaves the sources out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A property is out of its limits or not what it must be.
    #[error("property `{property}`: {reason}")]
    InvalidProperty {
        /// The property's name, as in the template.
        property: &'static str,
        /// What is wrong with it and what is accepted.
        reason: String,
    },

    /// `DescribeRules` failed.
    #[error("cannot read the rules of listener {listener}")]
    DescribeRules {
        /// The listener ARN.
        listener: String,
        /// What ELBv2 answered.
        #[source]
        source: Source,
    },

    /// Listing the claims (`GetParametersByPath`) failed.
    #[error("cannot read the priority claims under SSM path {path}")]
    ReadClaims {
        /// The listener's claim path.
        path: String,
        /// What SSM answered.
        #[source]
        source: Source,
    },

    /// Writing or reading a claim failed (other than losing it to someone else).
    #[error("cannot claim priority {priority} (SSM parameter {name})")]
    Claim {
        /// The priority.
        priority: u32,
        /// Its claim parameter.
        name: String,
        /// What SSM answered.
        #[source]
        source: Source,
    },

    /// Deleting one of this resource's claims failed.
    #[error("cannot release the claim on priority {priority} (SSM parameter {name})")]
    Release {
        /// The priority.
        priority: u32,
        /// Its claim parameter.
        name: String,
        /// What SSM answered.
        #[source]
        source: Source,
    },

    /// Reading or writing the listener's hint or a reservation failed.
    #[error("cannot read or write SSM parameter {name}")]
    State {
        /// The state parameter(s).
        name: String,
        /// What SSM answered.
        #[source]
        source: Source,
    },

    #[error(
        "no free listener-rule priority left on listener {listener} in MinPriority..MaxPriority \
         {}..={}: needed {needed}, found {found} ({rules} priorities in that range are used by rules, \
         {claims} more are claimed by other resources); widen the range or free priorities",
        range.start(), range.end()
    )]
    /// The range holds fewer free priorities than `Count`.
    Exhausted {
        /// The listener ARN.
        listener: String,
        /// `MinPriority..=MaxPriority`.
        range: RangeInclusive<u32>,
        /// `Count`.
        needed: usize,
        /// How many this attempt could hold.
        found: usize,
        /// Priorities in the range that listener rules use.
        rules: usize,
        /// Further priorities in the range claimed by other resources.
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
