//! The `admin-secret` Lambda: serves `Custom::AdminSecret` (see the library's documentation).

use admin_secret::{AdminSecret, Settings};
use cfn_custom_resource::RuntimeError;

#[tokio::main]
async fn main() -> Result<(), RuntimeError> {
    cfn_custom_resource::init_tracing();
    // Region, credentials and AWS_ENDPOINT_URL (local runs) come from the environment.
    let config = cfn_custom_resource::aws_config().await;
    let handler = AdminSecret::new(
        aws_sdk_ssm::Client::new(&config),
        aws_sdk_kms::Client::new(&config),
        Settings::from_env(),
    );
    cfn_custom_resource::run(handler).await
}
