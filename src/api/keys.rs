//! `/v1/keys` and `/v1/audit`: key management and the audit log (admin role).

use std::time::Duration;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ApiTags;
use super::auth::AdminAccess;
use super::error_docs::Errors;
use super::error_docs::status::{BODY, COMMON, S404, S409};
use super::pagination::{self, CursorParam, cursor_param, encode_cursor};
use super::types::api_enum;
use super::types::{Nullable, Text};
use crate::domain::Timestamp;
use crate::domain::key::{ApiKey, KEY_NAME_MAX_CHARS, Role, parse_key_name};
use crate::store::{AuditEntry, KeyPatch, NewKey, Store};

type ListErrors = Errors<COMMON>;
type GetErrors = Errors<{ COMMON | S404 }>;
type CreateErrors = Errors<{ COMMON | BODY }>;
type ChangeErrors = Errors<{ COMMON | BODY | S404 }>;
/// PATCH can expire the last admin key at once: 409 `last_admin`.
type PatchErrors = Errors<{ COMMON | BODY | S404 | S409 }>;
type GuardedErrors = Errors<{ COMMON | S404 | S409 }>;

/// Longest grace a rotation may give the old secret: 30 days.
pub const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

api_enum!(RoleDto as "Role" <=> Role { Read, Write, Admin });

/// An API key. The secret is never part of it.
#[derive(Debug, Object)]
#[oai(rename = "ApiKey")]
pub struct KeyDto {
    pub id: Uuid,
    pub name: String,
    pub role: RoleDto,
    /// The first characters of the secret: enough to recognise it, not to use it.
    pub prefix: String,
    pub active: bool,
    pub created_at: OffsetDateTime,
    /// When the key stops working; null: never.
    pub expires_at: Nullable<OffsetDateTime>,
    /// Requests per second this key may make; null: the server's
    /// `--rate-limit`; 0: unlimited.
    pub rate_limit: Nullable<u32>,
    /// Null until first used.
    pub last_used_at: Nullable<OffsetDateTime>,
    pub use_count: u64,
}

impl From<ApiKey> for KeyDto {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role.into(),
            prefix: k.prefix,
            active: k.active,
            created_at: k.created_at.to_offset_date_time(),
            expires_at: k.expires_at.map(Timestamp::to_offset_date_time).into(),
            rate_limit: k.rate_limit.into(),
            last_used_at: k.last_used_at.map(Timestamp::to_offset_date_time).into(),
            use_count: k.use_count,
        }
    }
}

/// An API key with its secret, shown this once.
#[derive(Debug, Object)]
#[oai(rename = "ApiKeyWithSecret")]
pub(super) struct KeyWithSecret {
    #[oai(flatten)]
    info: KeyDto,
    /// The secret. It is not stored and cannot be shown again.
    key: String,
}

