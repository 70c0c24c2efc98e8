//! Timer durations: `30s`, `15m`, `48h`, `2d`, `1h30m`.
//!
//! A duration is one or more `<digits><unit>` parts with units `d` (24 h), `h`, `m`, `s`,
//! each at most once and largest first. It must be positive and at most
//! [`MAX_TIMER_DAYS`] days, so that every due time stays a representable instant and every
//! number of microseconds stays within ±(2^53-1).

use std::fmt;

use crate::EngineError;

/// The longest timer: ten years. Longer waits are not what a timer transition is for, and the
/// bound keeps due times far from the end of the representable calendar.
pub const MAX_TIMER_DAYS: u64 = 3650;

const MICROS_PER_SECOND: u64 = 1_000_000;
const UNITS: [(char, u64); 4] = [
    ('d', 86_400 * MICROS_PER_SECOND),
    ('h', 3_600 * MICROS_PER_SECOND),
    ('m', 60 * MICROS_PER_SECOND),
    ('s', MICROS_PER_SECOND),
];

/// A positive timer duration, in microseconds.
///
/// INVARIANT: `0 < micros <= MAX_TIMER_DAYS days` and a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerDuration(u64);

impl TimerDuration {
    /// Parses `1h30m`-style text.
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let fail = |reason: String| EngineError::Duration { text: text.to_owned(), reason };
        if text.is_empty() {
            return Err(fail("empty; expected e.g. 30s, 15m, 48h, 2d or 1h30m".into()));
        }
        let mut total: u64 = 0;
        let mut next_unit = 0; // index into UNITS of the largest unit still allowed
        let mut chars = text.char_indices().peekable();
        while let Some(&(start, c)) = chars.peek() {
            if !c.is_ascii_digit() {
                return Err(fail(format!("expected a number at position {}, found {c:?}", start + 1)));
            }
            let mut n: u64 = 0;
            while let Some(&(_, d)) = chars.peek() {
                let Some(digit) = d.to_digit(10) else { break };
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(|| fail("number too large".into()))?;
                chars.next();
            }
            let Some((pos, unit)) = chars.next() else {
                return Err(fail(format!("missing unit after {n}; use d, h, m or s (e.g. {n}s)")));
            };
            let Some(index) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(fail(format!("unknown unit {unit:?} at position {}; use d, h, m or s", pos + 1)));
            };
            if index < next_unit {
                return Err(fail(format!(
                    "unit {unit:?} repeated or out of order; write units largest first, once each"
                )));
            }
            next_unit = index + 1;
            let part = n.checked_mul(UNITS[index].1).ok_or_else(|| fail("too long".into()))?;
            total = total.checked_add(part).ok_or_else(|| fail("too long".into()))?;
        }
        if total == 0 {
            return Err(fail("must be positive".into()));
        }
        if total > MAX_TIMER_DAYS * UNITS[0].1 {
            return Err(fail(format!("longer than the maximum of {MAX_TIMER_DAYS}d")));
        }
        Ok(Self(total))
    }

    /// The duration in microseconds (at most 2^53-1).
    pub fn as_micros(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TimerDuration {
    /// The normal form: largest units first, zero parts left out (`90m` prints `1h30m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, micros) in UNITS {
            let n = rest / micros;
            rest %= micros;
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let s = |t: &str| TimerDuration::parse(t).unwrap().as_micros() / MICROS_PER_SECOND;
        assert_eq!(s("30s"), 30);
        assert_eq!(s("15m"), 900);
        assert_eq!(s("48h"), 172_800);
        assert_eq!(s("2d"), 172_800);
        assert_eq!(s("1h30m"), 5_400);
        assert_eq!(s("1d2h3m4s"), 93_784);
        assert_eq!(s("90m"), 5_400);
        assert_eq!(TimerDuration::parse("90m").unwrap().to_string(), "1h30m");
        assert_eq!(TimerDuration::parse("3650d").unwrap().to_string(), "3650d");
    }

    #[test]
    fn refuses_bad_durations_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("h", "expected a number at position 1"),
            ("10", "missing unit"),
            ("10x", "unknown unit 'x'"),
            ("1m1h", "out of order"),
            ("1h1h", "repeated"),
            ("0s", "positive"),
            ("0h0m", "positive"),
            ("3651d", "maximum"),
            ("99999999999999999999s", "too large"),
            ("1h 30m", "expected a number at position 3"),
            ("-5s", "expected a number"),
            ("1.5h", "unknown unit '.'"),
        ] {
            let err = TimerDuration::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    proptest! {
        /// Display is a normal form that parses back to the same duration.
        #[test]
        fn display_round_trips(secs in 1u64..=MAX_TIMER_DAYS * 86_400) {
            let d = TimerDuration(secs * MICROS_PER_SECOND);
            prop_assert_eq!(TimerDuration::parse(&d.to_string()).unwrap(), d);
        }
    }
}
