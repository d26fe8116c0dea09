//! The chase engine's reads beyond one resource by name: the enabled rules a
//! change is checked against, a case's active runs, and the timers of a
//! rule's runs brought forward when the rule stops.

use concierge_common::error::{Error, Result};
use concierge_common::on_conn;
use concierge_common::resource::{self, Stored};

use crate::resources::{CHASE_RUNS, ESCALATIONS};
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{ChaseRule, ChaseRun, chase_run, escalation};
use prost::Message;

/// The timer kind of a run's next step.
pub(crate) const STEP: &str = "chase_step";

/// The id of the one timer a run keeps: its next step's.
pub(crate) fn step_timer(run: &str) -> String {
    format!("{run}:step")
}

/// The rules that start runs (enabled, not deleted), in the transaction of
/// the change they are checked against: one small-table read, never stale.
pub(crate) async fn live_rules(conn: &mut Conn<'_>) -> Result<Vec<ChaseRule>> {
    let bodies: Vec<Vec<u8>> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT body FROM chase_rules WHERE enabled = 1 AND delete_time = 0 ORDER BY name")
        .fetch_all(&mut **c)
        .await?);
    bodies
        .iter()
        .map(|b| ChaseRule::decode(b.as_slice()).map_err(Error::internal))
        .collect()
}

/// The runs of `case` that are active or exhausted, with their rows (to
/// update them): what its chase summary is made of, and the runs a change
/// may end.
pub(crate) async fn current_runs(
    conn: &mut Conn<'_>,
    case: &str,
) -> Result<Vec<(ChaseRun, Stored)>> {
    let names: Vec<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM chase_runs WHERE parent = $1 AND state IN ($2, $3)")
        .bind(case)
        .bind(chase_run::State::Active as i64)
        .bind(chase_run::State::Exhausted as i64)
        .fetch_all(&mut **c)
        .await?);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut rows = resource::get_many(conn, &CHASE_RUNS, &names).await?;
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows.into_iter()
        .map(|row| {
            let run = ChaseRun::decode(row.body.as_slice()).map_err(Error::internal)?;
            Ok((run, row))
        })
        .collect()
}

/// The open (raised or acknowledged) escalations of `case`, locked.
pub(crate) async fn open_escalations(conn: &mut Conn<'_>, case: &str) -> Result<Vec<Stored>> {
    let names: Vec<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM escalations WHERE parent = $1 AND state IN ($2, $3) ORDER BY name")
        .bind(case)
        .bind(escalation::State::Raised as i64)
        .bind(escalation::State::Acknowledged as i64)
        .fetch_all(&mut **c)
        .await?);
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        if let Some(row) = resource::get_for_update(conn, &ESCALATIONS, &name).await? {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Makes the step timers of `rule`'s active runs due at once: the
/// sweep then finds the rule disabled or gone and cancels each run, case by
/// case, however many there are; the rule's own write stays one statement.
pub(crate) async fn hurry_runs_of(conn: &mut Conn<'_>, rule: &str) -> Result<u64> {
    // Due at the epoch, which every clock has passed; a claim in flight
    // loses its timer (its completion checks the due time) and the
    // cancellation goes to whichever sweep claims it next.
    let n = on_conn!(conn, c => sqlx::query(
        "UPDATE timers SET due_time = 0, lease_owner = '', lease_expire_time = 0 \
         WHERE kind = $1 AND id IN (SELECT name || ':step' FROM chase_runs WHERE rule = $2 AND state = $3)")
        .bind(STEP)
        .bind(rule)
        .bind(chase_run::State::Active as i64)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n)
}

/// The step number a step timer's payload carries.
pub(crate) fn step_of(payload: &[u8]) -> Option<i32> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

pub(crate) fn step_payload(step: i32) -> Vec<u8> {
    step.to_string().into_bytes()
}
