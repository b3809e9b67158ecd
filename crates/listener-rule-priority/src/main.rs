//! The `listener-rule-priority` Lambda: serves `Custom::ListenerRulePriority` (see the library).

use aws_config::retry::RetryConfig;
use listener_rule_priority::ListenerRulePriority;

#[tokio::main]
async fn main() -> Result<(), cfn_custom_resource::RuntimeError> {
    cfn_custom_resource::init_tracing();
    let mut loader = cfn_custom_resource::aws_config().await.into_builder();
    // Claims are many small writes: ride out SSM throttling unless AWS_MAX_ATTEMPTS says otherwise.
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
        loader.set_retry_config(Some(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(cfn_custom_resource::RETRY_INITIAL_BACKOFF)
                .with_max_backoff(cfn_custom_resource::RETRY_MAX_BACKOFF),
        ));
    }
    let config = loader.build();
    let mut handler = ListenerRulePriority::new(
        aws_sdk_ssm::Client::new(&config),
        aws_sdk_elasticloadbalancingv2::Client::new(&config),
    )
    .with_cloudformation(aws_sdk_cloudformation::Client::new(&config));
    // The support stack's PriorityClaimPath, set at deploy time (cfn/deploy.py).
    if let Ok(root) = std::env::var("PRIORITY_CLAIM_PATH") {
        handler = handler.with_claim_root(root);
    }
    // How old an unused claim must be before a full range may reclaim it (see the library doc).
    if let Ok(seconds) = std::env::var("PRIORITY_RECLAIM_AGE_SECONDS") {
        match seconds.trim().parse::<u64>() {
            Ok(seconds) => handler = handler.with_reclaim_age(std::time::Duration::from_secs(seconds)),
            Err(_) => tracing::warn!(
                value = %seconds,
                "PRIORITY_RECLAIM_AGE_SECONDS is not a whole number of seconds; using the default"
            ),
        }
    }
    cfn_custom_resource::run(handler).await
}
