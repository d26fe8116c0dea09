//! Cases: create, read, list, update, the status transitions, merge, hand-off codes, milestones and watchers.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::Error;
use concierge_common::{bounded, clock};
use concierge_common::{page_query, without_request_id};
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use concierge_common::names;
use concierge_common::principal::Role;

use crate::lifecycle::{self, Transition};

use crate::{Cases, RULES, Rules};

use super::{once, required};

pub(super) async fn create_case(svc: &Cases, request: Request<CreateCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    let result = async {
        let account = req
            .case
            .as_ref()
            .map(|c| c.account.clone())
            .unwrap_or_default();
        if ctx.principal.role == Role::Client
            && ctx.principal.account.as_deref() != Some(account.as_str())
        {
            return Err(Error::NotFound {
                resource_type: "Account",
                name: account,
            });
        }
        // The account's owner and tier come from the customers service;
        // a malformed name is left for the field checks to report.
        let facts = match names::parse("case.account", &account, &["accounts"]) {
            Ok(_) => Some(
                svc.directory()
                    .account(&ctx.request_id, "case.account", &account)
                    .await?,
            ),
            Err(_) => None,
        };
        // The policy is matched and the clocks computed from the SLA
        // configuration as it was read; a create that finds it changed on
        // writing starts over with the new one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let plan = svc.plan_new_case(facts.as_ref(), req.case.as_ref()).await?;
            let pinned = plan.pinned();
            let facts = facts.clone();
            let created = svc
                .store()
                .create_learned(
                    &Rules::creating(plan.clone()),
                    &ctx,
                    "CreateCase",
                    &hashed,
                    New {
                        parent: "",
                        resource: req.case.clone(),
                        id: &req.case_id,
                        request_id: &req.request_id,
                    },
                    false,
                    |c| {
                        if let Some(f) = facts {
                            c.account_manager = f.account_manager;
                            c.account_tier = f.tier;
                        }
                        if let Some((policy, revision)) = pinned {
                            c.sla_policy = policy;
                            c.sla_policy_revision = revision;
                        }
                    },
                )
                .await;
            if svc.start_over(&plan, attempt) {
                continue;
            }
            return created;
        }
    };
    reply(result.await.map(|c| shown_to(&ctx.principal, c)))
}

/// ListCases fields a client may not filter or order on.
const INTERNAL_FIELDS: &[&str] = &[
    "finding.reason",
    "finding.due_time",
    "chase.highest_step_reached",
];

/// A case as `p` reads it: the chasing behind it is the company's own
/// business, so a client sees no chase summary.
fn shown_to(p: &concierge_common::principal::Principal, mut c: Case) -> Case {
    if p.role == Role::Client {
        c.chase = None;
    }
    c
}

pub(super) async fn get_case(svc: &Cases, request: Request<GetCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let found = async {
        let mut c: Case = svc
            .store()
            .get(&RULES, &ctx, &request.get_ref().name)
            .await?;
        // Only a case with an outage pays for reading its state history.
        if let Some(outage) = c.outage.as_mut().filter(|o| o.start_time.is_some()) {
            let histories = svc.case_histories(&[c.name.as_str()]).await?;
            let history = histories
                .get(&c.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let now = concierge_common::clock::from_micros(svc.store().now());
            crate::reading::read_outage(outage, history, now);
        }
        Ok(c)
    };
    reply(found.await.map(|c| shown_to(&ctx.principal, c)))
}

pub(super) async fn list_cases(
    svc: &Cases,
    request: Request<ListCasesRequest>,
) -> Reply<ListCasesResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    if req.order_by.is_empty() {
        req.order_by = "create_time desc".into();
    }
    if ctx.principal.role == Role::Client {
        // The company's own view of a case (its findings, how far it was
        // chased) is no filter for a client, nor a way to learn of it: those
        // fields are unknown to a client, as any unknown field is.
        let fields: Vec<concierge_common::filter::Field> = crate::resources::CASES
            .fields
            .iter()
            .filter(|f| !INTERNAL_FIELDS.contains(&f.name))
            .copied()
            .collect();
        concierge_common::filter::parse(&req.filter, &fields)?;
        concierge_common::resource::parse_order_by(&req.order_by, &fields)?;
    }
    let (cases, next_page_token, total_size) = svc
        .store()
        .list_counted(&RULES, &ctx, page_query!(req))
        .await?;
    Ok(Response::new(ListCasesResponse {
        cases: cases
            .into_iter()
            .map(|c| shown_to(&ctx.principal, c))
            .collect(),
        next_page_token,
        total_size,
    }))
}

