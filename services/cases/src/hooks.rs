//! What goes with a write of each cases resource, in its transaction: the
//! rules between resources, the fields a change derives, and the rows it
//! records with it (state history, SLA policy revisions, the other half of
//! a link, the timers' re-arm marker). Nothing here decides who may: that is
//! [`crate::authz`].

use concierge_common::crud::{Ctx, Lifecycle, Resource, Store};
use concierge_common::error::{Error, Result};
use concierge_common::storage::Conn;
use concierge_proto::concierge::cases::v1::{
    Calendar, Case, CaseLink, CasePriority, ChaseRule, ChaseRun, ChaseStep, ControlDocument,
    ControlDocumentSettings, Escalation, EscalationDelivery, HandOffCode, Note, SlaClock,
    SlaPolicy, case, case_link, escalation, escalation_delivery, note,
};

use crate::{
    Rules, chase, deliverables, dependencies, lifecycle, link_source, post_public_update, rearm,
    resources, store,
};

// A calendar change re-arms open cases' timers in the background; a
// calendar an SLA policy counts in is not deleted.
impl Lifecycle<Calendar> for Rules {
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&Calendar>,
        after: &Calendar,
        now: i64,
    ) -> Result<()> {
        store::sla_policies::bump_config(conn).await?;
        rearm::after_calendar_write(conn, before, after, now).await
    }
    async fn check_delete(&self, conn: &mut Conn<'_>, c: &Calendar) -> Result<()> {
        calendar_in_use(conn, c).await
    }
    async fn after_delete(&self, conn: &mut Conn<'_>, _c: &Calendar, _now: i64) -> Result<()> {
        store::sla_policies::bump_config(conn).await
    }
}

// A chase rule's calendar exists (and a delete of it waits for this write);
// a built-in rule is disabled or edited, never deleted.
impl Lifecycle<ChaseRule> for Rules {
    async fn check_references(&self, conn: &mut Conn<'_>, r: &ChaseRule) -> Result<()> {
        if r.calendar.is_empty() {
            return Ok(());
        }
        calendar_exists(conn, "chase_rule.calendar", &r.calendar).await
    }
    /// New cases are matched against the rules snapshot of the SLA
    /// configuration generation, which every rule change moves on. A rule
    /// that stops starting runs brings its active runs' timers forward: the
    /// sweep cancels them, case by case.
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&ChaseRule>,
        after: &ChaseRule,
        _now: i64,
    ) -> Result<()> {
        store::sla_policies::bump_config(conn).await?;
        if before.is_some_and(|b| b.enabled) && !after.enabled {
            store::chase::hurry_runs_of(conn, &after.name).await?;
        }
        Ok(())
    }
    async fn after_delete(&self, conn: &mut Conn<'_>, r: &ChaseRule, _now: i64) -> Result<()> {
        store::sla_policies::bump_config(conn).await?;
        store::chase::hurry_runs_of(conn, &r.name).await?;
        Ok(())
    }
    async fn check_delete(&self, _conn: &mut Conn<'_>, r: &ChaseRule) -> Result<()> {
        if !r.built_in {
            return Ok(());
        }
        Err(Error::FailedPrecondition {
            reason: concierge_common::error::Reason::BuiltInRule,
            subject: r.name.clone(),
            description: format!(
                "{} ships with Concierge: disable it (enabled = false) or edit it instead",
                r.name
            ),
        })
    }
}

/// INVALID_ARGUMENT on `field` unless the calendar `name` exists. Its row is
/// taken for update: a delete of the calendar waits for this write, then
/// sees what now counts in it.
async fn calendar_exists(conn: &mut Conn<'_>, field: &str, name: &str) -> Result<()> {
    if concierge_common::resource::get_for_update(conn, &resources::CALENDARS, name)
        .await?
        .is_none()
    {
        return Err(Error::invalid(field, format!("{name} does not exist")));
    }
    Ok(())
}

/// Refuses to delete a calendar an SLA policy counts business time in,
/// deleted policies included (the cases pinned to their revisions still
/// read their clocks in it), or a chase rule waits in. Runs in the delete's transaction, which holds the
/// calendar's row; a policy naming it takes that row too (check_references),
/// so a policy created at the same moment cannot slip past.
async fn calendar_in_use(conn: &mut Conn<'_>, c: &Calendar) -> Result<()> {
    let users = store::calendars::counting_in(conn, &c.name).await?;
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        reason: concierge_common::error::Reason::CalendarInUse,
        subject: c.name.clone(),
        description: format!(
            "{} counts business time for {}: point them at another calendar first",
            c.name,
            users.join(", ")
        ),
    })
}

impl Lifecycle<HandOffCode> for Rules {}

