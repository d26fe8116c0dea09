//! SLA clocks as an explainable ledger. A clock is never stored as a running
//! total: it is read from the case's state history, the policy's target and
//! the calendar, as segments (running, paused, out of hours) that each say
//! which case state and which hours were behind them. The same inputs always
//! give the same reading, so a changed calendar or policy recomputes every
//! open clock exactly, and "why did this breach?" is answered by the segments.

use jiff::{SignedDuration, Timestamp};

use crate::calendar::BusinessCalendar;

/// What the target is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Working hours of the calendar.
    Business,
    /// Every hour of the day.
    WallClock,
}

/// Which case states the clock counts in.
#[derive(Debug, Clone, Copy)]
pub enum Counting<'a, S> {
    /// Every state but these (the client's clock pauses while the case waits
    /// on the client).
    Except(&'a [S]),
    /// Only these states (the carrier's clock runs only while the case waits
    /// on the carrier or on construction).
    Only(&'a [S]),
}

impl<S: PartialEq> Counting<'_, S> {
    fn counts(&self, state: &S) -> bool {
        match self {
            Counting::Except(paused) => !paused.contains(state),
            Counting::Only(running) => running.contains(state),
        }
    }
}

/// One clock of a policy, as it applies to a case.
#[derive(Debug, Clone, Copy)]
pub struct ClockSpec<'a, S> {
    pub target: SignedDuration,
    pub basis: Basis,
    /// The clock is at risk once this share of the target is used (e.g. 80).
    /// 0: never reported at risk.
    pub at_risk_percent: u8,
    pub counting: Counting<'a, S>,
    pub calendar: &'a BusinessCalendar,
}

/// The case entered `state` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange<S> {
    pub at: Timestamp,
    pub state: S,
}

/// What a stretch of a clock's life was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Counted against the target.
    Running,
    /// Not counted: the case was in a state the clock does not count in.
    Paused,
    /// Not counted: outside the calendar's working hours.
    OutOfHours,
}

/// One line of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSegment<S> {
    pub start: Timestamp,
    pub end: Timestamp,
    pub kind: SegmentKind,
    /// The case state throughout the segment.
    pub state: S,
    /// What it added to the elapsed time.
    pub counted: SignedDuration,
    /// Elapsed time at its end.
    pub cumulative: SignedDuration,
}

/// How the clock stands against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    OnTrack,
    AtRisk,
    Breached,
    /// Stopped (the milestone was reached) before the target.
    Met,
}

/// What the clock is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStatus {
    Running,
    Paused,
    OutOfHours,
    Stopped,
}

/// A clock read at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<S> {
    pub start: Timestamp,
    pub stop: Option<Timestamp>,
    pub elapsed: SignedDuration,
    /// Target minus elapsed: negative once breached, by how far.
    pub remaining: SignedDuration,
    pub paused: SignedDuration,
    pub out_of_hours: SignedDuration,
    pub state: ClockState,
    pub status: ClockStatus,
    /// When the target is (or was) reached if nothing pauses the clock
    /// again; while it is paused, when it would be reached were it to
    /// resume at the reading instant (so it moves later while paused).
    pub target_time: Option<Timestamp>,
    /// When the clock became (or will become) at risk, on the same terms.
    pub at_risk_time: Option<Timestamp>,
    /// When it breached, if it has.
    pub breach_time: Option<Timestamp>,
    pub segments: Vec<LedgerSegment<S>>,
}

