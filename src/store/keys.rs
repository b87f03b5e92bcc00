//! API keys: rows, the hash index, the in-memory cache that authenticates
//! requests without touching the disk, and usage counters written in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::tables::{KEYS, KEYS_BY_HASH};
use super::{Failure, Refusal};
use super::{Page, Store, StoreError};
use crate::domain::Timestamp;
use crate::domain::key::{self, ApiKey, FormatError, KeyRefusal, Role, SecretHash};

/// Versions of a stored key. V1 (schema 1) had no rate limit; the
/// migration to schema 2 rewrites every V1 record as V2, and reading still
/// accepts V1 so the migration itself can decode them.
#[derive(Debug, Serialize, Deserialize)]
enum KeyRecord {
    V1(KeyV1),
    V2(KeyV2),
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyV2 {
    v1: KeyV1,
    /// Requests per second; `None`: the server's limit; `Some(0)`: none.
    rate_limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyV1 {
    name: String,
    role: u8,
    prefix: String,
    hash: [u8; 32],
    active: bool,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    use_count: u64,
    previous: Option<([u8; 32], i64)>,
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Read => 0,
        Role::Write => 1,
        Role::Admin => 2,
    }
}

fn role_from_code(c: u8) -> Result<Role, StoreError> {
    match c {
        0 => Ok(Role::Read),
        1 => Ok(Role::Write),
        2 => Ok(Role::Admin),
        other => Err(StoreError::Failed(Failure::Corrupt(format!(
            "unknown role code {other}"
        )))),
    }
}

fn to_record(k: &ApiKey) -> KeyRecord {
    KeyRecord::V2(KeyV2 {
        v1: to_v1(k),
        rate_limit: k.rate_limit,
    })
}

fn to_v1(k: &ApiKey) -> KeyV1 {
    KeyV1 {
        name: k.name.clone(),
        role: role_code(k.role),
        prefix: k.prefix.clone(),
        hash: k.hash.0,
        active: k.active,
        created_at: k.created_at.as_micros(),
        expires_at: k.expires_at.map(Timestamp::as_micros),
        last_used_at: k.last_used_at.map(Timestamp::as_micros),
        use_count: k.use_count,
        previous: k.previous.map(|(h, t)| (h.0, t.as_micros())),
    }
}

fn from_record(id: u128, bytes: &[u8]) -> Result<ApiKey, StoreError> {
    let (r, rate_limit) = match decode::<KeyRecord>("keys", bytes)? {
        KeyRecord::V1(r) => (r, None),
        KeyRecord::V2(KeyV2 { v1, rate_limit }) => (v1, rate_limit),
    };
    Ok(ApiKey {
        id: Uuid::from_u128(id),
        name: r.name,
        role: role_from_code(r.role)?,
        prefix: r.prefix,
        hash: SecretHash(r.hash),
        active: r.active,
        created_at: Timestamp::from_micros(r.created_at),
        expires_at: r.expires_at.map(Timestamp::from_micros),
        last_used_at: r.last_used_at.map(Timestamp::from_micros),
        use_count: r.use_count,
        previous: r
            .previous
            .map(|(h, t)| (SecretHash(h), Timestamp::from_micros(t))),
        rate_limit,
    })
}

/// Schema 1 -> 2: every key record is rewritten as V2 (no rate limit of its
/// own), inside the migration's transaction.
pub(super) fn migrate_keys_to_v2(wtx: &WriteTransaction) -> Result<usize, StoreError> {
    let mut table = wtx.open_table(KEYS)?;
    let rows: Vec<(u128, Vec<u8>)> = table
        .iter()?
        .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (id, bytes) in &rows {
        let key = from_record(*id, bytes)?;
        table.insert(*id, encode(&to_record(&key))?.as_slice())?;
    }
    Ok(rows.len())
}

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
    fn refresh(&self, id: Uuid, key: Option<ApiKey>) {
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

    fn authenticate(&self, presented: &str, now: Timestamp) -> Result<Principal, AuthFailure> {
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
    fn with_pending_usage(&self, mut key: ApiKey) -> ApiKey {
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
    fn drain_usage(&self) -> Vec<(Uuid, u64, i64)> {
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
    fn restore_usage(&self, pending: &[(Uuid, u64, i64)]) {
        for (id, n, _) in pending {
            self.usage_cell(*id).count.fetch_add(*n, Ordering::Relaxed);
        }
    }
}

/// A new key as the caller asks for it.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<Timestamp>,
    pub rate_limit: Option<u32>,
}

/// A PATCH of a key: rename, or move `expires_at` (`Some(None)`: never expires).
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub expires_at: Option<Option<Timestamp>>,
    /// `Some(None)`: back to the server's limit.
    pub rate_limit: Option<Option<u32>>,
}

/// The outcome of startup's bootstrap step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// An active admin key exists; nothing done.
    AdminExists,
    /// `PACKD_BOOTSTRAP_KEY` became (or was restored as) the admin key `bootstrap`.
    FromEnvironment(Uuid),
    /// No keys at all: a new admin key was made; its secret is here, to print once.
    Generated(Uuid, String),
    /// Keys exist but no active admin, and no bootstrap key was given.
    NoAdmin,
}

fn load(wtx: &WriteTransaction, id: Uuid) -> Result<ApiKey, StoreError> {
    let table = wtx.open_table(KEYS)?;
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

fn save(wtx: &WriteTransaction, k: &ApiKey) -> Result<(), StoreError> {
    wtx.open_table(KEYS)?
        .insert(k.id.as_u128(), encode(&to_record(k))?.as_slice())?;
    Ok(())
}

fn all_keys<T: ReadableTable<u128, &'static [u8]>>(table: &T) -> Result<Vec<ApiKey>, StoreError> {
    table
        .iter()?
        .map(|row| {
            let (k, v) = row?;
            from_record(k.value(), v.value())
        })
        .collect()
}

/// Refuses a change of `before` into `after` (`None`: deleted) that would
/// leave no usable admin key now, or that would give up the last admin key
/// that never expires: admins that all expire lock everyone out later,
/// when nobody is looking.
fn ensure_admin_remains(
    wtx: &WriteTransaction,
    before: &ApiKey,
    after: Option<&ApiKey>,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let live = |k: &ApiKey| k.is_live_admin(now);
    let lasting = |k: &ApiKey| k.is_lasting_admin();
    let keeps = |rule: &dyn Fn(&ApiKey) -> bool| -> Result<bool, StoreError> {
        if !rule(before) || after.is_some_and(rule) {
            return Ok(true);
        }
        Ok(all_keys(&wtx.open_table(KEYS)?)?
            .iter()
            .any(|k| k.id != before.id && rule(k)))
    };
    if !keeps(&live)? || !keeps(&lasting)? {
        return Err(StoreError::Refused(Refusal::LastAdmin));
    }
    Ok(())
}

fn insert_key(wtx: &WriteTransaction, k: &ApiKey) -> Result<(), StoreError> {
    let mut index = wtx.open_table(KEYS_BY_HASH)?;
    if index.get(&k.hash.0)?.is_some() {
        return Err(StoreError::Refused(Refusal::Conflict(
            "a key with this secret already exists".into(),
        )));
    }
    index.insert(&k.hash.0, k.id.as_u128())?;
    drop(index);
    save(wtx, k)
}

impl Store {
    pub(crate) fn load_key_cache(&self) -> Result<(), StoreError> {
        let keys = self.read(|rtx| all_keys(&rtx.open_table(KEYS)?))?;
        for k in keys {
            self.inner.keys.refresh(k.id, Some(k));
        }
        Ok(())
    }

