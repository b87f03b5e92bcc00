//! API keys: access (authentication and roles), the life of a key, and the
//! administration around keys. Shared helpers below.

mod access;
mod admin;
mod life;

use serde_json::json;

use crate::helpers::TestServer;

/// Creates a key with `role` and returns (id, secret).
pub(super) fn make_key(s: &TestServer, role: &str) -> (String, String) {
    let r = s.json(
        "POST",
        "/v1/keys",
        &json!({"name": format!("{role} key"), "role": role}),
    );
    r.assert_status(201);
    let body = r.json();
    (
        body["id"].as_str().unwrap().to_string(),
        body["key"].as_str().unwrap().to_string(),
    )
}

pub(super) fn get_as(s: &TestServer, key: &str, path: &str) -> crate::helpers::Resp {
    s.send_as(Some(key), "GET", path, &[], None)
}
