//! Persisted timers: "at 14:00 the resolve clock of cases/c1 breaches". A
//! timer is a row; instances claim due rows with a lease (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, the single writer on SQLite), act, and complete the
//! timer in the same transaction as their effect (an outbox event, a note).
//! A crash before that commit leaves the lease to expire and another
//! instance to try again; a completed timer is gone, so the effect commits
//! once however many replicas run.

use jiff::{SignedDuration, Timestamp};

use crate::clock::{SharedClock, to_micros};
use crate::error::Result;
use crate::on_conn;
use crate::storage::{Conn, Db, Tx};

/// A timer as a claimer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Chosen by the arming code so that re-arming replaces, e.g.
    /// "cases/c1/slaClocks/resolve:breach".
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub due_time: i64,
    /// How many times it has been claimed, this time included.
    pub attempts: i64,
    pub payload: Vec<u8>,
}

/// Sets (or moves) a timer. Re-arming an existing id replaces its due time
/// and payload; a lease survives only if the due time is unchanged.
pub async fn arm(
    conn: &mut Conn<'_>,
    id: &str,
    kind: &str,
    subject: &str,
    due: Timestamp,
    payload: &[u8],
) -> Result<()> {
    // Re-arming at the same instant keeps a claim in flight; a new instant
    // drops it, so a moved deadline never fires early.
    let sql = "INSERT INTO timers (id, kind, subject, due_time, payload) VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, payload = excluded.payload, \
               lease_owner = CASE WHEN timers.due_time = excluded.due_time THEN timers.lease_owner ELSE '' END, \
               lease_expire_time = CASE WHEN timers.due_time = excluded.due_time THEN timers.lease_expire_time ELSE 0 END, \
               due_time = excluded.due_time";
    on_conn!(conn, c => sqlx::query(sql)
        .bind(id)
        .bind(kind)
        .bind(subject)
        .bind(to_micros(due))
        .bind(payload)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// Sets a timer that is not set yet, leaving one that is (with its due time
/// and any claim) alone: a recurring job armed by every replica at start.
pub async fn arm_if_absent(
    conn: &mut Conn<'_>,
    id: &str,
    kind: &str,
    subject: &str,
    due: Timestamp,
    payload: &[u8],
) -> Result<()> {
    let sql = "INSERT INTO timers (id, kind, subject, due_time, payload) VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (id) DO NOTHING";
    on_conn!(conn, c => sqlx::query(sql)
        .bind(id)
        .bind(kind)
        .bind(subject)
        .bind(to_micros(due))
        .bind(payload)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

/// One timer to arm with [`arm_many`].
#[derive(Debug, Clone)]
pub struct Arm<'a> {
    pub id: String,
    pub kind: &'a str,
    pub subject: &'a str,
    pub due: Timestamp,
    pub payload: &'a [u8],
}

/// [`arm`] for several timers in one statement (a case's clocks re-armed
/// together); the ids must differ.
pub async fn arm_many(conn: &mut Conn<'_>, timers: &[Arm<'_>]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..timers.len())
        .map(|r| {
            let b = r * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )
        })
        .collect();
    // As in `arm`: the same instant keeps a claim in flight, a new one drops it.
    let sql = format!(
        "INSERT INTO timers (id, kind, subject, due_time, payload) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, payload = excluded.payload, \
         lease_owner = CASE WHEN timers.due_time = excluded.due_time THEN timers.lease_owner ELSE '' END, \
         lease_expire_time = CASE WHEN timers.due_time = excluded.due_time THEN timers.lease_expire_time ELSE 0 END, \
         due_time = excluded.due_time",
        rows.join(", ")
    );
    on_conn!(conn, c => {
        let mut q = sqlx::query(&sql);
        for t in timers {
            q = q
                .bind(&t.id)
                .bind(t.kind)
                .bind(t.subject)
                .bind(to_micros(t.due))
                .bind(t.payload);
        }
        q.execute(&mut **c).await?.rows_affected()
    });
    Ok(())
}

