//! SLA policy revisions: every revision a policy had, as written, which the
//! cases pinned to it read their clocks by; and the SLA configuration's
//! generation, which every policy or calendar change moves on.

use concierge_common::error::{Error, Result};
use concierge_common::on_conn;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::SlaPolicy;
use prost::Message;

/// Keeps `policy` as its revision `revision_id`, written at `now`.
pub(crate) async fn insert_revision(
    conn: &mut Conn<'_>,
    policy: &SlaPolicy,
    now: i64,
) -> Result<()> {
    let revision: i64 = policy.revision_id.parse().map_err(Error::internal)?;
    let body = policy.encode_to_vec();
    on_conn!(conn, c => sqlx::query("INSERT INTO sla_policy_revisions (policy, revision, body, create_time) VALUES ($1, $2, $3, $4)")
        .bind(&policy.name)
        .bind(revision)
        .bind(&body)
        .bind(now)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// One revision of a policy, if it exists.
pub(crate) async fn revision(
    conn: &mut Conn<'_>,
    policy: &str,
    revision: i64,
) -> Result<Option<SlaPolicy>> {
    let body: Option<Vec<u8>> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT body FROM sla_policy_revisions WHERE policy = $1 AND revision = $2")
        .bind(policy)
        .bind(revision)
        .fetch_optional(&mut **c)
        .await?);
    body.map(|b| SlaPolicy::decode(b.as_slice()).map_err(Error::internal))
        .transpose()
}

/// Every revision of a policy, oldest first.
pub(crate) async fn revisions(conn: &mut Conn<'_>, policy: &str) -> Result<Vec<SlaPolicy>> {
    let bodies: Vec<Vec<u8>> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT body FROM sla_policy_revisions WHERE policy = $1 ORDER BY revision")
        .bind(policy)
        .fetch_all(&mut **c)
        .await?);
    bodies
        .iter()
        .map(|b| SlaPolicy::decode(b.as_slice()).map_err(Error::internal))
        .collect()
}

/// The SLA configuration's generation: moved on by every change of a policy
/// or calendar ([`bump_config`]).
pub(crate) async fn config_generation(conn: &mut Conn<'_>) -> Result<i64> {
    let sql = "SELECT generation FROM sla_config_generation WHERE id = 1";
    Ok(on_conn!(conn, c => sqlx::query_scalar(sql).fetch_one(&mut **c).await?))
}

/// Moves the SLA configuration on, in the transaction of a policy or
/// calendar change: creates matched against the older one start over.
pub(crate) async fn bump_config(conn: &mut Conn<'_>) -> Result<()> {
    let sql = "UPDATE sla_config_generation SET generation = generation + 1 WHERE id = 1";
    on_conn!(conn, c => sqlx::query(sql).execute(&mut **c).await?.rows_affected());
    Ok(())
}
