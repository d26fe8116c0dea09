//! Time as the services see it. Everything that depends on "now" (SLA clocks,
//! chase rules, surveys, idempotency expiry) asks a [`Clock`], so that tests and
//! `concierge dev --test-clock` can jump 48 business hours in one call.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};

use crate::bounded::{self, OutOfRange};

/// A source of the current instant (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Cloning shares the same instant.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<Mutex<Timestamp>>);

impl TestClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// The instant, even if a holder of the lock panicked: a `Timestamp` is
    /// written whole, so the clock can never be left half-set, and one bad
    /// call must not stop every later write.
    fn lock(&self) -> MutexGuard<'_, Timestamp> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, to: Timestamp) {
        *self.lock() = to;
    }

    /// Moves the clock on by `by`, unless that would leave the instants a
    /// caller may send ([`bounded::LATEST`]): then it stays where it is.
    pub fn try_advance(&self, by: SignedDuration) -> Result<Timestamp, OutOfRange> {
        let mut now = self.lock();
        let to = now
            .checked_add(by)
            .map_err(|_| OutOfRange::Instant)
            .and_then(bounded::Instant::new)?
            .get();
        *now = to;
        Ok(to)
    }

    /// [`Self::try_advance`] for tests, which stay well inside the range;
    /// past it the clock stops at its last instant rather than panicking.
    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        self.try_advance(by).unwrap_or_else(|_| self.now())
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

/// The clock a service holds.
pub type SharedClock = Arc<dyn Clock>;

/// Microseconds since the Unix epoch: how instants are stored, so that both
/// SQLite and PostgreSQL compare and index them as plain integers.
pub fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn to_proto(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// `None` for the zero instant, which the storage layer uses for "unset".
pub fn micros_to_proto(us: i64) -> Option<prost_types::Timestamp> {
    (us != 0).then(|| to_proto(from_micros(us)))
}

/// An instant from the wire, if it is one callers may send
/// ([`bounded::Instant`]).
pub fn from_proto(t: &prost_types::Timestamp) -> Option<Timestamp> {
    bounded::Instant::try_from(t)
        .ok()
        .map(bounded::Instant::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told() {
        let start: Timestamp = "2026-03-06T17:00:00Z".parse().unwrap();
        let clock = TestClock::new(start);
        assert_eq!(clock.now(), start);
        let later = clock.advance(SignedDuration::from_hours(48));
        assert_eq!(later, "2026-03-08T17:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(clock.clone().now(), later);
    }

    #[test]
    fn an_advance_out_of_range_changes_nothing() {
        let start: Timestamp = "2026-03-06T17:00:00Z".parse().unwrap();
        let clock = TestClock::new(start);
        // 10^15 s panicked while holding the lock; every later call failed.
        assert_eq!(
            clock.try_advance(SignedDuration::from_secs(1_000_000_000_000_000)),
            Err(OutOfRange::Instant)
        );
        assert_eq!(
            clock.try_advance(SignedDuration::MAX),
            Err(OutOfRange::Instant)
        );
        assert_eq!(clock.now(), start);
        let later = clock.try_advance(SignedDuration::from_hours(1)).unwrap();
        assert_eq!(clock.now(), later);
    }

    #[test]
    fn micros_round_trip_through_proto() {
        let t: Timestamp = "2026-11-28T10:11:12.345678Z".parse().unwrap();
        let p = micros_to_proto(to_micros(t)).unwrap();
        assert_eq!(from_proto(&p), Some(t));
        assert_eq!(micros_to_proto(0), None);
    }
}
