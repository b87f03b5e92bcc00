//! SIGHUP: the configuration (flags, environment, `--config` file) read
//! again, and what can change live applied: the trusted keys, the hooks
//! and their timeout, the health check and its timing, retention, the
//! free-space floor, the log filter, the rate limits. Anything else that changed is
//! logged as needing a restart. A file that fails to parse changes
//! nothing, and says so. Serving never stops for a reload.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use crate::api::RateLimiter;
use crate::config::file::{self, Settings};
use crate::files::hook::{Hooks, SharedHooks};
use crate::trust::Trust;

/// What a reload can change in the running process.
pub struct Live {
    pub trust: Trust,
    pub hooks: SharedHooks,
    pub limiter: Arc<RateLimiter>,
    pub store: crate::store::Store,
    pub floor: crate::files::space::SharedFloor,
}

/// What a reload may change, and what the process runs with now.
pub struct Reloader {
    live: Live,
    now: BTreeMap<String, Vec<OsString>>,
}

/// The settings a reload applies; the rest need a restart.
const LIVE: [&str; 13] = [
    "trusted_keys",
    "hook_activate",
    "hook_deactivate",
    "hook_timeout",
    "health_check",
    "health_window",
    "health_interval",
    "health_timeout",
    "keep_downloaded",
    "min_free_space",
    "log",
    "rate_limit",
    "auth_failure_burst",
];

impl Reloader {
    /// `None` when the process has no command line to read again.
    pub fn new(live: Live) -> Option<Reloader> {
        let Settings { raw, .. } = file::started_with()?;
        Some(Reloader { live, now: raw })
    }

    /// Reads the settings again and applies what changed; returns the keys
    /// applied and those that need a restart.
    pub fn reload(&mut self) -> Result<(Vec<String>, Vec<String>), String> {
        let Settings { serve, raw } = file::reread().ok_or("no command line to read again")??;
        let mut keys: Vec<&String> = raw.keys().chain(self.now.keys()).collect();
        keys.sort();
        keys.dedup();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| raw.get(*k) != self.now.get(*k))
            .cloned()
            .collect();
        // The log filter first: the one live setting that can still be
        // refused here (the others were checked by their parsers).
        if changed.iter().any(|k| k == "log") {
            crate::server::set_log_filter(&serve.log)?;
        }
        if changed.iter().any(|k| k == "trusted_keys") {
            self.live.trust.replace(serve.trusted_keys.clone());
        }
        if changed
            .iter()
            .any(|k| k.starts_with("hook_") || k.starts_with("health_"))
        {
            self.live.hooks.replace(Hooks::of(&serve));
        }
        if changed.iter().any(|k| k == "keep_downloaded") {
            self.live.store.set_keep_downloaded(serve.keep_downloaded);
        }
        if changed.iter().any(|k| k == "min_free_space") {
            self.live.floor.replace(serve.min_free_space);
        }
        if changed
            .iter()
            .any(|k| k == "rate_limit" || k == "auth_failure_burst")
        {
            self.live
                .limiter
                .set(serve.rate_limit, serve.auth_failure_burst);
        }
        let (applied, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| LIVE.contains(&k.as_str()));
        // What needs a restart is remembered as it runs, not as the file
        // says: the next reload reports it again.
        for key in &applied {
            match raw.get(key) {
                Some(v) => self.now.insert(key.clone(), v.clone()),
                None => self.now.remove(key),
            };
        }
        Ok((applied, restart))
    }
}

/// Reloads on every SIGHUP until the process ends.
pub fn spawn(mut reloader: Reloader) {
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the configuration is read at start only");
            return;
        };
        while hangups.recv().await.is_some() {
            // Off the async threads: it reads files (the configuration,
            // key files).
            let done = tokio::task::block_in_place(|| reloader.reload());
            match done {
                Ok((applied, restart)) => tracing::info!(
                    applied = ?applied,
                    needs_restart = ?restart,
                    "SIGHUP: the configuration was read again"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the configuration was not reloaded; nothing changed"
                ),
            }
        }
    });
}
