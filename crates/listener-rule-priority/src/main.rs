//! The `listener-rule-priority` Lambda: serves `Custom::ListenerRulePriority` (see the library).

use aws_config::retry::RetryConfig;
use listener_rule_priority::{ListenerRulePriority, Settings};

#[tokio::main]
async fn main() -> Result<(), cfn_custom_resource::RuntimeError> {
    cfn_custom_resource::init_tracing();
    let mut loader = cfn_custom_resource::aws_config().await.into_builder();
    // Claims are many small writes: ride out SSM throttling unless AWS_MAX_ATTEMPTS (the SDK's
    // own variable) says otherwise.
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
        loader.set_retry_config(Some(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(cfn_custom_resource::RETRY_INITIAL_BACKOFF)
                .with_max_backoff(cfn_custom_resource::RETRY_MAX_BACKOFF),
        ));
    }
    let config = loader.build();
    let handler = ListenerRulePriority::new(
        aws_sdk_ssm::Client::new(&config),
        aws_sdk_elasticloadbalancingv2::Client::new(&config),
    )
    .with_cloudformation(aws_sdk_cloudformation::Client::new(&config))
    .with_settings(Settings::from_env());
    cfn_custom_resource::run(handler).await
}
