//! The gRPC face of the disputes service: each method checks its request,
//! asks the peers what the change needs (business time, a repair case's
//! down time, an item's MRC, the staff directory) and then makes the change
//! in one transaction through the generic store, its history entry and
//! events with it.

use concierge_common::clock;
use concierge_common::crud::{Ctx, New, Reply, Resource, reply};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::idempotency::Key;
use concierge_common::principal::Role;
use concierge_common::{bounded, page_query, without_request_id};
use concierge_proto::catalogue::{EventOf, disputes as events};
use concierge_proto::disputes::disputes_service_server::DisputesService;
use concierge_proto::disputes::*;
use concierge_proto::types::Money;
use jiff::{SignedDuration, Timestamp};
use tonic::{Request, Response};

use crate::authz::{self, for_reader};
use crate::credit::{self, Calculate};
use crate::hooks::Recorded;
use crate::resources::{self, SETTINGS_NAME, default_settings, sum};
use crate::transitions::{self, Action, Credit};
use crate::{Disputes, RULES, Rules};

/// Longest free text a transition takes (a reason, a question, a message).
const MAX_TEXT: usize = 10_000;

fn once<M: prost::Message>(
    ctx: &Ctx,
    request_id: &str,
    method: &'static str,
    request: &M,
) -> Result<Option<Key>> {
    Key::new(&ctx.principal.subject, request_id, method, request)
}

fn text(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    if value.len() > MAX_TEXT {
        return Err(Error::invalid(field, format!("at most {MAX_TEXT} bytes")));
    }
    Ok(())
}

fn state_of(d: &Dispute) -> dispute::State {
    dispute::State::try_from(d.state).unwrap_or(dispute::State::Unspecified)
}

fn approval_pending(d: &Dispute) -> bool {
    d.approval
        .as_ref()
        .is_some_and(|a| a.state == credit_approval::State::Pending as i32)
}

/// Who acts, as the dispute records it: the staff member when the caller
/// is one, else the principal's subject.
fn actor(ctx: &Ctx) -> String {
    ctx.principal
        .staff_member
        .clone()
        .unwrap_or_else(|| ctx.principal.subject.clone())
}

/// The first and the day after the last day of a billing period, at
/// midnight UTC: the instants its length is measured between.
fn period_bounds(p: &BillingPeriod) -> Option<(Timestamp, Timestamp)> {
    let start = resources::date(p.start_date.as_ref()?)?;
    let end = resources::date(p.end_date.as_ref()?)?.tomorrow().ok()?;
    let at = |d: jiff::civil::Date| {
        jiff::tz::TimeZone::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .ok()
    };
    Some((at(start)?, at(end)?))
}

/// What the peers said while one request filled in credit inputs.
#[derive(Default)]
struct LookedUp {
    /// The related case's outage.
    outage: Option<concierge_proto::concierge::cases::v1::Outage>,
    /// Inventory items by name.
    items: std::collections::HashMap<String, concierge_proto::customers::InventoryItem>,
}

/// What one change carries besides its state.
struct Change<'a> {
    action: Action,
    reason: String,
    amount: Option<Money>,
    event: EventOf<Dispute>,
    /// The credit a proposal decides on; for an approval it is read from the
    /// stored proposal.
    credit: Option<Credit>,
    etag: &'a str,
    key: Option<Key>,
}

impl Disputes {
    /// Makes `change` to `name` if the transition table allows it from the
    /// state the transaction reads; `edit` then sets what the change sets.
    async fn transition(
        &self,
        ctx: &Ctx,
        name: &str,
        change: Change<'_>,
        edit: impl FnOnce(&mut Dispute, i64) -> Result<()> + Send,
    ) -> Result<Dispute> {
        authz::client_may(&ctx.principal, change.action)?;
        let Change {
            action,
            reason,
            amount,
            event,
            credit,
            etag,
            key,
        } = change;
        let rules = Rules::recording(Recorded {
            action: action.method(),
            reason,
            amount,
            announce_state_change: event != events::DISPUTE_STATE_CHANGED,
            edit: false,
            mail_position: action == Action::PublishPosition,
            // The credit an approval decides is the one its transaction
            // reads, not one read before it.
            amount_is_approved_credit: action == Action::ApproveCredit,
        });
        let changed = self
            .store()
            .change_once::<Dispute, _>(&rules, ctx, key, name, etag, event, false, |d, row| {
                let from = state_of(d);
                let credit = credit.unwrap_or_else(|| Credit {
                    whole: d.credit_proposal.as_ref().and_then(|p| p.total.as_ref())
                        == d.total_disputed.as_ref(),
                    needs_approval: false,
                });
                let to = transitions::next(name, action, from, approval_pending(d), credit)?;
                let now = row.update_time;
                edit(d, now)?;
                if to != from {
                    d.state = to as i32;
                    d.state_time = clock::micros_to_proto(now);
                }
                if transitions::decided(to) {
                    // Overdue means undecided past the due time.
                    d.overdue = false;
                }
                Ok(())
            })
            .await?;
        Ok(for_reader(&ctx.principal, changed))
    }

