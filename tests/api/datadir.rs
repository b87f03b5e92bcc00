//! The data directory as an attacker and a careless operator meet it, over
//! the real binary and real files: one owner per directory (a second packd
//! touches nothing), archive headers that lie about their size, links that
//! chain out, multi-member gzip, sources that are FIFOs or /proc, modes
//! under umask 000, foreign files and a linked `packages/`, an unpack that
//! must stop at cancel and SIGTERM, a DELETE of 100,000 files that does not
//! hold the server, a source that trickles, and hooks a kill -9 orphaned.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::archives::{self, EntryType};
use crate::artifacts::{ArtifactServer, Knobs, sha256_hex};
use crate::helpers::{DEADLINE, TestServer, data_dir_for, peak_rss, wait_for};

/// One attempt, quick retries: a failure shows at once.
const ARGS: &[&str] = &["--max-attempts", "1", "--retry-delay", "50ms"];

fn data(s: &TestServer) -> PathBuf {
    data_dir_for(&s.db)
}

/// Serves `body` as `file_name` and creates a package for it; returns its id.
fn package(
    s: &TestServer,
    server: &ArtifactServer,
    name: &str,
    file_name: &str,
    body: &[u8],
) -> String {
    let url = server.put(
        &format!("/{}/{file_name}", &sha256_hex(body)[..16]),
        body.to_vec(),
        Knobs::default(),
    );
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": name, "version": "1.0",
                "source": {"url": url, "sha256": sha256_hex(body)}}),
    );
    r.assert_status(201);
    r.id()
}

/// Starts an operation; returns its id.
fn start(s: &TestServer, id: &str, kind: &str) -> String {
    let r = s.send("POST", &format!("/v1/packages/{id}/{kind}"), &[], None);
    r.assert_status(202);
    r.id()
}

fn run(s: &TestServer, id: &str, kind: &str) -> Value {
    let op = start(s, id, kind);
    s.finished(&op)
}

