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

/// Now, in Unix milliseconds (0 before 1970, which no clock here reads): for expiries and
/// deadlines that are compared, never hashed.
pub fn unix_millis_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Now, in Unix microseconds, the resolution of [`RecordedAt`] (see [`unix_millis_now`]).
pub fn unix_micros_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

impl RecordedAt {
    /// The current time, truncated to microseconds. (Reading the clock is the one
    /// impurity here; the engine never calls it: it is handed times by its caller.)
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// From a date-time in any offset; converted to UTC, truncated to microseconds.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(UtcOffset::UTC);
        // Every entry and every request takes the clock: years 0-9999 (all of them, in
        // practice) are written digit by digit; `time`'s formatter, which writes the same
        // text, interprets FORMAT item by item at about ten times the cost.
        let Ok(year) = u32::try_from(t.year()) else { return Self::formatted(t) };
        if year > 9999 {
            return Self::formatted(t);
        }
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(t.month())));
        put(8, 2, u32::from(t.day()));
        put(11, 2, u32::from(t.hour()));
        put(14, 2, u32::from(t.minute()));
        put(17, 2, u32::from(t.second()));
        put(20, 6, t.microsecond());
        Self(text.iter().map(|&b| char::from(b)).collect())
    }

    fn formatted(t: OffsetDateTime) -> Self {
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
        // Fixed-width fields: a text that yields a valid date and time is canonical.
        fields(s).ok_or_else(|| TimeError(s.to_owned()))?;
        Ok(Self(s.to_owned()))
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
        fields(&self.0).map_or(0, |t| (t.assume_utc().unix_timestamp_nanos() / 1000) as i64)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The date and time of `YYYY-MM-DDTHH:MM:SS.ffffffZ` (the text [`FORMAT`] writes), read
/// field by field; `None` unless every character is in place and the date and time exist.
fn fields(s: &str) -> Option<PrimitiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 27 || b[26] != b'Z' {
        return None;
    }
    for (i, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
        if b[i] != sep {
            return None;
        }
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let month = time::Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(num(0, 4)?).ok()?, month, u8::try_from(num(8, 10)?).ok()?);
    let hms = |from: usize| num(from, from + 2).and_then(|n| u8::try_from(n).ok());
    let time = time::Time::from_hms_micro(hms(11)?, hms(14)?, hms(17)?, num(20, 26)?);
    Some(PrimitiveDateTime::new(date.ok()?, time.ok()?))
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
            "2026-02-30T01:48:30.123456Z",
            "2026-13-01T01:48:30.123456Z",
            "2026-11-22T24:00:00.000000Z",
            "2026-11-22T01:60:30.123456Z",
            "2026-11-22T01:48:60.123456Z",
            "2026-11-22T01:48:30.12345aZ",
            "+026-11-22T01:48:30.123456Z",
            "2026-11-22T01:48:30.123456z",
        ] {
            assert!(RecordedAt::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(RecordedAt::parse("2024-02-29T23:59:59.999999Z").unwrap().unix_micros(), 1_709_251_199_999_999);
        assert!(RecordedAt::parse("2023-02-29T00:00:00.000000Z").is_err());
        assert_eq!(RecordedAt::parse("0000-01-01T00:00:00.000000Z").unwrap().as_str(), "0000-01-01T00:00:00.000000Z");
    }

    proptest::proptest! {
        /// Every instant's text parses back to itself and to the same microsecond.
        #[test]
        fn written_times_parse_back(us in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let t = RecordedAt::from_unix_micros(us).unwrap();
            proptest::prop_assert_eq!(RecordedAt::parse(t.as_str()).unwrap(), t.clone());
            proptest::prop_assert_eq!(t.unix_micros(), us);
        }

        /// The digit-by-digit writer and `time`'s formatter agree on every instant, and so
        /// do the years the fast path leaves to `time`.
        #[test]
        fn fast_text_is_the_formatters_text(us in -100_000_000_000_000_000i64..253_402_300_799_999_999) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
            proptest::prop_assert_eq!(RecordedAt::from_datetime(t).0, RecordedAt::formatted(t).0);
        }
    }
}
