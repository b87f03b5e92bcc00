//! Administration around keys: the audit log, bootstrap at first start, and the offline key commands.

use serde_json::json;

use super::{get_as, make_key};
use crate::helpers::{ADMIN_KEY, TestServer, run_packd, wait_for};

#[test]
fn audit_records_writes_and_key_changes() {
    let s = TestServer::in_process(&[]);
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
    // A bootstrap key given once an admin exists is not used, and says so.
    assert!(s.terminate().success());
    s.restart(&[], &[]);
    assert!(
        s.stderr()
            .contains("PACKD_BOOTSTRAP_KEY is set but not used"),
        "{}",
        s.stderr()
    );
    get_as(&s, crate::helpers::ADMIN_KEY, "/v1/keys").assert_status(401);

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
        .find(|l| l.split_whitespace().nth(1) == Some("ro"))
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
