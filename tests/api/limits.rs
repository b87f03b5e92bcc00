//! Limits on what a client can grow: header size, open connections, waiting
//! long polls. Each answers with a clear problem, and the server recovers as
//! soon as the pressure goes.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::helpers::{TestServer, wait_for};

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// A raw HTTP/1.1 GET on a new connection; returns the whole answer.
fn raw_get(s: &TestServer, path: &str) -> String {
    let mut c = TcpStream::connect(addr(s)).unwrap();
    c.set_read_timeout(Some(crate::helpers::DEADLINE)).unwrap();
    // A refused connection may be answered (and half-closed) before the
    // request is written: the answer is read either way.
    let _ = write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn headers_over_16_kib_are_refused_with_431() {
    let s = TestServer::in_process(&[]);
    let big = "x".repeat(17 * 1024);
    let r = s.send("GET", "/v1/statuses", &[("x-padding", &big)], None);
    let body = r.assert_problem(431, "bad_request");
    assert!(body["detail"].as_str().unwrap().contains("16384"), "{body}");
    // Just under the limit is fine.
    let fits = "x".repeat(15 * 1024);
    s.send("GET", "/v1/statuses", &[("x-padding", &fits)], None)
        .assert_status(200);
}

#[test]
fn connections_past_the_limit_get_503_until_one_closes() {
    let s = TestServer::in_process(&["--max-connections", "2"]);
    let first = TcpStream::connect(addr(&s)).unwrap();
    let _second = TcpStream::connect(addr(&s)).unwrap();
    // The third is answered at once, and closed.
    let refused = wait_for("a refused connection", || {
        let r = raw_get(&s, "/healthz");
        r.starts_with("HTTP/1.1 503").then_some(r)
    });
    assert!(refused.contains("application/problem+json"), "{refused}");
    assert!(refused.contains("\"code\":\"unavailable\""), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );

    drop(first);
    wait_for("a connection after one closed", || {
        raw_get(&s, "/healthz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
}

#[test]
fn long_polls_past_the_limit_get_503_and_plain_reads_still_work() {
    let s = TestServer::start_with(&["--max-waiting", "1", "--download-duration", "60s"], &[]);
    let p = s.create_package("slow", "1.0");
    let op = s.send(
        "POST",
        &format!("/v1/packages/{}/download", p["id"].as_str().unwrap()),
        &[],
        None,
    );
    let op_path = format!("/v1/operations/{}", op.json()["id"].as_str().unwrap());
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| s.get(&format!("{op_path}?wait=4")));
        wait_for("the first long poll to wait", || {
            let m = s.send_as(None, "GET", "/metrics", &[], None).body;
            m.contains("\npackd_long_polls_waiting 1\n").then_some(())
        });
        let refused = s.get(&format!("{op_path}?wait=1"));
        refused.assert_problem(503, "unavailable");
        assert_eq!(refused.header("retry-after"), Some("1"));
        // A read that does not wait is not limited.
        s.get(&op_path).assert_status(200);
        waiting.join().unwrap().assert_status(200);
    });
    // The slot is free again.
    s.get(&format!("{op_path}?wait=1")).assert_status(200);
}

/// Sends GET /v1/statuses with `key` until a 429 (at most 50 times).
fn until_limited(s: &TestServer, key: &str) -> (Vec<u16>, Option<crate::helpers::Resp>) {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let r = s.send_as(Some(key), "GET", "/v1/statuses", &[], None);
        seen.push(r.status);
        if r.status == 429 {
            return (seen, Some(r));
        }
    }
    (seen, None)
}

#[test]
fn a_key_over_its_rate_gets_429_with_the_ratelimit_fields() {
    let s = TestServer::in_process(&["--rate-limit", "2"]);
    let ok = s.get("/v1/statuses");
    ok.assert_status(200);
    assert_eq!(ok.header("ratelimit-policy"), Some("\"key\";q=2;w=1"));
    assert!(ok.header("ratelimit").unwrap().starts_with("\"key\";r="));

    let (seen, limited) = until_limited(&s, crate::helpers::ADMIN_KEY);
    let limited = limited.unwrap_or_else(|| panic!("never limited: {seen:?}"));
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert!(limited.header("ratelimit").unwrap().contains("r=0"));
    // The bucket refills: one request a half second. (Every admin call
    // below waits its turn the same way: the admin key is limited too.)
    let admin = |f: &dyn Fn() -> crate::helpers::Resp| {
        wait_for("the admin key to be let through", || {
            let r = f();
            (r.status != 429).then_some(r)
        })
    };
    admin(&|| s.get("/v1/statuses")).assert_status(200);

    // A key's own limit overrides the server's; 0 means none.
    let free = admin(&|| {
        s.json(
            "POST",
            "/v1/keys",
            &serde_json::json!({"name": "free", "role": "read", "rate_limit": 0}),
        )
    });
    free.assert_status(201);
    assert_eq!(free.json()["rate_limit"], 0);
    let secret = free.json()["key"].as_str().unwrap().to_string();
    let (seen, limited) = until_limited(&s, &secret);
    assert!(limited.is_none(), "an unlimited key was limited: {seen:?}");
    let r = s.send_as(Some(&secret), "GET", "/v1/statuses", &[], None);
    assert_eq!(r.header("ratelimit"), None);
    // Back to the server's limit.
    let id = free.id();
    let back = admin(&|| {
        s.json(
            "PATCH",
            &format!("/v1/keys/{id}"),
            &serde_json::json!({"rate_limit": null}),
        )
    });
    back.assert_status(200);
    assert_eq!(back.json()["rate_limit"], serde_json::Value::Null);
    assert!(until_limited(&s, &secret).1.is_some());
}

#[test]
fn failed_authentications_throttle_the_address_and_recover() {
    let s = TestServer::in_process(&["--auth-failure-burst", "3"]);
    let bad = "packd_this-is-not-anyones-key-0000000000000000000000";
    let (seen, limited) = until_limited(&s, bad);
    assert_eq!(&seen[..3], &[401, 401, 401], "{seen:?}");
    let limited = limited.unwrap_or_else(|| panic!("never throttled: {seen:?}"));
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    // While throttled, the address gets no answer about any key: that is
    // what makes guessing slow.
    assert_eq!(s.get("/v1/statuses").status, 429);
    // Requests without a key guess nothing and do not count.
    wait_for("the address to be let through again", || {
        (s.get("/v1/statuses").status == 200).then_some(())
    });
    for _ in 0..5 {
        s.send_as(None, "GET", "/v1/statuses", &[], None)
            .assert_problem(401, "unauthorized");
    }
    s.get("/v1/statuses").assert_status(200);
}
