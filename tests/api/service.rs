//! Service endpoints, the OpenAPI description and the explorer.

use serde_json::Value;

use crate::helpers::{TestServer, run_packd};

#[test]
fn healthz_and_readyz() {
    let s = TestServer::start();
    let r = s.get("/healthz");
    r.assert_status(200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
    s.get("/readyz").assert_status(200);
}

#[test]
fn root_redirects_to_the_explorer() {
    let s = TestServer::start();
    let r = s.get("/");
    assert!((300..400).contains(&r.status), "{}", r.status);
    assert_eq!(r.header("location"), Some("/docs"));
}

#[test]
fn explorer_works_offline() {
    let s = TestServer::start();
    let r = s.get("/docs");
    r.assert_status(200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("SwaggerUIBundle"), "the UI is inlined");
    // Nothing loaded from elsewhere: no external script, stylesheet or font.
    for needle in [
        "<script src=\"http",
        "<link href=\"http",
        "fonts.googleapis",
        "cdn.",
    ] {
        assert!(!r.body.contains(needle), "explorer references {needle}");
    }
}

#[test]
fn openapi_describes_every_operation_and_its_errors() {
    let s = TestServer::start();
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

    // `packd openapi` prints the same description without a server.
    let out = run_packd(&["openapi"], &[]);
    assert!(out.status.success());
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline, spec);
}
