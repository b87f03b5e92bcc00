//! Starting and stopping the service: open the store, bind, announce, serve
//! until SIGTERM or Ctrl-C, drain requests in flight (bounded), close the store.

use std::io::Write;

use anyhow::Context;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};

use crate::api::{self, ApiOptions, AppState, Readiness};
use crate::config::{LogFormat, ServeArgs};
use crate::store::{Store, StoreOptions};

/// Sets up logging on standard error, in the chosen format.
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
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

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(
        &args.db,
        &StoreOptions {
            cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        },
    )?;
    let readiness = Readiness::default();
    let state = AppState {
        store: store.clone(),
        readiness: readiness.clone(),
    };
    let app = api::app(
        state,
        &ApiOptions {
            cors_origins: args.cors_origins.clone(),
        },
    );

    let acceptor = TcpListener::bind(args.listen)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the listener has no address")?;

    readiness.set(true);
    tracing::info!(
        listen = %local,
        db = %args.db.display(),
        version = env!("CARGO_PKG_VERSION"),
        "packd started"
    );
    // A plain line on stdout for people and scripts (tests read the port from it).
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "packd listening on http://{local} (explorer: http://{local}/docs, database: {})",
        args.db.display()
    )?;
    out.flush()?;
    drop(out);

    let ready = readiness.clone();
    let signal = async move {
        shutdown_signal().await;
        ready.set(false);
    };
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, signal, Some(args.shutdown_timeout))
        .await
        .context("the HTTP server failed")?;

    store.close();
    tracing::info!("packd stopped");
    Ok(())
}
