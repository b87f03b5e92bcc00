//! The in-memory key cache that authenticates requests without touching
//! the disk, and the per-key usage counters it keeps until they are written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use crate::domain::Timestamp;
use crate::domain::key::{self, ApiKey, FormatError, KeyRefusal, Role, SecretHash};

/// Who made a request: the key that authenticated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub role: Role,
    /// The key's own rate limit, if it has one (`Some(0)`: unlimited).
    pub rate_limit: Option<u32>,
}

/// Why a presented secret did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Refused on its shape alone, before any lookup.
    Malformed(FormatError),
    /// No key has this secret (or its rotation grace is over).
    Unknown,
    Refused(KeyRefusal),
}

/// Requests counted since the last flush, per key, lock-free on the hot path.
#[derive(Default)]
struct UsageCell {
    count: AtomicU64,
    last_used: AtomicI64,
}

struct CachedKey {
    key: ApiKey,
    usage: Arc<UsageCell>,
}

/// Every key, by each hash that may authenticate it, in memory. Built at open
/// and refreshed after each committed key change, before the change's caller
/// gets its answer: the next request sees the change.
#[derive(Default)]
pub(crate) struct KeyCache {
    by_hash: RwLock<HashMap<SecretHash, Arc<CachedKey>>>,
    usage: Mutex<HashMap<Uuid, Arc<UsageCell>>>,
}

impl KeyCache {
    fn usage_cell(&self, id: Uuid) -> Arc<UsageCell> {
        self.usage
            .lock()
            .expect("usage lock")
            .entry(id)
            .or_default()
            .clone()
    }

    /// Replaces what the cache knows of key `id` by `key` (`None`: deleted).
    pub(super) fn refresh(&self, id: Uuid, key: Option<ApiKey>) {
        let mut map = self.by_hash.write().expect("key cache lock");
        map.retain(|_, cached| cached.key.id != id);
        match key {
            Some(key) => {
                let cached = Arc::new(CachedKey {
                    usage: self.usage_cell(id),
                    key,
                });
                map.insert(cached.key.hash, cached.clone());
                if let Some((old, _)) = cached.key.previous {
                    map.insert(old, cached);
                }
            }
            None => {
                self.usage.lock().expect("usage lock").remove(&id);
            }
        }
    }

    pub(super) fn authenticate(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<Principal, AuthFailure> {
        key::check_format(presented).map_err(AuthFailure::Malformed)?;
        let hash = SecretHash::of(presented);
        let cached = self
            .by_hash
            .read()
            .expect("key cache lock")
            .get(&hash)
            .cloned()
            .ok_or(AuthFailure::Unknown)?;
        match cached.key.check(&hash, now) {
            None => Err(AuthFailure::Unknown),
            Some(Err(refusal)) => Err(AuthFailure::Refused(refusal)),
            Some(Ok(())) => {
                cached.usage.count.fetch_add(1, Ordering::Relaxed);
                cached
                    .usage
                    .last_used
                    .fetch_max(now.as_micros(), Ordering::Relaxed);
                Ok(Principal {
                    key_id: cached.key.id,
                    role: cached.key.role,
                    rate_limit: cached.key.rate_limit,
                })
            }
        }
    }

    /// Adds the usage not yet written to `key`, so answers show live counts.
    pub(super) fn with_pending_usage(&self, mut key: ApiKey) -> ApiKey {
        if let Some(cell) = self.usage.lock().expect("usage lock").get(&key.id) {
            key.use_count += cell.count.load(Ordering::Relaxed);
            let last = cell.last_used.load(Ordering::Relaxed);
            if last > 0 && key.last_used_at.is_none_or(|t| t.as_micros() < last) {
                key.last_used_at = Some(Timestamp::from_micros(last));
            }
        }
        key
    }

    /// Takes the pending usage out of the cells.
    pub(super) fn drain_usage(&self) -> Vec<(Uuid, u64, i64)> {
        self.usage
            .lock()
            .expect("usage lock")
            .iter()
            .filter_map(|(id, cell)| {
                let n = cell.count.swap(0, Ordering::Relaxed);
                (n > 0).then(|| (*id, n, cell.last_used.load(Ordering::Relaxed)))
            })
            .collect()
    }

    /// Puts usage back after a failed flush, so nothing is lost.
    pub(super) fn restore_usage(&self, pending: &[(Uuid, u64, i64)]) {
        for (id, n, _) in pending {
            self.usage_cell(*id).count.fetch_add(*n, Ordering::Relaxed);
        }
    }
}
