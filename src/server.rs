//! Starting and stopping the service: open the store, bind, announce, serve
//! until SIGTERM or Ctrl-C, drain requests in flight (bounded), close the store.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::api::serve::ServeOptions;
use crate::api::{self, ApiOptions, AppState, Readiness};
use crate::config::{LogFormat, ServeArgs};
use crate::domain::Timestamp;
use crate::domain::key::MIN_SECRET_LEN;
use crate::domain::ownership;
use crate::files::{Budget, Files, Layout, Modes, owner, reconcile, remove};
use crate::metrics;
use crate::notify;
use crate::shutdown::Shutdown;
use crate::store::{Bootstrap, Store, StoreOptions};
use crate::worker::{Executors, QueueConfig, StubConfig, StubExecutor, Syncer, Workers};
use anyhow::Context;

/// Changes the log filter of the running process (SIGHUP).
type SetFilter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;
static LOG_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Sets up logging on standard error, in the chosen format, with a filter
/// a reload can change.
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    // Colours only for a person at a terminal, never in journald or `docker logs`.
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let set: SetFilter;
    match format {
        // The request's or operation's span (request id, method, route;
        // operation, package, attempt) rides along as `span`.
        LogFormat::Json => {
            let builder = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            set = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            builder.try_init()
        }
        LogFormat::Text => {
            let builder = builder.with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            set = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            builder.try_init()
        }
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    let _ = LOG_FILTER.set(set);
    Ok(())
}

/// Replaces the log filter (`--log`) of the running process.
pub fn set_log_filter(filter: &str) -> Result<(), String> {
    let parsed = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    match LOG_FILTER.get() {
        Some(set) => set(parsed),
        None => Err("logging was not set up by packd".into()),
    }
}

/// Resolves on the first SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// How often counted key usage is written to the file.
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often the stored history is pruned: finished operations (past
/// `--operation-retention`), idempotency records (past a day) and audit
/// entries (past `--audit-retention`), in that order.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Makes sure an administrator can get in (README: API keys, Bootstrap).
async fn bootstrap(store: &Store, key: Option<&str>) -> anyhow::Result<()> {
    if let Some(k) = key {
        if k.chars().count() < MIN_SECRET_LEN {
            anyhow::bail!("PACKD_BOOTSTRAP_KEY must be at least {MIN_SECRET_LEN} characters");
        }
        // Clients' headers are trimmed, so such a key could never be sent.
        if k.trim() != k {
            anyhow::bail!(
                "PACKD_BOOTSTRAP_KEY must not start or end with white space (a key sent in a header is trimmed, so it could never be used)"
            );
        }
    }
    match store.bootstrap(key).await? {
        Bootstrap::AdminExists if key.is_some() => tracing::info!(
            "PACKD_BOOTSTRAP_KEY is set but not used: the database already has an active admin key (the variable only makes the first one)"
        ),
        Bootstrap::AdminExists => {}
        Bootstrap::FromEnvironment(id) => {
            tracing::info!(key_id = %id, "PACKD_BOOTSTRAP_KEY is the admin key `bootstrap`");
        }
        Bootstrap::Generated(id, secret) => {
            // Printed once, on stderr, and never logged through tracing.
            let mut err = std::io::stderr().lock();
            writeln!(
                err,
                "packd: no API keys yet, so an admin key was created (id {id}).\n\
                 packd: it is shown only now; store it safely:\n\n    {secret}\n"
            )?;
        }
        Bootstrap::NoAdmin => tracing::warn!(
            "no active admin key: set PACKD_BOOTSTRAP_KEY or run `packd keys create --role admin`"
        ),
    }
    Ok(())
}

/// How long idempotency records are kept: at least the 24 h the OpenAPI
/// description promises for `Idempotency-Key`.
const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(25 * 3600);

fn ago(d: Duration) -> Timestamp {
    Timestamp::now().minus(d)
}

/// Background upkeep: key usage written in batches, old audit entries,
/// finished operations and idempotency records pruned. Both loops end at
/// shutdown (the last usage is written by the shutdown itself).
fn spawn_upkeep(
    store: Store,
    audit_retention: Duration,
    operation_retention: Duration,
    shutdown: &Shutdown,
) {
    let usage_store = store.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(USAGE_FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => return,
            }
            if let Err(e) = usage_store.flush_usage().await {
                tracing::warn!(error = %e, "cannot write key usage; will retry");
            }
        }
    });
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => return,
            }
            match store
                .prune_operations(ago(operation_retention), ago(IDEMPOTENCY_RETENTION))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned finished operations"),
                Err(e) => tracing::warn!(error = %e, "cannot prune operations"),
            }
            match store.prune_audit(ago(audit_retention)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned old audit entries"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
            }
        }
    });
}