#[derive(Debug, Object)]
#[oai(rename = "NewApiKey", deny_unknown_fields)]
struct NewKeyBody {
    /// 1 to 100 characters; no control characters, no white space at either end.
    name: Text<KEY_NAME_MAX_CHARS>,
    role: RoleDto,
    /// When the key stops working (RFC 3339); null: never. Left out: the
    /// server's `--key-ttl`, or never. A time already past makes a key that
    /// is expired from the start.
    expires_at: MaybeUndefined<Nullable<OffsetDateTime>>,
    /// Requests per second for this key; null or left out: the server's
    /// `--rate-limit`; 0: unlimited.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
    rate_limit: Option<Nullable<u32>>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyPatch", deny_unknown_fields)]
struct KeyPatchBody {
    /// A new name.
    name: MaybeUndefined<Text<KEY_NAME_MAX_CHARS>>,
    /// A new expiry (renew); null: never expires. A time already past expires
    /// the key at once (409 `last_admin` for the last usable admin key).
    expires_at: MaybeUndefined<Nullable<OffsetDateTime>>,
    /// A new rate limit (requests per second); null: the server's; 0: unlimited.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
    rate_limit: MaybeUndefined<Nullable<u32>>,
}

#[derive(Debug, Object)]
#[oai(rename = "RotateApiKey", deny_unknown_fields)]
struct RotateBody {
    /// Seconds the old secret keeps working (default 0: it stops at once).
    #[oai(validator(minimum(value = "0"), maximum(value = "2592000")))]
    grace_seconds: MaybeUndefined<u64>,
}

#[derive(Debug, Object)]
#[oai(rename = "ApiKeyList")]
struct KeyList {
    items: Vec<KeyDto>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Nullable<String>,
}

/// One audited request.
#[derive(Debug, Object)]
#[oai(rename = "AuditEntry")]
pub(super) struct AuditDto {
    id: Uuid,
    at: OffsetDateTime,
    /// The key that acted; null for the offline command line.
    key_id: Nullable<Uuid>,
    /// `METHOD /route`, ids written `{id}`.
    action: String,
    /// The resource acted on.
    target: String,
    /// The HTTP status the request ended with.
    status: u16,
    request_id: String,
}

impl From<AuditEntry> for AuditDto {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at.to_offset_date_time(),
            key_id: e.key_id.into(),
            action: e.action,
            target: e.target,
            status: e.status,
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "AuditList")]
struct AuditList {
    items: Vec<AuditDto>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Nullable<String>,
}

