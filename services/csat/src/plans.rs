//! Corrective action plans: what the company does to win back a
//! dissatisfied client. A detractor's answer opens one in the transaction
//! that records the answer; people open others by hand. Each plan has an
//! owner, actions with owners, due times and states, the cases behind it
//! and its account.
//!
//! `overdue` and `next_due_time` are derived on every write and again by a
//! timer at the next due time (without a new revision), so that a filter on
//! `overdue` (the portfolio review's) finds a plan the moment an action
//! runs late.

use concierge_common::clock;
use concierge_common::crud::{self, Authorize, Ctx, Lifecycle, Resource};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::idempotency::Key;
use concierge_common::principal::{Principal, Role};
use concierge_common::resource::{self, Kind};
use concierge_common::storage::Conn;
use concierge_common::timers;
use concierge_proto::catalogue;
use concierge_proto::csat::{
    CorrectiveAction, CorrectiveActionPlan, Survey, corrective_action, corrective_action_plan,
};
use concierge_proto::events::Visibility;
use jiff::SignedDuration;

use crate::{Csat, EVENTS, RULES, Rules};

/// The timer kind of a plan's next due time.
pub const DUE: &str = "plan_due";
const MAX_ACTIONS: usize = 50;
const MAX_CASES: usize = 50;
const MAX_TEXT: usize = 10_000;
/// When the first action of a plan opened for a detractor is due: call the
/// client within two days.
pub const DETRACTOR_CALL_WITHIN: SignedDuration = SignedDuration::from_hours(48);

const STATES: FieldType = FieldType::Enum {
    parse: |s| corrective_action_plan::State::from_str_name(s).map(|v| v as i32),
    prefix: "STATE_",
};
const ORIGINS: FieldType = FieldType::Enum {
    parse: |s| corrective_action_plan::Origin::from_str_name(s).map(|v| v as i32),
    prefix: "ORIGIN_",
};

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { name, column, ty }
}

pub static PLANS: Kind = Kind {
    resource_type: "CorrectiveActionPlan",
    table: "corrective_action_plans",
    fields: &[
        field("account", "account", FieldType::Text),
        field("account_manager", "account_manager", FieldType::Text),
        field("owner", "owner", FieldType::Text),
        field("origin", "origin", ORIGINS),
        field("state", "state", STATES),
        field("overdue", "overdue", FieldType::Bool),
        field("next_due_time", "next_due_time", FieldType::Timestamp),
        field("cases", "cases", FieldType::Text),
        field("create_time", "create_time", FieldType::Timestamp),
    ],
};

fn timer_id(plan: &str) -> String {
    format!("due:{plan}")
}

fn open(a: &CorrectiveAction) -> bool {
    matches!(
        corrective_action::State::try_from(a.state).unwrap_or_default(),
        corrective_action::State::Open | corrective_action::State::InProgress
    )
}

fn due_micros(a: &CorrectiveAction) -> Option<i64> {
    a.due_time
        .as_ref()
        .and_then(clock::from_proto)
        .map(clock::to_micros)
}

