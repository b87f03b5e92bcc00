//! Pages of a listing: ids in creation order (UUID v7), a page cut at
//! `limit` with the id to continue after.

use super::StoreError;

/// One page of a listing, in id (creation) order.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id to continue after, when more items exist.
    pub next_after: Option<uuid::Uuid>,
}

/// Cuts a list read with `limit + 1` items down to a page, remembering where
/// the next page starts.
pub(crate) fn paginate<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Page<T> {
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_after }
}

/// The first id after a cursor (`None` when the cursor was the largest id).
pub(crate) fn start_after(after: Option<uuid::Uuid>) -> Option<u128> {
    match after {
        None => Some(0),
        Some(id) => id.as_u128().checked_add(1),
    }
}

/// One page of a table of records keyed by id, in id order, after `after`.
pub(crate) fn page_of<T>(
    table: &impl redb::ReadableTable<u128, &'static [u8]>,
    after: Option<uuid::Uuid>,
    limit: usize,
    decode: impl Fn(u128, &[u8]) -> Result<T, StoreError>,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::with_capacity(limit + 1);
    if let Some(start) = start_after(after) {
        for row in table.range(start..)? {
            let (k, v) = row?;
            items.push(decode(k.value(), v.value())?);
            if items.len() > limit {
                break;
            }
        }
    }
    Ok(paginate(items, limit, id))
}

/// One page of the records an index names: `ids` are the index's ids in id
/// order (from its range after the cursor); each is loaded, kept if `keep`
/// says so, and the walk stops after `limit + 1` kept (the extra one only
/// says whether a next page exists). No list ever scans.
pub(crate) fn walk_index<T>(
    ids: impl Iterator<Item = Result<u128, StoreError>>,
    limit: usize,
    mut load: impl FnMut(u128) -> Result<T, StoreError>,
    keep: impl Fn(&T) -> bool,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::with_capacity(limit + 1);
    for found in ids {
        let item = load(found?)?;
        if keep(&item) {
            items.push(item);
            if items.len() > limit {
                break;
            }
        }
    }
    Ok(paginate(items, limit, id))
}

/// The ids of an index keyed by `(prefix, id)`, in id order.
pub(crate) fn ids_of<'a, P: redb::Key + 'static>(
    range: redb::Range<'a, (P, u128), ()>,
) -> impl Iterator<Item = Result<u128, StoreError>> + 'a {
    range.map(|entry| entry.map(|(k, _)| k.value().1).map_err(StoreError::from))
}
