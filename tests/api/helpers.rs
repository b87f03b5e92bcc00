//! Runs packd on a free port with its own database file, and talks to it
//! over a real socket: as the real binary (for everything about processes:
//! restarts, kill -9, signals, logs, the file lock, process-wide metrics),
//! or in this test process (`TestServer::in_process`, for tests of HTTP
//! behaviour alone: no process start, and a debugger sees both sides).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_packd");
/// The admin key every test server is bootstrapped with.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdefghijklmnop";
/// A proxy address nothing listens on: test servers send every download
/// that is not for loopback there, so no test traffic leaves the machine.
pub const DEAD_PROXY: &str = "http://127.0.0.1:9";
/// How long a server may take to start or stop before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    child: Option<Child>,
    /// The in-process server: its runtime thread and the trigger that stops it.
    in_process: Option<InProcess>,
    pub base: String,
    pub db: PathBuf,
    stderr_path: PathBuf,
    // Held so the directory outlives the server; shared across restarts.
    _dir: Option<tempfile::TempDir>,
    agent: ureq::Agent,
    /// The key sent with every request unless a test says otherwise.
    pub key: Option<String>,
}

pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

/// A package as the API returns it: the fields tests look at.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    pub status: String,
    pub operation_id: Option<String>,
    pub revision: u64,
}