/// [`disarm`] for several timers in one statement.
pub async fn disarm_many(conn: &mut Conn<'_>, ids: &[String]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!("DELETE FROM timers WHERE id IN ({})", marks.join(", "));
    let n = on_conn!(conn, c => {
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.execute(&mut **c).await?.rows_affected()
    });
    Ok(n)
}

/// Removes a timer that is no longer needed (the clock was met, the rule's
/// condition cleared).
pub async fn disarm(conn: &mut Conn<'_>, id: &str) -> Result<bool> {
    let n = on_conn!(conn, c => sqlx::query("DELETE FROM timers WHERE id = $1")
        .bind(id)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n > 0)
}

/// Removes every timer of a subject (a case closed for good).
pub async fn disarm_subject(conn: &mut Conn<'_>, subject: &str) -> Result<u64> {
    let n = on_conn!(conn, c => sqlx::query("DELETE FROM timers WHERE subject = $1")
        .bind(subject)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n)
}

/// How long a claim holds unless its claimer renews it.
pub const LEASE: SignedDuration = SignedDuration::from_secs(10);

/// Claims up to `limit` timers due at `now` whose lease (if any) has
/// expired, for `lease` of time, as `owner`.
pub async fn claim_due(
    db: &Db,
    now: Timestamp,
    owner: &str,
    lease: SignedDuration,
    limit: i64,
) -> Result<Vec<Claimed>> {
    claim_due_until(db, now, owner, now.checked_add(lease).unwrap_or(now), limit).await
}

