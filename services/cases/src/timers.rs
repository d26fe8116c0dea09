//! At-risk and breach events, fired once at the right instant. Each open
//! clock keeps two persisted timers (`…:at_risk`, `…:breach`) armed at the
//! instants its ledger projects; every change to the case re-arms them. A
//! sweeper on every replica claims due timers with a lease, re-reads the
//! clock, and either records the event (completing the timer in the same
//! transaction) or moves the timer to the clock's new instant.

use concierge_common::clock::{self, from_proto};
use std::collections::{HashMap, HashSet};

use concierge_common::crud::{Ctx, Store};
use concierge_common::error::Result;
use concierge_common::outbox::{self, NewEvent};
use concierge_common::timers;
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::{SlaClock, SlaState, sla_clock};
use concierge_proto::events::Visibility;
use jiff::Timestamp;

use crate::{Cases, store};

use concierge_common::resource;
use concierge_proto::concierge::cases::v1::{Case, CaseSlaSummary};

/// The worst of a case's clocks, and the next deadline among the open ones.
pub(crate) fn summarise<'a>(clocks: impl Iterator<Item = &'a SlaClock>) -> Option<CaseSlaSummary> {
    let mut summary = CaseSlaSummary::default();
    let mut any = false;
    let rank = |s: i32| match SlaState::try_from(s).unwrap_or(SlaState::Unspecified) {
        SlaState::Breached => 4,
        SlaState::AtRisk => 3,
        SlaState::OnTrack => 2,
        SlaState::Met => 1,
        _ => 0,
    };
    for c in clocks {
        any = true;
        if rank(c.state) > rank(summary.state) {
            summary.state = c.state;
        }
        match SlaState::try_from(c.state).unwrap_or(SlaState::Unspecified) {
            SlaState::Breached => {
                summary.breached_clock_keys.push(c.key.clone());
                if let Some(t) = c.target_time
                    && summary
                        .breached_target_time
                        .is_none_or(|b| (t.seconds, t.nanos) < (b.seconds, b.nanos))
                {
                    summary.breached_target_time = Some(t);
                }
            }
            SlaState::AtRisk => summary.at_risk_clock_keys.push(c.key.clone()),
            _ => {}
        }
        if c.status == sla_clock::Status::Paused as i32 {
            summary.paused = true;
        }
        // A paused clock's target is a projection that moves with the wall
        // clock: it is not a deadline to list or wake up for.
        let open = c.status != sla_clock::Status::Stopped as i32
            && c.status != sla_clock::Status::Paused as i32
            && c.state != SlaState::Breached as i32;
        if open
            && let Some(t) = c.target_time
            && summary
                .next_target_time
                .is_none_or(|n| (t.seconds, t.nanos) < (n.seconds, n.nanos))
        {
            summary.next_target_time = Some(t);
            summary.next_target_key = c.key.clone();
        }
    }
    any.then_some(summary)
}

/// A case with its clocks read now, and the row's revision (a derived write
/// lands only if nothing changed the case since).
pub(crate) struct ReadCase {
    pub(crate) case: Case,
    pub(crate) revision: i64,
    pub(crate) clocks: Vec<SlaClock>,
}

/// Timers claimed, and completed in one transaction, per batch.
const SWEEP_BATCH: i64 = 200;

const AT_RISK: &str = "sla_at_risk";
const BREACH: &str = "sla_breach";
fn system() -> Ctx {
    Ctx::system("cases-timers", "")
}

/// The instant a clock's timer of `kind` should fire, if it should: while the
/// clock runs toward (or is past) that point. A paused clock has no instant
/// until it resumes; a stopped one never fires again.
fn due(clock: &SlaClock, kind: &str) -> Option<Timestamp> {
    let open = clock.status != sla_clock::Status::Stopped as i32
        && clock.status != sla_clock::Status::Paused as i32;
    let state = SlaState::try_from(clock.state).unwrap_or(SlaState::Unspecified);
    if !open
        || !matches!(
            state,
            SlaState::OnTrack | SlaState::AtRisk | SlaState::Breached
        )
    {
        return None;
    }
    match kind {
        BREACH => clock.target_time.as_ref().and_then(from_proto),
        AT_RISK => clock.at_risk_time.as_ref().and_then(from_proto),
        _ => None,
    }
}

