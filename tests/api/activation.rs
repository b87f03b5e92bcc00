//! Activation with real files: `active/<name>` switches atomically while a
//! reader looks through it, one version of a name is active, hooks see
//! their environment and a failing or hanging one leaves the link and the
//! statuses as they were, an active package refuses DELETE and edits, and
//! the link follows the database across kill -9 and hands in the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::artifacts::{ArtifactServer, Knobs, sha256_hex};
use crate::helpers::{TestServer, data_dir_for, wait_for};

/// Quick simulated steps for packages without a source, one attempt.
const ARGS: &[&str] = &[
    "--activate-duration",
    "0s",
    "--deactivate-duration",
    "0s",
    "--download-duration",
    "0s",
    "--retry-delay",
    "50ms",
    "--max-attempts",
    "1",
];

/// A package whose artifact is one file, `VERSION`, holding its
/// version, downloaded; its id.
pub(crate) fn downloaded(
    s: &TestServer,
    server: &ArtifactServer,
    name: &str,
    version: &str,
) -> String {
    let id = created(s, server, name, version, Knobs::default());
    let done = run(s, &id, "download");
    assert_eq!(done["state"], "succeeded", "{done}");
    id
}

/// The same package, created only, its artifact served with `knobs`.
pub(crate) fn created(
    s: &TestServer,
    server: &ArtifactServer,
    name: &str,
    version: &str,
    knobs: Knobs,
) -> String {
    let body = format!("{name} {version}").into_bytes();
    let url = server.put(
        &format!(
            "/{}/VERSION",
            sha256_hex(format!("{name}@{version}").as_bytes())
        ),
        body.clone(),
        knobs,
    );
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": name, "version": version,
                "source": {"url": url, "sha256": sha256_hex(&body)}}),
    );
    r.assert_status(201);
    r.id()
}

/// Starts an operation and waits for it to finish; returns it.
pub(crate) fn run(s: &TestServer, id: &str, kind: &str) -> Value {
    let r = s.send("POST", &format!("/v1/packages/{id}/{kind}"), &[], None);
    r.assert_status(202);
    s.finished(&r.id())
}

fn data(s: &TestServer) -> PathBuf {
    data_dir_for(&s.db)
}

fn link(s: &TestServer, name_segment: &str) -> PathBuf {
    data(s).join("active").join(name_segment)
}

/// What the active version's `VERSION` file says, or `None` with no link.
fn in_use(s: &TestServer, name_segment: &str) -> Option<String> {
    std::fs::read_to_string(link(s, name_segment).join("VERSION")).ok()
}

fn status(s: &TestServer, id: &str) -> String {
    s.package(id).status
}

