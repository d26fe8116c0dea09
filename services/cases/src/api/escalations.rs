//! Escalations: raised on an open case by staff (or, next, by a chase
//! step), then acknowledged, resolved or cancelled, each an event an
//! escalation channel can follow.

use concierge_common::crud::{Ctx, New, Reply, reply};
use concierge_common::error::{Error, Reason, Result};
use concierge_common::{page_query, without_request_id};
use concierge_proto::catalogue::{self, EventOf};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use super::{once, required};
use crate::lifecycle;
use crate::{Cases, RULES};

pub(super) async fn create_escalation(
    svc: &Cases,
    request: Request<CreateEscalationRequest>,
) -> Reply<Escalation> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    let result = async {
        let case = svc.visible_case(&ctx, &req.parent).await?;
        let state = case::State::try_from(case.state).unwrap_or(case::State::Unspecified);
        if !lifecycle::is_open(state) {
            return Err(Error::FailedPrecondition {
                reason: Reason::CaseNotOpen,
                subject: case.name.clone(),
                description: format!(
                    "{} is no longer open: there is nothing to escalate",
                    case.name
                ),
            });
        }
        svc.store()
            .create_learned(
                &RULES,
                &ctx,
                "CreateEscalation",
                &hashed,
                New {
                    parent: &req.parent,
                    resource: req.escalation,
                    id: &req.escalation_id,
                    request_id: &req.request_id,
                },
                false,
                |e| {
                    e.account = case.account;
                    e.case_title = case.title;
                    e.case_priority = case.priority;
                },
            )
            .await
    };
    reply(result.await)
}

pub(super) async fn get_escalation(
    svc: &Cases,
    request: Request<GetEscalationRequest>,
) -> Reply<Escalation> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_escalations(
    svc: &Cases,
    request: Request<ListEscalationsRequest>,
) -> Reply<ListEscalationsResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    if req.parent != "cases/-" {
        svc.visible_case(&ctx, &req.parent).await?;
    }
    if req.order_by.is_empty() {
        req.order_by = "create_time desc".into();
    }
    let (escalations, next_page_token) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListEscalationsResponse {
        escalations,
        next_page_token,
    }))
}

/// Moves an escalation from one of `from` to `to`, in one transaction with
/// its event; a retry with the same request id answers what the first did.
#[allow(clippy::too_many_arguments)]
async fn settle<M: prost::Message>(
    svc: &Cases,
    ctx: &Ctx,
    method: &'static str,
    request: &M,
    request_id: &str,
    name: &str,
    etag: &str,
    from: &[escalation::State],
    to: escalation::State,
    event: EventOf<Escalation>,
    outcome: Option<String>,
) -> Result<Escalation> {
    let now = concierge_common::clock::micros_to_proto(svc.store().now());
    let subject = ctx.principal.subject.clone();
    svc.store()
        .change_once::<Escalation, _>(
            &RULES,
            ctx,
            once(ctx, request_id, method, request)?,
            name,
            etag,
            event,
            false,
            |e, _| {
                let state =
                    escalation::State::try_from(e.state).unwrap_or(escalation::State::Unspecified);
                if !from.contains(&state) {
                    return Err(Error::FailedPrecondition {
                        reason: Reason::IllegalTransition,
                        subject: e.name.clone(),
                        description: format!(
                            "{} is {}: {method} needs it {}",
                            e.name,
                            state.as_str_name(),
                            from.iter()
                                .map(|s| s.as_str_name())
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    });
                }
                e.state = to as i32;
                match to {
                    escalation::State::Acknowledged => {
                        e.acknowledger = subject;
                        e.acknowledge_time = now;
                    }
                    _ => {
                        e.outcome = outcome.unwrap_or_default();
                        e.close_time = now;
                    }
                }
                Ok(())
            },
        )
        .await
}

pub(super) async fn acknowledge_escalation(
    svc: &Cases,
    request: Request<AcknowledgeEscalationRequest>,
) -> Reply<Escalation> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        settle(
            svc,
            &ctx,
            "AcknowledgeEscalation",
            &without_request_id!(req),
            &req.request_id,
            &req.name,
            &req.etag,
            &[escalation::State::Raised],
            escalation::State::Acknowledged,
            catalogue::cases::ESCALATION_ACKNOWLEDGED,
            None,
        )
        .await,
    )
}

pub(super) async fn resolve_escalation(
    svc: &Cases,
    request: Request<ResolveEscalationRequest>,
) -> Reply<Escalation> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        required("outcome", &req.outcome)?;
        settle(
            svc,
            &ctx,
            "ResolveEscalation",
            &without_request_id!(req),
            &req.request_id,
            &req.name,
            &req.etag,
            &[escalation::State::Raised, escalation::State::Acknowledged],
            escalation::State::Resolved,
            catalogue::cases::ESCALATION_RESOLVED,
            Some(req.outcome.clone()),
        )
        .await
    };
    reply(result.await)
}

pub(super) async fn cancel_escalation(
    svc: &Cases,
    request: Request<CancelEscalationRequest>,
) -> Reply<Escalation> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        required("reason", &req.reason)?;
        settle(
            svc,
            &ctx,
            "CancelEscalation",
            &without_request_id!(req),
            &req.request_id,
            &req.name,
            &req.etag,
            &[escalation::State::Raised, escalation::State::Acknowledged],
            escalation::State::Cancelled,
            catalogue::cases::ESCALATION_CANCELLED,
            Some(req.reason.clone()),
        )
        .await
    };
    reply(result.await)
}
