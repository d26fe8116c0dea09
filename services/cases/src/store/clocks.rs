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
    let Some(first) = clocks.first() else {
        return Ok(());
    };
    // Every clock of a kind has the same columns: one statement for all.
    let names: Vec<&str> =
        <SlaClock as concierge_common::crud::Resource<crate::Rules>>::columns(first)
            .iter()
            .map(|(n, _)| *n)
            .collect();
    let per_row = 4 + names.len();
    let rows: Vec<String> = (0..clocks.len())
        .map(|r| {
            let base = 1 + r * per_row;
            let marks: Vec<String> = (0..per_row).map(|i| format!("${}", base + i + 1)).collect();
            // $1 is now, shared by every row.
            format!(
                "({}, {}, {}, $1, $1, 1, {}, {})",
                marks[0],
                marks[1],
                marks[2],
                marks[3],
                marks[4..].join(", ")
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO sla_clocks (name, parent, account, create_time, update_time, revision, body, {}) \
         VALUES {} \
         ON CONFLICT (name) DO UPDATE SET update_time = excluded.update_time, body = excluded.body, {}",
        names.join(", "),
        rows.join(", "),
        names
            .iter()
            .map(|n| format!("{n} = excluded.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    on_conn!(conn, x => {
        let mut q = sqlx::query(&sql).bind(now);
        for c in clocks {
            let columns = <SlaClock as concierge_common::crud::Resource<crate::Rules>>::columns(c);
            q = q
                .bind(c.name.clone())
                .bind(case.name.clone())
                .bind(case.account.clone())
                .bind(prost::Message::encode_to_vec(*c));
            for (_, v) in columns {
                q = match v {
                    Value::Text(t) => q.bind(t),
                    Value::Int(i) => q.bind(i),
                };
            }
        }
        q.execute(&mut **x).await?.rows_affected()
    });
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
