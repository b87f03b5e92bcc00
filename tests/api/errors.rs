//! Every class of client mistake gets problem+json with the right status and
//! code, including the ones the framework itself detects.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::helpers::TestServer;

#[test]
fn broken_json_is_400() {
    let s = TestServer::in_process(&[]);
    let r = s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(b"{\"name\": \"x\", "),
    );
    r.assert_problem(400, "bad_request");
    let r = s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(b""),
    );
    r.assert_problem(400, "bad_request");
}

#[test]
fn unknown_field_is_400_and_names_it() {
    let s = TestServer::in_process(&[]);
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "x", "version": "1", "colour": "red"}),
    );
    let body = r.assert_problem(400, "bad_request");
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
}

#[test]
fn wrong_content_type_is_415() {
    let s = TestServer::in_process(&[]);
    let r = s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "text/plain")],
        Some(br#"{"name":"x","version":"1"}"#),
    );
    r.assert_problem(415, "bad_request");
    let r = s.send(
        "POST",
        "/v1/packages",
        &[],
        Some(br#"{"name":"x","version":"1"}"#),
    );
    r.assert_problem(415, "bad_request");
}

#[test]
fn bad_query_parameters_are_400() {
    let s = TestServer::in_process(&[]);
    for q in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "cursor=nonsense",
        "cursor=",
        "status=gone",
    ] {
        s.get(&format!("/v1/packages?{q}"))
            .assert_problem(400, "bad_request");
    }
    s.get("/v1/packages?limit=1000").assert_status(200);
    s.get("/v1/packages?limit=1").assert_status(200);
}

#[test]
fn unknown_route_is_404_and_wrong_method_is_405() {
    let s = TestServer::in_process(&[]);
    s.get("/v1/nothing-here").assert_problem(404, "not_found");
    s.get("/nothing").assert_problem(404, "not_found");
    // Every 405 says which methods the path has (RFC 9110 §15.5.6).
    for (method, path, allow) in [
        ("PUT", "/v1/packages", "GET, POST"),
        ("POST", "/v1/statuses", "GET"),
        ("DELETE", "/healthz", "GET"),
        ("TRACE", "/metrics", "GET"),
        (
            "PUT",
            "/v1/packages/0190a000-0000-7000-8000-000000000000",
            "GET, PATCH, DELETE",
        ),
    ] {
        let r = s.send(method, path, &[], None);
        r.assert_problem(405, "method_not_allowed");
        let mut got: Vec<&str> = r.header("allow").unwrap_or("").split(", ").collect();
        let mut want: Vec<&str> = allow.split(", ").collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn body_over_64_kib_is_413_with_or_without_content_length() {
    let s = TestServer::in_process(&[]);
    let big = format!(r#"{{"name":"{}","version":"1"}}"#, "x".repeat(70 * 1024));
    let r = s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(big.as_bytes()),
    );
    r.assert_problem(413, "payload_too_large");

    // Chunked: no Content-Length to trust, the bytes are counted.
    let mut stream = TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /v1/packages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..5 {
        // The server may answer and close before reading everything.
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // Just under the limit is fine (and then judged on its content).
    let ok = format!(r#"{{"name":"{}","version":"1"}}"#, "x".repeat(250));
    s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(ok.as_bytes()),
    )
    .assert_problem(422, "validation_failed");
}

#[test]
fn request_id_is_echoed_or_generated() {
    let s = TestServer::start();
    let r = s.send(
        "GET",
        "/healthz",
        &[("x-request-id", "trace-abc-123")],
        None,
    );
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    let r = s.get("/v1/packages/not-a-uuid");
    let generated = r.header("x-request-id").expect("generated id").to_string();
    let parsed = uuid::Uuid::parse_str(&generated).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 7, "{generated}");
    let r2 = s.get("/nothing");
    assert_ne!(r2.header("x-request-id").unwrap(), generated);
    // An unusable id (too long) is replaced, not echoed.
    let long = "a".repeat(500);
    let r = s.send("GET", "/healthz", &[("x-request-id", &long)], None);
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));
    // Errors carry it too, and the access log names it.
    let r = s.send(
        "GET",
        "/nope",
        &[("x-request-id", "find-me-in-the-log")],
        None,
    );
    assert_eq!(r.header("x-request-id"), Some("find-me-in-the-log"));
    crate::helpers::wait_for("the access log line", || {
        s.stderr().contains("find-me-in-the-log").then_some(())
    });
}

