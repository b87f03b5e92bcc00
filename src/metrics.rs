//! Process-wide metrics: counters and histograms in atomics, rendered in the
//! Prometheus text format (version 0.0.4) for `GET /metrics`.
//!
//! One global registry, because the values come from every layer (the edge
//! middleware, the writer thread, the workers) and threading a handle through
//! all of them would buy nothing: a process has one set of metrics. Recording
//! is a few relaxed atomic adds and, for HTTP, one read-locked map lookup; no
//! allocation after a route's first request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use crate::domain::operation::OperationState;
use crate::domain::package::OperationKind;

/// Upper bounds (seconds) of the latency buckets: from a cached read on
/// loopback (~100 µs) to a long poll (up to 60 s, which lands in `+Inf`).
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram. Buckets are stored per bucket and summed when rendered,
/// so recording touches one bucket.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes `_bucket`, `_sum` and `_count` lines; `labels` is either empty
    /// or ends with a comma.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let labels = match labels.trim_end_matches(',') {
            "" => String::new(),
            l => format!("{{{l}}}"),
        };
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {count}");
    }
}

/// Statuses counted one by one; anything else is out of HTTP's range.
const STATUS_MIN: u16 = 100;
const STATUS_COUNT: usize = 500;

/// The requests of one (method, route).
struct RouteSeries {
    /// The route with its parameters named, as users read it.
    label: String,
    latency: Histogram,
    by_status: [AtomicU64; STATUS_COUNT],
}

type RouteKey = (&'static str, Option<Arc<str>>);

/// Why an authentication failed, as the `code` of its 401.
#[derive(Debug, Clone, Copy)]
pub enum AuthFailureCode {
    Unauthorized,
    KeyInactive,
    KeyExpired,
}

const KINDS: [OperationKind; 3] = [
    OperationKind::Download,
    OperationKind::Activate,
    OperationKind::Deactivate,
];
const FINISHED: [OperationState; 3] = [
    OperationState::Succeeded,
    OperationState::Failed,
    OperationState::Cancelled,
];

fn kind_index(kind: OperationKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Why a download attempt failed: a fault a retry may mend, one it cannot
/// (4xx, a size or digest mismatch, too large), or the unpacking.
pub const DOWNLOAD_FAILURES: [&str; 4] = ["transient", "permanent", "unpack", "files"];

/// Hooks, and how a run of one ended.
pub const HOOKS: [&str; 2] = ["activate", "deactivate"];
pub const HOOK_OUTCOMES: [&str; 5] = ["succeeded", "failed", "timed_out", "not_started", "stopped"];

/// What start-up reconciliation did to the data directory.
pub const RECONCILE_ACTIONS: [&str; 7] = [
    "link_made",
    "link_repointed",
    "link_removed",
    "partial_removed",
    "staging_removed",
    "removal_finished",
    "hook_process_ended",
];

/// How a journaled removal ended: done, deferred (a download of that
/// version was in flight) or failed (retried later).
pub const REMOVAL_OUTCOMES: [&str; 3] = ["done", "deferred", "failed"];

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections = 0,
    PerClient = 1,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerClient => "per_client",
        }
    }
}

pub struct Metrics {
    http: RwLock<HashMap<RouteKey, Arc<RouteSeries>>>,
    auth_failures: [AtomicU64; 3],
    commit_latency: Histogram,
    commit_failures: AtomicU64,
    writes: AtomicU64,
    operations_started: [AtomicU64; KINDS.len()],
    operations_finished: [[AtomicU64; FINISHED.len()]; KINDS.len()],
    operation_retries: [AtomicU64; KINDS.len()],
    connections_open: AtomicU64,
    connections_refused: [AtomicU64; 2],
    long_polls_waiting: AtomicU64,
    rate_limited: AtomicU64,
    database_damaged: AtomicU64,
    downloaded_bytes: AtomicU64,
    downloads_resumed: AtomicU64,
    /// By reason: transient (retried), permanent (failed at once), unpack,
    /// files (the data directory).
    download_failures: [AtomicU64; DOWNLOAD_FAILURES.len()],
    link_switches: AtomicU64,
    hook_runs: [[AtomicU64; HOOK_OUTCOMES.len()]; HOOKS.len()],
    reconciled: [AtomicU64; RECONCILE_ACTIONS.len()],
    foreign_entries: AtomicU64,
    removals: [AtomicU64; REMOVAL_OUTCOMES.len()],
    removed_entries: AtomicU64,
    event_streams_open: AtomicU64,
    events_lagged: AtomicU64,
}