/// Reads a clock that started at `start`, for a case whose states are
/// `history` (sorted by time; the last change at or before `start` is the
/// state at the start), stopped at `stop` if its milestone was reached, as
/// of `now`.
pub fn read<S: Copy + PartialEq>(
    spec: &ClockSpec<'_, S>,
    start: Timestamp,
    history: &[StateChange<S>],
    stop: Option<Timestamp>,
    now: Timestamp,
) -> Reading<S> {
    let end = stop.unwrap_or(now).max(start);
    let at_risk_after = (spec.at_risk_percent > 0)
        .then(|| spec.target * i32::from(spec.at_risk_percent.min(100)) / 100);

    let mut segments: Vec<LedgerSegment<S>> = Vec::new();
    let mut elapsed = SignedDuration::ZERO;
    let mut paused = SignedDuration::ZERO;
    let mut out_of_hours = SignedDuration::ZERO;
    let mut breach_time = None;
    let mut at_risk_time = None;
    let crossed = |seg_start: Timestamp,
                   before: SignedDuration,
                   after: SignedDuration,
                   mark: SignedDuration| {
        // `mark - before` is less than the segment's length, which ends at
        // an instant: adding it back cannot leave the range.
        (before < mark && after >= mark)
            .then(|| seg_start.checked_add(mark - before).ok())
            .flatten()
    };

    let mut push = |segments: &mut Vec<LedgerSegment<S>>,
                    a: Timestamp,
                    b: Timestamp,
                    kind: SegmentKind,
                    state: S| {
        if a >= b {
            return;
        }
        let length = b.duration_since(a);
        let counted = if kind == SegmentKind::Running {
            length
        } else {
            SignedDuration::ZERO
        };
        match kind {
            SegmentKind::Running => {
                if breach_time.is_none() {
                    breach_time = crossed(a, elapsed, elapsed + counted, spec.target);
                }
                if let (None, Some(mark)) = (at_risk_time, at_risk_after) {
                    at_risk_time = crossed(a, elapsed, elapsed + counted, mark);
                }
                elapsed += counted;
            }
            SegmentKind::Paused => paused += length,
            SegmentKind::OutOfHours => out_of_hours += length,
        }
        segments.push(LedgerSegment {
            start: a,
            end: b,
            kind,
            state,
            counted,
            cumulative: elapsed,
        });
    };

    // The state in force at each instant of [start, end).
    let initial = history
        .iter()
        .take_while(|c| c.at <= start)
        .last()
        .or(history.first());
    let mut current = initial.map(|c| c.state);
    let mut cursor = start;
    let later = history.iter().filter(|c| c.at > start && c.at < end);
    let boundaries = later
        .map(|c| (c.at, Some(c.state)))
        .chain(std::iter::once((end, None)));
    for (until, next) in boundaries {
        if let Some(state) = current {
            if !spec.counting.counts(&state) {
                push(&mut segments, cursor, until, SegmentKind::Paused, state);
            } else {
                match spec.basis {
                    Basis::WallClock => {
                        push(&mut segments, cursor, until, SegmentKind::Running, state)
                    }
                    Basis::Business => {
                        for s in spec.calendar.segments(cursor, until) {
                            let kind = if s.working {
                                SegmentKind::Running
                            } else {
                                SegmentKind::OutOfHours
                            };
                            push(&mut segments, s.start, s.end, kind, state);
                        }
                    }
                }
            }
        }
        cursor = until;
        if next.is_some() {
            current = next;
        }
    }

    // The state at `end` itself: a change at exactly that instant (a resume
    // just now) spans no time but decides what the clock is doing.
    if let Some(last) = history.iter().filter(|c| c.at <= end).last() {
        current = Some(last.state);
    }
    let remaining = spec.target - elapsed;
    let counting_now = current.is_some_and(|s| spec.counting.counts(&s));
    let status = match (stop, counting_now, segments.last().map(|s| s.kind)) {
        (Some(_), _, _) => ClockStatus::Stopped,
        (None, false, _) => ClockStatus::Paused,
        (None, true, Some(SegmentKind::OutOfHours)) => ClockStatus::OutOfHours,
        (None, true, _) if spec.basis == Basis::Business && !spec.calendar.is_working(end) => {
            ClockStatus::OutOfHours
        }
        (None, true, _) => ClockStatus::Running,
    };
    // Project the target (and the at-risk point) forward from now, for a
    // paused clock as if it resumed now: the date a client is promised
    // moves later while the case waits on them.
    let project = |from_elapsed: SignedDuration, mark: SignedDuration| -> Option<Timestamp> {
        let left = mark - from_elapsed;
        match spec.basis {
            Basis::WallClock => end.checked_add(left).ok(),
            Basis::Business => spec.calendar.add(end, left).ok(),
        }
    };
    let open = stop.is_none();
    let target_time = breach_time.or_else(|| open.then(|| project(elapsed, spec.target)).flatten());
    let at_risk_time = at_risk_time.or_else(|| {
        let mark = at_risk_after?;
        open.then(|| project(elapsed, mark)).flatten()
    });
    let state = if breach_time.is_some() {
        ClockState::Breached
    } else if stop.is_some() {
        ClockState::Met
    } else if at_risk_after.is_some_and(|mark| elapsed >= mark) {
        ClockState::AtRisk
    } else {
        ClockState::OnTrack
    };
    Reading {
        start,
        stop,
        elapsed,
        remaining,
        paused,
        out_of_hours,
        state,
        status,
        target_time,
        at_risk_time,
        breach_time,
        segments,
    }
}

