//! Real downloads, against the test artifact server on 127.0.0.1: files
//! land verified under the data directory, archives are unpacked, faults
//! are retried or failed as they deserve, and a cut download resumes with
//! `Range` where its last checkpoint left it, across a kill -9 too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::artifacts::{ArtifactServer, Knobs, pattern, sha256_hex};
use crate::helpers::{TestServer, data_dir_for, wait_for};

const ARGS: &[&str] = &["--retry-delay", "50ms", "--max-attempts", "3"];

/// Creates a package with this source and starts its download; returns
/// (package id, operation id).
fn start_download(s: &TestServer, name: &str, url: &str, body: &[u8]) -> (String, String) {
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": name, "version": "1.0", "source": {
            "url": url, "sha256": sha256_hex(body), "size": body.len()}}),
    );
    r.assert_status(201);
    let id = r.id();
    let op = s.send("POST", &format!("/v1/packages/{id}/download"), &[], None);
    op.assert_status(202);
    (id, op.id())
}

/// Where a package's files are, as the API says.
fn path_of(s: &TestServer, id: &str) -> PathBuf {
    let p = s.get(&format!("/v1/packages/{id}")).json();
    PathBuf::from(p["path"].as_str().unwrap_or_else(|| panic!("no path: {p}")))
}

fn data(s: &TestServer) -> PathBuf {
    data_dir_for(&s.db)
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_single_file_is_fetched_verified_stored_and_placed() {
    let server = ArtifactServer::start();
    let body = pattern(300_000);
    let url = server.put("/bin/tool-linux64", body.clone(), Knobs::default());
    let s = TestServer::start_with(ARGS, &[]);
    let (id, op) = start_download(&s, "tool", &url, &body);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (done["bytes_done"].as_u64(), done["bytes_total"].as_u64()),
        (Some(300_000), Some(300_000))
    );
    assert_eq!(done["progress"], 100);
    let p = s.get(&format!("/v1/packages/{id}")).json();
    assert_eq!(p["status"], "downloaded");
    let path = PathBuf::from(p["path"].as_str().expect("a path once downloaded"));
    assert!(
        path.starts_with(data(&s).canonicalize().unwrap()),
        "{path:?}"
    );
    assert_eq!(std::fs::read(path.join("tool-linux64")).unwrap(), body);
    let artifact = data(&s).join("artifacts/sha256").join(sha256_hex(&body));
    assert_eq!(std::fs::read(artifact).unwrap(), body);
    assert_eq!(tree(&data(&s).join("partial")), Vec::<String>::new());
    let metrics = s.get("/metrics").body;
    assert!(
        metrics.contains("packd_downloaded_bytes_total 300000"),
        "{metrics}"
    );
}

/// A loopback server outruns the disk: the writer's channel fills while
/// checkpoints are synced. No byte may be lost in that back-pressure (one
/// was, when waiting for a checkpoint dropped a chunk on its way to the
/// writer, and every download over 64 MiB from nginx failed its digest).
#[test]
fn a_download_faster_than_the_disk_arrives_whole() {
    let server = ArtifactServer::start();
    let body = pattern(64 << 20);
    let url = server.put("/big.bin", body.clone(), Knobs::default());
    let s = TestServer::in_process(ARGS);
    let (id, op) = start_download(&s, "big", &url, &body);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let on_disk = std::fs::read(path_of(&s, &id).join("big.bin")).unwrap();
    assert!(
        on_disk == body,
        "the installed file differs from the source"
    );
}