/// Every entry under `dir` with its mode, relative and sorted: a snapshot.
fn snapshot(dir: &Path) -> Vec<(String, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            out.push((rel, meta.permissions().mode()));
            if meta.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_second_packd_on_a_data_directory_is_refused_and_touches_nothing() {
    let server = ArtifactServer::start();
    let mut first = TestServer::start_with(ARGS, &[]);
    let tar = archives::tar_of(&[archives::file("bin/tool", b"#!/bin/sh\n", 0o755)]);
    let id = package(&first, &server, "tool", "tool.tar", &tar);
    assert_eq!(run(&first, &id, "download")["state"], "succeeded");
    assert_eq!(run(&first, &id, "activate")["state"], "succeeded");
    let dir = data(&first);
    let before = snapshot(&dir);
    assert!(before.iter().any(|(p, _)| p == "active/tool"), "{before:?}");

    // Another database, the same directory, the first still running.
    let other = tempfile::tempdir().unwrap();
    let other_db = other.path().join("other.redb");
    let dir_arg = dir.to_str().unwrap().to_string();
    let with_dir = ["--data-dir", dir_arg.as_str()];
    let err = TestServer::spawn(&other_db, &with_dir, &[])
        .err()
        .expect("a second packd on a held directory is refused");
    assert!(err.contains("in use by another packd"), "{err}");
    assert!(
        err.contains(&first.pid().to_string()),
        "names the holder: {err}"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "the second packd changed the directory"
    );
    assert!(
        !other_db.exists(),
        "refused before its own database was even made"
    );
    first.get("/healthz").assert_status(200);

    // The first stopped: the directory still belongs to its database.
    assert!(first.terminate().success());
    let err = TestServer::spawn(&other_db, &with_dir, &[])
        .err()
        .expect("a directory of another database is refused");
    assert!(err.contains("belongs to another database"), "{err}");
    assert!(err.contains("--adopt-data-dir"), "{err}");
    assert_eq!(snapshot(&dir), before);
    // The first database on another directory is refused too.
    let moved = other.path().join("moved");
    let moved_arg = moved.to_str().unwrap().to_string();
    let err = TestServer::spawn(&first.db, &["--data-dir", moved_arg.as_str()], &[])
        .err()
        .expect("a database on another directory is refused");
    assert!(err.contains("belongs to the data directory"), "{err}");

    // Back on its own directory, everything is as it was.
    first.restart(ARGS, &[]);
    assert_eq!(first.package(&id).status, "active");
    assert_eq!(
        std::fs::read(dir.join("active/tool/bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert!(first.terminate().success());

    // Taken over on purpose: the other database's files are not its own,
    // so they are reported, not deleted.
    let adopted = TestServer::spawn(
        &other_db,
        &["--data-dir", dir_arg.as_str(), "--adopt-data-dir"],
        &[],
    )
    .unwrap();
    assert!(dir.join("packages/tool/1.0/bin/tool").is_file());
    assert!(adopted.metric("packd_data_dir_foreign_entries ") >= 2);
}

#[test]
fn headers_that_lie_about_their_size_cost_no_memory() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    // Warm: the first download builds the HTTP client and its roots.
    let small = archives::gz(&archives::tar_of(&[archives::file("a", b"1", 0o644)]));
    let warm = package(&s, &server, "warm", "warm.tar.gz", &small);
    assert_eq!(run(&s, &warm, "download")["state"], "succeeded");
    let before = peak_rss(s.pid());
    // 128 MiB of long name, of link target and of PAX records, in a few
    // hundred KiB of gzip each; the older packd read each whole into memory.
    let size = 128 << 20;
    let mut ops = Vec::new();
    for (i, kind) in [
        EntryType::GNULongName,
        EntryType::GNULongLink,
        EntryType::XHeader,
        EntryType::XGlobalHeader,
    ]
    .into_iter()
    .enumerate()
    {
        let tgz = archives::lying_header_tgz(kind, size);
        assert!(tgz.len() < 4 << 20, "{}", tgz.len());
        let id = package(&s, &server, &format!("liar-{i}"), "liar.tar.gz", &tgz);
        ops.push(start(&s, &id, "download"));
    }
    // All four at once: the bound is per unpack, so four workers hold four
    // times a few KiB, not four times 128 MiB.
    for op in ops {
        let done = s.finished(&op);
        assert_eq!(done["state"], "failed", "{done}");
        let error = done["error"].as_str().unwrap();
        assert!(error.contains("more than the"), "{error}");
    }
    let grew = peak_rss(s.pid()).saturating_sub(before);
    assert!(
        grew < 48 << 20,
        "the server's peak memory grew by {} MiB",
        grew >> 20
    );
}

#[test]
fn a_chain_of_links_cannot_reach_out_of_a_package() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    let deep: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let deep = deep.join("/");
    let tar = archives::tar_of(&[
        archives::dir(&format!("{deep}/"), 0o755),
        archives::symlink(&format!("{deep}/l"), &"../".repeat(20)),
        archives::symlink("etc", &format!("{deep}/l/{}etc", "../".repeat(21))),
    ]);
    let zip = archives::zip_links(&[("l", "."), ("up", "l/..")]);
    for (name, file_name, body) in [
        ("chain-tar", "evil.tar", tar),
        ("chain-zip", "evil.zip", zip),
    ] {
        let id = package(&s, &server, name, file_name, &body);
        let done = run(&s, &id, "download");
        assert_eq!(done["state"], "failed", "{done}");
        assert!(
            done["error"].as_str().unwrap().contains("outside"),
            "{done}"
        );
        assert_eq!(s.package(&id).status, "created");
        assert!(!data(&s).join("packages").join(name).join("1.0").exists());
    }
}

#[test]
fn every_member_of_a_multi_member_gzip_is_installed() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    let tar = archives::tar_of(&[
        archives::file("first", &[1u8; 3000], 0o644),
        archives::file("second", b"2", 0o644),
    ]);
    // Cut inside the first file's data: two gzip members, as bgzip makes.
    let (a, b) = tar.split_at(2048);
    let mut two = archives::gz(a);
    two.extend_from_slice(&archives::gz(b));
    let id = package(&s, &server, "members", "members.tar.gz", &two);
    assert_eq!(run(&s, &id, "download")["state"], "succeeded");
    let dir = data(&s).join("packages/members/1.0");
    assert_eq!(std::fs::read(dir.join("second")).unwrap(), b"2");

    // Only the first member: a tar cut short, said to be broken.
    let id = package(&s, &server, "half", "half.tar.gz", &archives::gz(a));
    let done = run(&s, &id, "download");
    assert_eq!(done["state"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("broken"), "{done}");
}

#[test]
fn no_error_says_what_was_fetched_and_local_sources_are_bounded() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(&["--max-attempts", "1", "--allow-file-sources"], &[]);
    // A source whose digest does not match: the error does not give the
    // digest of what came (with it, a write key could read any file).
    let secret = b"token=s3cr3t".to_vec();
    let url = server.put("/secret", secret.clone(), Knobs::default());
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "guess", "version": "1", "source": {"url": url, "sha256": "00".repeat(32)}}),
    );
    let done = run(&s, &r.id(), "download");
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("does not have the digest"), "{error}");
    assert!(!error.contains(&sha256_hex(&secret)), "{error}");

    // /proc, /dev and anything not a regular file are refused; two FIFOs
    // (a read of one would block for ever) fail at once and the server
    // answers meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let mut ops = Vec::new();
    let mut sources = vec![
        "/proc/self/environ".to_string(),
        "/dev/zero".to_string(),
        dir.path().display().to_string(),
    ];
    for i in 0..2 {
        let fifo = dir.path().join(format!("fifo-{i}"));
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        sources.push(fifo.display().to_string());
    }
    for (i, path) in sources.iter().enumerate() {
        let r = s.json(
            "POST",
            "/v1/packages",
            &json!({"name": format!("local-{i}"), "version": "1",
                    "source": {"url": format!("file://{path}"), "sha256": "00".repeat(32)}}),
        );
        r.assert_status(201);
        ops.push(start(&s, &r.id(), "download"));
    }
    let started = Instant::now();
    s.get("/healthz").assert_status(200);
    for op in ops {
        let done = s.finished(&op);
        assert_eq!(done["state"], "failed", "{done}");
        assert!(
            done["error"].as_str().unwrap().contains("regular files"),
            "{done}"
        );
    }
    assert!(started.elapsed() < DEADLINE);
    assert!(
        std::fs::read_dir(data(&s).join("artifacts/sha256"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// Runs the binary under `umask 000` (and these arguments).
fn under_umask_000(db: &Path, args: &[&str]) -> TestServer {
    TestServer::spawn_in(&["sh", "-c", "umask 000; exec \"$@\"", "sh"], db, args, &[]).unwrap()
}

#[test]
fn modes_are_packds_whatever_the_umask_and_the_archive() {
    let server = ArtifactServer::start();
    let tar = archives::tar_of(&[
        archives::dir("bin/", 0o777),
        archives::file("bin/run", b"#!/bin/sh\n", 0o4777),
        archives::file("README", b"hello", 0o666),
        archives::file("lib/secret", b"k", 0o600),
    ]);
    for (private, dir_mode, file_mode, exec_mode) in
        [(false, 0o755, 0o644, 0o755), (true, 0o750, 0o640, 0o750)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("packd.redb");
        let mut args = ARGS.to_vec();
        if private {
            args.push("--private-files");
        }
        let s = under_umask_000(&db, &args);
        let id = package(&s, &server, "modes", "modes.tar", &tar);
        assert_eq!(run(&s, &id, "download")["state"], "succeeded");
        let root = data(&s);
        let pkg = root.join("packages/modes/1.0");
        assert_eq!(mode(&root), dir_mode, "made by packd");
        for (sub, want) in [
            ("packages", dir_mode),
            ("active", dir_mode),
            ("artifacts", 0o700),
            ("partial", 0o700),
            (".hooks", 0o700),
        ] {
            assert_eq!(mode(&root.join(sub)), want, "{sub}");
        }
        assert_eq!(mode(&root.join(".lock")), 0o600);
        assert_eq!(mode(&root.join(".owner")), 0o600);
        assert_eq!(mode(&pkg), dir_mode);
        assert_eq!(mode(&pkg.join("bin")), dir_mode);
        assert_eq!(mode(&pkg.join("lib")), dir_mode, "made on the way");
        assert_eq!(mode(&pkg.join("bin/run")), exec_mode);
        assert_eq!(mode(&pkg.join("README")), file_mode);
        assert_eq!(mode(&pkg.join("lib/secret")), file_mode);
        // Nothing anywhere is writable by the group or others.
        for (path, m) in snapshot(&root) {
            let is_link = std::fs::symlink_metadata(root.join(&path))
                .unwrap()
                .file_type()
                .is_symlink();
            assert!(is_link || m & 0o022 == 0, "{path} is {:o}", m & 0o7777);
        }
    }
}

#[test]
fn what_packd_did_not_make_is_left_and_a_linked_packages_dir_is_refused() {
    let mut s = TestServer::start_with(ARGS, &[]);
    let root = data(&s);
    assert!(s.terminate().success());
    // An operator's files in every directory packd keeps, and a root the
    // operator closed.
    for (path, body) in [
        ("packages/README", "mine"),
        ("packages/tools/bin/x", "mine"),
        ("artifacts/sha256/notes.txt", "mine"),
        ("partial/keep-me", "mine"),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    std::os::unix::fs::symlink("/srv/elsewhere", root.join("active/by-hand")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = snapshot(&root);
    s.restart(ARGS, &[]);
    assert_eq!(s.metric("packd_data_dir_foreign_entries "), 5);
    assert!(s.stderr().contains("left as it is"), "{}", s.stderr());
    let after: Vec<_> = snapshot(&root)
        .into_iter()
        .filter(|(p, _)| p != ".lock")
        .collect();
    let before: Vec<_> = before.into_iter().filter(|(p, _)| p != ".lock").collect();
    assert_eq!(after, before, "nothing removed, no mode changed");
    assert_eq!(mode(&root), 0o700, "the operator's mode stays");
    assert!(s.terminate().success());

    // A root with the sticky bit keeps it.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    s.restart(ARGS, &[]);
    assert_eq!(mode(&root), 0o1777);
    assert!(s.terminate().success());

    // packages/ as a link to another volume: refused, that volume untouched.
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("precious"), "x").unwrap();
    std::fs::rename(root.join("packages"), root.join("packages.old")).unwrap();
    std::os::unix::fs::symlink(volume.path(), root.join("packages")).unwrap();
    let err = TestServer::spawn(&s.db, ARGS, &[])
        .err()
        .expect("a linked packages/ is refused");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(volume.path().join("precious").is_file());
}

/// A package of `n` empty files, downloaded; returns its id. Making that
/// many files takes the file system seconds (more on one that has just
/// deleted as many): the wait is longer than the usual deadline.
fn many_files(s: &TestServer, server: &ArtifactServer, name: &str, n: usize) -> String {
    let id = package(s, server, name, "many.tar.gz", &archives::many_files_tgz(n));
    let op = start(s, &id, "download");
    let done = slowly_finished(s, &op);
    assert_eq!(done["state"], "succeeded", "{done}");
    id
}

/// `finished`, with the longer wait that making many files needs.
fn slowly_finished(s: &TestServer, op: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let o = s.get(&format!("/v1/operations/{op}?wait=10")).json();
        if o["state"] != "queued" && o["state"] != "running" {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "the files were not unpacked in time: {o}"
        );
    }
}

/// Waits for the unpacking of `name` to have begun (its staging directory).
fn unpacking(s: &TestServer, name: &str) {
    let versions = data(s).join("packages").join(name);
    wait_for("the unpacking to begin", || {
        std::fs::read_dir(&versions)
            .ok()?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".staging-"))
            .then_some(())
    });
}

#[test]
fn a_long_unpack_stops_at_a_cancel_a_sigterm_and_its_deadline() {
    let server = ArtifactServer::start();
    let tgz = archives::many_files_tgz(30_000);
    let mut s = TestServer::start_with(ARGS, &[]);
    let id = package(&s, &server, "many", "many.tar.gz", &tgz);
    let op = start(&s, &id, "download");
    unpacking(&s, "many");
    let asked = Instant::now();
    s.send("POST", &format!("/v1/operations/{op}/cancel"), &[], None)
        .assert_status(200);
    let done = s.finished(&op);
    assert_eq!(done["state"], "cancelled", "{done}");
    eprintln!("cancelled {:?} after the cancel", asked.elapsed());
    assert_eq!(s.package(&id).status, "created");
    wait_for("the half-made files to go", || {
        std::fs::read_dir(data(&s).join("packages/many"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
            .then_some(())
    });

    // SIGTERM in the middle of an unpack: a clean exit, and the download
    // resumes (from its stored artifact) at the next start.
    let op = start(&s, &id, "download");
    unpacking(&s, "many");
    let asked = Instant::now();
    assert!(s.terminate().success());
    eprintln!("stopped {:?} after SIGTERM", asked.elapsed());
    s.restart(ARGS, &[]);
    assert_eq!(slowly_finished(&s, &op)["state"], "succeeded");
    assert!(data(&s).join("packages/many/1.0/d299/f29999").is_file());
    assert!(s.terminate().success());

    // Past --unpack-timeout, the download fails with the reason.
    s.restart(&["--max-attempts", "1", "--unpack-timeout", "100ms"], &[]);
    let id = package(&s, &server, "slow", "many.tar.gz", &tgz);
    let done = run(&s, &id, "download");
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("--unpack-timeout"),
        "{done}"
    );
}

#[test]
fn deleting_a_package_of_100_000_files_does_not_hold_the_server() {
    let server = ArtifactServer::start();
    let s = TestServer::start_with(ARGS, &[]);
    let id = many_files(&s, &server, "big", 100_000);
    let dir = data(&s).join("packages/big/1.0");
    assert!(dir.join("d999/f99999").is_file());
    let asked = Instant::now();
    s.send("DELETE", &format!("/v1/packages/{id}"), &[], None)
        .assert_status(204);
    let answered = asked.elapsed();
    // While the files go, the server answers as ever.
    let mut slowest = Duration::ZERO;
    while s.metric("packd_removals_total{outcome=\"done\"} ") == 0 {
        let t = Instant::now();
        s.get("/healthz").assert_status(200);
        slowest = slowest.max(t.elapsed());
        assert!(asked.elapsed() < DEADLINE, "the removal did not finish");
    }
    eprintln!("DELETE answered in {answered:?}; slowest /healthz meanwhile {slowest:?}");
    assert!(answered < Duration::from_secs(1), "{answered:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(!dir.exists());
    assert!(s.metric("packd_removed_entries_total ") > 100_000);
}

#[test]
fn a_source_that_trickles_meets_the_download_timeout() {
    let server = ArtifactServer::start();
    let body = vec![7u8; 100];
    let url = server.put(
        "/trickle.bin",
        body.clone(),
        Knobs {
            chunk: 1,
            chunk_delay: Duration::from_millis(100),
            ..Knobs::default()
        },
    );
    // Never silent for the read timeout, but slower than the whole deadline.
    let s = TestServer::in_process(&[
        "--max-attempts",
        "1",
        "--read-timeout",
        "2s",
        "--download-timeout",
        "1s",
    ]);
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "trickle", "version": "1", "source": {"url": url, "sha256": sha256_hex(&body)}}),
    );
    let done = run(&s, &r.id(), "download");
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("--download-timeout"),
        "{done}"
    );
}

