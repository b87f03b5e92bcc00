//! Bootstrap: making sure someone can administer the service at start-up,
//! from the operator's `PACKD_BOOTSTRAP_KEY` or a generated key.

use uuid::Uuid;

use super::super::tables::KEYS;
use super::super::{Store, StoreError};
use super::NewKey;
use super::record::all_keys;
use crate::domain::Timestamp;
use crate::domain::key::{Role, SecretHash};

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

impl Store {
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
}
