//! Authentication, roles, and the whole life of an API key.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestServer, run_packd, wait_for};

/// Creates a key with `role` and returns (id, secret).
fn make_key(s: &TestServer, role: &str) -> (String, String) {
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

fn get_as(s: &TestServer, key: &str, path: &str) -> crate::helpers::Resp {
    s.send_as(Some(key), "GET", path, &[], None)
}

#[test]
fn every_v1_call_needs_a_key_and_service_routes_do_not() {
    let s = TestServer::start();
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
    let s = TestServer::start();
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
fn secrets_are_shown_once_and_stored_only_as_hashes() {
    let mut s = TestServer::start();
    let r = s.json("POST", "/v1/keys", &json!({"name": "ci", "role": "write"}));
    r.assert_status(201);
    let created = r.json();
    let secret = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/keys/{id}").as_str())
    );
    assert!(
        secret.starts_with("packd_") && secret.len() == 55,
        "{secret}"
    );
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["prefix"].as_str().unwrap().len() < 16);
    assert_eq!(created["role"], "write");
    assert_eq!(created["active"], true);
    assert_eq!(created["expires_at"], Value::Null);
    assert_eq!(created["use_count"], 0);

    let rotated = s.json("POST", &format!("/v1/keys/{id}/rotate"), &json!({}));
    rotated.assert_status(200);
    let new_secret = rotated.json()["key"].as_str().unwrap().to_string();

    s.create_package("audited", "1");
    let listed = s.get("/v1/keys").body;
    let one = s.get(&format!("/v1/keys/{id}"));
    let audit = wait_for("audit entries", || {
        let a = s.get("/v1/audit?limit=1000").body;
        a.contains("rotate").then_some(a)
    });
    for text in [&listed, &one.body, &audit] {
        for secret in [&secret, &new_secret, &ADMIN_KEY.to_string()] {
            assert!(!text.contains(secret.as_str()), "a secret leaked: {text}");
        }
    }
    assert!(one.json().get("key").is_none());

    // And the file: no secret in plain text, even after a clean shutdown.
    assert!(s.terminate().success());
    let bytes = std::fs::read(&s.db).unwrap();
    for secret in [secret.as_str(), new_secret.as_str(), ADMIN_KEY] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the database file holds a secret"
        );
    }
}

#[test]
fn deactivate_activate_and_delete_take_effect_on_the_next_request() {
    let s = TestServer::start();
    let (id, secret) = make_key(&s, "read");
    get_as(&s, &secret, "/v1/packages").assert_status(200);

    let r = s.send("POST", &format!("/v1/keys/{id}/deactivate"), &[], None);
    r.assert_status(200);
    assert_eq!(r.json()["active"], false);
    let r = get_as(&s, &secret, "/v1/packages");
    r.assert_problem(401, "key_inactive");
    assert!(
        r.header("www-authenticate").is_some(),
        "every 401 says how to authenticate"
    );

    s.send("POST", &format!("/v1/keys/{id}/activate"), &[], None)
        .assert_status(200);
    get_as(&s, &secret, "/v1/packages").assert_status(200);

    s.send("DELETE", &format!("/v1/keys/{id}"), &[], None)
        .assert_status(204);
    get_as(&s, &secret, "/v1/packages").assert_problem(401, "unauthorized");
    s.get(&format!("/v1/keys/{id}"))
        .assert_problem(404, "not_found");
    s.send("DELETE", &format!("/v1/keys/{id}"), &[], None)
        .assert_problem(404, "not_found");
}