/// Files and directories one artifact may unpack to: bounds the inodes a
/// hostile archive can use.
const MAX_UNPACKED_ENTRIES: u64 = 1_000_000;

/// Steps the stub executor takes for an operation (progress moves by 10 %).
const STUB_STEPS: u8 = 10;
/// The longest delay between two attempts of an operation, however many
/// have failed.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(300);

/// Makes the data directory follow the database before any worker runs
/// (`files::reconcile`). A store that cannot be read stops the start: the
/// reconciliation would have nothing to follow.
async fn reconcile_files(store: &Store, layout: &Layout) -> anyhow::Result<()> {
    let packages = store
        .packages_with_files()
        .context("cannot read the packages to reconcile the data directory")?;
    let unfinished = store
        .unfinished_operations()
        .context("cannot read the operations to reconcile the data directory")?;
    let (layout, store) = (layout.clone(), store.clone());
    let report = tokio::task::spawn_blocking(move || {
        let known = |id| store.get_operation(id).is_ok();
        reconcile::reconcile(
            &layout,
            &reconcile::Known {
                packages: &packages,
                unfinished: &unfinished,
                operation: &known,
            },
        )
    })
    .await
    .context("the reconciliation task failed")?;
    if report.changed() > 0 || !report.problems.is_empty() {
        let mut counts: Vec<_> = report.counts.iter().collect();
        counts.sort();
        tracing::info!(
            changed = ?counts,
            problems = report.problems.len(),
            "the data directory was reconciled with the database"
        );
    }
    if !report.foreign.is_empty() {
        const SHOWN: usize = 20;
        for path in report.foreign.iter().take(SHOWN) {
            tracing::warn!(path = %path.display(), "not made by packd, or no longer known to its database: left as it is");
        }
        tracing::warn!(
            entries = report.foreign.len(),
            shown = report.foreign.len().min(SHOWN),
            "the data directory holds entries the database does not account for; packd never removes those (packd_data_dir_foreign_entries)"
        );
    }
    Ok(())
}

/// Pairs the database with the data directory (`domain::ownership`):
/// first use records the pair on both sides; a mismatch stops the start
/// unless `--adopt-data-dir` says to take the directory over.
async fn own_data_dir(
    store: &Store,
    owned: owner::Owned,
    db: &std::path::Path,
    adopt: bool,
) -> anyhow::Result<owner::Owned> {
    let identity = store
        .identity()
        .context("cannot read the database's identity")?;
    let dir_path = owned.layout().root().display().to_string();
    let fresh = uuid::Uuid::now_v7();
    let bind_as = match ownership::judge(&identity, owned.owner.as_ref(), &dir_path, fresh) {
        ownership::Verdict::Match => return Ok(owned),
        ownership::Verdict::Bind(id) => id,
        ownership::Verdict::Mismatch(why) if adopt => {
            tracing::warn!(reason = %why, data_dir = %dir_path, "--adopt-data-dir: the data directory is taken over by this database");
            ownership::adopted(owned.owner.as_ref(), fresh)
        }
        ownership::Verdict::Mismatch(why) => anyhow::bail!(
            "{why}. packd refuses to start: it would make the directory follow this database \
             and remove another one's files. Give each packd its own --db and --data-dir; to \
             take the directory over on purpose (a restored backup, a moved directory), start \
             once with --adopt-data-dir"
        ),
    };
    let db_path = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    // The directory's side first: a crash before the database's commit is
    // finished at the next start (`judge` sees the directory naming it).
    let record = ownership::DirOwner {
        data_dir_id: bind_as,
        database_id: identity.database_id,
        database_path: db_path.display().to_string(),
    };
    let mut owned = owned;
    let owned = tokio::task::spawn_blocking(move || owned.record(&record).map(|()| owned))
        .await?
        .context("cannot write the data directory's owner record")?;
    store
        .bind_data_dir(ownership::Binding {
            data_dir_id: bind_as,
            path: dir_path,
        })
        .await
        .context("cannot record the data directory in the database")?;
    Ok(owned)
}

