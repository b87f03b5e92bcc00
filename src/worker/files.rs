//! The executor that does real work for packages with a source:
//!
//! - a download fetches the artifact into `partial/` (resuming what an
//!   earlier attempt saved), verifies it, moves it into `artifacts/sha256/`,
//!   and unpacks it into `packages/<name>/<version>/`; a digest already
//!   stored is not fetched again;
//! - an activation points `active/<name>` at the version and runs the
//!   activate hook; a deactivation removes the link (if it points at this
//!   version) and runs the deactivate hook. A hook that fails puts the link
//!   back as it was.
//!
//! Packages without a source keep the stub's simulated steps; activating
//! one removes the name's link, since the version now in use has no files.

use std::path::Path;

use crate::domain::operation::Transfer;
use crate::domain::package::OperationKind;
use crate::domain::source::Source;
use crate::durable::sync_directory;
use crate::files::Layout;
use crate::files::activate::{self, LinkError, Previous};
use crate::files::fetch::{FetchError, Fetcher};
use crate::files::hook::{self, HookError, Hooks};
use crate::files::layout::{PUBLIC_DIR, create_dir};
use crate::files::unpack::{self, Format, Limits, UnpackError};
use crate::metrics;

use super::executor::{ExecError, Executor, Steps, StubExecutor, Work};

/// Real work where there is a source, the stub elsewhere.
pub struct Executors {
    pub stub: StubExecutor,
    pub files: FileWork,
}

/// What real downloads and activations need.
pub struct FileWork {
    pub layout: Layout,
    pub fetcher: Fetcher,
    pub unpack: Limits,
    pub hooks: Hooks,
}

impl Executor for Executors {
    async fn execute<S: Steps>(&self, work: Work, steps: &mut S) -> Result<(), ExecError> {
        match (work.kind, work.package.source.clone()) {
            (OperationKind::Download, Some(source)) => {
                self.files.download(work, source, steps).await
            }
            (OperationKind::Activate | OperationKind::Deactivate, Some(_)) => {
                self.files.switch(work, steps).await
            }
            (OperationKind::Activate, None) => {
                let name = work.package.name.clone();
                self.stub.execute(work, steps).await?;
                self.files.unlink_name(&name).await
            }
            _ => self.stub.execute(work, steps).await,
        }
    }
}

impl FileWork {
    async fn download<S: Steps>(
        &self,
        work: Work,
        source: Source,
        steps: &mut S,
    ) -> Result<(), ExecError> {
        let artifact = self.layout.artifact(&source.sha256());
        if artifact.is_file() {
            tracing::info!(digest = %source.sha256(), "artifact already stored; not fetched again");
            let size = std::fs::metadata(&artifact).map(|m| m.len()).ok();
            let whole = Transfer {
                bytes_done: size,
                bytes_total: size,
                validator: None,
            };
            steps.checkpoint(work.progress, whole).await?;
        } else {
            let partial = self.layout.partial(work.operation_id);
            let fetched = self.fetch(&work, &source, &partial, steps).await;
            match fetched {
                Ok(()) => {}
                // A partial is kept only for a resume after a restart or a
                // retry; a cancel or a fault a retry cannot mend removes it.
                Err(ExecError::Stopped) if steps.shutting_down() => return Err(ExecError::Stopped),
                Err(e @ ExecError::Failed(_)) if !work.last_attempt => return Err(e),
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            }
            std::fs::rename(&partial, &artifact)
                .map_err(|e| ExecError::Failed(format!("cannot store the artifact: {e}")))?;
            sync_directory(&artifact);
        }
        self.install(&work, &source, &artifact).await
    }

    async fn fetch<S: Steps>(
        &self,
        work: &Work,
        source: &Source,
        partial: &Path,
        steps: &mut S,
    ) -> Result<(), ExecError> {
        let mut download = self
            .fetcher
            .start(source, partial, &work.transfer)
            .await
            .map_err(failure)?;
        if download.resumed() {
            metrics::global().download_resumed();
            tracing::info!(
                from = download.checkpoint().bytes_done.unwrap_or(0),
                "download resumed"
            );
        }
        let mut counted = download.checkpoint().bytes_done.unwrap_or(0);
        loop {
            let next = tokio::select! {
                next = download.advance() => next,
                () = steps.stopping() => return Err(ExecError::Stopped),
            };
            let checkpoint = download.checkpoint();
            let done = checkpoint.bytes_done.unwrap_or(0);
            metrics::global().downloaded(done.saturating_sub(counted));
            counted = done;
            match next.map_err(failure)? {
                Some(checkpoint) => {
                    let progress = match checkpoint.bytes_total {
                        // 100 % is written by the commit that finishes it.
                        Some(total) if total > 0 => (done.saturating_mul(99) / total).min(99) as u8,
                        _ => work.progress,
                    };
                    steps.checkpoint(progress, checkpoint).await?;
                }
                None => break,
            }
        }
        let mut whole = download.checkpoint();
        whole.bytes_total = whole.bytes_done;
        download.verify().map_err(failure)?;
        // The completion records what was fetched in all.
        steps.checkpoint(99, whole).await?;
        Ok(())
    }

