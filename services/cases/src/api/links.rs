//! Links between cases, which come in pairs.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use crate::{Cases, RULES};

pub(super) async fn create_case_link(
    svc: &Cases,
    request: Request<CreateCaseLinkRequest>,
) -> Reply<CaseLink> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    reply(
        svc.store()
            .create(
                &RULES,
                &ctx,
                "CreateCaseLink",
                &hashed,
                New {
                    parent: &req.parent,
                    resource: req.case_link,
                    id: &req.case_link_id,
                    request_id: &req.request_id,
                },
            )
            .await,
    )
}

pub(super) async fn get_case_link(
    svc: &Cases,
    request: Request<GetCaseLinkRequest>,
) -> Reply<CaseLink> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_case_links(
    svc: &Cases,
    request: Request<ListCaseLinksRequest>,
) -> Reply<ListCaseLinksResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    if req.order_by.is_empty() {
        req.order_by = "create_time".into();
    }
    let (case_links, next_page_token) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListCaseLinksResponse {
        case_links,
        next_page_token,
    }))
}

pub(super) async fn delete_case_link(
    svc: &Cases,
    request: Request<DeleteCaseLinkRequest>,
) -> Reply<()> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .delete::<CaseLink, _>(&RULES, &ctx, &req.name, &req.etag)
            .await,
    )
}
