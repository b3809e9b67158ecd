//! The `service-database` Lambda: backs `Custom::ServiceDatabase` (see the library crate).

use service_database::{ServiceDatabase, Settings};

#[tokio::main]
async fn main() -> Result<(), cfn_custom_resource::RuntimeError> {
    cfn_custom_resource::init_tracing();
    let config = cfn_custom_resource::aws_config().await;
    let handler = ServiceDatabase::new(
        aws_sdk_ssm::Client::new(&config),
        aws_sdk_kms::Client::new(&config),
        aws_sdk_secretsmanager::Client::new(&config),
        Settings::from_env(),
    );
    cfn_custom_resource::run(handler).await
}
