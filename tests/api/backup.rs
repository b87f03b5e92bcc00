//! Backups: online through the API and `packd backup`, offline on the file,
//! and restoring by starting on the copy.

use serde_json::json;

use crate::helpers::{ADMIN_KEY, TestServer, run_packd};

fn backup_online(s: &TestServer, key: &str, out: &std::path::Path) -> std::process::Output {
    run_packd(
        &["backup", "--out", out.to_str().unwrap(), "--url", &s.base],
        &[("PACKD_API_KEY", key)],
    )
}

#[test]
fn an_online_backup_restores_everything_while_writes_go_on() {
    let s = TestServer::start();
    for i in 0..20 {
        s.create_package(&format!("kept-{i}"), "1.0");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup.redb");

    // Writes keep coming while the backup is taken; it sees one commit.
    let backup = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..50 {
                s.create_package(&format!("during-{i}"), "1.0");
            }
        });
        let out = backup_online(&s, ADMIN_KEY, &out);
        writer.join().unwrap();
        out
    });
    assert!(backup.status.success(), "{backup:?}");
    assert!(String::from_utf8_lossy(&backup.stdout).contains("schema version 7"));

    // Taking it is in the audit log.
    let audit = s.get("/v1/audit?limit=1000").json();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "GET /v1/backup" && e["status"] == 200),
        "{audit}"
    );

    // Restoring is starting on the copy: the keys work, the data is there.
    // The copy belongs to the first server's data directory: on a new one
    // it starts only when told to adopt it.
    let refused = TestServer::spawn(&out, &[], &[("PACKD_BOOTSTRAP_KEY", "")])
        .err()
        .expect("a restored database on another data directory is refused");
    assert!(refused.contains("--adopt-data-dir"), "{refused}");
    let restored =
        TestServer::spawn(&out, &["--adopt-data-dir"], &[("PACKD_BOOTSTRAP_KEY", "")]).unwrap();
    let items = restored.get("/v1/packages?limit=1000").json()["items"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for i in 0..20 {
        assert!(names.contains(&format!("kept-{i}").as_str()), "{names:?}");
    }
    // The packages written meanwhile are a prefix of their order: a snapshot.
    let during: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("during-"))
        .collect();
    let expected: Vec<String> = (0..during.len()).map(|i| format!("during-{i}")).collect();
    assert_eq!(during, expected);
}

#[test]
fn backups_need_an_admin_key() {
    let s = TestServer::in_process(&[]);
    let key = s.json(
        "POST",
        "/v1/keys",
        &json!({"name": "writer", "role": "write"}),
    );
    let secret = key.json()["key"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nope.redb");
    let refused = backup_online(&s, &secret, &out);
    assert_eq!(refused.status.code(), Some(4), "refused: {refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403"),
        "{refused:?}"
    );
    assert!(!out.exists());
    // A key the server does not know: refused too (4); no server: 3.
    let unknown = backup_online(&s, "packd_not-a-real-key-at-all-0123456789ab", &out);
    assert_eq!(unknown.status.code(), Some(4), "{unknown:?}");
    let down = run_packd(
        &[
            "backup",
            "--out",
            out.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:9",
        ],
        &[("PACKD_API_KEY", ADMIN_KEY)],
    );
    assert_eq!(down.status.code(), Some(3), "{down:?}");
    s.send("GET", "/v1/backup", &[], None).assert_status(200);
    s.send_as(Some(&secret), "GET", "/v1/backup", &[], None)
        .assert_problem(403, "forbidden");
    let none = run_packd(
        &["backup", "--out", out.to_str().unwrap(), "--url", &s.base],
        &[],
    );
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("set PACKD_API_KEY or pass --key"), "{said}");
}

#[test]
fn an_offline_backup_needs_the_file_free() {
    let mut s = TestServer::start();
    s.create_package("offline", "2.0");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("offline.redb");
    let db = s.db.to_str().unwrap().to_string();
    let args = ["backup", "--db", &db, "--out", out.to_str().unwrap()];
    let busy = run_packd(&args, &[]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));

    assert!(s.terminate().success());
    let done = run_packd(&args, &[]);
    assert!(done.status.success(), "{done:?}");
    let restored = TestServer::spawn(&out, &["--adopt-data-dir"], &[]).unwrap();
    let list = restored.get("/v1/packages?name=offline").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
