//! Authentication and roles: which calls need a key, how a key is sent, what each role may do.

use serde_json::json;

use super::{get_as, make_key};
use crate::helpers::{ADMIN_KEY, TestServer, wait_for};

#[test]
fn every_v1_call_needs_a_key_and_service_routes_do_not() {
    let s = TestServer::in_process(&[]);
    for (method, path) in [
        ("GET", "/v1/packages"),
        ("POST", "/v1/packages"),
        ("GET", "/v1/statuses"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/packages/01900000-0000-7000-8000-000000000000"),
        ("GET", "/v1/no-such-route"),
    ] {
        let r = s.send_as(None, method, path, &[], None);
        r.assert_problem(401, "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"packd\""),
            "{method} {path}"
        );
    }
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
        s.send_as(None, "GET", path, &[], None).assert_status(200);
    }
    // Unauthenticated bad input is still 401 first: nothing is parsed for strangers.
    s.send_as(
        None,
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(b"{broken"),
    )
    .assert_problem(401, "unauthorized");
}

#[test]
fn bearer_works_and_malformed_keys_are_refused() {
    let s = TestServer::start();
    let bearer = format!("Bearer {ADMIN_KEY}");
    s.send_as(
        None,
        "GET",
        "/v1/packages",
        &[("authorization", &bearer)],
        None,
    )
    .assert_status(200);
    s.send_as(
        None,
        "GET",
        "/v1/packages",
        &[("authorization", "Basic abc")],
        None,
    )
    .assert_problem(401, "unauthorized");
    s.send_as(Some("short"), "GET", "/v1/packages", &[], None)
        .assert_problem(401, "unauthorized");
    let (_, secret) = make_key(&s, "read");
    let mut tampered = secret.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    get_as(&s, &tampered, "/v1/packages").assert_problem(401, "unauthorized");
    get_as(&s, &"z".repeat(40), "/v1/packages").assert_problem(401, "unauthorized");
    get_as(&s, &secret, "/v1/packages").assert_status(200);
    // Failures are logged with a reason, never with the value.
    let log = wait_for("auth failure logs", || {
        let log = s.stderr();
        log.contains("bad_checksum").then_some(log)
    });
    assert!(!log.contains(&tampered));
    assert!(!log.contains(&"z".repeat(40)));
}

#[test]
fn query_key_only_when_allowed_and_never_logged() {
    let s = TestServer::start();
    s.send_as(
        None,
        "GET",
        &format!("/v1/packages?api_key={ADMIN_KEY}"),
        &[],
        None,
    )
    .assert_problem(401, "unauthorized");
    let s = TestServer::start_with(&["--allow-query-key"], &[]);
    s.send_as(
        None,
        "GET",
        &format!("/v1/packages?api_key={ADMIN_KEY}&limit=5"),
        &[],
        None,
    )
    .assert_status(200);
    wait_for("the access log line", || {
        s.stderr().contains("/v1/packages").then_some(())
    });
    assert!(!s.stderr().contains(ADMIN_KEY), "the key reached the log");
}

#[test]
fn roles_are_enforced_on_every_route_class() {
    let s = TestServer::in_process(&[]);
    let (_, read) = make_key(&s, "read");
    let (_, write) = make_key(&s, "write");
    let p = s.create_package("roles", "1");
    let pkg = format!("/v1/packages/{}", p["id"].as_str().unwrap());

    // read: every GET of packages and statuses, nothing else.
    for path in ["/v1/packages", pkg.as_str(), "/v1/statuses"] {
        get_as(&s, &read, path).assert_status(200);
    }
    let create = json!({"name": "by-read", "version": "1"}).to_string();
    let ct = [("content-type", "application/json")];
    s.send_as(
        Some(&read),
        "POST",
        "/v1/packages",
        &ct,
        Some(create.as_bytes()),
    )
    .assert_problem(403, "forbidden");
    s.send_as(Some(&read), "PATCH", &pkg, &ct, Some(b"{}"))
        .assert_problem(403, "forbidden");
    s.send_as(Some(&read), "DELETE", &pkg, &[], None)
        .assert_problem(403, "forbidden");
    for path in ["/v1/keys", "/v1/audit"] {
        get_as(&s, &read, path).assert_problem(403, "forbidden");
    }

    // write: packages yes, keys and audit no.
    let create = json!({"name": "by-write", "version": "1"}).to_string();
    s.send_as(
        Some(&write),
        "POST",
        "/v1/packages",
        &ct,
        Some(create.as_bytes()),
    )
    .assert_status(201);
    s.send_as(
        Some(&write),
        "PATCH",
        &pkg,
        &ct,
        Some(br#"{"name":"renamed"}"#),
    )
    .assert_status(200);
    let body = json!({"name": "x", "role": "read"}).to_string();
    s.send_as(Some(&write), "POST", "/v1/keys", &ct, Some(body.as_bytes()))
        .assert_problem(403, "forbidden");
    get_as(&s, &write, "/v1/audit").assert_problem(403, "forbidden");
    s.send_as(Some(&write), "DELETE", &pkg, &[], None)
        .assert_status(204);

    // admin: everything (the default key of the test server).
    s.get("/v1/keys").assert_status(200);
    s.get("/v1/audit").assert_status(200);

    // The description says which role each operation needs.
    let spec = s.get("/openapi.json").json();
    let create_key = &spec["paths"]["/v1/keys"]["post"];
    assert!(
        create_key["description"]
            .as_str()
            .unwrap()
            .contains("admin")
    );
    assert_eq!(
        create_key["security"],
        json!([{"ApiKey": []}, {"Bearer": []}])
    );
    assert!(spec["paths"]["/healthz"]["get"].get("security").is_none());
}

#[test]
fn invalid_key_requests_are_clear_errors() {
    let s = TestServer::in_process(&[]);
    s.json("POST", "/v1/keys", &json!({"name": "", "role": "read"}))
        .assert_problem(422, "validation_failed");
    s.json("POST", "/v1/keys", &json!({"name": "x", "role": "root"}))
        .assert_problem(400, "bad_request");
    s.json("POST", "/v1/keys", &json!({"name": "x"}))
        .assert_problem(400, "bad_request");
    s.json(
        "POST",
        "/v1/keys",
        &json!({"name": "x", "role": "read", "key": "mine"}),
    )
    .assert_problem(400, "bad_request");
    s.get("/v1/keys/nope").assert_problem(404, "not_found");
    s.get("/v1/keys/01900000-0000-7000-8000-000000000000")
        .assert_problem(404, "not_found");
    s.get("/v1/keys?limit=0").assert_problem(400, "bad_request");
}
