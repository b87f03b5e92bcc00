//! The package calls of the API (README: The API), row by row.

use serde_json::{Value, json};

use crate::helpers::{TestServer, wait_for};

#[test]
fn create_returns_201_with_location_etag_and_the_package() {
    let s = TestServer::in_process(&[]);
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "curl", "version": "8.5.0"}),
    );
    r.assert_status(201);
    let p = r.json();
    let id = p["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/packages/{id}").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(p["name"], "curl");
    assert_eq!(p["version"], "8.5.0");
    assert_eq!(p["status"], "created");
    assert_eq!(p["operation_id"], Value::Null);
    assert_eq!(p["revision"], 1);
    assert_eq!(p["created_at"], p["updated_at"]);
    assert!(
        p["created_at"].as_str().unwrap().ends_with('Z'),
        "UTC RFC 3339"
    );
    // Ids are UUID v7.
    assert_eq!(&id[14..15], "7", "{id}");

    let got = s.get(&format!("/v1/packages/{id}"));
    got.assert_status(200);
    assert_eq!(got.json(), p);
    assert_eq!(got.header("etag"), Some("\"1\""));
}

#[test]
fn same_name_and_version_is_a_duplicate() {
    let s = TestServer::in_process(&[]);
    s.create_package("zlib", "1.3");
    s.create_package("zlib", "1.3.1");
    s.create_package("zlib-ng", "1.3");
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "zlib", "version": "1.3"}),
    );
    let body = r.assert_problem(409, "duplicate");
    assert!(body["detail"].as_str().unwrap().contains("zlib"));
}

#[test]
fn invalid_names_and_versions_are_422_naming_the_field() {
    let s = TestServer::in_process(&[]);
    let long_name = "n".repeat(201);
    let long_version = "v".repeat(51);
    let cases = [
        (json!({"name": "", "version": "1"}), "name"),
        (json!({"name": " padded", "version": "1"}), "name"),
        (json!({"name": "padded ", "version": "1"}), "name"),
        (json!({"name": "bell\u{7}", "version": "1"}), "name"),
        (json!({"name": long_name, "version": "1"}), "name"),
        (json!({"name": "ok", "version": ""}), "version"),
        (json!({"name": "ok", "version": "1\n"}), "version"),
        (json!({"name": "ok", "version": long_version}), "version"),
    ];
    for (body, field) in cases {
        let r = s.json("POST", "/v1/packages", &body);
        let p = r.assert_problem(422, "validation_failed");
        assert_eq!(p["field"], field, "{body}");
        assert!(p["detail"].as_str().unwrap().starts_with(field), "{p}");
    }
    // A name that could never be a file name is refused now, not at every
    // download: 200 × é is 200 characters but 1,200 bytes once encoded.
    for (body, field) in [
        (json!({"name": "é".repeat(200), "version": "1"}), "name"),
        (json!({"name": "é".repeat(34), "version": "1"}), "name"),
    ] {
        let p = s
            .json("POST", "/v1/packages", &body)
            .assert_problem(422, "validation_failed");
        assert_eq!(p["field"], field, "{body}");
        assert!(p["detail"].as_str().unwrap().contains("bytes"), "{p}");
    }
    // The limits themselves are accepted.
    s.create_package(&"x".repeat(200), &"v".repeat(50));
    let listed = s.get("/v1/packages").json();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing invalid was stored"
    );
}

#[test]
fn names_are_nfc_so_twins_that_look_alike_are_one_package() {
    let s = TestServer::in_process(&[]);
    // "café" decomposed (e + combining acute) is stored composed.
    let decomposed = "cafe\u{301}";
    let p = s.create_package(decomposed, "1.0");
    assert_eq!(p["name"], "caf\u{e9}");
    s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "caf\u{e9}", "version": "1.0"}),
    )
    .assert_problem(409, "duplicate");
    // Either spelling finds it.
    for query in ["caf%C3%A9", "cafe%CC%81"] {
        let listed = s.get(&format!("/v1/packages?name={query}")).json();
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{query}");
    }
}

#[test]
fn missing_fields_and_wrong_types_are_400() {
    let s = TestServer::in_process(&[]);
    for body in [
        json!({"name": "only-name"}),
        json!({"version": "1"}),
        json!({"name": 5, "version": "1"}),
        json!(["name", "version"]),
        json!(null),
    ] {
        s.json("POST", "/v1/packages", &body)
            .assert_problem(400, "bad_request");
    }
}

