//! kill -9 in the middle of many operations: after a restart every operation
//! finishes, running ones resume from their saved progress, and no package
//! status ever changes without its operation succeeding.

use std::collections::HashMap;

use serde_json::Value;

use crate::helpers::{TestServer, wait_for};

const ARGS: &[&str] = &[
    "--download-duration",
    "1500ms",
    "--workers",
    "4",
    "--log-format",
    "json",
];

fn all_operations(s: &TestServer) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = s.get(&format!("/v1/operations?limit=1000{cursor}")).json();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Every package marked `downloaded` has a succeeded download; every other
/// package is still `created`.
fn assert_statuses_match_operations(s: &TestServer) {
    let ops = all_operations(s);
    let succeeded: Vec<&Value> = ops.iter().filter(|o| o["state"] == "succeeded").collect();
    let packages = s.get("/v1/packages?limit=1000").json();
    for p in packages["items"].as_array().unwrap() {
        let has_success = succeeded.iter().any(|o| o["package_id"] == p["id"]);
        let expected = if has_success { "downloaded" } else { "created" };
        assert_eq!(p["status"], expected, "{p}");
    }
}

#[test]
fn kill_9_mid_flight_loses_nothing_and_resumes_from_saved_progress() {
    let mut s = TestServer::start_with(ARGS, &[]);
    let mut ids = Vec::new();
    for i in 0..24 {
        let id = s.create_package(&format!("crash-{i:02}"), "1")["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = s.send("POST", &format!("/v1/packages/{id}/download"), &[], None);
        r.assert_status(202);
        ids.push(id);
    }
    // Kill while some have finished, some run with progress, and some wait.
    let before = wait_for("a mix of states", || {
        let ops = all_operations(&s);
        let running_with_progress = ops
            .iter()
            .filter(|o| o["state"] == "running" && o["progress"].as_u64().unwrap() > 0)
            .count();
        let queued = ops.iter().filter(|o| o["state"] == "queued").count();
        (running_with_progress > 0 && queued > 0).then_some(ops)
    });
    s.kill9();

    let progress_at_kill: HashMap<String, u64> = before
        .iter()
        .filter(|o| o["state"] == "running")
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["progress"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(before.len(), 24, "nothing queued was lost before the kill");

    s.restart(ARGS, &[]);
    assert_statuses_match_operations(&s);
    let after_restart = all_operations(&s);
    assert_eq!(after_restart.len(), 24, "nothing queued was lost");

    // Everything finishes.
    let finished = wait_for("every operation to finish", || {
        let ops = all_operations(&s);
        ops.iter().all(|o| o["state"] == "succeeded").then_some(ops)
    });
    assert_eq!(finished.len(), 24);
    assert_statuses_match_operations(&s);
    for id in &ids {
        let p = s.get(&format!("/v1/packages/{id}")).json();
        assert_eq!(p["status"], "downloaded");
        assert_eq!(p["operation_id"], Value::Null);
    }

    // Each operation that was running resumed from at least the progress seen
    // before the kill, as the workers logged when they picked it up again.
    let log = s.stderr();
    let mut resumed = 0;
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["message"] != "operation started" {
            continue;
        }
        let Some(seen) = progress_at_kill.get(v["operation"].as_str().unwrap_or("")) else {
            continue;
        };
        let progress = v["progress"].as_u64().unwrap();
        assert!(
            progress >= *seen,
            "resumed at {progress}, had {seen}: {line}"
        );
        resumed += 1;
    }
    // (One seen running may have finished in the instant before the kill, so
    // not every one needs a resume; at least one must have.)
    assert!(resumed > 0, "no running operation was resumed");
}