#[test]
fn rotation_with_and_without_grace() {
    let s = TestServer::start();
    let (id, old) = make_key(&s, "read");

    // No grace: the old secret stops at once.
    let r = s.json("POST", &format!("/v1/keys/{id}/rotate"), &json!({}));
    r.assert_status(200);
    let second = r.json()["key"].as_str().unwrap().to_string();
    get_as(&s, &old, "/v1/packages").assert_problem(401, "unauthorized");
    get_as(&s, &second, "/v1/packages").assert_status(200);

    // Grace: both work until it ends, then only the new one.
    let r = s.json(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_seconds": 2}),
    );
    r.assert_status(200);
    let third = r.json()["key"].as_str().unwrap().to_string();
    get_as(&s, &second, "/v1/packages").assert_status(200);
    get_as(&s, &third, "/v1/packages").assert_status(200);
    wait_for("the grace period to end", || {
        (get_as(&s, &second, "/v1/packages").status == 401).then_some(())
    });
    get_as(&s, &third, "/v1/packages").assert_status(200);

    // A rotation ends any earlier grace at once.
    let r = s.json(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_seconds": 600}),
    );
    let fourth = r.json()["key"].as_str().unwrap().to_string();
    let r = s.json(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_seconds": 600}),
    );
    let fifth = r.json()["key"].as_str().unwrap().to_string();
    get_as(&s, &third, "/v1/packages").assert_problem(401, "unauthorized");
    get_as(&s, &fourth, "/v1/packages").assert_status(200);
    get_as(&s, &fifth, "/v1/packages").assert_status(200);

    s.json(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_seconds": -1}),
    )
    .assert_problem(400, "bad_request");
    s.json(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_seconds": 99999999}),
    )
    .assert_problem(400, "bad_request");
}

#[test]
fn expiry_renewal_and_rotation_never_extends_it() {
    let s = TestServer::start();
    // A time already past makes a key that is expired from the start.
    let past = s.json(
        "POST",
        "/v1/keys",
        &json!({"name": "past", "role": "read", "expires_at": "2020-01-01T00:00:00Z"}),
    );
    past.assert_status(201);
    let past_secret = past.json()["key"].as_str().unwrap().to_string();
    s.send_as(Some(&past_secret), "GET", "/v1/statuses", &[], None)
        .assert_problem(401, "key_expired");
    // Expiring the last usable admin key at once would lock everyone out.
    let admins = s.get("/v1/keys").json();
    let bootstrap = admins["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json(
        "PATCH",
        &format!("/v1/keys/{bootstrap}"),
        &json!({"expires_at": "2020-01-01T00:00:00Z"}),
    )
    .assert_problem(409, "last_admin");

    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = s.json(
        "POST",
        "/v1/keys",
        &json!({"name": "short-lived", "role": "read", "expires_at": soon}),
    );
    r.assert_status(201);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    get_as(&s, &secret, "/v1/packages").assert_status(200);

    let rotated = s.json("POST", &format!("/v1/keys/{id}/rotate"), &json!({}));
    assert_eq!(
        rotated.json()["expires_at"],
        created["expires_at"],
        "rotation kept the expiry"
    );
    let secret = rotated.json()["key"].as_str().unwrap().to_string();

    wait_for("the key to expire", || {
        let r = get_as(&s, &secret, "/v1/packages");
        (r.status == 401).then_some(r)
    })
    .assert_problem(401, "key_expired");

    // Renew: move expires_at, or clear it.
    let r = s.json(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &json!({"expires_at": null}),
    );
    r.assert_status(200);
    assert_eq!(r.json()["expires_at"], Value::Null);
    get_as(&s, &secret, "/v1/packages").assert_status(200);
    let r = s.json(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &json!({"name": "renamed"}),
    );
    assert_eq!(r.json()["name"], "renamed");
    // A past time expires it at once.
    s.json(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &json!({"expires_at": "2020-01-01T00:00:00Z"}),
    )
    .assert_status(200);
    get_as(&s, &secret, "/v1/packages").assert_problem(401, "key_expired");
    s.json(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &json!({"role": "admin"}),
    )
    .assert_problem(400, "bad_request");
}

#[test]
fn key_ttl_gives_a_default_lifetime() {
    let s = TestServer::start_with(&["--key-ttl", "1h"], &[]);
    let r = s.json("POST", "/v1/keys", &json!({"name": "ttl", "role": "read"}));
    let expires = r.json()["expires_at"].as_str().unwrap().to_string();
    let t = time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let left = t - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(59) && left <= time::Duration::hours(1),
        "{left}"
    );
}

#[test]
fn the_last_admin_key_cannot_be_deactivated_or_deleted() {
    let s = TestServer::start();
    let keys = s.get("/v1/keys").json();
    let bootstrap = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bootstrap")
        .expect("the bootstrap admin key");
    let id = bootstrap["id"].as_str().unwrap();
    assert_eq!(bootstrap["role"], "admin");
    s.send("POST", &format!("/v1/keys/{id}/deactivate"), &[], None)
        .assert_problem(409, "last_admin");
    s.send("DELETE", &format!("/v1/keys/{id}"), &[], None)
        .assert_problem(409, "last_admin");
    // Other keys do not count as admins.
    make_key(&s, "write");
    s.send("DELETE", &format!("/v1/keys/{id}"), &[], None)
        .assert_problem(409, "last_admin");

    let (_, second_admin) = make_key(&s, "admin");
    s.send("POST", &format!("/v1/keys/{id}/deactivate"), &[], None)
        .assert_status(200);
    s.get("/v1/keys").assert_problem(401, "key_inactive");
    get_as(&s, &second_admin, "/v1/keys").assert_status(200);
}