    /// Checks a presented secret against the in-memory cache: no disk I/O.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthFailure> {
        self.inner.keys.authenticate(presented, Timestamp::now())
    }

    /// Creates a key with a new secret; returns the key and the secret, which
    /// is not kept anywhere.
    pub async fn create_key(&self, new: NewKey) -> Result<(ApiKey, String), StoreError> {
        let secret =
            key::generate_secret().map_err(|e| StoreError::Failed(Failure::Internal(e)))?;
        let k = self.create_key_with_secret(new, &secret).await?;
        Ok((k, secret))
    }

    async fn create_key_with_secret(
        &self,
        new: NewKey,
        secret: &str,
    ) -> Result<ApiKey, StoreError> {
        let k = ApiKey {
            id: Uuid::now_v7(),
            name: new.name,
            role: new.role,
            prefix: key::display_prefix(secret),
            hash: SecretHash::of(secret),
            active: true,
            created_at: Timestamp::now(),
            expires_at: new.expires_at,
            last_used_at: None,
            use_count: 0,
            previous: None,
            rate_limit: new.rate_limit,
        };
        let k = self
            .write(move |wtx| {
                insert_key(wtx, &k)?;
                Ok(k.clone())
            })
            .await?;
        self.inner.keys.refresh(k.id, Some(k.clone()));
        Ok(k)
    }

    pub fn get_key(&self, id: Uuid) -> Result<ApiKey, StoreError> {
        let k = self.read(|rtx| {
            let table = rtx.open_table(KEYS)?;
            let row = table
                .get(id.as_u128())?
                .ok_or(StoreError::Refused(Refusal::NotFound))?;
            from_record(id.as_u128(), row.value())
        })?;
        Ok(self.inner.keys.with_pending_usage(k))
    }

