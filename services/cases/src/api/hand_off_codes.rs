//! Hand-off codes: the company's list of carrier hand-off states.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use crate::{Cases, RULES};

pub(super) async fn create_hand_off_code(
    svc: &Cases,
    request: Request<CreateHandOffCodeRequest>,
) -> Reply<HandOffCode> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    reply(
        svc.store()
            .create(
                &RULES,
                &ctx,
                "CreateHandOffCode",
                &hashed,
                New {
                    parent: "",
                    resource: req.hand_off_code,
                    id: &req.hand_off_code_id,
                    request_id: &req.request_id,
                },
            )
            .await,
    )
}

pub(super) async fn get_hand_off_code(
    svc: &Cases,
    request: Request<GetHandOffCodeRequest>,
) -> Reply<HandOffCode> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_hand_off_codes(
    svc: &Cases,
    request: Request<ListHandOffCodesRequest>,
) -> Reply<ListHandOffCodesResponse> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let (hand_off_codes, next_page_token) =
        svc.store().list(&RULES, &ctx, page_query!(req)).await?;
    Ok(Response::new(ListHandOffCodesResponse {
        hand_off_codes,
        next_page_token,
    }))
}

pub(super) async fn update_hand_off_code(
    svc: &Cases,
    request: Request<UpdateHandOffCodeRequest>,
) -> Reply<HandOffCode> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .update(&RULES, &ctx, req.hand_off_code, req.update_mask)
            .await,
    )
}

pub(super) async fn delete_hand_off_code(
    svc: &Cases,
    request: Request<DeleteHandOffCodeRequest>,
) -> Reply<()> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .delete::<HandOffCode, _>(&RULES, &ctx, &req.name, &req.etag)
            .await,
    )
}
