//! The operator's hooks: a program run after `active/<name>` changes, with
//! no shell, a clean environment and a deadline.
//!
//! - The environment is `PATH`, `HOME`, `LANG`, `LC_ALL` and `TZ` (when
//!   packd has them) plus the `PACKD_*` variables of the operation; packd's
//!   own settings and secrets (`PACKD_BOOTSTRAP_KEY`) are not passed on.
//! - The hook runs in a process group of its own, so the deadline reaches
//!   what it started too: SIGTERM to the group, then SIGKILL after a grace
//!   period.
//! - Its output is logged line by line at debug level, and the last
//!   `TAIL_BYTES` are kept for the operation's `error`.
//! - While it runs, its process group is written down (the group, its
//!   leader's start time and the boot's id) in the data directory's
//!   `.hooks/`: after a kill -9 of packd, the next start ends what the hook
//!   left running (`sweep`) before the resumed operation runs it again. The
//!   start time and boot id make sure a recycled process id is never hit.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::metrics::HookOutcome;

/// How much of a hook's output ends up in an operation's `error`.
pub const TAIL_BYTES: usize = 2048;

/// Longest a hook gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long the output is still read after the hook exits: a program it
/// left running in the background may hold the pipes open for good.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// Variables passed through from packd's own environment.
const PASSED_THROUGH: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// Used when packd itself has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hooks an operator configured.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub activate: Option<PathBuf>,
    pub deactivate: Option<PathBuf>,
    pub timeout: Duration,
    /// The health check that watches an activation, if any.
    pub health: Option<Health>,
}

/// `--health-check` and its timing.
#[derive(Debug, Clone)]
pub struct Health {
    pub program: PathBuf,
    pub window: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Hooks {
    /// The hooks and health check the settings name.
    pub fn of(serve: &crate::config::ServeArgs) -> Hooks {
        Hooks {
            activate: serve.hook_activate.clone(),
            deactivate: serve.hook_deactivate.clone(),
            timeout: serve.hook_timeout,
            health: serve.health_check.clone().map(|program| Health {
                program,
                window: serve.health_window,
                interval: serve.health_interval,
                timeout: serve.health_timeout,
            }),
        }
    }
}

/// The hooks now: a reload (SIGHUP) replaces them whole; a switch under
/// way keeps those it began with.
#[derive(Debug, Clone)]
pub struct SharedHooks(std::sync::Arc<std::sync::RwLock<Hooks>>);

impl SharedHooks {
    pub fn new(hooks: Hooks) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(hooks)))
    }

    pub fn current(&self) -> Hooks {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, hooks: Hooks) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = hooks;
    }
}

/// Why a hook did not succeed; each carries the end of its output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("cannot start {program}: {error}")]
    CannotStart { program: String, error: String },
    #[error("{program} exited with {status}{}", tail_suffix(.output))]
    Failed {
        program: String,
        status: String,
        output: String,
    },
    #[error("{program} did not finish within {timeout:?} and was stopped{}", tail_suffix(.output))]
    TimedOut {
        program: String,
        timeout: Duration,
        output: String,
    },
    /// packd is shutting down; the hook was stopped.
    #[error("stopped by the shutdown")]
    Stopped,
}

impl HookError {
    /// The outcome label of `packd_hook_runs_total`.
    pub fn outcome(&self) -> HookOutcome {
        match self {
            HookError::CannotStart { .. } => HookOutcome::NotStarted,
            HookError::Failed { .. } => HookOutcome::Failed,
            HookError::TimedOut { .. } => HookOutcome::TimedOut,
            HookError::Stopped => HookOutcome::Stopped,
        }
    }
}

fn tail_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; output ends with: {output}")
    }
}

/// Runs `program` with `vars` added to the clean environment, in `dir`.
/// Ends early (stopping the hook) when `stop` resolves.
pub async fn run(
    program: &Path,
    vars: &[(&str, String)],
    dir: &Path,
    timeout: Duration,
    stop: impl Future<Output = ()>,
    record: Option<PathBuf>,
) -> Result<(), HookError> {
    let ran = run_unrecorded(program, vars, dir, timeout, stop, record.clone()).await;
    if let Some(record) = record {
        // The group has ended (or was killed): nothing left to sweep.
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(record)).await;
    }
    ran
}

