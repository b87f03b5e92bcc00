//! Operations: transitions, conflicts, idempotency, cancel, wait, filters, retries.

use serde_json::{Value, json};

use crate::helpers::{TestServer, wait_for};

const FAST: &[&str] = &[
    "--download-duration",
    "200ms",
    "--activate-duration",
    "100ms",
    "--deactivate-duration",
    "100ms",
];
const SLOW: &[&str] = &[
    "--download-duration",
    "30s",
    "--activate-duration",
    "30s",
    "--workers",
    "1",
];

fn start(s: &TestServer, pkg: &str, op: &str) -> Value {
    let r = s.send("POST", &format!("/v1/packages/{pkg}/{op}"), &[], None);
    r.assert_status(202);
    let body = r.json();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/operations/{}", body["id"].as_str().unwrap()).as_str())
    );
    body
}

/// Waits (server-side long poll, bounded) until the operation is finished.
fn finish(s: &TestServer, op: &Value) -> Value {
    let id = op["id"].as_str().unwrap();
    wait_for("the operation to finish", || {
        let r = s.get(&format!("/v1/operations/{id}?wait=5"));
        r.assert_status(200);
        let body = r.json();
        ["succeeded", "failed", "cancelled"]
            .contains(&body["state"].as_str().unwrap())
            .then_some(body)
    })
}

