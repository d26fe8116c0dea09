//! What an account's control document reads, and the week each went out.

use std::collections::HashMap;

use concierge_common::error::{Error, Result};
use concierge_common::on_conn;
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Case, Note, case, note};
use prost::Message;

/// Up to `limit` open cases of `account` of the `types`, by name.
pub(crate) async fn open_cases_of(
    conn: &mut Conn<'_>,
    account: &str,
    types: &[i32],
    limit: i64,
) -> Result<Vec<Case>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 6)).collect();
    let sql = format!(
        "SELECT create_time, update_time, revision, body FROM cases WHERE account = $1 AND delete_time = 0 \
         AND state NOT IN ($2, $3, $4) AND type IN ({}) ORDER BY name LIMIT $5",
        marks.join(", ")
    );
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql)
            .bind(account)
            .bind(case::State::Resolved as i64)
            .bind(case::State::Closed as i64)
            .bind(case::State::Cancelled as i64)
            .bind(limit);
        for t in types {
            q = q.bind(i64::from(*t));
        }
        q.fetch_all(&mut **c).await?
    });
    rows.into_iter()
        .map(|(create_time, update_time, revision, body)| {
            let mut c = Case::decode(body.as_slice()).map_err(Error::internal)?;
            <Case as concierge_common::crud::Resource<crate::Rules>>::set_meta(
                &mut c,
                create_time,
                update_time,
                resource::etag(revision),
            );
            Ok(c)
        })
        .collect()
}

/// The latest public update of each open case of `account`: (body, µs).
/// One note per case is read (two at a tie), never the account's whole
/// history.
pub(crate) async fn latest_public_updates(
    conn: &mut Conn<'_>,
    account: &str,
) -> Result<HashMap<String, (String, i64)>> {
    let rows: Vec<(String, Vec<u8>, i64)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT n.parent, n.body, n.create_time FROM cases c JOIN notes n ON n.parent = c.name \
         WHERE c.account = $1 AND c.delete_time = 0 AND c.state NOT IN ($3, $4, $5) \
           AND n.visibility = $2 AND n.create_time = \
             (SELECT MAX(m.create_time) FROM notes m WHERE m.parent = c.name AND m.visibility = $2) \
         ORDER BY n.parent, n.create_time DESC")
        .bind(account)
        .bind(note::Visibility::Public as i64)
        .bind(case::State::Resolved as i64)
        .bind(case::State::Closed as i64)
        .bind(case::State::Cancelled as i64)
        .fetch_all(&mut **c)
        .await?);
    let mut latest = HashMap::new();
    for (parent, body, at) in rows {
        if latest.contains_key(&parent) {
            continue;
        }
        let n = Note::decode(body.as_slice()).map_err(Error::internal)?;
        latest.insert(parent, (n.body, at));
    }
    Ok(latest)
}

/// A document of `account` that went out in `week`, if any.
pub(crate) async fn sent_in_week(
    conn: &mut Conn<'_>,
    account: &str,
    week: &str,
) -> Result<Option<String>> {
    let name: Option<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM control_documents WHERE parent = $1 AND sent_week = $2 LIMIT 1")
        .bind(account)
        .bind(week)
        .fetch_optional(&mut **c)
        .await?);
    Ok(name)
}

/// The week a document went out, for a document archived before it was sent.
pub(crate) async fn set_sent_week(conn: &mut Conn<'_>, name: &str, week: &str) -> Result<()> {
    on_conn!(conn, c => sqlx::query(
        "UPDATE control_documents SET sent_week = $1 WHERE name = $2 AND sent_week = ''")
        .bind(week)
        .bind(name)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}