/// Arms the timers of a new case's clocks, in its create's transaction:
/// nothing has fired yet and nothing is armed, so every due instant is
/// armed, in one statement.
pub(crate) async fn arm_new(
    conn: &mut concierge_common::storage::Conn<'_>,
    case_name: &str,
    clocks: &[SlaClock],
) -> Result<()> {
    let arm: Vec<timers::Arm> = clocks
        .iter()
        .flat_map(|c| [AT_RISK, BREACH].map(move |kind| (c, kind)))
        .filter_map(|(c, kind)| {
            Some(timers::Arm {
                id: format!("{}:{kind}", c.name),
                kind,
                subject: case_name,
                due: due(c, kind)?,
                payload: c.key.as_bytes(),
            })
        })
        .collect();
    timers::arm_many(conn, &arm).await
}

impl Cases {
    /// Arms (or disarms) the timers of every clock of a case after a change,
    /// and keeps the case's SLA summary (what lists filter on) current.
    pub async fn refresh_timers(&self, case_name: &str) -> Result<()> {
        fail::fail_point!("cases::refresh_timers", |failing| {
            if failing.as_deref().is_none_or(|f| f == case_name) {
                Err(concierge_common::Error::Unavailable(
                    "failpoint: re-arming SLA timers".into(),
                ))
            } else {
                Ok(())
            }
        });
        let read = self.read_clocks(&[case_name]).await?;
        self.write_timers(&[case_name], read, true).await.map(drop)
    }

    /// [`Cases::refresh_timers`] for many cases: their clocks read with
    /// three queries, their timers written in one transaction. A case that
    /// is gone is skipped, and so (logged) is one whose clocks cannot be
    /// read, so that one bad case does not hold up the rest; returns how
    /// many were refreshed.
    pub(crate) async fn refresh_many(&self, names: &[&str]) -> Result<usize> {
        let read = self.read_clocks(names).await?;
        self.write_timers(names, read, false).await
    }

