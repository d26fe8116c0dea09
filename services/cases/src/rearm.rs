//! After a calendar changes, the SLA timers of open cases must follow it.
//! UpdateCalendar does not do that itself (at a million open cases it would
//! never answer): its transaction records a job, "re-arm the open cases for
//! calendar X", and a supervised worker works the job in keyset batches of
//! cases, recording after each batch how far it got, so that a crash or a
//! restart resumes the job rather than losing or restarting it. A new
//! change of the same calendar restarts its job from the first case.

use concierge_common::error::Result;
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::Calendar;

use crate::{Cases, store};

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
    store::rearms::record(conn, &after.name, &after.etag, now).await?;
    Ok(())
}

impl Cases {
    /// Works one batch of the oldest re-arm job: up to `limit` open cases
    /// after the job's progress mark are re-armed, then the mark moves past
    /// them (or the job ends). None when there is no job.
    pub async fn rearm_batch(&self, limit: i64) -> Result<Option<usize>> {
        let db = self.store().db();
        let job = store::rearms::oldest(&mut db.acquire().await?.conn()).await?;
        let Some(job) = job else {
            return Ok(None);
        };
        let names =
            store::cases::open_after(&mut db.acquire().await?.conn(), &job.after_case, limit)
                .await?;
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
        let last = if finished {
            None
        } else {
            names.last().map(String::as_str)
        };
        store::rearms::progress(&mut tx.conn(), &job, last).await?;
        tx.commit().await?;
        metrics::counter!("concierge_calendar_rearmed_cases_total").increment(rearmed as u64);
        if finished {
            tracing::info!(
                calendar = job.calendar,
                etag = job.calendar_etag,
                "open cases' SLA timers follow the calendar"
            );
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