/// Sets what a plan derives at `now`: each open action's `overdue`, the
/// plan's `overdue` and `next_due_time` (of its open actions, while open).
pub fn settle(p: &mut CorrectiveActionPlan, now: i64) {
    let plan_open = p.state == corrective_action_plan::State::Open as i32;
    let mut next: Option<i64> = None;
    for a in &mut p.actions {
        let due = due_micros(a);
        a.overdue = plan_open && open(a) && due.is_some_and(|d| d <= now);
        if plan_open
            && open(a)
            && let Some(d) = due
        {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    p.overdue = p.actions.iter().any(|a| a.overdue);
    p.next_due_time = next.and_then(clock::micros_to_proto);
}

/// Ids for the actions without one ("1", "2", … after the highest in use),
/// and OPEN for a new action.
fn number_actions(p: &mut CorrectiveActionPlan) {
    let mut next = p
        .actions
        .iter()
        .filter_map(|a| a.id.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    for a in &mut p.actions {
        if a.id.is_empty() {
            next = next.saturating_add(1);
            a.id = next.to_string();
        }
        if a.state == 0 {
            a.state = corrective_action::State::Open as i32;
        }
    }
}

fn staff(p: &Principal) -> Result<()> {
    if p.role == Role::Client {
        return Err(Error::PermissionDenied(
            "corrective action plans are internal to the company".into(),
        ));
    }
    Ok(())
}

fn staff_name(field: &str, value: &str, required: bool, v: &mut Violations) {
    if value.is_empty() {
        if required {
            v.add(field, "required: \"staff/{staff_member}\"");
        }
    } else if concierge_common::names::parse(field, value, &["staff"]).is_err() {
        v.add(field, "a staff member, \"staff/{staff_member}\"");
    }
}

impl Resource<Rules> for CorrectiveActionPlan {
    const KIND: &'static Kind = &PLANS;
    const COLLECTIONS: &'static [&'static str] = &["correctiveActionPlans"];
    const FIELD: &'static str = "corrective_action_plan";
    const UPDATABLE: &'static [&'static str] =
        &["title", "description", "owner", "cases", "actions"];

    concierge_common::resource_bookkeeping!();

    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("account_manager", Value::Text(self.account_manager.clone())),
            ("owner", Value::Text(self.owner.clone())),
            ("origin", Value::Int(i64::from(self.origin))),
            ("state", Value::Int(i64::from(self.state))),
            ("overdue", Value::Int(i64::from(self.overdue))),
            (
                "next_due_time",
                Value::Int(
                    self.next_due_time
                        .as_ref()
                        .and_then(clock::from_proto)
                        .map(clock::to_micros)
                        .unwrap_or(0),
                ),
            ),
            ("cases", Value::Text(self.cases.join(" "))),
        ]
    }

    /// Actions keep their state, note and completion by id; an action
    /// without an id is a new one.
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "title" => self.title = from.title.clone(),
            "description" => self.description = from.description.clone(),
            "owner" => self.owner = from.owner.clone(),
            "cases" => self.cases = from.cases.clone(),
            "actions" => {
                let before = std::mem::take(&mut self.actions);
                self.actions = from
                    .actions
                    .iter()
                    .map(|a| {
                        let mut a = a.clone();
                        match before.iter().find(|b| !a.id.is_empty() && b.id == a.id) {
                            Some(b) => {
                                a.state = b.state;
                                a.state_note = b.state_note.clone();
                                a.complete_time = b.complete_time;
                            }
                            None => {
                                a.id.clear();
                                a.state = 0;
                                a.state_note.clear();
                                a.complete_time = None;
                            }
                        }
                        a
                    })
                    .collect();
                number_actions(self);
            }
            _ => {}
        }
    }

    fn check(&self, v: &mut Violations) {
        let f = |x: &str| format!("corrective_action_plan.{x}");
        if self.title.trim().is_empty() || self.title.chars().count() > 200 {
            v.add(f("title"), "required: 1 to 200 characters");
        }
        if self.description.chars().count() > MAX_TEXT {
            v.add(f("description"), format!("at most {MAX_TEXT} characters"));
        }
        if concierge_common::names::parse(&f("account"), &self.account, &["accounts"]).is_err() {
            v.add(f("account"), "required: the client, \"accounts/{account}\"");
        }
        staff_name(&f("owner"), &self.owner, true, v);
        if self.cases.len() > MAX_CASES {
            v.add(f("cases"), format!("at most {MAX_CASES}"));
        }
        for (i, c) in self.cases.iter().enumerate().take(MAX_CASES) {
            if concierge_common::names::parse(&f("cases"), c, &["cases"]).is_err() {
                v.add(
                    format!("corrective_action_plan.cases[{i}]"),
                    "a case, \"cases/{case}\"",
                );
            }
        }
        if !self.detractor_survey.is_empty()
            && concierge_common::names::parse(
                &f("detractor_survey"),
                &self.detractor_survey,
                &["surveys"],
            )
            .is_err()
        {
            v.add(f("detractor_survey"), "a survey, \"surveys/{survey}\"");
        }
        if self.actions.len() > MAX_ACTIONS {
            v.add(f("actions"), format!("at most {MAX_ACTIONS}"));
        }
        for (i, a) in self.actions.iter().enumerate().take(MAX_ACTIONS) {
            let af = |x: &str| format!("corrective_action_plan.actions[{i}].{x}");
            if a.description.trim().is_empty() || a.description.chars().count() > 1000 {
                v.add(af("description"), "required: 1 to 1000 characters");
            }
            staff_name(&af("owner"), &a.owner, false, v);
            if let Some(t) = &a.due_time
                && concierge_common::bounded::Instant::try_from(t).is_err()
            {
                v.add(af("due_time"), "an instant between 1970 and 2200 (UTC)");
            }
            if a.id.chars().count() > 20 {
                v.add(af("id"), "at most 20 characters");
            }
        }
    }

    fn clear_output_only(&mut self) {
        self.account_manager.clear();
        self.origin = 0;
        self.state = 0;
        self.overdue = false;
        self.next_due_time = None;
        self.create_time = None;
        self.update_time = None;
        self.close_time = None;
        for a in &mut self.actions {
            a.state = 0;
            a.state_note.clear();
            a.complete_time = None;
            a.overdue = false;
        }
    }

    fn account(&self) -> String {
        self.account.clone()
    }
}

