//! Business-hours calendars: an IANA time zone, weekly working hours and
//! holidays (whole days off or shortened days). Business time is the real
//! elapsed time that falls inside working hours as read on the local wall
//! clock, so a DST change shortens or lengthens a working day by exactly the
//! hour the clocks jump, and midnight, weekends and holidays are just gaps.

use std::collections::BTreeMap;

use concierge_common::error::{Error, Result, Violations};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Minutes in a day; a span may end at 1440, the midnight that ends the day.
pub const DAY_MINUTES: u16 = 1440;

/// The longest stretch of calendar days business time is added or measured
/// over: 20 years. Every walk through a calendar is bounded by it, so no
/// request (however sparse the working hours) makes unbounded work.
pub const MAX_SPAN_DAYS: i64 = 7305;

/// Holidays are dated within these years: the instants callers may send,
/// plus the span above.
const HOLIDAY_YEARS: std::ops::RangeInclusive<i16> = 1970..=2230;
/// Most holidays and working periods one calendar may list.
const MAX_HOLIDAYS: usize = 5000;
const MAX_WORKING_PERIODS: usize = 200;

/// Working hours within one local day, in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// Working hours on one weekday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingPeriod {
    pub weekday: Weekday,
    pub span: Span,
}

/// A date whose working hours differ from its weekday's: none (a day off) or
/// a shortened day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    pub name: String,
    /// Empty: the whole day is off.
    pub working_hours: Vec<Span>,
}

/// Where business time is and is not counted between two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Inside working hours.
    pub working: bool,
}

/// Business time and the rest of a span of wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    pub business: SignedDuration,
    pub out_of_hours: SignedDuration,
}

/// A checked calendar, ready for arithmetic.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    time_zone: TimeZone,
    /// Indexed by `Weekday::to_monday_zero_offset`; sorted, disjoint spans.
    weekly: [Vec<Span>; 7],
    holidays: BTreeMap<Date, Vec<Span>>,
}

fn check_spans(v: &mut Violations, field: impl Fn(usize) -> String, spans: &[Span]) -> Vec<Span> {
    for (i, s) in spans.iter().enumerate() {
        if s.end_minute > DAY_MINUTES || s.start_minute >= s.end_minute {
            v.add(
                field(i),
                format!(
                    "{}..{} is not a span of a day: start before end, both within 0..=1440 minutes",
                    s.start_minute, s.end_minute
                ),
            );
        }
    }
    merge(spans)
}

/// Sorts spans and joins those that overlap or touch.
fn merge(spans: &[Span]) -> Vec<Span> {
    let mut sorted: Vec<Span> = spans
        .iter()
        .copied()
        .filter(|s| s.start_minute < s.end_minute && s.end_minute <= DAY_MINUTES)
        .collect();
    sorted.sort();
    let mut out: Vec<Span> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match out.last_mut() {
            Some(last) if s.start_minute <= last.end_minute => {
                last.end_minute = last.end_minute.max(s.end_minute)
            }
            _ => out.push(s),
        }
    }
    out
}

