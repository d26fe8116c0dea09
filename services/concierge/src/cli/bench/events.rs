//! `concierge bench events`: how fast committed events reach JetStream and
//! a subscriber, each against the bare NATS operation in the same run.
//!
//! 1. The outbox relay draining N committed events to JetStream (read,
//!    publish with acks, mark published), on SQLite and (with
//!    --postgres-url) PostgreSQL, against a bare async-nats loop publishing
//!    the same events with the same pipelining and nothing else.
//! 2. Commit to subscriber: accounts created one at a time through the
//!    gateway, each account_created event awaited on the gateway's
//!    SubscribeEvents stream (outbox, relay, JetStream, ordered consumer,
//!    filter, gRPC); latency from the event's commit time to its arrival,
//!    against a bare NATS publish to a subscriber on the same connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::on_conn;
use concierge_common::principal::{PrincipalCodec, Role};
use concierge_common::relay::{self, Bus, BusTarget, JetStreamBus};
use concierge_common::storage::Db;
use concierge_customers::Customers;
use concierge_gateway::{Gateway, Limits, keys};
use concierge_proto::concierge::gateway::v1::SubscribeEventsRequest;
use concierge_proto::concierge::gateway::v1::subscribe_events_response::Item;
use concierge_proto::customers::{Account, CreateAccountRequest, Tier};
use concierge_proto::events::{Event, Visibility};
use futures::StreamExt;
use prost::Message;

use super::gateway::on_loopback;
use super::percentile;

fn source() -> &'static str {
    Box::leak(format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..10]).into_boxed_str())
}

/// `n` events of `source`, each carrying an account as a real one does.
fn events(source: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: uuid::Uuid::now_v7().to_string(),
            r#type: format!("concierge.{source}.v1.account_created"),
            source: source.into(),
            subject: format!("accounts/a{i}"),
            account: format!("accounts/a{i}"),
            visibility: Visibility::Public as i32,
            occur_time: Some(concierge_common::clock::to_proto(jiff::Timestamp::now())),
            actor: "system/bench".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            payload: Some(concierge_common::outbox::pack(&Account {
                name: format!("accounts/a{i}"),
                display_name: format!("Account {i} Holdings"),
                tier: Tier::Enterprise as i32,
                time_zone: "Europe/Istanbul".into(),
                account_manager: "staff/ayse".into(),
                ..Default::default()
            })),
        })
        .collect()
}

