//! The clock index (`sla_clocks`): one row per clock of every case, what
//! ListSlaClocks filters across cases.

use concierge_common::error::Result;
use concierge_common::filter::Value;
use concierge_common::on_conn;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Case, SlaClock};

/// Writes the index rows of `clocks` of a case (what ListSlaClocks filters
/// across cases), in the transaction that re-arms or fires their timers.
/// Upserts, so that two refreshes of one case racing each other both land.
pub(crate) async fn index_clocks(
    conn: &mut Conn<'_>,
    case: &Case,
    clocks: &[&SlaClock],
    now: i64,
) -> Result<()> {
    for c in clocks {
        let columns = <SlaClock as concierge_common::crud::Resource<crate::Rules>>::columns(c);
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let marks: Vec<String> = (0..columns.len()).map(|i| format!("${}", i + 6)).collect();
        let sql = format!(
            "INSERT INTO sla_clocks (name, parent, account, create_time, update_time, revision, body, {}) \
             VALUES ($1, $2, $3, $4, $4, 1, $5, {}) \
             ON CONFLICT (name) DO UPDATE SET update_time = excluded.update_time, body = excluded.body, {}",
            names.join(", "),
            marks.join(", "),
            names
                .iter()
                .map(|n| format!("{n} = excluded.{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let body = prost::Message::encode_to_vec(*c);
        on_conn!(conn, x => {
            let mut q = sqlx::query(&sql)
                .bind(&c.name)
                .bind(&case.name)
                .bind(&case.account)
                .bind(now)
                .bind(&body);
            for (_, v) in &columns {
                q = match v {
                    Value::Text(t) => q.bind(t.clone()),
                    Value::Int(i) => q.bind(*i),
                };
            }
            q.execute(&mut **x).await?.rows_affected()
        });
    }
    Ok(())
}

/// [`index_clocks`] for every clock of a case, dropping the rows of clocks
/// it no longer has.
pub(crate) async fn write(
    conn: &mut Conn<'_>,
    case: &Case,
    clocks: &[&SlaClock],
    now: i64,
) -> Result<()> {
    index_clocks(conn, case, clocks, now).await?;
    let keep: Vec<String> = (0..clocks.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = if keep.is_empty() {
        "DELETE FROM sla_clocks WHERE parent = $1".to_string()
    } else {
        format!(
            "DELETE FROM sla_clocks WHERE parent = $1 AND name NOT IN ({})",
            keep.join(", ")
        )
    };
    on_conn!(conn, x => {
        let mut q = sqlx::query(&sql).bind(&case.name);
        for c in clocks {
            q = q.bind(&c.name);
        }
        q.execute(&mut **x).await?.rows_affected()
    });
    Ok(())
}