    pub(crate) async fn settings(&self) -> Result<DisputeSettings> {
        self.store()
            .get_singleton(
                &RULES,
                &Ctx::system("disputes", ""),
                SETTINGS_NAME,
                default_settings,
            )
            .await
    }

    /// The dispute as the caller may see it, for a change that needs it
    /// before its transaction (peers to ask first).
    async fn read(&self, ctx: &Ctx, name: &str) -> Result<Dispute> {
        self.store().get(&RULES, ctx, name).await
    }

    /// A related case must be a case of the dispute's account.
    async fn check_related_case(&self, ctx: &Ctx, field: &str, d: &Dispute) -> Result<()> {
        if d.related_case.is_empty() {
            return Ok(());
        }
        let case = self
            .peers()
            .case(&ctx.request_id, field, &d.related_case)
            .await?;
        if case.account != d.account {
            return Err(Error::invalid(
                field,
                format!("{} is not a case of {}", d.related_case, d.account),
            ));
        }
        Ok(())
    }

    /// When vetting started now must end: the settings' target in their
    /// calendar.
    async fn vetting_due(&self, ctx: &Ctx, from: Timestamp) -> Result<Timestamp> {
        let settings = self.settings().await?;
        let target = bounded::Duration::required(
            "dispute_settings.vetting_target",
            &settings.vetting_target,
        )?;
        self.peers()
            .add_business_time(&ctx.request_id, &settings.calendar, from, target)
            .await
    }

    /// Fills what `given` leaves out from the dispute's line, its related
    /// case and the line's inventory item; given inputs win.
    async fn resolve_inputs(
        &self,
        ctx: &Ctx,
        field: &str,
        method: CreditMethod,
        (d, line): (&Dispute, &DisputeLine),
        mut given: CreditInputs,
        looked_up: &mut LookedUp,
    ) -> Result<CreditInputs> {
        if given.billed_amount.is_none() {
            given.billed_amount = line.billed_amount.clone();
        }
        if given.disputed_amount.is_none() {
            given.disputed_amount = line.disputed_amount.clone();
        }
        let uses_outage = matches!(method, CreditMethod::ProratedOutage | CreditMethod::SlaTier);
        if uses_outage && given.mrc.is_none() && !line.inventory_item.is_empty() {
            let item = match looked_up.items.get(&line.inventory_item) {
                Some(item) => item.clone(),
                None => {
                    let item = self
                        .peers()
                        .inventory_item(
                            &ctx.request_id,
                            &format!("{field}.mrc_source"),
                            &line.inventory_item,
                        )
                        .await?;
                    looked_up
                        .items
                        .insert(line.inventory_item.clone(), item.clone());
                    item
                }
            };
            given.mrc = item.mrc;
            given.mrc_source = item.name;
        }
        if uses_outage && given.outage_duration.is_none() && !d.related_case.is_empty() {
            let outage = match &looked_up.outage {
                Some(outage) => *outage,
                None => {
                    let case = self
                        .peers()
                        .case(
                            &ctx.request_id,
                            &format!("{field}.outage_case"),
                            &d.related_case,
                        )
                        .await?;
                    let outage = case.outage.unwrap_or_default();
                    looked_up.outage = Some(outage);
                    outage
                }
            };
            let start = outage.start_time.as_ref().and_then(clock::from_proto);
            let restore = outage.restore_time.as_ref().and_then(clock::from_proto);
            let (Some(start), Some(restore)) = (start, restore) else {
                return Err(Error::invalid(
                    format!("{field}.outage_duration"),
                    format!(
                        "required: {} has no outage with a start and a restore time yet; give the duration",
                        d.related_case
                    ),
                ));
            };
            let held = outage
                .client_hold_duration
                .as_ref()
                .and_then(|h| bounded::Duration::try_from(h).ok())
                .map(bounded::Duration::get)
                .unwrap_or(SignedDuration::ZERO);
            let down = restore.duration_since(start) - held;
            given.outage_duration =
                Some(bounded::Duration::to_proto(down.max(SignedDuration::ZERO)));
            given.outage_case = d.related_case.clone();
        }
        if method == CreditMethod::ProratedOutage
            && given.period_start_time.is_none()
            && given.period_end_time.is_none()
            && let Some((start, end)) = line
                .service_period
                .as_ref()
                .or(d.invoice_period.as_ref())
                .and_then(period_bounds)
        {
            given.period_start_time = Some(clock::to_proto(start));
            given.period_end_time = Some(clock::to_proto(end));
        }
        Ok(given)
    }