#[derive(ApiResponse)]
enum KeyCreated {
    /// Created; the secret is in `key`, shown this once.
    #[oai(status = 201)]
    Created(Json<KeyWithSecret>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum KeyDeleted {
    /// Deleted; the key stops working at once.
    #[oai(status = 204)]
    Deleted,
}

fn with_secret(k: ApiKey, secret: String) -> KeyWithSecret {
    KeyWithSecret {
        info: k.into(),
        key: secret,
    }
}

pub struct KeysApi {
    pub store: Store,
    /// Lifetime of keys created without `expires_at`; `None`: they never expire.
    pub key_ttl: Option<Duration>,
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create an API key.
    ///
    /// Role: `admin`. The answer holds the secret in `key`, the only time it is shown.
    #[oai(path = "/v1/keys", method = "post", operation_id = "create_key")]
    async fn create(
        &self,
        _auth: AdminAccess,
        body: Json<NewKeyBody>,
    ) -> Result<KeyCreated, CreateErrors> {
        let body = body.0;
        let name = parse_key_name(body.name.0)?;
        let expires_at = match (body.expires_at, self.key_ttl) {
            (MaybeUndefined::Value(Nullable(Some(t))), _) => {
                Some(Timestamp::from_offset_date_time(t))
            }
            (MaybeUndefined::Undefined, Some(ttl)) => Some(Timestamp::now().plus(ttl)),
            _ => None,
        };
        let (k, secret) = self
            .store
            .create_key(NewKey {
                name,
                role: body.role.into(),
                expires_at,
                rate_limit: body.rate_limit.and_then(|r| r.0),
            })
            .await?;
        let location = format!("/v1/keys/{}", k.id);
        Ok(KeyCreated::Created(Json(with_secret(k, secret)), location))
    }

    /// List API keys, oldest first. No secrets.
    ///
    /// Role: `admin`.
    #[oai(path = "/v1/keys", method = "get", operation_id = "list_keys")]
    async fn list(
        &self,
        _auth: AdminAccess,
        /// Page size, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<CursorParam>>,
    ) -> Result<Json<KeyList>, ListErrors> {
        let after = cursor_param(cursor.0.as_ref())?;
        let page = self.store.list_keys(after, pagination::limit(limit.0))?;
        Ok(Json(KeyList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_after.map(encode_cursor).into(),
        }))
    }

    /// Get an API key. No secret.
    ///
    /// Role: `admin`.
    #[oai(path = "/v1/keys/:id", method = "get", operation_id = "get_key")]
    async fn get(&self, _auth: AdminAccess, id: Path<Uuid>) -> Result<Json<KeyDto>, GetErrors> {
        Ok(Json(self.store.get_key(id.0)?.into()))
    }

    /// Rename or renew a key.
    ///
    /// Renew it by moving `expires_at` (null: never expires).
    ///
    /// Role: `admin`.
    #[oai(path = "/v1/keys/:id", method = "patch", operation_id = "update_key")]
    async fn update(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
        body: Json<KeyPatchBody>,
    ) -> Result<Json<KeyDto>, PatchErrors> {
        let body = body.0;
        let name = super::types::field(body.name, "name", parse_key_name)?;
        let expires_at = match body.expires_at {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(Nullable(t)) => Some(t.map(Timestamp::from_offset_date_time)),
        };
        let k = self
            .store
            .update_key(
                id.0,
                KeyPatch {
                    name,
                    expires_at,
                    rate_limit: match body.rate_limit {
                        MaybeUndefined::Undefined => None,
                        MaybeUndefined::Null => Some(None),
                        MaybeUndefined::Value(Nullable(v)) => Some(v),
                    },
                },
            )
            .await?;
        Ok(Json(k.into()))
    }

    /// Deactivate a key: it stops working with the next request.
    ///
    /// Role: `admin`. The last active admin key cannot be deactivated (409 `last_admin`).
    #[oai(
        path = "/v1/keys/:id/deactivate",
        method = "post",
        operation_id = "deactivate_key"
    )]
    async fn deactivate(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
    ) -> Result<Json<KeyDto>, GuardedErrors> {
        Ok(Json(self.store.set_key_active(id.0, false).await?.into()))
    }

    /// Activate a key again.
    ///
    /// Role: `admin`.
    #[oai(
        path = "/v1/keys/:id/activate",
        method = "post",
        operation_id = "activate_key"
    )]
    async fn activate(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
    ) -> Result<Json<KeyDto>, GetErrors> {
        Ok(Json(self.store.set_key_active(id.0, true).await?.into()))
    }

    /// Give a key a new secret.
    ///
    /// Role: `admin`. The old secret keeps working for `grace_seconds`
    /// (default 0), then stops. The key's expiry does not move. The answer
    /// holds the new secret in `key`, the only time it is shown.
    #[oai(
        path = "/v1/keys/:id/rotate",
        method = "post",
        operation_id = "rotate_key"
    )]
    async fn rotate(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
        body: Json<RotateBody>,
    ) -> Result<Json<KeyWithSecret>, ChangeErrors> {
        let seconds = match body.0.grace_seconds {
            MaybeUndefined::Undefined => 0,
            MaybeUndefined::Value(s) => s,
            MaybeUndefined::Null => {
                return Err(crate::domain::ValidationError::new(
                    "grace_seconds",
                    "must be a number of seconds (leave it out for 0)",
                )
                .into());
            }
        };
        let grace = Duration::from_secs(seconds.min(MAX_GRACE_SECONDS));
        let (k, secret) = self.store.rotate_key(id.0, grace).await?;
        Ok(Json(with_secret(k, secret)))
    }

    /// Delete a key: it stops working with the next request.
    ///
    /// Role: `admin`. The last active admin key cannot be deleted (409 `last_admin`).
    #[oai(path = "/v1/keys/:id", method = "delete", operation_id = "delete_key")]
    async fn delete(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
    ) -> Result<KeyDeleted, GuardedErrors> {
        self.store.delete_key(id.0).await?;
        Ok(KeyDeleted::Deleted)
    }

    /// Read the audit log.
    ///
    /// Oldest first: every write and every key change, with the acting
    /// key, the outcome status and the request id. Never a secret.
    ///
    /// Role: `admin`.
    #[oai(path = "/v1/audit", method = "get", operation_id = "list_audit")]
    async fn audit(
        &self,
        _auth: AdminAccess,
        /// Page size, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<CursorParam>>,
    ) -> Result<Json<AuditList>, ListErrors> {
        let after = cursor_param(cursor.0.as_ref())?;
        let page = self.store.list_audit(after, pagination::limit(limit.0))?;
        Ok(Json(AuditList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_after.map(encode_cursor).into(),
        }))
    }
}