/// An admin key that will expire does not count as the one that keeps the
/// service administrable: deactivating, deleting or setting an expiry on the
/// last admin key that never expires is refused, even from another admin.
#[test]
fn an_expiring_admin_key_is_not_a_lasting_admin() {
    let s = TestServer::start();
    let keys = s.get("/v1/keys").json();
    let lasting = keys["items"][0]["id"].as_str().unwrap().to_string();
    let in_a_day = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let in_a_day = in_a_day
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = s.json(
        "POST",
        "/v1/keys",
        &json!({"name": "temporary admin", "role": "admin", "expires_at": in_a_day}),
    );
    r.assert_status(201);
    let temporary = r.json()["key"].as_str().unwrap().to_string();
    let as_temporary = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        s.send_as(
            Some(&temporary),
            method,
            path,
            &[("content-type", "application/json")],
            body.as_deref().map(str::as_bytes),
        )
    };
    as_temporary("POST", &format!("/v1/keys/{lasting}/deactivate"), None)
        .assert_problem(409, "last_admin");
    as_temporary("DELETE", &format!("/v1/keys/{lasting}"), None).assert_problem(409, "last_admin");
    as_temporary(
        "PATCH",
        &format!("/v1/keys/{lasting}"),
        Some(json!({"expires_at": in_a_day})),
    )
    .assert_problem(409, "last_admin");
    // With another admin key that never expires, it may go.
    make_key(&s, "admin");
    as_temporary("POST", &format!("/v1/keys/{lasting}/deactivate"), None).assert_status(200);
}

#[test]
fn invalid_key_requests_are_clear_errors() {
    let s = TestServer::start();
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

#[test]
fn keys_list_pages() {
    let s = TestServer::start();
    for _ in 0..4 {
        make_key(&s, "read");
    }
    let first = s.get("/v1/keys?limit=3").json();
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let next = first["next_cursor"].as_str().unwrap();
    let second = s.get(&format!("/v1/keys?limit=3&cursor={next}")).json();
    assert_eq!(
        second["items"].as_array().unwrap().len(),
        2,
        "4 made + bootstrap"
    );
    assert_eq!(second["next_cursor"], Value::Null);
}

#[test]
fn usage_counts_survive_a_clean_restart() {
    let mut s = TestServer::start();
    let (id, secret) = make_key(&s, "read");
    for _ in 0..7 {
        get_as(&s, &secret, "/v1/packages").assert_status(200);
    }
    // Live counts are visible before any flush.
    let k = s.get(&format!("/v1/keys/{id}")).json();
    assert_eq!(k["use_count"], 7);
    assert!(k["last_used_at"].is_string());

    assert!(s.terminate().success());
    s.restart(&[], &[]);
    let k = s.get(&format!("/v1/keys/{id}")).json();
    assert_eq!(k["use_count"], 7);
    assert!(k["last_used_at"].is_string());
}

#[test]
fn audit_records_writes_and_key_changes() {
    let s = TestServer::start();
    let p = s.create_package("audited", "1");
    let pid = p["id"].as_str().unwrap();
    s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "audited", "version": "1"}),
    )
    .assert_status(409);
    let (kid, _) = make_key(&s, "read");
    s.send(
        "POST",
        &format!("/v1/keys/{kid}/deactivate"),
        &[("x-request-id", "req-deact")],
        None,
    )
    .assert_status(200);
    s.get("/v1/packages").assert_status(200);
    // A path id that is not a UUID is answered 404, and recorded as such.
    s.send("POST", "/v1/packages/not-a-uuid/download", &[], None)
        .assert_problem(404, "not_found");

    let entries = wait_for("five audit entries", || {
        let page = s.get("/v1/audit").json();
        let items = page["items"].as_array().unwrap().clone();
        (items.len() >= 5).then_some(items)
    });
    assert_eq!(
        (entries[4]["action"].as_str(), entries[4]["status"].as_u64()),
        (Some("POST /v1/packages/{id}/download"), Some(404)),
        "the status the client got: {}",
        entries[4]
    );
    let entries = &entries[..4];
    let actions: Vec<(String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("POST /v1/packages".to_string(), 201),
            ("POST /v1/packages".to_string(), 409),
            ("POST /v1/keys".to_string(), 201),
            ("POST /v1/keys/{id}/deactivate".to_string(), 200),
        ],
        "reads are not audited; failed writes are"
    );
    assert_eq!(entries[0]["target"], format!("/v1/packages/{pid}"));
    assert_eq!(entries[3]["target"], format!("/v1/keys/{kid}"));
    assert_eq!(entries[3]["request_id"], "req-deact");
    let admin_id = s.get("/v1/keys").json()["items"][0]["id"].clone();
    assert!(entries.iter().all(|e| e["key_id"] == admin_id));
    assert!(entries.iter().all(|e| e["at"].is_string()));
}