    /// Writes the timers, clock index and summary of cases read by
    /// [`Cases::read_clocks`], and clears their re-arm markers; `strict`: a
    /// case that could not be read fails the whole write rather than being
    /// skipped.
    async fn write_timers(
        &self,
        names: &[&str],
        mut read: HashMap<String, Result<ReadCase>>,
        strict: bool,
    ) -> Result<usize> {
        let mut tx = self.store().db().begin().await?;
        let mut n = 0;
        for case_name in names {
            let ReadCase {
                case,
                revision,
                clocks,
            } = match read.remove(*case_name) {
                None => {
                    // Gone (or deleted): nothing to arm, nothing left to do.
                    timers::disarm(&mut tx.conn(), &store::timers::refresh_id(case_name)).await?;
                    continue;
                }
                Some(Ok(one)) => one,
                Some(Err(e)) if strict => return Err(e),
                Some(Err(e)) => {
                    tracing::warn!(case = case_name, error = %e, "could not read SLA clocks; timers left as they are");
                    continue;
                }
            };
            let read_at = case
                .update_time
                .as_ref()
                .and_then(from_proto)
                .map_or(i64::MAX, clock::to_micros);
            let all: Vec<&SlaClock> = clocks.iter().collect();
            store::clocks::write(&mut tx.conn(), &case, &all, self.store().now()).await?;
            crate::chase::write_summary(
                &mut tx.conn(),
                case,
                revision,
                summarise(clocks.iter()),
                self.store().now(),
            )
            .await?;
            let names: Vec<&str> = clocks.iter().map(|c| c.name.as_str()).collect();
            let done = store::timers::fired(&mut tx.conn(), &names).await?;
            let mut arm = Vec::new();
            let mut disarm = Vec::new();
            for c in &clocks {
                for kind in [AT_RISK, BREACH] {
                    let id = format!("{}:{kind}", c.name);
                    let fired = done.contains(&(c.name.clone(), kind.to_string()));
                    match due(c, kind).filter(|_| !fired) {
                        Some(at) => arm.push(timers::Arm {
                            id,
                            kind,
                            subject: case_name,
                            due: at,
                            payload: c.key.as_bytes(),
                        }),
                        None => disarm.push(id),
                    }
                }
            }
            timers::arm_many(&mut tx.conn(), &arm).await?;
            timers::disarm_many(&mut tx.conn(), &disarm).await?;
            store::timers::unmark_refreshed(&mut tx.conn(), case_name, read_at).await?;
            n += 1;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Re-arms after a change, logging rather than failing the caller: the
    /// change is committed with its re-arm marker, which the next sweep (on
    /// any replica) works off if this attempt fails.
    pub(crate) async fn refresh_timers_after_change(&self, case_name: &str) {
        if let Err(e) = self.refresh_timers(case_name).await {
            tracing::warn!(case = case_name, error = %e, "could not re-arm SLA timers");
        }
    }

    /// Fires every timer due at `now`, batch by batch: SLA events, and the
    /// chase steps that fell due. Returns how many events and steps it
    /// recorded.
    pub async fn sweep_timers(&self, owner: &str, now: Timestamp) -> Result<usize> {
        let worker = || async {
            let mut fired = 0;
            loop {
                let (claimed, n) = self.sweep_batch(owner, now).await?;
                fired += n;
                if claimed < SWEEP_BATCH as usize {
                    return Ok::<_, concierge_common::error::Error>(fired);
                }
            }
        };
        // A backlog (a mass breach, a calendar change) is worked by a few
        // batches at once: each claims its own timers (SKIP LOCKED), and the
        // database, not this loop, is what bounds the rate.
        let (a, b, c, d) = tokio::join!(worker(), worker(), worker(), worker());
        Ok(a? + b? + c? + d?)
    }

    /// One batch: every claimed case's clocks are read first (a read may ask
    /// the customers service for a time zone, which must not happen while
    /// holding row locks), then one transaction completes the batch's
    /// timers, records their events and refreshes the summaries of the cases
    /// they concern. Returns (timers claimed, events recorded).
    async fn sweep_batch(&self, owner: &str, now: Timestamp) -> Result<(usize, usize)> {
        // The lease runs from the time it is now (a backlog's sweep started
        // earlier) and is short; it is renewed while this batch is worked,
        // so a replica that dies mid-batch delays its breaches by seconds.
        let lease_from = clock::from_micros(self.store().now());
        let claimed = timers::claim_due_until(
            self.store().db(),
            now,
            owner,
            lease_from.checked_add(timers::LEASE).unwrap_or(lease_from),
            SWEEP_BATCH,
        )
        .await?;
        if claimed.is_empty() {
            return Ok((0, 0));
        }
        let _heartbeat = timers::Heartbeat::start(
            self.store().db().clone(),
            owner.to_string(),
            claimed.iter().map(|t| t.id.clone()).collect(),
            self.store().clock().clone(),
        );
        let (refreshes, claimed): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .partition(|t| t.kind == store::timers::REFRESH);
        // Re-arms a change left unfinished (a crash, a failed re-arm). One
        // that fails again keeps its marker and is retried when its lease
        // runs out.
        for marker in &refreshes {
            if let Err(e) = self.refresh_timers(&marker.subject).await {
                tracing::warn!(case = %marker.subject, error = %e, "could not re-arm SLA timers");
            }
        }
        let (claimed, others, taken) = self.take_other_timers(owner, claimed).await;
        if claimed.is_empty() {
            return Ok((refreshes.len() + others, taken));
        }
        let claimed_count = claimed.len() + refreshes.len() + others;
        let mut names: Vec<&str> = claimed.iter().map(|t| t.subject.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut read = self.read_clocks(&names).await?;
        // None: the case is gone, and so are its timers. Absent: not read
        // this time (its lease runs out and a later sweep tries again).
        let mut cases: HashMap<&str, Option<ReadCase>> = HashMap::new();
        for name in &names {
            match read.remove(*name) {
                None => {
                    cases.insert(name, None);
                }
                Some(Ok(c)) => {
                    cases.insert(name, Some(c));
                }
                Some(Err(e)) => {
                    tracing::warn!(case = %name, error = %e, "could not read SLA clocks")
                }
            }
        }

        let mut fired = 0;
        let mut fired_kinds = Vec::new();
        let mut changed: HashSet<&str> = HashSet::new();
        let mut fired_clocks: HashSet<&str> = HashSet::new();
        let mut tx = self.store().db().begin().await?;
        let completed = timers::complete_many(
            &mut tx,
            owner,
            claimed
                .iter()
                .filter(|t| cases.contains_key(t.subject.as_str())),
        )
        .await?;
        // The timers whose instant has come, and those to wait for the
        // clock's new instant (a pause, a new calendar moved it).
        let mut reached = Vec::new();
        for timer in claimed.iter().filter(|t| completed.contains(&t.id)) {
            let key = String::from_utf8_lossy(&timer.payload);
            let Some(Some(ReadCase { case, clocks, .. })) = cases.get(timer.subject.as_str())
            else {
                continue;
            };
            let Some(c) = clocks.iter().find(|c| c.key == key) else {
                continue;
            };
            let state = SlaState::try_from(c.state).unwrap_or(SlaState::Unspecified);
            let due_now = match timer.kind.as_str() {
                BREACH => state == SlaState::Breached,
                _ => matches!(state, SlaState::AtRisk | SlaState::Breached),
            };
            if due_now {
                reached.push((timer, case, c));
            } else if let Some(at) = due(c, &timer.kind) {
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
        }
        let first = store::timers::mark_fired(
            &mut tx.conn(),
            reached
                .iter()
                .map(|(t, _, c)| (c.name.as_str(), t.kind.as_str())),
            clock::to_micros(now),
        )
        .await?;
        for (timer, case, c) in reached {
            if first.contains(&(c.name.clone(), timer.kind.clone())) {
                let (event, kind) = if timer.kind == BREACH {
                    (catalogue::cases::SLA_CLOCK_BREACHED, "breached")
                } else {
                    (catalogue::cases::SLA_CLOCK_AT_RISK, "at_risk")
                };
                outbox::record(
                    &mut tx.conn(),
                    NewEvent {
                        event,
                        source: "cases",
                        subject: &c.name,
                        account: &case.account,
                        visibility: Visibility::Internal,
                        actor: &system().principal,
                        request_id: "",
                        occur_time: now,
                        payload: c,
                    },
                )
                .await?;
                fired += 1;
                changed.insert(&timer.subject);
                fired_clocks.insert(c.name.as_str());
                fired_kinds.push(kind);
            }
        }
        for name in changed {
            if let Some(Some(ReadCase {
                case,
                revision,
                clocks,
            })) = cases.get(name)
            {
                let fired: Vec<&SlaClock> = clocks
                    .iter()
                    .filter(|c| fired_clocks.contains(c.name.as_str()))
                    .collect();
                store::clocks::index_clocks(&mut tx.conn(), case, &fired, clock::to_micros(now))
                    .await?;
                crate::chase::write_summary(
                    &mut tx.conn(),
                    case.clone(),
                    *revision,
                    summarise(clocks.iter()),
                    clock::to_micros(now),
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.store().nudge();
        for kind in fired_kinds {
            metrics::counter!("concierge_sla_events_fired_total", "kind" => kind).increment(1);
        }
        Ok((claimed_count, fired + taken))
    }

    /// Works the claimed timers that are not SLA events: chase steps, the
    /// e-mails of escalations and control documents, and the weekly run's
    /// tick. Returns the SLA timers left, how many others there were, and
    /// how many steps, documents and messages they made.
    async fn take_other_timers(
        &self,
        owner: &str,
        claimed: Vec<timers::Claimed>,
    ) -> (Vec<timers::Claimed>, usize, usize) {
        let (mut sla, mut steps, mut mails, mut documents, mut ticks, mut due) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for t in claimed {
            match t.kind.as_str() {
                store::chase::STEP => steps.push(t),
                crate::mail::ESCALATION_MAIL | crate::mail::NOTIFY_MAIL => mails.push(t),
                crate::control::CONTROL_DOC_MAIL => documents.push(t),
                crate::control::TICK => ticks.push(t),
                crate::deliverables::DUE => due.push(t),
                _ => sla.push(t),
            }
        }
        let mut made = 0;
        if !steps.is_empty() {
            made += self.take_chase_steps(owner, &steps).await;
        }
        if !mails.is_empty() {
            let (escalations, notifications): (Vec<_>, Vec<_>) = mails
                .iter()
                .cloned()
                .partition(|t| t.kind == crate::mail::ESCALATION_MAIL);
            made += self.mail_escalations(owner, &escalations).await;
            made += self.mail_notifications(owner, &notifications).await;
        }
        for t in &ticks {
            match self.weekly_control_documents(owner, t).await {
                Ok(n) => made += n,
                Err(e) => tracing::warn!(error = %e, "the weekly control document run failed"),
            }
        }
        if !documents.is_empty() {
            made += self.mail_control_documents(owner, &documents).await;
        }
        for t in &due {
            if let Err(e) = self.deliverable_due(owner, t).await {
                tracing::warn!(case = %t.subject, error = %e, "an overdue deliverable not marked yet");
            }
        }
        let others = steps.len() + mails.len() + documents.len() + ticks.len() + due.len();
        (sla, others, made)
    }

    /// The clocks of many cases read now, with three queries for all of
    /// them and each policy, calendar and time zone looked up once. A case
    /// that does not exist (or is deleted) is absent.
    pub(crate) async fn read_clocks(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, Result<ReadCase>>> {
        let rows = {
            let mut pooled = self.store().db().acquire().await?;
            resource::get_many(&mut pooled.conn(), &crate::resources::CASES, names).await?
        };
        let histories = self.case_histories(names).await?;
        let mut lookups = crate::reading::Lookups::default();
        let mut read = HashMap::new();
        for stored in rows.iter().filter(|s| s.delete_time == 0) {
            let case: Case = Store::decode::<Case, crate::Rules>(stored)?;
            let history = histories
                .get(&stored.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let clocks = self
                .clocks_of(&case, history, &mut lookups)
                .await
                .map(|clocks| ReadCase {
                    clocks: clocks.into_iter().map(|(c, ..)| c).collect(),
                    case,
                    revision: stored.revision,
                });
            read.insert(stored.name.clone(), clocks);
        }
        Ok(read)
    }

    /// The timer sweep as a worker, every `poll` (timers armed by other
    /// replicas fall due too): it ends only by panicking.
    pub async fn sweep_forever(self, owner: String, poll: std::time::Duration) {
        loop {
            let now = clock::from_micros(self.store().now());
            let swept = self.sweep_timers(&owner, now).await;
            // Counted per replica: how often each one looks for due timers.
            metrics::counter!("concierge_sla_timer_sweeps_total").increment(1);
            match swept {
                Ok(n) if n > 0 => tracing::info!(fired = n, "SLA events fired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping SLA timers failed"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Starts the service's background work under `supervisor`: the SLA
    /// timer sweep (as `owner`), the re-arm of open cases after calendar
    /// changes, the outbox relay to `bus`, the request-id purge, and the
    /// consumers that move open cases when their account changes hands and
    /// that follow escalations to the escalation channel.
    pub fn supervise(
        &self,
        supervisor: &concierge_common::supervise::Supervisor,
        owner: String,
        poll: std::time::Duration,
        bus: Option<concierge_common::relay::BusTarget>,
    ) {
        use concierge_common::supervise::Need;
        concierge_common::inbox::supervise(
            supervisor,
            self.store().db(),
            bus.as_ref(),
            std::sync::Arc::new(crate::handover::AccountHandover::new(self.clone())),
            self.store().clock().clone(),
        );
        concierge_common::inbox::supervise(
            supervisor,
            self.store().db(),
            bus.as_ref(),
            std::sync::Arc::new(crate::escalation_delivery::EscalationDeliveries),
            self.store().clock().clone(),
        );
        self.store().supervise(supervisor, bus);
        let this = self.clone();
        supervisor.spawn("cases-sla-timers", Need::Required, move || {
            let (this, owner) = (this.clone(), owner.clone());
            async move {
                this.sweep_forever(owner, poll).await;
                Ok(())
            }
        });
        let this = self.clone();
        supervisor.spawn("cases-review-backfill", Need::Optional, move || {
            let this = this.clone();
            async move {
                let written = this.backfill_review_columns().await?;
                if written > 0 {
                    tracing::info!(cases = written, "review columns filled in");
                }
                // Done for the life of the process: every later write keeps
                // the columns itself.
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let this = self.clone();
        supervisor.spawn("cases-calendar-rearm", Need::Required, move || {
            let this = this.clone();
            async move {
                this.rearm_forever(poll).await;
                Ok(())
            }
        });
    }
}
