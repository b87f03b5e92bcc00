//! The data directory: the only module that touches it. `layout.rs` names
//! every path under it (no package name or version can leave its
//! directory); `unpack.rs` turns an artifact into a package's files,
//! refusing entries that would land outside them.
//!
//! The database leads and the files follow: every step here is written
//! beside its final place and renamed into it, so a crash leaves either the
//! old state or the new one, and a repeated step does no harm.

pub mod activate;
pub mod budget;
pub mod fetch;
pub mod hook;
pub mod layout;
pub mod reconcile;
pub mod unpack;

pub use self::layout::Layout;

use crate::domain::package::Package;

/// Removes what a package had under the data directory, once the database
/// no longer has it as it was (deleted, or renamed, re-versioned or given
/// another source): its files, and its artifact if `artifact_unused`.
/// Best effort: what is left is only disk space (the next download of that
/// version replaces it); a failure is logged.
pub fn forget(layout: &Layout, package: &Package, artifact_unused: bool) {
    let Some(source) = &package.source else {
        return;
    };
    let dir = layout.package(&package.name, &package.version);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove a package's files");
    }
    // The name's directory goes with its last version (fails if not empty).
    let _ = std::fs::remove_dir(layout.package_versions(&package.name));
    if artifact_unused {
        let artifact = layout.artifact(&source.sha256());
        if let Err(e) = std::fs::remove_file(&artifact)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %artifact.display(), error = %e, "cannot remove an artifact");
        }
    }
}
