//! Cursors and page sizes shared by every list.
//!
//! A cursor is the last id of the previous page, versioned and base64url
//! encoded: opaque to clients, cheap to decode, and stable across restarts.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use uuid::Uuid;

use super::problem::Problem;
use super::types::{Described, StringRules};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;
const CURSOR_V1: u8 = 1;

pub fn encode_cursor(after: Uuid) -> String {
    let mut bytes = [0u8; 17];
    bytes[0] = CURSOR_V1;
    bytes[1..].copy_from_slice(after.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The shape of every cursor this server hands out: base64url of the version
/// byte 1 and 16 id bytes (23 characters; the last carries two zero bits).
const CURSOR_PATTERN: &str = "^A[Q-Za-f][A-Za-z0-9_-]{20}[AEIMQUYcgkosw048]$";

/// The `cursor` query parameter: its exact shape is in the description, and
/// `decode_cursor` checks it. (poem-openapi's `pattern` validator would
/// compile the regular expression on every request.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorRules;

impl StringRules for CursorRules {
    fn name() -> Cow<'static, str> {
        "cursor".into()
    }
    const MIN: usize = 23;
    const MAX: usize = 23;
    const PATTERN: &'static str = CURSOR_PATTERN;
}

pub type CursorParam = Described<CursorRules>;

/// Decodes the `cursor` parameter, if any.
pub fn cursor_param(cursor: Option<&CursorParam>) -> Result<Option<Uuid>, Problem> {
    decode_cursor(cursor.map(|c| c.0.as_str()))
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<Uuid>, Problem> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || Problem::bad_request("`cursor` is not a cursor this server handed out");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    match bytes.as_slice() {
        [CURSOR_V1, id @ ..] if id.len() == 16 => {
            Ok(Some(Uuid::from_slice(id).map_err(|_| bad())?))
        }
        _ => Err(bad()),
    }
}

/// The page size: validated by the OpenAPI layer (1..=1000), defaulted here.
pub fn limit(requested: Option<u32>) -> usize {
    requested.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(Some(&encode_cursor(id))).unwrap(), Some(id));
        assert_eq!(decode_cursor(None).unwrap(), None);
    }

    #[test]
    fn bad_cursors_are_400() {
        for bad in ["", "!!", "AQ", "AAAAAAAAAAAAAAAAAAAAAAA", &"A".repeat(100)] {
            let p = decode_cursor(Some(bad)).unwrap_err();
            assert_eq!(p.status.as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn every_cursor_handed_out_matches_the_described_pattern() {
        // The pattern is checked here by hand: a regex crate is not worth a
        // dependency for one test.
        for _ in 0..1000 {
            let c = encode_cursor(Uuid::now_v7());
            let b = c.as_bytes();
            assert_eq!(b.len(), 23, "{c}");
            assert_eq!(b[0], b'A', "{c}");
            assert!(matches!(b[1], b'Q'..=b'Z' | b'a'..=b'f'), "{c}");
            assert!(b"AEIMQUYcgkosw048".contains(&b[22]), "{c}");
        }
    }
}
