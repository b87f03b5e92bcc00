//! A download from the source to a package's files: fetched into
//! `partial/` (unless an artifact of that digest is stored already),
//! verified, stored as `artifacts/sha256/<hex>`, unpacked beside the
//! package's directory and renamed into it.

use std::convert::identity;
use std::fs::File;
use std::io::{self, Seek};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::budget::{Budget, Interrupted, run_blocking};
use super::fetch::{FetchEnd, FetchError, HashError, hash_prefix};
use super::remove::remove_tree;
use super::unpack::{self, Format, UnpackError, Unpacked};
use super::{FileError, Files, Reason, lost};
use crate::domain::operation::Transfer;
use crate::domain::package::{PackageName, PackageVersion};
use crate::domain::source::Source;
use crate::durable::sync_directory;
use crate::metrics;

/// One package's download.
pub struct DownloadJob<'a> {
    pub operation_id: Uuid,
    pub name: &'a PackageName,
    pub version: &'a PackageVersion,
    pub source: &'a Source,
    /// The last checkpoint an earlier attempt saved, to resume from.
    pub saved: &'a Transfer,
}

/// What a download did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The whole transfer, for the completion to record.
    pub transfer: Transfer,
    /// The artifact was stored already: nothing was fetched.
    pub reused: bool,
    pub unpacked: Unpacked,
}

impl Files {
    /// Fetches (or reuses), stores and installs a package's files.
    /// `checkpoint` is told each synced checkpoint of the transfer.
    pub async fn download(
        &self,
        job: DownloadJob<'_>,
        budget: &Budget,
        mut checkpoint: impl FnMut(Transfer),
    ) -> Result<Installed, FileError> {
        // What the signature says is checked before any byte is read: a
        // refusal costs nothing and stores nothing.
        let vouched = crate::trust::vouch(
            &self.trust.keys(),
            job.source.signature(),
            job.name.as_str(),
            job.version.as_str(),
        )
        .map_err(|why| FileError::fatal(Reason::Signature, why))?;
        if let Some(v) = &vouched {
            tracing::debug!(key = %v.key_id, "the signature is by a trusted key, for this package");
        }
        let digest = job.source.sha256();
        let artifact = self.layout.artifact(&digest);
        // Where a download's time goes, logged at its end: the figures the
        // download benchmark's profile is read from.
        let started = std::time::Instant::now();
        let mut fetch_ms = 0.0;
        let mut store_ms = 0.0;
        // Opened under the place lock, so a removal cannot take it between
        // the look and the open; once open, it is ours to read.
        let this = self.clone();
        let path = artifact.clone();
        let stored = run_blocking(budget, move |_| this.at_places(|| open_stored(&path)))
            .await
            .map_err(lost)?;
        // A single file is placed as a hard link to its artifact, so an
        // edit of a package's file in place would change the artifact: what
        // is stored is checked again before it serves another package.
        let stored = match stored {
            Some((file, size)) => {
                self.still_whole(file, size, &digest, vouched.as_ref(), budget)
                    .await?
            }
            None => None,
        };
        let (file, transfer, reused) = match stored {
            Some((file, size)) => {
                tracing::info!(%digest, "artifact already stored; not fetched again");
                let whole = Transfer {
                    bytes_done: Some(size),
                    bytes_total: Some(size),
                    validator: None,
                };
                (file, whole, true)
            }
            None => {
                self.room_for(&job, budget).await?;
                let partial = self.layout.partial(job.operation_id);
                let mut counted = job.saved.bytes_done.unwrap_or(0);
                let fetched = self
                    .fetcher
                    .fetch(
                        job.source,
                        &partial,
                        job.saved,
                        vouched.as_ref(),
                        budget,
                        |t: Transfer| {
                            let done = t.bytes_done.unwrap_or(0);
                            metrics::global()
                                .downloaded_bytes
                                .add(done.saturating_sub(counted));
                            counted = done;
                            checkpoint(t)
                        },
                    )
                    .await
                    .map_err(fetch_failure)?;
                fetch_ms = ms_since(started);
                metrics::global().downloaded_bytes.add(
                    fetched
                        .transfer
                        .bytes_done
                        .unwrap_or(0)
                        .saturating_sub(counted),
                );
                if fetched.resumed {
                    metrics::global().downloads_resumed.inc();
                }
                let this = self.clone();
                let file = run_blocking(budget, move |_| {
                    this.at_places(|| store_artifact(&partial, &artifact))
                })
                .await
                .map_err(lost)?
                .map_err(|e| {
                    FileError::fatal(Reason::Files, format!("cannot store the artifact: {e}"))
                })?;
                store_ms = ms_since(started) - fetch_ms;
                (file, fetched.transfer, false)
            }
        };
        let unpacked = self
            .install(
                job.operation_id,
                job.name,
                job.version,
                job.source,
                file,
                budget,
            )
            .await?;
        tracing::info!(
            operation = %job.operation_id,
            bytes = transfer.bytes_done.unwrap_or(0),
            fetch_ms,
            store_ms,
            unpack_ms = ms_since(started) - fetch_ms - store_ms,
            "download installed"
        );
        Ok(Installed {
            transfer,
            reused,
            unpacked,
        })
    }

