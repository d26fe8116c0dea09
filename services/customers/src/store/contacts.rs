//! Contacts beyond their rows.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Conn;

/// How many contacts of `account` other than `except` are its client
/// delegate.
pub(crate) async fn other_client_delegates(
    conn: &mut Conn<'_>,
    account: &str,
    except: &str,
) -> Result<i64> {
    let sql =
        "SELECT COUNT(*) FROM contacts WHERE account = $1 AND client_delegate = 1 AND name <> $2";
    let n: i64 = on_conn!(conn, x => sqlx::query_scalar(sql).bind(account).bind(except).fetch_one(&mut **x).await?);
    Ok(n)
}
