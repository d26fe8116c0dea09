//! What goes with a write of a dispute, in its transaction: the fields it
//! derives (line ids, totals), its history entry, and the
//! `dispute_state_changed` event of a change that announces something else
//! first. Nothing here decides who may.

use concierge_common::crud::{self, Ctx, Lifecycle};
use concierge_common::error::{Error, Reason, Result};
use concierge_common::principal::Role;
use concierge_common::resource::{self, Scope, Stored};
use concierge_common::storage::Conn;
use concierge_proto::catalogue::disputes as events;
use concierge_proto::disputes::{
    Dispute, DisputeDocument, DisputeHistoryEntry, DisputeSettings, dispute,
};
use concierge_proto::types::Money;

use crate::resources::{HISTORY, sum};
use crate::{EVENTS, Rules};

/// What a change writes in the dispute's history besides its states.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    /// The method, e.g. "SubmitDispute".
    pub action: &'static str,
    pub reason: String,
    pub amount: Option<Money>,
    /// The change announces itself with an event of its own (a proposed
    /// credit): a state it moves to is announced as well.
    pub announce_state_change: bool,
    /// An edit (UpdateDispute): lines change only in DRAFT and
    /// INFORMATION_REQUESTED, and a client edits nothing else either.
    pub edit: bool,
    /// A published position: its e-mail is queued with it.
    pub mail_position: bool,
    /// The entry's amount is the credit the change approved.
    pub amount_is_approved_credit: bool,
}

/// Refuses an edit the dispute's state does not allow, in the edit's
/// transaction (the state read is the one written over).
fn check_edit(ctx: &Ctx, before: &Dispute, after: &Dispute) -> Result<()> {
    let state = dispute::State::try_from(before.state).unwrap_or(dispute::State::Unspecified);
    let open = matches!(
        state,
        dispute::State::Draft | dispute::State::InformationRequested
    );
    let refuse = |what: &str| {
        Err(Error::FailedPrecondition {
            reason: Reason::IllegalTransition,
            subject: after.name.clone(),
            description: format!(
                "{} is {}: {what} only in STATE_DRAFT and STATE_INFORMATION_REQUESTED",
                after.name,
                state.as_str_name()
            ),
        })
    };
    if !open && ctx.principal.role == Role::Client {
        return refuse("a client edits its dispute");
    }
    if !open && before.lines != after.lines {
        return refuse("the lines change");
    }
    if ctx.principal.role == Role::Client && before.owner != after.owner {
        return Err(Error::PermissionDenied(
            "the owner of a dispute is the company's to choose".into(),
        ));
    }
    Ok(())
}

/// Line ids for the lines without one ("1", "2", … after the highest
/// number in use) and the totals.
pub(crate) fn settle(d: &mut Dispute) {
    let mut next = d
        .lines
        .iter()
        .filter_map(|l| l.id.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    for l in &mut d.lines {
        if l.id.is_empty() {
            next = next.saturating_add(1);
            l.id = next.to_string();
        }
    }
    d.total_billed = sum(d.lines.iter().filter_map(|l| l.billed_amount.as_ref()));
    d.total_disputed = sum(d.lines.iter().filter_map(|l| l.disputed_amount.as_ref()));
}

/// One history entry of `dispute`, besides the state it is in now.
pub(crate) struct Entry<'a> {
    pub from_state: i32,
    pub action: &'a str,
    pub reason: &'a str,
    pub amount: Option<Money>,
}

/// Appends an entry to `dispute`'s history, in the transaction of the change
/// it records; the dispute's row is locked by that change, so entries are
/// numbered one after the other.
pub(crate) async fn append_history(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    dispute: &Dispute,
    entry: Entry<'_>,
    now: i64,
) -> Result<()> {
    let seq = resource::count(conn, &HISTORY, &Scope::Parent(dispute.name.clone())).await? + 1;
    let entry = DisputeHistoryEntry {
        name: format!("{}/history/{seq:08}", dispute.name),
        actor: ctx.principal.subject.clone(),
        actor_display_name: ctx.principal.display_name.clone(),
        from_state: entry.from_state,
        to_state: dispute.state,
        action: entry.action.to_string(),
        reason: entry.reason.to_string(),
        amount: entry.amount,
        request_id: ctx.request_id.clone(),
        create_time: concierge_common::clock::micros_to_proto(now),
    };
    let stored = Stored {
        name: entry.name.clone(),
        parent: dispute.name.clone(),
        account: dispute.account.clone(),
        create_time: now,
        update_time: now,
        delete_time: 0,
        revision: 1,
        body: crud::strip_meta::<DisputeHistoryEntry, Rules>(&entry),
    };
    resource::insert(
        conn,
        &HISTORY,
        &stored,
        &crud::Resource::<Rules>::columns(&entry),
    )
    .await
}

impl Lifecycle<Dispute> for Rules {
    fn on_create(&self, ctx: &Ctx, d: &mut Dispute, now: i64) {
        d.state = dispute::State::Draft as i32;
        d.state_time = concierge_common::clock::micros_to_proto(now);
        d.creator = ctx.principal.subject.clone();
        settle(d);
    }

    /// Only drafts are deleted: anything submitted stays on record.
    async fn check_delete(&self, _conn: &mut Conn<'_>, d: &Dispute) -> Result<()> {
        if d.state != dispute::State::Draft as i32 {
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: d.name.clone(),
                description: format!(
                    "{} was submitted: only drafts are deleted; a submitted dispute is denied or closed",
                    d.name
                ),
            });
        }
        Ok(())
    }

    /// A deleted draft leaves no timer behind (a draft has none; this keeps
    /// it so).
    async fn after_delete(&self, conn: &mut Conn<'_>, d: &Dispute, _now: i64) -> Result<()> {
        let mut gone = d.clone();
        gone.state = dispute::State::Closed as i32;
        crate::vetting::arm(conn, &gone).await
    }

    async fn derive(&self, _conn: &mut Conn<'_>, d: &mut Dispute, _now: i64) -> Result<()> {
        settle(d);
        Ok(())
    }

    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        before: Option<&Dispute>,
        after: &Dispute,
        now: i64,
    ) -> Result<()> {
        crate::vetting::arm(conn, after).await?;
        let Some(recorded) = &self.recorded else {
            return Ok(());
        };
        if recorded.edit
            && let Some(before) = before
        {
            check_edit(ctx, before, after)?;
        }
        let from = before.map(|b| b.state).unwrap_or_default();
        append_history(
            conn,
            ctx,
            after,
            Entry {
                from_state: from,
                action: recorded.action,
                reason: &recorded.reason,
                amount: if recorded.amount_is_approved_credit {
                    after.approved_credit.clone()
                } else {
                    recorded.amount.clone()
                },
            },
            now,
        )
        .await?;
        if recorded.mail_position {
            crate::mail::queue_position(conn, after, now).await?;
        }
        if recorded.announce_state_change && before.is_some_and(|b| b.state != after.state) {
            crud::record_event(
                conn,
                self,
                ctx,
                EVENTS,
                events::DISPUTE_STATE_CHANGED,
                after,
                now,
            )
            .await?;
        }
        Ok(())
    }
}

impl Lifecycle<DisputeHistoryEntry> for Rules {}

impl Lifecycle<DisputeDocument> for Rules {}

impl Lifecycle<DisputeSettings> for Rules {}
