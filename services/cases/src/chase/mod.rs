//! Chase rules at work: the built-in rules, installed once per database;
//! which rules hold on a case ([`rules`]); runs starting and ending with the
//! changes of their case, in the change's transaction ([`runs`]); and the
//! due steps taken by the timer sweep, each with its effects in one
//! transaction ([`steps`]).

mod built_in;
mod rules;
mod runs;
mod steps;

pub(crate) use built_in::install;
pub(crate) use rules::LiveRules;
pub(crate) use runs::{begin, end, insert_begun, resummarise, save, settle, summarise};

use concierge_common::error::Result;
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Case, CaseSlaSummary};

use crate::resources::CASES;

/// Settles a change of `c` (about to be written at `now`) against the
/// enabled rules read in its transaction, starting and ending its runs.
pub(crate) async fn on_change(conn: &mut Conn<'_>, c: &mut Case, now: i64) -> Result<()> {
    let rules = LiveRules::new(crate::store::chase::live_rules(conn).await?);
    let turn = settle(&rules, c);
    runs::apply(conn, &rules, c, &turn, now).await
}

/// Writes a case's new SLA summary (the case as read at `revision`), and
/// the runs it starts or ends (an SLA at risk or breached): those lock the
/// case and make a new revision; a change since that read settles itself.
pub(crate) async fn write_summary(
    conn: &mut Conn<'_>,
    c: Case,
    revision: i64,
    summary: Option<CaseSlaSummary>,
    now: i64,
) -> Result<()> {
    if c.sla == summary {
        return Ok(());
    }
    let rules = LiveRules::new(crate::store::chase::live_rules(conn).await?);
    let mut settled = c.clone();
    settled.sla = summary.clone();
    let turn = settle(&rules, &mut settled);
    if turn.is_empty() {
        return crate::store::cases::write_summary(conn, c, revision, summary).await;
    }
    let Some(stored) = resource::get_for_update(conn, &CASES, &c.name).await? else {
        return Ok(());
    };
    if stored.revision != revision {
        return Ok(());
    }
    runs::apply(conn, &rules, &mut settled, &turn, now).await?;
    crate::store::cases::write_locked(conn, &stored, &settled).await
}
