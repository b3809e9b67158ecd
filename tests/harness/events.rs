//! CloudFormation custom-resource events, shaped as CloudFormation sends them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::receiver::response_url;

/// Builds events whose `ResponseURL` points at a [`crate::Receiver`], each with its own
/// `RequestId` and URL.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    base_url: String,
    /// The `StackId` of every event built.
    pub stack_id: String,
    pub service_token: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh request id, unique within the process run.
pub fn request_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n)
}

impl EventBuilder {
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            stack_id: format!(
                "arn:aws:cloudformation:us-east-1:123456789012:stack/local-{}/{}",
                std::process::id(),
                request_id()
            ),
            service_token: "arn:aws:lambda:us-east-1:123456789012:function:local".into(),
        }
    }

    /// The same builder for the named stack. Within one process a stack name always gives the
    /// same `StackId`, so Create, Update and Delete of one stack agree whichever builder made them.
    pub fn for_stack(&self, stack_name: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stack_name.hash(&mut hasher);
        Self {
            stack_id: format!(
                "arn:aws:cloudformation:us-east-1:123456789012:stack/{stack_name}/{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                hasher.finish() & 0xffff_ffff_ffff
            ),
            ..self.clone()
        }
    }

    fn base(&self, request_type: &str, resource_type: &str, logical_id: &str, properties: Value) -> Value {
        let request_id = request_id();
        let mut properties = properties;
        if let Some(map) = properties.as_object_mut() {
            map.insert("ServiceToken".into(), json!(self.service_token));
        }
        json!({
            "RequestType": request_type,
            "ServiceToken": self.service_token,
            "ResponseURL": response_url(&self.base_url, &request_id),
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            "ResourceProperties": properties,
        })
    }

    pub fn create(&self, resource_type: &str, logical_id: &str, properties: Value) -> Value {
        self.base("Create", resource_type, logical_id, properties)
    }

    pub fn update(
        &self,
        resource_type: &str,
        logical_id: &str,
        physical_id: &str,
        properties: Value,
        old_properties: Value,
    ) -> Value {
        let mut event = self.base("Update", resource_type, logical_id, properties);
        event["PhysicalResourceId"] = json!(physical_id);
        let mut old = old_properties;
        if let Some(map) = old.as_object_mut() {
            map.insert("ServiceToken".into(), json!(self.service_token));
        }
        event["OldResourceProperties"] = old;
        event
    }

    pub fn delete(
        &self,
        resource_type: &str,
        logical_id: &str,
        physical_id: &str,
        properties: Value,
    ) -> Value {
        let mut event = self.base("Delete", resource_type, logical_id, properties);
        event["PhysicalResourceId"] = json!(physical_id);
        event
    }

    /// The same request sent again (a retry): same RequestId, same ResponseURL.
    pub fn retry(event: &Value) -> Value {
        event.clone()
    }
}
