//! The priorities live rules hold on a listener.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::Client;

use crate::error::Error;

/// `DescribeRules` page size: AWS accepts at most 400 (moto accepts more, so a smaller page keeps
/// the paging path exercised by the tests).
pub const PAGE_SIZE: i32 = 400;

/// Every numeric priority on the listener, read over all pages of `DescribeRules`. The default
/// rule (priority `"default"`) holds no number and is skipped.
pub(crate) async fn priorities(elbv2: &Client, listener_arn: &str) -> Result<BTreeSet<u32>, Error> {
    let mut priorities = BTreeSet::new();
    let mut marker: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let page = elbv2
            .describe_rules()
            .listener_arn(listener_arn)
            .page_size(PAGE_SIZE)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| Error::DescribeRules {
                listener: listener_arn.to_string(),
                source: e.into(),
            })?;
        pages += 1;
        priorities.extend(
            page.rules()
                .iter()
                .filter_map(|rule| rule.priority())
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        match page.next_marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_string()),
            _ => break,
        }
    }
    tracing::debug!(
        listener_arn,
        pages,
        rules = priorities.len(),
        "read the listener's rules"
    );
    Ok(priorities)
}