#[test]
fn every_transition_runs_through_an_operation() {
    let s = TestServer::in_process(FAST);
    let p = s.create_package("nginx", "1.27");
    let id = p["id"].as_str().unwrap();

    let op = start(&s, id, "download");
    assert_eq!(op["state"], "queued");
    assert_eq!(op["kind"], "download");
    assert_eq!(op["progress"], 0);
    // A simulated download counts no bytes.
    assert_eq!(
        (&op["bytes_done"], &op["bytes_total"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(op["package_id"], id);
    let marked = s.package(id);
    assert_eq!(
        marked.operation_id.as_deref(),
        op["id"].as_str(),
        "the package points at its operation"
    );
    assert_eq!(marked.status, "created", "no status change before success");

    let done = finish(&s, &op);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["attempts"], 1);
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    let p = s.package(id);
    assert_eq!(p.status, "downloaded");
    assert_eq!(p.operation_id, None);

    assert_eq!(finish(&s, &start(&s, id, "activate"))["state"], "succeeded");
    assert_eq!(s.package(id).status, "active");
    assert_eq!(
        finish(&s, &start(&s, id, "deactivate"))["state"],
        "succeeded"
    );
    assert_eq!(s.package(id).status, "downloaded");

    // A new version means new bits: back to created.
    let r = s.json(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &json!({"version": "1.28"}),
    );
    assert_eq!(r.json()["status"], "created");
}

#[test]
fn wrong_status_and_work_in_flight_are_conflicts() {
    let s = TestServer::in_process(SLOW);
    let p = s.create_package("redis", "7");
    let id = p["id"].as_str().unwrap();
    let body = s
        .send("POST", &format!("/v1/packages/{id}/activate"), &[], None)
        .assert_problem(409, "invalid_transition");
    assert!(
        body["detail"].as_str().unwrap().contains("downloaded"),
        "{body}"
    );
    s.send("POST", &format!("/v1/packages/{id}/deactivate"), &[], None)
        .assert_problem(409, "invalid_transition");

    start(&s, id, "download");
    s.send("POST", &format!("/v1/packages/{id}/download"), &[], None)
        .assert_problem(409, "operation_in_progress");
    s.json(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &json!({"name": "x"}),
    )
    .assert_problem(409, "operation_in_progress");
    s.send("DELETE", &format!("/v1/packages/{id}"), &[], None)
        .assert_problem(409, "operation_in_progress");
    s.send(
        "POST",
        "/v1/packages/01900000-0000-7000-8000-000000000000/download",
        &[],
        None,
    )
    .assert_problem(404, "not_found");
}

#[test]
fn idempotency_key_returns_the_same_operation() {
    let s = TestServer::in_process(SLOW);
    let a = s.new_package("a", "1").id;
    let b = s.new_package("b", "1").id;
    let hdr = [("idempotency-key", "retry-safe-1")];
    let first = s.send("POST", &format!("/v1/packages/{a}/download"), &hdr, None);
    first.assert_status(202);
    let again = s.send("POST", &format!("/v1/packages/{a}/download"), &hdr, None);
    again.assert_status(202);
    assert_eq!(first.json()["id"], again.json()["id"]);
    let ops = s.get(&format!("/v1/operations?package_id={a}")).json();
    assert_eq!(ops["items"].as_array().unwrap().len(), 1);

    // The same key on another call is refused.
    let body = s
        .send("POST", &format!("/v1/packages/{b}/download"), &hdr, None)
        .assert_problem(422, "validation_failed");
    assert_eq!(body["field"], "Idempotency-Key");
    let long = "k".repeat(256);
    s.send(
        "POST",
        &format!("/v1/packages/{b}/download"),
        &[("idempotency-key", &long)],
        None,
    )
    .assert_problem(422, "validation_failed");
    // Without a key a repeat is a conflict, as the README says.
    s.send("POST", &format!("/v1/packages/{a}/download"), &[], None)
        .assert_problem(409, "operation_in_progress");
}

#[test]
fn cancel_in_each_state() {
    let s = TestServer::in_process(SLOW);
    let running_pkg = s.new_package("first", "1").id;
    let queued_pkg = s.new_package("second", "1").id;
    let running = start(&s, &running_pkg, "download");
    let rid = running["id"].as_str().unwrap().to_string();
    wait_for("the first operation to run", || {
        (s.get(&format!("/v1/operations/{rid}")).json()["state"] == "running").then_some(())
    });
    // One worker is busy, so this one stays queued.
    let queued = start(&s, &queued_pkg, "download");
    let qid = queued["id"].as_str().unwrap().to_string();

    let r = s.send("POST", &format!("/v1/operations/{qid}/cancel"), &[], None);
    r.assert_status(200);
    assert_eq!(r.json()["state"], "cancelled");
    let p = s.package(&queued_pkg);
    assert_eq!(p.status, "created");
    assert_eq!(p.operation_id, None);

    let r = s.send("POST", &format!("/v1/operations/{rid}/cancel"), &[], None);
    r.assert_status(200);
    assert_eq!(r.json()["cancel_requested"], true);
    let done = finish(&s, &running);
    assert_eq!(done["state"], "cancelled");
    assert!(done["progress"].as_u64().unwrap() < 100);
    let p = s.package(&running_pkg);
    assert_eq!(p.status, "created", "cancel never changes a status");
    assert_eq!(p.operation_id, None);

    s.send("POST", &format!("/v1/operations/{rid}/cancel"), &[], None)
        .assert_problem(409, "already_finished");
    s.send("POST", &format!("/v1/operations/{qid}/cancel"), &[], None)
        .assert_problem(409, "already_finished");
    s.send(
        "POST",
        "/v1/operations/01900000-0000-7000-8000-000000000000/cancel",
        &[],
        None,
    )
    .assert_problem(404, "not_found");
    // The package is free for a new operation.
    start(&s, &queued_pkg, "download");
}

#[test]
fn wait_answers_on_finish_or_when_time_is_up() {
    let s = TestServer::in_process(SLOW);
    let id = s.new_package("slow", "1").id;
    let op = start(&s, &id, "download");
    let oid = op["id"].as_str().unwrap();
    let t = std::time::Instant::now();
    let r = s.get(&format!("/v1/operations/{oid}?wait=1"));
    r.assert_status(200);
    let waited = t.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "{waited:?}"
    );
    assert!(!["succeeded", "failed"].contains(&r.json()["state"].as_str().unwrap()));
    s.get(&format!("/v1/operations/{oid}?wait=61"))
        .assert_problem(400, "bad_request");
    s.get(&format!("/v1/operations/{oid}?wait=-1"))
        .assert_problem(400, "bad_request");

    // A finish wakes the waiter at once, long before its wait is over.
    let fast = TestServer::in_process(&["--download-duration", "300ms"]);
    let id = fast.new_package("quick", "1").id;
    let op = start(&fast, &id, "download");
    let t = std::time::Instant::now();
    let r = fast.get(&format!(
        "/v1/operations/{}?wait=30",
        op["id"].as_str().unwrap()
    ));
    assert_eq!(r.json()["state"], "succeeded");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn list_filters_by_package_and_state() {
    let s = TestServer::in_process(FAST);
    let a = s.new_package("a", "1").id;
    let b = s.new_package("b", "1").id;
    let oa = start(&s, &a, "download");
    finish(&s, &oa);
    let oa2 = start(&s, &a, "activate");
    finish(&s, &oa2);
    let ob = start(&s, &b, "download");
    finish(&s, &ob);

    let ids = |q: &str| -> Vec<Value> {
        let r = s.get(&format!("/v1/operations?{q}"));
        r.assert_status(200);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].clone())
            .collect()
    };
    assert_eq!(
        ids(&format!("package_id={a}")),
        vec![oa["id"].clone(), oa2["id"].clone()]
    );
    assert_eq!(ids("state=succeeded").len(), 3);
    assert_eq!(ids("state=queued"), Vec::<Value>::new());
    assert_eq!(
        ids(&format!("package_id={b}&state=succeeded")),
        vec![ob["id"].clone()]
    );
    let page = s.get("/v1/operations?limit=2").json();
    let next = page["next_cursor"].as_str().unwrap();
    assert_eq!(
        ids(&format!("limit=2&cursor={next}")),
        vec![ob["id"].clone()]
    );
    s.get("/v1/operations?state=done")
        .assert_problem(400, "bad_request");
    s.get("/v1/operations?package_id=nope")
        .assert_problem(400, "bad_request");
    s.get("/v1/operations/01900000-0000-7000-8000-000000000000")
        .assert_problem(404, "not_found");
}