impl Authorize<CorrectiveActionPlan> for Rules {
    type Facts = ();
    fn visibility(&self, _p: &CorrectiveActionPlan) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff(p)
    }
    fn may_write(&self, p: &Principal, _plan: &CorrectiveActionPlan, _f: &()) -> Result<()> {
        staff(p)
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff(p).map(|_| None)
    }
}

impl Lifecycle<CorrectiveActionPlan> for Rules {
    fn on_create(&self, _ctx: &Ctx, p: &mut CorrectiveActionPlan, now: i64) {
        p.state = corrective_action_plan::State::Open as i32;
        if p.origin == 0 {
            p.origin = corrective_action_plan::Origin::Manual as i32;
        }
        number_actions(p);
        settle(p, now);
    }

    async fn derive(
        &self,
        _conn: &mut Conn<'_>,
        p: &mut CorrectiveActionPlan,
        now: i64,
    ) -> Result<()> {
        settle(p, now);
        Ok(())
    }

    /// The timer of the next due time follows the plan.
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        _before: Option<&CorrectiveActionPlan>,
        after: &CorrectiveActionPlan,
        now: i64,
    ) -> Result<()> {
        let next = after
            .next_due_time
            .as_ref()
            .and_then(clock::from_proto)
            .filter(|t| clock::to_micros(*t) > now && !after.overdue);
        match next {
            Some(due) => {
                timers::arm(conn, &timer_id(&after.name), DUE, &after.name, due, b"").await
            }
            None => timers::disarm(conn, &timer_id(&after.name)).await.map(drop),
        }
    }
}

/// Opens the plan for a detractor's answer to `survey`, in the caller's
/// transaction (the answer's): owned by the account manager, with a first
/// action to call the client within two days.
pub(crate) async fn open_for_detractor(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    survey: &Survey,
    case_title: &str,
    name: String,
    now: i64,
) -> Result<CorrectiveActionPlan> {
    let due = clock::from_micros(now)
        .checked_add(DETRACTOR_CALL_WITHIN)
        .unwrap_or_else(|_| clock::from_micros(now));
    let score = survey
        .response
        .as_ref()
        .map(|r| r.score)
        .unwrap_or_default();
    let comment = survey
        .response
        .as_ref()
        .map(|r| r.comment.as_str())
        .filter(|c| !c.is_empty())
        .map(|c| format!(": \"{c}\""))
        .unwrap_or_default();
    let plan = CorrectiveActionPlan {
        name,
        title: format!("Detractor on \"{case_title}\""),
        description: format!(
            "{} answered {} with {score}{comment}",
            survey.contact, survey.name
        ),
        account: survey.account.clone(),
        owner: survey.account_manager.clone(),
        account_manager: survey.account_manager.clone(),
        origin: corrective_action_plan::Origin::Detractor as i32,
        detractor_survey: survey.name.clone(),
        cases: vec![survey.r#case.clone()],
        actions: vec![CorrectiveAction {
            description: "Call the client about the answer and agree what we will do".into(),
            owner: survey.account_manager.clone(),
            due_time: Some(clock::to_proto(due)),
            ..Default::default()
        }],
        ..Default::default()
    };
    crud::insert_new(conn, &RULES, ctx, EVENTS, "", plan, now).await
}

fn illegal(name: &str, description: String) -> Error {
    Error::FailedPrecondition {
        reason: Reason::IllegalTransition,
        subject: name.to_string(),
        description,
    }
}

fn state_word(s: i32) -> &'static str {
    corrective_action_plan::State::try_from(s)
        .unwrap_or_default()
        .as_str_name()
}

