//! Why an open case needs its account manager's action: its findings, read
//! from the case alone, so that every write of the case (in its own
//! transaction) keeps the most severe one and its deadline in indexed
//! columns, and a portfolio's review reads only the cases that need action.
//! The chase rules' built-in conditions are the same situations, decided
//! here once.

use concierge_common::clock;
use concierge_proto::concierge::cases::v1::case_finding::Reason;
use concierge_proto::concierge::cases::v1::*;

use crate::lifecycle;

pub(crate) fn is_open(c: &Case) -> bool {
    lifecycle::is_open(case::State::try_from(c.state).unwrap_or(case::State::Unspecified))
}

pub(crate) fn is_order(c: &Case) -> bool {
    matches!(
        CaseType::try_from(c.r#type).unwrap_or(CaseType::Unspecified),
        CaseType::OrderNew | CaseType::OrderMove | CaseType::OrderDisconnect
    )
}

/// In jeopardy without a reason or a revised ETA.
pub(crate) fn jeopardy_without_reason(c: &Case) -> bool {
    c.state == case::State::Jeopardy as i32
        && c.jeopardy
            .as_ref()
            .is_some_and(|j| j.reason.trim().is_empty() || j.revised_eta_time.is_none())
}

/// Construction required, and its definition still empty.
pub(crate) fn construction_undefined(c: &Case) -> bool {
    c.construction
        .as_ref()
        .is_some_and(|k| k.required && k.definition.trim().is_empty())
}

/// An order with a hand-off code not presented to the carrier, which no
/// open dependency withholds.
pub(crate) fn not_presented_to_carrier(c: &Case) -> bool {
    is_order(c)
        && !c.hand_off_code.is_empty()
        && !c.presented_to_carrier
        && !c.withheld_by_dependency
}

pub(crate) fn sla_state(c: &Case) -> SlaState {
    c.sla
        .as_ref()
        .and_then(|s| SlaState::try_from(s.state).ok())
        .unwrap_or(SlaState::Unspecified)
}

pub(crate) fn overdue_deliverables(c: &Case) -> impl Iterator<Item = &ConstructionDeliverable> {
    c.construction
        .iter()
        .flat_map(|k| k.deliverables.iter())
        .filter(|d| d.overdue)
}

/// The findings of `c`, most severe first; none once it is closed.
pub(crate) fn findings(c: &Case) -> Vec<CaseFinding> {
    if !is_open(c) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let finding = |reason: Reason, detail: String, resource: String| CaseFinding {
        reason: reason as i32,
        detail,
        resource,
        ..Default::default()
    };
    let sla = c.sla.clone().unwrap_or_default();
    let clock = |key: &str| format!("{}/slaClocks/{key}", c.name);
    if sla_state(c) == SlaState::Breached {
        let key = sla.breached_clock_keys.first().cloned().unwrap_or_default();
        out.push(CaseFinding {
            since_time: sla.breached_target_time,
            due_time: sla.breached_target_time,
            ..finding(
                Reason::SlaBreached,
                format!("{} breached", sla.breached_clock_keys.join(", ")),
                clock(&key),
            )
        });
    }
    if jeopardy_without_reason(c) {
        let j = c.jeopardy.clone().unwrap_or_default();
        let missing = match (j.reason.trim().is_empty(), j.revised_eta_time.is_none()) {
            (true, true) => "a reason and a revised ETA",
            (true, false) => "a reason",
            _ => "a revised ETA",
        };
        out.push(CaseFinding {
            since_time: j.enter_time,
            ..finding(
                Reason::JeopardyWithoutReason,
                format!("in jeopardy without {missing}"),
                c.name.clone(),
            )
        });
    }
    let chase = c.chase.clone().unwrap_or_default();
    if chase.highest_step_reached >= 2 {
        out.push(CaseFinding {
            due_time: chase.next_step_time,
            ..finding(
                Reason::ChaseStageReached,
                format!("chase step {} reached", chase.highest_step_reached),
                chase
                    .active_rules
                    .first()
                    .or(chase.holding_rules.first())
                    .cloned()
                    .unwrap_or_default(),
            )
        });
    }
    if not_presented_to_carrier(c) {
        out.push(CaseFinding {
            since_time: c.create_time,
            due_time: c.requested_time,
            ..finding(
                Reason::NotPresentedToCarrier,
                format!(
                    "hand-off code {}: not presented to the carrier",
                    c.hand_off_code
                ),
                c.name.clone(),
            )
        });
    }
    if construction_undefined(c) {
        out.push(CaseFinding {
            since_time: c.create_time,
            due_time: c.construction.as_ref().and_then(|k| k.eta_time),
            ..finding(
                Reason::ConstructionUndefined,
                "construction is required but not defined".into(),
                c.name.clone(),
            )
        });
    }
    if sla_state(c) == SlaState::AtRisk {
        let key = sla.at_risk_clock_keys.first().cloned().unwrap_or_default();
        out.push(CaseFinding {
            due_time: sla.next_target_time,
            ..finding(
                Reason::SlaAtRisk,
                format!("{} at risk", sla.at_risk_clock_keys.join(", ")),
                clock(&key),
            )
        });
    }
    for d in overdue_deliverables(c) {
        let kind = construction_deliverable::Kind::try_from(d.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("KIND_")
                    .to_lowercase()
                    .replace('_', " ")
            })
            .unwrap_or_default();
        out.push(CaseFinding {
            due_time: d.due_time,
            ..finding(
                Reason::ClientDeliverableOverdue,
                format!("the client's {kind} is overdue"),
                format!("{}/deliverables/{}", c.name, d.id),
            )
        });
    }
    out
}

/// The review columns of `c`: its most severe finding (0 for none) and that
/// finding's deadline, else since when it holds (µs; 0 when neither).
pub(crate) fn columns(c: &Case) -> (i64, i64) {
    let findings = findings(c);
    let Some(first) = findings.first() else {
        return (0, 0);
    };
    let when = first
        .due_time
        .or(first.since_time)
        .as_ref()
        .and_then(clock::from_proto)
        .map(clock::to_micros)
        .unwrap_or(0);
    (i64::from(first.reason), when)
}

/// Cases written before the review columns existed, filled in page by page.
const BACKFILL_PAGE: i64 = 500;

impl crate::Cases {
    /// Fills in the review columns of every case written before they
    /// existed, in name order, a page per transaction; returns how many it
    /// wrote. A database migrated empty has none, and the pass ends at once.
    pub(crate) async fn backfill_review_columns(&self) -> concierge_common::error::Result<usize> {
        use concierge_common::crud::Resource;
        let mut after = String::new();
        let mut written = 0;
        loop {
            let mut tx = self.store().db().begin().await?;
            let page =
                crate::store::cases::without_review_columns(&mut tx.conn(), &after, BACKFILL_PAGE)
                    .await?;
            let Some(last) = page.last() else {
                return Ok(written);
            };
            after = last.0.clone();
            for (name, revision, body) in &page {
                let mut c = <Case as prost::Message>::decode(body.as_slice())
                    .map_err(concierge_common::error::Error::internal)?;
                c.set_name(name.clone());
                crate::store::cases::write_review_columns(
                    &mut tx.conn(),
                    name,
                    *revision,
                    columns(&c),
                )
                .await?;
            }
            tx.commit().await?;
            written += page.len();
        }
    }
}
