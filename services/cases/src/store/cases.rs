//! A case's rows beyond the resource: its state history (`case_states`), the
//! SLA summary and dependency flag derived into its row, and the case
//! queries the workers page through.

use std::collections::HashMap;

use concierge_common::clock;
use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Case, CaseSlaSummary, case, case_link};

use crate::resources::CASES;
use crate::sla::StateChange;

/// Appends the state `case` is in now to its history, as entered at `now`
/// by `actor`: SLA clocks are read from this history.
pub(crate) async fn append_state(
    conn: &mut Conn<'_>,
    case: &Case,
    now: i64,
    actor: &str,
) -> Result<()> {
    // The next number is taken in the statement that writes it.
    let sql = "INSERT INTO case_states (case_name, seq, state, enter_time, reason, actor) \
               SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM case_states WHERE case_name = $1";
    on_conn!(conn, c => sqlx::query(sql)
        .bind(&case.name)
        .bind(i64::from(case.state))
        .bind(now)
        .bind(&case.state_reason)
        .bind(actor)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// Writes a new case's first state, only while the SLA configuration is
/// still at `generation` (what its policy was matched against:
/// [`super::sla_policies::config_generation`]); false,
/// writing nothing, when a policy or calendar changed since. The check rides
/// on the insert, so a create spends no statement on it.
pub(crate) async fn append_first_state(
    conn: &mut Conn<'_>,
    case: &Case,
    now: i64,
    actor: &str,
    generation: i64,
) -> Result<bool> {
    let sql = "INSERT INTO case_states (case_name, seq, state, enter_time, reason, actor) \
               SELECT $1, 1, $2, $3, $4, $5 FROM sla_config_generation WHERE id = 1 AND generation = $6";
    let n = on_conn!(conn, c => sqlx::query(sql)
        .bind(&case.name)
        .bind(i64::from(case.state))
        .bind(now)
        .bind(&case.state_reason)
        .bind(actor)
        .bind(generation)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n == 1)
}

/// The states each of `cases` entered, in order, in one query.
pub(crate) async fn histories(
    conn: &mut Conn<'_>,
    cases: &[&str],
) -> Result<HashMap<String, Vec<StateChange<case::State>>>> {
    let mut histories = HashMap::new();
    if cases.is_empty() {
        return Ok(histories);
    }
    let marks: Vec<String> = (1..=cases.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT case_name, state, enter_time FROM case_states WHERE case_name IN ({}) ORDER BY case_name, seq",
        marks.join(", ")
    );
    let rows: Vec<(String, i64, i64)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql);
        for name in cases {
            q = q.bind(*name);
        }
        q.fetch_all(&mut **c).await?
    });
    for (name, state, at) in rows {
        histories
            .entry(name)
            .or_insert_with(Vec::new)
            .push(StateChange {
                at: clock::from_micros(at),
                state: case::State::try_from(state as i32).unwrap_or(case::State::Unspecified),
            });
    }
    Ok(histories)
}

/// Writes the SLA summary into the case (as read at `revision`) without
/// making it a new revision: it is derived from the case, not a change of
/// it. Like every write of a resource row, through `resource`.
pub(crate) async fn write_summary(
    conn: &mut Conn<'_>,
    mut c: Case,
    revision: i64,
    summary: Option<CaseSlaSummary>,
) -> Result<()> {
    if c.sla == summary {
        return Ok(());
    }
    c.sla = summary;
    let body = concierge_common::crud::strip_meta::<Case, crate::Rules>(&c);
    let columns = <Case as concierge_common::crud::Resource<crate::Rules>>::columns(&c);
    // A concurrent change wins and refreshes the summary itself.
    resource::update_derived(conn, &CASES, &c.name, revision, &body, &columns).await?;
    Ok(())
}

