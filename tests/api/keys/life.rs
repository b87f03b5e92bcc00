//! The life of a key: secrets shown once, deactivation, rotation, expiry and renewal, the last admin key, listing, usage.

use serde_json::{Value, json};

use super::{get_as, make_key};
use crate::helpers::{ADMIN_KEY, TestServer, wait_for};

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
    let s = TestServer::in_process(&[]);
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
    let s = TestServer::in_process(&[]);
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
    let s = TestServer::in_process(&[]);
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
    let s = TestServer::in_process(&["--key-ttl", "1h"]);
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
    let s = TestServer::in_process(&[]);
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
    let s = TestServer::in_process(&[]);
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
fn keys_list_pages() {
    let s = TestServer::in_process(&[]);
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