/// The longest target a policy may set: a year of business or wall-clock
/// time keeps every projection a bounded walk through the calendar.
pub const MAX_TARGET: SignedDuration = SignedDuration::from_hours(366 * 24);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Holiday, Span, WorkingPeriod};
    use jiff::civil::{Weekday, date};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum St {
        Open,
        InProgress,
        PendingClient,
        PendingCarrier,
        Resolved,
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn h(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    fn nine_to_five(tz: &str, holidays: &[Holiday]) -> BusinessCalendar {
        let days = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ];
        let periods: Vec<_> = days
            .into_iter()
            .map(|weekday| WorkingPeriod {
                weekday,
                span: Span {
                    start_minute: 540,
                    end_minute: 1020,
                },
            })
            .collect();
        BusinessCalendar::new(tz, &periods, holidays).unwrap()
    }

    fn change(at: &str, state: St) -> StateChange<St> {
        StateChange { at: ts(at), state }
    }

    const PAUSE: &[St] = &[St::PendingClient];

    #[test]
    fn waiting_on_the_client_stops_the_clock() {
        let cal = nine_to_five("America/New_York", &[]);
        let spec = ClockSpec {
            target: h(16),
            basis: Basis::Business,
            at_risk_percent: 75,
            counting: Counting::Except(PAUSE),
            calendar: &cal,
        };
        // Monday 2026-11-30 09:00 EST opened; 11:00 waiting on the client; Tuesday 11:00 back.
        let history = [
            change("2026-11-30T14:00:00Z", St::Open),
            change("2026-11-30T16:00:00Z", St::PendingClient),
            change("2026-12-01T16:00:00Z", St::InProgress),
        ];
        let r = read(
            &spec,
            ts("2026-11-30T14:00:00Z"),
            &history,
            None,
            ts("2026-12-01T18:00:00Z"),
        );
        assert_eq!(
            r.elapsed,
            h(4),
            "2 h Monday morning + 2 h Tuesday; the wait is not counted"
        );
        assert_eq!(r.paused, h(24));
        assert_eq!(r.remaining, h(12));
        assert_eq!(r.state, ClockState::OnTrack);
        assert_eq!(r.status, ClockStatus::Running);
        // 12 business hours from Tuesday 13:00 EST: 4 h Tuesday, 8 h Wednesday → Wednesday 17:00 EST.
        assert_eq!(r.target_time, Some(ts("2026-12-02T22:00:00Z")));
        // At risk at 12 h elapsed: 8 h from Tuesday 13:00 → Wednesday 13:00 EST.
        assert_eq!(r.at_risk_time, Some(ts("2026-12-02T18:00:00Z")));
        let kinds: Vec<_> = r.segments.iter().map(|s| (s.kind, s.state)).collect();
        assert_eq!(
            kinds,
            vec![
                (SegmentKind::Running, St::Open),
                (SegmentKind::Paused, St::PendingClient),
                (SegmentKind::Running, St::InProgress)
            ]
        );
        // While paused the target is projected as if work resumed at the
        // reading, so it moves later the longer the client keeps it waiting.
        let paused = read(
            &spec,
            ts("2026-11-30T14:00:00Z"),
            &history[..2],
            None,
            ts("2026-12-01T18:00:00Z"),
        );
        assert_eq!(
            (paused.status, paused.target_time),
            (ClockStatus::Paused, Some(ts("2026-12-03T16:00:00Z")))
        );
    }

    #[test]
    fn a_repair_in_another_time_zone_breaches_after_the_holiday_weekend_and_says_why() {
        // The policy's calendar is New York's, read in the site's time zone
        // (Istanbul), with 2026-10-29 (Republic Day) off.
        let holidays = [Holiday {
            date: date(2026, 10, 29),
            name: "Republic Day".into(),
            working_hours: vec![],
        }];
        let cal = nine_to_five("America/New_York", &holidays)
            .in_time_zone("Europe/Istanbul")
            .unwrap();
        let spec = ClockSpec {
            target: h(8),
            basis: Basis::Business,
            at_risk_percent: 80,
            counting: Counting::Except(PAUSE),
            calendar: &cal,
        };
        // Wednesday 2026-10-28 15:00 +03 (12:00Z): 2 h Wednesday, Thursday off,
        // 6 h Friday → breach Friday 15:00 +03.
        let start = ts("2026-10-28T12:00:00Z");
        let history = [change("2026-10-28T12:00:00Z", St::InProgress)];
        let before = read(&spec, start, &history, None, ts("2026-10-30T10:30:00Z"));
        assert_eq!(
            before.state,
            ClockState::AtRisk,
            "Friday 13:30: 6.5 h used of 8, past 80 %"
        );
        assert_eq!(before.target_time, Some(ts("2026-10-30T12:00:00Z")));
        let after = read(&spec, start, &history, None, ts("2026-11-02T12:00:00Z"));
        assert_eq!(after.state, ClockState::Breached);
        assert_eq!(after.breach_time, Some(ts("2026-10-30T12:00:00Z")));
        assert_eq!(
            after.at_risk_time,
            Some(ts("2026-10-30T10:24:00Z")),
            "6.4 h used"
        );
        assert_eq!(after.remaining, -h(8), "target minus elapsed: 8 h past");
        // The ledger explains it: the holiday is one out-of-hours stretch.
        let holiday_gap = after
            .segments
            .iter()
            .find(|s| s.kind == SegmentKind::OutOfHours && s.start == ts("2026-10-28T14:00:00Z"))
            .unwrap();
        assert_eq!(
            holiday_gap.end,
            ts("2026-10-30T06:00:00Z"),
            "Wednesday 17:00 to Friday 09:00 +03"
        );
        assert_eq!(
            after.elapsed + after.out_of_hours + after.paused,
            ts("2026-11-02T12:00:00Z").duration_since(start)
        );
    }

    #[test]
    fn a_clock_stopped_in_time_is_met_and_a_late_one_stays_breached() {
        let cal = nine_to_five("UTC", &[]);
        let spec = ClockSpec {
            target: h(4),
            basis: Basis::Business,
            at_risk_percent: 0,
            counting: Counting::Except(PAUSE),
            calendar: &cal,
        };
        let history = [
            change("2026-12-01T09:00:00Z", St::Open),
            change("2026-12-01T12:00:00Z", St::Resolved),
        ];
        let met = read(
            &spec,
            ts("2026-12-01T09:00:00Z"),
            &history,
            Some(ts("2026-12-01T12:00:00Z")),
            ts("2026-12-03T00:00:00Z"),
        );
        assert_eq!(
            (met.state, met.status, met.elapsed),
            (ClockState::Met, ClockStatus::Stopped, h(3))
        );
        let late = read(
            &spec,
            ts("2026-12-01T09:00:00Z"),
            &history,
            Some(ts("2026-12-01T15:00:00Z")),
            ts("2026-12-03T00:00:00Z"),
        );
        assert_eq!(
            (late.state, late.breach_time),
            (ClockState::Breached, Some(ts("2026-12-01T13:00:00Z")))
        );
    }

    #[test]
    fn the_carrier_clock_runs_only_while_the_case_waits_on_the_carrier() {
        let cal = nine_to_five("UTC", &[]);
        let spec = ClockSpec {
            target: h(24),
            basis: Basis::WallClock,
            at_risk_percent: 50,
            counting: Counting::Only(&[St::PendingCarrier]),
            calendar: &cal,
        };
        let history = [
            change("2026-12-01T09:00:00Z", St::InProgress),
            change("2026-12-01T10:00:00Z", St::PendingCarrier),
            change("2026-12-01T22:00:00Z", St::InProgress),
            change("2026-12-02T08:00:00Z", St::PendingCarrier),
        ];
        let r = read(
            &spec,
            ts("2026-12-01T09:00:00Z"),
            &history,
            None,
            ts("2026-12-02T10:00:00Z"),
        );
        assert_eq!(
            r.elapsed,
            h(14),
            "12 h then 2 h with the carrier; night hours count on a wall clock"
        );
        assert_eq!(r.paused, h(11));
        assert_eq!(r.state, ClockState::AtRisk);
        assert_eq!(r.target_time, Some(ts("2026-12-02T20:00:00Z")));
    }

    #[test]
    fn a_resume_at_this_very_instant_makes_the_clock_run() {
        let cal = nine_to_five("UTC", &[]);
        let spec = ClockSpec {
            target: h(8),
            basis: Basis::Business,
            at_risk_percent: 0,
            counting: Counting::Except(PAUSE),
            calendar: &cal,
        };
        let history = [
            change("2026-12-01T09:00:00Z", St::Open),
            change("2026-12-01T10:00:00Z", St::PendingClient),
            change("2026-12-01T12:00:00Z", St::InProgress),
        ];
        let r = read(
            &spec,
            ts("2026-12-01T09:00:00Z"),
            &history,
            None,
            ts("2026-12-01T12:00:00Z"),
        );
        assert_eq!(r.status, ClockStatus::Running);
        // 1 h used before the wait; 7 h more from 12:00: 5 h today, 2 h tomorrow.
        assert_eq!(r.target_time, Some(ts("2026-12-02T11:00:00Z")));
    }

    #[test]
    fn a_changed_calendar_recomputes_the_same_history() {
        let history = [change("2026-12-01T09:00:00Z", St::Open)];
        let now = ts("2026-12-02T12:00:00Z");
        let short_days = nine_to_five("UTC", &[]);
        let holiday = nine_to_five(
            "UTC",
            &[Holiday {
                date: date(2026, 12, 2),
                name: "Closed".into(),
                working_hours: vec![],
            }],
        );
        let reading = |cal: &BusinessCalendar| {
            read(
                &ClockSpec {
                    target: h(16),
                    basis: Basis::Business,
                    at_risk_percent: 0,
                    counting: Counting::Except(PAUSE),
                    calendar: cal,
                },
                ts("2026-12-01T09:00:00Z"),
                &history,
                None,
                now,
            )
        };
        assert_eq!(reading(&short_days).elapsed, h(11));
        assert_eq!(reading(&holiday).elapsed, h(8));
        assert_eq!(
            reading(&holiday).target_time,
            Some(ts("2026-12-03T17:00:00Z"))
        );
        assert_eq!(
            reading(&short_days),
            reading(&short_days),
            "the same inputs give the same ledger"
        );
    }
}