/// Counts a long poll as waiting until dropped.
pub struct WaitingGuard(&'static Metrics);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.long_polls_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an event stream as open until dropped.
pub struct StreamGuard(&'static Metrics);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.event_streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        // Clients can send any token as a method: one bucket keeps the label
        // set bounded.
        _ => "other",
    }
}

/// The route of a request no route matched (unknown paths, and requests
/// refused before routing), in metrics and logs.
pub const UNMATCHED: &str = "unmatched";

/// Route patterns name path parameters `:param0`; the metrics say `{id}`
/// (every path parameter of the API is an id). Unmatched paths share one
/// label, so scanners cannot grow the series without bound.
pub fn route_label(pattern: Option<&str>) -> String {
    match pattern {
        None | Some("") => UNMATCHED.into(),
        Some(p) => p
            .split('/')
            .map(|seg| if seg.starts_with(':') { "{id}" } else { seg })
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Values read from the store when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct StoreGauges {
    /// Entries in the queue (queued operations, including retries not yet due).
    pub queue_depth: u64,
    /// Queued and running operations by kind and state.
    pub active: Vec<(OperationKind, OperationState, u64)>,
}

impl Metrics {
    fn new() -> Self {
        Self {
            http: RwLock::default(),
            auth_failures: Default::default(),
            commit_latency: Histogram::new(),
            commit_failures: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            operations_started: Default::default(),
            operations_finished: Default::default(),
            operation_retries: Default::default(),
            connections_open: AtomicU64::new(0),
            connections_refused: Default::default(),
            database_damaged: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
            downloads_resumed: AtomicU64::new(0),
            download_failures: Default::default(),
            link_switches: AtomicU64::new(0),
            hook_runs: Default::default(),
            reconciled: Default::default(),
            foreign_entries: AtomicU64::new(0),
            removals: Default::default(),
            removed_entries: AtomicU64::new(0),
            event_streams_open: AtomicU64::new(0),
            events_lagged: AtomicU64::new(0),
            long_polls_waiting: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, method: &str, pattern: Option<&Arc<str>>, status: u16, took: Duration) {
        let key: RouteKey = (
            method_label(method),
            pattern.filter(|p| !p.is_empty()).cloned(),
        );
        let series = self.http.read().ok().and_then(|map| map.get(&key).cloned());
        let series = match series {
            Some(s) => s,
            None => {
                let Ok(mut map) = self.http.write() else {
                    return;
                };
                map.entry(key)
                    .or_insert_with_key(|(_, pattern)| {
                        Arc::new(RouteSeries {
                            label: route_label(pattern.as_deref()),
                            latency: Histogram::new(),
                            by_status: [const { AtomicU64::new(0) }; STATUS_COUNT],
                        })
                    })
                    .clone()
            }
        };
        series.latency.observe(took);
        if let Some(slot) = status
            .checked_sub(STATUS_MIN)
            .and_then(|i| series.by_status.get(usize::from(i)))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An event stream opens; it closes when the guard drops.
    pub fn event_stream_open(&'static self) -> StreamGuard {
        self.event_streams_open.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self)
    }

    /// A subscriber fell behind and was told so.
    pub fn events_lagged(&self) {
        self.events_lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// A long poll starts waiting; it stops when the guard drops.
    pub fn long_poll_waiting(&'static self) -> WaitingGuard {
        self.long_polls_waiting.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(self)
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, why: Refusal) {
        self.connections_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn downloaded(&self, bytes: u64) {
        self.downloaded_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn download_resumed(&self) {
        self.downloads_resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// `reason` is one of `DOWNLOAD_FAILURES`.
    pub fn download_failed(&self, reason: &str) {
        if let Some(i) = DOWNLOAD_FAILURES.iter().position(|r| *r == reason) {
            self.download_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `active/<name>` was changed (made, repointed, removed or put back).
    pub fn link_switched(&self) {
        self.link_switches.fetch_add(1, Ordering::Relaxed);
    }

    /// `hook` is one of `HOOKS`, `outcome` one of `HOOK_OUTCOMES`.
    pub fn hook_ran(&self, hook: &str, outcome: &str) {
        let h = HOOKS.iter().position(|x| *x == hook);
        let o = HOOK_OUTCOMES.iter().position(|x| *x == outcome);
        if let (Some(h), Some(o)) = (h, o) {
            self.hook_runs[h][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `action` is one of `RECONCILE_ACTIONS`.
    pub fn reconciled(&self, action: &str, n: u64) {
        if let Some(i) = RECONCILE_ACTIONS.iter().position(|a| *a == action) {
            self.reconciled[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Entries under the data directory that the database does not account
    /// for (found at start; left alone).
    pub fn foreign_entries(&self, n: u64) {
        self.foreign_entries.store(n, Ordering::Relaxed);
    }

    /// `outcome` is one of `REMOVAL_OUTCOMES`; `entries` the files and
    /// directories it removed.
    pub fn removal(&self, outcome: &str, entries: u64) {
        if let Some(i) = REMOVAL_OUTCOMES.iter().position(|o| *o == outcome) {
            self.removals[i].fetch_add(1, Ordering::Relaxed);
        }
        self.removed_entries.fetch_add(entries, Ordering::Relaxed);
    }

    pub fn database_damaged(&self) {
        self.database_damaged.store(1, Ordering::Relaxed);
    }

    pub fn auth_failure(&self, code: AuthFailureCode) {
        self.auth_failures[code as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One write transaction of the writer thread, with the jobs it carried.
    pub fn commit(&self, jobs: usize, took: Duration, ok: bool) {
        self.commit_latency.observe(took);
        self.writes.fetch_add(jobs as u64, Ordering::Relaxed);
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn operation_started(&self, kind: OperationKind) {
        self.operations_started[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn operation_finished(&self, kind: OperationKind, state: OperationState) {
        if let Some(i) = FINISHED.iter().position(|s| *s == state) {
            self.operations_finished[kind_index(kind)][i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn operation_retry(&self, kind: OperationKind) {
        self.operation_retries[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// The whole text exposition.
    pub fn render(&self, store: &StoreGauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_http(&mut out);
        self.render_connections(&mut out);
        self.render_auth(&mut out);
        self.render_operations(&mut out, store);
        self.render_store(&mut out);
        render_process(&mut out);
        out
    }

    fn render_http(&self, out: &mut String) {
        let mut series: Vec<(&'static str, Arc<RouteSeries>)> = self
            .http
            .read()
            .map(|m| m.iter().map(|((m, _), s)| (*m, s.clone())).collect())
            .unwrap_or_default();
        series.sort_by(|a, b| (&a.1.label, a.0).cmp(&(&b.1.label, b.0)));

        family(
            out,
            "packd_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route and status; route \"unmatched\" counts those answered before routing (unknown paths, refused keys).",
        );
        for (method, s) in &series {
            let route = escape(&s.label);
            for (i, n) in s.by_status.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = usize::from(STATUS_MIN) + i;
                    let _ = writeln!(
                        out,
                        "packd_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        family(
            out,
            "packd_http_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to its answer, by method and route.",
        );
        for (method, s) in &series {
            let labels = format!("method=\"{method}\",route=\"{}\",", escape(&s.label));
            s.latency
                .render(out, "packd_http_request_duration_seconds", &labels);
        }
    }

    fn render_connections(&self, out: &mut String) {
        single(
            out,
            "packd_connections_open",
            "gauge",
            "HTTP connections open now.",
            self.connections_open.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_event_streams_open",
            "gauge",
            "Event streams (GET /v1/events) open now, against --max-streams.",
            self.event_streams_open.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_event_streams_lagged_total",
            "counter",
            "Times an event stream fell behind the shared ring and was sent a lagged event.",
            self.events_lagged.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_long_polls_waiting",
            "gauge",
            "Requests waiting in GET /v1/operations/{id}?wait=.",
            self.long_polls_waiting.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_rate_limited_total",
            "counter",
            "Requests answered 429 (a key over its limit, or an address after failed authentications).",
            self.rate_limited.load(Ordering::Relaxed),
        );
        family(
            out,
            "packd_connections_refused_total",
            "counter",
            "Connections answered 503 and closed, by the limit they hit: --max-connections (reason \"max_connections\") or --max-connections-per-client (\"per_client\").",
        );
        for why in [Refusal::MaxConnections, Refusal::PerClient] {
            let n = self.connections_refused[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "packd_connections_refused_total{{reason=\"{}\"}} {n}",
                why.as_str()
            );
        }
    }

    fn render_auth(&self, out: &mut String) {
        family(
            out,
            "packd_auth_failures_total",
            "counter",
            "Refused authentications, by the code of the 401.",
        );
        for (code, n) in ["unauthorized", "key_inactive", "key_expired"]
            .iter()
            .zip(&self.auth_failures)
        {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "packd_auth_failures_total{{code=\"{code}\"}} {n}");
        }
    }

    fn render_operations(&self, out: &mut String, store: &StoreGauges) {
        single(
            out,
            "packd_queue_depth",
            "gauge",
            "Operations waiting in the queue (due now or later).",
            store.queue_depth,
        );

        family(
            out,
            "packd_operations",
            "gauge",
            "Operations not yet finished, by kind and state.",
        );
        for kind in KINDS {
            for state in [OperationState::Queued, OperationState::Running] {
                let n = store
                    .active
                    .iter()
                    .find(|(k, s, _)| *k == kind && *s == state)
                    .map_or(0, |(_, _, n)| *n);
                let _ = writeln!(
                    out,
                    "packd_operations{{kind=\"{kind}\",state=\"{state}\"}} {n}"
                );
            }
        }

        family(
            out,
            "packd_operations_started_total",
            "counter",
            "Operations accepted since start, by kind.",
        );
        for (kind, n) in KINDS.iter().zip(&self.operations_started) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "packd_operations_started_total{{kind=\"{kind}\"}} {n}");
        }

        family(
            out,
            "packd_operations_finished_total",
            "counter",
            "Operations finished since start, by kind and final state.",
        );
        for (kind, row) in KINDS.iter().zip(&self.operations_finished) {
            for (state, n) in FINISHED.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "packd_operations_finished_total{{kind=\"{kind}\",state=\"{state}\"}} {n}"
                );
            }
        }

        family(
            out,
            "packd_operation_retries_total",
            "counter",
            "Failed attempts put back in the queue for a retry, by kind.",
        );
        for (kind, n) in KINDS.iter().zip(&self.operation_retries) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "packd_operation_retries_total{{kind=\"{kind}\"}} {n}");
        }
    }

    fn render_store(&self, out: &mut String) {
        family(
            out,
            "packd_store_commit_duration_seconds",
            "histogram",
            "Time to run and durably commit one write transaction (one group commit).",
        );
        self.commit_latency
            .render(out, "packd_store_commit_duration_seconds", "");
        single(
            out,
            "packd_store_writes_total",
            "counter",
            "Writes committed; divided by packd_store_commit_duration_seconds_count, the mean group-commit batch.",
            self.writes.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_store_commit_failures_total",
            "counter",
            "Write transactions that failed (disk full, I/O error).",
            self.commit_failures.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_downloaded_bytes_total",
            "counter",
            "Bytes of artifacts fetched (resumed downloads count only the new bytes).",
            self.downloaded_bytes.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_downloads_resumed_total",
            "counter",
            "Downloads that picked up the bytes an earlier attempt had saved (HTTP Range).",
            self.downloads_resumed.load(Ordering::Relaxed),
        );
        family(
            out,
            "packd_download_failures_total",
            "counter",
            "Failed download attempts, by reason: transient (retried), permanent (failed at once), unpack (the archive), files (the data directory).",
        );
        for (reason, n) in DOWNLOAD_FAILURES.iter().zip(&self.download_failures) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "packd_download_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        single(
            out,
            "packd_link_switches_total",
            "counter",
            "Changes of an active/<name> link: activations, deactivations, and links put back after a failed hook.",
            self.link_switches.load(Ordering::Relaxed),
        );
        family(
            out,
            "packd_hook_runs_total",
            "counter",
            "Runs of the operator's hooks, by hook and outcome.",
        );
        for (hook, runs) in HOOKS.iter().zip(&self.hook_runs) {
            for (outcome, n) in HOOK_OUTCOMES.iter().zip(runs) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "packd_hook_runs_total{{hook=\"{hook}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        family(
            out,
            "packd_reconciled_total",
            "counter",
            "What start-up reconciliation changed under the data directory so that it follows the database, by action.",
        );
        for (action, n) in RECONCILE_ACTIONS.iter().zip(&self.reconciled) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "packd_reconciled_total{{action=\"{action}\"}} {n}");
        }
        single(
            out,
            "packd_data_dir_foreign_entries",
            "gauge",
            "Entries under the data directory's packages/, artifacts/, partial/ and active/ that the database does not account for, found at start: reported, never removed.",
            self.foreign_entries.load(Ordering::Relaxed),
        );
        family(
            out,
            "packd_removals_total",
            "counter",
            "Journaled removals of a deleted or changed package's files, by outcome: done, deferred (a download of that version was in flight), failed (tried again later).",
        );
        for (outcome, n) in REMOVAL_OUTCOMES.iter().zip(&self.removals) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "packd_removals_total{{outcome=\"{outcome}\"}} {n}");
        }
        single(
            out,
            "packd_removed_entries_total",
            "counter",
            "Files and directories removed by journaled removals.",
            self.removed_entries.load(Ordering::Relaxed),
        );
        single(
            out,
            "packd_database_damaged",
            "gauge",
            "1 once damage was met in the database file (writes are then refused and /readyz answers 503; the log says what), else 0.",
            self.database_damaged.load(Ordering::Relaxed),
        );
    }
}

/// The HELP and TYPE lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Standard process metrics, read from `/proc` where there is one.
fn render_process(out: &mut String) {
    family(out, "packd_build_info", "gauge", "The running version.");
    let _ = writeln!(
        out,
        "packd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(rss) = resident_bytes() {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        single(
            out,
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count(),
        );
    }
}

/// Resident set size from `/proc/self/statm` (pages), assuming 4 KiB pages,
/// the page size of every platform packd ships for.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\",");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 100.00305"), "{out}");
    }

    #[test]
    fn routes_are_labelled_by_shape_and_bounded() {
        assert_eq!(
            route_label(Some("/v1/packages/:param0/download")),
            "/v1/packages/{id}/download"
        );
        assert_eq!(route_label(None), "unmatched");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::new();
        let route: Arc<str> = Arc::from("/v1/packages/:param0");
        m.request("GET", Some(&route), 200, Duration::from_millis(1));
        m.request("GET", Some(&route), 200, Duration::from_millis(1));
        m.request("GET", Some(&route), 404, Duration::from_millis(1));
        m.request("GET", None, 404, Duration::from_millis(1));
        m.request("GET", None, 999, Duration::from_millis(1));
        let text = m.render(&StoreGauges::default());
        assert!(text.contains("packd_http_requests_total{method=\"GET\",route=\"/v1/packages/{id}\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("packd_http_requests_total{method=\"GET\",route=\"/v1/packages/{id}\",status=\"404\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "packd_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "packd_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\"} 2\n"
            ),
            "{text}"
        );
    }
}
