//! Pure types and rules of packd: what a valid package name is, which status
//! changes exist, how timestamps look. No I/O happens here, so every rule can be
//! unit-tested without a database or a socket.

pub mod channel;
pub mod key;
pub mod operation;
pub mod ownership;
pub mod package;
pub mod precondition;
pub mod retention;
pub mod source;
mod time;

pub use self::time::Timestamp;

/// A value that a client sent and that breaks a rule of the domain.
///
/// `field` names the JSON field so the API can point at it (422 `validation_failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
