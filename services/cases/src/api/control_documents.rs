//! Control documents: generated (a preview, or archived and sent), read,
//! listed, sent again; and the weekly run's settings.

use concierge_common::crud::{Reply, Resource, Store, reply, strip_meta};
use concierge_common::error::{Error, Result};
use concierge_common::resource::{self, Stored};
use concierge_common::{page_query, without_request_id};
use concierge_proto::concierge::cases::v1::*;
use tonic::{Request, Response};

use super::once;
use crate::control::issue::{Issue, basic};
use crate::resources::{CONTROL_DOCUMENT_SETTINGS, SETTINGS_NAME, default_settings};
use crate::{Cases, RULES, Rules, authz};

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

fn settings_name(field: &str, name: &str) -> Result<()> {
    if name != SETTINGS_NAME {
        return Err(Error::invalid(
            field,
            format!("the settings are one resource, {SETTINGS_NAME:?}"),
        ));
    }
    Ok(())
}

pub(super) async fn get_control_document_settings(
    svc: &Cases,
    request: Request<GetControlDocumentSettingsRequest>,
) -> Reply<ControlDocumentSettings> {
    let ctx = svc.ctx(&request)?;
    let result = async {
        settings_name("name", &request.get_ref().name)?;
        authz::staff_only(&ctx.principal, "control document settings")?;
        svc.control_settings().await
    };
    reply(result.await)
}

/// Updates the settings by mask, guarded by etag; the first update writes
/// the defaults with the change.
pub(super) async fn update_control_document_settings(
    svc: &Cases,
    request: Request<UpdateControlDocumentSettingsRequest>,
) -> Reply<ControlDocumentSettings> {
    use concierge_common::crud::Authorize;
    let ctx = svc.ctx(&request)?;
    let req = request.into_inner();
    let result = async {
        let patch = req
            .control_document_settings
            .ok_or_else(|| Error::invalid("control_document_settings", "required"))?;
        settings_name("control_document_settings.name", &patch.name)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid(
                "update_mask",
                "required: the fields to change, or \"*\"",
            ));
        }
        let paths: Vec<String> = if paths == ["*"] {
            ControlDocumentSettings::UPDATABLE
                .iter()
                .map(|p| p.to_string())
                .collect()
        } else {
            paths
        };
        for p in &paths {
            if !ControlDocumentSettings::UPDATABLE.contains(&p.as_str()) {
                return Err(Error::invalid(
                    "update_mask",
                    format!(
                        "{p:?} is not updatable; these are: {}",
                        ControlDocumentSettings::UPDATABLE.join(", ")
                    ),
                ));
            }
        }
        RULES.may_write(&ctx.principal, &patch, &())?;
        let now = svc.store().now();
        let mut tx = svc.store().db().begin().await?;
        let mut conn = tx.conn();
        let row =
            resource::get_for_update(&mut conn, &CONTROL_DOCUMENT_SETTINGS, SETTINGS_NAME).await?;
        let mut settings = match &row {
            Some(r) => Store::decode::<ControlDocumentSettings, Rules>(r)?,
            None => default_settings(),
        };
        let current = row.as_ref().map_or(resource::etag(0), |r| r.etag());
        if !patch.etag.is_empty() && patch.etag != current {
            return Err(Error::EtagMismatch {
                name: SETTINGS_NAME.into(),
                current,
            });
        }
        for p in &paths {
            settings.copy_field(&patch, p);
        }
        let mut v = concierge_common::error::Violations::new();
        settings.check(&mut v);
        v.into_result()?;
        let next = Stored {
            name: SETTINGS_NAME.into(),
            parent: String::new(),
            account: String::new(),
            create_time: row.as_ref().map_or(now, |r| r.create_time),
            update_time: now,
            delete_time: 0,
            revision: row.as_ref().map_or(1, |r| r.revision + 1),
            body: strip_meta::<ControlDocumentSettings, Rules>(&settings),
        };
        match &row {
            Some(r) => {
                resource::update(
                    &mut conn,
                    &CONTROL_DOCUMENT_SETTINGS,
                    &next,
                    r.revision,
                    &[],
                )
                .await?
            }
            None => resource::insert(&mut conn, &CONTROL_DOCUMENT_SETTINGS, &next, &[]).await?,
        }
        settings.set_meta(next.create_time, now, next.etag());
        concierge_common::crud::record_event(
            &mut conn,
            &RULES,
            &ctx,
            crate::EVENTS,
            concierge_proto::catalogue::cases::CONTROL_DOCUMENT_SETTINGS_UPDATED,
            &settings,
            now,
        )
        .await?;
        tx.commit().await?;
        svc.store().nudge();
        Ok(settings)
    };
    reply(result.await)
}
