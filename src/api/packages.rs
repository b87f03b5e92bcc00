//! `/v1/packages` and `/v1/statuses`: the package catalogue over HTTP.

use poem::http::StatusCode;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::error_docs::Errors;
use super::error_docs::status::{BODY, COMMON, S404, S409, S412};
use super::json::FastJson;
use super::pagination::{self, CursorParam, cursor_param, encode_cursor};
use super::problem::{ErrorCode, Problem};
use super::types::api_enum;
use super::types::{Described, IfMatch, Nullable, Sha256Rules, SourceUrlRules, Text, field};
use crate::domain::ValidationError;
use crate::domain::operation::OperationKind;
use crate::domain::package::{
    NAME_MAX_CHARS, Package, PackageName, PackagePatch, PackageVersion, Status, VERSION_MAX_CHARS,
};
use crate::domain::precondition::{Malformed, Precondition};
use crate::domain::source::{Schemes, Source};
use crate::files::Layout;
use crate::store::{ListPackages, NewPackage, Store};
use crate::trust::Trust;

type ListErrors = Errors<COMMON>;
type GetErrors = Errors<{ COMMON | S404 }>;
type CreateErrors = Errors<{ COMMON | BODY | S409 }>;
type PatchErrors = Errors<{ COMMON | BODY | S404 | S409 | S412 }>;
type DeleteErrors = Errors<{ COMMON | S404 | S409 | S412 }>;

api_enum!(StatusDto as "Status" <=> Status {
    Created,
    Downloaded,
    Active
});

api_enum!(OperationKindDto as "OperationKind" <=> OperationKind {
    Download,
    Activate,
    Deactivate,
    Sync
});