    /// Unpacks the artifact beside the package's directory and renames it
    /// into place; a copy an earlier attempt left is replaced.
    async fn install(
        &self,
        work: &Work,
        source: &Source,
        artifact: &Path,
    ) -> Result<(), ExecError> {
        let name = &work.package.name;
        let version = &work.package.version;
        let versions = self.layout.package_versions(name);
        let staging = self.layout.staging(name, version, work.operation_id);
        let target = self.layout.package(name, version);
        let format = Format::of_url(source.url());
        let limits = self.unpack;
        let artifact = artifact.to_path_buf();
        let unpacked = tokio::task::spawn_blocking(move || -> Result<(), UnpackError> {
            let _ = std::fs::remove_dir_all(&staging);
            create_dir(&versions, PUBLIC_DIR)?;
            crate::files::layout::set_mode(&versions, PUBLIC_DIR)?;
            if let Err(e) = unpack::unpack(
                std::fs::File::open(&artifact)?,
                &format,
                &staging,
                limits,
                unpack::Modes::PUBLIC,
                &crate::files::budget::Budget::unbounded(),
            ) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
            if target.exists() {
                let old = staging.with_extension("replaced");
                std::fs::rename(&target, &old)?;
                let _ = std::fs::remove_dir_all(&old);
            }
            std::fs::rename(&staging, &target)?;
            sync_directory(&target);
            Ok(())
        })
        .await
        .map_err(|e| ExecError::Failed(format!("the unpacking task failed: {e}")))?;
        unpacked.map_err(|e| {
            metrics::global().download_failed("unpack");
            ExecError::Fatal(e.to_string())
        })
    }
}

impl FileWork {
    /// Activation or deactivation of a package with files: change the link,
    /// run the hook, and put the link back if the hook fails. The status
    /// follows in the transaction that records the success.
    async fn switch<S: Steps>(&self, work: Work, steps: &mut S) -> Result<(), ExecError> {
        let package = &work.package;
        let dir = self.layout.package(&package.name, &package.version);
        let activating = work.kind == OperationKind::Activate;
        if activating && !dir.is_dir() {
            return Err(ExecError::Fatal(format!(
                "the package's files are missing from {}; download it again (deactivate it, \
                 edit or re-create it, then download)",
                dir.display()
            )));
        }
        let layout = self.layout.clone();
        let (name, version) = (package.name.clone(), package.version.clone());
        let previous = blocking(move || {
            if activating {
                activate::point(&layout, &name, &version)
            } else {
                activate::remove(&layout, &name, &version)
            }
        })
        .await?;
        metrics::global().link_switched();
        let (hook, label) = if activating {
            (self.hooks.activate.as_ref(), "activate")
        } else {
            (self.hooks.deactivate.as_ref(), "deactivate")
        };
        let Some(program) = hook else {
            return Ok(());
        };
        let previous_version = if activating {
            work.replaces
                .as_ref()
                .map(|p| p.version.to_string())
                .unwrap_or_default()
        } else {
            package.version.to_string()
        };
        let vars = [
            ("PACKD_OPERATION_ID", work.operation_id.to_string()),
            ("PACKD_OPERATION_KIND", label.to_string()),
            ("PACKD_PACKAGE_ID", package.id.to_string()),
            ("PACKD_PACKAGE_NAME", package.name.to_string()),
            ("PACKD_PACKAGE_VERSION", package.version.to_string()),
            ("PACKD_PACKAGE_PATH", dir.display().to_string()),
            ("PACKD_PREVIOUS_VERSION", previous_version),
            (
                "PACKD_ACTIVE_LINK",
                self.layout.active(&package.name).display().to_string(),
            ),
        ];
        // The package's directory for an activation; the data directory for a
        // deactivation, whose files a hook should not rely on.
        let cwd = if activating {
            dir.clone()
        } else {
            self.layout.root().to_path_buf()
        };
        tracing::info!(hook = %program.display(), "running the {label} hook");
        let ran = hook::run(program, &vars, &cwd, self.hooks.timeout, steps.stopping()).await;
        let outcome = ran
            .as_ref()
            .map_or_else(HookError::outcome, |()| "succeeded");
        metrics::global().hook_ran(label, outcome);
        let Err(error) = ran else {
            return Ok(());
        };
        tracing::warn!(%error, "the {label} hook did not succeed; putting the link back");
        self.put_back(&package.name, previous).await?;
        match error {
            HookError::Stopped => Err(ExecError::Stopped),
            other => Err(ExecError::Failed(format!("the {label} hook: {other}"))),
        }
    }

    async fn put_back(
        &self,
        name: &crate::domain::package::PackageName,
        previous: Previous,
    ) -> Result<(), ExecError> {
        let layout = self.layout.clone();
        let name = name.clone();
        blocking(move || activate::restore(&layout, &name, &previous)).await?;
        metrics::global().link_switched();
        Ok(())
    }

    /// Removes `active/<name>`, whatever it points at: the version now
    /// active has no files.
    async fn unlink_name(
        &self,
        name: &crate::domain::package::PackageName,
    ) -> Result<(), ExecError> {
        let link = self.layout.active(name);
        let removed = blocking(move || match activate::read(&link)? {
            Some(_) => activate::set(&link, None).map(|()| true),
            None => Ok(false),
        })
        .await?;
        if removed {
            metrics::global().link_switched();
        }
        Ok(())
    }
}

/// Runs a link change off the async threads (it syncs a directory).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LinkError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::Failed(format!("the link task failed: {e}")))?
        .map_err(|e| match e {
            LinkError::NotALink(_) => ExecError::Fatal(e.to_string()),
            LinkError::Io { .. } => ExecError::Failed(e.to_string()),
        })
}

/// A fetch error as the queue sees it: retried, or failed at once.
fn failure(e: FetchError) -> ExecError {
    match e {
        FetchError::Retry(m) => {
            metrics::global().download_failed("transient");
            ExecError::Failed(m)
        }
        FetchError::Fatal(m) => {
            metrics::global().download_failed("permanent");
            ExecError::Fatal(m)
        }
    }
}
