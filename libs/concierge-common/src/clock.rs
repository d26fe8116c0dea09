//! Time as the services see it. Everything that depends on "now" (SLA clocks,
//! chase rules, surveys, idempotency expiry) asks a [`Clock`], so that tests and
//! `concierge dev --test-clock` can jump 48 business hours in one call.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

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

    pub fn set(&self, to: Timestamp) {
        *self.0.lock().expect("test clock lock") = to;
    }

    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        let mut now = self.0.lock().expect("test clock lock");
        *now = now.checked_add(by).expect("test clock stays in range");
        *now
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("test clock lock")
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

pub fn from_proto(t: &prost_types::Timestamp) -> Option<Timestamp> {
    Timestamp::new(t.seconds, t.nanos).ok()
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
    fn micros_round_trip_through_proto() {
        let t: Timestamp = "2026-11-28T10:11:12.345678Z".parse().unwrap();
        let p = micros_to_proto(to_micros(t)).unwrap();
        assert_eq!(from_proto(&p), Some(t));
        assert_eq!(micros_to_proto(0), None);
    }
}
