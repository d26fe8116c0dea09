//! Webhook deliveries: events reach receivers signed, at least once.
//!
//! One consumer per domain stream matches each event against the active
//! webhooks and queues a delivery for each match, in the inbox transaction
//! (a redelivered event queues nothing twice; a delivery's name is derived
//! from the event id, so it cannot be queued twice either). Each pending
//! delivery is a timer; whichever gateway replica claims it POSTs the event
//! and records the attempt, in the transaction that completes the timer.
//!
//! Each POST carries the event in proto3 JSON and `Concierge-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. A failed attempt
//! is tried again after 10 s, doubling to 1 h, with up to a quarter of
//! jitter, until the webhook's `max_attempts`; then the delivery is FAILED
//! (retryable by hand). After [`DISABLE_AFTER`] deliveries given up in a
//! row the webhook is DISABLED until resumed. Every address a receiver's
//! name resolves to is checked on every attempt (production refuses
//! addresses inside the company), and redirects are not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{self, SharedClock, to_micros};
use concierge_common::crud::{Ctx, Store, strip_meta};
use concierge_common::error::{Error, Result};
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::on_conn;
use concierge_common::resource::{self, Stored};
use concierge_common::storage::Conn;
use concierge_common::timers;
use concierge_proto::catalogue::gateway as events;
use concierge_proto::concierge::gateway::v1::{
    Webhook, WebhookAttempt, WebhookDelivery, webhook, webhook_delivery,
};
use concierge_proto::events::Event;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::webhooks::{DELIVERIES, RULES, Rules, Targets, WEBHOOKS, matches, public_address};

/// The timer kind of a pending delivery.
const KIND: &str = "webhook_delivery";
/// Deliveries given up in a row before a webhook is disabled.
pub const DISABLE_AFTER: i32 = 5;
/// Attempts per delivery when the webhook says 0.
pub const DEFAULT_ATTEMPTS: i32 = 8;
/// Time allowed per attempt when the webhook says 0.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts: from 10 s, doubling to 1 h, with jitter (the
/// kit's backoff, as every retry in the suite).
const RETRY: concierge_common::supervise::Backoff = concierge_common::supervise::Backoff {
    min: Duration::from_secs(10),
    max: Duration::from_secs(3600),
    stable: Duration::ZERO,
};
/// How much of a receiver's answer is kept for diagnosis.
const ERROR_KEPT: usize = 500;
/// How long a finished delivery (succeeded or given up) is kept: as long as
/// the streams keep its event, so a hand retry always has one to send.
pub const KEPT: Duration = concierge_common::relay::RETENTION;

/// The webhooks' delivery machinery of one gateway.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    http: reqwest::Client,
    wake: Notify,
    json: prost_reflect::DescriptorPool,
    owner: String,
}