impl BusinessCalendar {
    /// Checks and builds a calendar; every bad part is a field violation
    /// under `calendar.`.
    pub fn new(
        time_zone: &str,
        working_periods: &[WorkingPeriod],
        holidays: &[Holiday],
    ) -> Result<Self> {
        let mut v = Violations::new();
        let tz = match TimeZone::get(time_zone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                v.add(
                    "calendar.time_zone",
                    format!("{time_zone:?} is not an IANA time zone"),
                );
                None
            }
        };
        if working_periods.len() > MAX_WORKING_PERIODS {
            v.add(
                "calendar.working_periods",
                format!("at most {MAX_WORKING_PERIODS} working periods"),
            );
        }
        if holidays.len() > MAX_HOLIDAYS {
            v.add(
                "calendar.holidays",
                format!("at most {MAX_HOLIDAYS} holidays"),
            );
        }
        let mut weekly: [Vec<Span>; 7] = Default::default();
        for (i, p) in working_periods.iter().enumerate() {
            let merged = check_spans(
                &mut v,
                |_| format!("calendar.working_periods[{i}]"),
                std::slice::from_ref(&p.span),
            );
            weekly[p.weekday.to_monday_zero_offset() as usize].extend(merged);
        }
        for day in &mut weekly {
            *day = merge(day);
        }
        if weekly.iter().all(Vec::is_empty) && v.is_empty() {
            v.add(
                "calendar.working_periods",
                "a calendar needs working hours on at least one weekday",
            );
        }
        let mut by_date = BTreeMap::new();
        for (i, h) in holidays.iter().enumerate() {
            if !HOLIDAY_YEARS.contains(&h.date.year()) {
                v.add(
                    format!("calendar.holidays[{i}].date"),
                    format!(
                        "{} is outside the years {}..={}",
                        h.date,
                        HOLIDAY_YEARS.start(),
                        HOLIDAY_YEARS.end()
                    ),
                );
            }
            let spans = check_spans(
                &mut v,
                |j| format!("calendar.holidays[{i}].working_periods[{j}]"),
                &h.working_hours,
            );
            if by_date.insert(h.date, spans).is_some() {
                v.add(
                    format!("calendar.holidays[{i}].date"),
                    format!("{} is listed twice", h.date),
                );
            }
        }
        v.into_result()?;
        Ok(Self {
            time_zone: tz.expect("checked above"),
            weekly,
            holidays: by_date,
        })
    }

    /// The same working hours read in another time zone (e.g. a site's).
    pub fn in_time_zone(&self, time_zone: &str) -> Result<Self> {
        let tz = TimeZone::get(time_zone).map_err(|_| {
            Error::invalid(
                "time_zone",
                format!("{time_zone:?} is not an IANA time zone"),
            )
        })?;
        Ok(Self {
            time_zone: tz,
            ..self.clone()
        })
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    fn spans_on(&self, date: Date) -> &[Span] {
        self.holidays
            .get(&date)
            .unwrap_or(&self.weekly[date.weekday().to_monday_zero_offset() as usize])
    }

    /// The instant a local minute of a date stands for. A minute skipped by a
    /// DST gap maps forward (as clocks do); a repeated one maps to its first
    /// occurrence. `None` only at the very end of jiff's range, which bounded
    /// inputs never reach.
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = if minute >= DAY_MINUTES {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minute)
        };
        self.time_zone
            .to_timestamp(date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0))
            .ok()
    }

    /// Working intervals of a local date as instants, in order and never
    /// overlapping. A span ending inside a spring-forward gap maps forward,
    /// past the start of a later span of the same day (01:00-02:50 and
    /// 03:10-05:00 on a 02:00→03:00 night): the later one then starts where
    /// the earlier ends, so no second is counted twice.
    fn intervals_on(&self, date: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let mut reached: Option<Timestamp> = None;
        self.spans_on(date).iter().filter_map(move |s| {
            let mut start = self.instant(date, s.start_minute)?;
            let end = self.instant(date, s.end_minute)?;
            if let Some(r) = reached {
                start = start.max(r);
            }
            reached = Some(reached.map_or(end, |r| r.max(end)));
            (start < end).then_some((start, end))
        })
    }

    fn local_date(&self, t: Timestamp) -> Date {
        self.time_zone.to_datetime(t).date()
    }

    /// The instant `duration` of business time after `start`. Zero is `start`
    /// itself, even outside working hours.
    pub fn add(&self, start: Timestamp, duration: SignedDuration) -> Result<Timestamp> {
        if duration.is_negative() {
            return Err(Error::invalid(
                "duration",
                "business time to add must not be negative",
            ));
        }
        if duration.is_zero() {
            return Ok(start);
        }
        let mut remaining = duration;
        let mut date = self.local_date(start);
        for _ in 0..self.horizon_days(date, duration).min(MAX_SPAN_DAYS + 1) {
            for (s, e) in self.intervals_on(date) {
                let s = s.max(start);
                if e <= s {
                    continue;
                }
                let available = e.duration_since(s);
                if available >= remaining {
                    return s.checked_add(remaining).map_err(Error::internal);
                }
                remaining -= available;
            }
            date = date.tomorrow().map_err(Error::internal)?;
        }
        Err(Error::FailedPrecondition {
            reason: concierge_common::error::Reason::NoWorkingTime,
            subject: String::new(),
            description: "the calendar does not hold that much working time within 20 years".into(),
        })
    }

    /// How many days `add` may walk before the calendar must have run out of
    /// working time. Every week has working hours (checked at construction),
    /// so past the last holiday `duration` takes at most about
    /// `duration / weekly hours` weeks; twice that, plus the holidays and a
    /// year, also covers weeks a DST jump shortens.
    fn horizon_days(&self, from: Date, duration: SignedDuration) -> i64 {
        let weekly_minutes: i64 = self
            .weekly
            .iter()
            .flatten()
            .map(|s| i64::from(s.end_minute - s.start_minute))
            .sum();
        let weeks = duration.as_secs() / (weekly_minutes.max(1) * 60) + 2;
        let to_last_holiday = self
            .holidays
            .keys()
            .next_back()
            .map(|last| (*last - from).get_days().into())
            .unwrap_or(0i64)
            .max(0);
        14 * weeks + to_last_holiday + 366
    }

    /// Whether the second starting at `t` is inside working hours.
    pub fn is_working(&self, t: Timestamp) -> bool {
        let next = t.checked_add(SignedDuration::from_secs(1)).unwrap_or(t);
        !self.measure(t, next).business.is_zero()
    }

    /// Business time between two instants, and the rest of the span.
    pub fn measure(&self, start: Timestamp, end: Timestamp) -> Measure {
        if end <= start {
            return Measure::default();
        }
        let mut business = SignedDuration::ZERO;
        let last = self.local_date(end);
        let mut date = self.local_date(start);
        while date <= last {
            for (s, e) in self.intervals_on(date) {
                let (s, e) = (s.max(start), e.min(end));
                if s < e {
                    business += e.duration_since(s);
                }
            }
            date = match date.tomorrow() {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        Measure {
            business,
            out_of_hours: end.duration_since(start) - business,
        }
    }

    /// The span from `start` to `end` cut into working and non-working
    /// segments, in order, covering it exactly: the raw material of an
    /// explainable SLA clock.
    pub fn segments(&self, start: Timestamp, end: Timestamp) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        if end <= start {
            return out;
        }
        let mut push = |start: Timestamp, end: Timestamp, working: bool| {
            if start >= end {
                return;
            }
            match out.last_mut() {
                Some(last) if last.working == working && last.end == start => last.end = end,
                _ => out.push(Segment {
                    start,
                    end,
                    working,
                }),
            }
        };
        let mut cursor = start;
        let last = self.local_date(end);
        let mut date = self.local_date(start);
        while date <= last {
            for (s, e) in self.intervals_on(date) {
                let (s, e) = (s.max(cursor), e.min(end));
                if s < e {
                    push(cursor, s, false);
                    push(s, e, true);
                    cursor = e;
                }
            }
            date = match date.tomorrow() {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        push(cursor, end, false);
        out
    }
}

/// Reads the `Calendar` resource of the API into a checked calendar; every
/// bad part is a field violation under `calendar.`.
pub fn from_proto(c: &concierge_proto::concierge::cases::v1::Calendar) -> Result<BusinessCalendar> {
    use concierge_proto::concierge::cases::v1::Weekday as W;
    let mut v = Violations::new();
    let weekday = |v: &mut Violations, field: String, w: i32| -> Option<Weekday> {
        Some(match W::try_from(w) {
            Ok(W::Monday) => Weekday::Monday,
            Ok(W::Tuesday) => Weekday::Tuesday,
            Ok(W::Wednesday) => Weekday::Wednesday,
            Ok(W::Thursday) => Weekday::Thursday,
            Ok(W::Friday) => Weekday::Friday,
            Ok(W::Saturday) => Weekday::Saturday,
            Ok(W::Sunday) => Weekday::Sunday,
            _ => {
                v.add(field, "required: a weekday");
                return None;
            }
        })
    };
    let minute = |m: i32| u16::try_from(m).unwrap_or(u16::MAX);
    let mut periods = Vec::new();
    for (i, p) in c.working_periods.iter().enumerate() {
        if let Some(day) = weekday(
            &mut v,
            format!("calendar.working_periods[{i}].weekday"),
            p.weekday,
        ) {
            periods.push(WorkingPeriod {
                weekday: day,
                span: Span {
                    start_minute: minute(p.start_minute),
                    end_minute: minute(p.end_minute),
                },
            });
        }
    }
    let mut holidays = Vec::new();
    for (i, h) in c.holidays.iter().enumerate() {
        let date = h.date.as_ref().and_then(|d| {
            Date::new(
                i16::try_from(d.year).ok()?,
                i8::try_from(d.month).ok()?,
                i8::try_from(d.day).ok()?,
            )
            .ok()
        });
        match date {
            Some(date) => holidays.push(Holiday {
                date,
                name: h.display_name.clone(),
                working_hours: h
                    .working_periods
                    .iter()
                    .map(|p| Span {
                        start_minute: minute(p.start_minute),
                        end_minute: minute(p.end_minute),
                    })
                    .collect(),
            }),
            None => v.add(
                format!("calendar.holidays[{i}].date"),
                "required: a valid date",
            ),
        }
    }
    let tz = c
        .time_zone
        .as_ref()
        .map(|t| t.id.as_str())
        .unwrap_or_default();
    let engine = if tz.is_empty() {
        v.add(
            "calendar.time_zone",
            "required: an IANA time zone such as \"America/New_York\"",
        );
        None
    } else {
        Some(BusinessCalendar::new(tz, &periods, &holidays))
    };
    // Report the engine's violations together with the ones found here.
    match (engine, v.into_result()) {
        (Some(Ok(cal)), Ok(())) => Ok(cal),
        (Some(Err(Error::InvalidArgument(more))), Err(Error::InvalidArgument(mut first))) => {
            first.extend(more);
            Err(Error::InvalidArgument(first))
        }
        (Some(Err(e)), _) | (_, Err(e)) => Err(e),
        (None, Ok(())) => Err(Error::invalid("calendar.time_zone", "required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn span(start_h: u16, end_h: u16) -> Span {
        Span {
            start_minute: start_h * 60,
            end_minute: end_h * 60,
        }
    }

    fn weekdays(hours: Span) -> Vec<WorkingPeriod> {
        [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ]
        .into_iter()
        .map(|weekday| WorkingPeriod {
            weekday,
            span: hours,
        })
        .collect()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hours(h: i64) -> SignedDuration {
        SignedDuration::from_hours(h)
    }

    #[test]
    fn friday_evening_plus_an_hour_is_monday_morning() {
        let cal = BusinessCalendar::new("America/New_York", &weekdays(span(9, 17)), &[]).unwrap();
        // Friday 2026-11-27 16:30 EST = 21:30Z.
        let end = cal.add(ts("2026-11-27T21:30:00Z"), hours(1)).unwrap();
        assert_eq!(end, ts("2026-11-30T14:30:00Z"), "Monday 09:30 EST");
        let m = cal.measure(ts("2026-11-27T21:30:00Z"), end);
        assert_eq!(m.business, hours(1));
        assert_eq!(
            m.out_of_hours,
            hours(64),
            "65 wall-clock hours, one of them working"
        );
    }

    #[test]
    fn a_holiday_weekend_is_skipped_and_a_half_day_counts_half() {
        let holidays = vec![
            Holiday {
                date: date(2026, 7, 3),
                name: "Independence Day (observed)".into(),
                working_hours: vec![],
            },
            Holiday {
                date: date(2026, 7, 6),
                name: "Half day".into(),
                working_hours: vec![span(9, 13)],
            },
        ];
        let cal =
            BusinessCalendar::new("America/Chicago", &weekdays(span(8, 17)), &holidays).unwrap();
        // Thursday 2026-07-02 15:00 CDT (20:00Z) + 8 business hours:
        // 2 h Thursday, Friday off, weekend, 4 h Monday (half day), 2 h Tuesday.
        let end = cal.add(ts("2026-07-02T20:00:00Z"), hours(8)).unwrap();
        assert_eq!(end, ts("2026-07-07T15:00:00Z"), "Tuesday 10:00 CDT");
    }

    #[test]
    fn dst_spring_forward_shortens_a_round_the_clock_day() {
        let all_week: Vec<_> = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ]
        .into_iter()
        .map(|weekday| WorkingPeriod {
            weekday,
            span: span(0, 24),
        })
        .collect();
        let cal = BusinessCalendar::new("America/New_York", &all_week, &[]).unwrap();
        // Saturday 2026-03-07 12:00 EST; clocks jump at 02:00 on Sunday.
        let start = ts("2026-03-07T17:00:00Z");
        let end = cal.add(start, hours(24)).unwrap();
        assert_eq!(
            end,
            ts("2026-03-08T17:00:00Z"),
            "24 real hours: Sunday 13:00 EDT"
        );
        let local_day = cal.measure(ts("2026-03-08T05:00:00Z"), ts("2026-03-09T04:00:00Z"));
        assert_eq!(
            local_day.business,
            hours(23),
            "the local Sunday has 23 hours"
        );
    }

    /// Found by the segments property: a span ending in the gap (02:50 is
    /// read as 03:50 EDT) ran past the next span's start (03:10), and
    /// `measure` counted those 40 minutes twice while `segments` did not.
    #[test]
    fn a_span_ending_in_the_spring_forward_gap_does_not_overlap_the_next() {
        let sunday = |start_minute, end_minute| WorkingPeriod {
            weekday: Weekday::Sunday,
            span: Span {
                start_minute,
                end_minute,
            },
        };
        let cal = BusinessCalendar::new(
            "America/New_York",
            &[sunday(60, 170), sunday(190, 300)],
            &[],
        )
        .unwrap();
        // Sunday 2026-03-08, 00:00 EST to 06:00 EDT.
        let (from, to) = (ts("2026-03-08T05:00:00Z"), ts("2026-03-08T10:00:00Z"));
        let m = cal.measure(from, to);
        assert_eq!(m.business, hours(3), "01:00 EST to 05:00 EDT, once");
        let working: SignedDuration = cal
            .segments(from, to)
            .iter()
            .filter(|s| s.working)
            .map(|s| s.end.duration_since(s.start))
            .sum();
        assert_eq!(working, m.business);
        assert_eq!(cal.add(from, hours(3)).unwrap(), ts("2026-03-08T09:00:00Z"));
    }

    #[test]
    fn dst_fall_back_lengthens_a_night_shift() {
        let nights: Vec<_> = [Weekday::Saturday, Weekday::Sunday]
            .into_iter()
            .map(|weekday| WorkingPeriod {
                weekday,
                span: span(0, 4),
            })
            .collect();
        let cal = BusinessCalendar::new("Europe/London", &nights, &[]).unwrap();
        // Sunday 2026-10-25: 02:00 BST becomes 01:00 GMT, so 00:00-04:00 local is 5 real hours.
        let m = cal.measure(ts("2026-10-24T23:00:00Z"), ts("2026-10-25T04:00:00Z"));
        assert_eq!(m.business, hours(5));
    }

    #[test]
    fn working_hours_across_midnight_join_up() {
        let cal = BusinessCalendar::new(
            "Europe/Istanbul",
            &[
                WorkingPeriod {
                    weekday: Weekday::Monday,
                    span: span(22, 24),
                },
                WorkingPeriod {
                    weekday: Weekday::Tuesday,
                    span: span(0, 6),
                },
            ],
            &[],
        )
        .unwrap();
        // Monday 2026-11-30 23:00 +03 = 20:00Z; 5 hours later is Tuesday 04:00 +03.
        let end = cal.add(ts("2026-11-30T20:00:00Z"), hours(5)).unwrap();
        assert_eq!(end, ts("2026-12-01T01:00:00Z"));
        let segments = cal.segments(ts("2026-11-30T18:00:00Z"), ts("2026-12-01T05:00:00Z"));
        assert_eq!(
            segments
                .iter()
                .map(|s| (s.working, s.end.duration_since(s.start)))
                .collect::<Vec<_>>(),
            vec![(false, hours(1)), (true, hours(8)), (false, hours(2))],
            "22:00-06:00 is one working stretch"
        );
    }

    #[test]
    fn multi_day_gaps_and_reading_in_a_sites_time_zone() {
        let cal = BusinessCalendar::new("America/New_York", &weekdays(span(9, 17)), &[]).unwrap();
        let start = ts("2026-12-01T14:00:00Z");
        let ny = cal.add(start, hours(40)).unwrap();
        assert_eq!(
            ny,
            ts("2026-12-07T22:00:00Z"),
            "five working days: the end of Monday, 17:00 EST"
        );
        let istanbul = cal.in_time_zone("Europe/Istanbul").unwrap();
        // 14:00Z is 17:00 in Istanbul: the day there is over, so 40 h end a week later at 17:00 +03.
        assert_eq!(
            istanbul.add(start, hours(40)).unwrap(),
            ts("2026-12-08T14:00:00Z")
        );
        assert_eq!(
            istanbul.add(ts("2026-12-01T06:00:00Z"), hours(1)).unwrap(),
            ts("2026-12-01T07:00:00Z")
        );
    }

    #[test]
    fn bad_calendars_name_their_fields() {
        let err = BusinessCalendar::new(
            "Mars/Olympus",
            &[WorkingPeriod {
                weekday: Weekday::Monday,
                span: Span {
                    start_minute: 600,
                    end_minute: 500,
                },
            }],
            &[
                Holiday {
                    date: date(2026, 1, 1),
                    name: "a".into(),
                    working_hours: vec![],
                },
                Holiday {
                    date: date(2026, 1, 1),
                    name: "b".into(),
                    working_hours: vec![span(9, 30)],
                },
            ],
        )
        .unwrap_err();
        let Error::InvalidArgument(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "calendar.time_zone",
                "calendar.working_periods[0]",
                "calendar.holidays[1].working_periods[0]",
                "calendar.holidays[1].date"
            ]
        );
        let empty = BusinessCalendar::new("UTC", &[], &[]).unwrap_err();
        assert!(
            matches!(empty, Error::InvalidArgument(v) if v[0].field == "calendar.working_periods")
        );
    }
}