/// The states of the cases `case` depends on (DEPENDS_ON links).
pub(crate) async fn dependency_states(conn: &mut Conn<'_>, case: &str) -> Result<Vec<case::State>> {
    let states: Vec<i64> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT c.state FROM case_links l JOIN cases c ON c.name = l.target \
         WHERE l.parent = $1 AND l.type = $2 AND l.delete_time = 0")
        .bind(case)
        .bind(case_link::Type::DependsOn as i64)
        .fetch_all(&mut **x)
        .await?);
    Ok(states
        .into_iter()
        .map(|s| case::State::try_from(s as i32).unwrap_or(case::State::Unspecified))
        .collect())
}

/// The cases that depend on `case` (DEPENDS_ON links to it).
pub(crate) async fn dependents(conn: &mut Conn<'_>, case: &str) -> Result<Vec<String>> {
    let dependents: Vec<String> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT parent FROM case_links WHERE target = $1 AND type = $2 AND delete_time = 0")
        .bind(case)
        .bind(case_link::Type::DependsOn as i64)
        .fetch_all(&mut **x)
        .await?);
    Ok(dependents)
}

/// Writes what `derive` changes in a stored case (locked for the
/// transaction) when it reports a change: a derived flag and what follows
/// from it. It is a new revision, so that a concurrent derived write read
/// before it (the SLA summary's) cannot write over it.
pub(crate) async fn write_withheld(
    conn: &mut Conn<'_>,
    case_name: &str,
    derive: impl AsyncFnOnce(&mut Conn<'_>, &mut Case) -> Result<bool>,
) -> Result<()> {
    let Some(stored) = resource::get_for_update(conn, &CASES, case_name).await? else {
        return Ok(());
    };
    let mut c: Case = concierge_common::crud::Store::decode::<Case, crate::Rules>(&stored)?;
    if !derive(conn, &mut c).await? {
        return Ok(());
    }
    write_locked(conn, &stored, &c).await
}

/// Writes `c` over its row `stored`, read and locked in this transaction,
/// as its next revision (its update time is the last change's: nothing a
/// person did).
pub(crate) async fn write_locked(
    conn: &mut Conn<'_>,
    stored: &resource::Stored,
    c: &Case,
) -> Result<()> {
    let next = resource::Stored {
        body: concierge_common::crud::strip_meta::<Case, crate::Rules>(c),
        revision: stored.revision + 1,
        ..stored.clone()
    };
    let columns = <Case as concierge_common::crud::Resource<crate::Rules>>::columns(c);
    resource::update(conn, &CASES, &next, stored.revision, &columns).await
}

/// Where a page of a portfolio's findings resumes: after this (reason,
/// deadline, name).
pub(crate) type FindingsAfter = (i64, i64, String);

/// Up to `limit` cases of `account_manager`'s portfolio that need action,
/// after `after`, in review order (most severe finding, its deadline,
/// name), read from the partial index of the cases with a finding: never a
/// scan of the portfolio, let alone of every case. Each comes with its
/// position in that order, as stored.
pub(crate) async fn with_findings(
    conn: &mut Conn<'_>,
    account_manager: &str,
    after: &FindingsAfter,
    limit: i64,
) -> Result<Vec<(Case, FindingsAfter)>> {
    type Row = (i64, i64, i64, i64, i64, String, Vec<u8>);
    let rows: Vec<Row> = on_conn!(conn, c => sqlx::query_as(
        "SELECT create_time, update_time, revision, finding_reason, finding_due_time, name, body FROM cases \
         WHERE account_manager = $1 AND finding_reason > 0 AND delete_time = 0 \
           AND (finding_reason, finding_due_time, name) > ($2, $3, $4) \
         ORDER BY finding_reason, finding_due_time, name LIMIT $5")
        .bind(account_manager)
        .bind(after.0)
        .bind(after.1)
        .bind(&after.2)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?);
    rows.into_iter()
        .map(
            |(create_time, update_time, revision, reason, due, name, body)| {
                let mut case = <Case as prost::Message>::decode(body.as_slice())
                    .map_err(concierge_common::error::Error::internal)?;
                <Case as concierge_common::crud::Resource<crate::Rules>>::set_meta(
                    &mut case,
                    create_time,
                    update_time,
                    resource::etag(revision),
                );
                Ok((case, (reason, due, name)))
            },
        )
        .collect()
}

/// Up to `limit` cases written before their review columns existed, named
/// after `after`: a keyset page of the background pass that fills them in.
pub(crate) async fn without_review_columns(
    conn: &mut Conn<'_>,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, i64, Vec<u8>)>> {
    let rows: Vec<(String, i64, Vec<u8>)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT name, revision, body FROM cases WHERE name > $1 AND finding_reason = -1 \
         ORDER BY name LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?);
    Ok(rows)
}