/// A package.
#[derive(Debug, Object, Serialize)]
#[oai(rename = "Package")]
pub struct PackageDto {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub status: StatusDto,
    /// Where its files come from; null for a catalogue entry whose
    /// operations are simulated.
    pub source: Nullable<SourceDto>,
    /// The absolute path of the package's files while it is `downloaded` or
    /// `active`, else null.
    pub path: Nullable<String>,
    /// The operation in flight for this package, or null.
    pub operation_id: Nullable<Uuid>,
    /// The channel that made it, or null for a package made by hand. A
    /// channel's package refuses changes of name, version and source.
    pub channel_id: Nullable<Uuid>,
    /// Never removed by retention; a channel never activates another
    /// version of its name over it.
    pub pinned: bool,
    /// Grows by one on every change; the `ETag` is this number in quotes.
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

impl PackageDto {
    /// The package as the API shows it; `layout` says where its files are.
    pub fn new(p: Package, layout: Option<&Layout>) -> Self {
        let path = layout
            .filter(|_| p.source.is_some() && p.status != Status::Created)
            .map(|l| l.package(&p.name, &p.version).display().to_string());
        Self {
            id: p.id,
            name: p.name.into_string(),
            version: p.version.into_string(),
            status: p.status.into(),
            source: p.source.map(SourceDto::from).into(),
            path: path.into(),
            operation_id: p.operation_id.into(),
            channel_id: p.channel_id.into(),
            pinned: p.pinned,
            revision: p.revision,
            created_at: p.created_at.to_offset_date_time(),
            updated_at: p.updated_at.to_offset_date_time(),
        }
    }
}

/// Where a package's files come from.
#[derive(Debug, Object, Serialize)]
#[oai(rename = "Source")]
pub struct SourceDto {
    /// An http or https URL (`file` only when the server allows it).
    pub url: String,
    /// The SHA-256 of the artifact, 64 lowercase hexadecimal digits.
    pub sha256: String,
    /// The artifact's size in bytes, checked when the download ends; null
    /// when not given.
    pub size: Nullable<u64>,
    /// The minisign signature (`.minisig` text) checked at each download
    /// when the server trusts publisher keys; null when not given.
    pub signature: Nullable<String>,
}

impl From<Source> for SourceDto {
    fn from(s: Source) -> Self {
        Self {
            url: s.url().to_string(),
            sha256: s.sha256().to_string(),
            size: s.size().into(),
            signature: s.signature().map(str::to_string).into(),
        }
    }
}

/// Where a package's files come from, as a client gives it.
#[derive(Debug, Object)]
#[oai(rename = "SourceInput", deny_unknown_fields)]
struct SourceBody {
    /// An http or https URL (`file` only when the server runs with
    /// `--allow-file-sources`), at most 2048 characters, with no user or
    /// password in it.
    url: Described<SourceUrlRules>,
    /// The SHA-256 the artifact must have: 64 lowercase hexadecimal digits.
    sha256: Described<Sha256Rules>,
    /// The size in bytes the artifact must have, if known.
    size: MaybeUndefined<i64>,
    /// The text of the artifact's minisign signature (`.minisig`, at most
    /// 4 KiB), whose trusted comment reads `name=<name> version=<version>`.
    /// Required when the server trusts publisher keys (`GET /v1/trust`);
    /// otherwise kept but not checked.
    signature: MaybeUndefined<String>,
}

impl SourceBody {
    fn parse(self, schemes: Schemes, trust: &Trust) -> Result<Source, ValidationError> {
        let signature = self.signature.take();
        match &signature {
            Some(text) => crate::trust::check_text(text)
                .map_err(|m| ValidationError::new("source.signature", &m))?,
            None if trust.required() => {
                return Err(ValidationError::new(
                    "source.signature",
                    "required: the server trusts publisher keys, so every source carries \
                     the minisign signature of its artifact",
                ));
            }
            None => {}
        }
        Ok(
            Source::parse(&self.url.0, &self.sha256.0, self.size.take(), schemes)?
                .signed(signature),
        )
    }
}

/// A new package. Its status starts as `created`.
#[derive(Debug, Object)]
#[oai(rename = "NewPackage", deny_unknown_fields)]
struct NewPackageBody {
    /// 1 to 200 characters; no control characters, no white space at either
    /// end. Brought to Unicode NFC (so `é` composed and decomposed are one
    /// name), and at most 200 bytes once encoded as a file name (every byte
    /// outside `A-Z a-z 0-9 . _ + -` takes 3; 422 past that).
    name: Text<NAME_MAX_CHARS>,
    /// 1 to 50 characters; no control characters, no white space at either
    /// end; NFC and the file-name budget as for `name`.
    version: Text<VERSION_MAX_CHARS>,
    /// Where its files come from; absent or null for a catalogue entry
    /// whose operations are simulated.
    source: MaybeUndefined<SourceBody>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(rename = "PackagePatch", deny_unknown_fields)]
struct PackagePatchBody {
    /// A new name (same rules as on creation).
    name: MaybeUndefined<Text<NAME_MAX_CHARS>>,
    /// A new version (same rules as on creation).
    version: MaybeUndefined<Text<VERSION_MAX_CHARS>>,
    /// A new source, or null to remove it. A changed name, version or
    /// source sets the status back to `created`.
    source: MaybeUndefined<SourceBody>,
    /// Pin (true) or unpin: a pinned package is never removed by retention,
    /// and a channel never activates another version of its name over it.
    /// Allowed whatever the status.
    pinned: Option<bool>,
    /// Not writable: statuses change only through operations. Any value is
    /// refused with 422 `validation_failed`.
    status: MaybeUndefined<serde_json::Value>,
}

/// One page of packages, oldest first.
#[derive(Debug, Object, Serialize)]
#[oai(rename = "PackageList")]
struct PackageList {
    items: Vec<PackageDto>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Nullable<String>,
}

#[derive(Debug, Object)]
struct StatusInfo {
    name: StatusDto,
    description: String,
}

#[derive(Debug, Object)]
struct Transition {
    operation: OperationKindDto,
    from: StatusDto,
    to: StatusDto,
    /// What the operation does.
    description: String,
    /// What its success does to the other versions of the package's name
    /// in the same transaction, if anything: the one in `from` moves to `to`.
    same_name: Nullable<SameName>,
}

/// A status change of the other versions of a name.
#[derive(Debug, Object)]
struct SameName {
    from: StatusDto,
    to: StatusDto,
}

/// The statuses and the transitions between them. Named apart from its
/// `statuses` field: generated clients make a variable of each, and a
/// model named like its field shadowed it (mypy failed on the result).
#[derive(Debug, Object)]
#[oai(rename = "StatusTable")]
pub(super) struct Statuses {
    statuses: Vec<StatusInfo>,
    transitions: Vec<Transition>,
}

fn etag(p: &Package) -> String {
    format!("\"{}\"", p.revision)
}

#[derive(ApiResponse)]
enum CreatedResponse {
    /// Created.
    #[oai(status = 201)]
    Created(
        Json<PackageDto>,
        /// Where the new package lives.
        #[oai(header = "Location")]
        String,
        /// The package's revision, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
enum PackageResponse {
    /// The package.
    #[oai(status = 200)]
    Ok(
        FastJson<PackageDto>,
        /// The package's revision, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

impl PackageResponse {
    fn new(p: Package, layout: Option<&Layout>) -> Self {
        let tag = etag(&p);
        PackageResponse::Ok(FastJson(PackageDto::new(p, layout)), tag)
    }
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

fn malformed_if_match() -> Problem {
    let mut p = Problem::bad_request(
        "If-Match must be `*` or a comma-separated list of entity tags such as \"3\"",
    );
    p.field = Some("If-Match".into());
    p
}

/// The request's `If-Match`, read from the raw header: the typed parameter
/// (kept for the description) turns a value that is not visible ASCII into
/// no header at all, which would drop the client's condition in silence.
/// Several field lines form one list (RFC 9110 §5.3).
fn if_match_of(req: &poem::Request) -> Result<Precondition, Problem> {
    let mut lines = req
        .headers()
        .get_all(poem::http::header::IF_MATCH)
        .iter()
        .peekable();
    if lines.peek().is_none() {
        return Ok(Precondition::None);
    }
    let values: Vec<&str> = lines
        .map(|v| v.to_str().map_err(|_| malformed_if_match()))
        .collect::<Result<_, _>>()?;
    Precondition::parse(Some(&values.join(","))).map_err(|Malformed| malformed_if_match())
}

pub struct PackagesApi {
    pub store: Store,
    /// Which source URLs the server accepts.
    pub schemes: Schemes,
    /// The data directory, for the packages' `path`.
    pub layout: Option<Layout>,
    /// The publisher keys trusted now: with any, sources must be signed.
    pub trust: Trust,
}

#[OpenApi(tag = "ApiTags::Packages")]
impl PackagesApi {
    /// Create a package.
    ///
    /// Role: `write`. The (name, version) pair is unique: a second one is 409 `duplicate`.
    #[oai(
        path = "/v1/packages",
        method = "post",
        operation_id = "create_package"
    )]
    async fn create(
        &self,
        _auth: WriteAccess,
        body: Json<NewPackageBody>,
    ) -> Result<CreatedResponse, CreateErrors> {
        let body = body.0;
        let new = NewPackage {
            name: PackageName::parse(body.name.0)?,
            version: PackageVersion::parse(body.version.0)?,
            source: body
                .source
                .take()
                .map(|s| s.parse(self.schemes, &self.trust))
                .transpose()?,
        };
        let p = self.store.create_package(new).await?;
        let location = format!("/v1/packages/{}", p.id);
        let tag = etag(&p);
        Ok(CreatedResponse::Created(
            Json(PackageDto::new(p, self.layout.as_ref())),
            location,
            tag,
        ))
    }

    /// List packages, oldest first.
    ///
    /// Role: `read`. Filters combine: `status`, the exact `name` and
    /// `pinned`.
    #[oai(path = "/v1/packages", method = "get", operation_id = "list_packages")]
    async fn list(
        &self,
        _auth: ReadAccess,
        /// Only packages with this status.
        status: Query<Option<StatusDto>>,
        /// Only packages with exactly this name.
        #[oai(validator(min_length = 1, max_length = 200))]
        name: Query<Option<String>>,
        /// Only pinned packages (true) or only the others (false).
        pinned: Query<Option<bool>>,
        /// Page size, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<CursorParam>>,
    ) -> Result<FastJson<PackageList>, ListErrors> {
        let q = ListPackages {
            status: status.0.map(Into::into),
            // Stored names are NFC: so is the filter.
            name: name.0.map(crate::domain::package::nfc),
            pinned: pinned.0,
            after: cursor_param(cursor.0.as_ref())?,
            limit: pagination::limit(limit.0),
        };
        let page = self.store.list_packages(&q)?;
        Ok(FastJson(PackageList {
            items: page
                .items
                .into_iter()
                .map(|p| PackageDto::new(p, self.layout.as_ref()))
                .collect(),
            next_cursor: page.next_after.map(encode_cursor).into(),
        }))
    }

    /// Get a package.
    ///
    /// Role: `read`. The `ETag` header carries the revision for `If-Match`.
    #[oai(
        path = "/v1/packages/:id",
        method = "get",
        operation_id = "get_package"
    )]
    async fn get(&self, _auth: ReadAccess, id: Path<Uuid>) -> Result<PackageResponse, GetErrors> {
        let p = self.store.get_package(id.0)?;
        Ok(PackageResponse::new(p, self.layout.as_ref()))
    }

    /// Edit a package's name, version or source, or pin it.
    ///
    /// Role: `write`. With `If-Match`, a stale revision is 412. A changed
    /// `name`, `version` or `source` sets the status back to `created` and
    /// removes the package's files. Of an `active` package it is 409
    /// `invalid_transition` (deactivate it first); of a channel's package,
    /// 409 `conflict`. `pinned` changes nothing on the machine and is
    /// allowed whatever the status. With an operation in flight: 409
    /// `operation_in_progress`.
    #[oai(
        path = "/v1/packages/:id",
        method = "patch",
        operation_id = "update_package"
    )]
    async fn update(
        &self,
        req: &poem::Request,
        _auth: WriteAccess,
        id: Path<Uuid>,
        /// The `ETag` last seen: `"<revision>"`, or `*`.
        #[oai(name = "If-Match")]
        _if_match: Header<Option<IfMatch>>,
        body: Json<PackagePatchBody>,
    ) -> Result<PackageResponse, PatchErrors> {
        let body = body.0;
        if !body.status.is_undefined() {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                "status: statuses change only through operations \
                 (POST /v1/packages/{id}/download, /activate, /deactivate)",
            );
            p.field = Some("status".into());
            return Err(p.into());
        }
        let patch = PackagePatch {
            name: field(body.name, "name", PackageName::parse)?,
            version: field(body.version, "version", PackageVersion::parse)?,
            source: match body.source {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(s) => Some(Some(s.parse(self.schemes, &self.trust)?)),
            },
            pinned: body.pinned,
        };
        let precondition = if_match_of(req)?;
        // The old files are journaled with the change and removed in the
        // background (files::remove).
        let (_, p) = self.store.update_package(id.0, patch, precondition).await?;
        Ok(PackageResponse::new(p, self.layout.as_ref()))
    }

    /// Delete a package and its files.
    ///
    /// Role: `write`. `If-Match` as for PATCH. With an operation in flight:
    /// 409 `operation_in_progress`. An `active` package: 409
    /// `invalid_transition` (deactivate it first).
    #[oai(
        path = "/v1/packages/:id",
        method = "delete",
        operation_id = "delete_package"
    )]
    async fn delete(
        &self,
        req: &poem::Request,
        _auth: WriteAccess,
        id: Path<Uuid>,
        /// The `ETag` last seen: `"<revision>"`, or `*`.
        #[oai(name = "If-Match")]
        _if_match: Header<Option<IfMatch>>,
    ) -> Result<DeletedResponse, DeleteErrors> {
        let precondition = if_match_of(req)?;
        // Its files are journaled with the delete and removed in the
        // background: a package of 100,000 files does not hold the answer.
        self.store.delete_package(id.0, precondition).await?;
        Ok(DeletedResponse::Deleted)
    }

    /// List the statuses and their transitions.
    ///
    /// Role: `read`.
    #[oai(path = "/v1/statuses", method = "get", operation_id = "list_statuses")]
    async fn statuses(&self, _auth: ReadAccess) -> Result<Json<Statuses>, ListErrors> {
        Ok(Json(status_table()))
    }
}

