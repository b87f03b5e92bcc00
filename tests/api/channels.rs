//! Channels over the real binary: a publisher's directory made with
//! `packd keygen`, `packd sign` and `packd channel publish`, served by a
//! static file server on loopback (real `ETag`s and 304s); packd follows
//! it, converges, switches, and refuses replays, expired documents,
//! forgeries and tampering without changing anything.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::artifacts::{ArtifactServer, Knobs};
use crate::helpers::{TestServer, data_dir_for, run_packd, wait_for};
use crate::signatures::{have_minisign, keygen, minisign};

/// A publisher: a key pair, a directory of signed artifacts and its
/// channel document, served under `/stable/`.
struct Publisher {
    _dir: tempfile::TempDir,
    site: PathBuf,
    secret: PathBuf,
    public: PathBuf,
    server: ArtifactServer,
}

impl Publisher {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        let (secret, public) = keygen(dir.path(), "publisher");
        Self {
            _dir: dir,
            site,
            secret,
            public,
            server: ArtifactServer::start(),
        }
    }

    fn trust_args(&self) -> Vec<String> {
        vec!["--trusted-key".into(), self.public.display().to_string()]
    }

    /// Adds `name@version` to the directory, signed by `packd sign`.
    fn artifact(&self, name: &str, version: &str, bytes: &[u8]) {
        let file = self.site.join(format!("{name}-{version}.bin"));
        std::fs::write(&file, bytes).unwrap();
        let out = run_packd(
            &[
                "sign",
                "--secret-key",
                self.secret.to_str().unwrap(),
                "--name",
                name,
                "--version",
                version,
                file.to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{out:?}");
    }

    /// `packd channel publish` with these flags; serves the directory.
    fn publish(&self, sequence: u64, flags: &[&str]) -> std::process::Output {
        let out = self.write(sequence, flags);
        if out.status.success() {
            self.serve();
        }
        out
    }

    /// `packd channel publish` with these flags, served by no one yet.
    fn write(&self, sequence: u64, flags: &[&str]) -> std::process::Output {
        let sequence = sequence.to_string();
        let mut args = vec![
            "channel",
            "publish",
            self.site.to_str().unwrap(),
            "--name",
            "stable",
            "--sequence",
            &sequence,
            "--secret-key",
            self.secret.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        run_packd(&args, &[])
    }

    fn serve(&self) {
        for entry in std::fs::read_dir(&self.site).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            self.server.put(
                &format!("/stable/{name}"),
                std::fs::read(entry.path()).unwrap(),
                Knobs::default(),
            );
        }
    }

    /// The document and its signature as published now.
    fn document(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(self.site.join("channel.json")).unwrap(),
            std::fs::read(self.site.join("channel.json.minisig")).unwrap(),
        )
    }

    /// Serves this document (with these knobs) and signature instead (a
    /// mirror's, say).
    fn serve_document(&self, document: Vec<u8>, signature: Vec<u8>, knobs: Knobs) {
        self.server.put("/stable/channel.json", document, knobs);
        self.server
            .put("/stable/channel.json.minisig", signature, Knobs::default());
    }

    fn url(&self) -> String {
        format!("{}/stable/channel.json", self.server.base)
    }
}

fn start(p: &Publisher) -> TestServer {
    let args = p.trust_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args, &[])
}

fn follow(s: &TestServer, p: &Publisher, activate: &str) -> Value {
    let r = s.json(
        "POST",
        "/v1/channels",
        &json!({"url": p.url(), "activate": activate, "interval": "1s"}),
    );
    r.assert_status(201);
    r.json()
}

