//! After a calendar changes, the SLA timers of open cases must follow it.
//! UpdateCalendar does not do that itself (at a million open cases it would
//! never answer): its transaction records a job, "re-arm the open cases for
//! calendar X", and a supervised worker works the job in keyset batches of
//! cases, recording after each batch how far it got, so that a crash or a
//! restart resumes the job rather than losing or restarting it. A new
//! change of the same calendar restarts its job from the first case.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{Calendar, case};

use crate::Cases;

/// Cases re-armed per batch (and per transaction).
pub const REARM_BATCH: i64 = 200;

/// In the transaction of a calendar change: records that the open cases'
/// timers must follow it. A create needs nothing (no case counts in a
/// calendar that did not exist).
pub(crate) async fn after_calendar_write(
    conn: &mut Conn<'_>,
    before: Option<&Calendar>,
    after: &Calendar,
    now: i64,
) -> Result<()> {
    if before.is_none() {
        return Ok(());
    }
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO calendar_rearms (calendar, calendar_etag, generation, after_case, create_time) \
         VALUES ($1, $2, 1, '', $3) \
         ON CONFLICT (calendar) DO UPDATE SET calendar_etag = excluded.calendar_etag, \
         generation = calendar_rearms.generation + 1, after_case = '', create_time = excluded.create_time")
        .bind(&after.name)
        .bind(&after.etag)
        .bind(now)
        .execute(&mut **c)
        .await?
        .rows_affected());
    Ok(())
}

impl Cases {
    /// Works one batch of the oldest re-arm job: up to `limit` open cases
    /// after the job's progress mark are re-armed, then the mark moves past
    /// them (or the job ends). None when there is no job.
    pub async fn rearm_batch(&self, limit: i64) -> Result<Option<usize>> {
        let db = self.store().db();
        let job: Option<(String, String, i64, String)> = {
            let mut pooled = db.acquire().await?;
            on_conn!(&mut pooled.conn(), c => sqlx::query_as(
                "SELECT calendar, calendar_etag, generation, after_case FROM calendar_rearms ORDER BY create_time, calendar LIMIT 1")
                .fetch_optional(&mut **c)
                .await?)
        };
        let Some((calendar, etag, generation, after)) = job else {
            return Ok(None);
        };
        let names: Vec<String> = {
            let mut pooled = db.acquire().await?;
            on_conn!(&mut pooled.conn(), c => sqlx::query_scalar(
                "SELECT name FROM cases WHERE name > $1 AND delete_time = 0 AND state NOT IN ($2, $3, $4) \
                 ORDER BY name LIMIT $5")
                .bind(&after)
                .bind(case::State::Resolved as i64)
                .bind(case::State::Closed as i64)
                .bind(case::State::Cancelled as i64)
                .bind(limit)
                .fetch_all(&mut **c)
                .await?)
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let rearmed = if refs.is_empty() {
            0
        } else {
            self.refresh_many(&refs).await?
        };
        let finished = (names.len() as i64) < limit;
        // Guarded by the generation: a newer change of the calendar restarted
        // the job meanwhile, and its progress mark must not move.
        let mut tx = db.begin().await?;
        on_conn!(&mut tx.conn(), c => {
            if finished {
                sqlx::query("DELETE FROM calendar_rearms WHERE calendar = $1 AND generation = $2")
                    .bind(&calendar)
                    .bind(generation)
                    .execute(&mut **c)
                    .await?
                    .rows_affected()
            } else {
                sqlx::query("UPDATE calendar_rearms SET after_case = $3 WHERE calendar = $1 AND generation = $2")
                    .bind(&calendar)
                    .bind(generation)
                    .bind(names.last().map(String::as_str).unwrap_or_default())
                    .execute(&mut **c)
                    .await?
                    .rows_affected()
            }
        });
        tx.commit().await?;
        metrics::counter!("concierge_calendar_rearmed_cases_total").increment(rearmed as u64);
        if finished {
            tracing::info!(calendar, etag, "open cases' SLA timers follow the calendar");
        }
        Ok(Some(rearmed))
    }

    /// Works every pending re-arm job to its end; returns the cases re-armed.
    pub async fn rearm_pending(&self) -> Result<usize> {
        let mut total = 0;
        while let Some(n) = self.rearm_batch(REARM_BATCH).await? {
            total += n;
        }
        Ok(total)
    }

    /// The re-arm worker: works jobs as they come, looking for new ones
    /// (written by any replica) every `poll`. It ends only by panicking.
    pub async fn rearm_forever(self, poll: std::time::Duration) {
        loop {
            match self.rearm_batch(REARM_BATCH).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "re-arming SLA timers after a calendar change failed; retrying")
                }
            }
            tokio::time::sleep(poll).await;
        }
    }
}
