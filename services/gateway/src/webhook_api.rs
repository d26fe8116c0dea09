//! The webhook methods of `GatewayService`: registry, state, test sends and
//! the delivery log. What a webhook must be is `webhooks`; how deliveries
//! go out is `delivery`.

use concierge_common::clock;
use concierge_common::crud::{Ctx, New, Resource, Store};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::idempotency::Key;
use concierge_common::principal::Role;
use concierge_common::{page_query, without_request_id};
use concierge_proto::catalogue::gateway as events;
use concierge_proto::concierge::gateway::v1::*;

use crate::delivery::Deliveries;
use crate::webhooks::{RULES, Targets, check_target, shown};

/// The webhook methods over the gateway's store.
pub struct WebhookApi {
    pub deliveries: Deliveries,
    pub targets: Targets,
}

fn once<M: prost::Message>(
    ctx: &Ctx,
    request_id: &str,
    method: &'static str,
    request: &M,
) -> Result<Option<Key>> {
    Key::new(&ctx.principal.subject, request_id, method, request)
}

impl WebhookApi {
    fn store(&self) -> &Store {
        self.deliveries.store()
    }

    pub async fn create(&self, ctx: &Ctx, req: CreateWebhookRequest) -> Result<Webhook> {
        let hashed = without_request_id!(req);
        let mut w = req
            .webhook
            .clone()
            .ok_or_else(|| Error::invalid("webhook", "required"))?;
        w.clear_output_only();
        if ctx.principal.role == Role::Client {
            let own = ctx.principal.account.clone().unwrap_or_default();
            if !w.account.is_empty() && w.account != own {
                return Err(Error::PermissionDenied(format!(
                    "webhook.account: a client's webhooks deliver its own account's events ({own})"
                )));
            }
            w.account = own;
        }
        let mut v = Violations::new();
        w.check(&mut v);
        v.into_result()?;
        check_target("webhook.url", &w.url, self.targets).await?;
        self.store()
            .create(
                &RULES,
                ctx,
                "CreateWebhook",
                &hashed,
                New {
                    parent: "",
                    resource: Some(w),
                    id: &req.webhook_id,
                    request_id: &req.request_id,
                },
            )
            .await
            .map(shown)
    }

    pub async fn get(&self, ctx: &Ctx, name: &str) -> Result<Webhook> {
        self.store()
            .get::<Webhook, _>(&RULES, ctx, name)
            .await
            .map(shown)
    }

    pub async fn list(&self, ctx: &Ctx, req: ListWebhooksRequest) -> Result<ListWebhooksResponse> {
        let (webhooks, next_page_token) = self
            .store()
            .list::<Webhook, _>(&RULES, ctx, page_query!(req))
            .await?;
        Ok(ListWebhooksResponse {
            webhooks: webhooks.into_iter().map(shown).collect(),
            next_page_token,
        })
    }

    pub async fn update(&self, ctx: &Ctx, req: UpdateWebhookRequest) -> Result<Webhook> {
        let patch = req
            .webhook
            .clone()
            .ok_or_else(|| Error::invalid("webhook", "required"))?;
        let touches_url = req
            .update_mask
            .as_ref()
            .is_some_and(|m| m.paths.iter().any(|p| p == "url" || p == "*"));
        if touches_url {
            check_target("webhook.url", &patch.url, self.targets).await?;
        }
        self.store()
            .update(&RULES, ctx, Some(patch), req.update_mask)
            .await
            .map(shown)
    }

    pub async fn delete(&self, ctx: &Ctx, req: DeleteWebhookRequest) -> Result<()> {
        let key = once(
            ctx,
            &req.request_id,
            "DeleteWebhook",
            &without_request_id!(req),
        )?;
        self.store()
            .delete_once::<Webhook, _>(&RULES, ctx, key, &req.name, &req.etag)
            .await
    }

    /// PauseWebhook (`pause`) or ResumeWebhook.
    pub async fn set_state(
        &self,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        request_id: &str,
        pause: bool,
    ) -> Result<Webhook> {
        let (method, hashed) = if pause {
            let r = PauseWebhookRequest {
                name: name.into(),
                etag: etag.into(),
                request_id: String::new(),
            };
            ("PauseWebhook", prost::Message::encode_to_vec(&r))
        } else {
            let r = ResumeWebhookRequest {
                name: name.into(),
                etag: etag.into(),
                request_id: String::new(),
            };
            ("ResumeWebhook", prost::Message::encode_to_vec(&r))
        };
        let key = Key::new(&ctx.principal.subject, request_id, method, &hashed)?;
        let subject = name.to_string();
        self.store()
            .change_once::<Webhook, _>(
                &RULES,
                ctx,
                key,
                name,
                etag,
                events::WEBHOOK_UPDATED,
                false,
                move |w, _| {
                    use webhook::State;
                    let state = State::try_from(w.state).unwrap_or_default();
                    let allowed = if pause {
                        state == State::Active
                    } else {
                        matches!(state, State::Paused | State::Disabled)
                    };
                    if !allowed {
                        return Err(Error::FailedPrecondition {
                            reason: Reason::IllegalTransition,
                            subject,
                            description: format!(
                                "the webhook is {}: {}",
                                crate::webhooks::state_word(w.state),
                                if pause {
                                    "only an active webhook is paused"
                                } else {
                                    "only a paused or disabled webhook is resumed"
                                }
                            ),
                        });
                    }
                    w.state = if pause { State::Paused } else { State::Active } as i32;
                    if !pause {
                        w.consecutive_failure_count = 0;
                    }
                    Ok(())
                },
            )
            .await
            .map(shown)
    }

