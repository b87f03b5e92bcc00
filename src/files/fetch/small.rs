//! Small documents fetched whole into memory (a channel's document and
//! its signature): conditional with `If-None-Match`, bounded in bytes
//! before they are held, and in time.

use std::time::Duration;

use super::{FetchError, Fetcher, error_chain};
use crate::files::Budget;

/// The longest one small fetch may take in all.
const SMALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a small fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Small {
    /// 304: the document is the one the validator names.
    NotModified,
    Body {
        bytes: Vec<u8>,
        /// The answer's `ETag`, for the next `If-None-Match`.
        etag: Option<String>,
    },
}

impl Fetcher {
    /// GETs `url` whole, at most `max` bytes (a longer answer is refused
    /// as soon as it is known to be: by its `Content-Length` or by the
    /// bytes received). With `etag`, asks `If-None-Match`.
    pub async fn fetch_small(
        &self,
        url: &str,
        etag: Option<&str>,
        max: usize,
        budget: &Budget,
    ) -> Result<Small, FetchError> {
        let work = self.small(url, etag, max);
        tokio::select! {
            fetched = tokio::time::timeout(SMALL_TIMEOUT, work) => fetched.unwrap_or_else(|_| {
                Err(FetchError::Retry(format!("{url} took longer than {SMALL_TIMEOUT:?}")))
            }),
            why = budget.ended() => Err(FetchError::Retry(format!("stopped: {why}"))),
        }
    }

    async fn small(&self, url: &str, etag: Option<&str>, max: usize) -> Result<Small, FetchError> {
        let mut request = self.client()?.get(url);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| FetchError::Retry(format!("cannot reach {url}: {}", error_chain(&e))))?;
        let status = response.status();
        match status.as_u16() {
            200 => {}
            304 if etag.is_some() => return Ok(Small::NotModified),
            408 | 429 | 500..=599 => {
                return Err(FetchError::Retry(format!("{url} answered {status}")));
            }
            _ => return Err(FetchError::Fatal(format!("{url} answered {status}"))),
        }
        let too_big = || FetchError::Fatal(format!("{url} is over {max} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_big());
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Retry(format!("reading {url}: {}", error_chain(&e))))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Small::Body { bytes, etag })
    }
}