    /// Whether the rest of the artifact fits above `--min-free-space`;
    /// checked before a byte is fetched, so a refusal writes nothing. The
    /// size is the source's, or what an earlier attempt learned; unknown,
    /// only the floor itself is checked.
    async fn room_for(&self, job: &DownloadJob<'_>, budget: &Budget) -> Result<(), FileError> {
        let root = self.layout.root().to_path_buf();
        let space = run_blocking(budget, move |_| super::space::space(&root))
            .await
            .map_err(lost)?
            .map_err(|e| {
                FileError::fatal(Reason::Files, format!("cannot read the free space: {e}"))
            })?;
        let total = job.source.size().or(job.saved.bytes_total).unwrap_or(0);
        let needed = total.saturating_sub(job.saved.bytes_done.unwrap_or(0));
        super::space::check(space, self.floor.get(), needed)
            .map_err(|why| FileError::fatal(Reason::Files, why))
    }

    /// The stored artifact if it still has its digest; else it is removed
    /// (packd stored it) and `None` says to fetch it again. A stored
    /// artifact vouches for nothing by itself: a trusted signature is
    /// checked over its bytes in the same read, whoever stored it and when.
    async fn still_whole(
        &self,
        mut file: File,
        size: u64,
        digest: &crate::domain::source::Sha256,
        vouched: Option<&crate::trust::Vouched>,
        budget: &Budget,
    ) -> Result<Option<(File, u64)>, FileError> {
        let this = self.clone();
        let (path, digest) = (self.layout.artifact(digest), *digest);
        let vouched = vouched.cloned();
        run_blocking(budget, move |budget| {
            let mut signed = vouched.as_ref().map(crate::trust::Vouched::stream);
            let whole = match hash_prefix(&mut file, size, budget, |bytes| {
                if let Some(stream) = &mut signed {
                    stream.update(bytes);
                }
            }) {
                Ok(hasher) => {
                    use sha2::Digest;
                    crate::domain::source::Sha256(hasher.finalize().into()) == digest
                }
                Err(HashError::Interrupted(_)) => return Err(FileError::Stopped),
                Err(HashError::Io(_)) => false,
            };
            if whole {
                if let Some(Err(why)) = signed.map(crate::trust::Stream::finish) {
                    return Err(FileError::fatal(Reason::Signature, why));
                }
                if file.rewind().is_ok() {
                    return Ok(Some((file, size)));
                }
            }
            tracing::warn!(%digest, "the stored artifact no longer has its digest (was a package's file edited in place?); fetching it again");
            this.at_places(|| match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(FileError::fatal(
                    Reason::Files,
                    format!("cannot remove a damaged artifact: {e}"),
                )),
                _ => Ok(None),
            })
        })
        .await
        .map_err(lost)?
    }

    /// Unpacks the artifact beside the package's directory and renames it
    /// into place; a copy an earlier attempt left is replaced.
    async fn install(
        &self,
        operation_id: Uuid,
        name: &PackageName,
        version: &PackageVersion,
        source: &Source,
        artifact: File,
        budget: &Budget,
    ) -> Result<Unpacked, FileError> {
        let versions = self.layout.package_versions(name);
        let staging = self.layout.staging(name, version, operation_id);
        let target = self.layout.package(name, version);
        let aside = self.layout.trash(name, version);
        let format = Format::of_url(source.url());
        let stored = self.layout.artifact(&source.sha256());
        let budget = budget.child(self.unpack_timeout);
        let this = self.clone();
        let result = run_blocking(&budget, move |budget| -> Result<Unpacked, UnpackError> {
            ensure_real_dir(&versions, this.modes.dir)?;
            // A staging directory of this operation's earlier attempt.
            remove_tree(&staging, &Budget::unbounded())?;
            let unpacked = match &format {
                Format::Single(file_name) => unpack::place(
                    artifact,
                    &stored,
                    file_name,
                    &staging,
                    this.unpack,
                    this.modes,
                    budget,
                ),
                archive => {
                    unpack::unpack(artifact, archive, &staging, this.unpack, this.modes, budget)
                }
            };
            let unpacked = match unpacked {
                Ok(done) => done,
                Err(e) => {
                    // What it made is bounded by the caps it just applied.
                    let _ = remove_tree(&staging, &Budget::unbounded());
                    return Err(e);
                }
            };
            let old = this.at_places(|| -> io::Result<Option<PathBuf>> {
                let old = match std::fs::symlink_metadata(&target) {
                    Ok(_) => {
                        std::fs::rename(&target, &aside)?;
                        Some(aside)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                std::fs::rename(&staging, &target)?;
                sync_directory(&target);
                Ok(old)
            })?;
            if let Some(old) = old {
                remove_tree(&old, &Budget::unbounded())?;
            }
            Ok(unpacked)
        })
        .await
        .map_err(lost)?;
        result.map_err(|e| match e {
            UnpackError::Interrupted(Interrupted::Cancelled) => FileError::Stopped,
            UnpackError::Interrupted(Interrupted::TimedOut(t)) => FileError::fatal(
                Reason::Unpack,
                format!(
                    "unpacking did not finish within --unpack-timeout ({})",
                    humantime::format_duration(t)
                ),
            ),
            UnpackError::Io(e) => FileError::fatal(
                Reason::Files,
                format!("cannot write the package's files: {e}"),
            ),
            other => FileError::fatal(Reason::Unpack, other.to_string()),
        })
    }

    /// Removes a download's partial file: after a cancel, or a failure no
    /// retry follows (a stop for a shutdown keeps it, for the resume).
    pub async fn discard_partial(&self, operation_id: Uuid) {
        let partial = self.layout.partial(operation_id);
        let removed = run_blocking(&Budget::unbounded(), move |_| {
            std::fs::remove_file(&partial)
        })
        .await
        .and_then(identity);
        if let Err(e) = removed
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove a partial download");
        }
    }
}

