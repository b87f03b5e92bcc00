//! Signed artifacts over the real binary: keys made and artifacts signed by
//! `packd keygen` and `packd sign`, and by Debian's `minisign` as an
//! independent witness; a download checks the signature's key, its trusted
//! comment and the bytes, and a refusal stores nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::artifacts::{ArtifactServer, Knobs, pattern, sha256_hex};
use crate::helpers::{TestServer, data_dir_for, run_packd};

/// A key pair made by `packd keygen` in `dir`: (secret key, public key file).
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let out = run_packd(&["keygen", "--output", prefix.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{out:?}");
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

/// `packd sign`'s signature of `bytes` for (name, version).
fn sign(dir: &Path, secret: &Path, name: &str, version: &str, bytes: &[u8]) -> String {
    sign_with(dir, secret, None, name, version, bytes)
}

fn sign_with(
    dir: &Path,
    secret: &Path,
    password_file: Option<&Path>,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> String {
    let artifact = dir.join(format!("{name}-{version}-{}.bin", sha256_hex(bytes)));
    std::fs::write(&artifact, bytes).unwrap();
    let mut args = vec![
        "sign",
        "--secret-key",
        secret.to_str().unwrap(),
        "--name",
        name,
        "--version",
        version,
    ];
    if let Some(p) = password_file {
        args.extend(["--password-file", p.to_str().unwrap()]);
    }
    args.push(artifact.to_str().unwrap());
    let out = run_packd(&args, &[]);
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(format!("{}.minisig", artifact.display())).unwrap()
}

/// Creates (name, 1.0) with this source and downloads it; the finished
/// operation.
fn download(s: &TestServer, name: &str, url: &str, body: &[u8], signature: &str) -> Value {
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": name, "version": "1.0", "source": {
            "url": url, "sha256": sha256_hex(body), "signature": signature}}),
    );
    r.assert_status(201);
    let op = s.send(
        "POST",
        &format!("/v1/packages/{}/download", r.id()),
        &[],
        None,
    );
    op.assert_status(202);
    s.finished(&op.id())
}

fn refused(done: &Value, why: &str) {
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "a refusal is not retried: {done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("signature_invalid") && error.contains(why),
        "{error}"
    );
}

fn stored(s: &TestServer, body: &[u8]) -> bool {
    data_dir_for(&s.db)
        .join("artifacts/sha256")
        .join(sha256_hex(body))
        .exists()
}

#[test]
fn a_signed_artifact_installs_and_every_forgery_fails_with_nothing_stored() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(keys.path(), "publisher");
    let (stranger, _) = keygen(keys.path(), "stranger");
    let server = ArtifactServer::start();
    let body = pattern(300_000);
    let url = server.put("/tool", body.clone(), Knobs::default());
    let s = TestServer::start_with(&["--trusted-key", public.to_str().unwrap()], &[]);

    let trust = s.get("/v1/trust").json();
    assert_eq!(trust["signatures_required"], true, "{trust}");
    assert_eq!(trust["items"].as_array().unwrap().len(), 1, "{trust}");

    // Unsigned: refused at the door, naming the field.
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "tool", "version": "1.0", "source": {
            "url": url, "sha256": sha256_hex(&body)}}),
    );
    let p = r.assert_problem(422, "validation_failed");
    assert_eq!(p["field"], "source.signature", "{p}");
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "tool", "version": "1.0", "source": {
            "url": url, "sha256": sha256_hex(&body), "signature": "not minisign"}}),
    );
    r.assert_problem(422, "validation_failed");

    // By a key nobody trusts; for another version; over other bytes.
    let theirs = sign(keys.path(), &stranger, "a", "1.0", &body);
    refused(&download(&s, "a", &url, &body, &theirs), "not trust");
    let other_version = sign(keys.path(), &secret, "b", "2.0", &body);
    refused(
        &download(&s, "b", &url, &body, &other_version),
        "another package",
    );
    let other_bytes = sign(keys.path(), &secret, "c", "1.0", b"other bytes");
    refused(
        &download(&s, "c", &url, &body, &other_bytes),
        "does not match",
    );
    assert!(!stored(&s, &body), "a refused artifact was stored");
    assert!(
        s.metric("packd_download_failures_total{reason=\"signature_invalid\"}") >= 3,
        "{}",
        s.get("/metrics").body
    );

    // The real thing.
    let good = sign(keys.path(), &secret, "d", "1.0", &body);
    let done = download(&s, "d", &url, &body, &good);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(stored(&s, &body));
}