/// An executable shell script (a hook) in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_link_switches_atomically_and_one_version_of_a_name_is_active() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    let v1 = downloaded(&s, &server, "jq", "1.0");
    let v2 = downloaded(&s, &server, "jq", "2.0");
    let other = downloaded(&s, &server, "curl", "8.0");
    assert_eq!(in_use(&s, "jq"), None, "nothing is active yet");

    assert_eq!(run(&s, &v1, "activate")["state"], "succeeded");
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 1.0"));
    assert_eq!(
        std::fs::read_link(link(&s, "jq")).unwrap(),
        Path::new("../packages/jq/1.0"),
        "relative, so the directory can move"
    );
    assert_eq!(run(&s, &other, "activate")["state"], "succeeded");

    // A reader looks through the link all along while the version switches
    // back and forth: it never finds it missing or pointing nowhere.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, file) = (stop.clone(), reads.clone(), link(&s, "jq").join("VERSION"));
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_to_string(&file) {
                    Ok(v) => {
                        seen.insert(v);
                    }
                    Err(e) => return Err(format!("read {} failed: {e}", file.display())),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(seen)
        })
    };
    for round in 0..10 {
        let (on, off) = if round % 2 == 0 {
            (&v2, &v1)
        } else {
            (&v1, &v2)
        };
        assert_eq!(run(&s, on, "activate")["state"], "succeeded");
        assert_eq!(status(&s, on), "active");
        assert_eq!(status(&s, off), "downloaded", "the one it replaced");
    }
    // Some more reads after the last switch, however fast the switches were.
    let target = (reads.load(Ordering::Relaxed) + 1000).max(2000);
    wait_for("the reader to read on", || {
        (reads.load(Ordering::Relaxed) >= target || reader.is_finished()).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(reads.load(Ordering::Relaxed) >= 2000);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["jq 1.0", "jq 2.0"],
        "the reader saw both versions and nothing else"
    );
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 1.0"));
    assert_eq!(status(&s, &other), "active", "another name is not touched");
    assert_eq!(in_use(&s, "curl").as_deref(), Some("curl 8.0"));

    // /v1/statuses says what an activation does to the other versions.
    let statuses = s.get("/v1/statuses").json();
    let activate = statuses["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operation"] == "activate")
        .unwrap()
        .clone();
    assert_eq!(
        activate["same_name"],
        json!({"from": "active", "to": "downloaded"}),
        "{activate}"
    );

    // Deactivate removes the link; rolling back is activating again.
    assert_eq!(run(&s, &v1, "deactivate")["state"], "succeeded");
    assert_eq!(in_use(&s, "jq"), None);
    assert!(!link(&s, "jq").exists() && link(&s, "jq").symlink_metadata().is_err());
    assert_eq!(
        (status(&s, &v1), status(&s, &v2)),
        ("downloaded".into(), "downloaded".into())
    );
    assert_eq!(run(&s, &v2, "activate")["state"], "succeeded");
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 2.0"));

    // A version without files made active removes the name's link: what is
    // in use has nothing on disk.
    let catalogue_only = s.new_package("jq", "3.0");
    assert_eq!(
        run(&s, &catalogue_only.id, "download")["state"],
        "succeeded"
    );
    assert_eq!(
        run(&s, &catalogue_only.id, "activate")["state"],
        "succeeded"
    );
    assert!(link(&s, "jq").symlink_metadata().is_err(), "no link left");
    assert_eq!(status(&s, &v2), "downloaded");
    assert!(s.metric("packd_link_switches_total ") >= 14);
}

#[test]
fn an_active_package_refuses_delete_and_edits_and_link_changes_of_a_name_queue_one_at_a_time() {
    let hooks = tempfile::tempdir().unwrap();
    // The hook holds the activation until the test lets it go.
    let gate = hooks.path().join("gate");
    let hook = script(
        hooks.path(),
        "hold.sh",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display()),
    );
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[("PACKD_HOOK_ACTIVATE", &hook)]);
    let v1 = downloaded(&s, &server, "jq", "1.0");
    let v2 = downloaded(&s, &server, "jq", "2.0");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(run(&s, &v1, "activate")["state"], "succeeded");

    let del = s.send("DELETE", &format!("/v1/packages/{v1}"), &[], None);
    let p = del.assert_problem(409, "invalid_transition");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("deactivate it first"),
        "{p}"
    );
    for patch in [
        json!({"name": "jq2"}),
        json!({"version": "1.1"}),
        json!({"source": null}),
    ] {
        s.json("PATCH", &format!("/v1/packages/{v1}"), &patch)
            .assert_problem(409, "invalid_transition");
    }
    // A patch that changes nothing changes nothing in use either.
    let before = s.package(&v1);
    s.json(
        "PATCH",
        &format!("/v1/packages/{v1}"),
        &json!({"name": "jq"}),
    )
    .assert_status(200);
    let p = s.package(&v1);
    assert_eq!((p.status.as_str(), p.revision), ("active", before.revision));
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 1.0"));

    // While one version's activation runs, another version of the name
    // cannot start one: the link has one writer.
    std::fs::remove_file(&gate).unwrap();
    let first = s.send("POST", &format!("/v1/packages/{v2}/activate"), &[], None);
    first.assert_status(202);
    let busy = s.send("POST", &format!("/v1/packages/{v1}/deactivate"), &[], None);
    let p = busy.assert_problem(409, "operation_in_progress");
    assert!(p["detail"].as_str().unwrap().contains(&first.id()), "{p}");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(s.finished(&first.id())["state"], "succeeded");
    assert_eq!(
        (status(&s, &v1), status(&s, &v2)),
        ("downloaded".into(), "active".into())
    );
    // Once it is downloaded again, it can go.
    s.send("DELETE", &format!("/v1/packages/{v1}"), &[], None)
        .assert_status(204);
    s.removals_done(1);
    assert!(!data(&s).join("packages/jq/1.0").exists());
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 2.0"));
}

