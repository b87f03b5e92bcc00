//! `/v1/channels` (follow a publisher's signed document, and sync it as an
//! operation) and `GET /v1/host` (this host's id, which places it in a
//! channel's waves).

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::auth::{AdminAccess, ReadAccess};
use super::error_docs::Errors;
use super::error_docs::status::{BODY, COMMON, S404, S409};
use super::operations::{Accepted, OperationDto};
use super::types::{Nullable, api_enum, present};
use crate::domain::channel::{ActivateMode, Channel, DEFAULT_INTERVAL, check_url, parse_interval};
use crate::files::Layout;
use crate::store::{NewChannel, Refusal, Store, StoreError};
use crate::trust::Trust;

api_enum!(ActivateModeDto as "ActivateMode" <=> ActivateMode {
    Manual,
    Auto
});

/// A channel this host follows.
#[derive(Debug, Object)]
#[oai(rename = "Channel")]
pub struct ChannelDto {
    id: Uuid,
    /// The document's URL; its signature is at `<url>.minisig`.
    url: String,
    /// The document's `channel`, null until one was applied.
    name: Nullable<String>,
    /// The last applied document's sequence; a lower one is refused.
    sequence: Nullable<u64>,
    /// The last applied document's expiry.
    expires: Nullable<time::OffsetDateTime>,
    /// `auto`: the version the document marks active is activated once
    /// downloaded; `manual`: versions are only downloaded.
    activate: ActivateModeDto,
    /// Time between syncs (each spread by ±10 %), e.g. `5m`.
    interval: String,
    last_checked_at: Nullable<time::OffsetDateTime>,
    /// When a document with a new sequence was last applied.
    last_changed_at: Nullable<time::OffsetDateTime>,
    /// Why the last sync failed or refused its document; null after one
    /// that succeeded.
    last_error: Nullable<String>,
    /// The sync in flight, or null.
    operation_id: Nullable<Uuid>,
    created_at: time::OffsetDateTime,
}

impl From<Channel> for ChannelDto {
    fn from(c: Channel) -> Self {
        let time = |t: Option<crate::domain::Timestamp>| t.map(|t| t.to_offset_date_time()).into();
        Self {
            id: c.id,
            url: c.url,
            name: c.name.into(),
            sequence: c.sequence.into(),
            expires: time(c.expires),
            activate: c.activate.into(),
            interval: humantime::format_duration(c.interval).to_string(),
            last_checked_at: time(c.last_checked_at),
            last_changed_at: time(c.last_changed_at),
            last_error: c.last_error.into(),
            operation_id: c.operation_id.into(),
            created_at: c.created_at.to_offset_date_time(),
        }
    }
}

/// A channel to follow.
#[derive(Debug, Object)]
#[oai(rename = "NewChannel", deny_unknown_fields)]
struct NewChannelBody {
    /// The document's http or https URL (no query, no credentials); its
    /// signature must be at the same URL with `.minisig` appended.
    #[oai(validator(min_length = 1, max_length = 2048))]
    url: String,
    /// Default `manual`.
    activate: MaybeUndefined<ActivateModeDto>,
    /// 1s to 7d, default `5m`.
    #[oai(validator(min_length = 1, max_length = 32))]
    interval: MaybeUndefined<String>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(rename = "ChannelPatch", deny_unknown_fields)]
struct ChannelPatchBody {
    activate: MaybeUndefined<ActivateModeDto>,
    /// 1s to 7d; counts from the last check.
    #[oai(validator(min_length = 1, max_length = 32))]
    interval: MaybeUndefined<String>,
}

#[derive(Debug, Object)]
#[oai(rename = "ChannelList")]
struct ChannelList {
    /// Every channel, oldest first (at most 1000).
    items: Vec<ChannelDto>,
}

/// This host, as channels see it.
#[derive(Debug, Object)]
#[oai(rename = "Host")]
pub(super) struct HostDto {
    /// Made at the first start and kept in the database: where this host
    /// falls in a channel's waves (`rollout`).
    host_id: Uuid,
    /// The packd version.
    version: String,
    /// The data directory.
    data_dir: Nullable<String>,
}

#[derive(ApiResponse)]
enum ChannelCreated {
    /// Followed; its first sync is queued.
    #[oai(status = 201)]
    Created(
        Json<ChannelDto>,
        /// `/v1/channels/{id}`.
        #[oai(header = "Location")]
        String,
    ),
}

#[derive(ApiResponse)]
enum ChannelDeleted {
    /// No longer followed; its packages stay, as ordinary packages.
    #[oai(status = 204)]
    Deleted,
}

/// The 409 of a channel made while no key is trusted.
pub(super) const NEEDS_A_KEY: &str = "channels need a trusted publisher key (--trusted-key): a channel's document is only applied when signed";

pub struct ChannelsApi {
    pub store: Store,
    pub trust: Trust,
    pub layout: Option<Layout>,
}