    async fn calculate_credit_inner(
        &self,
        ctx: &Ctx,
        req: CalculateCreditRequest,
    ) -> Result<CreditCalculation> {
        authz::staff_only(&ctx.principal, "credit calculations")?;
        let method = CreditMethod::try_from(req.method).unwrap_or(CreditMethod::Unspecified);
        let rounding = RoundingMode::try_from(req.rounding_mode)
            .map_err(|_| Error::invalid("rounding_mode", "not a rounding mode"))?;
        let settings = self.settings().await?;
        let mut inputs = req.inputs.unwrap_or_default();
        if !req.dispute.is_empty() {
            let d = self.read(ctx, &req.dispute).await?;
            let line = d
                .lines
                .iter()
                .find(|l| l.id == req.line_id)
                .ok_or_else(|| {
                    Error::invalid(
                        "line_id",
                        format!("{} has no line {:?}", d.name, req.line_id),
                    )
                })?;
            inputs = self
                .resolve_inputs(
                    ctx,
                    "inputs",
                    method,
                    (&d, line),
                    inputs,
                    &mut LookedUp::default(),
                )
                .await?;
        } else if !req.line_id.is_empty() {
            return Err(Error::invalid(
                "line_id",
                "names a line of `dispute`, which is empty",
            ));
        }
        let rounding = match rounding {
            RoundingMode::Unspecified => RoundingMode::try_from(settings.default_rounding_mode)
                .unwrap_or(RoundingMode::HalfEven),
            r => r,
        };
        credit::calculate(
            "inputs",
            Calculate {
                line_id: &req.line_id,
                method,
                inputs,
                rounding,
                default_tiers: &settings.sla_credit_tiers,
                now: clock::from_micros(self.store().now()),
            },
        )
    }

    async fn propose_credit_inner(&self, ctx: &Ctx, req: ProposeCreditRequest) -> Result<Dispute> {
        authz::client_may(&ctx.principal, Action::ProposeCredit)?;
        text("reason", &req.reason, true)?;
        if req.lines.is_empty() {
            return Err(Error::invalid(
                "lines",
                "required: the lines to credit (a claim that gets no credit is denied: DenyDispute)",
            ));
        }
        if req.lines.len() > resources::MAX_LINES {
            return Err(Error::invalid(
                "lines",
                format!(
                    "at most {} lines, as many as a dispute holds",
                    resources::MAX_LINES
                ),
            ));
        }
        let rounding = RoundingMode::try_from(req.rounding_mode)
            .map_err(|_| Error::invalid("rounding_mode", "not a rounding mode"))?;
        let hashed = without_request_id!(req);
        let key = once(ctx, &req.request_id, "ProposeCredit", &hashed)?;
        let d = self.read(ctx, &req.name).await?;
        let settings = self.settings().await?;
        let rounding = match rounding {
            RoundingMode::Unspecified => RoundingMode::try_from(settings.default_rounding_mode)
                .unwrap_or(RoundingMode::HalfEven),
            r => r,
        };
        let now = clock::from_micros(self.store().now());
        let mut calculations = Vec::with_capacity(req.lines.len());
        let mut seen = std::collections::HashSet::new();
        // One proposal asks the peers once per case and per item, however
        // many lines share them.
        let mut looked_up = LookedUp::default();
        for (i, l) in req.lines.iter().enumerate() {
            let field = format!("lines[{i}]");
            let line = d.lines.iter().find(|x| x.id == l.line_id).ok_or_else(|| {
                Error::invalid(
                    format!("{field}.line_id"),
                    format!("{} has no line {:?}", d.name, l.line_id),
                )
            })?;
            if !seen.insert(l.line_id.as_str()) {
                return Err(Error::invalid(
                    format!("{field}.line_id"),
                    format!("line {:?} is credited by an earlier entry", l.line_id),
                ));
            }
            let method = CreditMethod::try_from(l.method).unwrap_or(CreditMethod::Unspecified);
            let inputs = self
                .resolve_inputs(
                    ctx,
                    &format!("{field}.inputs"),
                    method,
                    (&d, line),
                    l.inputs.clone().unwrap_or_default(),
                    &mut looked_up,
                )
                .await?;
            let calc = credit::calculate(
                &format!("{field}.inputs"),
                Calculate {
                    line_id: &l.line_id,
                    method,
                    inputs,
                    rounding,
                    default_tiers: &settings.sla_credit_tiers,
                    now,
                },
            )
            .map_err(|e| match e {
                Error::InvalidArgument(mut v) => {
                    for f in &mut v {
                        if f.field == "method" {
                            f.field = format!("{field}.method");
                        }
                    }
                    Error::InvalidArgument(v)
                }
                other => other,
            })?;
            calculations.push(calc);
        }
        let total = sum(calculations.iter().filter_map(|c| c.result.as_ref()))
            .ok_or_else(|| Error::invalid("lines", "the credits are too large to add up"))?;
        if total.minor_units == 0 {
            return Err(Error::invalid(
                "lines",
                "the credit comes to zero: a claim that gets no credit is denied (DenyDispute)",
            ));
        }
        let threshold = settings
            .approval_thresholds
            .iter()
            .find(|t| t.currency_code == total.currency_code)
            .cloned();
        let needs_approval = threshold
            .as_ref()
            .is_none_or(|t| total.minor_units > t.minor_units);
        let whole = d.total_disputed.as_ref() == Some(&total);
        let proposer = actor(ctx);
        let lines_read = d.lines.clone();
        let name = req.name.clone();
        let amount = total.clone();
        self.transition(
            ctx,
            &req.name,
            Change {
                action: Action::ProposeCredit,
                reason: req.reason.clone(),
                amount: Some(total.clone()),
                event: events::CREDIT_PROPOSED,
                credit: Some(Credit {
                    whole,
                    needs_approval,
                }),
                etag: &req.etag,
                key,
            },
            move |d, now| {
                if d.lines != lines_read {
                    return Err(Error::Conflict {
                        reason: Reason::TransactionConflict,
                        description: format!(
                            "the lines of {name} changed while the credit was calculated; propose it again"
                        ),
                    });
                }
                d.credit_proposal = Some(CreditProposal {
                    calculations: calculations.clone(),
                    total: Some(amount.clone()),
                    reason: req.reason.clone(),
                    proposer,
                    propose_time: clock::micros_to_proto(now),
                });
                d.approval = Some(CreditApproval {
                    state: if needs_approval {
                        credit_approval::State::Pending
                    } else {
                        credit_approval::State::NotRequired
                    } as i32,
                    threshold,
                    ..Default::default()
                });
                d.state_reason = req.reason.clone();
                if !needs_approval {
                    approve_lines(d);
                }
                Ok(())
            },
        )
        .await
    }