#[test]
fn the_hooks_see_the_new_link_and_their_environment() {
    let hooks = tempfile::tempdir().unwrap();
    let log = hooks.path().join("hook.log");
    let body = format!(
        "{{ echo \"---\"; env | sort; echo \"SEES=$(cat \"$PACKD_ACTIVE_LINK/VERSION\" 2>/dev/null || echo none)\"; echo \"CWD=$(pwd)\"; }} >> {}",
        log.display()
    );
    let on = script(hooks.path(), "on.sh", &body);
    let off = script(hooks.path(), "off.sh", &body);
    let server = ArtifactServer::start();
    let s = TestServer::start_with(
        &[ARGS, &["--hook-activate", &on, "--hook-deactivate", &off]].concat(),
        &[("PACKD_SOME_SETTING", "not for hooks")],
    );
    let v1 = downloaded(&s, &server, "jq", "1.0");
    let v2 = downloaded(&s, &server, "jq", "2.0");
    run(&s, &v1, "activate");
    let op = run(&s, &v2, "activate");
    run(&s, &v2, "deactivate");
    let text = std::fs::read_to_string(&log).unwrap();
    let runs: Vec<&str> = text.split("---\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(runs.len(), 3, "{text}");
    let var = |run: &str, name: &str| -> Option<String> {
        run.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let second = runs[1];
    let path = data(&s).join("packages/jq/2.0");
    assert_eq!(
        var(second, "PACKD_OPERATION_ID"),
        op["id"].as_str().map(String::from)
    );
    assert_eq!(
        var(second, "PACKD_OPERATION_KIND").as_deref(),
        Some("activate")
    );
    assert_eq!(var(second, "PACKD_PACKAGE_ID"), Some(v2.clone()));
    assert_eq!(var(second, "PACKD_PACKAGE_NAME").as_deref(), Some("jq"));
    assert_eq!(var(second, "PACKD_PACKAGE_VERSION").as_deref(), Some("2.0"));
    assert_eq!(
        var(second, "PACKD_PACKAGE_PATH"),
        Some(path.display().to_string())
    );
    assert_eq!(
        var(second, "PACKD_PREVIOUS_VERSION").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        var(second, "SEES").as_deref(),
        Some("jq 2.0"),
        "the link is switched first"
    );
    assert_eq!(var(second, "CWD"), Some(path.display().to_string()));
    assert_eq!(var(runs[0], "PACKD_PREVIOUS_VERSION").as_deref(), Some(""));
    assert_eq!(
        var(runs[2], "PACKD_OPERATION_KIND").as_deref(),
        Some("deactivate")
    );
    assert_eq!(
        var(runs[2], "SEES").as_deref(),
        Some("none"),
        "the link is gone first"
    );
    for run in &runs {
        assert!(var(run, "PATH").is_some());
        for secret in ["PACKD_BOOTSTRAP_KEY", "PACKD_SOME_SETTING", "http_proxy"] {
            assert_eq!(var(run, secret), None, "{secret} reached a hook");
        }
    }
    assert_eq!(
        s.metric("packd_hook_runs_total{hook=\"activate\",outcome=\"succeeded\"}"),
        2
    );
}

#[test]
fn a_failing_or_hanging_hook_leaves_the_link_and_the_statuses_as_they_were() {
    let hooks = tempfile::tempdir().unwrap();
    // Version 2.0 is refused by policy; 3.0 hangs (and ignores SIGTERM, so
    // it takes the SIGKILL).
    let hook = script(
        hooks.path(),
        "policy.sh",
        "case \"$PACKD_PACKAGE_VERSION\" in\n\
         2.0) echo \"checking $PACKD_PACKAGE_VERSION\"; echo 'refused by policy' >&2; exit 7 ;;\n\
         3.0) trap '' TERM; echo hanging; while :; do sleep 1; done ;;\n\
         esac",
    );
    let server = ArtifactServer::start();
    let s = TestServer::start_with(
        &[ARGS, &["--hook-activate", &hook, "--hook-timeout", "1s"]].concat(),
        &[],
    );
    let v1 = downloaded(&s, &server, "jq", "1.0");
    let v2 = downloaded(&s, &server, "jq", "2.0");
    let v3 = downloaded(&s, &server, "jq", "3.0");
    assert_eq!(run(&s, &v1, "activate")["state"], "succeeded");

    let failed = run(&s, &v2, "activate");
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("status 7") && error.contains("refused by policy"),
        "{error}"
    );
    assert!(error.contains("checking 2.0"), "{error}");
    assert_eq!(
        in_use(&s, "jq").as_deref(),
        Some("jq 1.0"),
        "the link went back"
    );
    assert_eq!(
        (status(&s, &v1), status(&s, &v2)),
        ("active".into(), "downloaded".into())
    );

    let hung = run(&s, &v3, "activate");
    assert_eq!(hung["state"], "failed", "{hung}");
    let error = hung["error"].as_str().unwrap();
    assert!(
        error.contains("did not finish within 1s") && error.contains("hanging"),
        "{error}"
    );
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 1.0"));
    assert_eq!(
        (status(&s, &v1), status(&s, &v3)),
        ("active".into(), "downloaded".into())
    );
    assert_eq!(
        s.metric("packd_hook_runs_total{hook=\"activate\",outcome=\"timed_out\"}"),
        1
    );
}

#[test]
fn a_kill_between_the_switch_and_the_commit_and_hands_in_the_directory_are_repaired() {
    let hooks = tempfile::tempdir().unwrap();
    let marker = hooks.path().join("running");
    // The hook says it runs (with its process group), then holds the
    // operation between the link switch and the commit.
    let hold = script(
        hooks.path(),
        "hold.sh",
        &format!(
            "[ \"$PACKD_PACKAGE_VERSION\" = 2.0 ] || exit 0; echo $$ > {}.tmp; mv {0}.tmp {0}; sleep 120",
            marker.display()
        ),
    );
    let server = ArtifactServer::start();
    let mut s = TestServer::start_with(&[ARGS, &["--hook-activate", &hold]].concat(), &[]);
    let v1 = downloaded(&s, &server, "jq", "1.0");
    let v2 = downloaded(&s, &server, "jq", "2.0");
    let gone = downloaded(&s, &server, "gone", "1.0");
    assert_eq!(run(&s, &v1, "activate")["state"], "succeeded");
    let op = s.send("POST", &format!("/v1/packages/{v2}/activate"), &[], None);
    op.assert_status(202);
    let group: i32 = wait_for("the hook to run", || {
        std::fs::read_to_string(&marker).ok()?.trim().parse().ok()
    });
    assert_eq!(
        in_use(&s, "jq").as_deref(),
        Some("jq 2.0"),
        "switched, not committed"
    );
    assert_eq!(status(&s, &v1), "active");
    s.kill9();
    signal_group(group);

    // Meanwhile, hands in the directory: packd's link of a name nothing
    // has active, and a partial, an artifact and a version directory that
    // nothing refers to (an operator's, or an older packd's).
    let dir = data(&s);
    std::os::unix::fs::symlink("../packages/gone/1.0", dir.join("active/gone")).unwrap();
    std::fs::write(
        dir.join("partial/0190aaaa-0000-7000-8000-000000000000"),
        "x",
    )
    .unwrap();
    std::fs::write(dir.join("artifacts/sha256").join("ab".repeat(32)), "x").unwrap();
    std::fs::create_dir_all(dir.join("packages/jq/9.9")).unwrap();

    // The restart has no hook: the resumed activation finishes at once.
    s.restart(ARGS, &[]);
    let done = s.finished(&op.id());
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "resumed after the crash");
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 2.0"));
    assert_eq!(
        (status(&s, &v1), status(&s, &v2)),
        ("downloaded".into(), "active".into())
    );
    // Reconciliation put the link back to what the database had (1.0)
    // before the resumed activation switched it again.
    assert_eq!(
        s.metric("packd_reconciled_total{action=\"link_repointed\"}"),
        1
    );
    assert_eq!(
        s.metric("packd_reconciled_total{action=\"link_removed\"}"),
        1
    );
    // What packd cannot account for is reported, never removed.
    assert_eq!(
        s.metric("packd_reconciled_total{action=\"partial_removed\"}"),
        0
    );
    assert_eq!(s.metric("packd_data_dir_foreign_entries "), 3);
    assert!(!dir.join("active/gone").exists());
    assert!(
        dir.join("packages/gone/1.0/VERSION").is_file(),
        "still referred to"
    );
    assert!(dir.join("packages/jq/9.9").is_dir());
    assert!(
        dir.join("partial/0190aaaa-0000-7000-8000-000000000000")
            .is_file()
    );
    assert!(dir.join("artifacts/sha256").join("ab".repeat(32)).is_file());
    assert_eq!(status(&s, &gone), "downloaded");

    // A link removed by hand, and one pointed elsewhere, are repaired at the
    // next start.
    assert_eq!(run(&s, &gone, "activate")["state"], "succeeded");
    s.terminate();
    std::fs::remove_file(dir.join("active/jq")).unwrap();
    std::fs::remove_file(dir.join("active/gone")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("active/gone")).unwrap();
    s.restart(ARGS, &[]);
    assert_eq!(in_use(&s, "jq").as_deref(), Some("jq 2.0"));
    assert_eq!(in_use(&s, "gone").as_deref(), Some("gone 1.0"));
    assert_eq!(s.metric("packd_reconciled_total{action=\"link_made\"}"), 1);
    assert_eq!(
        s.metric("packd_reconciled_total{action=\"link_repointed\"}"),
        1
    );
    assert!(s.stderr().contains("reconciled"), "logged");
}

/// Ends the hook a killed server left behind (its process group).
fn signal_group(group: i32) {
    // The hook may already be gone; only the attempt matters.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status();
}

#[test]
fn names_that_are_paths_stay_inside_their_directories() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    let dir = data(&s);
    let root = std::fs::canonicalize(&dir).unwrap();
    for (name, segment) in [("../x", "%2E.%2Fx"), ("a/b", "a%2Fb"), ("é", "%C3%A9")] {
        let id = downloaded(&s, &server, name, "../1");
        assert_eq!(run(&s, &id, "activate")["state"], "succeeded");
        let expected = format!("{name} ../1");
        assert_eq!(in_use(&s, segment), Some(expected), "{name}");
        let resolved = std::fs::canonicalize(link(&s, segment)).unwrap();
        assert_eq!(
            resolved,
            root.join("packages").join(segment).join("%2E.%2F1")
        );
    }
    let mut active: Vec<String> = std::fs::read_dir(dir.join("active"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    active.sort();
    assert_eq!(active, ["%2E.%2Fx", "%C3%A9", "a%2Fb"]);
    assert!(!dir.parent().unwrap().join("x").exists());
    assert!(!dir.join("x").exists() && !dir.join("a").exists());
}
