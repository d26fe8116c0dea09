//! How an escalation reached the company's escalation channel: a consumer
//! of the gateway's `webhook_delivery_succeeded` and `_failed` events. The
//! channel is a gateway webhook subscribed to `escalation_raised`; when its
//! delivery of an escalation succeeds or is given up, the escalation's
//! `delivery` says so (derived: no new etag, no event of its own). A channel
//! that delivered is not undone by another that failed.

use concierge_common::crud::{Resource, Store};
use concierge_common::error::Result;
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::resource;
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::{Escalation, EscalationDelivery, escalation_delivery};
use concierge_proto::events::Event;
use concierge_proto::gateway::{WebhookDelivery, webhook_delivery};

use crate::resources::ESCALATIONS;

/// The durable name of the consumer.
pub const CONSUMER: &str = "cases-escalation-delivery";

pub struct EscalationDeliveries;

impl Consumer for EscalationDeliveries {
    fn subscription(&self) -> Subscription {
        Subscription::new(
            CONSUMER,
            "gateway",
            &[
                catalogue::gateway::WEBHOOK_DELIVERY_SUCCEEDED.event_type(),
                catalogue::gateway::WEBHOOK_DELIVERY_FAILED.event_type(),
            ],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let d: WebhookDelivery = concierge_common::outbox::unpack(event)?;
        if d.event_type != catalogue::cases::ESCALATION_RAISED.event_type() {
            return Ok(());
        }
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let mut conn = tx.conn();
        if let Some(stored) =
            resource::get_for_update(&mut conn, &ESCALATIONS, &d.event_subject).await?
        {
            let mut e: Escalation = Store::decode::<Escalation, crate::Rules>(&stored)?;
            let delivered = d.state == webhook_delivery::State::Succeeded as i32;
            let already = e.delivery.as_ref().is_some_and(|x| {
                x.state == escalation_delivery::State::Delivered as i32
                    && x.webhook_delivery != d.name
            });
            if delivered || !already {
                let last = d.attempts.last().cloned().unwrap_or_default();
                e.delivery = Some(EscalationDelivery {
                    state: if delivered {
                        escalation_delivery::State::Delivered
                    } else {
                        escalation_delivery::State::Failed
                    } as i32,
                    webhook_delivery: d.name.clone(),
                    attempt_count: d.attempt_count,
                    last_attempt_time: last.attempt_time,
                    deliver_time: if delivered { d.complete_time } else { None },
                    last_error: if delivered {
                        String::new()
                    } else if last.http_status != 0 {
                        format!("HTTP {}: {}", last.http_status, last.error)
                    } else {
                        last.error.clone()
                    },
                });
                let body = concierge_common::crud::strip_meta::<Escalation, crate::Rules>(&e);
                let columns = <Escalation as Resource<crate::Rules>>::columns(&e);
                resource::update_derived(
                    &mut conn,
                    &ESCALATIONS,
                    &e.name,
                    stored.revision,
                    &body,
                    &columns,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
