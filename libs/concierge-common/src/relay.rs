//! The outbox relay: moves committed events from a service's outbox to the
//! bus, at least once. NATS JetStream in production (one stream per domain,
//! the event type as subject, the event id as `Nats-Msg-Id` so the stream
//! drops the duplicates a crash between publish and mark can cause); the
//! durable local log of `concierge dev` ([`LocalBus`]) otherwise.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use prost::Message;
use tokio::sync::Notify;

use crate::error::{Error, Result};
pub use crate::local_bus::LocalBus;
use crate::outbox;
use crate::storage::Db;
use concierge_proto::events::Event;

/// Where events go.
#[derive(Clone)]
pub enum Bus {
    JetStream(JetStreamBus),
    Local(LocalBus),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::JetStream(b) => write!(f, "JetStream({})", b.0.stream),
            Bus::Local(_) => f.write_str("Local"),
        }
    }
}

/// A domain's JetStream stream.
#[derive(Clone)]
pub struct JetStreamBus(Arc<JetStreamInner>);

struct JetStreamInner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
}

/// The stream of a domain: "customers" → CONCIERGE_CUSTOMERS over
/// `concierge.customers.v1.>`.
pub fn stream_name(source: &str) -> String {
    format!(
        "CONCIERGE_{}",
        source.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

impl JetStreamBus {
    /// Connects and makes sure the domain's stream exists, with a two-minute
    /// duplicate window for the relay's retries.
    pub async fn connect(url: &str, source: &str) -> Result<Self> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| Error::Unavailable(format!("NATS at {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        let stream = stream_name(source);
        ensure_stream(&js, source).await?;
        Ok(Self(Arc::new(JetStreamInner { client, js, stream })))
    }

    /// Connects to NATS for reading other domains' streams.
    pub async fn connect_reader(url: &str) -> Result<Self> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| Error::Unavailable(format!("NATS at {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        Ok(Self(Arc::new(JetStreamInner {
            client,
            js,
            stream: String::new(),
        })))
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.0.js
    }

    async fn publish(&self, events: &[Event]) -> Result<()> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let message = PublishMessage::build()
                .payload(e.encode_to_vec().into())
                .message_id(&e.id);
            let ack = self
                .0
                .js
                .send_publish(e.r#type.clone(), message)
                .await
                .map_err(|err| Error::Unavailable(format!("publishing {}: {err}", e.id)))?;
            acks.push(ack);
        }
        // Publish all, then wait for the acks: one round trip per batch.
        for ack in acks {
            ack.await
                .map_err(|err| Error::Unavailable(format!("JetStream ack: {err}")))?;
        }
        Ok(())
    }
}

/// How long a domain's stream keeps events: long enough for any consumer
/// to catch up after an outage, and the window a subscriber may resume in.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Makes sure `source`'s stream exists (the producer's relay and every
/// consumer of it may start first) and returns it.
pub async fn ensure_stream(
    js: &jetstream::Context,
    source: &str,
) -> Result<jetstream::stream::Stream> {
    let stream = stream_name(source);
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("concierge.{source}.v1.>")],
        duplicate_window: Duration::from_secs(120),
        max_age: RETENTION,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Unavailable(format!("JetStream stream {stream}: {e}")))
}

impl Bus {
    /// Whether the bus can take events now (NATS reconnects by itself after
    /// an outage; meanwhile events wait in the outbox).
    pub fn connected(&self) -> bool {
        match self {
            Bus::JetStream(b) => {
                b.0.client.connection_state() == async_nats::connection::State::Connected
            }
            Bus::Local(_) => true,
        }
    }

    /// Publishes events as they are; the relay is the normal caller.
    pub async fn publish(&self, events: &[Event]) -> Result<()> {
        match self {
            Bus::JetStream(b) => b.publish(events).await,
            Bus::Local(log) => log.publish(events).await,
        }
    }
}

/// Publishes up to `limit` pending events and marks them published, in one
/// transaction: a failed publish leaves them pending for the next round.
///
/// On SQLite (one process, one relay per database) the pending events are
/// read without a write transaction and marked in a short one after the
/// publish: holding SQLite's one write turn across a publish would stall
/// every request's write behind the bus, and an empty poll would take it for
/// nothing. A crash between the publish and the mark publishes them again,
/// which at-least-once delivery allows.
pub async fn relay_once(db: &Db, bus: &Bus, limit: i64, now_micros: i64) -> Result<usize> {
    let mut locked = match db.dialect() {
        crate::storage::Dialect::Sqlite => None,
        crate::storage::Dialect::Postgres => Some(db.begin().await?),
    };
    let pending = match &mut locked {
        Some(tx) => outbox::pending(&mut tx.conn(), limit).await?,
        None => outbox::pending(&mut db.acquire().await?.conn(), limit).await?,
    };
    if pending.is_empty() {
        return Ok(0);
    }
    let events: Vec<Event> = pending.iter().map(|p| p.event.clone()).collect();
    bus.publish(&events).await?;
    let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
    let mut tx = match locked {
        Some(tx) => tx,
        None => db.begin().await?,
    };
    outbox::mark_published(&mut tx.conn(), &seqs, now_micros).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Wakes the relay right after a commit, so events leave at once rather than
/// at the next poll.
#[derive(Debug, Clone, Default)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    pub fn poke(&self) {
        self.0.notify_one();
    }
}

