//! The health window's file work: one run of `--health-check` for a new
//! version (like a hook: no shell, a clean environment, its own process
//! group, a deadline), and the revert when a run fails: `active/<name>`
//! back to the version active before (its activate hook run again), or
//! removed with the deactivate hook when there was none. The timing of
//! the window is the worker's.

use super::activate;
use super::budget::{Budget, run_blocking};
use super::hook::{Health, HookError};
use super::switch::SwitchJob;
use super::{FileError, Files, lost};
use crate::metrics::family::Label;
use crate::metrics::{self, Hook};

impl Files {
    /// One run of the health check of `job`'s new version.
    pub async fn check_health(
        &self,
        job: &SwitchJob<'_>,
        health: &Health,
        budget: &Budget,
    ) -> Result<(), HookError> {
        let package = job.package;
        let previous = job
            .replaces
            .map(|p| p.version.to_string())
            .unwrap_or_default();
        let vars = self.hook_vars(job.operation_id, package, Hook::Health.as_str(), previous);
        let dir = self.layout.package(&package.name, &package.version);
        self.run_hook(
            Hook::Health,
            &health.program,
            &vars,
            &dir,
            health.timeout,
            budget.ended(),
            job.operation_id,
        )
        .await
    }

    /// Undoes `job`'s activation: the link back to the version it replaced
    /// and that version's activate hook, or (none, or one without files)
    /// the link removed and the deactivate hook. A hook that fails here is
    /// reported in the returned text, not retried: the revert itself is
    /// done once the link is back.
    pub async fn revert(&self, job: &SwitchJob<'_>) -> Result<Option<String>, FileError> {
        metrics::global().activation_reverts.inc();
        let package = job.package;
        let back_to = job
            .replaces
            .filter(|p| p.source.is_some() && self.layout.package(&p.name, &p.version).is_dir());
        let (layout, name, version) = (
            self.layout.clone(),
            package.name.clone(),
            package.version.clone(),
        );
        let to = back_to.map(|p| p.version.clone());
        run_blocking(&Budget::unbounded(), move |_| match &to {
            Some(previous) => activate::point(&layout, &name, previous).map(drop),
            None => activate::remove(&layout, &name, &version).map(drop),
        })
        .await
        .map_err(lost)?
        .map_err(super::switch::link_failure)?;
        metrics::global().link_switches.inc();
        let hooks = self.hooks.current();
        let (program, which, vars, cwd) = match back_to {
            Some(previous) => (
                hooks.activate.as_ref(),
                Hook::Activate,
                self.hook_vars(
                    job.operation_id,
                    previous,
                    Hook::Activate.as_str(),
                    package.version.to_string(),
                ),
                self.layout.package(&previous.name, &previous.version),
            ),
            None => (
                hooks.deactivate.as_ref(),
                Hook::Deactivate,
                self.hook_vars(
                    job.operation_id,
                    package,
                    Hook::Deactivate.as_str(),
                    package.version.to_string(),
                ),
                self.layout.root().to_path_buf(),
            ),
        };
        tracing::warn!(
            name = %package.name,
            back_to = back_to.map(|p| p.version.to_string()).unwrap_or_else(|| "nothing".into()),
            "the health check failed: reverting the activation"
        );
        let Some(program) = program else {
            return Ok(None);
        };
        // A revert runs to its end: nothing may leave it half done.
        let ran = self
            .run_hook(
                which,
                program,
                &vars,
                &cwd,
                hooks.timeout,
                std::future::pending::<()>(),
                job.operation_id,
            )
            .await;
        Ok(ran
            .err()
            .map(|e| format!("the {} hook of the revert: {e}", which.as_str())))
    }
}
