//! The health window, retention, pinning and the free-space floor, over
//! the real binary with real files: a health check driven by a file the
//! test controls passes, fails on its second run (revert: the link, the
//! statuses, the hooks in order with their versions), hangs (timed out,
//! reverted), or has no previous version to go back to; kill -9 in the
//! window; six versions activated in turn leave exactly the right ones on
//! disk; a download past --min-free-space fails at once, writing nothing.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::activation::{created, downloaded, run};
use crate::artifacts::{ArtifactServer, Knobs, sha256_hex};
use crate::helpers::{TestServer, data_dir_for, wait_for};

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// A health check and hooks that write what they were run for to `log`;
/// the check counts its runs in `count` and fails from the run `fail_at`
/// names (or hangs when it says `hang`).
struct Scripts {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    check: String,
    hook: String,
}

impl Scripts {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let (log, count, fail_at) = (d.join("log"), d.join("count"), d.join("fail_at"));
        let check = script(
            &d,
            "check",
            &format!(
                r#"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}
echo "check $PACKD_PACKAGE_VERSION" >> {log}
f=$(cat {fail_at} 2>/dev/null || echo never)
[ "$f" = hang ] && exec sleep 60
if [ "$f" != never ] && [ "$n" -ge "$f" ]; then echo "unhealthy at run $n"; exit 1; fi
exit 0"#,
                count = count.display(),
                log = log.display(),
                fail_at = fail_at.display()
            ),
        );
        let hook = script(
            &d,
            "hook",
            &format!(
                r#"echo "$PACKD_OPERATION_KIND $PACKD_PACKAGE_VERSION" >> {}"#,
                log.display()
            ),
        );
        Self {
            _dir: dir,
            dir: d,
            check,
            hook,
        }
    }

    /// From now on, the check fails from its `n`th run on (`hang`: hangs).
    fn fail_at(&self, n: &str) {
        std::fs::write(self.dir.join("count"), "0").unwrap();
        std::fs::write(self.dir.join("fail_at"), n).unwrap();
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.dir.join("log"));
    }

    fn args(&self, window: &str) -> Vec<String> {
        [
            "--health-check",
            &self.check,
            "--health-window",
            window,
            "--health-interval",
            "100ms",
            "--health-timeout",
            "1s",
            "--hook-activate",
            &self.hook,
            "--hook-deactivate",
            &self.hook,
            "--max-attempts",
            "3",
            "--retry-delay",
            "50ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn start(args: &[String]) -> TestServer {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args, &[])
}

fn link(s: &TestServer, name: &str) -> Option<PathBuf> {
    std::fs::read_link(data_dir_for(&s.db).join("active").join(name)).ok()
}

fn status(s: &TestServer, id: &str) -> String {
    s.package(id).status
}

#[test]
fn a_healthy_activation_passes_after_its_window_and_a_failing_one_reverts() {
    let scripts = Scripts::new();
    let server = ArtifactServer::start();
    let s = start(&scripts.args("500ms"));
    let one = downloaded(&s, &server, "app", "1.0");
    let two = downloaded(&s, &server, "app", "2.0");

    // Healthy: the window passes (several runs), then it succeeds.
    let started = std::time::Instant::now();
    let done = run(&s, &one, "activate");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let checks = scripts.log().iter().filter(|l| *l == "check 1.0").count();
    assert!(checks >= 3, "{:?}", scripts.log());
    assert_eq!(status(&s, &one), "active");

    // Fails on its second run: reverted to 1.0, the hooks in order.
    scripts.clear_log();
    scripts.fail_at("2");
    let done = run(&s, &two, "activate");
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "a revert is not retried: {done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("reverted:") && error.contains("unhealthy at run 2"),
        "{error}"
    );
    assert_eq!(
        scripts.log(),
        ["activate 2.0", "check 2.0", "check 2.0", "activate 1.0"]
    );
    assert_eq!(link(&s, "app").unwrap(), Path::new("../packages/app/1.0"));
    assert_eq!(
        (status(&s, &one), status(&s, &two)),
        ("active".into(), "downloaded".into())
    );
    assert_eq!(s.metric("packd_activation_reverts_total "), 1);

    // A check that hangs is stopped at --health-timeout, and reverts.
    scripts.clear_log();
    scripts.fail_at("hang");
    let done = run(&s, &two, "activate");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("reverted:") && error.contains("did not finish within"),
        "{error}"
    );
    assert_eq!(link(&s, "app").unwrap(), Path::new("../packages/app/1.0"));
    assert_eq!(scripts.log(), ["activate 2.0", "check 2.0", "activate 1.0"]);

    // No version to go back to: the link goes, the deactivate hook runs.
    scripts.clear_log();
    scripts.fail_at("1");
    let solo = downloaded(&s, &server, "solo", "1.0");
    let done = run(&s, &solo, "activate");
    assert!(
        done["error"].as_str().unwrap().starts_with("reverted:"),
        "{done}"
    );
    assert_eq!(link(&s, "solo"), None);
    assert_eq!(status(&s, &solo), "downloaded");
    assert_eq!(
        scripts.log(),
        ["activate 1.0", "check 1.0", "deactivate 1.0"]
    );
    assert_eq!(s.metric("packd_activation_reverts_total "), 3);
}