/// Writes `events` into `db`'s outbox, committed, in batches.
async fn commit(db: &Db, events: &[Event]) -> anyhow::Result<()> {
    for chunk in events.chunks(1000) {
        let mut tx = db.begin().await?;
        for e in chunk {
            on_conn!(&mut tx.conn(), c => sqlx::query(
                "INSERT INTO outbox (id, type, subject, account, visibility, occur_time, event) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&e.id)
                .bind(&e.r#type)
                .bind(&e.subject)
                .bind(&e.account)
                .bind(e.visibility as i64)
                .bind(0i64)
                .bind(e.encode_to_vec())
                .execute(&mut **c)
                .await?
                .rows_affected());
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Events per second through the relay from `db`.
async fn relayed(db: &Db, nats_url: &str, n: usize) -> anyhow::Result<f64> {
    let source = source();
    let events = events(source, n);
    commit(db, &events).await?;
    let bus = JetStreamBus::connect(nats_url, source).await?;
    let context = bus.context().clone();
    let bus = Bus::JetStream(bus);
    let started = Instant::now();
    let mut moved = 0;
    loop {
        let now = concierge_common::clock::to_micros(jiff::Timestamp::now());
        let k = relay::relay_once(db, &bus, 500, now).await?;
        if k == 0 {
            break;
        }
        moved += k;
    }
    let took = started.elapsed();
    anyhow::ensure!(moved == n, "relayed {moved} of {n}");
    context.delete_stream(relay::stream_name(source)).await?;
    Ok(n as f64 / took.as_secs_f64())
}

/// Events per second through a bare publish loop: the same events, batches
/// of 500 published then their acks awaited, as the relay does.
async fn bare(nats_url: &str, n: usize) -> anyhow::Result<f64> {
    let source = source();
    let events = events(source, n);
    let bus = JetStreamBus::connect(nats_url, source).await?;
    let js = bus.context().clone();
    let started = Instant::now();
    for chunk in events.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for e in chunk {
            acks.push(
                js.send_publish(
                    e.r#type.clone(),
                    PublishMessage::build()
                        .payload(e.encode_to_vec().into())
                        .message_id(&e.id),
                )
                .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
    }
    let took = started.elapsed();
    js.delete_stream(relay::stream_name(source)).await?;
    Ok(n as f64 / took.as_secs_f64())
}

async fn fresh_sqlite(dir: &std::path::Path, name: &str) -> anyhow::Result<Db> {
    let db = Db::connect(
        &format!("sqlite://{}?mode=rwc", dir.join(name).display()),
        4,
    )
    .await?;
    db.migrate(
        &sqlx::migrate::Migrator::DEFAULT,
        &sqlx::migrate::Migrator::DEFAULT,
    )
    .await?;
    Ok(db)
}

pub async fn run(
    nats_url: String,
    postgres_url: Option<String>,
    n: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("concierge-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;

    println!("1. outbox to JetStream, {n} committed events");
    let baseline = bare(&nats_url, n).await?;
    println!("   bare async-nats publish loop: {baseline:>9.0} events/s");
    let sqlite = relayed(&fresh_sqlite(&dir, "outbox.db").await?, &nats_url, n).await?;
    println!(
        "   relay from SQLite:            {sqlite:>9.0} events/s  ({:.2} of bare)",
        sqlite / baseline
    );
    if let Some(admin) = &postgres_url {
        let name = format!("concierge_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let url = format!(
            "{}/{name}",
            admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin)
        );
        let db = Db::connect(&url, 8).await?;
        db.migrate(
            &sqlx::migrate::Migrator::DEFAULT,
            &sqlx::migrate::Migrator::DEFAULT,
        )
        .await?;
        let pg = relayed(&db, &nats_url, n).await?;
        println!(
            "   relay from PostgreSQL:        {pg:>9.0} events/s  ({:.2} of bare)",
            pg / baseline
        );
        super::drop_database(admin, db, &name).await?;
    }

    println!("2. commit to subscriber, {samples} events one at a time");
    let (bare50, bare99) = bare_latency(&nats_url, samples).await?;
    println!(
        "   bare NATS publish to subscriber:  p50 {:>8.2} ms  p99 {:>8.2} ms",
        ms(bare50),
        ms(bare99)
    );
    let (p50, p99) = end_to_end(&dir, &nats_url, samples).await?;
    println!(
        "   commit to SubscribeEvents:        p50 {:>8.2} ms  p99 {:>8.2} ms  ({:.1}x and {:.1}x bare)",
        ms(p50),
        ms(p99),
        p50.as_secs_f64() / bare50.as_secs_f64().max(1e-9),
        p99.as_secs_f64() / bare99.as_secs_f64().max(1e-9)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bare_latency(nats_url: &str, samples: usize) -> anyhow::Result<(Duration, Duration)> {
    let client = async_nats::connect(nats_url).await?;
    let subject = format!("bench.latency.{}", uuid::Uuid::new_v4().simple());
    let mut sub = client.subscribe(subject.clone()).await?;
    client.flush().await?;
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        client
            .publish(subject.clone(), format!("{i}").into_bytes().into())
            .await?;
        sub.next()
            .await
            .ok_or_else(|| anyhow::anyhow!("no message"))?;
        took.push(started.elapsed());
    }
    Ok((percentile(took.clone(), 0.5), percentile(took, 0.99)))
}

async fn end_to_end(
    dir: &std::path::Path,
    nats_url: &str,
    samples: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let codec = PrincipalCodec::new(uuid::Uuid::new_v4().to_string().into());
    let clock: SharedClock = Arc::new(SystemClock);
    let customers_db = Db::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("customers.db").display()),
        8,
    )
    .await?;
    let customers = Customers::open(customers_db, codec.clone(), clock.clone()).await?;
    let _relay = customers.relay_events(Bus::JetStream(
        JetStreamBus::connect(nats_url, "customers").await?,
    ));
    let direct = on_loopback(tonic::service::Routes::new(customers.server())).await?;
    let gateway_db = Db::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
        4,
    )
    .await?;
    let backends = BTreeMap::from([(
        concierge_customers::SERVICE_NAME,
        concierge_gateway::remote(&format!("http://{}", direct.addr), 4)?,
    )]);
    let limits = Limits {
        requests_per_second: 10_000_000,
        burst: 10_000_000,
        ..Limits::default()
    };
    let gw = Gateway::open(
        gateway_db.clone(),
        codec,
        clock.clone(),
        limits,
        None,
        backends,
        Some(concierge_gateway::events::Feed::new(
            BusTarget::Nats(nats_url.to_string()),
            vec!["customers"],
        )),
    )
    .await?;
    let gateway = on_loopback(gw.routes()).await?;
    let key = keys::mint(
        &gateway_db,
        keys::NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "bench".into(),
            expire_time: None,
        },
        clock.now(),
    )
    .await?;
    let sdk = concierge_sdk::Client::builder(format!("http://{}", gateway.addr))
        .api_key(key.key)
        .build()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut stream = sdk
        .gateway()
        .subscribe_events(SubscribeEventsRequest {
            event_types: vec!["concierge.customers.v1.account_created".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = format!("lat{run}{i}");
        sdk.customers()
            .create_account(CreateAccountRequest {
                account: Some(Account {
                    display_name: id.clone(),
                    tier: Tier::Standard as i32,
                    time_zone: "UTC".into(),
                    ..Default::default()
                }),
                account_id: id.clone(),
                request_id: String::new(),
            })
            .await?;
        loop {
            let m = stream
                .message()
                .await?
                .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
            if let Some(Item::Event(e)) = m.item
                && e.subject == format!("accounts/{id}")
            {
                let committed = e
                    .occur_time
                    .as_ref()
                    .and_then(concierge_common::clock::from_proto)
                    .ok_or_else(|| anyhow::anyhow!("an event without its time"))?;
                let now = jiff::Timestamp::now();
                took.push(Duration::try_from(now.duration_since(committed)).unwrap_or_default());
                break;
            }
        }
    }
    Ok((percentile(took.clone(), 0.5), percentile(took, 0.99)))
}