/// Where a relay publishes (and consumers read): a bus at hand
/// (`concierge dev`'s local log), or NATS to connect to in the background.
#[derive(Debug, Clone)]
pub enum BusTarget {
    Ready(Bus),
    /// A NATS URL, e.g. `nats://nats:4222`.
    Nats(String),
}

/// Connects to JetStream at `url`, retrying with a bounded backoff for as
/// long as it takes: a service starts, serves and keeps its events in the
/// outbox during a NATS outage, rather than exiting (and crash-looping).
pub async fn connect_with_backoff(url: &str, source: &str) -> JetStreamBus {
    let bus = retry_connect(url, source, || JetStreamBus::connect(url, source)).await;
    tracing::info!(source, url, "connected to the event bus");
    bus
}

/// [`JetStreamBus::connect_reader`], retried the same way: a consumer waits
/// for the bus rather than failing its service.
pub async fn connect_reader_with_backoff(url: &str) -> JetStreamBus {
    retry_connect(url, "", || JetStreamBus::connect_reader(url)).await
}

async fn retry_connect<F, Fut>(url: &str, source: &str, mut connect: F) -> JetStreamBus
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<JetStreamBus>>,
{
    let backoff = crate::supervise::Backoff::default();
    let mut failures = 0u32;
    loop {
        match connect().await {
            Ok(bus) => {
                if !source.is_empty() {
                    metrics::gauge!("concierge_bus_connected", "source" => source.to_string())
                        .set(1.0);
                }
                return bus;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff.delay(failures);
                // A reader (a consumer, the gateway) has no outbox of its own
                // to report on.
                if !source.is_empty() {
                    metrics::gauge!("concierge_bus_connected", "source" => source.to_string())
                        .set(0.0);
                }
                tracing::warn!(
                    source,
                    url,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "the event bus is unreachable; events wait in the outbox until it answers"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A relay's whole life, for a supervisor: connect to the bus, then relay
/// until the process ends. It ends only by panicking.
pub async fn run(
    db: Db,
    target: BusTarget,
    source: &'static str,
    clock: crate::clock::SharedClock,
    nudge: Nudge,
    poll: Duration,
) -> anyhow::Result<()> {
    let bus = match target {
        BusTarget::Ready(bus) => bus,
        BusTarget::Nats(url) => {
            // While the bus is out of reach the backlog is what grows:
            // report it meanwhile, not only once connected.
            let connecting = connect_with_backoff(&url, source);
            tokio::pin!(connecting);
            loop {
                report_backlog(&db, source).await;
                tokio::select! {
                    bus = &mut connecting => break Bus::JetStream(bus),
                    _ = tokio::time::sleep(poll) => {},
                }
            }
        }
    };
    relay_forever(db, bus, source, clock, nudge, poll).await;
}

/// Sets `concierge_outbox_backlog{source}` to the events waiting in the
/// outbox (at most [`outbox::BACKLOG_COUNT_LIMIT`]: past it the gauge says
/// "that many or more"). A failed count leaves the last value: the relay's own failure is
/// what gets logged.
async fn report_backlog(db: &Db, source: &'static str) {
    let counted = async {
        let mut pooled = db.acquire().await?;
        outbox::backlog(&mut pooled.conn()).await
    };
    if let Ok(n) = counted.await {
        metrics::gauge!("concierge_outbox_backlog", "source" => source).set(n as f64);
    }
}

/// Runs the relay until the process ends: after every nudge, and every
/// `poll` in case a nudge was missed (another replica's commit, a restart).
pub fn spawn(
    db: Db,
    bus: Bus,
    clock: crate::clock::SharedClock,
    nudge: Nudge,
    poll: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        relay_forever(db, bus, "", clock, nudge, poll).await;
    })
}

async fn relay_forever(
    db: Db,
    bus: Bus,
    source: &'static str,
    clock: crate::clock::SharedClock,
    nudge: Nudge,
    poll: Duration,
) -> ! {
    // A failed relay (the database or the bus) is retried sooner than a
    // dead worker is restarted, and at most every 10 s.
    let backoff = crate::supervise::Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(10),
        ..Default::default()
    };
    let mut failures = 0u32;
    let mut reported: Option<tokio::time::Instant> = None;
    loop {
        metrics::gauge!("concierge_bus_connected", "source" => source).set(if bus.connected() {
            1.0
        } else {
            0.0
        });
        let now = crate::clock::to_micros(clock.now());
        let relayed = relay_once(&db, &bus, 500, now).await;
        // A pass follows every committed write: the backlog is counted when
        // the outbox is drained (cheap then) and otherwise at most every
        // `poll`, not once per write or per batch of a long drain.
        let drained = matches!(relayed, Ok(0));
        if drained || reported.is_none_or(|at| at.elapsed() >= poll) {
            report_backlog(&db, source).await;
            reported = Some(tokio::time::Instant::now());
        }
        match relayed {
            Ok(n) if n > 0 => {
                metrics::counter!("concierge_outbox_relayed_total").increment(n as u64);
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                tracing::warn!(error = %e, "relaying events failed; retrying");
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff.delay(failures)).await;
                continue;
            }
        }
        tokio::select! {
            _ = nudge.0.notified() => {},
            _ = tokio::time::sleep(poll) => {},
        }
    }
}
