//! The `api_keys` table: a key's hash, what it may do, and whether it was
//! revoked. The secret itself is never stored.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Db;

/// A key as stored.
pub(crate) struct StoredKey {
    pub(crate) name: String,
    pub(crate) secret_hash: String,
    pub(crate) role: String,
    pub(crate) account: String,
    pub(crate) staff_member: String,
    pub(crate) display_name: String,
    /// µs; 0 when the key does not expire.
    pub(crate) expire_time: i64,
    /// µs; 0 while the key is not revoked.
    pub(crate) revoke_time: i64,
}

/// Stores a new key, created at `now` (µs).
pub(crate) async fn insert(db: &Db, key: &StoredKey, now: i64) -> Result<()> {
    let sql = "INSERT INTO api_keys (name, secret_hash, role, account, staff_member, display_name, create_time, expire_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    let mut tx = db.begin().await?;
    on_conn!(&mut tx.conn(), c => sqlx::query(sql)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(&key.role)
        .bind(&key.account)
        .bind(&key.staff_member)
        .bind(&key.display_name)
        .bind(now)
        .bind(key.expire_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(())
}

/// Marks `name` revoked at `now` (µs); false when there is no such live key.
pub(crate) async fn revoke(db: &Db, name: &str, now: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = on_conn!(&mut tx.conn(), c => sqlx::query("UPDATE api_keys SET revoke_time = $1 WHERE name = $2 AND revoke_time = 0")
        .bind(now)
        .bind(name)
        .execute(&mut **c)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(n > 0)
}

type Row = (String, String, String, String, String, String, i64, i64);

fn stored(
    (name, secret_hash, role, account, staff_member, display_name, expire_time, revoke_time): Row,
) -> StoredKey {
    StoredKey {
        name,
        secret_hash,
        role,
        account,
        staff_member,
        display_name,
        expire_time,
        revoke_time,
    }
}

const COLUMNS: &str =
    "name, secret_hash, role, account, staff_member, display_name, expire_time, revoke_time";

/// Every key, by name.
pub(crate) async fn all(db: &Db) -> Result<Vec<StoredKey>> {
    let mut pooled = db.acquire().await?;
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY name");
    let rows: Vec<Row> = on_conn!(&mut pooled.conn(), c => sqlx::query_as(&sql)
        .fetch_all(&mut **c)
        .await?);
    Ok(rows.into_iter().map(stored).collect())
}

/// One key by name, if it exists.
pub(crate) async fn get(db: &Db, name: &str) -> Result<Option<StoredKey>> {
    let mut pooled = db.acquire().await?;
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE name = $1");
    let row: Option<Row> = on_conn!(&mut pooled.conn(), c => sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(&mut **c)
        .await?);
    Ok(row.map(stored))
}
