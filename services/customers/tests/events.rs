//! Events leave the outbox: to NATS JetStream (the real server, deduplicated
//! by event id) and to the in-process bus of `concierge dev`.

use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{SharedClock, SystemClock, to_micros};
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::relay::{self, Bus, JetStreamBus, LocalBus};
use concierge_common::storage::Db;
use concierge_common::testing::{Backend, TestDb};
use concierge_customers::Customers;
use concierge_proto::customers::customers_service_server::CustomersService;
use concierge_proto::customers::{Account, CreateAccountRequest, Tier};
use concierge_proto::events::Event;
use futures::StreamExt;
use prost::Message;

async fn service() -> (Customers, PrincipalCodec, TestDb) {
    let db = TestDb::new(Backend::Sqlite, "events").await.unwrap();
    let codec = PrincipalCodec::new("events-test-secret".into());
    let clock: SharedClock = Arc::new(SystemClock);
    let svc = Customers::open(db.db.clone(), codec.clone(), clock)
        .await
        .unwrap();
    (svc, codec, db)
}

async fn create(svc: &Customers, codec: &PrincipalCodec, id: &str) {
    let admin = Principal {
        subject: "apiKeys/admin".into(),
        role: Role::Admin,
        account: None,
        staff_member: None,
        display_name: "a".into(),
    };
    let mut req = tonic::Request::new(CreateAccountRequest {
        account: Some(Account {
            display_name: format!("{id} Corp"),
            tier: Tier::Premium as i32,
            time_zone: "UTC".into(),
            ..Default::default()
        }),
        account_id: id.into(),
        request_id: String::new(),
    });
    req.metadata_mut().insert(
        PRINCIPAL_HEADER,
        codec
            .encode(&admin, concierge_customers::SERVICE_NAME)
            .parse()
            .unwrap(),
    );
    svc.create_account(req).await.unwrap();
}

#[tokio::test]
async fn events_reach_jetstream_once_even_when_published_twice() {
    let Some(url) = concierge_common::testing::nats_url("the JetStream relay test") else {
        return;
    };
    let (svc, codec, db) = service().await;
    let id = format!("js{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    create(&svc, &codec, &id).await;

    let bus = JetStreamBus::connect(&url, "customers").await.unwrap();
    let mut stream = bus
        .context()
        .get_stream(relay::stream_name("customers"))
        .await
        .unwrap();
    let start_sequence = stream.info().await.unwrap().state.last_sequence + 1;
    let bus = Bus::JetStream(bus);
    let now = to_micros(jiff::Timestamp::now());
    assert_eq!(relay::relay_once(&db.db, &bus, 100, now).await.unwrap(), 1);
    assert_eq!(
        relay::relay_once(&db.db, &bus, 100, now).await.unwrap(),
        0,
        "a relayed event is marked published"
    );
    // A relay that crashed after publishing but before marking publishes again.
    let mut conn = db.db.acquire().await.unwrap();
    let again: Vec<Event> = concierge_common::outbox::read_after(&mut conn.conn(), 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event)
        .collect();
    bus.publish(&again).await.unwrap();

    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
            filter_subject: "concierge.customers.v1.account_created".into(),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut ours = Vec::new();
    while let Some(m) = messages.next().await {
        let event = Event::decode(m.unwrap().payload.as_ref()).unwrap();
        if event.subject == format!("accounts/{id}") {
            ours.push(event);
        }
    }
    assert_eq!(ours.len(), 1, "delivered once, whatever the retries");
    let account = Account::decode(ours[0].payload.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(account.display_name, format!("{id} Corp"));
}

#[tokio::test]
async fn the_local_bus_gets_each_event_right_after_its_commit_and_keeps_it_once() {
    let (svc, codec, _db) = service().await;
    let dir = tempfile::tempdir().unwrap();
    let log = LocalBus::open(
        Db::connect(
            &format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("events.db").display()
            ),
            2,
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    svc.relay_events(Bus::Local(log.clone()));
    create(&svc, &codec, "first").await;
    create(&svc, &codec, "second").await;
    // The relay is woken by the commit; the timeout only bounds a broken relay.
    let mut got: Vec<concierge_common::local_bus::Logged> = Vec::new();
    while got.len() < 2 {
        let after = got.last().map_or(0, |l| l.seq);
        log.wait_after(after, Duration::from_secs(10)).await;
        let more = log.read_after(after, &[], 10).await.unwrap();
        assert!(!more.is_empty(), "an event within 10 s");
        got.extend(more);
    }
    let subjects: Vec<&str> = got.iter().map(|l| l.event.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec!["accounts/first", "accounts/second"],
        "in commit order"
    );
    // A relay that crashed between publishing and marking publishes again:
    // the log keeps each event once, like JetStream's duplicate window.
    let again: Vec<Event> = got.iter().map(|l| l.event.clone()).collect();
    Bus::Local(log.clone()).publish(&again).await.unwrap();
    assert_eq!(log.read_after(0, &[], 10).await.unwrap().len(), 2);
}