#[test]
fn an_artifact_stored_before_keys_were_trusted_vouches_for_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(keys.path(), "publisher");
    let server = ArtifactServer::start();
    let body = pattern(100_000);
    let url = server.put("/tool", body.clone(), Knobs::default());
    let mut s = TestServer::start_with(&[], &[]);
    // No key trusted: a signature is kept but not checked.
    let done = download(
        &s,
        "early",
        &url,
        &body,
        &sign(keys.path(), &secret, "x", "9", &body),
    );
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(stored(&s, &body));

    s.terminate();
    s.restart(&["--trusted-key", public.to_str().unwrap()], &[]);
    let forged = sign(keys.path(), &secret, "late", "1.0", b"other bytes");
    refused(
        &download(&s, "late", &url, &body, &forged),
        "does not match",
    );
    let good = sign(keys.path(), &secret, "fine", "1.0", &body);
    let done = download(&s, "fine", &url, &body, &good);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        server.requests("/tool").len(),
        1,
        "the stored artifact served"
    );
}

/// Whether Debian's `minisign` is here to witness; where it is not, the
/// test is skipped (saying so) unless PACKD_TEST_NEEDS_MINISIGN=1 (CI
/// installs it).
pub(crate) fn have_minisign() -> bool {
    if Command::new("minisign").arg("-v").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("PACKD_TEST_NEEDS_MINISIGN").is_none(),
        "minisign is required here"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: minisign is not installed");
    false
}

/// Runs Debian's `minisign` with `args`, its key's password (`correct
/// horse`, the content of the password files the tests write) given on
/// standard input as a script would.
pub(crate) fn minisign(args: &[&str]) {
    use std::io::Write;
    let mut child = Command::new("minisign")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // It may exit before reading (a refusal): its status says why, below.
    let _ = stdin.write_all(b"correct horse\ncorrect horse\n");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "minisign {args:?}: {out:?}");
}

/// Debian's `minisign` is the witness: its keys and signatures work with
/// packd, and packd's signatures verify with it. Skipped where it is not
/// installed, unless PACKD_TEST_NEEDS_MINISIGN=1 (CI installs it).
#[test]
fn minisign_the_tool_and_packd_agree() {
    if !have_minisign() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = (dir.path().join("tool.pub"), dir.path().join("tool.key"));
    // Its default: a key encrypted with a password, given on standard
    // input as a script would.
    let password = dir.path().join("password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let run = minisign;
    run(&[
        "-G",
        "-p",
        public.to_str().unwrap(),
        "-s",
        secret.to_str().unwrap(),
    ]);
    let server = ArtifactServer::start();
    let body = pattern(50_000);
    let artifact = dir.path().join("tool.bin");
    std::fs::write(&artifact, &body).unwrap();
    let url = server.put("/tool", body.clone(), Knobs::default());
    let s = TestServer::start_with(&["--trusted-key", public.to_str().unwrap()], &[]);

    // Signed by the tool, verified by packd.
    run(&[
        "-S",
        "-s",
        secret.to_str().unwrap(),
        "-m",
        artifact.to_str().unwrap(),
        "-t",
        "name=by-tool version=1.0",
    ]);
    let by_tool = std::fs::read_to_string(dir.path().join("tool.bin.minisig")).unwrap();
    let done = download(&s, "by-tool", &url, &body, &by_tool);
    assert_eq!(done["state"], "succeeded", "{done}");

    // Signed by packd with the tool's secret key, verified by both.
    let by_packd = sign_with(
        dir.path(),
        &secret,
        Some(&password),
        "by-packd",
        "1.0",
        &body,
    );
    let signed_file = dir.path().join("checked.bin");
    std::fs::write(&signed_file, &body).unwrap();
    std::fs::write(dir.path().join("checked.bin.minisig"), &by_packd).unwrap();
    run(&[
        "-V",
        "-p",
        public.to_str().unwrap(),
        "-m",
        signed_file.to_str().unwrap(),
    ]);
    let done = download(&s, "by-packd", &url, &body, &by_packd);
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// A download cut after a checkpoint resumes with `Range`: the signature is
/// still checked over every byte, those an earlier attempt saved included.
#[test]
fn a_resumed_download_is_checked_over_every_byte() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(keys.path(), "publisher");
    let server = ArtifactServer::start();
    let body = pattern(2_000_000);
    let knobs = Knobs {
        chunk: 64 * 1024,
        pause_after: Some(256 * 1024),
        pause: std::time::Duration::from_millis(1300),
        drop_after: Some(512 * 1024),
        ..Knobs::default()
    };
    let url = server.put("/cut.bin", body.clone(), knobs.clone());
    let s = TestServer::start_with(
        &[
            "--trusted-key",
            public.to_str().unwrap(),
            "--retry-delay",
            "50ms",
            "--max-attempts",
            "3",
        ],
        &[],
    );
    let good = sign(keys.path(), &secret, "cut", "1.0", &body);
    let done = download(&s, "cut", &url, &body, &good);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let requests = server.requests("/cut.bin");
    assert!(
        requests[1]
            .range
            .as_deref()
            .is_some_and(|r| r != "bytes=0-"),
        "not resumed: {requests:?}"
    );

    // The same cut, with a signature over other bytes: refused once the
    // resumed transfer ends, nothing stored.
    let other = pattern(2_000_003);
    let url = server.put("/cut-again.bin", other.clone(), knobs);
    let forged = sign(keys.path(), &secret, "forged", "1.0", &body);
    let done = download(&s, "forged", &url, &other, &forged);
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.starts_with("signature_invalid"), "{error}");
    assert!(!stored(&s, &other));
}

