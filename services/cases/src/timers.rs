//! At-risk and breach events, fired once at the right instant. Each open
//! clock keeps two persisted timers (`…:at_risk`, `…:breach`) armed at the
//! instants its ledger projects; every change to the case re-arms them. A
//! sweeper on every replica claims due timers with a lease, re-reads the
//! clock, and either records the event (completing the timer in the same
//! transaction) or moves the timer to the clock's new instant.

use concierge_common::clock::{self, from_proto};
use concierge_common::crud::Ctx;
use concierge_common::error::Result;
use concierge_common::outbox::{self, NewEvent};
use concierge_common::principal::Principal;
use concierge_common::timers;
use concierge_proto::concierge::cases::v1::{SlaClock, SlaState, sla_clock};
use concierge_proto::events::Visibility;
use jiff::{SignedDuration, Timestamp};

use crate::Cases;

const AT_RISK: &str = "sla_at_risk";
const BREACH: &str = "sla_breach";

fn system() -> Ctx {
    Ctx {
        principal: Principal::system("cases-timers"),
        request_id: String::new(),
    }
}

/// The instant a clock's timer of `kind` should fire, if it should.
fn due(clock: &SlaClock, kind: &str) -> Option<Timestamp> {
    let open = clock.status != sla_clock::Status::Stopped as i32;
    let state = SlaState::try_from(clock.state).unwrap_or(SlaState::Unspecified);
    match kind {
        BREACH if open && matches!(state, SlaState::OnTrack | SlaState::AtRisk) => {
            clock.target_time.as_ref().and_then(from_proto)
        }
        AT_RISK if open && state == SlaState::OnTrack => {
            clock.at_risk_time.as_ref().and_then(from_proto)
        }
        _ => None,
    }
}

impl Cases {
    /// Arms (or disarms) the timers of every clock of a case, after a change.
    pub async fn refresh_timers(&self, case_name: &str) -> Result<()> {
        let clocks = self.case_clocks(&system(), case_name).await?;
        let mut tx = self.store().db().begin().await?;
        for (c, ..) in &clocks {
            for kind in [AT_RISK, BREACH] {
                let id = format!("{}:{kind}", c.name);
                match due(c, kind) {
                    Some(at) => {
                        timers::arm(&mut tx.conn(), &id, kind, case_name, at, c.key.as_bytes())
                            .await?
                    }
                    None => {
                        timers::disarm(&mut tx.conn(), &id).await?;
                    }
                }
            }
        }
        tx.commit().await
    }

    /// Re-arms after a change, logging rather than failing the caller: the
    /// change is committed, and the next change or sweep re-arms anyway.
    pub(crate) async fn refresh_timers_after_change(&self, case_name: &str) {
        if let Err(e) = self.refresh_timers(case_name).await {
            tracing::warn!(case = case_name, error = %e, "could not re-arm SLA timers");
        }
    }

    /// Fires the timers due at `now`; returns how many events it recorded.
    pub async fn sweep_timers(&self, owner: &str, now: Timestamp) -> Result<usize> {
        let claimed = timers::claim_due(
            self.store().db(),
            now,
            owner,
            SignedDuration::from_secs(60),
            100,
        )
        .await?;
        let mut fired = 0;
        for timer in claimed {
            let clocks = self.case_clocks(&system(), &timer.subject).await?;
            let key = String::from_utf8_lossy(&timer.payload).to_string();
            let Some((c, ..)) = clocks.into_iter().find(|(c, ..)| c.key == key) else {
                let mut tx = self.store().db().begin().await?;
                timers::complete(&mut tx, owner, &timer).await?;
                tx.commit().await?;
                continue;
            };
            let state = SlaState::try_from(c.state).unwrap_or(SlaState::Unspecified);
            let reached = match timer.kind.as_str() {
                BREACH => state == SlaState::Breached,
                _ => matches!(state, SlaState::AtRisk | SlaState::Breached),
            };
            let mut tx = self.store().db().begin().await?;
            if !timers::complete(&mut tx, owner, &timer).await? {
                continue;
            }
            if reached {
                let verb = if timer.kind == BREACH {
                    "breached"
                } else {
                    "at_risk"
                };
                let account = self.case_account(&timer.subject).await?;
                outbox::record(
                    &mut tx.conn(),
                    NewEvent {
                        event_type: format!("concierge.cases.v1.sla_clock_{verb}"),
                        source: "cases",
                        subject: &c.name,
                        account: &account,
                        visibility: Visibility::Internal,
                        actor: &system().principal,
                        request_id: "",
                        occur_time: now,
                        payload: Some(outbox::pack(&c)),
                    },
                )
                .await?;
                fired += 1;
            } else if let Some(at) = due(&c, &timer.kind) {
                // The clock moved (a pause, a new calendar): wait for its new instant.
                timers::arm(
                    &mut tx.conn(),
                    &timer.id,
                    &timer.kind,
                    &timer.subject,
                    at,
                    key.as_bytes(),
                )
                .await?;
            }
            tx.commit().await?;
            self.store().nudge();
        }
        Ok(fired)
    }

    async fn case_account(&self, case_name: &str) -> Result<String> {
        let c: concierge_proto::concierge::cases::v1::Case = self
            .store()
            .get(&crate::RULES, &system(), case_name)
            .await?;
        Ok(c.account)
    }

    /// Sweeps for as long as the process lives: at the next due instant, or
    /// every `poll` at the latest (timers armed by other replicas).
    pub fn run_timers(
        &self,
        owner: String,
        poll: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let now = clock::from_micros(this.store().now());
                match this.sweep_timers(&owner, now).await {
                    Ok(n) if n > 0 => tracing::info!(fired = n, "SLA events fired"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeping SLA timers failed"),
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}