/// The catalogue as journaled removals ask it, under the place lock.
struct StoreClaims(Store);

impl remove::Claims for StoreClaims {
    fn wanted(
        &self,
        name: &crate::domain::package::PackageName,
        version: &crate::domain::package::PackageVersion,
    ) -> std::io::Result<crate::domain::package::Wanted> {
        self.0
            .files_wanted(name, version)
            .map_err(std::io::Error::other)
    }

    fn digest_named(&self, digest: &crate::domain::source::Sha256) -> std::io::Result<bool> {
        self.0.digest_in_use(digest).map_err(std::io::Error::other)
    }
}

/// How soon a removal that had to wait (a download of that version in
/// flight) or failed is tried again.
const REMOVAL_RETRY: Duration = Duration::from_secs(30);
/// Journaled removals read at once.
const REMOVAL_BATCH: usize = 100;

/// The remover: carries out journaled removals in the background, so a
/// DELETE of a package of 100,000 files answers as soon as it commits.
/// Stops at shutdown (a tree half removed is finished at the next start).
fn spawn_remover(
    store: Store,
    files: Files,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let budget = Budget::unbounded();
    let trip = budget.clone();
    let mut stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.wait().await;
        trip.cancel();
    });
    let claims: Arc<dyn remove::Claims> = Arc::new(StoreClaims(store.clone()));
    tokio::spawn(async move {
        loop {
            // Registered before looking, so a removal journaled meanwhile
            // wakes the next wait.
            let added = store.removals_added().notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let pending = match store.pending_removals(REMOVAL_BATCH) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the removal journal");
                    Vec::new()
                }
            };
            let (mut done, mut waiting) = (0, false);
            for removal in pending.iter().cloned() {
                if budget.check().is_err() {
                    return;
                }
                let id = removal.id;
                let what = format!("{}@{}", removal.name, removal.version);
                match files.remove(removal, claims.clone(), &budget).await {
                    Ok(remove::Outcome::Done { entries }) => {
                        metrics::global()
                            .removals
                            .inc(metrics::RemovalOutcome::Done);
                        metrics::global().removed_entries.add(entries);
                        tracing::info!(package = %what, entries, "removed the files of a deleted or changed package");
                        if let Err(e) = store.finish_removal(id).await {
                            tracing::warn!(error = %e, "cannot record a finished removal; it will be tried again");
                            waiting = true;
                        } else {
                            done += 1;
                        }
                    }
                    Ok(remove::Outcome::Later) => {
                        metrics::global()
                            .removals
                            .inc(metrics::RemovalOutcome::Deferred);
                        waiting = true;
                    }
                    Err(_) if budget.check().is_err() => return,
                    Err(e) => {
                        metrics::global()
                            .removals
                            .inc(metrics::RemovalOutcome::Failed);
                        tracing::warn!(package = %what, error = %e, "cannot remove a package's old files; will try again");
                        waiting = true;
                    }
                }
            }
            if done > 0 && pending.len() == REMOVAL_BATCH {
                continue;
            }
            let retry = if waiting {
                REMOVAL_RETRY
            } else {
                Duration::from_secs(24 * 3600)
            };
            tokio::select! {
                () = &mut added => {}
                () = tokio::time::sleep(retry) => {}
                () = shutdown.wait() => return,
            }
        }
    })
}