// Runs and steps are written by the chase engine itself (`chase`), never
// through the store's generic writes.
impl Lifecycle<ChaseRun> for Rules {}
// Control documents and their settings are written by `control` itself.
impl Lifecycle<ControlDocument> for Rules {}
impl Lifecycle<ControlDocumentSettings> for Rules {}
impl Lifecycle<ChaseStep> for Rules {}

impl Lifecycle<Case> for Rules {
    fn on_create(&self, ctx: &Ctx, c: &mut Case, now: i64) {
        c.state = case::State::New as i32;
        c.state_time = concierge_common::clock::micros_to_proto(now);
        c.creator = ctx.principal.subject.clone();
        if c.priority == CasePriority::Unspecified as i32 {
            c.priority = CasePriority::Medium as i32;
        }
        if let Some(plan) = &self.new_case {
            plan.compute(c, now);
            deliverables::derive_overdue(c, now);
            plan.begin_chase(c, now);
        }
    }
    /// A change that makes a chase rule's condition hold starts its run, and
    /// one that clears it ends the run, in the change's transaction.
    async fn derive(&self, conn: &mut Conn<'_>, c: &mut Case, now: i64) -> Result<()> {
        c.withheld_by_dependency = dependencies::withheld(conn, c).await?;
        deliverables::derive_overdue(c, now);
        chase::on_change(conn, c, now).await
    }
    /// Every state the case enters is kept, in order: SLA clocks are read
    /// from it. A case closing (or reopening) releases (or again withholds)
    /// the cases that depend on it.
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        before: Option<&Case>,
        after: &Case,
        now: i64,
    ) -> Result<()> {
        deliverables::arm(conn, before, after, now).await?;
        // A new case's clocks were worked out before it was written: they,
        // its timers and its first state go in with it.
        let planned = before.is_none().then_some(self.new_case.as_ref()).flatten();
        if planned.is_none() {
            // Every change may move a clock: its timers are re-armed right
            // after the commit, and this marker, durable with the change,
            // makes sure.
            store::timers::mark_for_refresh(conn, &after.name, now).await?;
        }
        // A jeopardy reason reaches the client as the public update the
        // change named, also when a case already in jeopardy gets a new one.
        if let Some(j) = &after.jeopardy
            && !j.public_note.is_empty()
            && before
                .and_then(|b| b.jeopardy.as_ref())
                .is_none_or(|b| b.public_note != j.public_note)
        {
            post_public_update(conn, ctx, after, Some(&j.public_note), &j.reason, now).await?;
        }
        if before.is_some_and(|b| b.state == after.state) {
            return Ok(());
        }
        if after.state == case::State::PendingClient as i32 && !after.state_reason.is_empty() {
            post_public_update(conn, ctx, after, None, &after.state_reason, now).await?;
        }
        let open = |c: &Case| {
            lifecycle::is_open(case::State::try_from(c.state).unwrap_or(case::State::Unspecified))
        };
        if before.is_some_and(|b| open(b) != open(after)) {
            dependencies::refresh_dependents(conn, &after.name, now).await?;
        }
        if before.is_some_and(open) && !open(after) {
            cancel_open_escalations(conn, ctx, after, now).await?;
        }
        match planned {
            Some(plan) => {
                plan.write(conn, after, &ctx.principal.subject, now).await?;
                plan.write_chase(conn, after, now).await
            }
            None => store::cases::append_state(conn, after, now, &ctx.principal.subject).await,
        }
    }
}

// A new escalation is RAISED by whoever raised it, and its target's e-mail
// is queued with it. Its delivery says NO_CHANNEL until the gateway reports
// a webhook's outcome for it (`escalation_delivery`).
impl Lifecycle<Escalation> for Rules {
    fn on_create(&self, ctx: &Ctx, e: &mut Escalation, _now: i64) {
        e.state = escalation::State::Raised as i32;
        e.raiser = ctx.principal.subject.clone();
        e.delivery = Some(EscalationDelivery {
            state: escalation_delivery::State::NoChannel as i32,
            ..Default::default()
        });
    }
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&Escalation>,
        after: &Escalation,
        now: i64,
    ) -> Result<()> {
        if before.is_none() {
            crate::mail::queue_escalation(conn, after, now).await?;
        }
        Ok(())
    }
}