#[test]
fn failed_attempts_retry_then_fail_leaving_the_status() {
    let s = TestServer::in_process(&[
        "--download-duration",
        "50ms",
        "--stub-failure-rate",
        "1",
        "--max-attempts",
        "3",
        "--retry-delay",
        "20ms",
    ]);
    let id = s.new_package("doomed", "1").id;
    let done = finish(&s, &start(&s, &id, "download"));
    assert_eq!(done["state"], "failed");
    assert_eq!(done["attempts"], 3);
    assert!(done["error"].as_str().unwrap().contains("stub failure"));
    let p = s.package(&id);
    assert_eq!(p.status, "created");
    assert_eq!(p.operation_id, None);
}

#[test]
fn retries_get_flaky_work_done() {
    let s = TestServer::in_process(&[
        "--download-duration",
        "20ms",
        "--stub-failure-rate",
        "0.5",
        "--max-attempts",
        "30",
        "--retry-delay",
        "5ms",
    ]);
    let mut ops = Vec::new();
    for i in 0..12 {
        let id = s.create_package(&format!("flaky-{i}"), "1")["id"]
            .as_str()
            .unwrap()
            .to_string();
        ops.push((id.clone(), start(&s, &id, "download")));
    }
    let mut retried = 0;
    for (id, op) in &ops {
        let done = finish(&s, op);
        assert_eq!(done["state"], "succeeded", "{done}");
        if done["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
        assert_eq!(s.package(id).status, "downloaded");
    }
    assert!(
        retried > 0,
        "with half the attempts failing, some must retry"
    );
}

#[test]
fn sigterm_pauses_work_and_the_next_start_resumes_it() {
    let mut s = TestServer::start_with(&["--download-duration", "3s"], &[]);
    let id = s.new_package("long", "1").id;
    let op = start(&s, &id, "download");
    let oid = op["id"].as_str().unwrap().to_string();
    let seen = wait_for("some progress", || {
        let o = s.get(&format!("/v1/operations/{oid}")).json();
        (o["progress"].as_u64().unwrap() >= 20).then_some(o["progress"].as_u64().unwrap())
    });
    let t = std::time::Instant::now();
    assert!(s.terminate().success());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "stops at the next step"
    );

    s.restart(&["--download-duration", "3s"], &[]);
    let o = s.get(&format!("/v1/operations/{oid}")).json();
    assert!(
        o["progress"].as_u64().unwrap() >= seen,
        "progress kept: {o}"
    );
    let done = finish(&s, &op);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(s.package(&id).status, "downloaded");
}

/// A SIGTERM pause is not a failed attempt, and a paused operation keeps its
/// place in the queue: three stops in a row leave it on its first attempt,
/// running before the one queued after it.
#[test]
fn sigterm_pauses_use_no_attempt_and_keep_the_queue_order() {
    let mut s = TestServer::start_with(SLOW, &[]);
    let first = s.new_package("first", "1").id;
    let second = s.new_package("second", "1").id;
    let first_op = start(&s, &first, "download")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second_op = start(&s, &second, "download")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for round in 0..3 {
        let running = wait_for("the first operation to run", || {
            let o = s.get(&format!("/v1/operations/{first_op}")).json();
            (o["state"] == "running").then_some(o)
        });
        assert_eq!(running["attempts"], 1, "round {round}: {running}");
        assert_eq!(
            s.get(&format!("/v1/operations/{second_op}")).json()["state"],
            "queued",
            "round {round}: the one behind it must still wait"
        );
        assert!(s.terminate().success());
        s.restart(SLOW, &[]);
    }
    let o = wait_for("the first operation to run again", || {
        let o = s.get(&format!("/v1/operations/{first_op}")).json();
        (o["state"] == "running").then_some(o)
    });
    assert_eq!(o["attempts"], 1, "{o}");
}