    /// The manager deciding a proposed credit: a staff member of the
    /// directory with a manager's or director's role, active.
    async fn approver(&self, ctx: &Ctx) -> Result<String> {
        let refuse = |why: String| Err(Error::PermissionDenied(why));
        let Some(me) = ctx.principal.staff_member.clone() else {
            return refuse(
                "a credit is approved by a manager named in the staff directory; this caller is not a staff member"
                    .into(),
            );
        };
        match self.peers().staff_member(&ctx.request_id, &me).await? {
            Some(s)
                if s.active
                    && matches!(
                        concierge_proto::customers::StaffRole::try_from(s.role),
                        Ok(concierge_proto::customers::StaffRole::Manager
                            | concierge_proto::customers::StaffRole::Director)
                    ) =>
            {
                Ok(me)
            }
            Some(_) => refuse(format!(
                "{me} is not an active manager or director in the staff directory"
            )),
            None => refuse(format!("{me} is not in the staff directory")),
        }
    }
}

/// Sets the approved credit and each line's share from the proposal.
fn approve_lines(d: &mut Dispute) {
    let Some(p) = &d.credit_proposal else { return };
    d.approved_credit = p.total.clone();
    for c in &p.calculations {
        if let Some(l) = d.lines.iter_mut().find(|l| l.id == c.line_id) {
            l.approved_amount = c.result.clone();
        }
    }
}

/// The four-eyes rule: whoever proposed a credit does not decide it.
fn four_eyes(d: &Dispute, approver: &str) -> Result<()> {
    let proposer = d
        .credit_proposal
        .as_ref()
        .map(|p| p.proposer.as_str())
        .unwrap_or_default();
    if proposer == approver {
        return Err(Error::PermissionDenied(format!(
            "{approver} proposed this credit: a second manager decides it (four eyes)"
        )));
    }
    Ok(())
}

fn zero(d: &Dispute) -> Option<Money> {
    d.total_disputed.as_ref().map(|t| Money {
        currency_code: t.currency_code.clone(),
        minor_units: 0,
    })
}

/// How a transition request names itself.
macro_rules! change {
    ($ctx:expr, $req:expr, $action:expr, $event:expr, $reason:expr) => {{
        let hashed = without_request_id!($req);
        Change {
            action: $action,
            reason: $reason,
            amount: None,
            event: $event,
            credit: None,
            etag: &$req.etag,
            key: once($ctx, &$req.request_id, $action.method(), &hashed)?,
        }
    }};
}

