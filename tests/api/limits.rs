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
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn headers_over_16_kib_are_refused_with_431() {
    let s = TestServer::start();
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
    let s = TestServer::start_with(&["--max-connections", "2"], &[]);
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
