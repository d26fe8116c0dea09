//! Instants and durations from the wire, bounded once at the edge.
//!
//! `google.protobuf.Timestamp` and `Duration` can carry values (i64::MAX
//! seconds, year 9999) that make date arithmetic overflow, and jiff's
//! constructors panic on them. Every such value a caller sends is converted
//! here into a type whose range leaves the engines room to compute: an SLA
//! target added to a case opened at the latest instant, walked through a
//! calendar, still lands far inside jiff's range, so the engines' own
//! arithmetic never has to handle overflow from caller input.

use jiff::{SignedDuration, Timestamp};

use crate::error::{Error, Result};

/// The earliest instant accepted from a caller: the Unix epoch.
pub const EARLIEST: Timestamp = Timestamp::UNIX_EPOCH;

/// The first instant not accepted from a caller: 2200-01-01T00:00:00Z.
pub const LATEST: Timestamp = Timestamp::constant(7_258_118_400, 0);

/// The longest duration accepted from a caller, either sign: 100 years of
/// 366 days.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_secs(100 * 366 * 86_400);

/// Why a wire value was refused; callers name the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfRange {
    #[error("must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z")]
    Instant,
    #[error("must be at most 100 years (3162240000s) either way")]
    Duration,
    #[error("nanos must be within ±999999999 and carry the sign of seconds")]
    Nanos,
}

impl OutOfRange {
    /// The field violation for this refusal.
    pub fn at(self, field: &str) -> Error {
        Error::invalid(field, self.to_string())
    }
}

/// An instant within [`EARLIEST`, [`LATEST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Timestamp);

impl Instant {
    pub fn new(t: Timestamp) -> std::result::Result<Self, OutOfRange> {
        if (EARLIEST..LATEST).contains(&t) {
            Ok(Self(t))
        } else {
            Err(OutOfRange::Instant)
        }
    }

    pub fn get(self) -> Timestamp {
        self.0
    }

    /// A required instant field.
    pub fn required(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Timestamp> {
        match t {
            None => Err(Error::invalid(field, "required: an instant (UTC)")),
            Some(t) => Self::try_from(t).map(Self::get).map_err(|e| e.at(field)),
        }
    }

    /// An optional instant field.
    pub fn optional(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Option<Timestamp>> {
        t.as_ref()
            .map(|t| Self::try_from(t).map(Self::get).map_err(|e| e.at(field)))
            .transpose()
    }
}

impl TryFrom<&prost_types::Timestamp> for Instant {
    type Error = OutOfRange;

    fn try_from(t: &prost_types::Timestamp) -> std::result::Result<Self, OutOfRange> {
        if !(0..1_000_000_000).contains(&t.nanos) {
            return Err(OutOfRange::Nanos);
        }
        let t = Timestamp::new(t.seconds, t.nanos).map_err(|_| OutOfRange::Instant)?;
        Self::new(t)
    }
}

/// A duration within ±[`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(SignedDuration);

impl Duration {
    pub fn new(d: SignedDuration) -> std::result::Result<Self, OutOfRange> {
        if d.unsigned_abs() <= MAX_DURATION.unsigned_abs() {
            Ok(Self(d))
        } else {
            Err(OutOfRange::Duration)
        }
    }

    pub fn get(self) -> SignedDuration {
        self.0
    }

    /// A required duration field.
    pub fn required(field: &str, d: &Option<prost_types::Duration>) -> Result<SignedDuration> {
        match d {
            None => Err(Error::invalid(field, "required: a duration")),
            Some(d) => Self::try_from(d).map(Self::get).map_err(|e| e.at(field)),
        }
    }

    pub fn to_proto(d: SignedDuration) -> prost_types::Duration {
        prost_types::Duration {
            seconds: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl TryFrom<&prost_types::Duration> for Duration {
    type Error = OutOfRange;

    fn try_from(d: &prost_types::Duration) -> std::result::Result<Self, OutOfRange> {
        let sign_agrees = d.seconds == 0 || d.nanos == 0 || (d.seconds > 0) == (d.nanos > 0);
        if d.nanos.unsigned_abs() >= 1_000_000_000 || !sign_agrees {
            return Err(OutOfRange::Nanos);
        }
        if d.seconds.unsigned_abs() > MAX_DURATION.unsigned_abs().as_secs() {
            return Err(OutOfRange::Duration);
        }
        // Normalised and bounded above: `new` cannot overflow.
        Self::new(SignedDuration::new(d.seconds, d.nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn instants_outside_the_range_are_refused() {
        assert!(Instant::try_from(&ts(0, 0)).is_ok());
        assert!(Instant::try_from(&ts(1_795_000_000, 5)).is_ok());
        assert_eq!(
            Instant::try_from(&ts(7_258_118_400, 0)),
            Err(OutOfRange::Instant)
        );
        assert_eq!(Instant::try_from(&ts(-1, 0)), Err(OutOfRange::Instant));
        // Year 9999 and beyond jiff's range alike.
        assert_eq!(
            Instant::try_from(&ts(253_402_300_799, 0)),
            Err(OutOfRange::Instant)
        );
        assert_eq!(
            Instant::try_from(&ts(i64::MAX, 0)),
            Err(OutOfRange::Instant)
        );
        assert_eq!(Instant::try_from(&ts(0, -1)), Err(OutOfRange::Nanos));
        assert_eq!(
            Instant::try_from(&ts(0, 1_000_000_000)),
            Err(OutOfRange::Nanos)
        );
    }

    #[test]
    fn durations_are_bounded_and_normalised() {
        assert_eq!(
            Duration::try_from(&dur(3600, 5)).unwrap().get(),
            SignedDuration::new(3600, 5)
        );
        assert!(Duration::try_from(&dur(-3600, -5)).is_ok());
        for d in [
            dur(i64::MAX, 999_999_999),
            dur(i64::MIN, 0),
            dur(3_162_240_001, 0),
        ] {
            assert_eq!(Duration::try_from(&d), Err(OutOfRange::Duration), "{d:?}");
        }
        for d in [dur(1, -1), dur(-1, 1), dur(0, i32::MAX), dur(0, i32::MIN)] {
            assert_eq!(Duration::try_from(&d), Err(OutOfRange::Nanos), "{d:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_field() {
        let Error::InvalidArgument(v) =
            Duration::required("sla_policy.targets[0].duration", &Some(dur(i64::MAX, 0)))
                .unwrap_err()
        else {
            panic!("not INVALID_ARGUMENT")
        };
        assert_eq!(v[0].field, "sla_policy.targets[0].duration");
        let Error::InvalidArgument(v) = Instant::required("start_time", &None).unwrap_err() else {
            panic!("not INVALID_ARGUMENT")
        };
        assert_eq!(v[0].field, "start_time");
    }
}