#[test]
fn bootstrap_generates_an_admin_key_once_when_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.redb");
    let mut s = TestServer::spawn(&db, &[], &[("PACKD_BOOTSTRAP_KEY", "")]).unwrap();
    let log = wait_for("the generated key on stderr", || {
        let log = s.stderr();
        log.contains("packd_").then_some(log)
    });
    let secret = log
        .split_whitespace()
        .find(|w| w.starts_with("packd_"))
        .unwrap()
        .to_string();
    get_as(&s, &secret, "/v1/keys").assert_status(200);
    assert!(s.terminate().success());
    s.restart(&[], &[("PACKD_BOOTSTRAP_KEY", "")]);
    s.get("/healthz").assert_status(200);
    assert!(!s.stderr().contains("packd_"), "printed only once");
    get_as(&s, &secret, "/v1/keys").assert_status(200);

    // A bootstrap key that is too short is refused at start.
    let out = run_packd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            dir.path().join("other.redb").to_str().unwrap(),
        ],
        &[("PACKD_BOOTSTRAP_KEY", "too-short")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32"));
    // So is one that no client could send: headers are trimmed.
    for padded in [
        " ".repeat(34),
        format!(" {ADMIN_KEY}"),
        format!("{ADMIN_KEY}\t"),
    ] {
        let out = run_packd(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                dir.path().join("padded.redb").to_str().unwrap(),
            ],
            &[("PACKD_BOOTSTRAP_KEY", &padded)],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("white space"),
            "{out:?}"
        );
    }
}

#[test]
fn offline_key_commands_work_and_refuse_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("offline.redb");
    let dbs = db.to_str().unwrap();
    let out = run_packd(
        &[
            "keys", "create", "--role", "admin", "--name", "ops", "--db", dbs,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = stdout
        .split_whitespace()
        .find(|w| w.starts_with("packd_"))
        .expect("the secret is printed")
        .to_string();
    let out = run_packd(
        &[
            "keys", "create", "--role", "read", "--name", "ro", "--db", dbs,
        ],
        &[],
    );
    assert!(out.status.success());
    let list = run_packd(&["keys", "list", "--db", dbs], &[]);
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listed.contains("ops") && listed.contains("ro"), "{listed}");
    assert!(!listed.contains(&secret));
    let ro_id = listed
        .lines()
        .find(|l| l.ends_with("  ro"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();

    // The server accepts the offline key, with no bootstrap variable at all.
    let mut s = TestServer::spawn(&db, &[], &[("PACKD_BOOTSTRAP_KEY", "")]).unwrap();
    get_as(&s, &secret, "/v1/keys").assert_status(200);
    let busy = run_packd(&["keys", "list", "--db", dbs], &[]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    assert!(s.terminate().success());

    let out = run_packd(&["keys", "deactivate", &ro_id, "--db", dbs], &[]);
    assert!(out.status.success());
    let list = run_packd(&["keys", "list", "--db", dbs], &[]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("inactive"));
    let out = run_packd(&["keys", "delete", &ro_id, "--db", dbs], &[]);
    assert!(out.status.success());
    let bad = run_packd(
        &[
            "keys", "create", "--role", "root", "--name", "x", "--db", dbs,
        ],
        &[],
    );
    assert!(!bad.status.success());
}