#[test]
fn cors_is_off_by_default_and_allows_named_origins() {
    let s = TestServer::in_process(&[]);
    let r = s.send(
        "GET",
        "/v1/packages",
        &[("origin", "https://ui.example")],
        None,
    );
    assert_eq!(r.header("access-control-allow-origin"), None);

    let s = TestServer::in_process(&["--cors-origin", "https://ui.example"]);
    let r = s.send(
        "GET",
        "/v1/packages",
        &[("origin", "https://ui.example")],
        None,
    );
    r.assert_status(200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ui.example")
    );
    let pre = s.send(
        "OPTIONS",
        "/v1/packages",
        &[
            ("origin", "https://ui.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        None,
    );
    assert!(pre.status < 300, "preflight: {} {}", pre.status, pre.body);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://ui.example")
    );
    let other = s.send(
        "GET",
        "/v1/packages",
        &[("origin", "https://evil.example")],
        None,
    );
    assert_ne!(
        other.header("access-control-allow-origin"),
        Some("https://evil.example")
    );

    // The explorer at /docs calls the API from the server's own origin:
    // not a cross-origin request, whatever the list (it was 403).
    let own = s.base.clone();
    let body = r#"{"name":"from-docs","version":"1"}"#;
    let r = s.send(
        "POST",
        "/v1/packages",
        &[
            ("origin", own.as_str()),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    r.assert_status(201);
    // Another port of the same host is another origin.
    let elsewhere = own.replace(&s.base[s.base.rfind(':').unwrap()..], ":1");
    let r = s.send(
        "POST",
        "/v1/packages",
        &[
            ("origin", elsewhere.as_str()),
            ("content-type", "application/json"),
        ],
        Some(br#"{"name":"from-elsewhere","version":"1"}"#),
    );
    assert_ne!(r.status, 201, "{}", r.body);
}

#[test]
fn a_json_member_given_twice_is_400() {
    let s = TestServer::in_process(&[]);
    let r = s.send(
        "POST",
        "/v1/packages",
        &[("content-type", "application/json")],
        Some(br#"{"name":"looks-safe","version":"1","name":"evil"}"#),
    );
    let body = r.assert_problem(400, "bad_request");
    assert!(
        body["detail"].as_str().unwrap().contains("\"name\" twice"),
        "{body}"
    );
    // Nothing was stored under either name.
    assert_eq!(s.get("/v1/packages").json()["items"], json!([]));
    let id = s.new_package("p", "1").id;
    s.send(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &[("content-type", "application/json; charset=utf-8")],
        Some(br#"{"version":"2","version":"3"}"#),
    )
    .assert_problem(400, "bad_request");
}

#[test]
fn names_with_invisible_format_characters_are_422() {
    let s = TestServer::in_process(&[]);
    // A right-to-left override, a zero-width space, a byte order mark, and
    // one outside the Basic Multilingual Plane (a language tag).
    for (field, bad) in [
        ("name", "evil\u{202E}gpj.exe"),
        ("name", "open\u{200B}ssl"),
        ("version", "1.0\u{FEFF}"),
        ("name", "tag\u{E0041}"),
    ] {
        let mut body = json!({"name": "ok", "version": "1"});
        body[field] = json!(bad);
        let r = s.json("POST", "/v1/packages", &body);
        let problem = r.assert_problem(422, "validation_failed");
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("format characters"),
            "{problem}"
        );
    }
    // Visible non-ASCII is fine.
    s.create_package("libé-ünïcode", "1.0-β");
}

#[test]
fn an_idempotency_key_that_is_not_visible_ascii_is_422() {
    let s = TestServer::in_process(&[]);
    let id = s.new_package("p", "1").id;
    let r = s.send(
        "POST",
        &format!("/v1/packages/{id}/download"),
        &[("idempotency-key", "clé-1")],
        None,
    );
    let body = r.assert_problem(422, "validation_failed");
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    // Nothing was started.
    assert_eq!(
        s.get(&format!("/v1/packages/{id}")).json()["operation_id"],
        json!(null)
    );
}

/// A header the framework cannot read as text must not vanish: an If-Match
/// that is not visible ASCII is a 400, not a change without its condition.
#[test]
fn an_if_match_that_is_not_visible_ascii_is_400() {
    let s = TestServer::in_process(&[]);
    let id = s.new_package("p", "1").id;
    let r = s.json_with(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &[("if-match", "\"1\u{84}\"")],
        &json!({"version": "2"}),
    );
    let body = r.assert_problem(400, "bad_request");
    assert_eq!(body["field"], "If-Match", "{body}");
    s.send(
        "DELETE",
        &format!("/v1/packages/{id}"),
        &[("if-match", "é")],
        None,
    )
    .assert_problem(400, "bad_request");
    assert_eq!(s.get(&format!("/v1/packages/{id}")).json()["version"], "1");
}

/// Requests so malformed that the HTTP library refuses them before packd
/// sees them are answered with their status and closed, and the server goes
/// on serving. (Their bodies are empty: README, "Errors hyper answers".)
#[test]
fn requests_the_http_library_refuses_are_answered_and_closed() {
    let s = TestServer::in_process(&[]);
    let addr = s.base.trim_start_matches("http://").to_string();
    let many: String = (0..600).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: [(&[u8], &str); 6] = [
        (b"POST /v1/packages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "400"),
        (
            b"POST /v1/packages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            "400",
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-N: a\x00b\r\n\r\n", "400"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-F: a\r\n b\r\n\r\n", "400"),
        (b"GET /healthz\r\n\r\n", "400"),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").leak().as_bytes(),
            "431",
        ),
    ];
    for (request, status) in cases {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(crate::helpers::DEADLINE)).unwrap();
        c.write_all(request).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(request)
        );
    }
    s.get("/healthz").assert_status(200);
}

/// The OpenAPI layer's refusals of a query parameter, in packd's words.
#[test]
fn a_bad_query_parameter_is_said_plainly() {
    let s = TestServer::in_process(&[]);
    for (query, said) in [
        (
            "/v1/packages?status=bogus",
            "parameter `status`: must be one of created, downloaded, active",
        ),
        (
            "/v1/operations?state=nope",
            "parameter `state`: must be one of queued, running, succeeded, failed, cancelled",
        ),
        (
            "/v1/packages?limit=abc",
            "parameter `limit`: must be a whole number",
        ),
        (
            "/v1/packages?limit=0",
            "parameter `limit`: must be at least 1",
        ),
        (
            "/v1/packages?limit=5000",
            "parameter `limit`: must be at most 1000",
        ),
    ] {
        let p = s.get(query).assert_problem(400, "bad_request");
        assert_eq!(p["detail"], said, "{query}: {p}");
    }
}

/// The OpenAPI layer's refusals of a body, in packd's words: the field
/// and its rule, never the layer's type names or its parse notes.
#[test]
fn a_bad_body_is_said_plainly() {
    let s = TestServer::in_process(&[]);
    for (path, body, said) in [
        (
            "/v1/packages",
            r#"{"version": "1"}"#,
            "request body: name or version: is required (must be text of 1 to 200 characters)",
        ),
        (
            "/v1/packages",
            r#"{"name": "a", "version": "1", "source": {"url": "https://a.example/a", "sha256": 5}}"#,
            "request body: source.sha256: must be 64 lowercase hexadecimal digits (got 5)",
        ),
        (
            "/v1/packages",
            r#"{"name": "a", "version": "1", "source": "https://a.example/a"}"#,
            "request body: source: must be an object with url and sha256, or null \
             (got \"https://a.example/a\")",
        ),
        (
            "/v1/packages",
            "[1]",
            "request body: must be a JSON object of the fields this call takes (got [1])",
        ),
        (
            "/v1/packages",
            r#"{"name": "a", "version": "1", "x": 1}"#,
            "request body: unknown field `x`",
        ),
        (
            "/v1/keys",
            r#"{"name": "ci", "role": "boss"}"#,
            "request body: role: must be one of read, write, admin (got \"boss\")",
        ),
        (
            "/v1/channels",
            r#"{"url": "https://a.example/c.json", "activate": "sometimes"}"#,
            "request body: activate: must be one of manual, auto (got \"sometimes\")",
        ),
    ] {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let p = s
            .json("POST", path, &body)
            .assert_problem(400, "bad_request");
        assert_eq!(p["detail"], said, "{path} {body}");
        let detail = p["detail"].as_str().unwrap();
        assert!(!detail.contains("occurred while parsing"), "{detail}");
    }
    // A large value of the wrong type is said back by its start only.
    let long = serde_json::json!({"name": ["x".repeat(50_000)], "version": "1"});
    let p = s
        .json("POST", "/v1/packages", &long)
        .assert_problem(400, "bad_request");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.len() < 300 && detail.ends_with("…)"), "{detail}");
}