async fn run_unrecorded(
    program: &Path,
    vars: &[(&str, String)],
    dir: &Path,
    timeout: Duration,
    stop: impl Future<Output = ()>,
    record: Option<PathBuf>,
) -> Result<(), HookError> {
    let shown = program.display().to_string();
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // A safety net: a hook is never left behind by a dropped future.
        .kill_on_drop(true);
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().map_err(|e| HookError::CannotStart {
        program: shown.clone(),
        error: e.to_string(),
    })?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    if let (Some(record), Some(group)) = (record, group) {
        let written = tokio::task::spawn_blocking(move || write_record(&record, group)).await;
        if let Ok(Err(e)) | Err(e) = written.map_err(std::io::Error::other) {
            tracing::warn!(error = %e, "cannot write down the hook's process group");
        }
    }
    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(read_lines(out, "stdout", tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(read_lines(err, "stderr", tail.clone()));
    }

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Stopped,
    }
    let end = tokio::select! {
        status = child.wait() => End::Exited(status),
        () = tokio::time::sleep(timeout) => End::TimedOut,
        () = stop => End::Stopped,
    };
    if matches!(end, End::Exited(_)) {
        // What the hook started and left running goes with it: a hook is a
        // step, not a way to start a daemon (the service manager does that).
        if let Some(group) = group {
            end_leftovers(group).await;
        }
    } else {
        terminate(&mut child, group).await;
    }
    // The output a hook wrote before it ended is all in the pipes by now;
    // reading it must not wait on what the hook left running.
    let _ = tokio::time::timeout(OUTPUT_DRAIN, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
    let output = tail.lock().map(|t| t.text()).unwrap_or_default();
    match end {
        End::Exited(Ok(status)) if status.success() => Ok(()),
        End::Exited(Ok(status)) => Err(HookError::Failed {
            program: shown,
            status: describe(status),
            output,
        }),
        End::Exited(Err(e)) => Err(HookError::Failed {
            program: shown,
            status: format!("an unknown status ({e})"),
            output,
        }),
        End::TimedOut => Err(HookError::TimedOut {
            program: shown,
            timeout,
            output,
        }),
        End::Stopped => Err(HookError::Stopped),
    }
}

/// SIGTERM to the hook's process group, then SIGKILL if it has not ended
/// within the grace period.
async fn terminate(child: &mut tokio::process::Child, group: Option<i32>) {
    if let Some(group) = group {
        // SAFETY: kill(2) with a negative pid signals a process group; the
        // group is the hook's own (process_group(0) made it its leader).
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        if let Some(group) = group {
            // SAFETY: as above.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    } else if let Some(group) = group {
        // The leader is gone; what it started must not outlive it.
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// Writes down a running hook's group: `<group> <start time> <boot id>`.
fn write_record(path: &Path, group: i32) -> std::io::Result<()> {
    let start = start_time(group).ok_or_else(|| std::io::Error::other("the hook is gone"))?;
    let boot = boot_id().ok_or_else(|| std::io::Error::other("no boot id"))?;
    crate::durable::replace_file(path, |tmp| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = crate::durable::create_private_file(tmp)?;
        writeln!(f, "{group} {start} {boot}")?;
        f.sync_all()
    })
}

/// A process's start time (clock ticks since boot), from /proc.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields are
    // counted after the last `)`. Start time is field 22, group field 5.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process's group, from /proc; `None` for a zombie (or no process).
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// The live processes of `group`.
fn members(group: i32) -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(move |pid| group_of(*pid) == Some(group))
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Ends the process groups of hooks a killed packd left running (written
/// down in `dir`), then forgets them. Only processes of this boot, in that
/// group, started no earlier than the hook, are signalled. Blocking: run
/// at start, before any worker. Returns the processes killed.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let boot = boot_id();
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let record = std::fs::read_to_string(&path).unwrap_or_default();
        let fields: Vec<&str> = record.split_whitespace().collect();
        if let [group, start, recorded_boot] = fields[..]
            && boot.as_deref() == Some(recorded_boot)
            && let (Ok(group), Ok(start)) = (group.parse::<i32>(), start.parse::<u64>())
            && group > 1
        {
            killed += end_group(group, start);
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// SIGKILLs every process of `group` that started at `start` or later.
fn end_group(group: i32, start: u64) -> usize {
    let mut killed = 0;
    for pid in members(group) {
        if start_time(pid).is_some_and(|t| t >= start) {
            // SAFETY: kill(2) on a process checked just above to be in
            // the hook's group and no older than the hook.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    if killed > 0 {
        tracing::warn!(
            group,
            processes = killed,
            "ended what a hook of the last run left running"
        );
    }
    killed
}

/// SIGTERM to what is left of an exited hook's group, SIGKILL to what is
/// still there after the grace period.
async fn end_leftovers(group: i32) {
    // Zombies count as members for kill(2) but are gone for any purpose
    // (and where packd is PID 1 nobody may reap them): /proc says.
    let alive = || members(group).next().is_some();
    if !alive() {
        return;
    }
    tracing::warn!(group, "the hook left processes running; ending them");
    // SAFETY: as above.
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + KILL_GRACE;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if alive() {
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, name: &'static str, tail: Arc<Mutex<Tail>>) {
    let mut lines = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Lines are capped so that a hook printing without newlines cannot
        // grow packd's memory.
        match (&mut lines)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(stream = name, line = %text.trim_end(), "hook output");
                if let Ok(mut tail) = tail.lock() {
                    tail.push(&line);
                }
            }
        }
    }
}

/// The last `TAIL_BYTES` of a hook's output, both streams in the order read.
#[derive(Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(TAIL_BYTES);
        self.0.drain(..excess);
    }

    fn text(&self) -> String {
        let bytes: Vec<u8> = self.0.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("hook.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn never() -> impl Future<Output = ()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_hook_gets_its_variables_and_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let hook = script(dir.path(), &format!("env > {}", out.display()));
        // Some variable of the test's own environment that is not passed on.
        let (private, _) = std::env::vars()
            .find(|(k, _)| !PASSED_THROUGH.contains(&k.as_str()))
            .expect("the test runs with more than PATH in its environment");
        run(
            &hook,
            &[("PACKD_PACKAGE_NAME", "jq".into())],
            dir.path(),
            Duration::from_secs(10),
            never(),
            None,
        )
        .await
        .unwrap();
        let env = std::fs::read_to_string(out).unwrap();
        assert!(env.contains("PACKD_PACKAGE_NAME=jq"), "{env}");
        assert!(env.contains("PATH="), "{env}");
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{private}="))),
            "{private} leaked: {env}"
        );
    }

    #[tokio::test]
    async fn a_failure_keeps_the_end_of_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done; echo boom >&2; exit 3",
        );
        let err = run(
            &hook,
            &[],
            dir.path(),
            Duration::from_secs(10),
            never(),
            None,
        )
        .await
        .unwrap_err();
        let HookError::Failed { status, output, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(status, "status 3");
        assert!(output.ends_with("boom"), "{output}");
        assert!(output.len() <= TAIL_BYTES);
        assert!(!output.contains("line 0\n"));
        assert_eq!(err.outcome(), HookOutcome::Failed);
    }

    #[tokio::test]
    async fn a_hanging_hook_and_what_it_started_are_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // The child ignores nothing, but the hook traps SIGTERM and goes on:
        // only SIGKILL ends it.
        let hook = script(
            dir.path(),
            &format!(
                "sleep 300 & echo $! > {}; trap '' TERM; echo waiting; while :; do sleep 1; done",
                pid_file.display()
            ),
        );
        let started = std::time::Instant::now();
        let err = run(
            &hook,
            &[],
            dir.path(),
            Duration::from_millis(500),
            never(),
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err:?}");
        assert!(err.to_string().contains("waiting"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(15));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: signal 0 only asks whether the process exists.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the hook's child outlived it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn what_a_finished_hook_left_running_is_ended() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let hook = script(
            dir.path(),
            &format!(
                "sleep 300 > /dev/null 2>&1 & echo $! > {}; exit 0",
                pid_file.display()
            ),
        );
        run(
            &hook,
            &[],
            dir.path(),
            Duration::from_secs(10),
            never(),
            None,
        )
        .await
        .unwrap();
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while group_of(pid).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the hook's child outlived it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn a_swept_record_ends_its_group_and_nothing_else() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("hooks");
        std::fs::create_dir(&records).unwrap();
        // What a hook left: a group of its own with a child in it.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = leader.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while members(group).count() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        write_record(&records.join("op-1"), group).unwrap();
        // A record of another boot is never acted on.
        std::fs::write(
            records.join("op-2"),
            format!("{} 1 not-this-boot\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(sweep(&records), 2, "the leader and its child");
        assert!(
            leader.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        assert_eq!(
            std::fs::read_dir(&records).unwrap().count(),
            0,
            "records forgotten"
        );
    }

    #[tokio::test]
    async fn a_missing_program_and_a_shutdown_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &dir.path().join("absent"),
            &[],
            dir.path(),
            Duration::from_secs(1),
            never(),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.outcome(), HookOutcome::NotStarted);
        let hook = script(dir.path(), "sleep 30");
        let err = run(
            &hook,
            &[],
            dir.path(),
            Duration::from_secs(60),
            tokio::time::sleep(Duration::from_millis(100)),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err, HookError::Stopped);
    }
}
