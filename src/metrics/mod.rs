//! Process-wide metrics: counters, gauges and histograms in atomics,
//! rendered in the Prometheus text format (version 0.0.4) for
//! `GET /metrics`.
//!
//! One global registry, because the values come from every layer (the edge
//! middleware, the writer thread, the workers, the files) and threading a
//! handle through all of them would buy nothing: a process has one set of
//! metrics. Recording is a few relaxed atomic adds and, for HTTP, one
//! read-locked map lookup; no allocation after a route's first request.
//! Every family is declared once, in `registry!` below (its name, help and
//! kind; labels are enums in `labels.rs`), and renders itself.

pub mod family;
pub mod labels;
mod process;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use self::family::{Counters, Counters2, Family, Histogram, Latency, Value, header};
pub use self::labels::{
    AuthFailureCode, ConnectionRefusal, DownloadFailure, Finished, Hook, HookOutcome,
    ReconcileAction, RefusedDocument, RemovalOutcome, SyncOutcome,
};
use crate::domain::operation::OperationKind;
use crate::domain::operation::OperationState;

/// Declares the registry's families, each with its constructor (name and
/// help), in the order they are rendered: adding a metric is one line here.
macro_rules! registry {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty = $ctor:expr ),* $(,)?) => {
        /// Every family but the per-route HTTP series and the values read
        /// when scraped (the store's gauges, the process).
        pub struct Families {
            $( $(#[$doc])* pub $field: $ty ),*
        }

        impl Families {
            fn new() -> Self {
                Self { $( $field: $ctor ),* }
            }

            fn render(&self, out: &mut String) {
                $( Family::render(&self.$field, out); )*
            }
        }
    };
}

registry! {
    auth_failures: Counters<AuthFailureCode> = Counters::new(
        "packd_auth_failures_total",
        "Refused authentications, by the code of the 401."),
    connections_open: Value = Value::gauge(
        "packd_connections_open",
        "HTTP connections open now."),
    connections_refused: Counters<ConnectionRefusal> = Counters::new(
        "packd_connections_refused_total",
        "Connections answered 503 and closed, by the limit they hit: --max-connections (reason \"max_connections\") or --max-connections-per-client (\"per_client\")."),
    event_streams_open: Value = Value::gauge(
        "packd_event_streams_open",
        "Event streams (GET /v1/events) open now, against --max-streams."),
    events_lagged: Value = Value::counter(
        "packd_event_streams_lagged_total",
        "Times an event stream fell behind the shared ring and was sent a lagged event."),
    long_polls_waiting: Value = Value::gauge(
        "packd_long_polls_waiting",
        "Requests waiting in GET /v1/operations/{id}?wait=."),
    rate_limited: Value = Value::counter(
        "packd_rate_limited_total",
        "Requests answered 429 (a key over its limit, or an address after failed authentications)."),
    operations_started: Counters<OperationKind> = Counters::new(
        "packd_operations_started_total",
        "Operations accepted since start, by kind."),
    operations_finished: Counters2<OperationKind, Finished> = Counters2::new(
        "packd_operations_finished_total",
        "Operations finished since start, by kind and final state."),
    operation_retries: Counters<OperationKind> = Counters::new(
        "packd_operation_retries_total",
        "Failed attempts put back in the queue for a retry, by kind."),
    commit_latency: Latency = Latency::new(
        "packd_store_commit_duration_seconds",
        "Time to run and durably commit one write transaction (one group commit)."),
    writes: Value = Value::counter(
        "packd_store_writes_total",
        "Writes committed; divided by packd_store_commit_duration_seconds_count, the mean group-commit batch."),
    commit_failures: Value = Value::counter(
        "packd_store_commit_failures_total",
        "Write transactions that failed (disk full, I/O error)."),
    downloaded_bytes: Value = Value::counter(
        "packd_downloaded_bytes_total",
        "Bytes of artifacts fetched (resumed downloads count only the new bytes)."),
    downloads_resumed: Value = Value::counter(
        "packd_downloads_resumed_total",
        "Downloads that picked up the bytes an earlier attempt had saved (HTTP Range)."),
    download_failures: Counters<DownloadFailure> = Counters::new(
        "packd_download_failures_total",
        "Failed download attempts, by reason: transient (retried), permanent (failed at once), unpack (the archive), files (the data directory)."),
    link_switches: Value = Value::counter(
        "packd_link_switches_total",
        "Changes of an active/<name> link: activations, deactivations, and links put back after a failed hook."),
    hook_runs: Counters2<Hook, HookOutcome> = Counters2::new(
        "packd_hook_runs_total",
        "Runs of the operator's hooks, by hook and outcome."),
    reconciled: Counters<ReconcileAction> = Counters::new(
        "packd_reconciled_total",
        "What start-up reconciliation changed under the data directory so that it follows the database, by action."),
    foreign_entries: Value = Value::gauge(
        "packd_data_dir_foreign_entries",
        "Entries under the data directory's packages/, artifacts/, partial/ and active/ that the database does not account for, found at start: reported, never removed."),
    removals: Counters<RemovalOutcome> = Counters::new(
        "packd_removals_total",
        "Journaled removals of a deleted or changed package's files, by outcome: done, deferred (a download of that version was in flight), failed (tried again later)."),
    removed_entries: Value = Value::counter(
        "packd_removed_entries_total",
        "Files and directories removed by journaled removals."),
    channel_syncs: Counters<SyncOutcome> = Counters::new(
        "packd_channel_syncs_total",
        "Channel syncs, by outcome: applied (a new sequence), unchanged (the same document), not_modified (304), refused (replay, expired, signature, malformed: nothing applied), failed (the fetch)."),
    channel_documents_refused: Counters<RefusedDocument> = Counters::new(
        "packd_channel_documents_refused_total",
        "Channel documents refused and never applied, by reason."),
    retention_removed: Value = Value::counter(
        "packd_retention_removed_total",
        "Versions whose files retention removed after an activation (--keep-downloaded); the packages stay, created."),
    activation_reverts: Value = Value::counter(
        "packd_activation_reverts_total",
        "Activations reverted because the health check failed during the window."),
    database_damaged: Value = Value::gauge(
        "packd_database_damaged",
        "1 once damage was met in the database file (writes are then refused and /readyz answers 503; the log says what), else 0."),
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

/// Every metric of the process.
pub struct Metrics {
    http: RwLock<HashMap<RouteKey, Arc<RouteSeries>>>,
    families: Families,
}

impl std::ops::Deref for Metrics {
    type Target = Families;

    fn deref(&self) -> &Families {
        &self.families
    }
}

/// Counts a long poll as waiting until dropped.
pub struct WaitingGuard(&'static Metrics);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.long_polls_waiting.dec();
    }
}

/// Counts an event stream as open until dropped.
pub struct StreamGuard(&'static Metrics);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.event_streams_open.dec();
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
    /// Each channel's id and the sequence it applied last.
    pub channel_sequences: Vec<(uuid::Uuid, u64)>,
    /// The data directory's file system: bytes free (to packd) and used.
    pub data_dir: Option<(u64, u64)>,
}

/// Whether a request's time says how fast packd answers: a long poll or
/// an event stream lasts as long as the client asks, and would fill the
/// latency histogram's top bucket with waiting, not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    Yes,
    /// Counted, but its duration is not observed.
    Waited,
}

