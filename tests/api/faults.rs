//! Storage faults: a full disk answers 503 to writes, keeps serving reads,
//! and recovers by itself when space returns, with nothing acknowledged lost.
//!
//! The server runs in a mount namespace of its own with its database on a
//! 3 MiB tmpfs (`unshare`; as a non-root user through a user namespace), and
//! the test fills that disk through `/proc/<pid>/root`. Where neither root
//! nor unprivileged user namespaces are there (some containers), the tests
//! say so on standard error and pass without running, unless
//! `PACKD_TEST_NEEDS_NAMESPACES=1` (CI sets it) makes that a failure.

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

/// The `unshare` that gives the server a mount namespace of its own.
fn unshare() -> Vec<&'static str> {
    let mut wrapper = vec!["unshare", "--mount", "--propagation", "private"];
    if !is_root() {
        wrapper.push("--map-root-user");
    }
    wrapper
}

/// Whether this machine can mount a tmpfs in a namespace of its own: why
/// not, if it cannot.
fn namespaces_missing() -> Option<String> {
    static MISSING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MISSING
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let probe = std::process::Command::new(unshare()[0])
                .args(&unshare()[1..])
                .args(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(dir.path())
                .output();
            match probe {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                Err(e) => Some(format!("cannot run unshare: {e}")),
            }
        })
        .clone()
}

/// A server whose database is on a 3 MiB tmpfs of its own, and the path (as
/// seen from here) of a file that fills that disk; `None` (the test is
/// skipped, and says why) where the machine cannot do it.
fn on_small_disk(args: &[&str]) -> Option<(TestServer, String, tempfile::TempDir)> {
    if let Some(why) = namespaces_missing() {
        let message = format!(
            "the storage fault tests need root or unprivileged user namespaces \
             to mount a small tmpfs ({why})"
        );
        assert!(
            std::env::var_os("PACKD_TEST_NEEDS_NAMESPACES").is_none_or(|v| v != "1"),
            "{message}"
        );
        // Straight to standard error: the test harness would swallow an
        // eprintln! of a test that passes.
        let _ = writeln!(std::io::stderr(), "skipped: {message}");
        return None;
    }
    let mount_dir = tempfile::tempdir().unwrap();
    let dir = mount_dir.path().to_str().unwrap().to_string();
    let script = r#"mount -t tmpfs -o size=3m tmpfs "$0" && exec "$@""#;
    let mut wrapper = unshare();
    wrapper.extend(["sh", "-c", script, dir.as_str()]);
    let db = mount_dir.path().join("packd.redb");
    let s = TestServer::spawn_in(&wrapper, &db, args, &[]).unwrap_or_else(|e| panic!("{e}"));
    let filler = format!("/proc/{}/root{dir}/filler", s.pid());
    Some((s, filler, mount_dir))
}

/// Fills the server's disk, as seen from inside its namespace.
fn fill(filler_path: &str) {
    let mut filler = std::fs::File::create(filler_path).expect("filler in the tmpfs");
    let chunk = vec![0u8; 64 * 1024];
    while filler.write_all(&chunk).is_ok() {}
}

/// Waits until the server refuses a write for lack of space.
fn wait_until_full(s: &TestServer) -> crate::helpers::Resp {
    wait_for("a write refused for lack of space", || {
        let r = s.json(
            "POST",
            "/v1/packages",
            &json!({"name": "full", "version": "1"}),
        );
        (r.status != 201).then_some(r)
    })
}

#[test]
fn a_full_disk_answers_503_keeps_reads_and_recovers() {
    let Some((s, filler_path, _dir)) = on_small_disk(&[]) else {
        return;
    };
    s.create_package("before", "1.0");
    fill(&filler_path);

    let refused = wait_until_full(&s);
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

/// Operations whose outcome could not be written while the disk was full
/// finish by themselves once it has room again, and cancel works on them.
#[test]
fn operations_finish_on_their_own_after_a_full_disk() {
    // Long enough that the disk is full before it ends, even on a busy
    // machine.
    let Some((s, filler_path, _dir)) = on_small_disk(&["--download-duration", "4s"]) else {
        return;
    };
    let quick = s.new_package("quick", "1").id;
    let op = s.send("POST", &format!("/v1/packages/{quick}/download"), &[], None);
    op.assert_status(202);
    let op = op.id();
    // Claimed before the disk fills (a claim is a write too).
    wait_for("the operation to run", || {
        (s.get(&format!("/v1/operations/{op}")).json()["state"] == "running").then_some(())
    });
    fill(&filler_path);
    wait_until_full(&s);
    // The download ends while nothing can be written. (Creates keep the
    // disk full: redb can reuse pages freed inside its file.)
    let mut n = 0;
    wait_for("the outcome to be refused by the disk", || {
        n += 1;
        s.json(
            "POST",
            "/v1/packages",
            &json!({"name": format!("pressure-{n}"), "version": "1"}),
        );
        s.stderr()
            .contains("operation outcome not recorded; retrying")
            .then_some(())
    });

    std::fs::remove_file(&filler_path).unwrap();
    // (A read may meet the moment the writer reopens the file: 503, retry.)
    let done = wait_for("the operation to finish without a restart", || {
        let o = s.get(&format!("/v1/operations/{op}")).json();
        (o["state"].is_string() && o["state"] != "running").then_some(o)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    let p = s.get(&format!("/v1/packages/{quick}")).json();
    assert_eq!(p["status"], "downloaded");
    assert_eq!(p["operation_id"], serde_json::Value::Null);
}

#[test]
fn cancel_works_on_an_operation_that_ran_through_a_full_disk() {
    let Some((s, filler_path, _dir)) = on_small_disk(&["--download-duration", "20s"]) else {
        return;
    };
    let slow = s.new_package("slow", "1").id;
    let op = s.send("POST", &format!("/v1/packages/{slow}/download"), &[], None);
    let op = op.id();
    wait_for("the operation to run", || {
        (s.get(&format!("/v1/operations/{op}")).json()["state"] == "running").then_some(())
    });
    fill(&filler_path);
    wait_until_full(&s);
    // While the disk is full a cancel is either taken (a small write can fit
    // in the file's free pages) or refused with 503: never lost in silence.
    let during = s.send("POST", &format!("/v1/operations/{op}/cancel"), &[], None);
    if during.status != 200 {
        during.assert_problem(503, "unavailable");
    }

    std::fs::remove_file(&filler_path).unwrap();
    let cancel = wait_for("cancel to be taken", || {
        let r = s.send("POST", &format!("/v1/operations/{op}/cancel"), &[], None);
        (r.status == 200 || r.status == 409).then_some(r)
    });
    if cancel.status == 200 {
        assert_eq!(cancel.json()["cancel_requested"], true);
    }
    let done = wait_for("the cancel to stop the operation", || {
        let o = s.get(&format!("/v1/operations/{op}")).json();
        (o["state"].is_string() && o["state"] != "running").then_some(o)
    });
    assert_eq!(done["state"], "cancelled", "{done}");
    let p = s.get(&format!("/v1/packages/{slow}")).json();
    assert_eq!(p["status"], "created");
    assert_eq!(p["operation_id"], serde_json::Value::Null);
}
