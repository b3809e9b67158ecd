use std::fmt;

use crate::response::PhysicalId;

/// Why a handler failed: the message becomes the response's `Reason`.
///
/// The message must say what to fix and must never hold a secret. A Create handler that got
/// part-way can attach the physical id of what it made, so that the Delete CloudFormation sends
/// during rollback reaches the handler with that id instead of a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    physical_id: Option<PhysicalId>,
}

impl HandlerError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            physical_id: None,
        }
    }

    /// Reports the physical id of what a failed Create already made.
    pub fn with_physical_id(mut self, physical_id: PhysicalId) -> Self {
        self.physical_id = Some(physical_id);
        self
    }

    /// The message that becomes the `Reason`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The partial physical id, if the handler reported one.
    pub fn physical_id(&self) -> Option<&PhysicalId> {
        self.physical_id.as_ref()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts with its whole `source()` chain in the message, since SDK errors keep the
/// useful part ("ParameterNotFound: ...") in their sources.
impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::new(error_chain(&error))
    }
}

/// `error: source: source ...`, skipping a source whose text the previous one already holds.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