/// The versions of `name` this server has, with their statuses.
fn versions(s: &TestServer, name: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> =
        s.get(&format!("/v1/packages?name={name}&limit=100")).json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["version"].as_str().unwrap().to_string(),
                    p["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    all.sort();
    all
}

#[track_caller]
fn wait_active(s: &TestServer, name: &str, version: &str) {
    wait_for(&format!("{name}@{version} active"), || {
        versions(s, name)
            .iter()
            .any(|(v, status)| v == version && status == "active")
            .then_some(())
    });
}

/// Waits until the channel's last error says `what`; returns the channel.
#[track_caller]
fn wait_error(s: &TestServer, channel: &str, what: &str) -> Value {
    wait_for(&format!("the channel to refuse: {what}"), || {
        let c = s.get(&format!("/v1/channels/{channel}")).json();
        c["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(what))
            .then_some(c)
    })
}

#[test]
fn a_channel_converges_switches_and_refuses_replays_expiry_forgeries_and_tampering() {
    let p = Publisher::new();
    p.artifact("app", "1.0", b"version one");
    let out = p.publish(1, &["--active", "app@1.0"]);
    assert!(out.status.success(), "{out:?}");
    let (first, first_signature) = p.document();
    let s = start(&p);
    let channel = follow(&s, &p, "auto");
    let id = channel["id"].as_str().unwrap().to_string();

    // Follow, converge: created by the channel, downloaded, activated.
    wait_active(&s, "app", "1.0");
    let link = data_dir_for(&s.db).join("active/app");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../packages/app/1.0")
    );
    let c = s.get(&format!("/v1/channels/{id}")).json();
    assert_eq!(
        (c["name"].as_str(), c["sequence"].as_u64()),
        (Some("stable"), Some(1)),
        "{c}"
    );
    let app = &s.get("/v1/packages?name=app").json()["items"][0];
    assert_eq!(app["channel_id"], id.as_str(), "{app}");
    // Its name, version and source are the channel's.
    let r = s.json(
        "PATCH",
        &format!("/v1/packages/{}", app["id"].as_str().unwrap()),
        &json!({"version": "9"}),
    );
    let problem = r.assert_problem(409, "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("managed by channel {id}")),
        "{problem}"
    );

    // Publish 2.0 active: converge, the link switches.
    p.artifact("app", "2.0", b"version two");
    assert!(p.publish(2, &["--active", "app@2.0"]).status.success());
    wait_active(&s, "app", "2.0");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../packages/app/2.0")
    );
    assert_eq!(
        versions(&s, "app"),
        [
            ("1.0".into(), "downloaded".into()),
            ("2.0".into(), "active".into())
        ]
    );
    let (second, second_signature) = p.document();
    let unchanged = |s: &TestServer| {
        assert_eq!(
            versions(s, "app"),
            [
                ("1.0".into(), "downloaded".into()),
                ("2.0".into(), "active".into())
            ]
        );
        let c = s.get(&format!("/v1/channels/{id}")).json();
        assert_eq!(c["sequence"], 2, "{c}");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../packages/app/2.0")
        );
    };

    // A mirror serves sequence 1 again: a replay, refused, nothing changes.
    p.serve_document(first, first_signature, Knobs::default());
    wait_error(&s, &id, "replay");
    unchanged(&s);
    assert!(s.metric("packd_channel_documents_refused_total{reason=\"replay\"} ") >= 1);

    // A tampered document (an entry's digest changed) fails its signature.
    let tampered = String::from_utf8(second.clone()).unwrap().replacen(
        "\"sequence\": 2",
        "\"sequence\": 7",
        1,
    );
    p.serve_document(
        tampered.into_bytes(),
        second_signature.clone(),
        Knobs::default(),
    );
    wait_error(&s, &id, "does not match the document");
    unchanged(&s);

    // Signed by a key packd does not trust.
    let stranger = Publisher::new();
    stranger.artifact("app", "3.0", b"version three");
    assert!(
        stranger
            .publish(3, &["--active", "app@3.0"])
            .status
            .success()
    );
    let (forged, forged_signature) = stranger.document();
    p.serve_document(forged, forged_signature, Knobs::default());
    wait_error(&s, &id, "which packd does not trust");
    unchanged(&s);

    // An expired document (a frozen mirror) is refused.
    assert!(
        p.publish(3, &["--active", "app@2.0", "--expires", "0s"])
            .status
            .success()
    );
    wait_error(&s, &id, "expired");
    unchanged(&s);
    assert!(s.metric("packd_channel_documents_refused_total{reason=\"expired\"} ") >= 1);
    assert!(s.metric("packd_channel_documents_refused_total{reason=\"signature\"} ") >= 2);

    // Deleting the channel keeps its packages, as ordinary ones.
    s.send("DELETE", &format!("/v1/channels/{id}"), &[], None)
        .assert_status(204);
    s.get(&format!("/v1/channels/{id}"))
        .assert_problem(404, "not_found");
    for p in s.get("/v1/packages?name=app").json()["items"]
        .as_array()
        .unwrap()
    {
        assert_eq!(p["channel_id"], Value::Null, "{p}");
    }
    let _ = second;
}