#[tonic::async_trait]
impl DisputesService for Disputes {
    async fn create_dispute(&self, request: Request<CreateDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let hashed = without_request_id!(req);
            let mut d = req
                .dispute
                .clone()
                .ok_or_else(|| Error::invalid("dispute", "required"))?;
            d.clear_output_only();
            let mut v = Violations::new();
            d.check(&mut v);
            v.into_result()?;
            if ctx.principal.role == Role::Client
                && ctx.principal.account.as_deref() != Some(d.account.as_str())
            {
                return Err(Error::NotFound {
                    resource_type: "Account",
                    name: d.account.clone(),
                });
            }
            if ctx.principal.role == Role::Client && !d.owner.is_empty() {
                return Err(Error::PermissionDenied(
                    "the owner of a dispute is the company's to choose".into(),
                ));
            }
            let account = self
                .peers()
                .account(&ctx.request_id, "dispute.account", &d.account)
                .await?;
            self.check_related_case(&ctx, "dispute.related_case", &d)
                .await?;
            if !d.contact.is_empty() {
                self.peers()
                    .contact(&ctx.request_id, "dispute.contact", &d.contact)
                    .await?;
            }
            let rules = Rules::recording(Recorded {
                action: "CreateDispute",
                ..Default::default()
            });
            self.store()
                .create_learned(
                    &rules,
                    &ctx,
                    "CreateDispute",
                    &hashed,
                    New {
                        parent: "",
                        resource: Some(d),
                        id: &req.dispute_id,
                        request_id: &req.request_id,
                    },
                    false,
                    |d: &mut Dispute| d.account_manager = account.account_manager,
                )
                .await
                .map(|d| for_reader(&ctx.principal, d))
        };
        reply(result.await)
    }

    async fn get_dispute(&self, request: Request<GetDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        reply(
            self.read(&ctx, &request.get_ref().name)
                .await
                .map(|d| for_reader(&ctx.principal, d)),
        )
    }

    async fn list_disputes(
        &self,
        request: Request<ListDisputesRequest>,
    ) -> Reply<ListDisputesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let (disputes, next_page_token, total_size) = self
            .store()
            .list_counted::<Dispute, _>(&RULES, &ctx, page_query!(req))
            .await?;
        Ok(Response::new(ListDisputesResponse {
            disputes: disputes
                .into_iter()
                .map(|d| for_reader(&ctx.principal, d))
                .collect(),
            next_page_token,
            total_size,
        }))
    }

    async fn update_dispute(&self, request: Request<UpdateDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let patch = req
                .dispute
                .clone()
                .ok_or_else(|| Error::invalid("dispute", "required"))?;
            let current = self.read(&ctx, &patch.name).await?;
            let paths = req
                .update_mask
                .as_ref()
                .map(|m| m.paths.clone())
                .unwrap_or_default();
            let touches = |f: &str| paths.iter().any(|p| p == f || p == "*");
            if touches("related_case") {
                let probe = Dispute {
                    related_case: patch.related_case.clone(),
                    account: current.account.clone(),
                    ..Default::default()
                };
                self.check_related_case(&ctx, "dispute.related_case", &probe)
                    .await?;
            }
            if touches("contact") && !patch.contact.is_empty() {
                self.peers()
                    .contact(&ctx.request_id, "dispute.contact", &patch.contact)
                    .await?;
            }
            if touches("owner") && !patch.owner.is_empty() && ctx.principal.role != Role::Client {
                self.peers()
                    .staff_member(&ctx.request_id, &patch.owner)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(
                            "dispute.owner",
                            format!("{} is not in the staff directory", patch.owner),
                        )
                    })?;
            }
            let rules = Rules::recording(Recorded {
                action: "UpdateDispute",
                edit: true,
                ..Default::default()
            });
            self.store()
                .update(&rules, &ctx, Some(patch), req.update_mask)
                .await
                .map(|d| for_reader(&ctx.principal, d))
        };
        reply(result.await)
    }

    async fn delete_dispute(&self, request: Request<DeleteDisputeRequest>) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::staff_only(&ctx.principal, "deleting disputes")
                .map_err(|_| Error::PermissionDenied("drafts are deleted by the company".into()))?;
            let hashed = without_request_id!(req);
            let key = once(&ctx, &req.request_id, "DeleteDispute", &hashed)?;
            self.store()
                .delete_once::<Dispute, _>(&RULES, &ctx, key, &req.name, &req.etag)
                .await
        };
        reply(result.await)
    }

    async fn submit_dispute(&self, request: Request<SubmitDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::Submit)?;
            let now = clock::from_micros(self.store().now());
            let due = self.vetting_due(&ctx, now).await?;
            let change = change!(
                &ctx,
                req,
                Action::Submit,
                events::DISPUTE_STATE_CHANGED,
                String::new()
            );
            let name = req.name.clone();
            self.transition(&ctx, &req.name, change, move |d, at| {
                if d.lines.is_empty() {
                    return Err(Error::invalid(
                        "name",
                        format!("{name} has no disputed lines: add at least one before submitting"),
                    ));
                }
                d.submit_time = clock::micros_to_proto(at);
                d.vetting_due_time = Some(clock::to_proto(due));
                d.overdue = false;
                d.state_reason.clear();
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn start_dispute_vetting(
        &self,
        request: Request<StartDisputeVettingRequest>,
    ) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::StartVetting)?;
            if !req.owner.is_empty() {
                concierge_common::names::parse("owner", &req.owner, &["staff"])?;
                self.peers()
                    .staff_member(&ctx.request_id, &req.owner)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(
                            "owner",
                            format!("{} is not in the staff directory", req.owner),
                        )
                    })?;
            }
            let change = change!(
                &ctx,
                req,
                Action::StartVetting,
                events::DISPUTE_STATE_CHANGED,
                String::new()
            );
            let (owner, caller) = (req.owner.clone(), ctx.principal.staff_member.clone());
            self.transition(&ctx, &req.name, change, move |d, _| {
                if !owner.is_empty() {
                    d.owner = owner;
                } else if d.owner.is_empty() {
                    d.owner = caller.unwrap_or_default();
                }
                d.state_reason.clear();
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn request_dispute_information(
        &self,
        request: Request<RequestDisputeInformationRequest>,
    ) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("question", &req.question, true)?;
            let change = change!(
                &ctx,
                req,
                Action::RequestInformation,
                events::DISPUTE_STATE_CHANGED,
                req.question.clone()
            );
            let question = req.question.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                d.information_request = Some(InformationRequest {
                    question: question.clone(),
                    request_time: clock::micros_to_proto(now),
                    ..Default::default()
                });
                d.state_reason = question;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn provide_dispute_information(
        &self,
        request: Request<ProvideDisputeInformationRequest>,
    ) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("answer", &req.answer, true)?;
            authz::client_may(&ctx.principal, Action::ProvideInformation)?;
            // The clock paused when the question was asked: what was left
            // of it then runs again from now.
            let d = self.read(&ctx, &req.name).await?;
            let asked = d
                .information_request
                .as_ref()
                .and_then(|i| i.request_time.as_ref())
                .and_then(clock::from_proto);
            let due = d.vetting_due_time.as_ref().and_then(clock::from_proto);
            let now = clock::from_micros(self.store().now());
            let new_due = match (asked, due) {
                (Some(asked), Some(due)) => {
                    let settings = self.settings().await?;
                    let left = self
                        .peers()
                        .measure_business_time(&ctx.request_id, &settings.calendar, asked, due)
                        .await?;
                    Some(
                        self.peers()
                            .add_business_time(&ctx.request_id, &settings.calendar, now, left)
                            .await?,
                    )
                }
                _ => None,
            };
            let change = change!(
                &ctx,
                req,
                Action::ProvideInformation,
                events::DISPUTE_STATE_CHANGED,
                req.answer.clone()
            );
            let answer = req.answer.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                if let Some(i) = &mut d.information_request {
                    i.answer = answer;
                    i.answer_time = clock::micros_to_proto(now);
                }
                if let Some(due) = new_due {
                    d.vetting_due_time = Some(clock::to_proto(due));
                }
                d.state_reason.clear();
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn calculate_credit(
        &self,
        request: Request<CalculateCreditRequest>,
    ) -> Reply<CreditCalculation> {
        let ctx = self.ctx(&request)?;
        reply(
            self.calculate_credit_inner(&ctx, request.into_inner())
                .await,
        )
    }

    async fn propose_credit(&self, request: Request<ProposeCreditRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        reply(self.propose_credit_inner(&ctx, request.into_inner()).await)
    }

    async fn approve_credit(&self, request: Request<ApproveCreditRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::ApproveCredit)?;
            text("comment", &req.comment, false)?;
            let approver = self.approver(&ctx).await?;
            let change = change!(
                &ctx,
                req,
                Action::ApproveCredit,
                events::DISPUTE_STATE_CHANGED,
                req.comment.clone()
            );
            let comment = req.comment.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                four_eyes(d, &approver)?;
                if let Some(a) = &mut d.approval {
                    a.state = credit_approval::State::Approved as i32;
                    a.approver = approver;
                    a.comment = comment.clone();
                    a.decide_time = clock::micros_to_proto(now);
                }
                approve_lines(d);
                d.state_reason = comment;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn reject_credit(&self, request: Request<RejectCreditRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::RejectCredit)?;
            text("comment", &req.comment, true)?;
            let approver = self.approver(&ctx).await?;
            let change = change!(
                &ctx,
                req,
                Action::RejectCredit,
                events::CREDIT_REJECTED,
                req.comment.clone()
            );
            let comment = req.comment.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                four_eyes(d, &approver)?;
                if let Some(a) = &mut d.approval {
                    a.state = credit_approval::State::Rejected as i32;
                    a.approver = approver;
                    a.comment = comment.clone();
                    a.decide_time = clock::micros_to_proto(now);
                }
                d.state_reason = comment;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn deny_dispute(&self, request: Request<DenyDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("reason", &req.reason, true)?;
            let change = change!(
                &ctx,
                req,
                Action::Deny,
                events::DISPUTE_STATE_CHANGED,
                req.reason.clone()
            );
            let reason = req.reason.clone();
            self.transition(&ctx, &req.name, change, move |d, _| {
                d.approved_credit = zero(d);
                for l in &mut d.lines {
                    l.approved_amount = None;
                }
                d.state_reason = reason;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn issue_credit(&self, request: Request<IssueCreditRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::IssueCredit)?;
            let mut issue = req
                .credit_issue
                .clone()
                .ok_or_else(|| Error::invalid("credit_issue", "required"))?;
            let mut v = Violations::new();
            if issue.credit_reference.trim().is_empty() {
                v.add(
                    "credit_issue.credit_reference",
                    "required: the credit memo or adjustment number in the billing system",
                );
            }
            if issue.credit_reference.len() > 200 || issue.invoice_number.len() > 100 {
                v.add(
                    "credit_issue",
                    "the reference is at most 200 bytes, the invoice number 100",
                );
            }
            if issue.amount.is_none() {
                v.add("credit_issue.amount", "required: the amount issued");
            }
            v.into_result()?;
            if let Some(at) =
                bounded::Instant::optional("credit_issue.issue_time", &issue.issue_time)?
            {
                issue.issue_time = Some(clock::to_proto(at));
            }
            let mut change = change!(
                &ctx,
                req,
                Action::IssueCredit,
                events::CREDIT_ISSUED,
                issue.credit_reference.clone()
            );
            change.amount = issue.amount.clone();
            issue.issuer = actor(&ctx);
            self.transition(&ctx, &req.name, change, move |d, now| {
                if issue.amount != d.approved_credit {
                    return Err(Error::invalid(
                        "credit_issue.amount",
                        format!(
                            "{} differs from the approved credit {}",
                            issue
                                .amount
                                .as_ref()
                                .map(concierge_common::money::format)
                                .unwrap_or_default(),
                            d.approved_credit
                                .as_ref()
                                .map(concierge_common::money::format)
                                .unwrap_or_default()
                        ),
                    ));
                }
                if issue.issue_time.is_none() {
                    issue.issue_time = clock::micros_to_proto(now);
                }
                d.state_reason = issue.credit_reference.clone();
                d.credit_issue = Some(issue);
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn publish_position(&self, request: Request<PublishPositionRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            authz::client_may(&ctx.principal, Action::PublishPosition)?;
            text("message", &req.message, true)?;
            let d = self.read(&ctx, &req.name).await?;
            let mut notified: Vec<String> = self
                .peers()
                .client_delegates(&ctx.request_id, &d.account)
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            if !d.contact.is_empty() && !notified.contains(&d.contact) {
                notified.push(d.contact.clone());
            }
            let change = change!(
                &ctx,
                req,
                Action::PublishPosition,
                events::DISPUTE_POSITION_PUBLISHED,
                req.message.clone()
            );
            let (message, publisher) = (req.message.clone(), actor(&ctx));
            self.transition(&ctx, &req.name, change, move |d, now| {
                d.position = Some(CompanyPosition {
                    message,
                    publisher,
                    publish_time: clock::micros_to_proto(now),
                    notified_contacts: notified,
                });
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn confirm_outcome(&self, request: Request<ConfirmOutcomeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("comment", &req.comment, false)?;
            let responder = self.responder(&ctx, &req.name, &req.contact).await?;
            let change = change!(
                &ctx,
                req,
                Action::ConfirmOutcome,
                events::DISPUTE_STATE_CHANGED,
                req.comment.clone()
            );
            let comment = req.comment.clone();
            let name = req.name.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                needs_position(&name, d)?;
                d.client_outcome = Some(ClientOutcome {
                    decision: client_outcome::Decision::Confirmed as i32,
                    comment: comment.clone(),
                    responder,
                    respond_time: clock::micros_to_proto(now),
                });
                d.state_reason = comment;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn reject_outcome(&self, request: Request<RejectOutcomeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("comment", &req.comment, true)?;
            let responder = self.responder(&ctx, &req.name, &req.contact).await?;
            let now = clock::from_micros(self.store().now());
            let due = self.vetting_due(&ctx, now).await?;
            let change = change!(
                &ctx,
                req,
                Action::RejectOutcome,
                events::DISPUTE_STATE_CHANGED,
                req.comment.clone()
            );
            let comment = req.comment.clone();
            let name = req.name.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                needs_position(&name, d)?;
                d.client_outcome = Some(ClientOutcome {
                    decision: client_outcome::Decision::Rejected as i32,
                    comment: comment.clone(),
                    responder,
                    respond_time: clock::micros_to_proto(now),
                });
                // Vetting starts again: a new proposal, a new decision, a
                // new position; what billing issued stays on record.
                d.reopen_count = d.reopen_count.saturating_add(1);
                d.credit_proposal = None;
                d.approval = None;
                d.approved_credit = None;
                d.position = None;
                for l in &mut d.lines {
                    l.approved_amount = None;
                }
                d.vetting_due_time = Some(clock::to_proto(due));
                d.overdue = false;
                d.state_reason = comment;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn close_dispute(&self, request: Request<CloseDisputeRequest>) -> Reply<Dispute> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            text("reason", &req.reason, false)?;
            let change = change!(
                &ctx,
                req,
                Action::Close,
                events::DISPUTE_STATE_CHANGED,
                req.reason.clone()
            );
            let reason = req.reason.clone();
            self.transition(&ctx, &req.name, change, move |d, now| {
                d.close_time = clock::micros_to_proto(now);
                d.state_reason = reason;
                Ok(())
            })
            .await
        };
        reply(result.await)
    }

    async fn get_dispute_history_entry(
        &self,
        request: Request<GetDisputeHistoryEntryRequest>,
    ) -> Reply<DisputeHistoryEntry> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get(&RULES, &ctx, &request.get_ref().name)
                .await,
        )
    }

    async fn list_dispute_history_entries(
        &self,
        request: Request<ListDisputeHistoryEntriesRequest>,
    ) -> Reply<ListDisputeHistoryEntriesResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        authz::staff_only(&ctx.principal, "a dispute's history entries")?;
        let _dispute = self.read(&ctx, &req.parent).await?;
        let (dispute_history_entries, next_page_token) = self
            .store()
            .list::<DisputeHistoryEntry, _>(&RULES, &ctx, page_query!(req, &req.parent))
            .await?;
        Ok(Response::new(ListDisputeHistoryEntriesResponse {
            dispute_history_entries,
            next_page_token,
        }))
    }

    async fn upload_dispute_document(
        &self,
        request: Request<tonic::Streaming<UploadDisputeDocumentRequest>>,
    ) -> Reply<DisputeDocument> {
        let ctx = self.ctx(&request)?;
        reply(self.upload(&ctx, request.into_inner()).await)
    }

    async fn download_dispute_document(
        &self,
        request: Request<DownloadDisputeDocumentRequest>,
    ) -> Reply<crate::documents::DownloadStream> {
        let ctx = self.ctx(&request)?;
        reply(self.download(&ctx, &request.get_ref().name).await)
    }

    async fn get_dispute_document(
        &self,
        request: Request<GetDisputeDocumentRequest>,
    ) -> Reply<DisputeDocument> {
        let ctx = self.ctx(&request)?;
        reply(self.document(&ctx, &request.get_ref().name).await)
    }

    async fn list_dispute_documents(
        &self,
        request: Request<ListDisputeDocumentsRequest>,
    ) -> Reply<ListDisputeDocumentsResponse> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let _dispute = self.read(&ctx, &req.parent).await?;
        let (dispute_documents, next_page_token) = self
            .store()
            .list::<DisputeDocument, _>(&RULES, &ctx, page_query!(req, &req.parent))
            .await?;
        Ok(Response::new(ListDisputeDocumentsResponse {
            dispute_documents,
            next_page_token,
        }))
    }

    async fn delete_dispute_document(
        &self,
        request: Request<DeleteDisputeDocumentRequest>,
    ) -> Reply<()> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        let result = async {
            let hashed = without_request_id!(req);
            let key = once(&ctx, &req.request_id, "DeleteDisputeDocument", &hashed)?;
            self.delete_document(&ctx, &req.name, &req.etag, key).await
        };
        reply(result.await)
    }

    async fn get_dispute_settings(
        &self,
        request: Request<GetDisputeSettingsRequest>,
    ) -> Reply<DisputeSettings> {
        let ctx = self.ctx(&request)?;
        reply(
            self.store()
                .get_singleton(&RULES, &ctx, &request.get_ref().name, default_settings)
                .await,
        )
    }

    async fn update_dispute_settings(
        &self,
        request: Request<UpdateDisputeSettingsRequest>,
    ) -> Reply<DisputeSettings> {
        let ctx = self.ctx(&request)?;
        let req = request.into_inner();
        reply(
            self.store()
                .update_singleton(
                    &RULES,
                    &ctx,
                    req.dispute_settings,
                    req.update_mask,
                    default_settings,
                )
                .await,
        )
    }
}

/// The client answers an outcome the company has told it.
fn needs_position(name: &str, d: &Dispute) -> Result<()> {
    if d.position.is_none() {
        return Err(Error::FailedPrecondition {
            reason: Reason::PositionNotPublished,
            subject: name.to_string(),
            description: format!(
                "the company's position on {name} has not been published (PublishPosition): the client answers it once it has"
            ),
        });
    }
    Ok(())
}

impl Disputes {
    /// Who answers an outcome: a client principal itself, or the contact
    /// staff name when they record an answer given by phone or e-mail.
    async fn responder(&self, ctx: &Ctx, name: &str, contact: &str) -> Result<String> {
        if ctx.principal.role == Role::Client {
            if !contact.is_empty() {
                return Err(Error::invalid(
                    "contact",
                    "must be empty for a client: the answer is the caller's own",
                ));
            }
            return Ok(ctx.principal.subject.clone());
        }
        if contact.is_empty() {
            return Err(Error::invalid(
                "contact",
                "required for staff: the client contact who gave the answer",
            ));
        }
        let d = self.read(ctx, name).await?;
        let in_account =
            concierge_common::names::parse("contact", contact, &["accounts", "contacts"])
                .map(|ids| format!("accounts/{}", ids[0]) == d.account)
                .unwrap_or(false);
        if !in_account {
            return Err(Error::invalid(
                "contact",
                format!(
                    "must be a contact of {}, \"accounts/{{account}}/contacts/{{contact}}\"",
                    d.account
                ),
            ));
        }
        self.peers()
            .contact(&ctx.request_id, "contact", contact)
            .await?;
        Ok(contact.to_string())
    }
}
