//! `GET /v1/backup`: the whole database as one redb file, for `packd backup`
//! and for anyone with an admin key and curl.

use std::sync::Arc;

use poem::Body;
use poem::http::StatusCode;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::AdminAccess;
use super::error_docs::Errors;
use super::error_docs::status::COMMON;
use super::problem::{ErrorCode, Problem};
use crate::domain::Timestamp;
use crate::store::Store;

pub const BACKUP_PATH: &str = "/v1/backup";

#[derive(ApiResponse)]
enum BackupResponse {
    /// A redb file holding every record: start `packd serve --db FILE` on it
    /// to restore.
    #[oai(status = 200, content_type = "application/octet-stream")]
    Ok(
        Binary<Body>,
        /// `attachment; filename="packd-backup-<time>.redb"`.
        #[oai(header = "Content-Disposition")]
        String,
        /// The size of the file, in bytes.
        #[oai(header = "Content-Length")]
        u64,
    ),
}

pub struct BackupApi {
    pub store: Store,
    /// One backup at a time: each reads the whole file and writes a copy.
    pub running: Arc<tokio::sync::Mutex<()>>,
}

fn failed(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "backup failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "the backup could not be written",
    )
}

#[OpenApi(tag = "ApiTags::Keys")]
impl BackupApi {
    /// Download a backup.
    ///
    /// Role: `admin`. A consistent snapshot of the whole database, taken
    /// while the service keeps serving (writes go on meanwhile and are not
    /// in it). The body is a redb file: restoring is starting packd on it.
    /// `packd backup --out FILE` calls this and writes the file safely.
    /// Backups run one at a time and are recorded in the audit log.
    #[oai(path = "/v1/backup", method = "get", operation_id = "backup")]
    async fn backup(&self, _auth: AdminAccess) -> Result<BackupResponse, Errors<COMMON>> {
        let _one_at_a_time = self.running.lock().await;
        // Beside the database, where there is room for a copy of it.
        let dir = self
            .store
            .path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .map_or_else(std::env::temp_dir, |p| p.to_path_buf());
        let tmp = dir.join(format!(".packd-backup-{}.redb", uuid::Uuid::now_v7()));
        let store = self.store.clone();
        let path = tmp.clone();
        let size = tokio::task::spawn_blocking(move || store.backup_to(&path))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        let file = tokio::fs::File::open(&tmp).await.map_err(failed);
        // Unlinked at once: the open handle still reads it, and nothing is
        // left behind if the client goes away or the process dies.
        let _ = std::fs::remove_file(&tmp);
        let stamp = Timestamp::now()
            .to_offset_date_time()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
            .replace(':', "-");
        Ok(BackupResponse::Ok(
            Binary(Body::from_async_read(file?)),
            format!("attachment; filename=\"packd-backup-{stamp}.redb\""),
            size,
        ))
    }
}
