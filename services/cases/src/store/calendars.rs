//! What refers to a calendar.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Conn;

/// The SLA policies (deleted ones included) and live chase rules that count
/// business time in `calendar`, at most 20, by name.
pub(crate) async fn counting_in(conn: &mut Conn<'_>, calendar: &str) -> Result<Vec<String>> {
    let users: Vec<String> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT name FROM sla_policies WHERE calendar = $1 \
         UNION ALL SELECT name FROM chase_rules WHERE calendar = $1 AND delete_time = 0 \
         ORDER BY name LIMIT 20")
        .bind(calendar)
        .fetch_all(&mut **x)
        .await?);
    Ok(users)
}
