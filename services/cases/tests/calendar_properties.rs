//! Properties of business-time arithmetic over random calendars, in time
//! zones with and without DST, across holidays, midnight and long gaps.

use concierge_cases::calendar::{BusinessCalendar, Holiday, Span, WorkingPeriod};
use jiff::civil::{Date, Weekday};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const ZONES: &[&str] = &[
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Europe/Istanbul",
    "Asia/Kolkata",
    "UTC",
];

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

fn span() -> impl Strategy<Value = Span> {
    (0u16..=1410, 15u16..=720).prop_map(|(start, len)| Span {
        start_minute: start,
        end_minute: (start + len).min(1440),
    })
}

fn calendar() -> impl Strategy<Value = BusinessCalendar> {
    let periods = prop::collection::vec((0usize..7, span()), 1..10);
    let holidays = prop::collection::vec((0i32..540, prop::collection::vec(span(), 0..2)), 0..12);
    (prop::sample::select(ZONES), periods, holidays).prop_map(|(zone, periods, holidays)| {
        let periods: Vec<_> = periods
            .into_iter()
            .map(|(d, span)| WorkingPeriod {
                weekday: WEEKDAYS[d],
                span,
            })
            .collect();
        let base = Date::new(2026, 1, 1).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let holidays: Vec<_> = holidays
            .into_iter()
            .filter_map(|(offset, working_hours)| {
                let date = base.checked_add(jiff::Span::new().days(offset)).unwrap();
                seen.insert(date).then(|| Holiday {
                    date,
                    name: "holiday".into(),
                    working_hours,
                })
            })
            .collect();
        BusinessCalendar::new(zone, &periods, &holidays).unwrap()
    })
}

fn instant() -> impl Strategy<Value = Timestamp> {
    // 2026-01-01 to mid-2027, to the second: every DST change of those years.
    (1_767_225_600i64..1_813_000_000).prop_map(|s| Timestamp::from_second(s).unwrap())
}

/// `cal.add`, which refuses a sum the calendar cannot reach within its
/// 20-year walk; when it refuses, the calendar really holds less working time
/// than that over the 20 years.
fn added(cal: &BusinessCalendar, start: Timestamp, d: SignedDuration) -> Option<Timestamp> {
    match cal.add(start, d) {
        Ok(end) => Some(end),
        Err(e) => {
            let horizon = start
                .checked_add(SignedDuration::from_hours(
                    concierge_cases::calendar::MAX_SPAN_DAYS * 24,
                ))
                .unwrap();
            assert!(
                cal.measure(start, horizon).business < d,
                "refused ({e}) though 20 years hold {d:?}"
            );
            None
        }
    }
}

fn business_time() -> impl Strategy<Value = SignedDuration> {
    (0i64..=500 * 3600).prop_map(SignedDuration::from_secs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn adding_then_measuring_gives_the_duration_back(cal in calendar(), start in instant(), d in business_time()) {
        let Some(end) = added(&cal, start, d) else { return Ok(()) };
        prop_assert!(end >= start);
        prop_assert_eq!(cal.measure(start, end).business, d);
    }

    #[test]
    fn the_end_of_added_time_is_working_time(cal in calendar(), start in instant(), d in business_time()) {
        prop_assume!(d >= SignedDuration::from_secs(1));
        let Some(end) = added(&cal, start, d) else { return Ok(()) };
        let last_second = end.checked_sub(SignedDuration::from_secs(1)).unwrap();
        prop_assert_eq!(cal.measure(last_second, end).business, SignedDuration::from_secs(1));
    }

    #[test]
    fn more_business_time_never_ends_earlier(cal in calendar(), start in instant(), a in business_time(), b in business_time()) {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        match (added(&cal, start, a), added(&cal, start, b)) {
            (Some(x), Some(y)) => prop_assert!(x <= y),
            // Less business time may fit within the cap where more does not.
            (Some(_), None) => prop_assert!(a <= b),
            (None, later) => prop_assert!(later.is_none() || a <= b),
        }
    }

    #[test]
    fn measures_add_up_and_segments_cover_the_span(cal in calendar(), a in instant(), b in instant(), c in instant()) {
        let mut t = [a, b, c];
        t.sort();
        let [a, b, c] = t;
        let ab = cal.measure(a, b);
        let bc = cal.measure(b, c);
        let ac = cal.measure(a, c);
        prop_assert_eq!(ab.business + bc.business, ac.business);
        prop_assert_eq!(ac.business + ac.out_of_hours, c.duration_since(a));
        let segments = cal.segments(a, c);
        let working: SignedDuration = segments.iter().filter(|s| s.working).map(|s| s.end.duration_since(s.start)).sum();
        prop_assert_eq!(working, ac.business);
        if a < c {
            prop_assert_eq!(segments.first().unwrap().start, a);
            prop_assert_eq!(segments.last().unwrap().end, c);
        }
        for w in segments.windows(2) {
            prop_assert_eq!(w[0].end, w[1].start);
            prop_assert_ne!(w[0].working, w[1].working);
        }
    }
}
