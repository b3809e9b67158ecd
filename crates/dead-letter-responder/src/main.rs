//! The `dead-letter-responder` Lambda: the on-failure destination of the custom-resource
//! functions. It receives Lambda's destination record for an event whose attempts all failed
//! (the execution environment crashed, or the event aged out) and answers FAILED to the original
//! event's ResponseURL (see `cfn_custom_resource::dead_letter`).

#[tokio::main]
async fn main() -> Result<(), cfn_custom_resource::RuntimeError> {
    cfn_custom_resource::init_tracing();
    cfn_custom_resource::dead_letter::run_dead_letter_responder().await
}