    pub fn list_keys(&self, after: Option<Uuid>, limit: usize) -> Result<Page<ApiKey>, StoreError> {
        let mut page = self.read(|rtx| {
            super::page_of(&rtx.open_table(KEYS)?, after, limit, from_record, |k| k.id)
        })?;
        page.items = page
            .items
            .into_iter()
            .map(|k| self.inner.keys.with_pending_usage(k))
            .collect();
        Ok(page)
    }

    /// Applies `change` to key `id` in one writer job and refreshes the cache.
    async fn change_key<F>(&self, id: Uuid, mut change: F) -> Result<ApiKey, StoreError>
    where
        F: FnMut(&WriteTransaction, ApiKey) -> Result<ApiKey, StoreError> + Send + 'static,
    {
        let k = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                let after = change(wtx, before)?;
                save(wtx, &after)?;
                Ok(after)
            })
            .await?;
        self.inner.keys.refresh(id, Some(k.clone()));
        Ok(self.inner.keys.with_pending_usage(k))
    }

    pub async fn update_key(&self, id: Uuid, patch: KeyPatch) -> Result<ApiKey, StoreError> {
        self.change_key(id, move |wtx, mut k| {
            if let Some(expires_at) = patch.expires_at {
                // Expiring the last usable admin key, now or later, is a
                // lock-out, as deactivating it would be.
                let before = k.clone();
                k.expires_at = expires_at;
                ensure_admin_remains(wtx, &before, Some(&k))?;
            }
            if let Some(name) = patch.name.clone() {
                k.name = name;
            }
            if let Some(rate_limit) = patch.rate_limit {
                k.rate_limit = rate_limit;
            }
            Ok(k)
        })
        .await
    }

    pub async fn set_key_active(&self, id: Uuid, active: bool) -> Result<ApiKey, StoreError> {
        self.change_key(id, move |wtx, mut k| {
            let before = k.clone();
            k.active = active;
            ensure_admin_remains(wtx, &before, Some(&k))?;
            Ok(k)
        })
        .await
    }

    /// Gives key `id` a new secret. The old one keeps working for `grace`
    /// (zero: not at all); a secret replaced earlier stops now. Expiry is not
    /// touched: rotation never extends a key's life.
    pub async fn rotate_key(
        &self,
        id: Uuid,
        grace: std::time::Duration,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret =
            key::generate_secret().map_err(|e| StoreError::Failed(Failure::Internal(e)))?;
        let new_hash = SecretHash::of(&secret);
        let prefix = key::display_prefix(&secret);
        let now = Timestamp::now();
        let k = self
            .change_key(id, move |wtx, mut k| {
                let mut index = wtx.open_table(KEYS_BY_HASH)?;
                if index.get(&new_hash.0)?.is_some() {
                    return Err(StoreError::Failed(Failure::Internal(
                        "secret collision".into(),
                    )));
                }
                if let Some((older, _)) = k.previous.take() {
                    index.remove(&older.0)?;
                }
                if !grace.is_zero() {
                    let until = now.plus(grace);
                    k.previous = Some((k.hash, until));
                } else {
                    index.remove(&k.hash.0)?;
                }
                index.insert(&new_hash.0, id.as_u128())?;
                k.hash = new_hash;
                k.prefix = prefix.clone();
                Ok(k)
            })
            .await?;
        Ok((k, secret))
    }

    pub async fn delete_key(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |wtx| {
            let k = load(wtx, id)?;
            ensure_admin_remains(wtx, &k, None)?;
            let mut index = wtx.open_table(KEYS_BY_HASH)?;
            index.remove(&k.hash.0)?;
            if let Some((old, _)) = k.previous {
                index.remove(&old.0)?;
            }
            drop(index);
            wtx.open_table(KEYS)?.remove(id.as_u128())?;
            Ok(())
        })
        .await?;
        self.inner.keys.refresh(id, None);
        Ok(())
    }

    /// Makes sure someone can administer the service. With `bootstrap` (the
    /// operator's `PACKD_BOOTSTRAP_KEY`) and no usable admin key, that value
    /// becomes the admin key `bootstrap`; with no keys at all and no value, a
    /// new admin key is generated for the caller to print once.
    pub async fn bootstrap(&self, bootstrap: Option<&str>) -> Result<Bootstrap, StoreError> {
        let now = Timestamp::now();
        let keys = self.read(|rtx| all_keys(&rtx.open_table(KEYS)?))?;
        if keys.iter().any(|k| k.is_live_admin(now)) {
            return Ok(Bootstrap::AdminExists);
        }
        match bootstrap {
            Some(secret) => {
                let hash = SecretHash::of(secret);
                if let Some(existing) = keys.iter().find(|k| k.hash == hash) {
                    // The same value again: bring that key back as an admin.
                    let id = existing.id;
                    self.change_key(id, |_, mut k| {
                        k.role = Role::Admin;
                        k.active = true;
                        k.expires_at = None;
                        Ok(k)
                    })
                    .await?;
                    return Ok(Bootstrap::FromEnvironment(id));
                }
                let k = self
                    .create_key_with_secret(
                        NewKey {
                            name: "bootstrap".into(),
                            role: Role::Admin,
                            expires_at: None,
                            rate_limit: None,
                        },
                        secret,
                    )
                    .await?;
                Ok(Bootstrap::FromEnvironment(k.id))
            }
            None if keys.is_empty() => {
                let (k, secret) = self
                    .create_key(NewKey {
                        name: "admin".into(),
                        role: Role::Admin,
                        expires_at: None,
                        rate_limit: None,
                    })
                    .await?;
                Ok(Bootstrap::Generated(k.id, secret))
            }
            None => Ok(Bootstrap::NoAdmin),
        }
    }

    /// Writes the usage counted since the last call in one transaction.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let pending = self.inner.keys.drain_usage();
        if pending.is_empty() {
            return Ok(0);
        }
        let n = pending.len();
        let batch = pending.clone();
        let result = self
            .write(move |wtx| {
                for &(id, count, last) in &batch {
                    let Ok(mut k) = load(wtx, id) else {
                        continue; // deleted since: its usage goes with it
                    };
                    k.use_count = k.use_count.saturating_add(count);
                    if k.last_used_at.is_none_or(|t| t.as_micros() < last) {
                        k.last_used_at = Some(Timestamp::from_micros(last));
                    }
                    save(wtx, &k)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                // The cache's copies still carry the old totals; the cells were drained.
                let fresh = self.read(|rtx| all_keys(&rtx.open_table(KEYS)?))?;
                for k in fresh
                    .into_iter()
                    .filter(|k| pending.iter().any(|p| p.0 == k.id))
                {
                    self.inner.keys.refresh(k.id, Some(k));
                }
                Ok(n)
            }
            Err(e) => {
                self.inner.keys.restore_usage(&pending);
                Err(e)
            }
        }
    }

    /// Number of keys, for tests and the CLI.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        self.read(|rtx| Ok(rtx.open_table(KEYS)?.len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by schema 1 (keys without a rate limit) opens, is
    /// migrated to schema 2 in one transaction, and its keys still work.
    #[tokio::test]
    async fn schema_1_keys_are_migrated_to_v2() {
        use redb::ReadableDatabase;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.redb");
        let id = Uuid::now_v7();
        let secret = "packd-schema-1-secret-0123456789abcdef";
        {
            let db = redb::Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(super::super::tables::META)
                .unwrap()
                .insert(super::super::tables::SCHEMA_VERSION_KEY, 1)
                .unwrap();
            let v1 = KeyRecord::V1(KeyV1 {
                name: "old".into(),
                role: 2,
                prefix: "packd-schem".into(),
                hash: SecretHash::of(secret).0,
                active: true,
                created_at: 1,
                expires_at: None,
                last_used_at: None,
                use_count: 7,
                previous: None,
            });
            wtx.open_table(KEYS)
                .unwrap()
                .insert(id.as_u128(), encode(&v1).unwrap().as_slice())
                .unwrap();
            wtx.open_table(KEYS_BY_HASH)
                .unwrap()
                .insert(&SecretHash::of(secret).0, id.as_u128())
                .unwrap();
            wtx.commit().unwrap();
        }
        let store = Store::open(&path, &crate::store::StoreOptions::default()).unwrap();
        let k = store.get_key(id).unwrap();
        assert_eq!(
            (k.name.as_str(), k.use_count, k.rate_limit),
            ("old", 7, None)
        );
        assert_eq!(store.authenticate(secret).unwrap().key_id, id);
        store.close();
        drop(store);

        let db = redb::Database::builder().open_read_only(&path).unwrap();
        let rtx = db.begin_read().unwrap();
        let version = rtx
            .open_table(super::super::tables::META)
            .unwrap()
            .get(super::super::tables::SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(version, 2);
        let row = rtx
            .open_table(KEYS)
            .unwrap()
            .get(id.as_u128())
            .unwrap()
            .unwrap();
        assert!(matches!(
            decode::<KeyRecord>("keys", row.value()).unwrap(),
            KeyRecord::V2(KeyV2 {
                rate_limit: None,
                ..
            })
        ));
    }
}
