//! The ARN of a parameter, computed rather than read back: `arn:{partition}:ssm:{region}:{account}:
//! parameter/{name}`, the account and partition taken from the owning stack's id (a stack and the
//! custom resource's Lambda live in the same account and partition).

/// The ARN SSM gives parameter `name` in `region`, for a resource of the stack `stack_id`
/// (`arn:{partition}:cloudformation:{region}:{account}:stack/...`). `None` when the stack id is not
/// such an ARN or the name is itself an ARN: the caller then asks SSM.
pub(crate) fn parameter_arn(stack_id: &str, region: Option<&str>, name: &str) -> Option<String> {
    let mut fields = stack_id.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("cloudformation"), Some(stack_region), Some(account)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let region = region.filter(|r| !r.is_empty()).unwrap_or(stack_region);
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid(partition)
        || !valid(region)
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if name.is_empty() || name.starts_with("arn:") {
        return None;
    }
    // A hierarchical name keeps its leading slash as the resource's separator; a plain one gets one.
    let separator = if name.starts_with('/') { "" } else { "/" };
    Some(format!(
        "arn:{partition}:ssm:{region}:{account}:parameter{separator}{name}"
    ))
}

#[cfg(test)]
mod tests {
    use super::parameter_arn;

    const STACK: &str =
        "arn:aws:cloudformation:eu-west-1:123456789012:stack/app/0a1b2c3d-0000-4000-8000-000000000000";

    #[test]
    fn hierarchical_and_plain_names() {
        assert_eq!(
            parameter_arn(STACK, Some("eu-west-1"), "/app/db/admin").as_deref(),
            Some("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db/admin")
        );
        assert_eq!(
            parameter_arn(STACK, Some("eu-west-1"), "admin").as_deref(),
            Some("arn:aws:ssm:eu-west-1:123456789012:parameter/admin")
        );
    }

    #[test]
    fn partition_from_the_stack_and_region_from_the_client() {
        let stack = "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/app/x";
        assert_eq!(
            parameter_arn(stack, Some("cn-northwest-1"), "/p").as_deref(),
            Some("arn:aws-cn:ssm:cn-northwest-1:123456789012:parameter/p")
        );
        assert_eq!(
            parameter_arn(stack, None, "/p").as_deref(),
            Some("arn:aws-cn:ssm:cn-north-1:123456789012:parameter/p")
        );
    }

    #[test]
    fn anything_else_is_left_to_ssm() {
        assert_eq!(parameter_arn("local-stack", Some("us-east-1"), "/p"), None);
        assert_eq!(
            parameter_arn("arn:aws:cloudformation:us-east-1:12345:stack/x/y", None, "/p"),
            None
        );
        assert_eq!(
            parameter_arn(STACK, None, "arn:aws:ssm:eu-west-1:123456789012:parameter/p"),
            None
        );
        assert_eq!(parameter_arn(STACK, None, ""), None);
    }
}