/// The plan-level transitions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transition {
    Complete,
    Cancel,
    Reopen,
}

impl Csat {
    /// CreateCorrectiveActionPlan: the account must exist; its account
    /// manager is recorded with the plan.
    pub(crate) async fn create_plan(
        &self,
        ctx: &Ctx,
        req: concierge_proto::csat::CreateCorrectiveActionPlanRequest,
    ) -> Result<CorrectiveActionPlan> {
        Authorize::<CorrectiveActionPlan>::may_attempt_write(&RULES, &ctx.principal, "")?;
        let hashed = concierge_common::without_request_id!(req);
        let account = req
            .corrective_action_plan
            .as_ref()
            .map(|p| p.account.clone())
            .unwrap_or_default();
        let manager = if concierge_common::names::parse(
            "corrective_action_plan.account",
            &account,
            &["accounts"],
        )
        .is_ok()
        {
            self.peers()
                .account(&ctx.request_id, "corrective_action_plan.account", &account)
                .await?
                .account_manager
        } else {
            String::new()
        };
        self.store()
            .create_learned(
                &RULES,
                ctx,
                "CreateCorrectiveActionPlan",
                &hashed,
                concierge_common::crud::New {
                    parent: "",
                    resource: req.corrective_action_plan,
                    id: &req.corrective_action_plan_id,
                    request_id: &req.request_id,
                },
                false,
                move |p: &mut CorrectiveActionPlan| p.account_manager = manager,
            )
            .await
    }

    /// SetCorrectiveActionState.
    pub(crate) async fn set_action_state(
        &self,
        ctx: &Ctx,
        req: concierge_proto::csat::SetCorrectiveActionStateRequest,
    ) -> Result<CorrectiveActionPlan> {
        let state = corrective_action::State::try_from(req.state).unwrap_or_default();
        if state == corrective_action::State::Unspecified {
            return Err(Error::invalid(
                "state",
                "STATE_OPEN, STATE_IN_PROGRESS, STATE_DONE or STATE_CANCELLED",
            ));
        }
        if req.note.chars().count() > MAX_TEXT {
            return Err(Error::invalid(
                "note",
                format!("at most {MAX_TEXT} characters"),
            ));
        }
        let hashed = concierge_common::without_request_id!(req);
        let key = Key::new(
            &ctx.principal.subject,
            &req.request_id,
            "SetCorrectiveActionState",
            &hashed,
        )?;
        let (name, action_id, note) = (req.name.clone(), req.action_id.clone(), req.note.clone());
        let now = self.store().now();
        self.store()
            .change_once::<CorrectiveActionPlan, _>(
                &RULES,
                ctx,
                key,
                &req.name,
                &req.etag,
                catalogue::csat::CORRECTIVE_ACTION_PLAN_UPDATED,
                false,
                move |p, _| {
                    if p.state != corrective_action_plan::State::Open as i32 {
                        return Err(illegal(
                            &name,
                            format!(
                                "the plan is {}: actions move only in an open plan",
                                state_word(p.state)
                            ),
                        ));
                    }
                    let a = p
                        .actions
                        .iter_mut()
                        .find(|a| a.id == action_id)
                        .ok_or_else(|| {
                            Error::invalid(
                                "action_id",
                                format!("{name} has no action {action_id:?}"),
                            )
                        })?;
                    a.state = state as i32;
                    a.state_note = note;
                    a.complete_time = matches!(
                        state,
                        corrective_action::State::Done | corrective_action::State::Cancelled
                    )
                    .then(|| clock::to_proto(clock::from_micros(now)));
                    Ok(())
                },
            )
            .await
    }