impl Resp {
    /// The `id` of the resource in the body.
    #[track_caller]
    pub fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 answer with this status and code, and returns its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of a {status}"
        );
        let body = self.json();
        assert_eq!(body["code"], code, "code; body: {body}");
        assert_eq!(body["status"], status, "status member; body: {body}");
        assert!(
            body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
        assert_eq!(body["type"], format!("urn:packd:problem:{code}"));
        body
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        self
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct InProcess {
    trigger: packd::shutdown::ShutdownTrigger,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.trigger.fire();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestServer {
    /// A fresh server on a fresh database.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// A fresh server on a fresh database, run by this test process with the
    /// same settings the binary would parse from `args`.
    pub fn in_process(args: &[&str]) -> Self {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("packd.redb");
        let mut argv = vec!["packd", "--listen", "127.0.0.1:0", "--db"];
        let db_arg = db.to_str().unwrap().to_string();
        argv.push(&db_arg);
        let data_arg = data_dir_for(&db).to_str().unwrap().to_string();
        argv.extend(["--data-dir", &data_arg]);
        // The test process's environment is not the server's to set:
        // downloads for anything but loopback go to the dead proxy by flag.
        if !args.contains(&"--proxy") {
            argv.extend(["--proxy", DEAD_PROXY]);
        }
        // The tests' disks may have less than the default floor free.
        if !args.contains(&"--min-free-space") {
            argv.extend(["--min-free-space", "0"]);
        }
        argv.extend_from_slice(args);
        let mut serve = packd::config::Cli::try_parse_from(argv)
            .expect("arguments")
            .serve;
        serve.bootstrap_key = Some(ADMIN_KEY.into());
        let (trigger, shutdown) = packd::shutdown::Shutdown::new();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = packd::server::Application::build(serve, shutdown)
                    .await
                    .expect("build");
                tx.send(app.local_addr().expect("address")).expect("send");
                app.run_until_stopped().await.expect("run");
            });
        });
        let local = rx
            .recv_timeout(DEADLINE)
            .expect("the in-process server to start");
        Self {
            child: None,
            in_process: Some(InProcess {
                trigger,
                thread: Some(thread),
            }),
            base: format!("http://{local}"),
            db,
            stderr_path: PathBuf::new(),
            _dir: Some(dir),
            agent: agent(),
            key: Some(ADMIN_KEY.to_string()),
        }
    }

    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("packd.redb");
        let mut s = Self::spawn(&db, args, envs).unwrap_or_else(|e| panic!("{e}"));
        s._dir = Some(dir);
        s
    }

    /// Starts a server on an existing path; `Err` carries what it printed if it
    /// exited instead of listening.
    pub fn spawn(db: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Self, String> {
        Self::spawn_in(&[], db, args, envs)
    }

    /// `spawn`, with the binary run by `wrapper` (a command that ends by
    /// executing its arguments, such as `unshare ... sh -c '...; exec "$@"'`).
    pub fn spawn_in(
        wrapper: &[&str],
        db: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        let stderr_path = db.with_extension(format!("stderr.{}", unique()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db);
        // Beside the database, unless the test names one.
        if !args.contains(&"--data-dir") {
            cmd.arg("--data-dir").arg(data_dir_for(db));
        }
        // The tests' disks may have less than the default floor free; the
        // floor has tests of its own (tests/api/retention.rs).
        if !args.contains(&"--min-free-space") {
            cmd.args(["--min-free-space", "0"]);
        }
        cmd.args(args)
            .env_remove("PACKD_LISTEN")
            .env_remove("PACKD_DB")
            .env("PACKD_BOOTSTRAP_KEY", ADMIN_KEY)
            // Downloads reach loopback only: any other host goes to a
            // proxy that is not there.
            .env("http_proxy", DEAD_PROXY)
            .env("https_proxy", DEAD_PROXY)
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in envs {
            // An empty value unsets the variable (e.g. no bootstrap key).
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().expect("spawn packd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Forward the first line, then keep draining so the child never blocks.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + DEADLINE;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("packd listening on ") {
                        let base = rest.split_whitespace().next().unwrap().to_string();
                        return Ok(Self {
                            child: Some(child),
                            in_process: None,
                            base,
                            db: db.to_path_buf(),
                            stderr_path,
                            _dir: None,
                            agent: agent(),
                            key: Some(ADMIN_KEY.to_string()),
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout)
                | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(status) = child.try_wait().expect("try_wait") {
                        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                        return Err(format!(
                            "packd exited with {status} before listening: {err}"
                        ));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("packd did not start within {DEADLINE:?}");
                    }
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a request with the server's default key and reads the whole answer.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        self.send_as(self.key.as_deref(), method, path, headers, body)
    }

    /// Sends a request with `key` (none: no key at all).
    pub fn send_as(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let result = match body {
            Some(b) => self.agent.run(req.body(b.to_vec()).unwrap()),
            None => self.agent.run(req.body(()).unwrap()),
        };
        into_resp(result.unwrap_or_else(|e| panic!("{method} {path}: {e}")))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], None)
    }

    pub fn json(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.json_with(method, path, &[], body)
    }

    pub fn json_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Resp {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(method, path, &all, Some(body.to_string().as_bytes()))
    }

    /// Creates a package and returns it, typed.
    #[track_caller]
    pub fn new_package(&self, name: &str, version: &str) -> Package {
        let p: Package =
            serde_json::from_value(self.create_package(name, version)).expect("a package");
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.revision),
            (name, version, 1),
            "a new package is what was asked, at revision 1"
        );
        p
    }

    /// Reads a package, typed.
    #[track_caller]
    pub fn package(&self, id: &str) -> Package {
        let r = self.get(&format!("/v1/packages/{id}"));
        r.assert_status(200);
        serde_json::from_value(r.json()).expect("a package")
    }

    /// Waits (with the deadline) for an operation to finish; returns it.
    #[track_caller]
    pub fn finished(&self, op: &str) -> Value {
        wait_for("the operation to finish", || {
            let o = self.get(&format!("/v1/operations/{op}?wait=5")).json();
            ["succeeded", "failed", "cancelled"]
                .contains(&o["state"].as_str().unwrap_or(""))
                .then_some(o)
        })
    }

    /// The value of the metric line that starts with `line_start` (the name
    /// and its labels, then a space).
    #[track_caller]
    pub fn metric(&self, line_start: &str) -> u64 {
        self.get("/metrics")
            .body
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in the metrics"))
    }

    /// Waits (with the deadline) until `n` journaled removals are done in
    /// all: DELETE and PATCH answer at their commit, the files go after.
    #[track_caller]
    pub fn removals_done(&self, n: u64) {
        wait_for("the journaled removals", || {
            (self.metric("packd_removals_total{outcome=\"done\"} ") >= n).then_some(())
        });
    }

    /// Creates a package and returns its JSON.
    #[track_caller]
    pub fn create_package(&self, name: &str, version: &str) -> Value {
        let r = self.json(
            "POST",
            "/v1/packages",
            &serde_json::json!({"name": name, "version": version}),
        );
        r.assert_status(201);
        r.json()
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit. The database
    /// stays, for `restart`.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        wait_with_deadline(child)
    }

    /// `kill -9`: no chance to clean up. The database stays, for `restart`.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }

    /// Starts the binary again on the same database (after `terminate` or `kill9`).
    pub fn restart(&mut self, args: &[&str], envs: &[(&str, &str)]) {
        assert!(self.child.is_none(), "stop the server first");
        let mut fresh = Self::spawn(&self.db, args, envs).unwrap_or_else(|e| panic!("{e}"));
        self.child = fresh.child.take();
        self.base = fresh.base.clone();
        self.stderr_path = fresh.stderr_path.clone();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.in_process.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- packd stderr ---\n{}", self.stderr());
            }
        }
    }
}

pub fn into_resp(mut r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

pub fn wait_with_deadline(mut child: Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("packd did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process's resident memory, in bytes.
pub fn rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:") * 1024
}

/// The most resident memory a process has had (its high-water mark), in
/// bytes: what a burst cost, even once it is given back.
pub fn peak_rss(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:") * 1024
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Polls `check` until it returns `Some`, failing the test at the deadline.
#[track_caller]
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The data directory of a test server: beside its database, one per
/// database (packd refuses two databases on one directory).
pub fn data_dir_for(db: &Path) -> PathBuf {
    db.with_extension("data")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs the binary to completion with these arguments.
pub fn run_packd(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    // A server started here must not make its data directory in the crate:
    // it goes beside the database (one per database, as packd requires).
    let data_dir = args
        .iter()
        .position(|a| *a == "--db")
        .and_then(|i| args.get(i + 1))
        .map(|db| data_dir_for(Path::new(db)))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "packd-test-data-{}-{}",
                std::process::id(),
                unique()
            ))
        });
    cmd.args(args)
        .stdin(Stdio::null())
        .env("PACKD_DATA_DIR", data_dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run packd")
}