/// kill -9 in the window, then a start: the activation runs again with its
/// window; the new version is never left active without a passed window.
#[test]
fn a_kill_during_the_window_runs_it_again_after_the_restart() {
    let scripts = Scripts::new();
    let server = ArtifactServer::start();
    let mut s = start(&scripts.args("30s"));
    let one = downloaded(&s, &server, "app", "1.0");
    let r = s.send("POST", &format!("/v1/packages/{one}/activate"), &[], None);
    let op = r.id();
    wait_for("the window to begin", || {
        let o = s.get(&format!("/v1/operations/{op}")).json();
        (o["progress"].as_u64().unwrap_or(0) >= 50).then_some(())
    });
    assert_eq!(
        status(&s, &one),
        "downloaded",
        "not active before the window passed"
    );
    s.kill9();
    scripts.clear_log();
    let args = scripts.args("300ms");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.restart(&args, &[]);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    let log = scripts.log();
    assert_eq!(
        log.first().map(String::as_str),
        Some("activate 1.0"),
        "{log:?}"
    );
    assert!(
        log.iter().filter(|l| *l == "check 1.0").count() >= 2,
        "{log:?}"
    );
    assert_eq!(status(&s, &one), "active");
    assert_eq!(link(&s, "app").unwrap(), Path::new("../packages/app/1.0"));
}

/// Six versions activated in turn with --keep-downloaded 3, one of the old
/// ones pinned, and an old one's download in flight: the active, the
/// previous, the most recently used and the pinned one keep their files;
/// the others go back to `created`, their files and artifacts removed.
#[test]
fn retention_keeps_exactly_the_right_versions_and_never_a_pinned_one() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(&["--keep-downloaded", "3"], &[]);
    // Made first, downloaded slowly: in flight through the activations.
    let slow = created(
        &s,
        &server,
        "app",
        "0.9",
        Knobs {
            head_delay: std::time::Duration::from_secs(3),
            ..Knobs::default()
        },
    );
    let ids: Vec<String> = (1..=6)
        .map(|n| downloaded(&s, &server, "app", &format!("{n}.0")))
        .collect();
    let pinned = s.json(
        "PATCH",
        &format!("/v1/packages/{}", ids[0]),
        &json!({"pinned": true}),
    );
    pinned.assert_status(200);
    assert_eq!(pinned.json()["pinned"], true);
    let download = s.send("POST", &format!("/v1/packages/{slow}/download"), &[], None);
    download.assert_status(202);
    for id in &ids {
        assert_eq!(run(&s, id, "activate")["state"], "succeeded");
    }
    let statuses: Vec<String> = ids.iter().map(|id| status(&s, id)).collect();
    assert_eq!(
        statuses,
        [
            "downloaded",
            "created",
            "created",
            "downloaded",
            "downloaded",
            "active"
        ]
    );
    // The fifth activation retired 2.0, the sixth 3.0 (the pinned 1.0
    // counts against the three kept, and stays all the same).
    assert_eq!(s.metric("packd_retention_removed_total "), 2);
    s.removals_done(2);
    let data = data_dir_for(&s.db);
    for (n, kept) in [
        (1, true),
        (2, false),
        (3, false),
        (4, true),
        (5, true),
        (6, true),
    ] {
        let dir = data.join(format!("packages/app/{n}.0"));
        assert_eq!(dir.is_dir(), kept, "{}", dir.display());
        let artifact = data
            .join("artifacts/sha256")
            .join(sha256_hex(format!("app {n}.0").as_bytes()));
        assert_eq!(artifact.exists(), kept, "{}", artifact.display());
    }
    // The download in flight was left alone and finished.
    let done = s.finished(&download.id());
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(status(&s, &slow), "downloaded");
    // Retired versions download again like any `created` package.
    assert_eq!(run(&s, &ids[1], "download")["state"], "succeeded");
    // The list filter.
    let listed = s.get("/v1/packages?pinned=true").json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], ids[0].as_str());
}

#[test]
fn a_download_past_the_free_space_floor_fails_at_once_and_writes_nothing() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(&["--min-free-space", "100%"], &[]);
    let id = created(&s, &server, "big", "1.0", Knobs::default());
    let done = run(&s, &id, "download");
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("not enough free space") && error.contains("--min-free-space"),
        "{error}"
    );
    assert!(
        server
            .requests(&format!("/{}/VERSION", sha256_hex(b"big@1.0")))
            .is_empty()
    );
    let data = data_dir_for(&s.db);
    for dir in ["partial", "artifacts/sha256", "packages"] {
        let entries: Vec<_> = std::fs::read_dir(data.join(dir))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "{dir}: {entries:?}");
    }
    assert!(s.metric("packd_data_dir_free_bytes ") > 0);
    assert!(s.metric("packd_data_dir_used_bytes ") > 0);
}

/// `packd pkg activate --wait` says the window is being checked and counts
/// its time down (lines, since its standard error is a pipe here).
#[test]
fn the_client_counts_the_window_down() {
    let scripts = Scripts::new();
    let server = ArtifactServer::start();
    let mut args = scripts.args("3s");
    let at = args.iter().position(|a| a == "100ms").unwrap();
    args[at] = "500ms".into();
    let s = start(&args);
    downloaded(&s, &server, "app", "1.0");
    let base = s.url("");
    let out = crate::helpers::run_packd(
        &["pkg", "activate", "app@1.0", "--wait"],
        &[
            ("PACKD_URL", base.trim_end_matches('/')),
            ("PACKD_API_KEY", crate::helpers::ADMIN_KEY),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(checking health"), "{stderr}");
    let left: Vec<u64> = stderr
        .lines()
        .filter_map(|l| {
            l.split("about ")
                .nth(1)?
                .split(" s left")
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!left.is_empty(), "no countdown: {stderr}");
    assert!(left.iter().all(|s| *s <= 4), "{left:?}");
    assert!(
        left.windows(2).all(|w| w[1] <= w[0]),
        "it counts down: {left:?}"
    );
}