#[test]
fn list_pages_through_everything_oldest_first() {
    let s = TestServer::in_process(&[]);
    let mut created = Vec::new();
    for i in 0..120 {
        created.push(s.create_package(&format!("pkg-{i:03}"), "1.0")["id"].clone());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/packages?limit=50&cursor={c}"),
            None => "/v1/packages?limit=50".to_string(),
        };
        let page = s.get(&path);
        page.assert_status(200);
        let page = page.json();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|p| p["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(
                    page.get("next_cursor").is_some(),
                    "next_cursor is present as null"
                );
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every package once, in creation order");

    // Default page size is 50; a full last page has no empty page after it.
    let first = s.get("/v1/packages").json();
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    let all = s.get("/v1/packages?limit=120").json();
    assert_eq!(all["items"].as_array().unwrap().len(), 120);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[test]
fn list_filters_by_status_and_exact_name() {
    let s = TestServer::in_process(&[]);
    let a1 = s.create_package("alpha", "1")["id"].clone();
    let a2 = s.create_package("alpha", "2")["id"].clone();
    s.create_package("alphabet", "1");
    s.create_package("beta", "1");

    let ids = |path: &str| -> Vec<Value> {
        let r = s.get(path);
        r.assert_status(200);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect()
    };
    assert_eq!(ids("/v1/packages?name=alpha"), vec![a1.clone(), a2.clone()]);
    assert_eq!(
        ids("/v1/packages?name=alp"),
        Vec::<Value>::new(),
        "exact match only"
    );
    assert_eq!(ids("/v1/packages?status=created").len(), 4);
    assert_eq!(ids("/v1/packages?status=active"), Vec::<Value>::new());
    assert_eq!(
        ids("/v1/packages?status=created&name=alpha"),
        vec![a1.clone(), a2]
    );
    assert_eq!(
        ids("/v1/packages?status=downloaded&name=alpha"),
        Vec::<Value>::new()
    );

    // Filters paginate too.
    let page = s.get("/v1/packages?name=alpha&limit=1").json();
    assert_eq!(page["items"][0]["id"], a1);
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = s
        .get(&format!("/v1/packages?name=alpha&limit=1&cursor={next}"))
        .json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next_cursor"], Value::Null);
    let page = s.get("/v1/packages?status=created&limit=3").json();
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = s
        .get(&format!(
            "/v1/packages?status=created&limit=3&cursor={next}"
        ))
        .json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);

    s.get("/v1/packages?status=installed")
        .assert_problem(400, "bad_request");
}

#[test]
fn patch_renames_and_bumps_revision() {
    let s = TestServer::in_process(&[]);
    let p = s.create_package("openssl", "3.0");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());

    let r = s.json("PATCH", &path, &json!({"name": "openssl3"}));
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let body = r.json();
    assert_eq!(body["name"], "openssl3");
    assert_eq!(body["version"], "3.0");
    assert_eq!(body["revision"], 2);
    assert_ne!(body["updated_at"], p["updated_at"]);
    assert_eq!(body["created_at"], p["created_at"]);

    let r = s.json("PATCH", &path, &json!({"version": "3.1"}));
    r.assert_status(200);
    assert_eq!(r.json()["status"], "created");
    assert_eq!(r.json()["revision"], 3);

    // An empty patch changes nothing, not even the revision.
    let r = s.json("PATCH", &path, &json!({}));
    r.assert_status(200);
    assert_eq!(r.json()["revision"], 3);
    assert_eq!(s.get(&path).json(), r.json());
}

#[test]
fn patch_refuses_status_null_fields_bad_values_and_duplicates() {
    let s = TestServer::in_process(&[]);
    let p = s.create_package("nginx", "1.25");
    s.create_package("nginx", "1.26");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());

    let body = s
        .json("PATCH", &path, &json!({"status": "active"}))
        .assert_problem(422, "validation_failed");
    assert_eq!(body["field"], "status");
    let body = s
        .json("PATCH", &path, &json!({"name": null}))
        .assert_problem(422, "validation_failed");
    assert_eq!(body["field"], "name");
    let body = s
        .json("PATCH", &path, &json!({"version": " 2"}))
        .assert_problem(422, "validation_failed");
    assert_eq!(body["field"], "version");
    s.json("PATCH", &path, &json!({"version": "1.26"}))
        .assert_problem(409, "duplicate");
    s.json("PATCH", &path, &json!({"colour": "blue"}))
        .assert_problem(400, "bad_request");

    // None of the refusals changed anything.
    let now = s.get(&path).json();
    assert_eq!(now, p);
}

