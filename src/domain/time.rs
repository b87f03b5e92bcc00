//! Timestamps as packd stores and shows them: UTC, microsecond precision.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC.
///
/// Stored as a plain integer so the storage format does not depend on a date
/// library; converted to RFC 3339 only at the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            // A clock before 1970 is a broken host; clamping beats a panic in a request.
            .unwrap_or(0);
        Self(micros)
    }

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This time moved forward by `d`, saturating instead of overflowing.
    pub fn plus(self, d: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// This time moved back by `d`, saturating instead of overflowing.
    pub fn minus(self, d: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    pub fn to_offset_date_time(self) -> ::time::OffsetDateTime {
        ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH)
    }

    pub fn from_offset_date_time(t: ::time::OffsetDateTime) -> Self {
        let micros = t.unix_timestamp_nanos() / 1_000;
        Self(micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_offset_date_time() {
        let t = Timestamp::from_micros(1_764_000_000_123_456);
        assert_eq!(Timestamp::from_offset_date_time(t.to_offset_date_time()), t);
    }

    #[test]
    fn plus_and_minus_saturate() {
        let t = Timestamp::from_micros(10);
        assert_eq!(t.plus(std::time::Duration::from_micros(5)).as_micros(), 15);
        assert_eq!(t.minus(std::time::Duration::from_micros(5)).as_micros(), 5);
        assert_eq!(t.plus(std::time::Duration::MAX).as_micros(), i64::MAX);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(Timestamp::now().as_micros() > 1_577_836_800_000_000);
    }
}
