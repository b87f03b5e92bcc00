//! Examples and words for the answers of the description that poem-openapi
//! cannot know: success bodies (so the explorer and the reference page show
//! what comes back), the `id` a "Try it out" starts with, which `409` codes
//! each call can really answer and what its `422` is about, and the event
//! stream as the stream it is. A test parses each success example with the
//! response type it illustrates, so they cannot drift from the types.

use serde_json::{Value, json};

const PACKAGE_ID: &str = "0193b7a2-4c1e-7d3a-9f00-5a1b2c3d4e5f";
const OPERATION_ID: &str = "0193b7a2-5d2f-7e4b-8a11-6b2c3d4e5f60";
const CHANNEL_ID: &str = "0193b7a2-6e30-7f5c-9b22-7c3d4e5f6071";
const KEY_ID: &str = "0193b7a2-7f41-7a6d-8c33-8d4e5f607182";

/// The `id` a path starts with in the explorer, of the right kind.
pub(super) fn example_id(operation_id: &str) -> &'static str {
    if operation_id.ends_with("_operation") {
        OPERATION_ID
    } else if operation_id.ends_with("_channel") {
        CHANNEL_ID
    } else if operation_id.ends_with("_key") {
        KEY_ID
    } else {
        PACKAGE_ID
    }
}

pub(super) fn package() -> Value {
    json!({
        "id": PACKAGE_ID,
        "name": "jq",
        "version": "1.7.1",
        "status": "downloaded",
        "source": {
            "url": "https://github.com/jqlang/jq/releases/download/jq-1.7.1/jq-linux-amd64",
            "sha256": "5942c9b0934e510ee61eb3e30273f1b3fe2590df93933a93d7c58b81d19c8ff5",
            "size": 2_359_048,
            "signature": null
        },
        "path": "/var/lib/packd/data/packages/jq/1.7.1",
        "operation_id": null,
        "channel_id": null,
        "pinned": false,
        "revision": 3,
        "created_at": "2026-12-03T09:14:07.512Z",
        "updated_at": "2026-12-03T09:14:09.876Z"
    })
}

/// A download just accepted: what every 202 answers.
pub(super) fn queued_operation() -> Value {
    json!({
        "id": OPERATION_ID,
        "package_id": PACKAGE_ID,
        "channel_id": null,
        "kind": "download",
        "state": "queued",
        "progress": 0,
        "bytes_done": null,
        "bytes_total": null,
        "attempts": 0,
        "error": null,
        "cancel_requested": false,
        "created_at": "2026-12-03T09:14:08.001Z",
        "started_at": null,
        "finished_at": null
    })
}

pub(super) fn finished_operation() -> Value {
    let mut op = queued_operation();
    op["state"] = "succeeded".into();
    op["progress"] = 100.into();
    op["bytes_done"] = 2_359_048.into();
    op["bytes_total"] = 2_359_048.into();
    op["attempts"] = 1.into();
    op["started_at"] = "2026-12-03T09:14:08.004Z".into();
    op["finished_at"] = "2026-12-03T09:14:09.876Z".into();
    op
}

pub(super) fn channel() -> Value {
    json!({
        "id": CHANNEL_ID,
        "url": "https://releases.example.org/stable/channel.json",
        "name": "stable",
        "sequence": 42,
        "expires": "2026-12-31T00:00:00Z",
        "activate": "auto",
        "interval": "5m",
        "last_checked_at": "2026-12-03T09:10:00.000Z",
        "last_changed_at": "2026-12-02T17:45:12.000Z",
        "last_error": null,
        "operation_id": null,
        "created_at": "2026-11-28T08:00:00.000Z"
    })
}

pub(super) fn host() -> Value {
    json!({
        "host_id": "0193a0f1-0000-7000-8000-00000000c0de",
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": "/var/lib/packd/data"
    })
}

/// An example secret, of the real form (its checksum holds).
fn example_secret() -> String {
    crate::domain::key::secret_of("Xb3kR9vT0mWq5sLp8eYzN4cJd6hGa1uF2iKoQ7wEr5t")
}

pub(super) fn key() -> Value {
    json!({
        "id": KEY_ID,
        "name": "ci",
        "role": "write",
        "prefix": crate::domain::key::display_prefix(&example_secret()),
        "active": true,
        "created_at": "2026-11-30T10:00:00.000Z",
        "expires_at": "2027-02-28T10:00:00.000Z",
        "rate_limit": null,
        "last_used_at": "2026-12-03T09:14:07.512Z",
        "use_count": 1_284
    })
}

/// A key as its creation (or rotation) shows it: with the secret, once.
pub(super) fn key_with_secret() -> Value {
    let mut k = key();
    k["key"] = example_secret().into();
    k["last_used_at"] = Value::Null;
    k["use_count"] = 0.into();
    k
}

pub(super) fn audit_entry() -> Value {
    json!({
        "id": "0193b7a2-8052-7b7e-9d44-9e5f60718293",
        "at": "2026-12-03T09:14:07.512Z",
        "key_id": KEY_ID,
        "action": "POST /v1/packages",
        "target": PACKAGE_ID,
        "status": 201,
        "request_id": "01a23d03-c14b-74a9-84ad-fb49c36b5bd6"
    })
}

pub(super) fn trusted_keys() -> Value {
    json!({
        "items": [{
            "id": "D2E5A3F1C0B49786",
            "public_key": "RWSGl7TAsQQ9wC8X2mN0Yq5sE4rT7uV1wZ3xA6bC9dE2fG5hJ8kLmNp",
            "comment": "minisign public key D2E5A3F1C0B49786"
        }],
        "signatures_required": true
    })
}