/// A case that closes (resolved, closed or cancelled) withdraws its open
/// escalations, each an `escalation_cancelled` by whoever closed it.
async fn cancel_open_escalations(conn: &mut Conn<'_>, ctx: &Ctx, c: &Case, now: i64) -> Result<()> {
    for row in store::chase::open_escalations(conn, &c.name).await? {
        let mut e: Escalation = Store::decode::<Escalation, Rules>(&row)?;
        e.state = escalation::State::Cancelled as i32;
        e.outcome = format!(
            "the case is {}",
            case::State::try_from(c.state)
                .unwrap_or_default()
                .as_str_name()
                .trim_start_matches("STATE_")
                .to_lowercase()
        );
        e.close_time = concierge_common::clock::micros_to_proto(now);
        chase::save(conn, &resources::ESCALATIONS, &c.name, &e, Some(&row), now).await?;
        e.set_meta(
            row.create_time,
            now,
            concierge_common::resource::etag(row.revision + 1),
        );
        concierge_common::crud::record_event(
            conn,
            &crate::RULES,
            ctx,
            crate::EVENTS,
            concierge_proto::catalogue::cases::ESCALATION_CANCELLED,
            &e,
            now,
        )
        .await?;
    }
    Ok(())
}

impl Lifecycle<Note> for Rules {
    fn on_create(&self, ctx: &Ctx, n: &mut Note, _now: i64) {
        let p = &ctx.principal;
        n.author = p.staff_member.clone().unwrap_or_else(|| p.subject.clone());
        n.author_display_name = p.display_name.clone();
        n.author_role = p.to_proto().role;
        // A note a caller writes arrives with its origin cleared; one the
        // service posts as part of a change says so.
        if n.origin == note::Origin::Unspecified as i32 {
            n.origin = note::Origin::Manual as i32;
        }
    }
}

impl Lifecycle<SlaPolicy> for Rules {
    async fn check_references(&self, conn: &mut Conn<'_>, r: &SlaPolicy) -> Result<()> {
        calendar_exists(conn, "sla_policy.calendar", &r.calendar).await
    }
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        _before: Option<&SlaPolicy>,
        after: &SlaPolicy,
        now: i64,
    ) -> Result<()> {
        store::sla_policies::bump_config(conn).await?;
        store::sla_policies::insert_revision(conn, after, now).await?;
        Ok(())
    }
    async fn after_delete(&self, conn: &mut Conn<'_>, _p: &SlaPolicy, _now: i64) -> Result<()> {
        store::sla_policies::bump_config(conn).await
    }
}

impl Lifecycle<SlaClock> for Rules {}

impl Lifecycle<CaseLink> for Rules {
    async fn check_references(&self, conn: &mut Conn<'_>, l: &CaseLink) -> Result<()> {
        let source = link_source(&l.name).to_string();
        let load = async |conn: &mut Conn<'_>, name: &str, field: &str| -> Result<Case> {
            let stored = concierge_common::resource::get(conn, &resources::CASES, name)
                .await?
                .ok_or_else(|| Error::invalid(field, format!("{name} does not exist")))?;
            Store::decode::<Case, Rules>(&stored)
        };
        let from = load(conn, &source, "parent").await?;
        let to = load(conn, &l.target, "case_link.target").await?;
        if from.account != to.account {
            return Err(Error::invalid(
                "case_link.target",
                format!("{} belongs to another account", l.target),
            ));
        }
        Ok(())
    }
    fn on_create(&self, ctx: &Ctx, l: &mut CaseLink, _now: i64) {
        let id = l.name.rsplit('/').next().unwrap_or_default().to_string();
        l.inverse = format!("{}/links/{id}", l.target);
        l.creator = ctx.principal.subject.clone();
    }
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&CaseLink>,
        after: &CaseLink,
        now: i64,
    ) -> Result<()> {
        if before.is_some() {
            return Ok(());
        }
        let source = link_source(&after.name).to_string();
        let kind = case_link::Type::try_from(after.r#type).unwrap_or(case_link::Type::Unspecified);
        let inverse = CaseLink {
            name: after.inverse.clone(),
            r#type: resources::inverse_type(kind) as i32,
            target: source,
            reason: after.reason.clone(),
            inverse: after.name.clone(),
            creator: after.creator.clone(),
            ..Default::default()
        };
        let stored = concierge_common::resource::Stored {
            name: inverse.name.clone(),
            parent: after.target.clone(),
            account: String::new(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: prost::Message::encode_to_vec(&inverse),
        };
        let columns = <CaseLink as concierge_common::crud::Resource<Rules>>::columns(&inverse);
        concierge_common::resource::insert(conn, &resources::CASE_LINKS, &stored, &columns).await?;
        dependencies::refresh(conn, &inverse.target, now).await?;
        dependencies::refresh(conn, &after.target, now).await
    }
    async fn after_delete(&self, conn: &mut Conn<'_>, l: &CaseLink, now: i64) -> Result<()> {
        concierge_common::resource::delete(conn, &resources::CASE_LINKS, &l.inverse).await?;
        dependencies::refresh(conn, &l.target, now).await?;
        dependencies::refresh(conn, link_source(&l.name), now).await
    }
}
