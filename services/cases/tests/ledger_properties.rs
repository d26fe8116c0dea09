//! Properties of SLA ledgers over random calendars and state histories.

use concierge_cases::calendar::{BusinessCalendar, Span, WorkingPeriod};
use concierge_cases::sla::{
    Basis, ClockSpec, ClockState, Counting, SegmentKind, StateChange, read,
};
use jiff::civil::Weekday;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const PAUSED: &[u8] = &[1];

fn calendar() -> impl Strategy<Value = BusinessCalendar> {
    let zones = prop::sample::select(
        &[
            "America/New_York",
            "Europe/Istanbul",
            "Australia/Sydney",
            "UTC",
        ][..],
    );
    let days = prop::collection::vec((0usize..7, 0u16..1200, 30u16..600), 1..8);
    (zones, days).prop_map(|(zone, days)| {
        let weekdays = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ];
        let periods: Vec<_> = days
            .into_iter()
            .map(|(d, start, len)| WorkingPeriod {
                weekday: weekdays[d],
                span: Span {
                    start_minute: start,
                    end_minute: (start + len).min(1440),
                },
            })
            .collect();
        BusinessCalendar::new(zone, &periods, &[]).unwrap()
    })
}

fn history() -> impl Strategy<Value = (Timestamp, Vec<StateChange<u8>>, Timestamp)> {
    let start = 1_767_225_600i64..1_800_000_000;
    let steps = prop::collection::vec((60i64..200_000, 0u8..4), 0..12);
    (start, steps, 0i64..1_000_000).prop_map(|(start, steps, tail)| {
        let start = Timestamp::from_second(start).unwrap();
        let mut at = start;
        let mut changes = vec![StateChange { at, state: 0 }];
        for (gap, state) in steps {
            at = at.checked_add(SignedDuration::from_secs(gap)).unwrap();
            changes.push(StateChange { at, state });
        }
        let now = at.checked_add(SignedDuration::from_secs(tail)).unwrap();
        (start, changes, now)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_accounts_for_every_second_and_explains_the_breach(
        cal in calendar(),
        (start, changes, now) in history(),
        target_h in 1i64..200,
        wall in any::<bool>(),
    ) {
        let spec = ClockSpec {
            target: SignedDuration::from_hours(target_h),
            basis: if wall { Basis::WallClock } else { Basis::Business },
            at_risk_percent: 80,
            counting: Counting::Except(PAUSED),
            calendar: &cal,
        };
        let r = read(&spec, start, &changes, None, now);
        prop_assert_eq!(r.elapsed + r.paused + r.out_of_hours, now.duration_since(start));
        let mut cursor = start;
        let mut cumulative = SignedDuration::ZERO;
        for s in &r.segments {
            prop_assert_eq!(s.start, cursor);
            prop_assert!(s.end > s.start);
            cumulative += s.counted;
            prop_assert_eq!(s.cumulative, cumulative);
            prop_assert_eq!(s.kind == SegmentKind::Paused, PAUSED.contains(&s.state));
            cursor = s.end;
        }
        if start < now {
            prop_assert_eq!(cursor, now);
        }
        prop_assert_eq!(cumulative, r.elapsed);
        match r.breach_time {
            Some(breach) => {
                prop_assert_eq!(r.state, ClockState::Breached);
                // Reading the clock at its breach instant shows exactly the target used.
                let at_breach = read(&spec, start, &changes, None, breach);
                prop_assert_eq!(at_breach.elapsed, spec.target);
            }
            None => prop_assert!(r.elapsed < spec.target),
        }
        prop_assert_eq!(read(&spec, start, &changes, None, now), r);
    }
}
