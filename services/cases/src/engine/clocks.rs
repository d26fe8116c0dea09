//! The SLA clocks of a case, read from its pinned policy revision, its
//! calendar and its state history through the ledger in [`crate::sla`].

use concierge_common::clock;
use concierge_proto::concierge::cases::v1::{
    Case, SlaClock, SlaClockSegment, SlaPolicy, SlaState, SlaTarget, TimeBasis, case, sla_clock,
    sla_clock_segment,
};
use jiff::{SignedDuration, Timestamp};

use crate::calendar::BusinessCalendar;
use crate::policy;
use crate::sla::{
    self, Basis, ClockSpec, ClockState, ClockStatus, Counting, Reading, SegmentKind, StateChange,
};

/// One clock a policy gives a case.
#[derive(Debug, Clone)]
pub struct ClockDef {
    pub key: String,
    pub target: SlaTarget,
    pub kind: sla_clock::Kind,
    /// When the clock stopped (its milestone reached), if it has.
    pub stop: Option<Timestamp>,
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<Timestamp> {
    t.as_ref().and_then(clock::from_proto)
}

/// The clocks of `policy` for `c`: first response, each milestone, overall
/// delivery (client clocks) and each carrier target (carrier clocks).
pub fn definitions(policy: &SlaPolicy, c: &Case) -> Vec<ClockDef> {
    let done = ts(&c.resolve_time).or_else(|| ts(&c.close_time));
    let mut out = Vec::new();
    if let Some(t) = &policy.first_response {
        out.push(ClockDef {
            key: if t.key.is_empty() {
                "first_response".into()
            } else {
                t.key.clone()
            },
            target: t.clone(),
            kind: sla_clock::Kind::Client,
            stop: ts(&c.first_response_time).or(done),
        });
    }
    for t in &policy.milestones {
        let reached = c
            .milestones
            .iter()
            .find(|m| m.key == t.key)
            .and_then(|m| ts(&m.achieve_time));
        out.push(ClockDef {
            key: t.key.clone(),
            target: t.clone(),
            kind: sla_clock::Kind::Client,
            stop: reached,
        });
    }
    if let Some(t) = &policy.overall_delivery {
        out.push(ClockDef {
            key: if t.key.is_empty() {
                "overall_delivery".into()
            } else {
                t.key.clone()
            },
            target: t.clone(),
            kind: sla_clock::Kind::Client,
            stop: done,
        });
    }
    for t in &policy.carrier_targets {
        out.push(ClockDef {
            key: t.key.clone(),
            target: t.clone(),
            kind: sla_clock::Kind::Carrier,
            stop: done,
        });
    }
    out
}

/// Reads one clock.
pub fn read(
    def: &ClockDef,
    policy: &SlaPolicy,
    c: &Case,
    calendar: &BusinessCalendar,
    history: &[StateChange<case::State>],
    now: Timestamp,
) -> Reading<case::State> {
    let pauses = policy::pause_states(policy);
    let carrier = [case::State::PendingCarrier];
    // A closed or cancelled case counts nothing more, whatever its clocks.
    let terminal = [
        case::State::Resolved,
        case::State::Closed,
        case::State::Cancelled,
    ];
    let mut paused: Vec<case::State> = pauses.clone();
    paused.extend(terminal);
    let counting = match def.kind {
        sla_clock::Kind::Carrier => Counting::Only(&carrier),
        _ => Counting::Except(&paused),
    };
    // Policies are checked when written; one stored before targets were
    // bounded counts as the longest allowed rather than overflowing.
    let target = def
        .target
        .duration
        .as_ref()
        .map(|d| {
            concierge_common::bounded::Duration::try_from(d).map_or(sla::MAX_TARGET, |d| {
                d.get().clamp(SignedDuration::ZERO, sla::MAX_TARGET)
            })
        })
        .unwrap_or_default();
    let spec = ClockSpec {
        target,
        basis: if def.target.basis == TimeBasis::WallClock as i32 {
            Basis::WallClock
        } else {
            Basis::Business
        },
        at_risk_percent: policy::at_risk_percent(policy),
        counting,
        calendar,
    };
    let start = ts(&c.create_time).unwrap_or(now);
    sla::read(&spec, start, history, def.stop, now)
}

fn duration(d: SignedDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// The clock as the API shows it.
pub fn to_proto(
    def: &ClockDef,
    r: &Reading<case::State>,
    policy: &SlaPolicy,
    c: &Case,
    time_zone: &str,
    now: Timestamp,
) -> SlaClock {
    let cancelled = c.state == case::State::Cancelled as i32;
    let state = match r.state {
        ClockState::Breached => SlaState::Breached,
        _ if cancelled && def.stop.is_none() => SlaState::Cancelled,
        ClockState::Met => SlaState::Met,
        ClockState::AtRisk => SlaState::AtRisk,
        ClockState::OnTrack => SlaState::OnTrack,
    };
    let status = match r.status {
        ClockStatus::Running => sla_clock::Status::Running,
        ClockStatus::Paused => sla_clock::Status::Paused,
        ClockStatus::OutOfHours => sla_clock::Status::OutOfHours,
        ClockStatus::Stopped => sla_clock::Status::Stopped,
    };
    SlaClock {
        name: format!("{}/slaClocks/{}", c.name, def.key),
        key: def.key.clone(),
        display_name: def.target.display_name.clone(),
        kind: def.kind as i32,
        basis: if def.target.basis == 0 {
            TimeBasis::Business as i32
        } else {
            def.target.basis
        },
        target_duration: def.target.duration,
        start_time: c.create_time,
        target_time: r.target_time.map(clock::to_proto),
        stop_time: r.stop.map(clock::to_proto),
        elapsed_duration: Some(duration(r.elapsed)),
        remaining_duration: Some(duration(r.remaining)),
        paused_duration: Some(duration(r.paused)),
        out_of_hours_duration: Some(duration(r.out_of_hours)),
        state: state as i32,
        status: status as i32,
        at_risk_time: r.at_risk_time.map(clock::to_proto),
        breach_time: r.breach_time.map(clock::to_proto),
        sla_policy: policy.name.clone(),
        sla_policy_revision: c.sla_policy_revision.clone(),
        calendar: policy.calendar.clone(),
        time_zone: Some(concierge_proto::types::TimeZone {
            id: time_zone.to_string(),
        }),
        evaluate_time: Some(clock::to_proto(now)),
    }
}

/// The ledger lines, each saying why it counted or not.
pub fn segments(r: &Reading<case::State>, calendar: &str) -> Vec<SlaClockSegment> {
    let last = r.segments.len().saturating_sub(1);
    r.segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // A clock that has not stopped is still inside its last span,
            // whose end is only the reading instant.
            let in_progress = i == last && r.stop.is_none();
            let (kind, why) = match s.kind {
                SegmentKind::Running => (
                    sla_clock_segment::Kind::Running,
                    format!("counted: {} within working hours", s.state.as_str_name()),
                ),
                SegmentKind::Paused => (
                    sla_clock_segment::Kind::Paused,
                    format!("not counted: the case was {}", s.state.as_str_name()),
                ),
                SegmentKind::OutOfHours => (
                    sla_clock_segment::Kind::OutOfHours,
                    format!("not counted: outside the working hours of {calendar}"),
                ),
            };
            SlaClockSegment {
                start_time: Some(clock::to_proto(s.start)),
                end_time: (!in_progress).then(|| clock::to_proto(s.end)),
                kind: kind as i32,
                case_state: s.state as i32,
                calendar: calendar.to_string(),
                explanation: why,
                duration: Some(duration(s.end.duration_since(s.start))),
                counted_duration: Some(duration(s.counted)),
                cumulative_elapsed_duration: Some(duration(s.cumulative)),
            }
        })
        .collect()
}