/// The example body of a success answer, for the calls whose answer is a
/// package, an operation, a channel, a key or a page of them, and the
/// service's own answers.
pub(super) fn success(operation_id: &str, status: &str) -> Option<Value> {
    let page = |item: Value| json!({"items": [item], "next_cursor": null});
    Some(match (operation_id, status) {
        ("create_package", "201") | ("get_package" | "update_package", "200") => package(),
        ("list_packages", "200") => page(package()),
        ("download_package" | "activate_package" | "deactivate_package", "202") => {
            queued_operation()
        }
        ("get_operation", "200") => finished_operation(),
        ("cancel_operation", "200") => {
            let mut op = queued_operation();
            op["cancel_requested"] = true.into();
            op
        }
        ("list_operations", "200") => page(finished_operation()),
        ("create_channel", "201") | ("get_channel" | "update_channel", "200") => channel(),
        ("list_channels", "200") => json!({"items": [channel()]}),
        ("get_host", "200") => host(),
        ("sync_channel", "202") => {
            let mut op = queued_operation();
            op["package_id"] = Value::Null;
            op["channel_id"] = CHANNEL_ID.into();
            op["kind"] = "sync".into();
            op
        }
        ("create_key" | "rotate_key", "201" | "200") => key_with_secret(),
        ("get_key" | "update_key" | "activate_key" | "deactivate_key", "200") => key(),
        ("list_keys", "200") => page(key()),
        ("list_audit", "200") => page(audit_entry()),
        ("list_statuses", "200") => {
            poem_openapi::types::ToJSON::to_json(&super::super::packages::status_table())?
        }
        ("list_trusted_keys", "200") => trusted_keys(),
        ("healthz", "200") => json!({"status": "ok"}),
        ("readyz", "200") => json!({"status": "ready"}),
        _ => return None,
    })
}

/// Words for an error status that differ by call: the `409` codes the call
/// can answer (not every code there is), and the operation calls' `422`,
/// which is about their `Idempotency-Key`, not a body.
pub(super) fn response_words(operation_id: &str, status: &str) -> Option<&'static str> {
    Some(match (operation_id, status) {
        ("create_package", "409") => "A package with this name and version exists (`duplicate`).",
        ("update_package", "409") => {
            "Another package has this name and version (`duplicate`); an operation is in \
             flight (`operation_in_progress`); the package is active and its name, version \
             or source cannot change (`invalid_transition`); a channel manages it (`conflict`)."
        }
        ("delete_package", "409") => {
            "An operation is in flight (`operation_in_progress`), or the package is active \
             (`invalid_transition`): deactivate it first."
        }
        ("download_package" | "activate_package" | "deactivate_package", "409") => {
            "The package has an operation in flight, or another version of its name has an \
             activation in flight (`operation_in_progress`), or its status is not the one \
             this call starts from (`invalid_transition`)."
        }
        ("download_package" | "activate_package" | "deactivate_package", "422") => {
            "The `Idempotency-Key` was already used for a different call \
             (`validation_failed`, `field`: `Idempotency-Key`)."
        }
        ("cancel_operation", "409") => "The operation has already finished (`already_finished`).",
        ("deactivate_key" | "delete_key" | "update_key", "409") => {
            "It would leave no active admin key (`last_admin`)."
        }
        ("create_channel", "409") => {
            "No publisher key is trusted, a channel already follows this URL, or the limit of \
             channels is reached (`conflict`)."
        }
        _ => return None,
    })
}

/// `GET /v1/events` is a stream, described as one: a generated client
/// reading it as JSON would wait for an end that never comes.
pub(super) fn event_stream(operation: &mut Value) {
    let stream = format!(
        ": connected\n\n\
         event: operation\ndata: {}\n\n\
         event: package\ndata: {}\n\n\
         : keep-alive\n\n",
        finished_operation(),
        package()
    );
    if let Some(media) = operation.pointer_mut("/responses/200/content/text~1event-stream") {
        *media = json!({
            "schema": {
                "type": "string",
                "description": "Server-Sent Events (`event:` is `operation`, `package`, \
                                `package_deleted`, `channel`, `channel_deleted` or `lagged`; \
                                `data:` is the object, as `GET` of it answers; the \
                                `StreamEvent` schema lists the shapes). It never ends: \
                                read it as it comes (an EventSource, a line reader, or \
                                a generated client's call that leaves the body unread, \
                                such as openapi-generator's \
                                `stream_events_without_preload_content` or \
                                `streamEventsRaw`), never as one body.",
            },
            "example": stream,
        });
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ParseFromJSON;

    use super::*;
    use crate::api::{channels, keys, operations, packages, trust};

    /// Every success example parses as the type its answer has.
    #[test]
    fn success_examples_are_what_the_types_answer() {
        packages::PackageDto::parse_from_json(Some(package())).unwrap();
        operations::OperationDto::parse_from_json(Some(queued_operation())).unwrap();
        operations::OperationDto::parse_from_json(Some(finished_operation())).unwrap();
        channels::ChannelDto::parse_from_json(Some(channel())).unwrap();
        channels::HostDto::parse_from_json(Some(host())).unwrap();
        let sync = success("sync_channel", "202").unwrap();
        operations::OperationDto::parse_from_json(Some(sync)).unwrap();
        keys::KeyDto::parse_from_json(Some(key())).unwrap();
        keys::KeyWithSecret::parse_from_json(Some(key_with_secret())).unwrap();
        keys::AuditDto::parse_from_json(Some(audit_entry())).unwrap();
        trust::TrustedKeys::parse_from_json(Some(trusted_keys())).unwrap();
        packages::Statuses::parse_from_json(success("list_statuses", "200")).unwrap();
        // The example secret passes the server's own format check.
        crate::domain::key::check_format(&example_secret()).unwrap();
    }
}
