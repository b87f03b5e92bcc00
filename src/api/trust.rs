//! `GET /v1/trust`: the publisher keys the server trusts now, so a client
//! can tell whether its sources must be signed and by whom.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::ReadAccess;
use super::error_docs::Errors;
use super::error_docs::status::COMMON;
use crate::trust::Trust;

/// One trusted minisign public key.
#[derive(Debug, Object)]
#[oai(rename = "TrustedKey")]
pub(super) struct TrustedKeyDto {
    /// minisign's key id, 16 hexadecimal digits (as `minisign -V` prints it).
    id: String,
    /// The public key line (base64), as in its `.pub` file.
    public_key: String,
    /// The untrusted comment of its `.pub` file, when it came from one.
    comment: Option<String>,
}

/// The keys trusted now.
#[derive(Debug, Object)]
#[oai(rename = "TrustedKeys")]
pub(super) struct TrustedKeys {
    /// Empty: sources need no signature, and a given one is not checked.
    items: Vec<TrustedKeyDto>,
    /// Whether every source must carry a signature by one of them.
    signatures_required: bool,
}

pub struct TrustApi {
    pub trust: Trust,
}

#[OpenApi(tag = "ApiTags::Service")]
impl TrustApi {
    /// List the trusted publisher keys.
    ///
    /// Role: `read`. With one or more, a source without a `signature` is
    /// 422 and every download checks the signature against these keys.
    #[oai(path = "/v1/trust", method = "get", operation_id = "list_trusted_keys")]
    async fn list(&self, _auth: ReadAccess) -> Result<Json<TrustedKeys>, Errors<COMMON>> {
        let keys = self.trust.keys();
        Ok(Json(TrustedKeys {
            signatures_required: !keys.is_empty(),
            items: keys
                .iter()
                .map(|k| TrustedKeyDto {
                    id: k.id.clone(),
                    public_key: k.line.clone(),
                    comment: k.comment.clone(),
                })
                .collect(),
        }))
    }
}
