//! The command-line client, run as the real binary against a real server:
//! every command, each exit status (0 done, 1 the operation failed, 2
//! usage, 3 unreachable, 4 refused key, 5 other problem), JSON output that
//! parses, and no terminal escapes when the output is not a terminal.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{ADMIN_KEY, BIN, TestServer};

/// Runs `packd ARGS` as a client of `s` (key and URL from the environment).
fn packd(s: &TestServer, args: &[&str]) -> Output {
    packd_as(s, Some(ADMIN_KEY), args)
}

fn packd_as(s: &TestServer, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("PACKD_URL", &s.base)
        .env_remove("PACKD_API_KEY")
        .env_remove("PACKD_OUTPUT")
        .env_remove("PACKD_DB")
        .stdin(Stdio::null());
    if let Some(key) = key {
        cmd.env("PACKD_API_KEY", key);
    }
    let out = cmd.output().expect("run packd");
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !stream.contains(&0x1b),
            "terminal escapes in output that is not a terminal: {}",
            String::from_utf8_lossy(stream)
        );
    }
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
/// A table's header line, its columns one space apart.
fn header_of(out: &Output) -> String {
    stdout(out)
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_of(out: &Output) -> Value {
    assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn packages_and_operations_through_the_client() {
    let s = TestServer::in_process(&[
        "--download-duration",
        "300ms",
        "--activate-duration",
        "0s",
        "--deactivate-duration",
        "0s",
    ]);
    // Create, as a table and as JSON.
    let out = packd(&s, &["pkg", "create", "jq", "1.7"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("created"), "{}", stdout(&out));
    let created = json_of(&packd(
        &s,
        &["pkg", "create", "jq", "1.8", "--output", "json"],
    ));
    assert_eq!(created["status"], "created");
    let id = created["id"].as_str().unwrap().to_string();

    // List and get, by id and by NAME@VERSION.
    let list = json_of(&packd(
        &s,
        &["pkg", "list", "--name", "jq", "--output", "json"],
    ));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let table = stdout(&packd(&s, &["pkg", "list"]));
    assert!(table.lines().next().unwrap().contains("NAME"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert_eq!(
        json_of(&packd(&s, &["pkg", "get", "jq@1.8", "-o", "json"]))["id"],
        id.as_str()
    );
    assert_eq!(
        json_of(&packd(&s, &["pkg", "get", &id, "--output", "json"]))["version"],
        "1.8"
    );

    // Download and wait: plain progress lines on stderr (not a terminal),
    // the finished operation on stdout.
    let out = packd(
        &s,
        &["pkg", "download", "jq@1.8", "--wait", "--output", "json"],
    );
    let op = json_of(&out);
    assert_eq!(op["state"], "succeeded");
    let lines = stderr(&out);
    assert!(lines.contains("download jq@1.8: running"), "{lines}");
    assert!(lines.trim_end().ends_with("succeeded 100%"), "{lines}");

    // Activate without --wait answers at once with the queued operation;
    // op wait follows it.
    let started = json_of(&packd(&s, &["pkg", "activate", &id, "-o", "json"]));
    let op_id = started["id"].as_str().unwrap();
    assert!(["queued", "running", "succeeded"].contains(&started["state"].as_str().unwrap()));
    assert_eq!(
        json_of(&packd(&s, &["op", "wait", op_id, "-o", "json"]))["state"],
        "succeeded"
    );
    assert_eq!(
        json_of(&packd(&s, &["op", "get", op_id, "-o", "json"]))["kind"],
        "activate"
    );
    let ops = json_of(&packd(
        &s,
        &["op", "list", "--package", "jq@1.8", "-o", "json"],
    ));
    assert_eq!(ops.as_array().unwrap().len(), 2);
    let done = json_of(&packd(
        &s,
        &["op", "list", "--state", "succeeded", "-o", "json"],
    ));
    assert_eq!(done.as_array().unwrap().len(), 2);
    // The table names the package, not its UUID.
    let table = stdout(&packd(&s, &["op", "list", "--package", "jq@1.8"]));
    assert!(
        table.lines().skip(1).all(|l| l.contains(" jq@1.8 ")),
        "{table}"
    );

    // A package with a source: --source is the source's, and --url is the
    // server's everywhere (or PACKD_URL).
    let server = crate::artifacts::ArtifactServer::start();
    let body = crate::artifacts::pattern(200_000);
    let url = server.put("/tool-2.0", body.clone(), Default::default());
    let sha = crate::artifacts::sha256_hex(&body);
    // A digest pasted in upper case is taken, in the API's lower case.
    let upper = sha.to_ascii_uppercase();
    let out = packd(
        &s,
        &[
            "pkg", "create", "tool", "2.0", "--source", &url, "--sha256", &upper, "-o", "json",
        ],
    );
    assert_eq!(json_of(&out)["source"]["url"], url.as_str());
    assert_eq!(json_of(&out)["source"]["sha256"], sha.as_str());
    // The table holds the source, field by field, like every other field.
    let shown = stdout(&packd(&s, &["pkg", "get", "tool@2.0"]));
    let row = |field: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
    };
    assert_eq!(row("source").as_deref(), Some(url.as_str()), "{shown}");
    assert_eq!(row("sha256").as_deref(), Some(sha.as_str()), "{shown}");
    assert_eq!(row("signed").as_deref(), Some("no"), "{shown}");
    let out = packd(
        &s,
        &[
            "pkg", "--url", &s.base, "download", "tool@2.0", "--wait", "-o", "json",
        ],
    );
    let op = json_of(&out);
    assert_eq!(
        (op["state"].as_str(), op["bytes_done"].as_u64()),
        (Some("succeeded"), Some(200_000))
    );
    assert!(
        stderr(&out).contains("of 195.31 KiB"),
        "bytes in the lines: {}",
        stderr(&out)
    );

    // Exit 5: the API's problem, with its detail, on stderr.
    let out = packd(&s, &["pkg", "delete", "jq@1.8"]);
    assert_eq!(code(&out), 5);
    assert!(
        stderr(&out).contains("409 invalid_transition"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("deactivate it first"),
        "{}",
        stderr(&out)
    );
    let out = packd(&s, &["op", "cancel", op_id]);
    assert_eq!(code(&out), 5);
    assert!(
        stderr(&out).contains("already_finished"),
        "{}",
        stderr(&out)
    );

    // Edit, deactivate, delete.
    let out = packd(&s, &["pkg", "deactivate", "jq@1.8", "--wait"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let edited = json_of(&packd(
        &s,
        &["pkg", "edit", "jq@1.8", "--version", "1.9", "-o", "json"],
    ));
    assert_eq!(
        (edited["version"].as_str(), edited["status"].as_str()),
        (Some("1.9"), Some("created"))
    );
    let gone = json_of(&packd(&s, &["pkg", "delete", "jq@1.9", "-o", "json"]));
    assert_eq!(gone["id"], id.as_str());
    let out = packd(&s, &["pkg", "get", "jq@1.9"]);
    assert_eq!(code(&out), 5);
    assert!(stderr(&out).contains("404 not_found"), "{}", stderr(&out));
}

#[test]
fn exit_statuses_say_what_went_wrong() {
    let s = TestServer::in_process(&[
        "--download-duration",
        "0s",
        "--stub-failure-rate",
        "1",
        "--max-attempts",
        "1",
    ]);
    packd(&s, &["pkg", "create", "jq", "1.7"]);

    // 1: the operation failed.
    let out = packd(&s, &["pkg", "download", "jq@1.7", "--wait"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the operation failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("failed"),
        "the operation is still shown"
    );

    // 2: usage, from clap and from the client.
    for args in [
        &["pkg", "create", "jq"][..],
        &["pkg", "frobnicate"],
        &["pkg", "get", "neither-id-nor-ref"],
        &["pkg", "list", "--output", "yaml"],
        &["pkg", "create", "x", "1", "--url", "https://example.org/x"],
    ] {
        let out = packd(&s, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
        if args.contains(&"--url") {
            assert!(stderr(&out).contains("--source URL"), "{}", stderr(&out));
        }
    }
    let out = Command::new(BIN)
        .args(["pkg", "--url", "ftp://127.0.0.1/", "list"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // 3: nothing listens there.
    let out = Command::new(BIN)
        .args([
            "pkg",
            "--url",
            "http://127.0.0.1:9",
            "list",
            "--key",
            ADMIN_KEY,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    // 4: no key, a wrong key, a key without the role.
    let out = packd_as(&s, None, &["pkg", "list"]);
    assert_eq!(code(&out), 4);
    assert!(
        stderr(&out).contains("set PACKD_API_KEY or pass --key"),
        "{}",
        stderr(&out)
    );
    // A REF with an empty name or version is a usage error, not a 404.
    for bad in ["greet@", "@1.0"] {
        let out = packd(&s, &["pkg", "get", bad]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
    }
    let out = packd_as(
        &s,
        Some("wrong-key-0123456789abcdefghijklmnopqrstu"),
        &["pkg", "list"],
    );
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let reader = json_of(&packd(
        &s,
        &[
            "keys", "create", "--name", "ro", "--role", "read", "-o", "json",
        ],
    ));
    let out = packd_as(&s, reader["key"].as_str(), &["pkg", "create", "x", "1"]);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("403 forbidden"), "{}", stderr(&out));

    // 5: any other problem.
    let out = packd(&s, &["pkg", "create", "jq", "1.7"]);
    assert_eq!(code(&out), 5);
    assert!(stderr(&out).contains("409 duplicate"), "{}", stderr(&out));
    // A server that is not packd: what it is, not its page.
    let other = crate::artifacts::ArtifactServer::start();
    other.put(
        "/v1/packages",
        b"<html><body>Welcome to nginx!</body></html>".to_vec(),
        crate::artifacts::Knobs {
            status: Some(500),
            ..Default::default()
        },
    );
    let out = packd(&s, &["pkg", "--url", &other.base, "list"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not packd's") && !stderr(&out).contains("<html>"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_are_managed_online_and_offline() {
    let mut s = TestServer::start();
    let created = json_of(&packd(
        &s,
        &[
            "keys", "create", "--name", "ci", "--role", "write", "--ttl", "90d", "-o", "json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(created["expires_at"].is_string());
    let table = stdout(&packd(
        &s,
        &["keys", "create", "--name", "t", "--role", "read"],
    ));
    assert!(table.contains("secret (shown only now): "), "{table}");

    let listed = json_of(&packd(&s, &["keys", "list", "-o", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let online_header = header_of(&packd(&s, &["keys", "list"]));
    assert!(!listed.to_string().contains(&secret), "no secret in a list");
    assert_eq!(
        json_of(&packd(&s, &["keys", "get", &id, "-o", "json"]))["name"],
        "ci"
    );
    let rotated = json_of(&packd(
        &s,
        &["keys", "rotate", &id, "--grace", "1m", "-o", "json"],
    ));
    assert_ne!(rotated["key"], secret.as_str());
    assert_eq!(
        json_of(&packd(&s, &["keys", "deactivate", &id, "-o", "json"]))["active"],
        false
    );
    assert_eq!(
        json_of(&packd(&s, &["keys", "activate", &id, "-o", "json"]))["active"],
        true
    );
    assert_eq!(code(&packd(&s, &["keys", "delete", &id])), 0);
    assert_eq!(code(&packd(&s, &["keys", "get", &id])), 5);

    // A cancel through the client; waiting on a cancelled operation is exit 1.
    packd(&s, &["pkg", "create", "slow", "1"]);
    let op = json_of(&packd(&s, &["pkg", "download", "slow@1", "-o", "json"]));
    let op_id = op["id"].as_str().unwrap();
    let cancelled = json_of(&packd(&s, &["op", "cancel", op_id, "-o", "json"]));
    assert!(
        cancelled["state"] == "cancelled" || cancelled["cancel_requested"] == true,
        "{cancelled}"
    );
    let out = packd(&s, &["op", "wait", op_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));

    // With --db, offline on the file (the server stopped).
    s.terminate();
    let db = s.db.to_str().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["keys", "list", "--db", &db])
        .env_remove("PACKD_URL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("admin"), "{}", stdout(&out));
    // The same columns online and offline.
    assert_eq!(header_of(&out), online_header);
    assert_eq!(online_header, "ID NAME ROLE STATE PREFIX EXPIRES USES");
    let out = Command::new(BIN)
        .args(["keys", "rotate", &id, "--db", &db])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("go through the API"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("packd") && script.contains("pkg"),
            "{shell}: {script}"
        );
        assert!(script.len() > 1000, "{shell}");
    }
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert_eq!(code(&out), 0);
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH packd 1"),
        "{page}"
    );
    assert!(page.contains("pkg"), "the subcommands are listed");
}

/// `pkg pin` and `pkg unpin` set and clear `pinned`; the list shows it in
/// a column of its own and `pkg get` as a field.
#[test]
fn pin_and_unpin_through_the_client() {
    let s = TestServer::in_process(&[]);
    json_of(&packd(&s, &["pkg", "create", "tool", "1.0", "-o", "json"]));
    let pinned = json_of(&packd(&s, &["pkg", "pin", "tool@1.0", "-o", "json"]));
    assert_eq!(pinned["pinned"], true, "{pinned}");
    let list = packd(&s, &["pkg", "list"]);
    assert_eq!(header_of(&list), "ID NAME VERSION STATUS PINNED SOURCE");
    let row = stdout(&list).lines().nth(1).unwrap().to_string();
    assert_eq!(row.split_whitespace().nth(4), Some("yes"), "{row}");
    let shown = stdout(&packd(&s, &["pkg", "get", "tool@1.0"]));
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().eq(["pinned", "yes"])),
        "{shown}"
    );
    let unpinned = json_of(&packd(&s, &["pkg", "unpin", "tool@1.0", "-o", "json"]));
    assert_eq!(unpinned["pinned"], false, "{unpinned}");
    let row = stdout(&packd(&s, &["pkg", "list"]))
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(row.split_whitespace().nth(4), Some("-"), "{row}");
}

/// The manual pages a .deb installs: one per subcommand, each with its
/// exit statuses, written by `packd man --dir`.
#[test]
fn a_manual_page_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for page in [
        "packd.1",
        "packd-serve.1",
        "packd-pkg-pin.1",
        "packd-channel-publish.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains("EXIT STATUS"), "{page}");
    }
    assert!(stdout(&out).lines().count() > 40, "{}", stdout(&out));
}

/// On a terminal `--wait` draws a progress bar (on standard error), not the
/// plain lines a pipe gets. `script` (util-linux) gives the client a
/// terminal of its own.
#[test]
fn on_a_terminal_wait_draws_a_progress_bar() {
    let screen = download_on_a_terminal("1s", "xterm");
    assert!(
        screen.contains('\u{1b}'),
        "a terminal gets a drawn bar: {screen:?}"
    );
    assert!(screen.contains("download jq@1.7 ["), "{screen:?}");
    assert!(
        !screen.contains("download jq@1.7: running"),
        "no plain lines: {screen:?}"
    );
    assert!(screen.contains("succeeded"), "{screen:?}");
}

/// `TERM=dumb` (or none) on a terminal draws no bar: the plain lines are
/// shown instead of nothing.
#[test]
fn a_dumb_terminal_gets_lines() {
    let screen = download_on_a_terminal("200ms", "dumb");
    assert!(screen.contains("download jq@1.7: "), "{screen:?}");
}

/// `pkg download jq@1.7 --wait` on a terminal of its own (`script`, from
/// util-linux) with this `TERM`, against a server whose simulated download
/// takes `duration`; what the terminal showed.
fn download_on_a_terminal(duration: &str, term: &str) -> String {
    let s = TestServer::in_process(&["--download-duration", duration]);
    packd(&s, &["pkg", "create", "jq", "1.7"]);
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{BIN} pkg download jq@1.7 --wait"),
            "/dev/null",
        ])
        .env("PACKD_URL", &s.base)
        .env("PACKD_API_KEY", ADMIN_KEY)
        .env("TERM", term)
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

/// A retry is said with its attempt and why the last one failed; `op
/// wait` names the package, not the operation's UUID.
#[test]
fn waiting_says_each_retry_and_names_the_package() {
    let s = TestServer::in_process(&["--retry-delay", "50ms", "--max-attempts", "3"]);
    let server = crate::artifacts::ArtifactServer::start();
    let body = crate::artifacts::pattern(300_000);
    let url = server.put(
        "/cut",
        body.clone(),
        crate::artifacts::Knobs {
            drop_after: Some(100_000),
            ..Default::default()
        },
    );
    let sha = crate::artifacts::sha256_hex(&body);
    packd(
        &s,
        &[
            "pkg", "create", "cut", "1", "--source", &url, "--sha256", &sha,
        ],
    );
    let out = packd(&s, &["pkg", "download", "cut@1", "--wait"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("download cut@1: attempt 2 (the last one failed: "),
        "{said}"
    );

    packd(&s, &["pkg", "create", "later", "1"]);
    let op = json_of(&packd(&s, &["pkg", "download", "later@1", "-o", "json"]));
    let out = packd(&s, &["op", "wait", op["id"].as_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("download later@1: "),
        "{}",
        stderr(&out)
    );
}

/// The client's types of the server's answers know every field the server
/// sends (nothing left over in `more`), and read what it sends: when the
/// API gains or changes a field, this fails until the client follows.
#[test]
fn the_client_reads_every_field_the_server_answers() {
    use packd::client::answers::{Key, Operation, Package};
    let s = TestServer::in_process(&["--download-duration", "0s"]);
    let created = s.json(
        "POST",
        "/v1/packages",
        &serde_json::json!({"name": "typed", "version": "1",
            "source": {"url": "https://example.org/t.tar", "sha256": "ab".repeat(32), "size": 3}}),
    );
    let p: Package = serde_json::from_str(&created.body).unwrap();
    assert!(
        p.more.is_empty() && p.source.as_ref().is_some_and(|s| s.more.is_empty()),
        "{p:?}"
    );
    let plain: Package = serde_json::from_value(s.create_package("plain", "1")).unwrap();
    let op = s.send(
        "POST",
        &format!("/v1/packages/{}/download", plain.id),
        &[],
        None,
    );
    let op: Operation = serde_json::from_str(&op.body).unwrap();
    assert!(op.more.is_empty(), "{op:?}");
    let done: Operation = serde_json::from_value(s.finished(&op.id.to_string())).unwrap();
    assert_eq!(done.state, "succeeded");
    let made = s.json(
        "POST",
        "/v1/keys",
        &serde_json::json!({"name": "typed", "role": "read"}),
    );
    let k: Key = serde_json::from_str(&made.body).unwrap();
    assert!(k.key.is_some() && k.more.is_empty(), "{k:?}");
    let listed: Key = serde_json::from_str(&s.get(&format!("/v1/keys/{}", k.id)).body).unwrap();
    assert!(listed.key.is_none() && listed.more.is_empty());
}