/// Fills in the review columns of a case as read at `revision` (a change
/// since wrote them itself).
pub(crate) async fn write_review_columns(
    conn: &mut Conn<'_>,
    name: &str,
    revision: i64,
    (reason, due): (i64, i64),
) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE cases SET finding_reason = $1, finding_due_time = $2 WHERE name = $3 AND revision = $4")
        .bind(reason)
        .bind(due)
        .bind(name)
        .bind(revision)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// Up to `limit` open cases at `site`, for a triage.
pub(crate) async fn open_at_site(conn: &mut Conn<'_>, site: &str, limit: i64) -> Result<Vec<Case>> {
    let bodies: Vec<Vec<u8>> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT body FROM cases WHERE site = $1 AND delete_time = 0 AND state NOT IN ($2, $3, $4) \
         ORDER BY name LIMIT $5")
        .bind(site)
        .bind(case::State::Resolved as i64)
        .bind(case::State::Closed as i64)
        .bind(case::State::Cancelled as i64)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?);
    bodies
        .iter()
        .map(|b| {
            <Case as prost::Message>::decode(b.as_slice())
                .map_err(concierge_common::error::Error::internal)
        })
        .collect()
}

/// Up to `limit` open cases named after `after`, in name order: a keyset
/// page of the cases a calendar change re-arms.
pub(crate) async fn open_after(
    conn: &mut Conn<'_>,
    after: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let names: Vec<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM cases WHERE name > $1 AND delete_time = 0 AND state NOT IN ($2, $3, $4) \
         ORDER BY name LIMIT $5")
        .bind(after)
        .bind(case::State::Resolved as i64)
        .bind(case::State::Closed as i64)
        .bind(case::State::Cancelled as i64)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?);
    Ok(names)
}

/// The open cases of `account` filed under another manager than
/// `account_manager`, by name.
pub(crate) async fn open_cases_filed_elsewhere(
    conn: &mut Conn<'_>,
    account: &str,
    account_manager: &str,
) -> Result<Vec<String>> {
    let open: Vec<i64> = [
        case::State::New,
        case::State::Open,
        case::State::InProgress,
        case::State::PendingClient,
        case::State::PendingCarrier,
        case::State::Jeopardy,
    ]
    .iter()
    .map(|s| *s as i64)
    .collect();
    debug_assert!(open.iter().all(|s| crate::engine::lifecycle::is_open(
        case::State::try_from(*s as i32).unwrap_or(case::State::Unspecified)
    )));
    let marks: Vec<String> = (3..open.len() + 3).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT name FROM cases WHERE account = $1 AND account_manager <> $2 AND delete_time = 0 \
         AND state IN ({}) ORDER BY name",
        marks.join(", ")
    );
    Ok(on_conn!(conn, c => {
        let mut q = sqlx::query_scalar(&sql).bind(account).bind(account_manager);
        for s in &open {
            q = q.bind(*s);
        }
        q.fetch_all(&mut **c).await?
    }))
}

/// Records that `account`'s manager change of `update_time` is being
/// applied; false (recording nothing) when a later one already was.
pub(crate) async fn claim_handover(
    conn: &mut Conn<'_>,
    account: &str,
    update_time: i64,
) -> Result<bool> {
    let n = on_conn!(conn, c => sqlx::query(
        "INSERT INTO account_handovers (account, update_time) VALUES ($1, $2) \
         ON CONFLICT (account) DO UPDATE SET update_time = excluded.update_time \
         WHERE account_handovers.update_time < excluded.update_time")
        .bind(account)
        .bind(update_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n == 1)
}