#[test]
fn a_hook_orphaned_by_kill_9_is_ended_and_a_hook_cannot_move_the_link() {
    let server = ArtifactServer::start();
    let hooks = tempfile::tempdir().unwrap();
    let pid_file = hooks.path().join("hook.pid");
    let hook = hooks.path().join("activate.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho $$ > {}\nsleep 300 &\nwait\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook_arg = hook.to_str().unwrap().to_string();
    let with_hook = ["--max-attempts", "1", "--hook-activate", hook_arg.as_str()];
    let mut s = TestServer::start_with(&with_hook, &[]);
    let body = b"1.0".to_vec();
    let id = package(&s, &server, "svc", "VERSION", &body);
    assert_eq!(run(&s, &id, "download")["state"], "succeeded");
    start(&s, &id, "activate");
    let pid: i32 = wait_for("the hook to run", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    s.kill9();
    // SAFETY: signal 0 only asks whether the process exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the hook outlived packd");
    // The next start ends it (the hook is no longer configured).
    s.restart(&["--max-attempts", "1"], &[]);
    wait_for("the orphaned hook to be ended", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        (stat.is_empty() || state == Some("Z")).then_some(())
    });
    assert!(s.metric("packd_reconciled_total{action=\"hook_process_ended\"} ") >= 1);
    assert!(s.terminate().success());

    // A hook that points active/<name> elsewhere: the link is put back.
    std::fs::write(&hook, "#!/bin/sh\nln -sfn /etc \"$PACKD_ACTIVE_LINK\"\n").unwrap();
    s.restart(&with_hook, &[]);
    let id2 = package(&s, &server, "svc2", "VERSION", &body);
    assert_eq!(run(&s, &id2, "download")["state"], "succeeded");
    assert_eq!(run(&s, &id2, "activate")["state"], "succeeded");
    let link = std::fs::read_link(data(&s).join("active/svc2")).unwrap();
    assert_eq!(link, Path::new("../packages/svc2/1.0"));
    assert!(
        s.stderr().contains("put back as packd set it"),
        "{}",
        s.stderr()
    );
}