/// [`claim_due`] with the lease's end given: a sweep that works through a
/// backlog keeps asking for timers due by the instant it started, while
/// its leases must run from the time it is now.
pub async fn claim_due_until(
    db: &Db,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let now_us = to_micros(now);
    let until = to_micros(lease_until);
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let lock = matches!(conn, Conn::Postgres(_));
    let select = format!(
        "SELECT id, kind, subject, due_time, attempts, payload FROM timers \
         WHERE due_time <= $1 AND lease_expire_time <= $1 ORDER BY due_time LIMIT $2{}",
        if lock { " FOR UPDATE SKIP LOCKED" } else { "" }
    );
    type Row = (String, String, String, i64, i64, Vec<u8>);
    let rows: Vec<Row> = on_conn!(&mut conn, c => sqlx::query_as(&select)
        .bind(now_us)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?);
    let mut claimed = Vec::with_capacity(rows.len());
    for (id, kind, subject, due_time, attempts, payload) in rows {
        on_conn!(&mut conn, c => sqlx::query(
            "UPDATE timers SET lease_owner = $1, lease_expire_time = $2, attempts = attempts + 1 WHERE id = $3")
            .bind(owner)
            .bind(until)
            .bind(&id)
            .execute(&mut **c)
            .await?
            .rows_affected());
        claimed.push(Claimed {
            id,
            kind,
            subject,
            due_time,
            attempts: attempts + 1,
            payload,
        });
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Extends to `until` the leases `owner` still holds on `ids` (a timer
/// completed, re-armed or taken over meanwhile is left alone); returns how
/// many it extended.
pub async fn renew(db: &Db, owner: &str, ids: &[String], until: Timestamp) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "UPDATE timers SET lease_expire_time = $1 WHERE lease_owner = $2 AND id IN ({})",
        marks.join(", ")
    );
    let mut pooled = db.acquire().await?;
    let mut conn = pooled.conn();
    let n = on_conn!(&mut conn, c => {
        let mut q = sqlx::query(&sql).bind(to_micros(until)).bind(owner);
        for id in ids {
            q = q.bind(id);
        }
        q.execute(&mut **c).await?.rows_affected()
    });
    Ok(n)
}

/// Renews the leases of a claimed batch every third of [`LEASE`] while it
/// is alive; dropping it (the batch is done, or its task died) stops the
/// renewals, and the leases then run out within one [`LEASE`].
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    pub fn start(db: Db, owner: String, ids: Vec<String>, clock: SharedClock) -> Self {
        let every =
            std::time::Duration::try_from(LEASE / 3).unwrap_or(std::time::Duration::from_secs(3));
        Self::start_every(db, owner, ids, clock, LEASE, every)
    }

    /// [`Heartbeat::start`] with its lease and period given (tests).
    pub fn start_every(
        db: Db,
        owner: String,
        ids: Vec<String>,
        clock: SharedClock,
        lease: SignedDuration,
        every: std::time::Duration,
    ) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: the claim itself set the lease.
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = clock.now();
                let until = now.checked_add(lease).unwrap_or(now);
                if let Err(e) = renew(&db, &owner, &ids, until).await {
                    tracing::warn!(error = %e, "renewing timer leases failed; retrying");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes a claimed timer inside the transaction that will carry its
/// effect; call it first and write the effect only when it returns true.
/// False when the claim no longer holds (the lease was lost, or the timer was
/// re-armed or disarmed meanwhile): then there is nothing to do. On
/// PostgreSQL the delete also locks the row until commit, so a concurrent
/// claimer's completion waits and then finds nothing.
pub async fn complete(tx: &mut Tx, owner: &str, timer: &Claimed) -> Result<bool> {
    let mut conn = tx.conn();
    let n = on_conn!(&mut conn, c => sqlx::query(
        "DELETE FROM timers WHERE id = $1 AND lease_owner = $2 AND due_time = $3")
        .bind(&timer.id)
        .bind(owner)
        .bind(timer.due_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(n == 1)
}

/// [`complete`] for a batch in one statement; returns the ids whose claim
/// still held, the only ones whose effects may be written.
pub async fn complete_many<'a>(
    tx: &mut Tx,
    owner: &str,
    timers: impl IntoIterator<Item = &'a Claimed>,
) -> Result<std::collections::HashSet<String>> {
    let timers: Vec<&Claimed> = timers.into_iter().collect();
    if timers.is_empty() {
        return Ok(Default::default());
    }
    let pairs: Vec<String> = (0..timers.len())
        .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "DELETE FROM timers WHERE lease_owner = $1 AND (id, due_time) IN (VALUES {}) RETURNING id",
        pairs.join(", ")
    );
    let mut conn = tx.conn();
    let ids: Vec<String> = on_conn!(&mut conn, c => {
        let mut q = sqlx::query_scalar(&sql).bind(owner);
        for t in &timers {
            q = q.bind(&t.id).bind(t.due_time);
        }
        q.fetch_all(&mut **c).await?
    });
    Ok(ids.into_iter().collect())
}

/// The next due time, for sleeping until there is work (or a cap).
pub async fn next_due(db: &Db) -> Result<Option<Timestamp>> {
    let mut pooled = db.acquire().await?;
    let mut conn = pooled.conn();
    let due: Option<i64> = on_conn!(&mut conn, c => sqlx::query_scalar("SELECT MIN(due_time) FROM timers")
        .fetch_one(&mut **c)
        .await?);
    Ok(due.map(crate::clock::from_micros))
}

/// The longest wait between two attempts of a timer's work.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_hours(1);

/// Moves a claimed timer whose work could not be done (a mail server or a
/// peer that did not answer) to a later attempt: 30 s after the first,
/// doubling up to [`MAX_BACKOFF`]. The timer keeps its attempt count, so
/// the wait grows and work that gives up after N attempts sees them.
/// Nothing happens if the claim no longer holds.
pub async fn retry_later(db: &Db, now: Timestamp, owner: &str, timer: &Claimed) -> Result<()> {
    let doublings = u32::try_from(timer.attempts.clamp(1, 8) - 1).unwrap_or(7);
    let wait = SignedDuration::from_secs(30_i64 << doublings).min(MAX_BACKOFF);
    let due: Timestamp = now.checked_add(wait).unwrap_or(now);
    let mut tx = db.begin().await?;
    on_conn!(&mut tx.conn(), c => sqlx::query(
        "UPDATE timers SET due_time = $1, lease_owner = '', lease_expire_time = 0 \
         WHERE id = $2 AND lease_owner = $3 AND due_time = $4")
        .bind(to_micros(due))
        .bind(&timer.id)
        .bind(owner)
        .bind(timer.due_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(())
}