/// The stored artifact of a digest and its size, if there is one.
fn open_stored(path: &Path) -> Option<(File, u64)> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta.len()))
}

/// Renames a verified partial to its digest's name and opens it.
fn store_artifact(partial: &Path, artifact: &Path) -> io::Result<File> {
    std::fs::rename(partial, artifact)?;
    sync_directory(artifact);
    File::open(artifact)
}

/// Makes `dir` (a name's directory of versions) if missing; refuses one
/// that is not a real directory (a link would lead the install elsewhere).
fn ensure_real_dir(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a directory packd made; move it away",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

fn ms_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn fetch_failure(end: FetchEnd) -> FileError {
    match end {
        FetchEnd::Failed(FetchError::Retry(m)) => FileError::Retry(m),
        FetchEnd::Failed(FetchError::Fatal(m)) => FileError::fatal(Reason::Source, m),
        FetchEnd::Failed(FetchError::Signature(m)) => FileError::fatal(Reason::Signature, m),
        FetchEnd::Interrupted(Interrupted::Cancelled) => FileError::Stopped,
        FetchEnd::Interrupted(Interrupted::TimedOut(t)) => FileError::Retry(format!(
            "the download did not finish within --download-timeout ({})",
            humantime::format_duration(t)
        )),
    }
}
