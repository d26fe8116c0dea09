//! Control documents: generated (a preview, or archived and sent), read,
//! listed, sent again; and the weekly run's settings.

use concierge_common::crud::{Reply, Resource, reply};
use concierge_common::error::Result;
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use super::once;
use crate::control::issue::{Issue, basic};
use crate::resources::default_settings;
use crate::{Cases, RULES, authz};

fn view(doc: ControlDocument, view: i32, default: ControlDocumentView) -> ControlDocument {
    let wanted = match ControlDocumentView::try_from(view) {
        Ok(ControlDocumentView::Unspecified) | Err(_) => default,
        Ok(v) => v,
    };
    if wanted == ControlDocumentView::Full {
        doc
    } else {
        basic(&doc)
    }
}

pub(super) async fn generate_control_document(
    svc: &Cases,
    request: Request<GenerateControlDocumentRequest>,
) -> Reply<ControlDocument> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        authz::staff_only(&ctx.principal, "control documents issued")?;
        let key = if req.archive {
            once(
                &ctx,
                &req.request_id,
                "GenerateControlDocument",
                &without_request_id!(req),
            )?
        } else {
            None
        };
        svc.issue_control_document(
            &ctx,
            Issue {
                account: &req.parent,
                trigger: control_document::Trigger::OnDemand,
                archive: req.archive,
                send: req.send,
                extra_recipients: &req.extra_recipients,
                force: req.force,
                once: key,
            },
        )
        .await
    };
    reply(result.await)
}

pub(super) async fn get_control_document(
    svc: &Cases,
    request: Request<GetControlDocumentRequest>,
) -> Reply<ControlDocument> {
    let ctx = svc.ctx(&request)?;
    let req = request.get_ref();
    let doc: Result<ControlDocument> = svc.store().get(&RULES, &ctx, &req.name).await;
    reply(doc.map(|d| view(d, req.view, ControlDocumentView::Full)))
}

pub(super) async fn list_control_documents(
    svc: &Cases,
    request: Request<ListControlDocumentsRequest>,
) -> Reply<ListControlDocumentsResponse> {
    let ctx = svc.ctx(&request)?;
    let mut req = request.into_inner();
    concierge_common::names::parse("parent", &req.parent, &["accounts"])?;
    if req.order_by.is_empty() {
        req.order_by = "create_time desc".into();
    }
    let (docs, next_page_token) = svc
        .store()
        .list::<ControlDocument, _>(&RULES, &ctx, page_query!(req, &req.parent))
        .await?;
    Ok(Response::new(ListControlDocumentsResponse {
        control_documents: docs
            .into_iter()
            .map(|d| view(d, req.view, ControlDocumentView::Basic))
            .collect(),
        next_page_token,
    }))
}

pub(super) async fn send_control_document(
    svc: &Cases,
    request: Request<SendControlDocumentRequest>,
) -> Reply<ControlDocument> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        authz::staff_only(&ctx.principal, "control documents issued")?;
        concierge_common::names::parse("name", &req.name, ControlDocument::COLLECTIONS)?;
        let key = once(
            &ctx,
            &req.request_id,
            "SendControlDocument",
            &without_request_id!(req),
        )?;
        svc.send_control_document(
            &ctx,
            &req.name,
            req.include_client_delegate,
            &req.extra_recipients,
            req.force,
            key,
        )
        .await
    };
    reply(result.await.map(|d| basic(&d)))
}

pub(super) async fn get_control_document_settings(
    svc: &Cases,
    request: Request<GetControlDocumentSettingsRequest>,
) -> Reply<ControlDocumentSettings> {
    let ctx = svc.ctx(&request)?;
    reply(
        svc.store()
            .get_singleton(&RULES, &ctx, &request.get_ref().name, default_settings)
            .await,
    )
}

/// Updates the settings by mask, guarded by etag; the first update writes
/// the defaults with the change.
pub(super) async fn update_control_document_settings(
    svc: &Cases,
    request: Request<UpdateControlDocumentSettingsRequest>,
) -> Reply<ControlDocumentSettings> {
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    reply(
        svc.store()
            .update_singleton(
                &RULES,
                &ctx,
                req.control_document_settings,
                req.update_mask,
                default_settings,
            )
            .await,
    )
}
