//! Activation and deactivation of a package with files: change
//! `active/<name>` (`activate.rs`), run the operator's hook (`hook.rs`),
//! put the link back if the hook fails, and put it right if the hook
//! changed it. The status follows in the transaction that records the
//! success.

use uuid::Uuid;

use super::activate::{self, LinkError, Previous};
use super::budget::{Budget, run_blocking};
use super::hook::{self, HookError};
use super::{FileError, Files, Reason, lost};
use crate::domain::package::{Package, PackageName};
use crate::metrics::family::Label;
use crate::metrics::{self, Hook, HookOutcome};

/// One activation or deactivation.
pub struct SwitchJob<'a> {
    pub operation_id: Uuid,
    pub package: &'a Package,
    pub activating: bool,
    /// For an activation: the version active before it, if any.
    pub replaces: Option<&'a Package>,
}

impl Files {
    /// Changes the link, runs the hook, and puts the link back if the hook
    /// fails (or a stop ends it).
    pub async fn switch(&self, job: &SwitchJob<'_>, budget: &Budget) -> Result<(), FileError> {
        let package = job.package;
        let dir = self.layout.package(&package.name, &package.version);
        let activating = job.activating;
        let (layout, name, version) = (
            self.layout.clone(),
            package.name.clone(),
            package.version.clone(),
        );
        let changed = run_blocking(budget, move |_| {
            if activating && !dir.is_dir() {
                return Err(LinkError::Missing(dir));
            }
            let previous = if activating {
                activate::point(&layout, &name, &version)
            } else {
                activate::remove(&layout, &name, &version)
            }?;
            let now = activate::read(&layout.active(&name))?;
            Ok((previous, now))
        })
        .await
        .map_err(lost)?
        .map_err(link_failure)?;
        let (previous, set) = changed;
        metrics::global().link_switches.inc();
        let hooks = self.hooks.current();
        let (hook, which) = if activating {
            (hooks.activate.as_ref(), Hook::Activate)
        } else {
            (hooks.deactivate.as_ref(), Hook::Deactivate)
        };
        let label = which.as_str();
        let Some(program) = hook else {
            return Ok(());
        };
        let dir = self.layout.package(&package.name, &package.version);
        let previous_version = if activating {
            job.replaces
                .map(|p| p.version.to_string())
                .unwrap_or_default()
        } else {
            package.version.to_string()
        };
        let vars = self.hook_vars(job.operation_id, package, label, previous_version);
        // The package's directory for an activation; the data directory for a
        // deactivation, whose files a hook should not rely on.
        let cwd = if activating {
            dir
        } else {
            self.layout.root().to_path_buf()
        };
        tracing::info!(hook = %program.display(), "running the {label} hook");
        let ran = self
            .run_hook(
                which,
                program,
                &vars,
                &cwd,
                hooks.timeout,
                budget.ended(),
                job.operation_id,
            )
            .await;
        match ran {
            Ok(()) => {
                self.keep_link(&package.name, set, label).await?;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "the {label} hook did not succeed; putting the link back");
                self.put_back(&package.name, previous).await?;
                match error {
                    HookError::Stopped => Err(FileError::Stopped),
                    other => Err(FileError::Retry(format!("the {label} hook: {other}"))),
                }
            }
        }
    }

    /// Runs one hook (or the health check) of an operation until it ends
    /// or `stop` comes, in a process group written down for the sweep after
    /// a crash, and counts its outcome.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_hook<T>(
        &self,
        which: Hook,
        program: &std::path::Path,
        vars: &[(&'static str, String)],
        cwd: &std::path::Path,
        timeout: std::time::Duration,
        stop: impl std::future::Future<Output = T>,
        operation_id: Uuid,
    ) -> Result<(), HookError> {
        let ran = hook::run(
            program,
            vars,
            cwd,
            timeout,
            async {
                stop.await;
            },
            Some(self.layout.hook_record(operation_id)),
        )
        .await;
        let outcome = ran
            .as_ref()
            .map_or_else(HookError::outcome, |()| HookOutcome::Succeeded);
        metrics::global().hook_runs.inc(which, outcome);
        ran
    }

    /// What a hook (or the health check) is told about the package.
    pub(super) fn hook_vars(
        &self,
        operation_id: Uuid,
        package: &Package,
        kind: &str,
        previous_version: String,
    ) -> Vec<(&'static str, String)> {
        let dir = self.layout.package(&package.name, &package.version);
        vec![
            ("PACKD_OPERATION_ID", operation_id.to_string()),
            ("PACKD_OPERATION_KIND", kind.to_string()),
            ("PACKD_PACKAGE_ID", package.id.to_string()),
            ("PACKD_PACKAGE_NAME", package.name.to_string()),
            ("PACKD_PACKAGE_VERSION", package.version.to_string()),
            ("PACKD_PACKAGE_PATH", dir.display().to_string()),
            ("PACKD_PREVIOUS_VERSION", previous_version),
            (
                "PACKD_ACTIVE_LINK",
                self.layout.active(&package.name).display().to_string(),
            ),
        ]
    }

    /// After a hook that succeeded: the link is what packd set, or is put
    /// back to it (a hook that repoints `active/<name>` itself would leave
    /// it disagreeing with the database).
    async fn keep_link(
        &self,
        name: &PackageName,
        set: Option<std::path::PathBuf>,
        label: &'static str,
    ) -> Result<(), FileError> {
        let link = self.layout.active(name);
        let shown = link.display().to_string();
        let repaired = run_blocking(&Budget::unbounded(), move |_| -> Result<bool, LinkError> {
            if activate::read(&link)? == set {
                return Ok(false);
            }
            activate::set(&link, set.as_deref())?;
            Ok(true)
        })
        .await
        .map_err(lost)?
        .map_err(link_failure)?;
        if repaired {
            metrics::global().link_switches.inc();
            tracing::warn!(
                link = %shown,
                "the {label} hook changed the link; it was put back as packd set it (hooks must not change active/<name>)"
            );
        }
        Ok(())
    }

    async fn put_back(&self, name: &PackageName, previous: Previous) -> Result<(), FileError> {
        let (layout, name) = (self.layout.clone(), name.clone());
        run_blocking(&Budget::unbounded(), move |_| {
            activate::restore(&layout, &name, &previous)
        })
        .await
        .map_err(lost)?
        .map_err(link_failure)?;
        metrics::global().link_switches.inc();
        Ok(())
    }

    /// Removes `active/<name>`, whatever it points at: the version now
    /// active has no files. Says whether there was a link.
    pub async fn unlink_name(&self, name: &PackageName) -> Result<bool, FileError> {
        let link = self.layout.active(name);
        let removed = run_blocking(&Budget::unbounded(), move |_| {
            match activate::read(&link)? {
                Some(_) => activate::set(&link, None).map(|()| true),
                None => Ok(false),
            }
        })
        .await
        .map_err(lost)?
        .map_err(link_failure)?;
        if removed {
            metrics::global().link_switches.inc();
        }
        Ok(removed)
    }
}

pub(super) fn link_failure(e: LinkError) -> FileError {
    match e {
        LinkError::NotALink(_) | LinkError::Missing(_) => {
            FileError::fatal(Reason::Files, e.to_string())
        }
        LinkError::Io { .. } => FileError::Retry(e.to_string()),
    }
}
