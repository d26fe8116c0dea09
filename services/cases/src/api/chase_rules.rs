//! Chase rules through the API: the standard methods, and the AIP-134 upsert
//! (`allow_missing`) that `concierge cases chase-rules apply -f` is made of.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::{Error, Result};
use concierge_common::{names, page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use crate::{Cases, RULES};

pub(super) async fn create_chase_rule(
    svc: &Cases,
    request: Request<CreateChaseRuleRequest>,
) -> Reply<ChaseRule> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    reply(
        svc.store()
            .create_or_validate(
                &RULES,
                &ctx,
                "CreateChaseRule",
                &hashed,
                New {
                    parent: "",
                    resource: req.chase_rule,
                    id: &req.chase_rule_id,
                    request_id: &req.request_id,
                },
                req.validate_only,
            )
            .await,
    )
}

pub(super) async fn get_chase_rule(
    svc: &Cases,
    request: Request<GetChaseRuleRequest>,
) -> Reply<ChaseRule> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_chase_rules(
    svc: &Cases,
    request: Request<ListChaseRulesRequest>,
) -> Reply<ListChaseRulesResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let (chase_rules, next_page_token) = svc.store().list(&RULES, &ctx, page_query!(req)).await?;
    Ok(Response::new(ListChaseRulesResponse {
        chase_rules,
        next_page_token,
    }))
}

pub(super) async fn update_chase_rule(
    svc: &Cases,
    request: Request<UpdateChaseRuleRequest>,
) -> Reply<ChaseRule> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(upsert(svc, &ctx, req).await)
}

/// An update; with `allow_missing`, a create of the rule its name names
/// when there is none. Two upserts of the same missing rule race: the one
/// that loses the create updates what the other created.
async fn upsert(
    svc: &Cases,
    ctx: &concierge_common::crud::Ctx,
    req: UpdateChaseRuleRequest,
) -> Result<ChaseRule> {
    for _ in 0..2 {
        let updated = svc
            .store()
            .update_or_validate(
                &RULES,
                ctx,
                req.chase_rule.clone(),
                req.update_mask.clone(),
                req.validate_only,
                None,
            )
            .await;
        let missing = matches!(updated, Err(Error::NotFound { .. }));
        if !(missing && req.allow_missing) {
            return updated;
        }
        let rule = req.chase_rule.clone().unwrap_or_default();
        let id = names::parse("chase_rule.name", &rule.name, &["chaseRules"])?[0].to_string();
        let created = svc
            .store()
            .create_or_validate(
                &RULES,
                ctx,
                "UpdateChaseRule",
                &req,
                New {
                    parent: "",
                    resource: Some(rule),
                    id: &id,
                    request_id: "",
                },
                req.validate_only,
            )
            .await;
        if !matches!(created, Err(Error::AlreadyExists { .. })) {
            return created;
        }
    }
    Err(Error::Conflict {
        reason: concierge_common::error::Reason::TransactionConflict,
        description: "the rule was created and deleted while this upsert ran: try again".into(),
    })
}

pub(super) async fn delete_chase_rule(
    svc: &Cases,
    request: Request<DeleteChaseRuleRequest>,
) -> Reply<()> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .delete::<ChaseRule, _>(&RULES, &ctx, &req.name, &req.etag)
            .await,
    )
}
