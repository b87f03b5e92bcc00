//! API keys: the operations on them (create, list, change, rotate, delete),
//! and the rule that an admin key must remain. The rest has a home each:
//! `record.rs` the rows and their migration, `cache.rs` the in-memory
//! authentication, `usage.rs` the batched usage counters, `bootstrap.rs` the
//! start-up policy.

mod bootstrap;
mod cache;
mod record;
mod usage;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

pub use self::bootstrap::Bootstrap;
pub(crate) use self::cache::KeyCache;
pub use self::cache::{AuthFailure, Principal};
pub(super) use self::record::migrate_keys_to_v2;
use self::record::{all_keys, from_record, insert_key, load, save};
use super::tables::{KEYS, KEYS_BY_HASH};
use super::{Failure, Page, Refusal, Store, StoreError};
use crate::domain::Timestamp;
use crate::domain::key::{self, ApiKey, Role, SecretHash};

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

/// Refuses a change of `before` into `after` (`None`: deleted) that the
/// domain's rule says would leave the service without an admin.
fn ensure_admin_remains(
    wtx: &WriteTransaction,
    before: &ApiKey,
    after: Option<&ApiKey>,
) -> Result<(), StoreError> {
    let keys = all_keys(&wtx.open_table(KEYS)?)?;
    let others = keys.iter().filter(|k| k.id != before.id);
    if key::admin_remains(before, after, others, Timestamp::now()) {
        Ok(())
    } else {
        Err(StoreError::Refused(Refusal::LastAdmin))
    }
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

    /// Number of keys, for tests and the CLI.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        self.read(|rtx| Ok(rtx.open_table(KEYS)?.len()?))
    }
}