/// The service, built and bound but not yet serving: the store open (and
/// bootstrapped, crashed operations recovered), upkeep and workers started,
/// the port bound. `run_until_stopped` serves it. Tests can build one on
/// port 0 in their own process.
pub struct Application {
    store: Store,
    files: Files,
    /// The data directory's lock, held until the store is closed.
    owned: owner::Owned,
    workers: Workers,
    readiness: Readiness,
    listener: tokio::net::TcpListener,
    /// The rate limits, which a reload may change.
    limiter: Arc<api::RateLimiter>,
    args: ServeArgs,
    shutdown: Shutdown,
}

impl Application {
    /// Everything it starts (the workers, upkeep, the remover, the HTTP
    /// server) stops when `shutdown` fires.
    pub async fn build(args: ServeArgs, shutdown: Shutdown) -> anyhow::Result<Application> {
        let modes = Modes::new(args.private_files);
        // The data directory's lock comes first: nothing in the directory is
        // read or changed by a packd that does not hold it.
        let data_dir = args.data_dir.clone();
        let owned = tokio::task::spawn_blocking(move || owner::take(&data_dir, modes))
            .await?
            .with_context(|| {
                format!("cannot use the data directory {}", args.data_dir.display())
            })?;
        let store = Store::open(
            &args.db,
            &StoreOptions {
                cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
            },
        )?;
        let owned = own_data_dir(&store, owned, &args.db, args.adopt_data_dir).await?;
        let (owned, prepared) = tokio::task::spawn_blocking(move || {
            let prepared = owned.prepare(modes);
            (owned, prepared)
        })
        .await?;
        for warning in prepared
            .with_context(|| format!("cannot use the data directory {}", args.data_dir.display()))?
        {
            tracing::warn!("{warning}");
        }
        bootstrap(&store, args.bootstrap_key.as_deref()).await?;
        let layout = owned.layout().clone();
        let fetcher = crate::files::fetch::Fetcher::new(&crate::files::fetch::FetchSettings {
            connect_timeout: args.connect_timeout,
            read_timeout: args.read_timeout,
            download_timeout: args.download_timeout,
            max_bytes: args.max_download_bytes,
            ca_file: args.ca_file.clone(),
            proxy: args.proxy.clone(),
        })?;
        let recovered = store.recover_operations().await?;
        if recovered > 0 {
            tracing::info!(
                operations = recovered,
                "requeued operations left running by the last stop"
            );
        }
        reconcile_files(&store, &layout).await?;
        spawn_upkeep(
            store.clone(),
            args.audit_retention,
            args.operation_retention,
            &shutdown,
        );
        let files = Files::new(
            layout,
            modes,
            fetcher,
            crate::files::unpack::Limits {
                max_bytes: args.max_unpacked_bytes,
                max_entries: MAX_UNPACKED_ENTRIES,
            },
            Some(args.unpack_timeout),
            crate::files::hook::Hooks::of(&args),
            crate::trust::Trust::new(args.trusted_keys.clone()),
        )
        .with_floor(args.min_free_space);
        store.set_keep_downloaded(args.keep_downloaded);
        let workers = Workers::start(
            store.clone(),
            Arc::new(Executors {
                stub: StubExecutor {
                    config: StubConfig {
                        download: args.download_duration,
                        activate: args.activate_duration,
                        deactivate: args.deactivate_duration,
                        failure_rate: args.stub_failure_rate,
                        steps: STUB_STEPS,
                    },
                },
                files: files.clone(),
                syncer: Syncer {
                    store: store.clone(),
                    fetcher: files.fetcher.clone(),
                    trust: files.trust.clone(),
                    host_id: store.identity()?.database_id,
                },
            }),
            QueueConfig {
                workers: args.workers,
                max_attempts: args.max_attempts,
                retry_base: args.retry_delay,
                retry_max: RETRY_DELAY_MAX,
            },
            shutdown.clone(),
        );
        tokio::spawn(crate::worker::schedule::run(
            store.clone(),
            shutdown.clone(),
        ));
        let readiness = Readiness::new(workers.liveness(), store.damage());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // Connections wait in the listen backlog until `run_until_stopped`
        // accepts them, so nobody can see it ready before it serves.
        readiness.set_serving(true);
        Ok(Application {
            store,
            files,
            owned,
            workers,
            readiness,
            listener,
            limiter: Arc::new(api::RateLimiter::new(
                args.rate_limit,
                args.auth_failure_burst,
            )),
            args,
            shutdown,
        })
    }