/// Resolves a receiver's name and refuses it when any address is inside
/// the company (production), on every connection: a name re-pointed after
/// the webhook was checked is caught here.
struct Guarded;

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !public_address(a.ip())) {
                return Err(
                    format!("{host} resolves inside the company's network: refused").into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The event as a receiver gets it.
fn event_json(pool: &prost_reflect::DescriptorPool, event: &Event) -> Result<Vec<u8>> {
    let descriptor = pool
        .get_message_by_name("concierge.events.v1.Event")
        .ok_or_else(|| Error::internal(anyhow::anyhow!("no descriptor for Event")))?;
    let dynamic =
        prost_reflect::DynamicMessage::decode(descriptor, event.encode_to_vec().as_slice())
            .map_err(Error::internal)?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(
            &mut ser,
            &prost_reflect::SerializeOptions::new().stringify_64_bit_integers(false),
        )
        .map_err(Error::internal)?;
    Ok(out)
}

/// The `Concierge-Signature` header of `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before the attempt after `failed` failed ones.
fn retry_after(failed: i32) -> Duration {
    RETRY.delay(u32::try_from(failed).unwrap_or(0))
}

/// A delivery's name: its webhook and the event, so one event is queued to
/// one webhook once.
fn delivery_name(webhook: &str, event_id: &str) -> String {
    let id: String = event_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("{webhook}/deliveries/e{id}")
}

impl Deliveries {
    pub fn new(store: Store, targets: Targets) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Concierge-Webhooks/1");
        if targets == Targets::Public {
            http = http.dns_resolver(Arc::new(Guarded));
        }
        let http = http
            .build()
            .map_err(|e| Error::internal(anyhow::anyhow!("the webhook HTTP client: {e}")))?;
        let json = prost_reflect::DescriptorPool::decode(concierge_proto::FILE_DESCRIPTOR_SET)
            .map_err(Error::internal)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                http,
                wake: Notify::new(),
                json,
                owner: format!("gateway-{}", uuid::Uuid::new_v4()),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Wakes the delivery worker (a delivery was queued).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Queues `event` for `w` in the transaction behind `conn`; an event
    /// already queued for it is left as it is.
    pub async fn queue(
        &self,
        conn: &mut Conn<'_>,
        w: &Webhook,
        event: &Event,
        now: i64,
    ) -> Result<WebhookDelivery> {
        let d = WebhookDelivery {
            name: delivery_name(&w.name, &event.id),
            event_id: event.id.clone(),
            event_type: event.r#type.clone(),
            event_subject: event.subject.clone(),
            state: webhook_delivery::State::Pending as i32,
            next_attempt_time: clock::micros_to_proto(now),
            create_time: clock::micros_to_proto(now),
            ..Default::default()
        };
        let stored = Stored {
            name: d.name.clone(),
            parent: w.name.clone(),
            account: w.account.clone(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: strip_meta::<WebhookDelivery, Rules>(&d),
        };
        let columns = <WebhookDelivery as concierge_common::crud::Resource<Rules>>::columns(&d);
        // Looked up rather than caught: on PostgreSQL a failed insert would
        // abort the whole transaction, the other webhooks' deliveries with it.
        if let Some(queued) = resource::get(conn, &DELIVERIES, &d.name).await? {
            return Store::decode::<WebhookDelivery, Rules>(&queued);
        }
        resource::insert(conn, &DELIVERIES, &stored, &columns).await?;
        on_conn!(conn, c => sqlx::query("UPDATE webhook_deliveries SET event = $1 WHERE name = $2")
            .bind(event.encode_to_vec())
            .bind(&d.name)
            .execute(&mut **c)
            .await?
            .rows_affected());
        timers::arm(conn, &d.name, KIND, &w.name, clock::from_micros(now), &[]).await?;
        Ok(d)
    }

    /// Puts a FAILED delivery back in line as a new series of attempts.
    pub async fn retry(
        &self,
        conn: &mut Conn<'_>,
        name: &str,
        now: i64,
    ) -> Result<WebhookDelivery> {
        let stored = resource::get_for_update(conn, &DELIVERIES, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: "WebhookDelivery",
                name: name.to_string(),
            })?;
        let mut d: WebhookDelivery = Store::decode::<WebhookDelivery, Rules>(&stored)?;
        if d.state != webhook_delivery::State::Failed as i32 {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::IllegalTransition,
                subject: name.to_string(),
                description: format!("{name} has not failed: only a FAILED delivery is retried"),
            });
        }
        d.state = webhook_delivery::State::Pending as i32;
        d.attempt_count = 0;
        d.complete_time = None;
        d.next_attempt_time = clock::micros_to_proto(now);
        write_delivery(conn, &stored, &d, now).await?;
        timers::arm(
            conn,
            name,
            KIND,
            &stored.parent,
            clock::from_micros(now),
            &[],
        )
        .await?;
        Ok(d)
    }

    /// Forgets deliveries finished longer than [`KEPT`] before `now`, at
    /// most `limit` at once; how many it forgot.
    pub async fn purge(&self, now: i64, limit: i64) -> Result<u64> {
        let cutoff = now.saturating_sub(KEPT.as_micros() as i64);
        let mut tx = self.inner.store.db().begin().await?;
        let n = on_conn!(&mut tx.conn(), c => sqlx::query(
            "DELETE FROM webhook_deliveries WHERE name IN (SELECT name FROM webhook_deliveries \
             WHERE state IN ($1, $2) AND update_time < $3 LIMIT $4)")
            .bind(webhook_delivery::State::Succeeded as i64)
            .bind(webhook_delivery::State::Failed as i64)
            .bind(cutoff)
            .bind(limit)
            .execute(&mut **c)
            .await?
            .rows_affected());
        tx.commit().await?;
        Ok(n)
    }

    /// Forgets old finished deliveries every hour, in bounded batches,
    /// until the process ends.
    pub async fn purge_forever(self, clock: SharedClock) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            loop {
                match self.purge(to_micros(clock.now()), 1000).await {
                    Ok(1000) => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(deliveries = n, "forgot finished webhook deliveries");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purging webhook deliveries failed");
                        break;
                    }
                }
            }
        }
    }

    /// Delivers due deliveries until the process ends.
    pub async fn run(self, clock: SharedClock, poll: Duration) -> anyhow::Result<()> {
        loop {
            let now = clock.now();
            let lease = jiff::SignedDuration::from_secs(75);
            let claimed =
                timers::claim_due(self.inner.store.db(), now, &self.inner.owner, lease, 32).await;
            match claimed {
                Ok(claimed) => {
                    let due: Vec<_> = claimed.into_iter().filter(|t| t.kind == KIND).collect();
                    let busy = !due.is_empty();
                    let attempts = due.iter().map(|t| self.attempt(t, &clock));
                    for outcome in futures::future::join_all(attempts).await {
                        if let Err(e) = outcome {
                            tracing::warn!(error = %e, "recording a webhook attempt failed; it is tried again");
                        }
                    }
                    if busy {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {},
                _ = tokio::time::sleep(poll) => {},
            }
        }
    }

    /// One attempt of one delivery, recorded with the timer's completion.
    async fn attempt(&self, timer: &timers::Claimed, clock: &SharedClock) -> Result<()> {
        let db = self.inner.store.db();
        let (delivery, event, hook) = {
            let mut pooled = db.acquire().await?;
            let mut conn = pooled.conn();
            let delivery = resource::get(&mut conn, &DELIVERIES, &timer.id).await?;
            let event: Option<Vec<u8>> = on_conn!(&mut conn, c => sqlx::query_scalar(
                "SELECT event FROM webhook_deliveries WHERE name = $1")
                .bind(&timer.id)
                .fetch_optional(&mut **c)
                .await?);
            let hook = resource::get(&mut conn, &WEBHOOKS, &timer.subject).await?;
            (delivery, event, hook)
        };
        let (Some(_), Some(event)) = (delivery, event) else {
            // Gone with its webhook: nothing to deliver.
            let mut tx = db.begin().await?;
            timers::complete(&mut tx, &self.inner.owner, timer).await?;
            return tx.commit().await;
        };
        let hook: Option<Webhook> = hook
            .filter(|s| s.delete_time == 0)
            .map(|s| Store::decode::<Webhook, Rules>(&s))
            .transpose()?;
        let started = std::time::Instant::now();
        let at = clock.now();
        let (attempt, succeeded) = match &hook {
            Some(w) if w.state == webhook::State::Active as i32 => {
                let event = Event::decode(event.as_slice()).map_err(Error::internal)?;
                self.post(w, &event, at).await
            }
            Some(w) => (
                format!(
                    "the webhook is {}: resume it, then retry the delivery",
                    crate::webhooks::state_word(w.state)
                ),
                false,
                0,
            ),
            None => ("the webhook was deleted".to_string(), false, 0),
        }
        .into_attempt(at, started.elapsed());
        let final_attempt = match &hook {
            Some(w) if w.state == webhook::State::Active as i32 => None,
            _ => Some(()),
        };

        let now = to_micros(clock.now());
        let mut tx = db.begin().await?;
        if !timers::complete(&mut tx, &self.inner.owner, timer).await? {
            // Another replica took it over: its attempt is the one recorded.
            return Ok(());
        }
        let mut conn = tx.conn();
        let Some(stored) = resource::get_for_update(&mut conn, &DELIVERIES, &timer.id).await?
        else {
            return tx.commit().await;
        };
        let mut d: WebhookDelivery = Store::decode::<WebhookDelivery, Rules>(&stored)?;
        d.attempt_count = d.attempt_count.saturating_add(1);
        d.attempts.push(attempt.clone());
        // The newest attempts are what a diagnosis needs; keep a bounded list.
        if d.attempts.len() > 50 {
            d.attempts.remove(0);
        }
        let max = hook
            .as_ref()
            .map(|w| {
                if w.max_attempts > 0 {
                    w.max_attempts
                } else {
                    DEFAULT_ATTEMPTS
                }
            })
            .unwrap_or(1);
        let ctx = Ctx::system("gateway-webhooks", "");
        let store = &self.inner.store;
        let outcome = if succeeded {
            d.state = webhook_delivery::State::Succeeded as i32;
            d.complete_time = clock::micros_to_proto(now);
            d.next_attempt_time = None;
            Some(events::WEBHOOK_DELIVERY_SUCCEEDED)
        } else if final_attempt.is_some() || d.attempt_count >= max {
            d.state = webhook_delivery::State::Failed as i32;
            d.complete_time = clock::micros_to_proto(now);
            d.next_attempt_time = None;
            Some(events::WEBHOOK_DELIVERY_FAILED)
        } else {
            let next = clock::from_micros(now)
                .checked_add(retry_after(d.attempt_count))
                .unwrap_or(clock::from_micros(now));
            d.state = webhook_delivery::State::Retrying as i32;
            d.next_attempt_time = Some(clock::to_proto(next));
            timers::arm(&mut conn, &d.name, KIND, &stored.parent, next, &[]).await?;
            None
        };
        write_delivery(&mut conn, &stored, &d, now).await?;
        if let Some(event) = outcome {
            d.create_time = clock::micros_to_proto(stored.create_time);
            store
                .record(&RULES, &mut conn, &ctx, event, &d, now)
                .await?;
            if let Some(w) = &hook {
                self.count(&mut conn, &ctx, &w.name, succeeded, now).await?;
            }
        }
        tx.commit().await?;
        store.nudge();
        metrics::counter!("concierge_webhook_attempts_total", "outcome" => if succeeded { "succeeded" } else { "failed" }).increment(1);
        Ok(())
    }

    /// Keeps a webhook's run of failures and its last success; disables it
    /// after [`DISABLE_AFTER`] deliveries given up in a row.
    async fn count(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        name: &str,
        succeeded: bool,
        now: i64,
    ) -> Result<()> {
        let Some(stored) = resource::get_for_update(conn, &WEBHOOKS, name).await? else {
            return Ok(());
        };
        let mut w: Webhook = Store::decode::<Webhook, Rules>(&stored)?;
        let disable;
        if succeeded {
            w.consecutive_failure_count = 0;
            w.last_success_time = clock::micros_to_proto(now);
            disable = false;
        } else {
            w.consecutive_failure_count = w.consecutive_failure_count.saturating_add(1);
            disable = w.consecutive_failure_count >= DISABLE_AFTER
                && w.state == webhook::State::Active as i32;
        }
        let body = strip_meta::<Webhook, Rules>(&w);
        if !disable {
            // Derived counters, not a change a person made: no new etag.
            let columns = <Webhook as concierge_common::crud::Resource<Rules>>::columns(&w);
            resource::update_derived(conn, &WEBHOOKS, name, stored.revision, &body, &columns)
                .await?;
            return Ok(());
        }
        w.state = webhook::State::Disabled as i32;
        let next = Stored {
            body: strip_meta::<Webhook, Rules>(&w),
            revision: stored.revision + 1,
            update_time: now,
            ..stored.clone()
        };
        let columns = <Webhook as concierge_common::crud::Resource<Rules>>::columns(&w);
        resource::update(conn, &WEBHOOKS, &next, stored.revision, &columns).await?;
        w.update_time = clock::micros_to_proto(now);
        w.etag = resource::etag(next.revision);
        tracing::warn!(
            webhook = name,
            "webhook disabled after {DISABLE_AFTER} deliveries failed in a row"
        );
        self.inner
            .store
            .record(&RULES, conn, ctx, events::WEBHOOK_UPDATED, &w, now)
            .await
    }

    /// POSTs `event` to `w`; what happened, and whether it was a 2xx.
    async fn post(&self, w: &Webhook, event: &Event, at: jiff::Timestamp) -> (String, bool, i32) {
        let body = match event_json(&self.inner.json, event) {
            Ok(b) => b,
            Err(e) => return (format!("encoding the event: {e}"), false, 0),
        };
        let timeout = w
            .attempt_timeout
            .as_ref()
            .filter(|d| d.seconds > 0 || d.nanos > 0)
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
            .unwrap_or(DEFAULT_TIMEOUT);
        let sent = self
            .inner
            .http
            .post(&w.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header(
                "concierge-signature",
                signature(&w.secret, at.as_second(), &body),
            )
            .header("concierge-event-id", &event.id)
            .header("concierge-event-type", &event.r#type)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = i32::from(status.as_u16());
                if status.is_success() {
                    (String::new(), true, code)
                } else {
                    // Only the start of the answer is kept: read no more of
                    // it than that, whatever the receiver sends.
                    let mut response = response;
                    let mut head = Vec::with_capacity(ERROR_KEPT);
                    while head.len() < ERROR_KEPT {
                        match response.chunk().await {
                            Ok(Some(chunk)) => head.extend_from_slice(
                                &chunk[..chunk.len().min(ERROR_KEPT - head.len())],
                            ),
                            _ => break,
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    (text.chars().take(ERROR_KEPT).collect(), false, code)
                }
            }
            Err(e) => {
                use std::error::Error as _;
                let mut why = e.to_string();
                let mut source = e.source();
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                (why.chars().take(ERROR_KEPT).collect(), false, 0)
            }
        }
    }
}

/// An attempt's record from what [`Deliveries::post`] saw.
trait IntoAttempt {
    fn into_attempt(self, at: jiff::Timestamp, took: Duration) -> (WebhookAttempt, bool);
}

impl IntoAttempt for (String, bool, i32) {
    fn into_attempt(self, at: jiff::Timestamp, took: Duration) -> (WebhookAttempt, bool) {
        let (error, ok, status) = self;
        (
            WebhookAttempt {
                attempt_time: Some(clock::to_proto(at)),
                http_status: status,
                error,
                latency: prost_types::Duration::try_from(took).ok(),
            },
            ok,
        )
    }
}

async fn write_delivery(
    conn: &mut Conn<'_>,
    stored: &Stored,
    d: &WebhookDelivery,
    now: i64,
) -> Result<()> {
    let next = Stored {
        body: strip_meta::<WebhookDelivery, Rules>(d),
        revision: stored.revision + 1,
        update_time: now,
        ..stored.clone()
    };
    let columns = <WebhookDelivery as concierge_common::crud::Resource<Rules>>::columns(d);
    resource::update(conn, &DELIVERIES, &next, stored.revision, &columns).await
}

/// Matches one domain's events against the active webhooks.
pub struct Matcher {
    pub deliveries: Deliveries,
    pub source: &'static str,
    pub name: &'static str,
}

impl Matcher {
    pub fn new(deliveries: Deliveries, source: &'static str) -> Self {
        Self {
            deliveries,
            source,
            name: Box::leak(format!("gateway-webhooks-{source}").into_boxed_str()),
        }
    }
}

/// An active webhook as the matcher sees it.
pub struct Active {
    pub webhook: Webhook,
    /// Made by a client principal: its account's public events only.
    pub public_only: bool,
    /// When it was created or last resumed (microseconds): it delivers the
    /// events that occur while it is active.
    pub active_since: i64,
}

/// The active webhooks.
async fn active(conn: &mut Conn<'_>) -> Result<Vec<Active>> {
    let rows: Vec<(Vec<u8>, i64, i64)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT body, public_only, active_since FROM webhooks WHERE delete_time = 0 AND state = $1")
        .bind(webhook::State::Active as i64)
        .fetch_all(&mut **c)
        .await?);
    rows.into_iter()
        .map(|(body, public_only, active_since)| {
            Ok(Active {
                webhook: Webhook::decode(body.as_slice()).map_err(Error::internal)?,
                public_only: public_only != 0,
                active_since,
            })
        })
        .collect()
}

/// Whether `a` takes `event`.
pub fn takes(a: &Active, event: &Event) -> bool {
    let occurred = event
        .occur_time
        .as_ref()
        .and_then(clock::from_proto)
        .map(to_micros)
        .unwrap_or(i64::MAX);
    let (w, public_only) = (&a.webhook, a.public_only);
    occurred >= a.active_since
        && matches(&w.event_types, &event.r#type)
        && (w.account.is_empty() || w.account == event.account)
        && (!public_only
            || (event.visibility == concierge_proto::events::Visibility::Public as i32
                && event.account == w.account))
}

impl Consumer for Matcher {
    fn subscription(&self) -> Subscription {
        Subscription::new(self.name, self.source, &[])
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let db = self.deliveries.store().db();
        let hooks = {
            let mut pooled = db.acquire().await?;
            active(&mut pooled.conn()).await?
        };
        let taking: Vec<&Webhook> = hooks
            .iter()
            .filter(|a| takes(a, event))
            .map(|a| &a.webhook)
            .collect();
        if taking.is_empty() {
            return Ok(());
        }
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let now = self.deliveries.store().now();
        for w in taking {
            self.deliveries.queue(&mut tx.conn(), w, event, now).await?;
        }
        tx.commit().await?;
        self.deliveries.wake();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed apart, with Python's hmac module.
        assert_eq!(
            signature("secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn retries_double_from_ten_seconds_to_an_hour_with_jitter() {
        for (failed, base) in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)] {
            let wait = retry_after(failed).as_secs_f64();
            let base = base as f64;
            assert!(
                wait <= base && wait >= base * 0.75,
                "{failed}: {wait} of {base}"
            );
        }
    }

    #[test]
    fn a_client_webhook_takes_its_accounts_public_events_only() {
        let active = |public_only| Active {
            webhook: Webhook {
                event_types: vec!["concierge.cases.v1.*".into()],
                account: "accounts/acme".into(),
                ..Default::default()
            },
            public_only,
            active_since: 1_000_000,
        };
        let e = |account: &str, visibility: concierge_proto::events::Visibility, at: i64| Event {
            r#type: "concierge.cases.v1.note_created".into(),
            account: account.into(),
            visibility: visibility as i32,
            occur_time: clock::micros_to_proto(at),
            ..Default::default()
        };
        use concierge_proto::events::Visibility::*;
        let (client, staff) = (active(true), active(false));
        assert!(takes(&client, &e("accounts/acme", Public, 2_000_000)));
        assert!(!takes(&client, &e("accounts/acme", Internal, 2_000_000)));
        assert!(!takes(&client, &e("accounts/globex", Public, 2_000_000)));
        assert!(takes(&staff, &e("accounts/acme", Internal, 2_000_000)));
        assert!(
            !takes(&staff, &e("accounts/acme", Public, 999_999)),
            "an event of before it was active"
        );
    }
}
