//! Where things live under `--data-dir`:
//!
//! ```text
//! artifacts/sha256/<hex>        verified downloads, shared by digest
//! partial/<operation id>        downloads in progress
//! packages/<name>/<version>/    a package's files
//! active/<name>                 a symbolic link to the active version
//! ```
//!
//! In these paths a name or version keeps `A-Z a-z 0-9 . _ + -` and
//! percent-encodes every other byte, and a leading `.`, so `..`, `a/b` or
//! a name with a NUL stay one harmless path segment.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::package::{PackageName, PackageVersion};
use crate::domain::source::Sha256;

/// The data directory and the names of everything in it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// The directories under the root, created at start, and their modes.
/// What services use (the package files, the links to them) is readable by
/// every user, like `/usr`; downloads stay the owner's until verified.
const DIRS: [(&str, u32); 5] = [
    ("artifacts", 0o700),
    ("artifacts/sha256", 0o700),
    ("partial", 0o700),
    ("packages", PUBLIC_DIR),
    ("active", PUBLIC_DIR),
];

/// Mode of the directories that hold package files: other users (the
/// services that run a package) read them, only packd writes.
pub const PUBLIC_DIR: u32 = 0o755;

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root and its directories with the modes of `DIRS` (the
    /// root itself 0755, so services can reach `active/`); an existing tree
    /// is brought to them, whatever the umask made it.
    pub fn create(&self) -> io::Result<()> {
        create_dir(&self.root, PUBLIC_DIR)?;
        set_mode(&self.root, PUBLIC_DIR)?;
        for (dir, mode) in DIRS {
            let path = self.root.join(dir);
            create_dir(&path, mode)?;
            set_mode(&path, mode)?;
        }
        Ok(())
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
    /// system; hidden by the leading dot, which no encoded segment has).
    pub fn staging(
        &self,
        name: &PackageName,
        version: &PackageVersion,
        operation: Uuid,
    ) -> PathBuf {
        self.package_versions(name)
            .join(format!(".{}.staging-{operation}", version.segment()))
    }

    pub fn active(&self, name: &PackageName) -> PathBuf {
        self.root.join("active").join(name.segment())
    }
}

/// Creates a directory with `mode` (the umask still applies; `set_mode`
/// overrides it); an existing one is left as it is.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Gives `path` exactly `mode`, whatever the umask.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
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
        let staging = layout.staging(&name, &version, op);
        assert_eq!(staging.parent(), dir.parent());
        assert!(
            staging
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with('.')
        );
    }

    #[test]
    fn the_tree_has_its_modes_whatever_it_had() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        layout.create().unwrap();
        // A tree made by an older packd (all 0700) is brought to the modes.
        set_mode(&layout.root().join("active"), 0o700).unwrap();
        set_mode(layout.root(), 0o700).unwrap();
        set_mode(&layout.root().join("partial"), 0o777).unwrap();
        layout.create().unwrap();
        for (sub, want) in [
            ("", 0o755),
            ("artifacts", 0o700),
            ("artifacts/sha256", 0o700),
            ("partial", 0o700),
            ("packages", 0o755),
            ("active", 0o755),
        ] {
            let mode = std::fs::metadata(layout.root().join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, want, "{sub}");
        }
    }
}
