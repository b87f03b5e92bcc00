//! Service endpoints, the OpenAPI description and the explorer.

use serde_json::Value;

use crate::helpers::{TestServer, run_packd, wait_for};

#[test]
fn healthz_and_readyz() {
    let s = TestServer::in_process(&[]);
    let r = s.get("/healthz");
    r.assert_status(200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
    s.get("/readyz").assert_status(200);
}

#[test]
fn root_redirects_to_the_explorer() {
    let s = TestServer::in_process(&[]);
    let r = s.get("/");
    assert!((300..400).contains(&r.status), "{}", r.status);
    assert_eq!(r.header("location"), Some("/docs"));
}

#[test]
fn the_explorer_and_the_reference_page_work_offline() {
    let s = TestServer::in_process(&[]);
    let served = s.get("/openapi.json").body;
    for (path, inlined) in [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc.init")] {
        let r = s.get(path);
        r.assert_status(200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.body.contains(inlined), "{path}: the UI is inlined");
        // Nothing loaded from elsewhere: no external script, stylesheet or font.
        for needle in [
            "<script src=",
            "<link href=\"http",
            "fonts.googleapis",
            "cdn.",
        ] {
            assert!(!r.body.contains(needle), "{path} references {needle}");
        }
        // The page shows the description as served (with packd's own
        // additions), not a draft of it.
        assert!(r.body.contains(&served), "{path} embeds /openapi.json");
    }
    // The explorer links to the reference page.
    assert!(served.contains("(/redoc)"));
    // The reference page leaves the long patterns to the description.
    assert!(s.get("/redoc").body.contains("hideSchemaPattern: true"));
}

#[test]
fn openapi_describes_every_operation_and_its_errors() {
    let s = TestServer::in_process(&[]);
    let r = s.get("/openapi.json");
    r.assert_status(200);
    let spec = r.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/v1/packages",
        "/v1/packages/{id}",
        "/v1/statuses",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    // Every /v1 operation documents its error answers as problem+json.
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1")) {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for code in ["400", "401", "403", "500"] {
                let content = &responses
                    .get(code)
                    .unwrap_or_else(|| panic!("{method} {path} lacks {code}"))["content"];
                assert!(
                    content.get("application/problem+json").is_some(),
                    "{method} {path} {code}"
                );
            }
        }
    }
    let create = &spec["paths"]["/v1/packages"]["post"]["responses"];
    for code in ["201", "409", "413", "422"] {
        assert!(create.get(code).is_some(), "create lacks {code}");
    }
    let patch = &spec["paths"]["/v1/packages/{id}"]["patch"]["responses"];
    for code in ["200", "404", "409", "412", "422"] {
        assert!(patch.get(code).is_some(), "patch lacks {code}");
    }
    let codes = &spec["components"]["schemas"]["ErrorCode"]["enum"];
    assert!(
        codes
            .as_array()
            .unwrap()
            .contains(&Value::from("operation_in_progress"))
    );

    // Every request body is closed: unknown fields are refused, and said so.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Some(content) = op.get("requestBody").map(|b| &b["content"]) else {
                continue;
            };
            for media in content.as_object().unwrap().values() {
                let name = media["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}: body schema is not a $ref"))
                    .trim_start_matches("#/components/schemas/");
                assert_eq!(
                    spec["components"]["schemas"][name]["additionalProperties"],
                    Value::Bool(false),
                    "{method} {path}: {name} must say additionalProperties: false"
                );
            }
        }
    }

    // `packd openapi` prints the same description without a server.
    let out = run_packd(&["openapi"], &[]);
    assert!(out.status.success());
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline, spec);
}

