//! Retention as the store applies it: after an activation commits, the
//! versions of the name that `domain::retention` chooses go back to
//! `created` and their files are journaled for removal, in the same
//! transaction.

use redb::WriteTransaction;

use super::StoreError;
use super::events::Written;
use super::packages::{self, get_in};
use super::tables::PACKAGES;
use crate::domain::Timestamp;
use crate::domain::package::{Package, Status};

/// Applies retention to the name of `active_id`, keeping `keep` versions
/// with files; returns the packages whose files go.
pub(super) fn after_activation(
    wtx: &WriteTransaction,
    written: &mut Written,
    active_id: uuid::Uuid,
    keep: usize,
    now: Timestamp,
) -> Result<Vec<Package>, StoreError> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let active = get_in(&wtx.open_table(PACKAGES)?, active_id)?;
    let versions = packages::of_name(wtx, &active.name)?;
    let chosen = crate::domain::retention::to_remove(&active, &versions, keep);
    let mut gone = Vec::with_capacity(chosen.len());
    for p in versions.into_iter().filter(|p| chosen.contains(&p.id)) {
        let after = packages::set_status(wtx, written, &p, Status::Created, now)?;
        super::removals::journal(wtx, &p)?;
        gone.push(after);
    }
    Ok(gone)
}
