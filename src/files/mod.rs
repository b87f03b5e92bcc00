//! The data directory: the only module that touches it. `layout.rs` names
//! every path under it (no package name or version can leave its
//! directory); `unpack.rs` turns an artifact into a package's files,
//! refusing entries that would land outside them.
//!
//! The database leads and the files follow: every step here is written
//! beside its final place and renamed into it, so a crash leaves either the
//! old state or the new one, and a repeated step does no harm.

pub mod fetch;
pub mod layout;
pub mod unpack;

pub use self::layout::Layout;