/// A single file is its artifact, linked rather than copied; an edit of
/// it in place is found before the artifact serves another package.
#[test]
fn a_single_file_is_linked_to_its_artifact_and_an_edit_in_place_is_fetched_again() {
    use std::os::unix::fs::MetadataExt;
    let server = ArtifactServer::start();
    let body = pattern(200_000);
    let url = server.put("/tool", body.clone(), Knobs::default());
    let s = TestServer::in_process(ARGS);
    let (id, op) = start_download(&s, "tool", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let placed = path_of(&s, &id).join("tool");
    let artifact = data(&s).join("artifacts/sha256").join(sha256_hex(&body));
    let (p, a) = (
        std::fs::metadata(&placed).unwrap(),
        std::fs::metadata(&artifact).unwrap(),
    );
    assert_eq!((p.dev(), p.ino()), (a.dev(), a.ino()), "not a hard link");
    assert_eq!(p.mode() & 0o7777, 0o644);

    std::fs::OpenOptions::new()
        .append(true)
        .open(&placed)
        .unwrap()
        .write_all(b"edited")
        .unwrap();
    let (copy, again) = start_download(&s, "tool-copy", &url, &body);
    assert_eq!(s.finished(&again)["state"], "succeeded");
    assert_eq!(server.requests("/tool").len(), 2, "fetched again");
    assert_eq!(
        std::fs::read(path_of(&s, &copy).join("tool")).unwrap(),
        body
    );
    assert_eq!(std::fs::read(&artifact).unwrap(), body);
}

#[test]
fn a_tar_gz_is_unpacked_and_a_digest_already_stored_is_not_fetched_again() {
    let server = ArtifactServer::start();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in [
        ("jq-1.7/bin/jq", &b"#!jq"[..]),
        ("jq-1.7/README", b"read me"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, content).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let body = gz.finish().unwrap();
    let url = server.put("/jq-1.7.tar.gz", body.clone(), Knobs::default());
    let s = TestServer::in_process(ARGS);
    let (id, op) = start_download(&s, "jq", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let path = path_of(&s, &id);
    assert_eq!(tree(&path), ["jq-1.7/README", "jq-1.7/bin/jq"]);

    // Another package with the same digest: no second fetch.
    let (_, again) = start_download(&s, "jq-copy", &url, &body);
    assert_eq!(s.finished(&again)["state"], "succeeded");
    assert_eq!(server.requests("/jq-1.7.tar.gz").len(), 1);
}

#[test]
fn faults_are_retried_or_failed_as_they_deserve() {
    let server = ArtifactServer::start();
    let body = pattern(10_000);
    let s = TestServer::start_with(ARGS, &[]);

    // A wrong digest: failed at once, nothing left behind.
    let url = server.put("/wrong", body.clone(), Knobs::default());
    let r = s.json(
        "POST",
        "/v1/packages",
        &json!({"name": "wrong", "version": "1", "source": {"url": url, "sha256": sha256_hex(b"other")}}),
    );
    let id = r.id();
    let op = s
        .send("POST", &format!("/v1/packages/{id}/download"), &[], None)
        .id();
    let done = s.finished(&op);
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert!(
        done["error"].as_str().unwrap().contains("SHA-256 mismatch"),
        "{done}"
    );
    assert_eq!(
        s.get(&format!("/v1/packages/{id}")).json()["status"],
        "created"
    );

    // 404: failed after one attempt.
    let missing = format!("{}/missing", server.base);
    let (_, op) = start_download(&s, "missing", &missing, &body);
    let done = s.finished(&op);
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert!(done["error"].as_str().unwrap().contains("404"), "{done}");

    // 503: retried up to --max-attempts.
    let busy = server.put(
        "/busy",
        body.clone(),
        Knobs {
            status: Some(503),
            ..Knobs::default()
        },
    );
    let (_, op) = start_download(&s, "busy", &busy, &body);
    let done = s.finished(&op);
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_u64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(server.requests("/busy").len(), 3);
    assert_eq!(tree(&data(&s).join("partial")), Vec::<String>::new());
    assert_eq!(tree(&data(&s).join("artifacts")), Vec::<String>::new());
}

#[test]
fn an_archive_entry_that_escapes_fails_the_download_and_writes_nothing_outside() {
    let server = ArtifactServer::start();
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    let mut body = h.as_bytes().to_vec();
    body.extend_from_slice(b"bad");
    body.resize(1024 + 1024, 0);
    let url = server.put("/evil.tar", body.clone(), Knobs::default());
    let s = TestServer::start_with(ARGS, &[]);
    let (id, op) = start_download(&s, "evil", &url, &body);
    let done = s.finished(&op);
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("outside"),
        "{done}"
    );
    assert_eq!(
        s.get(&format!("/v1/packages/{id}")).json()["path"],
        Value::Null
    );
    assert_eq!(tree(&data(&s).join("packages")), Vec::<String>::new());
    assert!(!data(&s).join("packages/escape").exists());
    assert!(!data(&s).join("escape").exists());
}

#[test]
fn a_dropped_connection_resumes_with_range_from_the_checkpoint() {
    let server = ArtifactServer::start();
    let body = pattern(2_000_000);
    // 256 KiB, a pause long enough for packd to save a checkpoint, a little
    // more, then the connection drops.
    let url = server.put(
        "/big.bin",
        body.clone(),
        Knobs {
            chunk: 64 * 1024,
            pause_after: Some(256 * 1024),
            pause: Duration::from_millis(1300),
            drop_after: Some(512 * 1024),
            ..Knobs::default()
        },
    );
    let s = TestServer::start_with(ARGS, &[]);
    let (id, op) = start_download(&s, "big", &url, &body);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let requests = server.requests("/big.bin");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let resumed_at: u64 = requests[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the retry sent no Range: {requests:?}"));
    assert!(resumed_at >= 256 * 1024, "resumed at {resumed_at}");
    let etag = format!("\"{}\"", &sha256_hex(&body)[..16]);
    assert_eq!(requests[1].if_range.as_deref(), Some(etag.as_str()));
    let path = path_of(&s, &id);
    assert_eq!(std::fs::read(path.join("big.bin")).unwrap(), body);
    assert!(
        s.get("/metrics")
            .body
            .contains("packd_downloads_resumed_total 1")
    );
}

#[test]
fn a_server_without_range_support_is_read_from_the_start() {
    let server = ArtifactServer::start();
    let body = pattern(2_000_000);
    let url = server.put(
        "/plain.bin",
        body.clone(),
        Knobs {
            no_range: true,
            chunk: 64 * 1024,
            pause_after: Some(256 * 1024),
            pause: Duration::from_millis(1300),
            drop_after: Some(512 * 1024),
            ..Knobs::default()
        },
    );
    let s = TestServer::in_process(ARGS);
    let (id, op) = start_download(&s, "plain", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let path = path_of(&s, &id);
    assert_eq!(std::fs::read(path.join("plain.bin")).unwrap(), body);
}

#[test]
fn kill_9_mid_download_then_the_restart_resumes_from_the_saved_offset() {
    let server = ArtifactServer::start();
    let body = pattern(4_000_000);
    // Slow: 64 KiB every 100 ms, about 6 s in all.
    let url = server.put(
        "/slow.bin",
        body.clone(),
        Knobs {
            chunk: 64 * 1024,
            chunk_delay: Duration::from_millis(100),
            ..Knobs::default()
        },
    );
    let mut s = TestServer::start_with(ARGS, &[]);
    let (id, op) = start_download(&s, "slow", &url, &body);
    let saved = wait_for("a saved checkpoint", || {
        let o = s.get(&format!("/v1/operations/{op}")).json();
        o["bytes_done"].as_u64().filter(|n| *n > 0)
    });
    s.kill9();
    s.restart(ARGS, &[]);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    let requests = server.requests("/slow.bin");
    let resumed_at: u64 = requests
        .last()
        .and_then(|r| r.range.as_deref())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the restart sent no Range: {requests:?}"));
    assert!(
        resumed_at >= saved,
        "resumed at {resumed_at}, had saved {saved}"
    );
    let path = path_of(&s, &id);
    assert_eq!(std::fs::read(path.join("slow.bin")).unwrap(), body);
}

#[test]
fn a_cancel_stops_the_download_and_removes_the_partial() {
    let server = ArtifactServer::start();
    let body = pattern(4_000_000);
    let url = server.put(
        "/cancel.bin",
        body.clone(),
        Knobs {
            chunk: 64 * 1024,
            chunk_delay: Duration::from_millis(100),
            ..Knobs::default()
        },
    );
    let s = TestServer::start_with(ARGS, &[]);
    let (id, op) = start_download(&s, "cancelled", &url, &body);
    wait_for("some bytes saved", || {
        let o = s.get(&format!("/v1/operations/{op}")).json();
        o["bytes_done"].as_u64().filter(|n| *n > 0)
    });
    s.send("POST", &format!("/v1/operations/{op}/cancel"), &[], None)
        .assert_status(200);
    let done = s.finished(&op);
    assert_eq!(done["state"], "cancelled", "{done}");
    wait_for("the partial to be removed", || {
        tree(&data(&s).join("partial")).is_empty().then_some(())
    });
    assert_eq!(
        s.get(&format!("/v1/packages/{id}")).json()["status"],
        "created"
    );
    assert_eq!(tree(&data(&s).join("artifacts")), Vec::<String>::new());
}

/// The files follow the database: a DELETE removes the package's files,
/// and the artifact goes with the last package on the machine that names
/// its digest (a `created` one is not on it); a new version takes the old
/// one's files away.
#[test]
fn delete_and_patch_remove_files_and_the_last_user_takes_the_artifact() {
    let server = ArtifactServer::start();
    let body = pattern(50_000);
    let url = server.put("/shared.bin", body.clone(), Knobs::default());
    let s = TestServer::start_with(ARGS, &[]);
    let (a, op) = start_download(&s, "a", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let (b, op) = start_download(&s, "b", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let (path_a, path_b) = (path_of(&s, &a), path_of(&s, &b));
    let artifact = data(&s).join("artifacts/sha256").join(sha256_hex(&body));

    s.send("DELETE", &format!("/v1/packages/{a}"), &[], None)
        .assert_status(204);
    s.removals_done(1);
    assert!(!path_a.exists(), "a's files are gone");
    assert!(artifact.is_file(), "b still names the digest");

    let r = s.json(
        "PATCH",
        &format!("/v1/packages/{b}"),
        &json!({"version": "2.0"}),
    );
    assert_eq!(r.json()["status"], "created");
    assert_eq!(r.json()["path"], Value::Null);
    s.removals_done(2);
    assert!(!path_b.exists(), "the old version's files are gone");
    assert!(
        !artifact.exists(),
        "b, at 2.0, names the digest but is not on the machine: the last user took it"
    );
    // Downloaded again, it fetches the artifact again.
    let op = s.send("POST", &format!("/v1/packages/{b}/download"), &[], None);
    assert_eq!(s.finished(&op.id())["state"], "succeeded");
    assert!(artifact.is_file());

    s.send("DELETE", &format!("/v1/packages/{b}"), &[], None)
        .assert_status(204);
    s.removals_done(3);
    assert!(
        !artifact.exists(),
        "the last package naming the digest took it"
    );
    assert_eq!(tree(&data(&s).join("packages")), Vec::<String>::new());
}

/// https: a certificate from an unknown CA is refused; with that CA given
/// by --ca-file the same download succeeds.
#[test]
fn https_sources_are_verified_and_ca_file_adds_a_root() {
    let body = pattern(100_000);
    let server = crate::artifacts::TlsServer::start(body.clone());
    let untrusting = TestServer::start_with(&["--max-attempts", "1"], &[]);
    let (_, op) = start_download(&untrusting, "secure", &server.url, &body);
    let done = untrusting.finished(&op);
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{done}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let trusting = TestServer::start_with(&["--ca-file", ca.to_str().unwrap()], &[]);
    let (id, op) = start_download(&trusting, "secure", &server.url, &body);
    assert_eq!(trusting.finished(&op)["state"], "succeeded");
    let path = path_of(&trusting, &id);
    assert_eq!(std::fs::read(path.join("secure.bin")).unwrap(), body);

    // A --ca-file that is not PEM stops the start with a clear message.
    std::fs::write(&ca, b"not a certificate").unwrap();
    let Err(err) = TestServer::spawn(
        &dir.path().join("p.redb"),
        &["--ca-file", ca.to_str().unwrap()],
        &[],
    ) else {
        panic!("a bad --ca-file was accepted");
    };
    assert!(err.contains("--ca-file"), "{err}");
}

/// Every format end to end, and a server that sends no answer in time is a
/// silence, retried like a cut connection.
#[test]
fn tar_and_zip_unpack_and_a_silent_server_is_retried() {
    use std::io::Write as _;
    let server = ArtifactServer::start();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "etc/conf", &b"tar"[..]).unwrap();
    let tar_body = tar.into_inner().unwrap();
    let tar_url = server.put("/conf.tar", tar_body.clone(), Knobs::default());

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("lib/module.py", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"zip").unwrap();
    let zip_body = zip.finish().unwrap().into_inner();
    // The first request waits longer than --read-timeout before answering.
    let zip_url = server.put(
        "/module.zip",
        zip_body.clone(),
        Knobs {
            head_delay: Duration::from_secs(3),
            ..Knobs::default()
        },
    );
    let mut args = ARGS.to_vec();
    args.extend(["--read-timeout", "1s"]);
    let s = TestServer::in_process(&args);
    let (tar_id, op) = start_download(&s, "conf", &tar_url, &tar_body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let (zip_id, op) = start_download(&s, "module", &zip_url, &zip_body);
    let done = s.finished(&op);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["attempts"], 2,
        "the silent first answer was retried: {done}"
    );
    assert_eq!(
        std::fs::read(path_of(&s, &tar_id).join("etc/conf")).unwrap(),
        b"tar"
    );
    assert_eq!(
        std::fs::read(path_of(&s, &zip_id).join("lib/module.py")).unwrap(),
        b"zip"
    );
}

/// file:// sources, where the server allows them, are read from the file.
#[test]
fn a_file_source_is_read_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(20_000);
    let file = dir.path().join("local.bin");
    std::fs::write(&file, &body).unwrap();
    let url = format!("file://{}", file.display());
    let s = TestServer::in_process(&["--allow-file-sources"]);
    let (id, op) = start_download(&s, "local", &url, &body);
    assert_eq!(s.finished(&op)["state"], "succeeded");
    let path = path_of(&s, &id);
    assert_eq!(std::fs::read(path.join("local.bin")).unwrap(), body);
}

/// `--proxy` takes every download but loopback's: the request for another
/// host reaches the proxy (as an absolute-form request line), not the host.
#[test]
fn downloads_for_other_hosts_go_through_the_proxy() {
    use std::io::{BufRead, BufReader};
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = proxy.accept() {
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let _ = seen_tx.send(line);
            let _ = (&conn).write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let s = TestServer::in_process(&["--proxy", &proxy_url, "--max-attempts", "1"]);
    let body = b"never served";
    let (_, op) = start_download(&s, "far", "http://packages.example.com/far.bin", body);
    let line = seen
        .recv_timeout(Duration::from_secs(20))
        .expect("the proxy to be asked");
    assert!(
        line.starts_with("GET http://packages.example.com/far.bin HTTP/1.1"),
        "{line:?}"
    );
    let done = s.finished(&op);
    assert_eq!(done["state"], "failed", "{done}");
}
