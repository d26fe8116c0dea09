//! A client's construction deliverable is *overdue* once its due time has
//! passed and it is neither complete nor waived. The flag is derived into
//! the case with every change of it, and a persisted timer at each due time
//! sets it when no change comes: so the review's finding and the
//! CLIENT_DELIVERABLE_OVERDUE chase start at the due time itself.

use concierge_common::clock;
use concierge_common::crud::Store;
use concierge_common::error::Result;
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_common::timers::{self, Claimed};
use concierge_proto::concierge::cases::v1::{Case, construction_deliverable};

use crate::resources::CASES;
use crate::{Cases, Rules, chase, store};

/// The timer kind of a deliverable falling due.
pub(crate) const DUE: &str = "deliverable_due";

/// Sets each deliverable's `overdue` as of `now`; true when one moved.
pub(crate) fn derive_overdue(c: &mut Case, now: i64) -> bool {
    let Some(k) = c.construction.as_mut() else {
        return false;
    };
    let mut moved = false;
    for d in &mut k.deliverables {
        let open = !matches!(
            construction_deliverable::State::try_from(d.state),
            Ok(construction_deliverable::State::Complete | construction_deliverable::State::Waived)
        );
        let past = d
            .due_time
            .as_ref()
            .and_then(clock::from_proto)
            .is_some_and(|due| clock::to_micros(due) <= now);
        let overdue = open && past;
        moved |= d.overdue != overdue;
        d.overdue = overdue;
    }
    moved
}

/// Arms a timer at the due time of each open deliverable of `after` not
/// yet due, when the deliverables changed in this write.
pub(crate) async fn arm(
    conn: &mut Conn<'_>,
    before: Option<&Case>,
    after: &Case,
    now: i64,
) -> Result<()> {
    let of = |c: &Case| c.construction.as_ref().map(|k| k.deliverables.clone());
    if before.is_some_and(|b| of(b) == of(after)) {
        return Ok(());
    }
    let arms: Vec<timers::Arm<'_>> = after
        .construction
        .iter()
        .flat_map(|k| k.deliverables.iter().enumerate())
        .filter(|(_, d)| !d.overdue)
        .filter_map(|(i, d)| {
            let due = d.due_time.as_ref().and_then(clock::from_proto)?;
            // By position: a deliverable's id is the caller's, and may be empty.
            (clock::to_micros(due) > now).then(|| timers::Arm {
                id: format!("{}:deliverable:{i}", after.name),
                kind: DUE,
                subject: &after.name,
                due,
                payload: b"",
            })
        })
        .collect();
    timers::arm_many(conn, &arms).await
}

impl Cases {
    /// A deliverable fell due: its case's flags are derived again (and the
    /// chase and review follow), in one transaction with the timer's end.
    pub(crate) async fn deliverable_due(&self, owner: &str, timer: &Claimed) -> Result<()> {
        let now = self.store().now();
        let mut tx = self.store().db().begin().await?;
        if !timers::complete(&mut tx, owner, timer).await? {
            return Ok(());
        }
        let mut conn = tx.conn();
        if let Some(row) = resource::get_for_update(&mut conn, &CASES, &timer.subject)
            .await?
            .filter(|r| r.delete_time == 0)
        {
            let mut c: Case = Store::decode::<Case, Rules>(&row)?;
            if derive_overdue(&mut c, now) {
                chase::on_change(&mut conn, &mut c, now).await?;
                store::cases::write_locked(&mut conn, &row, &c).await?;
            }
        }
        tx.commit().await?;
        self.store().nudge();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_proto::concierge::cases::v1::{Construction, ConstructionDeliverable};

    #[test]
    fn a_deliverable_is_overdue_past_its_due_time_until_done_or_waived() {
        let due = |secs: i64, state: construction_deliverable::State| ConstructionDeliverable {
            id: "roe".into(),
            due_time: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            state: state as i32,
            ..Default::default()
        };
        let mut c = Case {
            construction: Some(Construction {
                required: true,
                deliverables: vec![
                    due(100, construction_deliverable::State::Requested),
                    due(100, construction_deliverable::State::Complete),
                    due(300, construction_deliverable::State::InProgress),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(derive_overdue(&mut c, 200_000_000));
        let flags: Vec<bool> = c
            .construction
            .as_ref()
            .unwrap()
            .deliverables
            .iter()
            .map(|d| d.overdue)
            .collect();
        assert_eq!(flags, vec![true, false, false]);
        assert!(!derive_overdue(&mut c, 200_000_000), "nothing moved");
    }
}
