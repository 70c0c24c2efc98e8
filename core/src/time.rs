//! The recorded time of an entry: RFC 3339, UTC, always exactly six fractional digits, so
//! the text that is hashed has one spelling per instant.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Why a recorded time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {0:?} is not RFC 3339 UTC with six fractional digits (e.g. 2026-11-22T01:48:30.123456Z)")]
pub struct TimeError(String);

/// An instant in canonical text form: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordedAt(String);

impl RecordedAt {
    /// The current time, truncated to microseconds. (Reading the clock is the one
    /// impurity here; the engine never calls it: it is handed times by its caller.)
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// From a date-time in any offset; converted to UTC, truncated to microseconds.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(UtcOffset::UTC);
        #[allow(clippy::unwrap_used)] // INVARIANT: every UTC OffsetDateTime fits FORMAT.
        Self(t.format(FORMAT).unwrap())
    }

    /// From microseconds since the Unix epoch.
    pub fn from_unix_micros(us: i64) -> Result<Self, TimeError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .map(Self::from_datetime)
            .map_err(|_| TimeError(us.to_string()))
    }

    /// Parses the canonical form only.
    pub fn parse(s: &str) -> Result<Self, TimeError> {
        let t = PrimitiveDateTime::parse(s, FORMAT).map_err(|_| TimeError(s.to_owned()))?;
        let canonical = Self::from_datetime(t.assume_utc());
        if canonical.0 != s {
            return Err(TimeError(s.to_owned()));
        }
        Ok(canonical)
    }

    /// Wraps text read back from storage without parsing it. Such a value is trusted only
    /// after the chain verifier has re-hashed the entry that carries it (a changed byte
    /// changes the hash).
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// Microseconds since the Unix epoch (0 for a value from [`RecordedAt::from_stored`]
    /// that does not parse).
    pub fn unix_micros(&self) -> i64 {
        PrimitiveDateTime::parse(&self.0, FORMAT)
            .map(|t| (t.assume_utc().unix_timestamp_nanos() / 1000) as i64)
            .unwrap_or(0)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordedAt({})", self.0)
    }
}

impl Serialize for RecordedAt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RecordedAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_instant() {
        let t = RecordedAt::from_unix_micros(1_795_312_110_123_456).unwrap();
        assert_eq!(t.as_str(), "2026-11-22T01:48:30.123456Z");
        assert_eq!(RecordedAt::parse(t.as_str()).unwrap(), t);
        assert_eq!(t.unix_micros(), 1_795_312_110_123_456);
        for bad in [
            "2026-11-22T01:48:30Z",
            "2026-11-22T01:48:30.123Z",
            "2026-11-22T01:48:30.123456+00:00",
            "2026-11-22 01:48:30.123456Z",
            "2026-11-22T01:48:30.1234567Z",
        ] {
            assert!(RecordedAt::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
