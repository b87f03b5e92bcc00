//! Where things live under `--data-dir`:
//!
//! ```text
//! .lock                          held by the packd that owns the directory
//! .owner                         which database the directory belongs to
//! .hooks/<operation id>          process groups of hooks running now
//! artifacts/sha256/<hex>         verified downloads, shared by digest
//! partial/<operation id>         downloads in progress
//! packages/<name>/<version>/     a package's files
//! active/<name>                  a symbolic link to the active version
//! ```
//!
//! In these paths a name or version keeps `A-Z a-z 0-9 . _ + -` and
//! percent-encodes every other byte, and a leading `.`, so `..`, `a/b` or
//! a name with a NUL stay one harmless path segment
//! (`domain::package::path_segment`). packd's own temporary names start
//! with a dot, which no encoded segment does, and end with a UUID:
//! `.<version>.staging-<uuid>` and `.<version>.removing-<uuid>` beside a
//! package's directory, `.<name>.link-<uuid>` beside a link.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::package::{PackageName, PackageVersion};
use crate::domain::source::Sha256;

/// The data directory and the names of everything in it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// The directories packd keeps under the root: whether services read them
/// (the package files and the links to them, readable like `/usr`), or
/// they are packd's alone (downloads until verified, hook records).
pub const DIRS: [(&str, Reach); 6] = [
    ("artifacts", Reach::Owner),
    ("artifacts/sha256", Reach::Owner),
    ("partial", Reach::Owner),
    ("packages", Reach::Services),
    ("active", Reach::Services),
    (".hooks", Reach::Owner),
];

/// Who may enter one of packd's directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// packd alone (0700).
    Owner,
    /// The services that use packages too (the package directories' mode).
    Services,
}

/// What marks one of packd's temporary names: `.<segment>.<kind>-<uuid>`.
pub const STAGING: &str = "staging";
pub const REMOVING: &str = "removing";
pub const LINK: &str = "link";

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub fn owner(&self) -> PathBuf {
        self.root.join(".owner")
    }

    pub fn hooks(&self) -> PathBuf {
        self.root.join(".hooks")
    }

    /// Where a running hook's process group is written down.
    pub fn hook_record(&self, operation: Uuid) -> PathBuf {
        self.hooks().join(operation.to_string())
    }

    pub fn artifact(&self, digest: &Sha256) -> PathBuf {
        self.root.join("artifacts/sha256").join(digest.to_string())
    }

    pub fn partial(&self, operation: Uuid) -> PathBuf {
        self.root.join("partial").join(operation.to_string())
    }

    /// The directory of one name's versions.
    pub fn package_versions(&self, name: &PackageName) -> PathBuf {
        self.root.join("packages").join(name.segment())
    }

    pub fn package(&self, name: &PackageName, version: &PackageVersion) -> PathBuf {
        self.package_versions(name).join(version.segment())
    }

    /// Where a package's files are put together before the rename that
    /// makes them its files (beside them, so the rename stays on one file
    /// system).
    pub fn staging(
        &self,
        name: &PackageName,
        version: &PackageVersion,
        operation: Uuid,
    ) -> PathBuf {
        self.package_versions(name)
            .join(temporary(&version.segment(), STAGING, operation))
    }

    /// A new name to move a package's old files to before removing them.
    pub fn trash(&self, name: &PackageName, version: &PackageVersion) -> PathBuf {
        self.package_versions(name)
            .join(temporary(&version.segment(), REMOVING, Uuid::now_v7()))
    }

    pub fn active(&self, name: &PackageName) -> PathBuf {
        self.root.join("active").join(name.segment())
    }
}

/// `.<segment>.<kind>-<uuid>`: a temporary name of packd's own.
pub fn temporary(segment: &str, kind: &str, id: Uuid) -> String {
    format!(".{segment}.{kind}-{id}")
}

/// Whether `file_name` is one of packd's temporary names of `kind`.
pub fn is_temporary(file_name: &str, kind: &str) -> bool {
    let Some(rest) = file_name.strip_prefix('.') else {
        return false;
    };
    let marker = format!(".{kind}-");
    match rest.rfind(&marker) {
        Some(at) if at > 0 => Uuid::try_parse(&rest[at + marker.len()..]).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_under_the_root() {
        let layout = Layout::new("/data");
        let name = PackageName::parse("../etc").unwrap();
        let version = PackageVersion::parse("1.0").unwrap();
        let dir = layout.package(&name, &version);
        assert_eq!(dir, PathBuf::from("/data/packages/%2E.%2Fetc/1.0"));
        assert!(layout.active(&name).starts_with("/data/active"));
        let op = Uuid::now_v7();
        for temp in [
            layout.staging(&name, &version, op),
            layout.trash(&name, &version),
        ] {
            assert_eq!(temp.parent(), dir.parent());
            let file_name = temp.file_name().unwrap().to_str().unwrap();
            assert!(file_name.starts_with('.'), "{file_name}");
            assert!(
                is_temporary(file_name, STAGING) || is_temporary(file_name, REMOVING),
                "{file_name}"
            );
        }
    }

    #[test]
    fn only_packds_own_temporary_names_are_recognised() {
        let id = Uuid::now_v7();
        assert!(is_temporary(&temporary("1.0", STAGING, id), STAGING));
        assert!(is_temporary(&temporary("a.b", REMOVING, id), REMOVING));
        assert!(!is_temporary(&temporary("1.0", STAGING, id), REMOVING));
        for foreign in [
            "1.0",
            ".hidden",
            ".1.0.staging-",
            ".1.0.staging-not-a-uuid",
            "1.0.staging-0190c3a0-0000-7000-8000-000000000000",
            ".staging-0190c3a0-0000-7000-8000-000000000000",
        ] {
            assert!(!is_temporary(foreign, STAGING), "{foreign}");
        }
    }
}
