//! `request_id` idempotency (AIP-155), after Stripe: the first response to a
//! key is stored in the same transaction as the change it made and replayed
//! for every retry; the same key with other parameters is refused. Keys are
//! scoped to the caller and kept for at least [`RETENTION`].

use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::on_conn;
use crate::storage::Conn;

/// How long a key and its response are kept.
pub const RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(48);

/// A claimed idempotency key for one request.
#[derive(Debug, Clone)]
pub struct Key {
    pub scope: String,
    pub request_id: String,
    pub method: &'static str,
    pub request_hash: String,
}

impl Key {
    /// A key for `request` (with its `request_id` already cleared, so that
    /// the hash covers the parameters only). `None` when no id was given.
    pub fn new<M: Message>(
        scope: &str,
        request_id: &str,
        method: &'static str,
        request: &M,
    ) -> Result<Option<Self>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        if request_id.len() > 128 || !request_id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::invalid(
                "request_id",
                "must be at most 128 printable ASCII characters (a UUID is a good choice)",
            ));
        }
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update(request.encode_to_vec());
        Ok(Some(Self {
            scope: scope.to_string(),
            request_id: request_id.to_string(),
            method,
            request_hash: hex::encode(h.finalize()),
        }))
    }

    /// The stored response of an earlier request with this key, if any.
    /// Call inside the transaction that will make the change: on PostgreSQL a
    /// concurrent duplicate waits on the key's row and then sees the response.
    pub async fn replay<R: Message + Default>(&self, conn: &mut Conn<'_>) -> Result<Option<R>> {
        let sql = "SELECT method, request_hash, response FROM idempotency_keys WHERE scope = $1 AND request_id = $2";
        let row: Option<(String, String, Vec<u8>)> = on_conn!(conn, c => {
            sqlx::query_as(sql)
                .bind(&self.scope)
                .bind(&self.request_id)
                .fetch_optional(&mut **c)
                .await?
        });
        match row {
            None => Ok(None),
            Some((method, hash, response)) => {
                if method != self.method || hash != self.request_hash {
                    return Err(Error::RequestIdReused {
                        request_id: self.request_id.clone(),
                    });
                }
                Ok(Some(
                    R::decode(response.as_slice()).map_err(Error::internal)?,
                ))
            }
        }
    }

    /// Stores the response; commits with the change. A concurrent duplicate
    /// that got here first makes this one fail (REQUEST_IN_PROGRESS) and
    /// roll back, and its retry then replays.
    pub async fn save<R: Message>(
        &self,
        conn: &mut Conn<'_>,
        response: &R,
        now_micros: i64,
    ) -> Result<()> {
        if self.save_first(conn, response, now_micros).await? {
            Ok(())
        } else {
            Err(in_progress(self))
        }
    }

    /// Stores the response of a create, unless the key is already taken:
    /// false then, and the caller rolls its change back and replays. On
    /// PostgreSQL a concurrent duplicate's insert waits here for the first
    /// to commit (or roll back), so the two never both create.
    pub async fn save_first<R: Message>(
        &self,
        conn: &mut Conn<'_>,
        response: &R,
        now_micros: i64,
    ) -> Result<bool> {
        let sql = "INSERT INTO idempotency_keys (scope, request_id, method, request_hash, response, create_time) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, request_id) DO NOTHING";
        let body = response.encode_to_vec();
        let n = on_conn!(conn, c => {
            sqlx::query(sql)
                .bind(&self.scope)
                .bind(&self.request_id)
                .bind(self.method)
                .bind(&self.request_hash)
                .bind(&body)
                .bind(now_micros)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}

/// A duplicate of a request still being worked: its response is not there
/// yet.
pub fn in_progress(key: &Key) -> Error {
    Error::Conflict {
        reason: crate::error::Reason::RequestInProgress,
        description: format!(
            "a request with request_id {} was being processed at the same time; retry to get its response",
            key.request_id
        ),
    }
}

/// Deletes keys older than [`RETENTION`]; run periodically.
pub async fn purge_expired(conn: &mut Conn<'_>, now_micros: i64) -> Result<u64> {
    let cutoff = now_micros - RETENTION.as_micros() as i64;
    let n = on_conn!(conn, c => {
        sqlx::query("DELETE FROM idempotency_keys WHERE create_time < $1")
            .bind(cutoff)
            .execute(&mut **c)
            .await?
            .rows_affected()
    });
    Ok(n)
}