#[OpenApi(tag = "ApiTags::Channels")]
impl ChannelsApi {
    /// Follow a channel.
    ///
    /// Role: `admin`. The document at `url` and its signature are fetched
    /// at once (a `sync` operation) and every `interval` after. Channels
    /// need at least one trusted key: else 409 `conflict`, as for a URL
    /// already followed.
    #[oai(
        path = "/v1/channels",
        method = "post",
        operation_id = "create_channel"
    )]
    async fn create(
        &self,
        _auth: AdminAccess,
        body: Json<NewChannelBody>,
    ) -> Result<ChannelCreated, Errors<{ COMMON | BODY | S409 }>> {
        let body = body.0;
        let url = check_url(&body.url)?;
        let interval = present(body.interval, "interval")?
            .map(|i| parse_interval(&i))
            .transpose()?
            .unwrap_or(DEFAULT_INTERVAL);
        let activate = present(body.activate, "activate")?;
        if !self.trust.required() {
            return Err(StoreError::Refused(Refusal::Conflict(NEEDS_A_KEY.into())).into());
        }
        let channel = self
            .store
            .create_channel(NewChannel {
                url,
                activate: activate.map_or(ActivateMode::Manual, Into::into),
                interval,
            })
            .await?;
        self.store.channels_changed().notify_one();
        let location = format!("/v1/channels/{}", channel.id);
        Ok(ChannelCreated::Created(Json(channel.into()), location))
    }

    /// List the channels followed.
    ///
    /// Role: `read`.
    #[oai(path = "/v1/channels", method = "get", operation_id = "list_channels")]
    async fn list(&self, _auth: ReadAccess) -> Result<Json<ChannelList>, Errors<COMMON>> {
        Ok(Json(ChannelList {
            items: self
                .store
                .list_channels()?
                .into_iter()
                .map(Into::into)
                .collect(),
        }))
    }

    /// Get a channel.
    ///
    /// Role: `read`.
    #[oai(
        path = "/v1/channels/:id",
        method = "get",
        operation_id = "get_channel"
    )]
    async fn get(
        &self,
        _auth: ReadAccess,
        id: Path<Uuid>,
    ) -> Result<Json<ChannelDto>, Errors<{ COMMON | S404 }>> {
        Ok(Json(self.store.get_channel(id.0)?.into()))
    }

    /// Change how a channel is followed.
    ///
    /// Role: `admin`. `activate` and `interval`; switching to `auto`
    /// activates at once what the last document marks active.
    #[oai(
        path = "/v1/channels/:id",
        method = "patch",
        operation_id = "update_channel"
    )]
    async fn update(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
        body: Json<ChannelPatchBody>,
    ) -> Result<Json<ChannelDto>, Errors<{ COMMON | BODY | S404 }>> {
        let body = body.0;
        let interval = present(body.interval, "interval")?
            .map(|s| parse_interval(&s))
            .transpose()?;
        let activate = present(body.activate, "activate")?.map(Into::into);
        Ok(Json(
            self.store
                .update_channel(id.0, activate, interval)
                .await?
                .into(),
        ))
    }

    /// Stop following a channel.
    ///
    /// Role: `admin`. The packages it made stay, as ordinary packages
    /// (their `channel_id` becomes null).
    #[oai(
        path = "/v1/channels/:id",
        method = "delete",
        operation_id = "delete_channel"
    )]
    async fn delete(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
    ) -> Result<ChannelDeleted, Errors<{ COMMON | S404 }>> {
        self.store.delete_channel(id.0).await?;
        Ok(ChannelDeleted::Deleted)
    }

    /// Sync a channel now.
    ///
    /// Role: `admin`. 202 with the `sync` operation; if one is
    /// in flight already, that one (two syncs of a channel never run at
    /// once).
    #[oai(
        path = "/v1/channels/:id/sync",
        method = "post",
        operation_id = "sync_channel"
    )]
    async fn sync(
        &self,
        _auth: AdminAccess,
        id: Path<Uuid>,
    ) -> Result<Accepted, Errors<{ COMMON | S404 }>> {
        let (op, _) = self.store.start_sync(id.0).await?;
        let location = format!("/v1/operations/{}", op.id);
        Ok(Accepted::Accepted(Json(OperationDto::from(op)), location))
    }

    /// Describe this host.
    ///
    /// Its id (its place in a channel's waves), the packd version and the
    /// data directory.
    ///
    /// Role: `read`.
    #[oai(path = "/v1/host", method = "get", operation_id = "get_host")]
    async fn host(&self, _auth: ReadAccess) -> Result<Json<HostDto>, Errors<COMMON>> {
        Ok(Json(HostDto {
            host_id: self.store.identity()?.database_id,
            version: env!("CARGO_PKG_VERSION").into(),
            data_dir: self
                .layout
                .as_ref()
                .map(|l| l.root().display().to_string())
                .into(),
        }))
    }
}
