//! Consumers of other services' events: a durable subscription (a
//! JetStream durable pull consumer in production, a named position in the
//! local log of `concierge dev`) that catches up on what it missed while
//! down, an inbox that makes at-least-once delivery take effect once, and a
//! dead-letter record for an event a consumer cannot handle.
//!
//! A consumer's effect and its inbox row commit in one transaction
//! ([`Inbox::begin`]): a redelivered event (a crash before the ack, a
//! restart mid-stream) finds the row and changes nothing.
//!
//! A failed delivery is tried again with a growing wait. An outage (the
//! database, a peer: UNAVAILABLE) is waited out for as long as it lasts and
//! never dead-letters an event; any other failure does, on the subscription's
//! last delivery, so that one bad event does not stop the ones behind it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use prost::Message;

use crate::clock::{SharedClock, to_micros};
use crate::error::{Error, Result};
use crate::local_bus::LocalBus;
use crate::on_conn;
use crate::relay::{self, Bus, BusTarget};
use crate::storage::{Db, Tx};
use crate::supervise::{Backoff, Need, Supervisor};
use concierge_proto::events::Event;

/// What a consumer reads.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The durable name, unique in the suite: "<service>-<purpose>", e.g.
    /// "cases-account-handover". Its position is kept under this name.
    pub name: &'static str,
    /// The producing domain, e.g. "customers".
    pub source: &'static str,
    /// The exact event types it handles; empty for every event of `source`.
    pub event_types: Vec<String>,
    /// Deliveries of one event before a failure that is not an outage
    /// dead-letters it.
    pub max_deliveries: u32,
    /// The wait before each redelivery, growing with the failures.
    pub retry: Backoff,
}

impl Subscription {
    /// A subscription with the default redelivery: 8 deliveries, waiting
    /// 1 s, 2 s, 4 s … up to 5 minutes between them.
    pub fn new(name: &'static str, source: &'static str, event_types: &[&str]) -> Self {
        Self {
            name,
            source,
            event_types: event_types.iter().map(|t| t.to_string()).collect(),
            max_deliveries: 8,
            retry: Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(300),
                stable: Duration::ZERO,
            },
        }
    }
}

/// A consumer of events.
pub trait Consumer: Send + Sync + 'static {
    fn subscription(&self) -> Subscription;

    /// Takes effect for `event`: reads what it needs (peers included), then
    /// writes the effect in the transaction [`Inbox::begin`] opens and
    /// commits it. Returning without beginning is fine for an event that
    /// calls for nothing.
    fn handle(&self, event: &Event, inbox: Inbox<'_>) -> impl Future<Output = Result<()>> + Send;
}

/// The inbox of one consumer for one event.
pub struct Inbox<'a> {
    db: &'a Db,
    consumer: &'a str,
    event_id: &'a str,
    now: i64,
}

impl Inbox<'_> {
    /// Begins the transaction of the effect with the event recorded in it,
    /// or `None` when the event already took effect (a redelivery).
    pub async fn begin(self) -> Result<Option<Tx>> {
        let mut tx = self.db.begin().await?;
        let fresh = record(&mut tx, self.consumer, self.event_id, self.now).await?;
        Ok(fresh.then_some(tx))
    }
}