/// The status table `GET /v1/statuses` answers (and the description's
/// example of it): the domain's statuses and transitions.
pub(super) fn status_table() -> Statuses {
    Statuses {
        statuses: Status::ALL
            .iter()
            .map(|s| StatusInfo {
                name: (*s).into(),
                description: s.description().into(),
            })
            .collect(),
        transitions: OperationKind::PACKAGE_KINDS
            .iter()
            .filter_map(|k| {
                let (from, to) = k.transition()?;
                Some(Transition {
                    operation: (*k).into(),
                    from: from.into(),
                    to: to.into(),
                    description: k.description().into(),
                    same_name: k
                        .displaces()
                        .map(|(from, to)| SameName {
                            from: from.into(),
                            to: to.into(),
                        })
                        .into(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    #[test]
    fn fast_json_writes_what_the_schema_describes() {
        let at = Timestamp::from_micros(1_790_000_000_123_456);
        let package = |operation_id: Option<Uuid>| PackageDto {
            id: Uuid::now_v7(),
            name: "jq \"quoted\" \u{e9}".into(),
            version: "1.7.1".into(),
            status: StatusDto::Downloaded,
            source: Nullable(operation_id.map(|_| SourceDto {
                url: "https://example.org/jq-1.7.1.tar.gz".into(),
                sha256: "ab".repeat(32),
                size: Nullable(Some(1234)),
                signature: Nullable(Some("untrusted comment: x\nRW==\n".into())),
            })),
            path: Nullable(operation_id.map(|_| "/var/lib/packd/data/packages/jq/1.7.1".into())),
            operation_id: operation_id.into(),
            channel_id: operation_id.into(),
            pinned: operation_id.is_some(),
            revision: 7,
            created_at: at.to_offset_date_time(),
            updated_at: Timestamp::from_micros(1_790_000_000_000_000).to_offset_date_time(),
        };
        let list = PackageList {
            items: vec![package(None), package(Some(Uuid::now_v7()))],
            next_cursor: Nullable(Some("abc".into())),
        };
        let (openapi, serde) = super::super::json::both_encodings(&list);
        assert_eq!(openapi, serde);
        let last = PackageList {
            items: vec![],
            next_cursor: Nullable(None),
        };
        let (openapi, serde) = super::super::json::both_encodings(&last);
        assert_eq!(openapi, serde);
    }
}
