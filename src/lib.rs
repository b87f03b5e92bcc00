//! packd: a self-hosted service for managing software packages.
//!
//! A tour, from the outside in:
//!
//! - [`config`]: every command-line flag and its `PACKD_*` environment
//!   twin, and the configuration file they rank above; [`reload`] reads
//!   them again on SIGHUP and applies what can change live.
//! - [`offline`]: the offline commands (`packd keys ... --db`, `packd
//!   check`, `packd backup --db`, `packd dev seed`) on the database file.
//! - [`client`]: the command-line client (`packd pkg`, `packd op`, `packd
//!   keys`, `packd backup`, `packd healthcheck`) over the HTTP API.
//! - [`server`]: starts and stops the service: opens the store, binds the
//!   socket, serves until SIGTERM or Ctrl-C, then drains and closes;
//!   [`notify`] tells systemd when it is ready and when it stops;
//!   [`shutdown`] is the signal every long-lived task listens for.
//! - [`api`]: the only module that knows HTTP: routes, the OpenAPI
//!   description, request ids, logging, and every error as RFC 9457 problem+json.
//! - [`store`]: the only module that knows redb and the byte encoding; one
//!   writer thread batches writes into transactions (group commit).
//! - [`worker`]: the task queue's workers and the `Executor` trait (with the
//!   stub executor) that does the work of an operation; [`liveness`]
//!   counts them for readiness.
//! - [`files`]: the only module that touches the data directory: its lock
//!   and owner record, fetch, unpack, the `active/<name>` links, hooks,
//!   journaled removals, start-up reconciliation; all on blocking threads
//!   under a cancellable budget.
//! - [`metrics`]: process-wide counters and histograms for `GET /metrics`.
//! - [`durable`]: syncs and replace-by-rename, shared by the store and the
//!   data directory.
//! - [`tls`]: the rustls settings of every HTTPS client packd runs (artifact
//!   downloads, the command-line client).
//! - [`trust`]: the publisher keys packd trusts and the minisign checks a
//!   download's signature passes; `packd keygen` and `packd sign`.
//! - [`domain`]: pure rules (names, versions, statuses, transitions), no I/O.

pub mod api;
pub mod client;
pub mod config;
pub mod domain;
pub mod durable;
pub mod files;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod offline;
pub mod publish;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod trust;
pub mod worker;