async fn record(tx: &mut Tx, consumer: &str, event_id: &str, now: i64) -> Result<bool> {
    let n = on_conn!(&mut tx.conn(), c => {
        sqlx::query(
            "INSERT INTO inbox (consumer, event_id, receive_time) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(consumer)
        .bind(event_id)
        .bind(now)
        .execute(&mut **c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Whether `consumer` already took effect for `event_id` (or gave up on it).
pub async fn seen(db: &Db, consumer: &str, event_id: &str) -> Result<bool> {
    let mut pooled = db.acquire().await?;
    let found: Option<String> = on_conn!(&mut pooled.conn(), c => {
        sqlx::query_scalar("SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id)
            .fetch_optional(&mut **c)
            .await?
    });
    Ok(found.is_some())
}

/// An event a consumer gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub consumer: String,
    pub event: Event,
    pub deliveries: u32,
    pub error: String,
    pub create_time: i64,
}

/// The dead letters of `consumer`, oldest first, at most `limit`.
pub async fn dead_letters(db: &Db, consumer: &str, limit: i64) -> Result<Vec<DeadLetter>> {
    let mut pooled = db.acquire().await?;
    let rows: Vec<(String, i64, String, Vec<u8>, i64)> = on_conn!(&mut pooled.conn(), c => {
        sqlx::query_as(
            "SELECT consumer, deliveries, error, event, create_time FROM dead_letters \
             WHERE consumer = $1 ORDER BY create_time, event_id LIMIT $2",
        )
        .bind(consumer)
        .bind(limit)
        .fetch_all(&mut **c)
        .await?
    });
    rows.into_iter()
        .map(|(consumer, deliveries, error, body, create_time)| {
            Ok(DeadLetter {
                consumer,
                event: Event::decode(body.as_slice()).map_err(Error::internal)?,
                deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
                error,
                create_time,
            })
        })
        .collect()
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Took effect now, or had before.
    Done,
    /// Failed; deliver it again after this long.
    Retry(Duration),
    /// Failed on its last delivery; recorded as a dead letter.
    DeadLettered,
}

/// The longest an outage is waited out between two deliveries.
const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Delivers `event` to `consumer` for the `delivery`-th time (1 for the
/// first).
pub async fn deliver<C: Consumer>(
    db: &Db,
    consumer: &C,
    subscription: &Subscription,
    event: &Event,
    delivery: u32,
    now: i64,
) -> Outcome {
    let name = subscription.name;
    let handled = async {
        if seen(db, name, &event.id).await? {
            return Ok(());
        }
        consumer
            .handle(
                event,
                Inbox {
                    db,
                    consumer: name,
                    event_id: &event.id,
                    now,
                },
            )
            .await
    }
    .await;
    let error = match handled {
        Ok(()) => {
            metrics::counter!("concierge_events_consumed_total", "consumer" => name, "outcome" => "done")
                .increment(1);
            return Outcome::Done;
        }
        Err(e) => e,
    };
    if matches!(error, Error::Unavailable(_)) {
        let wait = subscription.retry.delay(delivery).min(OUTAGE_RETRY_MAX);
        tracing::warn!(consumer = name, event = %event.id, error = %error, retry_in_ms = wait.as_millis() as u64, "an event waits out an outage");
        metrics::counter!("concierge_events_consumed_total", "consumer" => name, "outcome" => "outage")
            .increment(1);
        return Outcome::Retry(wait);
    }
    if delivery < subscription.max_deliveries {
        let wait = subscription.retry.delay(delivery);
        tracing::warn!(consumer = name, event = %event.id, r#type = %event.r#type, delivery, error = %error, retry_in_ms = wait.as_millis() as u64, "handling an event failed; it will be delivered again");
        metrics::counter!("concierge_events_consumed_total", "consumer" => name, "outcome" => "retry")
            .increment(1);
        return Outcome::Retry(wait);
    }
    match bury(db, name, event, delivery, &error.to_string(), now).await {
        Ok(()) => {
            tracing::error!(consumer = name, event = %event.id, r#type = %event.r#type, delivery, error = %error, "gave up on an event: it is a dead letter");
            metrics::counter!("concierge_events_consumed_total", "consumer" => name, "outcome" => "dead_letter")
                .increment(1);
            Outcome::DeadLettered
        }
        Err(e) => {
            tracing::warn!(consumer = name, event = %event.id, error = %e, "recording a dead letter failed; retrying");
            Outcome::Retry(subscription.retry.delay(delivery).min(OUTAGE_RETRY_MAX))
        }
    }
}

/// Records the dead letter and marks the event seen, in one transaction.
async fn bury(
    db: &Db,
    consumer: &str,
    event: &Event,
    deliveries: u32,
    error: &str,
    now: i64,
) -> Result<()> {
    let mut tx = db.begin().await?;
    record(&mut tx, consumer, &event.id, now).await?;
    // A long message is kept to its start: enough to diagnose, bounded.
    let error: String = error.chars().take(2000).collect();
    on_conn!(&mut tx.conn(), c => {
        sqlx::query(
            "INSERT INTO dead_letters (consumer, event_id, type, subject, deliveries, error, event, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(consumer)
        .bind(&event.id)
        .bind(&event.r#type)
        .bind(&event.subject)
        .bind(i64::from(deliveries))
        .bind(&error)
        .bind(event.encode_to_vec())
        .bind(now)
        .execute(&mut **c)
        .await?
        .rows_affected()
    });
    tx.commit().await
}

/// Forgets inbox rows older than the bus's retention: no event that old can
/// be delivered again.
pub async fn purge(db: &Db, now: i64) -> Result<u64> {
    // A day more than the streams keep, for clock skew between them.
    let cutoff =
        now.saturating_sub((relay::RETENTION + Duration::from_secs(86_400)).as_micros() as i64);
    let mut tx = db.begin().await?;
    let n = on_conn!(&mut tx.conn(), c => {
        sqlx::query("DELETE FROM inbox WHERE receive_time < $1")
            .bind(cutoff)
            .execute(&mut **c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    Ok(n)
}

/// Runs `consumer` under `supervisor` against `bus` (nothing runs without
/// one), with the hourly purge of its service's old inbox rows. A consumer
/// is optional to the service's health: while the bus is out of reach the
/// service serves, and the consumer catches up once it is back.
pub fn supervise<C: Consumer>(
    supervisor: &Supervisor,
    db: &Db,
    bus: Option<&BusTarget>,
    consumer: Arc<C>,
    clock: SharedClock,
) {
    let subscription = consumer.subscription();
    let Some(bus) = bus.cloned() else {
        tracing::warn!(
            consumer = subscription.name,
            "no event bus: this consumer does not run until events.nats_url is set"
        );
        return;
    };
    let (db2, clock2) = (db.clone(), clock.clone());
    supervisor.spawn(
        format!("{}-consumer", subscription.name),
        Need::Optional,
        move || run(db2.clone(), bus.clone(), consumer.clone(), clock2.clone()),
    );
    let db = db.clone();
    supervisor.spawn(
        format!("{}-inbox-purge", subscription.name),
        Need::Optional,
        move || {
            let (db, clock) = (db.clone(), clock.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    if let Err(e) = purge(&db, to_micros(clock.now())).await {
                        tracing::warn!(error = %e, "purging the inbox failed");
                    }
                }
            }
        },
    );
}

/// A consumer's whole life: connect, then consume until the process ends.
pub async fn run<C: Consumer>(
    db: Db,
    bus: BusTarget,
    consumer: Arc<C>,
    clock: SharedClock,
) -> anyhow::Result<()> {
    match bus {
        BusTarget::Ready(Bus::Local(log)) => run_local(&db, &log, consumer.as_ref(), &clock).await,
        BusTarget::Ready(Bus::JetStream(js)) => {
            run_jetstream(&db, js.context(), consumer.as_ref(), &clock).await
        }
        BusTarget::Nats(url) => {
            let js = relay::connect_reader_with_backoff(&url).await;
            run_jetstream(&db, js.context(), consumer.as_ref(), &clock).await
        }
    }
}

async fn run_jetstream<C: Consumer>(
    db: &Db,
    js: &jetstream::Context,
    consumer: &C,
    clock: &SharedClock,
) -> anyhow::Result<()> {
    let subscription = consumer.subscription();
    let stream = relay::ensure_stream(js, subscription.source).await?;
    let durable = stream
        .create_consumer(pull::Config {
            durable_name: Some(subscription.name.to_string()),
            filter_subjects: subscription.event_types.clone(),
            ack_policy: AckPolicy::Explicit,
            // A delivery not acknowledged in time (a crash) comes again.
            ack_wait: Duration::from_secs(60),
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 256,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            Error::Unavailable(format!("JetStream consumer {}: {e}", subscription.name))
        })?;
    tracing::info!(
        consumer = subscription.name,
        "consuming events from JetStream"
    );
    let mut messages = durable.messages().await.map_err(|e| {
        Error::Unavailable(format!("JetStream consumer {}: {e}", subscription.name))
    })?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| Error::Unavailable(format!("JetStream: {e}")))?;
        let delivery = message
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
            .unwrap_or(1)
            .max(1);
        let event = match Event::decode(message.payload.as_ref()) {
            Ok(e) => e,
            Err(e) => {
                // Not an event at all: nothing will ever make it one.
                tracing::error!(consumer = subscription.name, subject = %message.subject, error = %e, "dropped a message that is not an event");
                message
                    .ack_with(AckKind::Term)
                    .await
                    .map_err(|e| anyhow::anyhow!("JetStream ack: {e}"))?;
                continue;
            }
        };
        let now = to_micros(clock.now());
        let ack = match deliver(db, consumer, &subscription, &event, delivery, now).await {
            Outcome::Done | Outcome::DeadLettered => AckKind::Ack,
            Outcome::Retry(wait) => AckKind::Nak(Some(wait)),
        };
        message
            .ack_with(ack)
            .await
            .map_err(|e| anyhow::anyhow!("JetStream ack: {e}"))?;
    }
    anyhow::bail!("the JetStream consumer {} ended", subscription.name)
}

/// How often an idle local consumer looks again without a wake-up.
const LOCAL_POLL: Duration = Duration::from_secs(5);

async fn run_local<C: Consumer>(
    db: &Db,
    log: &LocalBus,
    consumer: &C,
    clock: &SharedClock,
) -> anyhow::Result<()> {
    let subscription = consumer.subscription();
    let name = subscription.name;
    loop {
        let (position, mut attempts) = log.consumer(name).await?;
        let newest = log.last();
        let batch = log
            .read_after_of(
                position,
                Some(subscription.source),
                &subscription.event_types,
                100,
            )
            .await?;
        if batch.is_empty() {
            // Nothing of ours up to `newest`: skip past the rest.
            if newest > position {
                log.set_consumer(name, newest, 0).await?;
            }
            log.wait_after(newest.max(position), LOCAL_POLL).await;
            continue;
        }
        for logged in batch {
            loop {
                let now = to_micros(clock.now());
                let delivery = attempts.saturating_add(1);
                match deliver(db, consumer, &subscription, &logged.event, delivery, now).await {
                    Outcome::Done | Outcome::DeadLettered => {
                        log.set_consumer(name, logged.seq, 0).await?;
                        attempts = 0;
                        break;
                    }
                    Outcome::Retry(wait) => {
                        attempts = delivery;
                        log.set_consumer(name, logged.seq - 1, attempts).await?;
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
}