    /// CompleteCorrectiveActionPlan, CancelCorrectiveActionPlan and
    /// ReopenCorrectiveActionPlan: `why` is the outcome or the reason, kept
    /// at the end of the description.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn transition_plan(
        &self,
        ctx: &Ctx,
        transition: Transition,
        name: &str,
        why: &str,
        etag: &str,
        key: Option<Key>,
    ) -> Result<CorrectiveActionPlan> {
        if why.chars().count() > MAX_TEXT {
            return Err(Error::invalid(
                if matches!(transition, Transition::Complete) {
                    "outcome"
                } else {
                    "reason"
                },
                format!("at most {MAX_TEXT} characters"),
            ));
        }
        if !matches!(transition, Transition::Complete) && why.trim().is_empty() {
            return Err(Error::invalid("reason", "required"));
        }
        let (subject, why) = (name.to_string(), why.trim().to_string());
        let now = self.store().now();
        self.store()
            .change_once::<CorrectiveActionPlan, _>(
                &RULES,
                ctx,
                key,
                name,
                etag,
                catalogue::csat::CORRECTIVE_ACTION_PLAN_UPDATED,
                false,
                move |p, _| {
                    use corrective_action_plan::State;
                    let state = State::try_from(p.state).unwrap_or_default();
                    let (allowed, to, label) = match transition {
                        Transition::Complete => (state == State::Open, State::Completed, "Outcome"),
                        Transition::Cancel => (state == State::Open, State::Cancelled, "Cancelled"),
                        Transition::Reopen => (
                            matches!(state, State::Completed | State::Cancelled),
                            State::Open,
                            "Reopened",
                        ),
                    };
                    if !allowed {
                        return Err(illegal(
                            &subject,
                            format!(
                                "the plan is {}: {:?} is not allowed from there",
                                state.as_str_name(),
                                transition
                            ),
                        ));
                    }
                    if matches!(transition, Transition::Complete)
                        && let Some(a) = p.actions.iter().find(|a| open(a))
                    {
                        return Err(illegal(
                            &subject,
                            format!(
                                "action {} is still open: finish or drop every action first",
                                a.id
                            ),
                        ));
                    }
                    p.state = to as i32;
                    p.close_time =
                        (to != State::Open).then(|| clock::to_proto(clock::from_micros(now)));
                    if !why.is_empty() {
                        let entry = format!("{label}: {why}");
                        if p.description.chars().count() + entry.chars().count() + 2 <= MAX_TEXT {
                            if !p.description.is_empty() {
                                p.description.push_str("\n\n");
                            }
                            p.description.push_str(&entry);
                        }
                    }
                    Ok(())
                },
            )
            .await
    }

    /// The due-time timer: derives `overdue` again without a new revision.
    pub(crate) async fn plan_due(&self, owner: &str, timer: &timers::Claimed) -> Result<usize> {
        let now = self.store().now();
        let mut tx = self.db().begin().await?;
        let mut changed = 0;
        if let Some(stored) =
            resource::get_for_update(&mut tx.conn(), &PLANS, &timer.subject).await?
        {
            let mut p: CorrectiveActionPlan =
                concierge_common::crud::Store::decode::<CorrectiveActionPlan, Rules>(&stored)?;
            let was = p.overdue;
            settle(&mut p, now);
            let body = crud::strip_meta::<CorrectiveActionPlan, Rules>(&p);
            resource::update_derived(
                &mut tx.conn(),
                &PLANS,
                &stored.name,
                stored.revision,
                &body,
                &p.columns(),
            )
            .await?;
            if p.overdue != was {
                changed = 1;
            }
        }
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
