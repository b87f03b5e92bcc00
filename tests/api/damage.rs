//! A damaged database file: refused at start, and if damage appears while
//! serving, met by a read, the server stops taking writes, `/readyz` says
//! why, and `packd check` gives the verdict offline. Damage here is what a
//! bad disk does: 200 bytes flipped every 128 KiB.

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::json;

use crate::helpers::{TestServer, run_packd, wait_for};

const STRIDE: u64 = 128 * 1024;

/// Seeds `count` packages into a new file at `db`.
fn seed(db: &Path, count: u32) {
    let out = run_packd(
        &[
            "dev",
            "seed",
            "--count",
            &count.to_string(),
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
}

/// Flips 200 bytes every 128 KiB, past the file's header, in place.
fn flip(db: &Path) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let mut offset = STRIDE;
    while offset + 200 <= len {
        let mut bytes = [0u8; 200];
        file.read_exact_at(&mut bytes, offset).unwrap();
        for b in &mut bytes {
            *b ^= 0xA5;
        }
        file.write_all_at(&bytes, offset).unwrap();
        offset += STRIDE;
    }
    file.sync_all().unwrap();
}

fn check(db: &Path) -> (i32, String) {
    let out = run_packd(&["check", "--db", db.to_str().unwrap()], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_file_damaged_before_start_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.redb");
    seed(&db, 20_000);
    flip(&db);
    let before = std::fs::read(&db).unwrap();
    let Err(err) = TestServer::spawn(&db, &[], &[]) else {
        panic!("a damaged file was served");
    };
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains("Restore the last backup"), "{err}");
    assert!(!err.contains("panicked"), "a report, not a crash: {err}");
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the file was changed"
    );

    let (code, text) = check(&db);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("DAMAGED"), "{text}");
    assert!(
        std::fs::read(&db).unwrap() == before,
        "check changed the file"
    );
}

#[test]
fn damage_met_while_serving_stops_writes_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.redb");
    seed(&db, 20_000);
    // A small page cache, so reads after the damage go to the file.
    let mut s = TestServer::spawn(&db, &["--cache-mb", "1"], &[]).unwrap();
    s.get("/readyz").assert_status(200);
    flip(&db);

    // Read everything: some page is damaged.
    let refused = wait_for("a read to meet the damage", || {
        let mut cursor = String::new();
        loop {
            let r = s.get(&format!("/v1/packages?limit=1000{cursor}"));
            if r.status != 200 {
                return Some(r);
            }
            match r.json()["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return None,
            }
        }
    });
    let body = refused.assert_problem(503, "unavailable");
    assert!(
        body["detail"].as_str().unwrap().contains("damaged"),
        "{body}"
    );

    // From now on: no writes, not ready, and the metric and the log say why.
    s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "on-top", "version": "1"}),
    )
    .assert_problem(503, "unavailable");
    let ready = s.get("/readyz");
    let body = ready.assert_problem(503, "unavailable");
    assert!(
        body["detail"].as_str().unwrap().contains("damaged"),
        "{body}"
    );
    s.get("/healthz").assert_status(200);
    assert!(s.get("/metrics").body.contains("packd_database_damaged 1"));
    assert!(s.stderr().contains("the database file is damaged"));
    assert!(s.terminate().success());

    let (code, text) = check(&db);
    assert_eq!(code, 1, "{text}");
}

#[test]
fn check_gives_a_verdict_and_an_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.redb");
    seed(&db, 100);
    let (code, text) = check(&db);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains("100 packages"), "{text}");
    // The copy it checks is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    let (code, text) = check(&dir.path().join("missing.redb"));
    assert_eq!(code, 2, "{text}");
    // A file a server holds is not checked.
    let s = TestServer::spawn(&db, &[], &[]).unwrap();
    let (code, text) = check(&db);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("in use"), "{text}");
    drop(s);
}

#[test]
fn an_empty_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.redb");
    std::fs::write(&db, b"").unwrap();
    let Err(err) = TestServer::spawn(&db, &[], &[]) else {
        panic!("an empty file was served");
    };
    assert!(err.contains("is empty (0 bytes)"), "{err}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the file was changed"
    );
}

#[test]
fn the_database_and_backups_are_owner_only_and_package_files_readable() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let s = TestServer::start();
    assert_eq!(mode(&s.db), 0o600);
    let data = crate::helpers::data_dir_for(&s.db);
    // Downloads are the owner's; what services read (packages and the
    // links to them) is readable by all, written by packd only.
    for (dir, want) in [
        ("", 0o755),
        ("artifacts", 0o700),
        ("artifacts/sha256", 0o700),
        ("partial", 0o700),
        ("packages", 0o755),
        ("active", 0o755),
    ] {
        assert_eq!(mode(&data.join(dir)), want, "data directory {dir:?}");
    }
    let out = s.db.with_file_name("backup.redb");
    let backup = run_packd(
        &[
            "backup",
            "--out",
            out.to_str().unwrap(),
            "--url",
            &s.base,
            "--key",
            crate::helpers::ADMIN_KEY,
        ],
        &[],
    );
    assert!(backup.status.success(), "{backup:?}");
    assert_eq!(mode(&out), 0o600);
    drop(s);

    // A file made by an earlier packd with 0644 is made owner-only at open.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.redb");
    seed(&db, 1);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = TestServer::spawn(&db, &[], &[]).unwrap();
    assert_eq!(mode(&db), 0o600);
    drop(s);
    let offline = dir.path().join("offline.redb");
    let backup = run_packd(
        &[
            "backup",
            "--db",
            db.to_str().unwrap(),
            "--out",
            offline.to_str().unwrap(),
        ],
        &[],
    );
    assert!(backup.status.success(), "{backup:?}");
    assert_eq!(mode(&offline), 0o600);
}
