//! Notes: internal ones for staff, public updates the client reads.

use concierge_common::crud::{New, Reply, reply};
use concierge_common::error::Error;
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use crate::{Cases, RULES};

pub(super) async fn create_note(svc: &Cases, request: Request<CreateNoteRequest>) -> Reply<Note> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let hashed = without_request_id!(req);
    let result = async {
        let case = svc.visible_case(&ctx, &req.parent).await?;
        let mut notified_contacts = Vec::new();
        if req.notify_client {
            let public = req
                .note
                .as_ref()
                .is_some_and(|n| n.visibility == note::Visibility::Public as i32);
            if !public {
                return Err(Error::invalid(
                    "notify_client",
                    "only a public update is sent to the client",
                ));
            }
            notified_contacts = svc
                .directory()
                .update_recipients(&ctx.request_id, &case.account, &case.contact)
                .await?;
        }
        svc.store()
            .create_learned(
                &RULES,
                &ctx,
                "CreateNote",
                &hashed,
                New {
                    parent: &req.parent,
                    resource: req.note,
                    id: &req.note_id,
                    request_id: &req.request_id,
                },
                false,
                |n| {
                    n.account = case.account;
                    n.notified_contacts = notified_contacts;
                },
            )
            .await
    };
    reply(result.await)
}

pub(super) async fn get_note(svc: &Cases, request: Request<GetNoteRequest>) -> Reply<Note> {
    let ctx = svc.ctx(&request)?;
    reply(svc.store().get(&RULES, &ctx, &request.get_ref().name).await)
}

pub(super) async fn list_notes(
    svc: &Cases,
    request: Request<ListNotesRequest>,
) -> Reply<ListNotesResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    // `cases/-` reads across cases: the store keeps a client to its own
    // account's public updates, as it does within one case.
    if req.parent != "cases/-" {
        svc.visible_case(&ctx, &req.parent).await?;
    }
    if req.order_by.is_empty() {
        req.order_by = "create_time".into();
    }
    let (notes, next_page_token) = svc
        .store()
        .list(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListNotesResponse {
        notes,
        next_page_token,
    }))
}
