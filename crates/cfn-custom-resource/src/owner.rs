//! Who something a handler made belongs to: the CloudFormation resource that asked for it.

use crate::RequestInfo;

/// A CloudFormation resource as an owner: its stack id and logical id. Every stack in the account
/// shares the Lambdas, so what a handler makes is marked with its owner (SSM tags, a claim's
/// value) and a request of another resource leaves it alone.
///
/// Written as `<stack id>|<logical id>` ([`Display`](std::fmt::Display), [`Owner::parse`]): a
/// stack id is an ARN and a logical id is alphanumeric, so neither holds a `|`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The owner's `StackId` (an ARN).
    pub stack_id: String,
    /// The owner's `LogicalResourceId` in that stack.
    pub logical_resource_id: String,
}

impl Owner {
    /// The resource `logical_resource_id` of stack `stack_id`.
    pub fn new(stack_id: impl Into<String>, logical_resource_id: impl Into<String>) -> Self {
        Self {
            stack_id: stack_id.into(),
            logical_resource_id: logical_resource_id.into(),
        }
    }

    /// The resource that sent this request.
    pub fn of(info: &RequestInfo) -> Self {
        Self::new(&info.stack_id, &info.logical_resource_id)
    }

    /// Reads `<stack id>|<logical id>` (split at the first `|`); `None` when there is no `|`.
    pub fn parse(text: &str) -> Option<Self> {
        let (stack_id, logical_resource_id) = text.split_once('|')?;
        Some(Self::new(stack_id, logical_resource_id))
    }

    /// For a `Reason` or a log line: `resource <logical id> of stack <stack id>`.
    pub fn describe(&self) -> String {
        format!("resource {} of stack {}", self.logical_resource_id, self.stack_id)
    }
}

/// `<stack id>|<logical id>`, the form [`Owner::parse`] reads.
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.stack_id, self.logical_resource_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_stack_bar_logical_id_and_read_back() {
        let owner = Owner::new("arn:aws:cloudformation:us-east-1:1:stack/s/1", "Priority");
        assert_eq!(
            owner.to_string(),
            "arn:aws:cloudformation:us-east-1:1:stack/s/1|Priority"
        );
        assert_eq!(Owner::parse(&owner.to_string()), Some(owner.clone()));
        assert_eq!(Owner::parse("no bar here"), None);
        assert_ne!(Owner::new("s", "A"), Owner::new("s", "B"));
        assert_eq!(
            owner.describe(),
            "resource Priority of stack arn:aws:cloudformation:us-east-1:1:stack/s/1"
        );
    }
}
