//! Many clients at once on the same thing: exactly one wins, the others get
//! the conflict the API names, and nothing is half done.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::helpers::TestServer;

const CLIENTS: usize = 32;

/// Runs `f(i)` on `CLIENTS` threads released together; returns the statuses.
fn all_at_once(f: impl Fn(usize) -> u16 + Sync) -> Vec<u16> {
    let barrier = std::sync::Barrier::new(CLIENTS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn concurrent_creates_of_one_name_and_version_make_one_package() {
    let s = TestServer::in_process(&[]);
    let statuses = all_at_once(|_| {
        s.json(
            "POST",
            "/v1/packages",
            &json!({"name": "racy", "version": "1.0"}),
        )
        .status
    });
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), CLIENTS - 1, "{statuses:?}");
    let list = s.get("/v1/packages?name=racy").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[test]
fn concurrent_patches_with_one_if_match_let_one_through() {
    let s = TestServer::in_process(&[]);
    let p = s.create_package("contended", "1.0");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());
    let statuses = all_at_once(|i| {
        s.json_with(
            "PATCH",
            &path,
            &[("if-match", "\"1\"")],
            &json!({"name": format!("winner-{i}")}),
        )
        .status
    });
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 412), CLIENTS - 1, "{statuses:?}");
    let after = s.get(&path).json();
    assert_eq!(after["revision"], 2, "exactly one change was applied");
    let winner = statuses.iter().position(|st| *st == 200).unwrap();
    assert_eq!(after["name"], format!("winner-{winner}"));
}

#[test]
fn concurrent_downloads_of_one_package_start_one_operation() {
    let s = TestServer::in_process(&["--download-duration", "60s"]);
    let p = s.create_package("once", "1.0");
    let id = p["id"].as_str().unwrap();
    let statuses = all_at_once(|_| {
        s.send("POST", &format!("/v1/packages/{id}/download"), &[], None)
            .status
    });
    assert_eq!(count(&statuses, 202), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), CLIENTS - 1, "{statuses:?}");
    let ops = s.get(&format!("/v1/operations?package_id={id}")).json();
    assert_eq!(ops["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_rotated_secret_is_refused_from_the_moment_rotation_answers() {
    // Every refusal here is deliberate: no address throttle, so each is a 401.
    let s = TestServer::in_process(&["--auth-failure-burst", "0"]);
    let created = s.json("POST", "/v1/keys", &json!({"name": "busy", "role": "read"}));
    created.assert_status(201);
    let id = created.id();
    let mut secret = created.json()["key"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let rotated = AtomicBool::new(false);
        let old = secret.clone();
        let new_secret = std::thread::scope(|scope| {
            let users: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let deadline = std::time::Instant::now() + crate::helpers::DEADLINE;
                        let mut refused_after = 0;
                        // Until 20 requests were sent after the rotation answered.
                        while refused_after < 20 {
                            assert!(std::time::Instant::now() < deadline, "timed out");
                            // Read the flag before sending: a request sent
                            // after the rotation answered must be refused.
                            let after = rotated.load(Ordering::SeqCst);
                            let st = s
                                .send_as(Some(&old), "GET", "/v1/statuses", &[], None)
                                .status;
                            if after {
                                assert_eq!(st, 401, "an old secret worked after its rotation");
                                refused_after += 1;
                            } else {
                                assert!(st == 200 || st == 401, "{st}");
                            }
                        }
                        refused_after
                    })
                })
                .collect();
            let r = s.json("POST", &format!("/v1/keys/{id}/rotate"), &json!({}));
            r.assert_status(200);
            rotated.store(true, Ordering::SeqCst);
            for u in users {
                u.join().unwrap();
            }
            r.json()["key"].as_str().unwrap().to_string()
        });
        assert_ne!(new_secret, old);
        s.send_as(Some(&new_secret), "GET", "/v1/statuses", &[], None)
            .assert_status(200);
        secret = new_secret;
    }
}