/// `name{labels}` -> value, from a Prometheus text exposition, checking the
/// format on the way: every sample belongs to a family announced by HELP and
/// TYPE, and every value is a number.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut families = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            families.insert(parts.next().unwrap().to_string());
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        assert!(families.contains(family), "no TYPE for {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

#[test]
fn metrics_count_requests_operations_retries_and_refusals() {
    let s = TestServer::start_with(
        &[
            "--download-duration",
            "10ms",
            "--stub-failure-rate",
            "1",
            "--max-attempts",
            "2",
            "--retry-delay",
            "10ms",
        ],
        &[],
    );
    let pkg = s.create_package("metered", "1.0");
    s.get("/v1/packages/0190a000-0000-7000-8000-000000000000")
        .assert_status(404);
    s.send_as(Some("packd_not-a-key"), "GET", "/v1/packages", &[], None)
        .assert_status(401);
    let id = pkg["id"].as_str().unwrap();
    let op = s.send("POST", &format!("/v1/packages/{id}/download"), &[], None);
    op.assert_status(202);
    let op_id = op.id();
    // Both attempts fail, so the operation ends `failed` after one retry.
    let finished = s.get(&format!("/v1/operations/{op_id}?wait=30"));
    assert_eq!(finished.json()["state"], "failed", "{}", finished.body);

    let r = s.send_as(None, "GET", "/metrics", &[], None);
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = parse_metrics(&r.body);
    let at = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{}", r.body))
    };
    assert_eq!(
        at(r#"packd_http_requests_total{method="POST",route="/v1/packages",status="201"}"#),
        1.0
    );
    assert_eq!(
        at(r#"packd_http_requests_total{method="GET",route="/v1/packages/{id}",status="404"}"#),
        1.0
    );
    assert_eq!(
        at(r#"packd_http_request_duration_seconds_count{method="POST",route="/v1/packages"}"#),
        1.0
    );
    assert_eq!(
        at(
            r#"packd_http_request_duration_seconds_bucket{method="POST",route="/v1/packages",le="+Inf"}"#
        ),
        1.0
    );
    assert_eq!(at(r#"packd_auth_failures_total{code="unauthorized"}"#), 1.0);
    assert_eq!(
        at(r#"packd_operations_started_total{kind="download"}"#),
        1.0
    );
    assert_eq!(at(r#"packd_operation_retries_total{kind="download"}"#), 1.0);
    assert_eq!(
        at(r#"packd_operations_finished_total{kind="download",state="failed"}"#),
        1.0
    );
    assert_eq!(
        at(r#"packd_operations{kind="download",state="queued"}"#),
        0.0
    );
    assert_eq!(at("packd_queue_depth"), 0.0);
    // Creating the package alone was one durable commit.
    assert!(at("packd_store_commit_duration_seconds_count") >= 1.0);
    assert!(at("packd_store_writes_total") >= at("packd_store_commit_duration_seconds_count"));
    assert!(at("process_resident_memory_bytes") > 0.0);
}

#[test]
fn metrics_label_unknown_paths_as_one_route() {
    let s = TestServer::start();
    for n in 0..5 {
        s.send_as(None, "GET", &format!("/scan/{n}"), &[], None)
            .assert_status(404);
    }
    let m = parse_metrics(&s.send_as(None, "GET", "/metrics", &[], None).body);
    assert_eq!(
        m[r#"packd_http_requests_total{method="GET",route="unmatched",status="404"}"#],
        5.0
    );
    assert!(!m.keys().any(|k| k.contains("/scan/")));
}

#[test]
fn healthcheck_command_follows_healthz() {
    let mut s = TestServer::start();
    let ok = run_packd(&["healthcheck", "--url", &s.url("/healthz")], &[]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    // The base URL, as every other command takes it.
    let ok = run_packd(&["healthcheck", "--url", &s.base], &[]);
    assert!(ok.status.success(), "{ok:?}");
    // A name that may resolve to ::1 first while packd listens on 127.0.0.1:
    // every address is tried.
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let by_name = format!("http://localhost:{port}/healthz");
    let ok = run_packd(&["healthcheck", "--url", &by_name], &[]);
    assert!(ok.status.success(), "{ok:?}");

    // Without --url it checks the address PACKD_LISTEN names, through
    // loopback when that is a wildcard (as in the container).
    let listen = format!("0.0.0.0:{port}");
    let ok = run_packd(&["healthcheck"], &[("PACKD_LISTEN", listen.as_str())]);
    assert!(ok.status.success(), "{ok:?}");

    let not_found = run_packd(&["healthcheck", "--url", &s.url("/nope")], &[]);
    assert!(!not_found.status.success());
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("answered 404"));

    s.terminate();
    let down = run_packd(&["healthcheck", "--url", &s.url("/healthz")], &[]);
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no answer from"),
        "{down:?}"
    );

    let bad = run_packd(&["healthcheck", "--url", "https://example.invalid/"], &[]);
    assert!(!bad.status.success());
}

#[test]
fn systemd_is_told_when_ready_and_when_stopping() {
    use std::os::unix::net::UnixDatagram;

    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(crate::helpers::DEADLINE))
        .unwrap();
    let mut s = TestServer::start_with(&[], &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);

    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within the deadline");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    let addr = s.base.trim_start_matches("http://");
    assert!(ready.contains(&format!("listening on {addr}")), "{ready}");
    // Ready means ready: the port answers and the workers run.
    s.get("/readyz").assert_status(200);

    s.terminate();
    let n = socket
        .recv(&mut buf)
        .expect("STOPPING=1 within the deadline");
    let stopping = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
}

/// Every line logged while serving a request carries its request id, method
/// and route (a refused key's warning, say), and every line logged while an
/// operation runs carries the operation, its package and the attempt.
#[test]
fn log_lines_carry_the_request_and_the_operation() {
    let s = TestServer::start_with(
        &["--log-format", "json", "--download-duration", "100ms"],
        &[],
    );
    s.send_as(
        Some("packd_not-a-real-key"),
        "GET",
        "/v1/packages",
        &[("x-request-id", "trace-me-1")],
        None,
    )
    .assert_status(401);
    let refused = wait_for("the refusal in the log", || {
        s.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "authentication failed")
    });
    assert_eq!(refused["span"]["request_id"], "trace-me-1", "{refused}");
    assert_eq!(refused["span"]["method"], "GET", "{refused}");
    assert_eq!(refused["span"]["route"], "/v1/packages", "{refused}");

    let id = s.new_package("traced", "1").id;
    let op = s.send("POST", &format!("/v1/packages/{id}/download"), &[], None);
    let op = op.id();
    let started = wait_for("the operation in the log", || {
        s.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "operation stopped")
    });
    assert_eq!(started["span"]["operation_id"], op.as_str(), "{started}");
    assert_eq!(started["span"]["package_id"], id.as_str(), "{started}");
    assert_eq!(started["span"]["attempt"], 1, "{started}");
}

/// What generated clients and the explorer need from the description: a
/// `Problem` whose `code` is a plain reference (openapi-python-client drops
/// the model otherwise), an example for every request body (the explorer
/// prefills it, so it must work unedited) and for every error status.
#[test]
fn the_description_has_examples_and_a_plain_problem_code() {
    let s = TestServer::in_process(&[]);
    let spec = s.get("/openapi.json").json();
    assert_eq!(
        spec["components"]["schemas"]["Problem"]["properties"]["code"],
        serde_json::json!({"$ref": "#/components/schemas/ErrorCode"})
    );
    let codes = spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    let mut bodies = 0;
    let mut problems = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media_type, media) in content {
                    assert!(media["example"].is_object(), "{method} {path} {media_type}");
                    bodies += 1;
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(media) = response["content"].get("application/problem+json") else {
                    continue;
                };
                let example = &media["example"];
                assert_eq!(example["status"].to_string(), *status, "{method} {path}");
                assert!(codes.contains(&example["code"]), "{method} {path} {status}");
                if status == "401" {
                    assert_eq!(example["code"], "unauthorized");
                }
                problems += 1;
            }
        }
    }
    assert_eq!(bodies, 7);
    assert!(problems > 150, "{problems}");
    // The explorer's prefilled create works unedited.
    let example = spec["paths"]["/v1/packages"]["post"]["requestBody"]["content"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["example"]
        .clone();
    s.json("POST", "/v1/packages", &example).assert_status(201);
}

/// What client generators and the reference page need of the description's
/// shape (CI generates the clients themselves; this holds the forms they
/// stumbled on): plain references, no settable `status` in a PATCH, one
/// spelling of each header name, `X-Request-Id` declared on every answer,
/// `application/json` without parameters, a description and an example on
/// every success, the event
/// stream as a stream, and the query-key scheme only when it is accepted.
#[test]
fn the_description_has_the_shapes_generators_take() {
    let s = TestServer::in_process(&[]);
    let spec = s.get("/openapi.json").json();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(members) = property["allOf"].as_array() {
                assert_eq!(members.len(), 1, "{name}.{field}: {property}");
                assert_eq!(property["nullable"], true, "{name}.{field}: {property}");
            }
            assert!(property.get("not").is_none(), "{name}.{field}");
        }
    }
    assert!(
        spec["components"]["schemas"]["PackagePatch"]["properties"]
            .get("status")
            .is_none()
    );
    assert_eq!(spec["info"]["license"]["name"], "MIT");
    assert_eq!(spec["servers"][0]["url"], "/");
    let tags: Vec<&str> = spec["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags[0], "Packages");
    let mut successes_with_examples = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let summary = op["summary"].as_str().unwrap();
            assert!(
                summary.len() <= 60 && !summary.contains('`') && !summary.contains('\n'),
                "{method} {path}: summary {summary:?}"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                let what = format!("{method} {path} {status}");
                assert!(
                    !response["description"].as_str().unwrap().is_empty(),
                    "{what}"
                );
                let headers = response["headers"].as_object().unwrap();
                assert!(headers.contains_key("X-Request-Id"), "{what}");
                for name in headers.keys() {
                    assert!(
                        name.chars().any(|c| c.is_ascii_lowercase()),
                        "{what}: header {name}"
                    );
                }
                for media_type in response["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    assert!(!media_type.starts_with("application/json;"), "{what}");
                }
                if status.starts_with('2') && response["content"].get("application/json").is_some()
                {
                    assert!(
                        response["content"]["application/json"]["example"].is_object(),
                        "{what}: a success without an example"
                    );
                    successes_with_examples += 1;
                }
            }
        }
    }
    assert!(successes_with_examples >= 25, "{successes_with_examples}");
    let stream =
        &spec["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert_eq!(stream["schema"]["type"], "string");
    assert!(
        stream["example"]
            .as_str()
            .unwrap()
            .contains("event: operation\ndata: {")
    );
    assert!(
        spec["components"]["securitySchemes"]
            .get("QueryKey")
            .is_none()
    );

    let with_query_key = TestServer::in_process(&["--allow-query-key"]);
    let spec = with_query_key.get("/openapi.json").json();
    assert_eq!(
        spec["components"]["securitySchemes"]["QueryKey"]["in"],
        "query"
    );
    let events = &spec["paths"]["/v1/events"]["get"]["security"];
    assert!(
        events
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"QueryKey": []}))
    );
}
