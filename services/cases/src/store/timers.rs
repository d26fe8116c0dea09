//! The cases service's rows of the shared timers table beyond arming and
//! claiming (which `concierge_common::timers` does): the re-arm marker a
//! change leaves, and the ledger of SLA events already fired
//! (`sla_events_fired`), which makes each fire once.

use std::collections::HashSet;

use concierge_common::clock;
use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Conn;
use concierge_common::timers;

/// A case changed and its SLA timers are still to be re-armed: armed in the
/// transaction of every change of a case, due 5 s later, and disarmed by the
/// re-arm itself. A process that dies between the two (or a re-arm that
/// fails) leaves it behind, and any replica's next sweep finishes the job:
/// no committed case is ever left without the timers its clocks need.
pub(crate) const REFRESH: &str = "sla_refresh";

/// How long after a change its marker falls due: the re-arm right after the
/// commit clears it well before, so sweeps only ever pick up the re-arms that
/// failed or were cut short, not every change's.
const REFRESH_GRACE_MICROS: i64 = 5_000_000;

pub(crate) fn refresh_id(case_name: &str) -> String {
    format!("{case_name}:{REFRESH}")
}

/// Records, in the transaction of a change of `case_name` committed at
/// `at` (µs), that its timers must be re-armed.
pub(crate) async fn mark_for_refresh(conn: &mut Conn<'_>, case_name: &str, at: i64) -> Result<()> {
    timers::arm(
        conn,
        &refresh_id(case_name),
        REFRESH,
        case_name,
        clock::from_micros(at.saturating_add(REFRESH_GRACE_MICROS)),
        b"",
    )
    .await
}

/// Forgets the re-arm marker of `case_name` if no change newer than
/// `read_at` (the update time of the case as re-armed) set it again.
pub(crate) async fn unmark_refreshed(
    conn: &mut Conn<'_>,
    case_name: &str,
    read_at: i64,
) -> Result<()> {
    on_conn!(conn, c => sqlx::query("DELETE FROM timers WHERE id = $1 AND due_time <= $2")
        .bind(refresh_id(case_name))
        .bind(read_at.saturating_add(REFRESH_GRACE_MICROS))
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// The (clock, kind) events already fired among those of `clocks`.
pub(crate) async fn fired(
    conn: &mut Conn<'_>,
    clocks: &[&str],
) -> Result<HashSet<(String, String)>> {
    if clocks.is_empty() {
        return Ok(HashSet::new());
    }
    let marks: Vec<String> = (1..=clocks.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT clock, kind FROM sla_events_fired WHERE clock IN ({})",
        marks.join(", ")
    );
    let rows: Vec<(String, String)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql);
        for clock in clocks {
            q = q.bind(*clock);
        }
        q.fetch_all(&mut **c).await?
    });
    Ok(rows.into_iter().collect())
}

/// Marks events fired; returns the (clock, kind) pairs that were not yet,
/// the only ones to report.
pub(crate) async fn mark_fired<'a>(
    conn: &mut Conn<'_>,
    events: impl Iterator<Item = (&'a str, &'a str)>,
    at: i64,
) -> Result<HashSet<(String, String)>> {
    let events: Vec<(&str, &str)> = events.collect();
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<String> = (0..events.len())
        .map(|i| format!("(${}, ${}, $1)", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO sla_events_fired (clock, kind, fire_time) VALUES {} ON CONFLICT (clock, kind) DO NOTHING RETURNING clock, kind",
        rows.join(", ")
    );
    let first: Vec<(String, String)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql).bind(at);
        for (clock, kind) in &events {
            q = q.bind(*clock).bind(*kind);
        }
        q.fetch_all(&mut **c).await?
    });
    Ok(first.into_iter().collect())
}