    /// Where it listens (the real port when asked for port 0).
    pub fn local_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        self.listener
            .local_addr()
            .context("the listener has no address")
    }

    /// Serves until the shutdown fires, then drains requests in flight
    /// (bounded) while the workers stop at their next step, writes the key
    /// usage and closes the store. Readiness goes off as shutdown begins.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            store,
            files,
            owned,
            workers,
            readiness,
            listener,
            limiter,
            args,
            shutdown,
        } = self;
        let remover = spawn_remover(store.clone(), files.clone(), shutdown.clone());
        let app = api::app(
            AppState {
                store: store.clone(),
                readiness: readiness.clone(),
                shutdown: shutdown.clone(),
                layout: Some(files.layout.clone()),
                trust: files.trust.clone(),
                limiter: limiter.clone(),
            },
            &ApiOptions {
                cors_origins: args.cors_origins.clone(),
                allow_query_key: args.allow_query_key,
                key_ttl: args.key_ttl,
                max_waiting: args.max_waiting,
                allow_file_sources: args.allow_file_sources,
                max_streams: args.max_streams,
                event_heartbeat: args.event_heartbeat,
            },
        );
        let mut stopping = shutdown.clone();
        let unready = readiness.clone();
        tokio::spawn(async move {
            stopping.wait().await;
            unready.set_serving(false);
        });
        api::serve::run(
            listener,
            app,
            &ServeOptions {
                max_connections: args.max_connections,
                max_per_client: args.max_connections_per_client,
                header_timeout: args.header_timeout,
                http2: args.http2,
                shutdown_timeout: args.shutdown_timeout,
            },
            shutdown,
        )
        .await
        .context("the HTTP server failed")?;
        // Workers stop at their next step and put their operations back in
        // the queue with the progress saved so far.
        workers.stopped().await;
        // A removal in progress stops at its next entry.
        let _ = remover.await;
        if let Err(e) = store.flush_usage().await {
            tracing::warn!(error = %e, "cannot write key usage at shutdown");
        }
        store.close();
        // The data directory is let go of last.
        drop(owned);
        Ok(())
    }
}

/// Runs the service until SIGTERM or Ctrl-C. `release_memory` gives the
/// allocator's free pages back to the system (the binary's allocator is
/// its business): once it serves, and whenever a worker falls idle after
/// work.
pub async fn serve(args: ServeArgs, release_memory: fn()) -> anyhow::Result<()> {
    let db = args.db.clone();
    crate::worker::when_idle(release_memory);
    let (trigger, shutdown) = Shutdown::new();
    let application = Application::build(args, shutdown.clone()).await?;
    let local = application.local_addr()?;
    tracing::info!(
        listen = %local,
        db = %db.display(),
        version = env!("CARGO_PKG_VERSION"),
        "packd started"
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        notify::notify("STOPPING=1\nSTATUS=draining requests and saving operations");
        trigger.fire();
    });
    match crate::reload::Reloader::new(crate::reload::Live {
        trust: application.files.trust.clone(),
        hooks: application.files.hooks.clone(),
        limiter: application.limiter.clone(),
        store: application.store.clone(),
        floor: application.files.floor.clone(),
    }) {
        Some(reloader) => crate::reload::spawn(reloader),
        None => tracing::warn!("no command line to read again: SIGHUP will not reload"),
    }
    let running = tokio::spawn(application.run_until_stopped());
    // A plain line on stdout for people and scripts (tests read the port from it).
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "packd listening on http://{local} (explorer: http://{local}/docs, database: {})",
        db.display()
    )?;
    out.flush()?;
    drop(out);
    release_memory();
    notify::notify(&format!("READY=1\nSTATUS=listening on {local}"));
    if let Some(every) = notify::watchdog_interval() {
        // Sent from the async runtime, so a wedged runtime stops the pings and
        // systemd restarts the service.
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => notify::notify("WATCHDOG=1"),
                    () = stop.wait() => return,
                }
            }
        });
    }
    running.await.context("the server task failed")??;
    tracing::info!("packd stopped");
    Ok(())
}