impl Metrics {
    fn new() -> Self {
        Self {
            http: RwLock::default(),
            families: Families::new(),
        }
    }

    /// Counts one answered request.
    pub fn request(
        &self,
        method: &str,
        pattern: Option<&Arc<str>>,
        status: u16,
        took: Duration,
        timed: Timed,
    ) {
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
                            latency: Histogram::default(),
                            by_status: [const { AtomicU64::new(0) }; STATUS_COUNT],
                        })
                    })
                    .clone()
            }
        };
        if timed == Timed::Yes {
            series.latency.observe(took);
        }
        if let Some(slot) = status
            .checked_sub(STATUS_MIN)
            .and_then(|i| series.by_status.get(usize::from(i)))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An event stream opens; it closes when the guard drops.
    pub fn event_stream_open(&'static self) -> StreamGuard {
        self.event_streams_open.inc();
        StreamGuard(self)
    }

    /// A long poll starts waiting; it stops when the guard drops.
    pub fn long_poll_waiting(&'static self) -> WaitingGuard {
        self.long_polls_waiting.inc();
        WaitingGuard(self)
    }

    /// One write transaction of the writer thread, with the jobs it carried.
    pub fn commit(&self, jobs: usize, took: Duration, ok: bool) {
        self.commit_latency.observe(took);
        self.writes.add(jobs as u64);
        if !ok {
            self.commit_failures.inc();
        }
    }

    pub fn operation_finished(&self, kind: OperationKind, state: OperationState) {
        if let Some(finished) = Finished::of(state) {
            self.operations_finished.inc(kind, finished);
        }
    }

    /// The whole text exposition.
    pub fn render(&self, store: &StoreGauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_http(&mut out);
        self.families.render(&mut out);
        render_store(&mut out, store);
        process::render(&mut out);
        out
    }

    fn render_http(&self, out: &mut String) {
        let mut series: Vec<(&'static str, Arc<RouteSeries>)> = self
            .http
            .read()
            .map(|m| m.iter().map(|((m, _), s)| (*m, s.clone())).collect())
            .unwrap_or_default();
        series.sort_by(|a, b| (&a.1.label, a.0).cmp(&(&b.1.label, b.0)));

        header(
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
        header(
            out,
            "packd_http_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to its answer, by method and route; long polls (?wait=) and event streams are counted but not timed.",
        );
        for (method, s) in &series {
            let labels = format!("method=\"{method}\",route=\"{}\",", escape(&s.label));
            s.latency
                .render_samples(out, "packd_http_request_duration_seconds", &labels);
        }
    }
}

/// The gauges read from the store when scraped.
fn render_store(out: &mut String, store: &StoreGauges) {
    header(
        out,
        "packd_queue_depth",
        "gauge",
        "Operations waiting in the queue (due now or later).",
    );
    let _ = writeln!(out, "packd_queue_depth {}", store.queue_depth);
    header(
        out,
        "packd_operations",
        "gauge",
        "Operations not yet finished, by kind and state.",
    );
    for kind in OperationKind::ALL {
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
    if let Some((free, used)) = store.data_dir {
        header(
            out,
            "packd_data_dir_free_bytes",
            "gauge",
            "Bytes free for packd on the data directory's file system (a download must leave --min-free-space).",
        );
        let _ = writeln!(out, "packd_data_dir_free_bytes {free}");
        header(
            out,
            "packd_data_dir_used_bytes",
            "gauge",
            "Bytes used on the data directory's file system (by everything on it, packd's files among them).",
        );
        let _ = writeln!(out, "packd_data_dir_used_bytes {used}");
    }
    header(
        out,
        "packd_channel_sequence",
        "gauge",
        "The sequence of the document each channel applied last (channels with none applied yet are absent).",
    );
    for (id, sequence) in &store.channel_sequences {
        let _ = writeln!(
            out,
            "packd_channel_sequence{{channel_id=\"{id}\"}} {sequence}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn requests_are_counted_by_route_and_status_and_waits_not_timed() {
        let m = Metrics::new();
        let route: Arc<str> = Arc::from("/v1/packages/:param0");
        m.request(
            "GET",
            Some(&route),
            200,
            Duration::from_millis(1),
            Timed::Yes,
        );
        m.request(
            "GET",
            Some(&route),
            200,
            Duration::from_millis(1),
            Timed::Yes,
        );
        m.request(
            "GET",
            Some(&route),
            404,
            Duration::from_millis(1),
            Timed::Yes,
        );
        m.request("GET", None, 404, Duration::from_millis(1), Timed::Yes);
        m.request("GET", None, 999, Duration::from_millis(1), Timed::Yes);
        let poll: Arc<str> = Arc::from("/v1/operations/:param0");
        m.request(
            "GET",
            Some(&poll),
            200,
            Duration::from_secs(30),
            Timed::Waited,
        );
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
        assert!(text.contains("packd_http_requests_total{method=\"GET\",route=\"/v1/operations/{id}\",status=\"200\"} 1\n"), "{text}");
        assert!(
            text.contains("packd_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/operations/{id}\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn every_family_has_its_help_and_type_once() {
        let text = Metrics::new().render(&StoreGauges::default());
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(seen.insert(name.to_string()), "{name} declared twice");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        assert!(seen.len() > 25, "{seen:?}");
    }
}
