//! What the server answers, as the client reads it: typed, so a field the
//! client needs that is missing or renamed is an error at once, never a
//! silent `-` in a table. Every field the server sends is known here (a
//! test of tests/api/client.rs holds these types to the server's real
//! answers); anything new lands in `more` and is printed with the rest.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A package (`GET /v1/packages/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Package {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub status: String,
    pub source: Option<Source>,
    pub path: Option<String>,
    pub operation_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub pinned: bool,
    pub revision: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub url: String,
    pub sha256: String,
    pub size: Option<u64>,
    pub signature: Option<String>,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// An operation (`GET /v1/operations/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: Uuid,
    /// Null for a channel's sync.
    pub package_id: Option<Uuid>,
    /// A sync's channel.
    pub channel_id: Option<Uuid>,
    pub kind: String,
    pub state: String,
    pub progress: u8,
    pub bytes_done: Option<u64>,
    pub bytes_total: Option<u64>,
    pub attempts: u32,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

impl Operation {
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// A channel (`GET /v1/channels/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Channel {
    pub id: Uuid,
    pub url: String,
    pub name: Option<String>,
    pub sequence: Option<u64>,
    pub expires: Option<String>,
    pub activate: String,
    pub interval: String,
    pub last_checked_at: Option<String>,
    pub last_changed_at: Option<String>,
    pub last_error: Option<String>,
    pub operation_id: Option<Uuid>,
    pub created_at: String,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// An API key (`GET /v1/keys/{id}`); `key` only in the answer that made
/// or rotated it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Key {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub active: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub use_count: u64,
    pub rate_limit: Option<u64>,
    pub key: Option<String>,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// One page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A problem (RFC 9457) as the client needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub code: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_states_are_the_three() {
        for (state, done) in [
            ("queued", false),
            ("running", false),
            ("succeeded", true),
            ("failed", true),
            ("cancelled", true),
        ] {
            let op: Operation = serde_json::from_value(serde_json::json!({
                "id": Uuid::nil(), "package_id": Uuid::nil(), "kind": "download",
                "state": state, "progress": 0, "bytes_done": null, "bytes_total": null,
                "attempts": 0, "error": null, "cancel_requested": false,
                "created_at": "2026-12-03T00:00:00Z", "started_at": null, "finished_at": null,
            }))
            .unwrap();
            assert_eq!(op.is_finished(), done);
            assert!(op.more.is_empty());
        }
    }
}
