//! SLA policies: versioned, checked before they are changed, rolled back by copying a revision.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::Error;
use concierge_common::paging::PageQuery;
use concierge_common::without_request_id;
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use concierge_common::names;

use crate::{Cases, RULES};

pub(super) async fn create_sla_policy(
    svc: &Cases,
    request: Request<CreateSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    reply(
        svc.store()
            .create_or_validate(
                &RULES,
                &ctx,
                "CreateSlaPolicy",
                &hashed,
                New {
                    parent: "",
                    resource: req.sla_policy,
                    id: &req.sla_policy_id,
                    request_id: &req.request_id,
                },
                req.validate_only,
            )
            .await,
    )
}

pub(super) async fn get_sla_policy(
    svc: &Cases,
    request: Request<GetSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let name = request.into_inner().name;
    match name.split_once('@') {
        Some((policy, revision)) => {
            names::parse("name", policy, &["slaPolicies"])?;
            reply(svc.sla_policy_revision(&ctx, policy, revision).await)
        }
        None => reply(svc.store().get(&RULES, &ctx, &name).await),
    }
}

pub(super) async fn list_sla_policies(
    svc: &Cases,
    request: Request<ListSlaPoliciesRequest>,
) -> Reply<ListSlaPoliciesResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    if req.order_by.is_empty() {
        req.order_by = "precedence".into();
    }
    let page = PageQuery {
        parent: "",
        page_size: req.page_size,
        page_token: &req.page_token,
        filter: &req.filter,
        order_by: &req.order_by,
        show_deleted: req.show_deleted,
    };
    let (sla_policies, next_page_token) = svc.store().list(&RULES, &ctx, page).await?;
    Ok(Response::new(ListSlaPoliciesResponse {
        sla_policies,
        next_page_token,
    }))
}

pub(super) async fn update_sla_policy(
    svc: &Cases,
    request: Request<UpdateSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .update_or_validate(
                &RULES,
                &ctx,
                req.sla_policy,
                req.update_mask,
                req.validate_only,
                None,
            )
            .await,
    )
}

/// A rollback is an update whose values are an earlier revision's: it
/// makes a new current revision (cases on the later one keep it), and is
/// refused on a stale etag like any update.
pub(super) async fn rollback_sla_policy(
    svc: &Cases,
    request: Request<RollbackSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        names::parse("name", &req.name, &["slaPolicies"])?;
        if req.revision_id.is_empty() {
            return Err(Error::invalid("revision_id", "required"));
        }
        let earlier = svc
            .sla_policy_revision(&ctx, &req.name, &req.revision_id)
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::invalid(
                    "revision_id",
                    format!("{} has no revision {:?}", req.name, req.revision_id),
                ),
                other => other,
            })?;
        let patch = SlaPolicy {
            name: req.name.clone(),
            etag: req.etag.clone(),
            ..earlier
        };
        let once = concierge_common::idempotency::Key::new(
            &ctx.principal.subject,
            &req.request_id,
            "RollbackSlaPolicy",
            &without_request_id!(req),
        )?;
        svc.store()
            .update_or_validate(
                &RULES,
                &ctx,
                Some(patch),
                Some(prost_types::FieldMask {
                    paths: vec!["*".into()],
                }),
                false,
                once,
            )
            .await
    };
    reply(result.await)
}

pub(super) async fn delete_sla_policy(
    svc: &Cases,
    request: Request<DeleteSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .soft_delete::<SlaPolicy, _>(&RULES, &ctx, &req.name, &req.etag, |p, at| {
                p.delete_time = at
            })
            .await,
    )
}

pub(super) async fn undelete_sla_policy(
    svc: &Cases,
    request: Request<UndeleteSlaPolicyRequest>,
) -> Reply<SlaPolicy> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .undelete::<SlaPolicy, _>(&RULES, &ctx, &req.name, &req.etag, |p| p.delete_time = None)
            .await,
    )
}

pub(super) async fn list_sla_policy_revisions(
    svc: &Cases,
    request: Request<ListSlaPolicyRevisionsRequest>,
) -> Reply<ListSlaPolicyRevisionsResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let sla_policies = svc.sla_policy_revisions(&ctx, &req.name).await?;
    Ok(Response::new(ListSlaPolicyRevisionsResponse {
        sla_policies,
        next_page_token: String::new(),
    }))
}