/// A publisher without packd: the key made by Debian's `minisign`, the
/// artifact and the channel document signed by it. packd follows and
/// converges; a document whose trusted comment (signed by the same tool)
/// names another sequence is refused.
#[test]
fn a_channel_signed_by_debians_minisign_is_followed() {
    if !have_minisign() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = (dir.path().join("tool.key"), dir.path().join("tool.pub"));
    let password = dir.path().join("password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let (secret_s, public_s) = (secret.to_str().unwrap(), public.to_str().unwrap());
    minisign(&["-G", "-p", public_s, "-s", secret_s]);
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let p = Publisher {
        site,
        secret: secret.clone(),
        public,
        server: ArtifactServer::start(),
        _dir: dir,
    };
    let artifact = p.site.join("app-1.0.bin");
    std::fs::write(&artifact, b"signed by the tool").unwrap();
    let artifact = artifact.to_str().unwrap();
    minisign(&[
        "-S",
        "-s",
        secret_s,
        "-m",
        artifact,
        "-t",
        "name=app version=1.0",
    ]);
    // packd writes the document (checking the tool's artifact signature);
    // the tool signs it again, and that signature is what is served.
    let out = p.publish(
        1,
        &[
            "--active",
            "app@1.0",
            "--password-file",
            password.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let document = p.site.join("channel.json");
    let document = document.to_str().unwrap();
    minisign(&[
        "-S",
        "-s",
        secret_s,
        "-m",
        document,
        "-t",
        "channel=stable sequence=1",
    ]);
    let (body, by_tool) = p.document();
    assert!(
        String::from_utf8_lossy(&by_tool).contains("trusted comment: channel=stable sequence=1")
    );
    p.serve_document(body, by_tool, Knobs::default());

    let s = start(&p);
    let id = follow(&s, &p, "auto")["id"].as_str().unwrap().to_string();
    wait_active(&s, "app", "1.0");

    // A new document (sequence 2; a changed body, so no 304), signed by
    // the same tool and key with a trusted comment that lies about its
    // sequence: refused, nothing changes.
    let out = p.write(
        2,
        &[
            "--active",
            "app@1.0",
            "--password-file",
            password.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    minisign(&[
        "-S",
        "-s",
        secret_s,
        "-m",
        document,
        "-t",
        "channel=stable sequence=9",
    ]);
    let (body, lying) = p.document();
    p.serve_document(body, lying, Knobs::default());
    s.send("POST", &format!("/v1/channels/{id}/sync"), &[], None)
        .assert_status(202);
    wait_error(&s, &id, "it was made for another document");
    assert_eq!(
        versions(&s, "app"),
        [("1.0".to_string(), "active".to_string())]
    );
}

#[test]
fn a_304_costs_no_work_and_the_signature_is_not_fetched_again() {
    let p = Publisher::new();
    p.artifact("app", "1.0", b"version one");
    assert!(p.publish(1, &["--active", "app@1.0"]).status.success());
    let s = start(&p);
    let channel = follow(&s, &p, "auto");
    wait_active(&s, "app", "1.0");
    let signatures = p.server.requests("/stable/channel.json.minisig").len();
    // Three more syncs, each a conditional request answered 304.
    wait_for("three 304s", || {
        (s.metric("packd_channel_syncs_total{outcome=\"not_modified\"} ") >= 3).then_some(())
    });
    let answered = p
        .server
        .requests("/stable/channel.json")
        .iter()
        .filter(|r| r.status == 304 && r.if_none_match.is_some())
        .count();
    assert!(answered >= 3, "{answered}");
    assert_eq!(
        p.server.requests("/stable/channel.json.minisig").len(),
        signatures,
        "a 304 needs no signature"
    );
    assert_eq!(p.server.requests("/stable/app-1.0.bin").len(), 1);
    let c = s
        .get(&format!("/v1/channels/{}", channel["id"].as_str().unwrap()))
        .json();
    assert_eq!(c["last_error"], Value::Null, "{c}");
    let ops = s.get("/v1/operations?limit=1000").json();
    let downloads = ops["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "download")
        .count();
    assert_eq!(downloads, 1, "{ops}");
}

/// The waves, computed here as the contract says and compared with what
/// the binary took: `sha256(host_id/name/version)` modulo 100 below the
/// rollout.
#[test]
fn a_host_takes_the_entries_its_wave_says_and_no_other() {
    let p = Publisher::new();
    let names: Vec<String> = (0..24).map(|i| format!("tool{i}")).collect();
    let mut flags = Vec::new();
    for name in &names {
        p.artifact(name, "1.0", name.as_bytes());
        flags.push(format!("{name}@1.0=50"));
    }
    let mut args: Vec<&str> = Vec::new();
    for f in &flags {
        args.extend(["--rollout", f]);
    }
    assert!(p.publish(1, &args).status.success());
    let s = start(&p);
    let host = s.get("/v1/host").json();
    let host_id = host["host_id"].as_str().unwrap().to_string();
    assert_eq!(host["version"], env!("CARGO_PKG_VERSION"), "{host}");
    let channel = follow(&s, &p, "manual");
    wait_for("the first sync", || {
        let c = s
            .get(&format!("/v1/channels/{}", channel["id"].as_str().unwrap()))
            .json();
        c["sequence"].as_u64().map(|_| ())
    });
    let mut taken: Vec<String> = s.get("/v1/packages?limit=100").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    taken.sort();
    let mut expected: Vec<String> = names
        .iter()
        .filter(|name| {
            let digest = Sha256::digest(format!("{host_id}/{name}/1.0").as_bytes());
            digest
                .iter()
                .fold(0u32, |r, b| (r * 256 + u32::from(*b)) % 100)
                < 50
        })
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(taken, expected);
    assert!(
        !expected.is_empty() && expected.len() < names.len(),
        "{expected:?}"
    );
    // `manual`: downloaded, never activated.
    for name in &expected {
        wait_for("downloaded", || {
            (versions(&s, name) == [("1.0".into(), "downloaded".into())]).then_some(())
        });
    }
}

#[test]
fn a_sync_killed_midway_converges_once_after_a_restart() {
    let p = Publisher::new();
    p.artifact("app", "1.0", b"version one");
    assert!(p.publish(1, &["--active", "app@1.0"]).status.success());
    let (document, signature) = p.document();
    // The first fetch of the document hangs long enough to kill packd in it.
    p.serve_document(
        document,
        signature,
        Knobs {
            head_delay: std::time::Duration::from_secs(60),
            ..Knobs::default()
        },
    );
    let mut s = start(&p);
    let channel = follow(&s, &p, "auto");
    let id = channel["id"].as_str().unwrap().to_string();
    wait_for("the sync to be fetching", || {
        (!p.server.requests("/stable/channel.json").is_empty()).then_some(())
    });
    let op = s.get(&format!("/v1/channels/{id}")).json()["operation_id"].clone();
    assert_eq!(
        s.get(&format!("/v1/operations/{}", op.as_str().unwrap()))
            .json()["state"],
        "running"
    );
    s.kill9();
    let args = p.trust_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.restart(&args, &[]);
    wait_active(&s, "app", "1.0");
    assert_eq!(versions(&s, "app"), [("1.0".into(), "active".into())]);
    // The sync the kill interrupted ran again and finished.
    let done = s.finished(op.as_str().unwrap());
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["kind"], "sync", "{done}");
    assert_eq!(done["channel_id"], id.as_str(), "{done}");
    assert_eq!(done["package_id"], Value::Null, "{done}");
}

#[test]
fn channels_need_a_trusted_key_and_a_plain_url() {
    let s = TestServer::in_process(&[]);
    let r = s.json(
        "POST",
        "/v1/channels",
        &json!({"url": "http://127.0.0.1:9/c/channel.json"}),
    );
    let problem = r.assert_problem(409, "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--trusted-key"),
        "{problem}"
    );

    let keys = tempfile::tempdir().unwrap();
    let (_, public) = keygen(keys.path(), "publisher");
    let s = TestServer::in_process(&["--trusted-key", public.to_str().unwrap()]);
    for (url, why) in [
        ("ftp://example.org/c.json", "http"),
        ("http://example.org/c.json?sig=1", "query"),
        ("http://user:pw@example.org/c.json", "user"),
        ("http://:80/c.json", "host"),
    ] {
        let problem = s
            .json("POST", "/v1/channels", &json!({"url": url}))
            .assert_problem(422, "validation_failed");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{url}: {problem}"
        );
    }
    for interval in ["0s", "500ms", "8d", "soon"] {
        s.json(
            "POST",
            "/v1/channels",
            &json!({"url": "http://127.0.0.1:9/c.json", "interval": interval}),
        )
        .assert_problem(422, "validation_failed");
    }
    let c = s.json(
        "POST",
        "/v1/channels",
        &json!({"url": "http://127.0.0.1:9/c.json", "interval": "1h"}),
    );
    c.assert_status(201);
    s.json(
        "POST",
        "/v1/channels",
        &json!({"url": "http://127.0.0.1:9/c.json"}),
    )
    .assert_problem(409, "conflict");
    let id = c.json()["id"].as_str().unwrap().to_string();
    let patched = s
        .json(
            "PATCH",
            &format!("/v1/channels/{id}"),
            &json!({"activate": "auto", "interval": "10m"}),
        )
        .json();
    assert_eq!(
        (patched["activate"].as_str(), patched["interval"].as_str()),
        (Some("auto"), Some("10m"))
    );
    let list = s.get("/v1/channels").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

/// `packd channel publish` refuses what would hurt the fleet: a sequence
/// that does not grow, an active version it has no artifact for, an
/// artifact whose signature is another key's or does not match its bytes.
#[test]
fn publish_refuses_a_sequence_that_does_not_grow_and_a_bad_signature() {
    let p = Publisher::new();
    p.artifact("app", "1.0", b"version one");
    assert!(p.publish(5, &[]).status.success());
    let failed = |out: std::process::Output, why: &str| {
        assert!(!out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(why), "{err}");
    };
    failed(p.publish(5, &[]), "not above 5");
    failed(p.publish(6, &["--active", "app@9"]), "no artifact");
    failed(p.publish(6, &["--rollout", "app@1.0=101"]), "0 to 100");
    std::fs::write(p.site.join("app-1.0.bin"), b"changed after signing").unwrap();
    failed(p.publish(6, &[]), "sign it again");
    let doc: Value = serde_json::from_slice(&p.document().0).unwrap();
    assert_eq!(
        doc["sequence"], 5,
        "a refused publish leaves the document as it was"
    );
}

/// `packd channel …` against a live server: add, list, get, sync --wait,
/// edit, remove; its answer types know every field the server sends.
#[test]
fn channels_through_the_client() {
    use packd::client::answers::{Channel, Operation};
    let p = Publisher::new();
    p.artifact("app", "1.0", b"version one");
    assert!(p.publish(1, &["--active", "app@1.0"]).status.success());
    let s = start(&p);
    let client = |args: &[&str]| {
        let out = run_packd(
            args,
            &[
                ("PACKD_URL", s.base.as_str()),
                ("PACKD_API_KEY", crate::helpers::ADMIN_KEY),
            ],
        );
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let url = p.url();
    let added: Channel = serde_json::from_str(&client(&[
        "channel",
        "add",
        &url,
        "--activate",
        "auto",
        "--interval",
        "1h",
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(added.more.is_empty(), "{added:?}");
    assert_eq!(
        (added.activate.as_str(), added.interval.as_str()),
        ("auto", "1h")
    );
    let id = added.id.to_string();
    wait_active(&s, "app", "1.0");
    let list = client(&["channel", "list"]);
    assert_eq!(
        list.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "ID", "NAME", "SEQUENCE", "ACTIVATE", "INTERVAL", "LAST", "CHECKED", "ERROR"
        ]
    );
    assert!(list.contains("stable"), "{list}");
    let got = client(&["channel", "get", &id]);
    assert!(got.contains("sequence") && got.contains("stable"), "{got}");
    let synced: Operation =
        serde_json::from_str(&client(&["channel", "sync", &id, "--wait", "-o", "json"])).unwrap();
    assert!(synced.more.is_empty(), "{synced:?}");
    assert_eq!(
        (
            synced.kind.as_str(),
            synced.state.as_str(),
            synced.package_id,
            synced.channel_id
        ),
        ("sync", "succeeded", None, Some(added.id))
    );
    let edited: Channel = serde_json::from_str(&client(&[
        "channel",
        "edit",
        &id,
        "--activate",
        "manual",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(edited.activate, "manual");
    assert!(client(&["channel", "remove", &id]).contains("deleted channel"));
    let ops = client(&["op", "list"]);
    assert!(ops.contains(&format!("channel {id}")), "{ops}");
}