#[test]
fn if_match_guards_patch_and_delete() {
    let s = TestServer::in_process(&[]);
    let p = s.create_package("redis", "7");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());

    let stale = s.json_with(
        "PATCH",
        &path,
        &[("if-match", "\"7\"")],
        &json!({"name": "x"}),
    );
    let body = stale.assert_problem(412, "precondition_failed");
    assert!(
        body["detail"].as_str().unwrap().contains("\"1\""),
        "says the current ETag"
    );

    let ok = s.json_with(
        "PATCH",
        &path,
        &[("if-match", "\"1\"")],
        &json!({"name": "valkey"}),
    );
    ok.assert_status(200);
    assert_eq!(ok.header("etag"), Some("\"2\""));
    // Weak tags never match (strong comparison); a list matches any member.
    s.json_with(
        "PATCH",
        &path,
        &[("if-match", "W/\"2\"")],
        &json!({"name": "y"}),
    )
    .assert_problem(412, "precondition_failed");
    s.json_with(
        "PATCH",
        &path,
        &[("if-match", "\"1\", \"2\"")],
        &json!({"name": "valkey8"}),
    )
    .assert_status(200);
    s.json_with(
        "PATCH",
        &path,
        &[("if-match", "*")],
        &json!({"version": "8"}),
    )
    .assert_status(200);
    // An unquoted tag is no entity tag: the header is malformed (the
    // description's pattern says so), and nothing changes.
    let r = s.json_with(
        "PATCH",
        &path,
        &[("if-match", "4")],
        &json!({"version": "9"}),
    );
    let body = r.assert_problem(400, "bad_request");
    assert_eq!(body["field"], "If-Match", "{body}");

    s.send("DELETE", &path, &[("if-match", "\"3\"")], None)
        .assert_problem(412, "precondition_failed");
    s.get(&path).assert_status(200);
    let r = s.send("DELETE", &path, &[("if-match", "\"4\"")], None);
    r.assert_status(204);
    assert!(r.body.is_empty());
    s.get(&path).assert_problem(404, "not_found");
}

#[test]
fn delete_then_gone_everywhere() {
    let s = TestServer::in_process(&[]);
    let p = s.create_package("git", "2.43");
    let path = format!("/v1/packages/{}", p["id"].as_str().unwrap());
    s.send("DELETE", &path, &[], None).assert_status(204);
    s.get(&path).assert_problem(404, "not_found");
    s.send("DELETE", &path, &[], None)
        .assert_problem(404, "not_found");
    s.json("PATCH", &path, &json!({"name": "x"}))
        .assert_problem(404, "not_found");
    assert_eq!(s.get("/v1/packages?name=git").json()["items"], json!([]));
    // The pair is free again.
    s.create_package("git", "2.43");
}

#[test]
fn unknown_and_malformed_ids() {
    let s = TestServer::in_process(&[]);
    let unknown = "01900000-0000-7000-8000-000000000000";
    s.get(&format!("/v1/packages/{unknown}"))
        .assert_problem(404, "not_found");
    s.send("DELETE", &format!("/v1/packages/{unknown}"), &[], None)
        .assert_problem(404, "not_found");
    // A malformed id names nothing either.
    s.get("/v1/packages/not-a-uuid")
        .assert_problem(404, "not_found");
    s.send("POST", "/v1/operations/None/cancel", &[], None)
        .assert_problem(404, "not_found");
}