pub(super) async fn update_case(svc: &Cases, request: Request<UpdateCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let updated: Case = svc
        .store()
        .update(&RULES, &ctx, req.case, req.update_mask)
        .await?;
    // A new site may mean another time zone for the clocks.
    svc.refresh_timers_after_change(&updated.name).await;
    Ok(Response::new(updated))
}

pub(super) async fn open_case(svc: &Cases, request: Request<OpenCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    if !req.owner.is_empty() {
        names::parse("owner", &req.owner, &["staff"])?;
    }
    let caller = ctx.principal.staff_member.clone().unwrap_or_default();
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Open,
            |c, now| {
                if !req.owner.is_empty() {
                    c.owner = req.owner.clone();
                } else if c.owner.is_empty() {
                    c.owner = caller;
                }
                if c.first_response_time.is_none() {
                    c.first_response_time = clock::micros_to_proto(now);
                }
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn start_case_work(
    svc: &Cases,
    request: Request<StartCaseWorkRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::StartWork,
            |c, now| {
                if c.first_response_time.is_none() {
                    c.first_response_time = clock::micros_to_proto(now);
                }
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn pend_case_on_client(
    svc: &Cases,
    request: Request<PendCaseOnClientRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    required("reason", &req.reason)?;
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::PendOnClient,
            |c, _| {
                c.state_reason = req.reason.clone();
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn pend_case_on_carrier(
    svc: &Cases,
    request: Request<PendCaseOnCarrierRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    required("reason", &req.reason)?;
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::PendOnCarrier,
            |c, _| {
                c.state_reason = req.reason.clone();
                if !req.carrier_reference.is_empty() {
                    c.carrier_reference = req.carrier_reference.clone();
                }
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn resume_case(svc: &Cases, request: Request<ResumeCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Resume,
            |c, _| {
                c.state_reason = req.reason.clone();
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn mark_case_jeopardy(
    svc: &Cases,
    request: Request<MarkCaseJeopardyRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    bounded::Instant::optional("revised_eta_time", &req.revised_eta_time)?;
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::MarkJeopardy,
            |c, now| {
                let mut j = c.jeopardy.take().unwrap_or_default();
                if j.enter_time.is_none() {
                    j.enter_time = clock::micros_to_proto(now);
                }
                if !req.reason.trim().is_empty() {
                    j.reason = req.reason.clone();
                    j.reason_time = clock::micros_to_proto(now);
                    // The public update that carries it, posted with the
                    // change (the case's after-write hook).
                    let id = names::new_id("note_id", "")?;
                    j.public_note = format!("{}/notes/{id}", c.name);
                }
                if req.revised_eta_time.is_some() {
                    j.revised_eta_time = req.revised_eta_time;
                }
                // Jeopardy without a reason or a revised ETA is allowed (the
                // performing team flags it) but marked, for the chase rule.
                j.flagged_missing_reason = j.reason.is_empty() || j.revised_eta_time.is_none();
                c.state_reason = j.reason.clone();
                c.jeopardy = Some(j);
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn resolve_case(svc: &Cases, request: Request<ResolveCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    bounded::Instant::optional("restore_time", &req.restore_time)?;
    let resolution = req.resolution.clone().unwrap_or_default();
    let mut v = concierge_common::error::Violations::new();
    for (field, value) in [
        ("resolution.root_cause", &resolution.root_cause),
        ("resolution.resolution_code", &resolution.resolution_code),
        ("resolution.summary", &resolution.summary),
    ] {
        if value.trim().is_empty() {
            v.add(field, "required to resolve a case");
        }
    }
    v.into_result()?;
    let resolver = ctx
        .principal
        .staff_member
        .clone()
        .unwrap_or_else(|| ctx.principal.subject.clone());
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Resolve,
            |c, now| {
                c.resolution = Some(Resolution {
                    resolver,
                    ..resolution
                });
                c.resolve_time = clock::micros_to_proto(now);
                c.state_reason = c
                    .resolution
                    .as_ref()
                    .map(|r| r.resolution_code.clone())
                    .unwrap_or_default();
                if let Some(restored) = req.restore_time {
                    c.outage.get_or_insert_with(Default::default).restore_time = Some(restored);
                }
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn close_case(svc: &Cases, request: Request<CloseCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Close,
            |c, now| {
                c.state_reason = req.reason.clone();
                c.close_time = clock::micros_to_proto(now);
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn reopen_case(svc: &Cases, request: Request<ReopenCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    required("reason", &req.reason)?;
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Reopen,
            |c, _| {
                c.state_reason = req.reason.clone();
                c.reopen_count += 1;
                c.close_time = None;
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn cancel_case(svc: &Cases, request: Request<CancelCaseRequest>) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    required("reason", &req.reason)?;
    reply(
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Cancel,
            |c, now| {
                c.state_reason = req.reason.clone();
                c.close_time = clock::micros_to_proto(now);
                Ok(())
            },
        )
        .await,
    )
}

pub(super) async fn merge_case(
    svc: &Cases,
    request: Request<MergeCaseRequest>,
) -> Reply<MergeCaseResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        names::parse("target", &req.target, &["cases"])?;
        if req.target == req.name {
            return Err(Error::invalid(
                "target",
                "a case cannot be merged into itself",
            ));
        }
        let target: Case = svc.store().get(&RULES, &ctx, &req.target).await?;
        if !lifecycle::is_open(
            case::State::try_from(target.state).unwrap_or(case::State::Unspecified),
        ) {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::MergeTargetNotOpen,
                subject: req.target.clone(),
                description: format!("{} is not open; merge into an open case", req.target),
            });
        }
        svc.transition(
            &ctx,
            &req.name,
            &req.etag,
            (&req.request_id, &without_request_id!(req)),
            Transition::Merge,
            |c, now| {
                if c.account != target.account {
                    return Err(Error::FailedPrecondition {
                        reason: concierge_common::error::Reason::MergeAcrossAccounts,
                        subject: req.target.clone(),
                        description: format!(
                            "{} belongs to {}, not {}",
                            req.target, target.account, c.account
                        ),
                    });
                }
                c.merged_into = req.target.clone();
                c.state_reason = if req.reason.is_empty() {
                    format!("merged into {}", req.target)
                } else {
                    req.reason.clone()
                };
                c.close_time = clock::micros_to_proto(now);
                Ok(())
            },
        )
        .await
        .map(|source| MergeCaseResponse {
            source: Some(source),
            target: Some(target.clone()),
        })
    };
    reply(result.await)
}

pub(super) async fn set_case_hand_off_code(
    svc: &Cases,
    request: Request<SetCaseHandOffCodeRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        let code_name = format!("handOffCodes/{}", req.hand_off_code);
        let code: HandOffCode = match svc.store().get(&RULES, &ctx, &code_name).await {
            Err(Error::NotFound { .. }) => {
                return Err(Error::invalid(
                    "hand_off_code",
                    format!("{:?} is not a configured hand-off code", req.hand_off_code),
                ));
            }
            other => other?,
        };
        let changed: Case = svc
            .store()
            .change_once::<Case, _>(
                &RULES,
                &ctx,
                once(
                    &ctx,
                    &req.request_id,
                    "SetCaseHandOffCode",
                    &without_request_id!(req),
                )?,
                &req.name,
                &req.etag,
                catalogue::cases::CASE_UPDATED,
                false,
                |c, _| {
                    if !code.case_types.is_empty() && !code.case_types.contains(&c.r#type) {
                        return Err(Error::FailedPrecondition {
                            reason: concierge_common::error::Reason::HandOffCodeNotForType,
                            subject: code.name.clone(),
                            description: format!(
                                "{} does not apply to this case's type",
                                code.name
                            ),
                        });
                    }
                    if !lifecycle::is_open(
                        case::State::try_from(c.state).unwrap_or(case::State::Unspecified),
                    ) {
                        return Err(Error::FailedPrecondition {
                            reason: concierge_common::error::Reason::CaseNotOpen,
                            subject: c.name.clone(),
                            description: format!("{} is no longer open", c.name),
                        });
                    }
                    c.hand_off_code = req.hand_off_code.clone();
                    c.presented_to_carrier = code.presented_to_carrier;
                    if !req.carrier_reference.is_empty() {
                        c.carrier_reference = req.carrier_reference.clone();
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(changed)
    };
    reply(result.await)
}

pub(super) async fn record_case_milestone(
    svc: &Cases,
    request: Request<RecordCaseMilestoneRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        if req.key.is_empty()
            || !req
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(Error::invalid(
                "key",
                "required: the milestone's key, e.g. \"installed\"",
            ));
        }
        let now = svc.store().now();
        let at = match &req.achieve_time {
            Some(t) => {
                let t = clock::from_proto(t)
                    .ok_or_else(|| Error::invalid("achieve_time", "not a valid instant"))?;
                if clock::to_micros(t) > now {
                    return Err(Error::invalid(
                        "achieve_time",
                        "a milestone is not reached in the future",
                    ));
                }
                t
            }
            None => clock::from_micros(now),
        };
        let recorder = ctx
            .principal
            .staff_member
            .clone()
            .unwrap_or_else(|| ctx.principal.subject.clone());
        let changed: Case = svc
            .store()
            .change_once::<Case, _>(
                &RULES,
                &ctx,
                once(
                    &ctx,
                    &req.request_id,
                    "RecordCaseMilestone",
                    &without_request_id!(req),
                )?,
                &req.name,
                &req.etag,
                catalogue::cases::CASE_UPDATED,
                false,
                |c, _| {
                    c.milestones.retain(|m| m.key != req.key);
                    c.milestones.push(CaseMilestone {
                        key: req.key.clone(),
                        display_name: req.display_name.clone(),
                        achieve_time: Some(clock::to_proto(at)),
                        recorder,
                        note: req.note.clone(),
                    });
                    Ok(())
                },
            )
            .await?;
        // Its clock stops: the timers go.
        svc.refresh_timers_after_change(&changed.name).await;
        Ok(changed)
    };
    reply(result.await)
}

pub(super) async fn add_case_watcher(
    svc: &Cases,
    request: Request<AddCaseWatcherRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let staff = names::parse("watcher", &req.watcher, &["staff"]).is_ok();
    let contact = names::parse("watcher", &req.watcher, &["accounts", "contacts"]).is_ok();
    if !staff && !contact {
        return Err(Error::invalid(
            "watcher",
            "\"staff/{staff_member}\" or a contact of the case's account",
        )
        .into());
    }
    reply(
        svc.store()
            .change_once::<Case, _>(
                &RULES,
                &ctx,
                once(
                    &ctx,
                    &req.request_id,
                    "AddCaseWatcher",
                    &without_request_id!(req),
                )?,
                &req.name,
                "",
                catalogue::cases::CASE_UPDATED,
                false,
                |c, _| {
                    if contact && !req.watcher.starts_with(&format!("{}/", c.account)) {
                        return Err(Error::invalid(
                            "watcher",
                            format!("{} is not a contact of {}", req.watcher, c.account),
                        ));
                    }
                    if !c.watchers.contains(&req.watcher) {
                        c.watchers.push(req.watcher.clone());
                    }
                    Ok(())
                },
            )
            .await,
    )
}

pub(super) async fn remove_case_watcher(
    svc: &Cases,
    request: Request<RemoveCaseWatcherRequest>,
) -> Reply<Case> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .change_once::<Case, _>(
                &RULES,
                &ctx,
                once(
                    &ctx,
                    &req.request_id,
                    "RemoveCaseWatcher",
                    &without_request_id!(req),
                )?,
                &req.name,
                "",
                catalogue::cases::CASE_UPDATED,
                false,
                |c, _| {
                    c.watchers.retain(|w| w != &req.watcher);
                    Ok(())
                },
            )
            .await,
    )
}
