//! Removing what the database no longer accounts for, off the request
//! path: the removal journal names each package's leftovers (written in the
//! same transaction as the change that left them), and the remover takes
//! them away in the background. A package's directory is first renamed to
//! a hidden name of packd's own (`.<version>.removing-<uuid>`), under the
//! place lock and only if no package wants it now, then its tree is removed
//! entry by entry with the budget checked between entries: a SIGTERM stops
//! it, and the next start finishes what the hidden name marks.

use std::io;
use std::path::Path;

use super::Files;
use super::budget::{Budget, run_blocking};
use crate::domain::package::{PackageName, PackageVersion, Removal, Wanted};
use crate::domain::source::Sha256;
use crate::durable::sync_directory;

/// What the catalogue says, asked under the place lock (the store, read by
/// the caller's closures; this module does not know it).
pub trait Claims: Send + Sync + 'static {
    /// Whether the files of `name`@`version` are wanted now.
    fn wanted(&self, name: &PackageName, version: &PackageVersion) -> io::Result<Wanted>;
    /// Whether a package names this digest.
    fn digest_named(&self, digest: &Sha256) -> io::Result<bool>;
}

/// What became of one journaled removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the files are gone, or they are another package's now. The
    /// journal entry can go.
    Done { entries: u64 },
    /// A download of that version is in flight: try again later.
    Later,
}

impl Files {
    /// Carries out one journaled removal.
    pub async fn remove(
        &self,
        removal: Removal,
        claims: std::sync::Arc<dyn Claims>,
        budget: &Budget,
    ) -> io::Result<Outcome> {
        let this = self.clone();
        run_blocking(budget, move |budget| {
            let dir = this.layout.package(&removal.name, &removal.version);
            let aside = this.layout.trash(&removal.name, &removal.version);
            let moved = this.at_places(|| -> io::Result<Option<bool>> {
                match claims.wanted(&removal.name, &removal.version)? {
                    Wanted::Yes => return Ok(Some(false)),
                    Wanted::Later => return Ok(None),
                    Wanted::No => {}
                }
                match std::fs::symlink_metadata(&dir) {
                    Ok(_) => {
                        std::fs::rename(&dir, &aside)?;
                        sync_directory(&dir);
                        Ok(Some(true))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(false)),
                    Err(e) => Err(e),
                }
            })?;
            let Some(moved) = moved else {
                return Ok(Outcome::Later);
            };
            let entries = if moved {
                remove_tree(&aside, budget)?
            } else {
                0
            };
            // The name's directory goes with its last version (this fails,
            // harmlessly, while it holds anything).
            let _ = std::fs::remove_dir(this.layout.package_versions(&removal.name));
            this.at_places(|| -> io::Result<()> {
                if claims.digest_named(&removal.digest)? {
                    return Ok(());
                }
                match std::fs::remove_file(this.layout.artifact(&removal.digest)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            })?;
            Ok(Outcome::Done { entries })
        })
        .await?
    }
}

/// Removes a file, a link (never what it points at) or a directory tree,
/// depth first, checking the budget between entries; returns how many
/// entries went. Nothing there is fine. A stop leaves the rest, and an
/// `Interrupted` error.
pub fn remove_tree(path: &Path, budget: &Budget) -> io::Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        std::fs::remove_file(path)?;
        return Ok(1);
    }
    // Depth first without recursion: a directory is removed once what is
    // under it is gone. Each level holds one open directory stream.
    let mut removed = 0;
    let mut stack = vec![(path.to_path_buf(), std::fs::read_dir(path)?)];
    while let Some((dir, entries)) = stack.last_mut() {
        budget
            .check()
            .map_err(|e| io::Error::new(io::ErrorKind::Interrupted, e.to_string()))?;
        match entries.next() {
            Some(entry) => {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    let sub = entry.path();
                    let listing = std::fs::read_dir(&sub)?;
                    stack.push((sub, listing));
                } else {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            None => {
                std::fs::remove_dir(&*dir)?;
                removed += 1;
                stack.pop();
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_goes_entry_by_entry_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/f"), "1").unwrap();
        std::fs::write(tree.join("top"), "2").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        assert_eq!(remove_tree(&tree, &Budget::unbounded()).unwrap(), 7);
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        assert_eq!(remove_tree(&tree, &Budget::unbounded()).unwrap(), 0);
    }

    #[test]
    fn a_stop_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("f"), "1").unwrap();
        let budget = Budget::unbounded();
        budget.cancel();
        let err = remove_tree(&tree, &budget).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        assert!(tree.join("f").exists());
    }
}
