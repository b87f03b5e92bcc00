//! Behaviour that is about processes: restart, the file lock, signals,
//! refusing files it must not touch.

use std::time::{Duration, Instant};

use crate::helpers::{TestServer, run_packd};

#[test]
fn data_survives_a_restart_of_the_binary() {
    let mut s = TestServer::start();
    let p = s.create_package("persist-me", "1.0");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());
    s.json("PATCH", &path, &serde_json::json!({"name": "persisted"}))
        .assert_status(200);
    assert!(s.terminate().success(), "clean exit on SIGTERM");

    s.restart(&[], &[]);
    let got = s.get(&path);
    got.assert_status(200);
    assert_eq!(got.json()["name"], "persisted");
    assert_eq!(got.json()["revision"], 2);
    assert_eq!(
        s.get("/v1/packages").json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn data_survives_kill_9() {
    let mut s = TestServer::start();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(s.create_package(&format!("durable-{i}"), "1.0")["id"].clone());
    }
    // A 201 means durable: kill without any chance to flush.
    s.kill9();
    s.restart(&[], &[]);
    for id in ids {
        s.get(&format!("/v1/packages/{}", id.as_str().unwrap()))
            .assert_status(200);
    }
}

#[test]
fn a_second_server_on_the_same_file_fails_at_once() {
    let s = TestServer::start();
    let started = Instant::now();
    let out = run_packd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            s.db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10), "fails at once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    // The first one is unharmed.
    s.get("/healthz").assert_status(200);
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let mut s = TestServer::start();
    s.create_package("a", "1");
    let status = s.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let mut s = TestServer::start_with(
        &[
            "--download-duration",
            "30s",
            "--log",
            "info,packd::api=debug",
        ],
        &[],
    );
    let p = s.create_package("slow", "1");
    let r = s.send(
        "POST",
        &format!("/v1/packages/{}/download", p["id"].as_str().unwrap()),
        &[],
        None,
    );
    let op = r.id();
    // A long poll is in flight when the signal comes: it gets its answer
    // (the current state, at once), and the process exits 0.
    let url = s.url(&format!("/v1/operations/{op}?wait=30"));
    let waiter = std::thread::spawn(move || {
        let mut r = crate::helpers::agent()
            .get(&url)
            .header("x-api-key", crate::helpers::ADMIN_KEY)
            .call()
            .expect("the request in flight is answered");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    });
    crate::helpers::wait_for("the long poll to be in flight", || {
        s.stderr().contains("long poll waiting").then_some(())
    });
    let started = Instant::now();
    assert!(s.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, body) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\""), "{body}");
}

#[test]
fn foreign_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important.txt");
    let content = b"not a database, do not overwrite\n".repeat(300);
    std::fs::write(&path, &content).unwrap();
    let out = run_packd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a packd database"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
}

#[test]
fn missing_directory_is_a_clear_error() {
    let out = run_packd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "/nonexistent-dir/x/packd.redb",
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn environment_twins_configure_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("env.redb");
    let out = run_packd(
        &["serve", "--listen", "not-an-address"],
        &[("PACKD_DB", db.to_str().unwrap())],
    );
    assert!(!out.status.success(), "a bad --listen is refused");
    // PACKD_LOG_FORMAT=json makes every log line JSON.
    let s = TestServer::spawn(&db, &[], &[("PACKD_LOG_FORMAT", "json")]).unwrap();
    s.get("/healthz").assert_status(200);
    let log = crate::helpers::wait_for("an access log line", || {
        let log = s.stderr();
        log.contains("/healthz").then_some(log)
    });
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    let access = log.lines().find(|l| l.contains("/healthz")).unwrap();
    let v: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["route"], "/healthz");
    assert_eq!(v["status"], 200);
    assert!(v["latency_ms"].is_number());
    assert!(v["request_id"].is_string());
}

#[test]
fn dev_seed_writes_packages_and_queues_downloads_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seeded.redb");
    let db_arg = db.to_str().unwrap();
    let out = run_packd(
        &[
            "dev",
            "seed",
            "--count",
            "30",
            "--queue-downloads",
            "4",
            "--db",
            db_arg,
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("seeded 30 packages"));
    // Names are unique: the same prefix again is refused, and nothing of it is written.
    let again = run_packd(&["dev", "seed", "--count", "5", "--db", db_arg], &[]);
    assert!(!again.status.success());

    let s = TestServer::spawn(&db, &["--download-duration", "0s"], &[]).unwrap();
    let count = |q: &str| {
        s.get(&format!("/v1/packages?limit=1000{q}")).json()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(""), 30);
    // Statuses cycle, so every filter has work.
    assert_eq!(count("&status=active"), 10);
    assert_eq!(count("&name=seed-29"), 1);
    // The queued downloads run once the server starts.
    crate::helpers::wait_for("the seeded downloads", || {
        let ops = s.get("/v1/operations?state=succeeded").json();
        (ops["items"].as_array().unwrap().len() == 4).then_some(())
    });
    assert_eq!(count("&status=downloaded"), 14);
}

#[test]
fn a_damaged_file_is_reported_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.redb");
    let seeded = run_packd(
        &[
            "dev",
            "seed",
            "--count",
            "3000",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(seeded.status.success(), "{seeded:?}");
    // Zero two pages in the middle of the tables: what a bad disk does
    // (every page's checksum is verified at open).
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[30 * 4096..32 * 4096].fill(0);
    std::fs::write(&db, &bytes).unwrap();

    let out = run_packd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains("Restore the last backup"), "{err}");
    assert!(!err.contains("panicked"), "a report, not a crash: {err}");
    assert!(std::fs::read(&db).unwrap() == bytes, "the file was changed");
}