/// The configuration file holds the trusted keys; SIGHUP reads it again:
/// a rotation (two keys, then the old one dropped) accepts then refuses,
/// a change that needs a restart is named, and a broken file changes
/// nothing while the server goes on serving.
#[test]
fn sighup_rotates_the_trusted_keys_and_a_broken_file_changes_nothing() {
    use crate::helpers::{signal, wait_for};
    let keys = tempfile::tempdir().unwrap();
    let (old_secret, old_public) = keygen(keys.path(), "old");
    let (new_secret, new_public) = keygen(keys.path(), "new");
    let config = keys.path().join("packd.toml");
    let write = |text: String| std::fs::write(&config, text).unwrap();
    write(format!(
        "# both, for the rotation\ntrusted_keys = [{:?}, {:?}]\nworkers = 2\n",
        old_public.to_str().unwrap(),
        new_public.to_str().unwrap()
    ));
    let server = ArtifactServer::start();
    let body = pattern(20_000);
    let url = server.put("/tool", body.clone(), Knobs::default());
    let s = TestServer::start_with(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(
        s.get("/v1/trust").json()["items"].as_array().unwrap().len(),
        2
    );
    let by_old = sign(keys.path(), &old_secret, "a", "1.0", &body);
    assert_eq!(
        download(&s, "a", &url, &body, &by_old)["state"],
        "succeeded"
    );

    let reloads = |s: &TestServer, what: &str| s.stderr().matches(what).count();
    write(format!(
        "trusted_keys = [{:?}]\nworkers = 3\n",
        new_public.to_str().unwrap()
    ));
    signal(s.pid(), "HUP");
    wait_for("the reload", || {
        (reloads(&s, "the configuration was read again") == 1).then_some(())
    });
    let log = s.stderr();
    assert!(
        log.contains("applied=[\"trusted_keys\"]") && log.contains("needs_restart=[\"workers\"]"),
        "{log}"
    );
    let trust = s.get("/v1/trust").json();
    assert_eq!(trust["items"].as_array().unwrap().len(), 1, "{trust}");
    let by_old = sign(keys.path(), &old_secret, "b", "1.0", &body);
    refused(&download(&s, "b", &url, &body, &by_old), "not trust");
    let by_new = sign(keys.path(), &new_secret, "c", "1.0", &body);
    assert_eq!(
        download(&s, "c", &url, &body, &by_new)["state"],
        "succeeded"
    );

    // A broken file: nothing changes, and the server serves on.
    write("trusted_keys = [\n".into());
    signal(s.pid(), "HUP");
    wait_for("the refused reload", || {
        (reloads(&s, "the configuration was not reloaded") == 1).then_some(())
    });
    assert_eq!(
        s.get("/v1/trust").json()["items"].as_array().unwrap().len(),
        1
    );
    s.get("/healthz").assert_status(200);

    // Rate limits change live too.
    write(format!(
        "trusted_keys = [{:?}]\nworkers = 3\nrate_limit = 1\n",
        new_public.to_str().unwrap()
    ));
    signal(s.pid(), "HUP");
    wait_for("the second reload", || {
        (reloads(&s, "the configuration was read again") == 2).then_some(())
    });
    assert!(
        s.stderr().contains("applied=[\"rate_limit\"]"),
        "{}",
        s.stderr()
    );
    let statuses: Vec<u16> = (0..5).map(|_| s.get("/v1/trust").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// `packd config check` prints what `serve` would run with, and where each
/// setting came from; a wrong file is exit 2 with its line.
#[test]
fn config_check_shows_the_effective_settings_and_refuses_a_wrong_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("packd.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:9000\"\nbootstrap_key = \"never-shown-0123456789-0123456789\"\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let out = run_packd(
        &["config", "check", "--config", path],
        &[("PACKD_WORKERS", "9")],
    );
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("listen = \"127.0.0.1:9000\"  # file"),
        "{shown}"
    );
    assert!(shown.contains("workers = \"9\"  # environment"), "{shown}");
    assert!(shown.contains("bootstrap_key = \"********\""), "{shown}");
    assert!(!shown.contains("never-shown"), "{shown}");

    std::fs::write(&config, "listen = \"127.0.0.1:9000\"\nlisten_on = 1\n").unwrap();
    let out = run_packd(&["config", "check", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("packd.toml:2: unknown key `listen_on`"),
        "{said}"
    );
    // serve refuses it the same way, before anything starts.
    let out = run_packd(&["serve", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A secret is not taken on the command line (ps shows it to everyone).
    let out = run_packd(
        &[
            "serve",
            "--bootstrap-key",
            "a-secret-in-ps-0123456789-0123456789",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("PACKD_BOOTSTRAP_KEY"), "{said}");
}