#[test]
fn statuses_lists_statuses_and_transitions() {
    let s = TestServer::in_process(&[]);
    let r = s.get("/v1/statuses");
    r.assert_status(200);
    let body = r.json();
    let names: Vec<&str> = body["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["created", "downloaded", "active"]);
    assert!(body["statuses"][0]["description"].is_string());
    let mut transitions = body["transitions"].clone();
    for t in transitions.as_array_mut().unwrap() {
        let description = t.as_object_mut().unwrap().remove("description").unwrap();
        assert!(description.as_str().is_some_and(|d| !d.is_empty()), "{t}");
    }
    assert_eq!(
        transitions,
        json!([
            {"operation": "download", "from": "created", "to": "downloaded", "same_name": null},
            {"operation": "activate", "from": "downloaded", "to": "active",
             "same_name": {"from": "active", "to": "downloaded"}},
            {"operation": "deactivate", "from": "active", "to": "downloaded", "same_name": null},
        ])
    );
}

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn a_source_is_stored_shown_and_changed() {
    let s = TestServer::in_process(&["--download-duration", "50ms"]);
    let source =
        json!({"url": "https://example.org/jq-1.7.tar.gz", "sha256": DIGEST, "size": 1024});
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "jq", "version": "1.7", "source": source}),
    );
    r.assert_status(201);
    let created = r.json();
    let mut source = source;
    source["signature"] = Value::Null;
    assert_eq!(created["source"], source);
    assert_eq!(created["path"], Value::Null);
    let id = r.id();
    assert_eq!(
        s.get(&format!("/v1/packages/{id}")).json()["source"],
        source
    );

    // Without a source, or with null: a catalogue entry.
    let plain = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "a", "version": "1"}),
    );
    assert_eq!(plain.json()["source"], Value::Null);
    let null = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "b", "version": "1", "source": null}),
    );
    assert_eq!(null.json()["source"], Value::Null);
    // A size may be left out.
    let sized = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "c", "version": "1", "source": {"url": "http://127.0.0.1:9/c", "sha256": DIGEST}}),
    );
    sized.assert_status(201);
    assert_eq!(sized.json()["source"]["size"], Value::Null);

    // A new source on a downloaded package: back to created. (Downloaded
    // from the test artifact server: nothing leaves this machine.)
    let server = crate::artifacts::ArtifactServer::start();
    let body = crate::artifacts::pattern(1000);
    let local = server.put("/jq.bin", body.clone(), crate::artifacts::Knobs::default());
    let local_source =
        json!({"url": local, "sha256": crate::artifacts::sha256_hex(&body), "size": null});
    s.json(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &json!({"source": local_source}),
    )
    .assert_status(200);
    let op = s.send("POST", &format!("/v1/packages/{id}/download"), &[], None);
    let op = op.id();
    wait_for("the download", || {
        let o = s.get(&format!("/v1/operations/{op}?wait=5")).json();
        (o["state"] == "succeeded").then_some(())
    });
    assert_eq!(s.package(&id).status, "downloaded");
    let mut moved = json!({"url": "https://mirror.example.org/jq-1.7.tar.gz", "sha256": DIGEST,
        "size": null});
    let r = s.json(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &json!({"source": moved}),
    );
    r.assert_status(200);
    moved["signature"] = Value::Null;
    assert_eq!(r.json()["source"], moved);
    assert_eq!(r.json()["status"], "created");
    // null removes it.
    let r = s.json(
        "PATCH",
        &format!("/v1/packages/{id}"),
        &json!({"source": null}),
    );
    assert_eq!(r.json()["source"], Value::Null);
}

#[test]
fn a_bad_source_is_422_naming_the_field() {
    let s = TestServer::in_process(&[]);
    let cases = [
        (
            json!({"url": "ftp://example.org/a", "sha256": DIGEST}),
            "source.url",
        ),
        (
            json!({"url": "https://user:pw@example.org/a", "sha256": DIGEST}),
            "source.url",
        ),
        (
            json!({"url": "https://example.org/a", "sha256": DIGEST.to_uppercase()}),
            "source.sha256",
        ),
        (
            json!({"url": "https://example.org/a", "sha256": "abc"}),
            "source.sha256",
        ),
        (
            json!({"url": "https://example.org/a", "sha256": DIGEST, "size": -5}),
            "source.size",
        ),
        (
            json!({"url": "file:///etc/passwd", "sha256": DIGEST}),
            "source.url",
        ),
        // What a URL parser forgives would fail later: refused at once.
        (
            json!({"url": "HTTPS://example.org/a", "sha256": DIGEST}),
            "source.url",
        ),
        (
            json!({"url": " https://example.org/a", "sha256": DIGEST}),
            "source.url",
        ),
        (
            json!({"url": format!("https://example.org/{}", "a".repeat(2100)), "sha256": DIGEST}),
            "source.url",
        ),
    ];
    for (source, field) in cases {
        let r = s.json(
            "POST",
            "/v1/packages",
            &json!({"name": "x", "version": "1", "source": source}),
        );
        let body = r.assert_problem(422, "validation_failed");
        assert_eq!(body["field"], field, "{source} -> {body}");
    }
    // A stray member in a source is refused like anywhere else.
    s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "x", "version": "1", "source": {"url": "https://e.org/a", "sha256": DIGEST, "token": "t"}}),
    )
    .assert_problem(400, "bad_request");
    assert_eq!(s.get("/v1/packages").json()["items"], json!([]));

    // file:// only when the server allows it.
    let allowing = TestServer::in_process(&["--allow-file-sources"]);
    allowing
        .json(
            "POST",
            "/v1/packages",
            &json!({"name": "local", "version": "1", "source": {"url": "file:///srv/local.tar", "sha256": DIGEST}}),
        )
        .assert_status(201);
    for forgiven in ["FILE:///srv/local.tar", " file:///srv/local.tar"] {
        allowing
            .json(
                "POST",
                "/v1/packages",
                &json!({"name": "odd", "version": "1", "source": {"url": forgiven, "sha256": DIGEST}}),
            )
            .assert_problem(422, "validation_failed");
    }
}