    /// Queues a `webhook_test` event for the webhook alone, now.
    pub async fn test(&self, ctx: &Ctx, req: TestWebhookRequest) -> Result<WebhookDelivery> {
        let hashed = without_request_id!(req);
        let key = once(ctx, &req.request_id, "TestWebhook", &hashed)?;
        let w: Webhook = self.store().get(&RULES, ctx, &req.name).await?;
        if w.state != webhook::State::Active as i32 {
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: w.name.clone(),
                description: format!(
                    "the webhook is {}: resume it to test it",
                    crate::webhooks::state_word(w.state)
                ),
            });
        }
        let now = self.store().now();
        let mut tx = self.store().db().begin().await?;
        if let Some(key) = &key
            && let Some(previous) = key.replay::<WebhookDelivery>(&mut tx.conn()).await?
        {
            return Ok(previous);
        }
        let event = concierge_common::outbox::record(
            &mut tx.conn(),
            concierge_common::outbox::NewEvent {
                event: events::WEBHOOK_TEST,
                source: "gateway",
                subject: &w.name,
                account: &w.account,
                visibility: concierge_proto::events::Visibility::Internal,
                actor: &ctx.principal,
                request_id: &ctx.request_id,
                occur_time: clock::from_micros(now),
                payload: &shown(w.clone()),
            },
        )
        .await?;
        let delivery = self
            .deliveries
            .queue(&mut tx.conn(), &w, &event, now)
            .await?;
        if let Some(key) = &key {
            key.save(&mut tx.conn(), &delivery, now).await?;
        }
        tx.commit().await?;
        self.store().nudge();
        self.deliveries.wake();
        Ok(delivery)
    }

    pub async fn get_delivery(&self, ctx: &Ctx, name: &str) -> Result<WebhookDelivery> {
        self.visible_webhook_of(ctx, name).await?;
        self.store()
            .get::<WebhookDelivery, _>(&RULES, ctx, name)
            .await
    }

    pub async fn list_deliveries(
        &self,
        ctx: &Ctx,
        req: ListWebhookDeliveriesRequest,
    ) -> Result<ListWebhookDeliveriesResponse> {
        if req.parent != "webhooks/-" {
            self.get(ctx, &req.parent).await.map_err(|e| match e {
                Error::InvalidArgument(_) => Error::invalid(
                    "parent",
                    "a webhook, \"webhooks/{webhook}\", or \"webhooks/-\"",
                ),
                other => other,
            })?;
        }
        let order_by = if req.order_by.is_empty() {
            "create_time desc".to_string()
        } else {
            req.order_by.clone()
        };
        let page = concierge_common::paging::PageQuery {
            parent: &req.parent,
            page_size: req.page_size,
            page_token: &req.page_token,
            filter: &req.filter,
            order_by: &order_by,
            show_deleted: false,
        };
        let (webhook_deliveries, next_page_token) = self
            .store()
            .list::<WebhookDelivery, _>(&RULES, ctx, page)
            .await?;
        Ok(ListWebhookDeliveriesResponse {
            webhook_deliveries,
            next_page_token,
        })
    }

    pub async fn retry(
        &self,
        ctx: &Ctx,
        req: RetryWebhookDeliveryRequest,
    ) -> Result<WebhookDelivery> {
        let hashed = without_request_id!(req);
        let key = once(ctx, &req.request_id, "RetryWebhookDelivery", &hashed)?;
        let w = self.visible_webhook_of(ctx, &req.name).await?;
        if !matches!(
            ctx.principal.role,
            Role::Admin | Role::Manager | Role::Client
        ) {
            return Err(Error::PermissionDenied(
                "deliveries are retried by managers and admins (or a client's key for its own webhooks)".into(),
            ));
        }
        if w.state != webhook::State::Active as i32 {
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: w.name.clone(),
                description: format!(
                    "the webhook is {}: resume it before retrying",
                    crate::webhooks::state_word(w.state)
                ),
            });
        }
        let now = self.store().now();
        let mut tx = self.store().db().begin().await?;
        if let Some(key) = &key
            && let Some(previous) = key.replay::<WebhookDelivery>(&mut tx.conn()).await?
        {
            return Ok(previous);
        }
        let delivery = self
            .deliveries
            .retry(&mut tx.conn(), &req.name, now)
            .await?;
        if let Some(key) = &key {
            key.save(&mut tx.conn(), &delivery, now).await?;
        }
        tx.commit().await?;
        self.deliveries.wake();
        Ok(delivery)
    }

    /// The webhook of a delivery's name, as the caller may see it (a
    /// client's key sees its own account's only).
    async fn visible_webhook_of(&self, ctx: &Ctx, delivery: &str) -> Result<Webhook> {
        let ids = concierge_common::names::parse("name", delivery, &["webhooks", "deliveries"])?;
        let webhook = format!("webhooks/{}", ids[0]);
        self.get(ctx, &webhook).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::NotFound {
                resource_type: "WebhookDelivery",
                name: delivery.to_string(),
            },
            other => other,
        })
    }
}
