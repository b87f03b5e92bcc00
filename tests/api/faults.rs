//! Storage faults: a full disk answers 503 to writes, keeps serving reads,
//! and recovers by itself when space returns, with nothing acknowledged lost.
//!
//! The server runs in a mount namespace of its own with its database on a
//! 3 MiB tmpfs (`unshare`; as a non-root user through a user namespace), and
//! the test fills that disk through `/proc/<pid>/root`.

use std::io::Write;

use serde_json::json;

use crate::helpers::{TestServer, wait_for};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_full_disk_answers_503_keeps_reads_and_recovers() {
    let mount_dir = tempfile::tempdir().unwrap();
    let dir = mount_dir.path().to_str().unwrap().to_string();
    let script = r#"mount -t tmpfs -o size=3m tmpfs "$0" && exec "$@""#;
    let mut wrapper = vec!["unshare", "--mount", "--propagation", "private"];
    if !is_root() {
        wrapper.push("--map-root-user");
    }
    wrapper.extend(["sh", "-c", script, dir.as_str()]);
    let db = mount_dir.path().join("packd.redb");
    let s = TestServer::spawn_in(&wrapper, &db, &[], &[]).unwrap_or_else(|e| {
        panic!("this test needs root or unprivileged user namespaces (unshare): {e}")
    });
    s.create_package("before", "1.0");

    // Fill the server's disk, as seen from inside its namespace.
    let filler_path = format!("/proc/{}/root{dir}/filler", s.pid());
    let mut filler = std::fs::File::create(&filler_path).expect("filler in the tmpfs");
    let chunk = vec![0u8; 64 * 1024];
    while filler.write_all(&chunk).is_ok() {}
    drop(filler);

    let refused = wait_for("a write refused for lack of space", || {
        let r = s.json(
            "POST",
            "/v1/packages",
            &json!({"name": "full", "version": "1"}),
        );
        (r.status != 201).then_some(r)
    });
    refused.assert_problem(503, "unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Reads go on.
    let list = s.get("/v1/packages");
    list.assert_status(200);
    assert_eq!(list.json()["items"][0]["name"], "before");
    s.get("/healthz").assert_status(200);

    // Space returns: writes succeed again without a restart.
    std::fs::remove_file(&filler_path).unwrap();
    wait_for("writes to work again", || {
        let r = s.json(
            "POST",
            "/v1/packages",
            &json!({"name": "after", "version": "1"}),
        );
        (r.status == 201).then_some(())
    });
    let names: Vec<String> = s.get("/v1/packages").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"before".to_string()), "{names:?}");
    assert!(names.contains(&"after".to_string()), "{names:?}");
    // Only acknowledged writes are there: the refused "full" ones are not.
    assert!(!names.contains(&"full".to_string()), "{names:?}");
    assert!(
        s.stderr()
            .contains("database reopened after a failed write")
    );
}
