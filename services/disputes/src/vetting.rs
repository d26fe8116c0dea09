//! The vetting clock: each dispute whose clock runs holds one timer at its
//! `vetting_due_time`, set or dropped with every write of the dispute; the
//! sweep marks a dispute overdue when its timer comes due without a
//! decision, once, whichever replica claims it.

use concierge_common::clock;
use concierge_common::error::{Error, Reason, Result};
use concierge_common::kit;
use concierge_common::storage::Conn;
use concierge_common::supervise::{Need, Supervisor};
use concierge_common::timers;
use concierge_proto::catalogue::disputes as events;
use concierge_proto::disputes::{Dispute, dispute};
use jiff::Timestamp;

use crate::transitions::vetting_clock_runs;
use crate::{Disputes, RULES};

const KIND: &str = "vetting_due";

fn timer_id(dispute: &str) -> String {
    format!("{dispute}:vetting")
}

/// Whether `d`'s vetting clock runs and has not run out yet.
fn ticking(d: &Dispute) -> Option<Timestamp> {
    let state = dispute::State::try_from(d.state).unwrap_or(dispute::State::Unspecified);
    if !vetting_clock_runs(state) || d.overdue {
        return None;
    }
    d.vetting_due_time.as_ref().and_then(clock::from_proto)
}

/// Sets `d`'s timer at its due time while its clock runs, drops it
/// otherwise; in the transaction that writes `d`.
pub(crate) async fn arm(conn: &mut Conn<'_>, d: &Dispute) -> Result<()> {
    match ticking(d) {
        Some(due) => timers::arm(conn, &timer_id(&d.name), KIND, &d.name, due, &[]).await,
        None => timers::disarm(conn, &timer_id(&d.name)).await.map(|_| ()),
    }
}

/// Why the sweep leaves a dispute alone: its clock stopped or moved.
fn not_due(name: &str) -> Error {
    Error::FailedPrecondition {
        reason: Reason::IllegalTransition,
        subject: name.to_string(),
        description: "the vetting clock is not due".into(),
    }
}

impl Disputes {
    /// Works through the timers due at `now`, as `owner`: marks overdue
    /// each dispute whose vetting timer came due, sends each queued
    /// position e-mail. Returns how many disputes it marked overdue.
    pub async fn sweep_vetting(&self, owner: &str, now: Timestamp) -> Result<usize> {
        let due = timers::claim_due(self.db(), now, owner, timers::LEASE, 100).await?;
        let mut marked = 0;
        for timer in due {
            match timer.kind.as_str() {
                KIND => marked += self.mark_overdue(owner, &timer).await?,
                crate::documents::REMOVE_BYTES => {
                    if let Err(e) = self.remove_queued_bytes(owner, &timer).await {
                        tracing::warn!(document = %timer.subject, error = %e, "a removed document's bytes stay; retrying later");
                        timers::retry_later(self.db(), now, owner, &timer).await?;
                    }
                }
                crate::mail::POSITION_MAIL => {
                    if let Err(e) = self.mail_position(owner, &timer).await {
                        tracing::warn!(dispute = %timer.subject, error = %e, "position e-mail not sent; retrying later");
                        timers::retry_later(self.db(), now, owner, &timer).await?;
                    }
                }
                other => {
                    tracing::warn!(
                        kind = other,
                        "a timer of no kind this service knows; dropped"
                    );
                    let mut tx = self.db().begin().await?;
                    timers::complete(&mut tx, owner, &timer).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(marked)
    }

    async fn mark_overdue(&self, owner: &str, timer: &timers::Claimed) -> Result<usize> {
        let system = concierge_common::crud::Ctx::system("disputes", "");
        let changed = self
            .store()
            .change::<Dispute, _>(
                &RULES,
                &system,
                &timer.subject,
                "",
                events::DISPUTE_VETTING_OVERDUE,
                false,
                |d, row| match ticking(d) {
                    Some(due) if clock::to_micros(due) <= row.update_time => {
                        d.overdue = true;
                        Ok(())
                    }
                    _ => Err(not_due(&d.name)),
                },
            )
            .await;
        match changed {
            // The write dropped the timer with it.
            Ok(_) => Ok(1),
            Err(Error::FailedPrecondition { .. }) | Err(Error::NotFound { .. }) => {
                let mut tx = self.db().begin().await?;
                timers::complete(&mut tx, owner, timer).await?;
                tx.commit().await?;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

async fn sweep_forever(svc: Disputes, owner: String, poll: std::time::Duration) {
    loop {
        let now = clock::from_micros(svc.store().now());
        match svc.sweep_vetting(&owner, now).await {
            Ok(n) if n > 0 => tracing::info!(overdue = n, "disputes past their vetting target"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping vetting timers failed"),
        }
        tokio::time::sleep(poll).await;
    }
}

/// Runs the timer sweep on every replica, each claiming its own share, and
/// now and then removes what unfinished uploads staged.
pub(crate) fn supervise(svc: &Disputes, supervisor: &Supervisor, workers: &kit::Workers) {
    let (this, owner, poll) = (svc.clone(), workers.instance.clone(), workers.poll);
    supervisor.spawn("disputes-vetting-sweep", Need::Required, move || {
        let (svc, owner) = (this.clone(), owner.clone());
        async move {
            sweep_forever(svc, owner, poll).await;
            Ok(())
        }
    });
    let this = svc.clone();
    supervisor.spawn("disputes-staging-sweep", Need::Optional, move || {
        let svc = this.clone();
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                let now = clock::from_micros(svc.store().now());
                let before = now
                    .checked_sub(crate::documents::STAGING_TTL)
                    .unwrap_or(now);
                match svc.sweep_staging(before).await {
                    Ok(n) if n > 0 => tracing::info!(objects = n, "unfinished uploads removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeping unfinished uploads failed"),
                }
            }
        }
    });
}
