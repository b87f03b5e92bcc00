//! Cursors and page sizes shared by every list.
//!
//! A cursor is the last id of the previous page, versioned and base64url
//! encoded: opaque to clients, cheap to decode, and stable across restarts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::problem::Problem;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;
const CURSOR_V1: u8 = 1;

pub fn encode_cursor(after: Uuid) -> String {
    let mut bytes = [0u8; 17];
    bytes[0] = CURSOR_V1;
    bytes[1..].copy_from_slice(after.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
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
}
