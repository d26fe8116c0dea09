//! `SubscribeEvents` through the gateway, on the local bus of `concierge
//! dev` and on the real NATS JetStream: a client principal sees only its
//! own account's public events (never an internal record, never another
//! account's), a subscriber resumes from a cursor or a time with no gap and
//! no duplicate, and bad requests are refused with the field named.

use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::kit::{InProcess, Registration, Workers};
use concierge_common::principal::{PrincipalCodec, Role};
use concierge_common::relay::{Bus, BusTarget, LocalBus};
use concierge_common::server::{self, Running, Serve};
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_common::testing::{Backend, TestDb};
use concierge_customers::Customers;
use concierge_gateway::events::Feed;
use concierge_gateway::keys::{self, NewKey};
use concierge_gateway::webhooks::Targets;
use concierge_gateway::{Gateway, Limits};
use concierge_proto::concierge::gateway::v1::gateway_service_client::GatewayServiceClient;
use concierge_proto::concierge::gateway::v1::subscribe_events_response::Item;
use concierge_proto::concierge::gateway::v1::*;
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::*;
use concierge_proto::events::Event;
use concierge_proto::prost::Message;
use concierge_proto::types::ContactChannel;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

struct Suite {
    _suite: InProcess,
    _gateway: Gateway,
    _running: Running,
    _dbs: Vec<TestDb>,
    _dir: tempfile::TempDir,
    channel: Channel,
    admin: String,
    client: String,
    /// This run's accounts, unique so that runs sharing a JetStream stream
    /// tell their events apart.
    acme: String,
    globex: String,
}

impl Suite {
    async fn start(jetstream: Option<String>) -> Self {
        Self::start_with(jetstream, Arc::new(SystemClock), Targets::Any).await
    }

    /// The suite with the gateway on `gateway_clock` (webhook retries come
    /// due when a test clock moves) and receivers allowed at `targets`.
    async fn start_with(
        jetstream: Option<String>,
        gateway_clock: SharedClock,
        targets: Targets,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = match &jetstream {
            Some(url) => BusTarget::Nats(url.clone()),
            None => BusTarget::Ready(Bus::Local(
                LocalBus::open(
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
                .unwrap(),
            )),
        };
        let codec = PrincipalCodec::new("events-test-secret".into());
        let supervisor = Supervisor::default();
        let mut dbs = Vec::new();
        let suite = InProcess::start(
            &[Registration::of::<Customers>()],
            async |service| {
                let db = TestDb::new(Backend::Sqlite, service.name).await.unwrap();
                let handle = db.db.clone();
                dbs.push(db);
                Ok(handle)
            },
            &concierge_common::kit::Shared {
                principals: codec.clone(),
                clock: gateway_clock.clone(),
                mail: Arc::new(concierge_common::mail::Mailer::Off),
                files: concierge_common::files::Files::memory(),
                public_url: "http://127.0.0.1:50051".into(),
            },
            &supervisor,
            |service| Workers {
                instance: format!("{}-test", service.name),
                poll: Duration::from_millis(200),
                bus: Some(bus.clone()),
            },
        )
        .await
        .unwrap();
        let gateway_db = TestDb::new(Backend::Sqlite, "events-gateway")
            .await
            .unwrap();
        let mut feed = Feed::new(bus, vec!["customers"]);
        feed.heartbeat = Duration::from_millis(300);
        feed.webhook_targets = targets;
        feed.poll = Duration::from_millis(50);
        let gateway = Gateway::open(
            gateway_db.db.clone(),
            codec,
            gateway_clock,
            Limits::default(),
            None,
            suite.backends(),
            Some(feed),
        )
        .await
        .unwrap();
        gateway.supervise(&supervisor);
        let running = server::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            gateway.routes(),
            Serve {
                health_names: gateway.service_names(),
                grace_period: Duration::from_secs(1),
                drain_delay: Duration::ZERO,
            },
            async { Ok(()) },
            std::future::pending(),
        )
        .await
        .unwrap();
        let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let (acme, globex) = (format!("acme{run}"), format!("globex{run}"));
        let mint = |role, account: Option<String>| {
            let db = gateway_db.db.clone();
            async move {
                keys::mint(
                    &db,
                    NewKey {
                        role,
                        account,
                        staff_member: None,
                        display_name: "events test".into(),
                        expire_time: None,
                    },
                    jiff::Timestamp::now(),
                )
                .await
                .unwrap()
                .key
            }
        };
        let admin = mint(Role::Admin, None).await;
        let client = mint(Role::Client, Some(format!("accounts/{acme}"))).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        dbs.push(gateway_db);
        Self {
            _suite: suite,
            _gateway: gateway,
            _running: running,
            _dbs: dbs,
            _dir: dir,
            channel,
            admin,
            client,
            acme,
            globex,
        }
    }

    fn req<T>(&self, key: &str, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        r
    }

    async fn subscribe(
        &self,
        key: &str,
        req: SubscribeEventsRequest,
    ) -> Result<Streaming<SubscribeEventsResponse>, tonic::Status> {
        GatewayServiceClient::new(self.channel.clone())
            .subscribe_events(self.req(key, req))
            .await
            .map(|r| r.into_inner())
    }

    fn customers(&self) -> CustomersServiceClient<Channel> {
        CustomersServiceClient::new(self.channel.clone())
    }

    /// Whether an event is this run's.
    fn ours(&self, e: &Event) -> bool {
        [&self.acme, &self.globex]
            .iter()
            .any(|a| e.account == format!("accounts/{a}"))
            || e.subject.contains(&self.acme)
    }

    async fn create_account(&self, id: &str) {
        self.customers()
            .create_account(self.req(
                &self.admin,
                CreateAccountRequest {
                    account: Some(Account {
                        display_name: id.into(),
                        tier: Tier::Standard as i32,
                        time_zone: "Europe/Istanbul".into(),
                        ..Default::default()
                    }),
                    account_id: id.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }

    /// The company's own record of a call: staff only.
    async fn log_call(&self, account: &str) {
        self.customers()
            .create_interaction(self.req(
                &self.admin,
                CreateInteractionRequest {
                    parent: format!("accounts/{account}"),
                    interaction: Some(Interaction {
                        channel: ContactChannel::Phone as i32,
                        direction: Direction::Inbound as i32,
                        occur_time: Some(prost_types::Timestamp {
                            seconds: jiff::Timestamp::now().as_second(),
                            nanos: 0,
                        }),
                        summary: "Client angry about the outage; internal only".into(),
                        ..Default::default()
                    }),
                    interaction_id: String::new(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }

    async fn rename(&self, account: &str, name: &str) {
        self.customers()
            .update_account(self.req(
                &self.admin,
                UpdateAccountRequest {
                    account: Some(Account {
                        name: format!("accounts/{account}"),
                        display_name: name.into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                },
            ))
            .await
            .unwrap();
    }
}

/// The next `n` events of this run on `stream` (others', and heartbeats,
/// skipped), each with its cursor; within 20 s or the test fails.
async fn next_ours(
    s: &Suite,
    stream: &mut Streaming<SubscribeEventsResponse>,
    n: usize,
) -> Vec<(Event, String)> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while got.len() < n {
            let m = stream.message().await.unwrap().expect("the stream goes on");
            if let Some(Item::Event(e)) = m.item
                && s.ours(&e)
            {
                got.push((e, m.cursor));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} events within 20 s; got {got:?}"));
    got
}

fn kinds(events: &[(Event, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(e, _)| {
            format!(
                "{} {}",
                e.r#type.rsplit('.').next().unwrap_or_default(),
                e.account.trim_start_matches("accounts/")
            )
        })
        .collect()
}

async fn a_subscriber_sees_what_it_may_and_resumes_without_gap_or_duplicate(s: Suite) {
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let mut staff = s
        .subscribe(&s.admin, SubscribeEventsRequest::default())
        .await
        .unwrap();
    let mut client = s
        .subscribe(&s.client, SubscribeEventsRequest::default())
        .await
        .unwrap();

    s.create_account(&s.acme).await;
    s.create_account(&s.globex).await;
    s.log_call(&s.acme).await;
    s.rename(&s.acme, "Acme Holdings").await;
    s.rename(&s.globex, "Globex Holdings").await;

    let (a, g) = (s.acme.as_str(), s.globex.as_str());
    let all = next_ours(&s, &mut staff, 5).await;
    assert_eq!(
        kinds(&all),
        vec![
            format!("account_created {a}"),
            format!("account_created {g}"),
            format!("interaction_created {a}"),
            format!("account_updated {a}"),
            format!("account_updated {g}"),
        ],
        "staff see every event, in order"
    );
    let mine = next_ours(&s, &mut client, 2).await;
    assert_eq!(
        kinds(&mine),
        vec![
            format!("account_created {a}"),
            format!("account_updated {a}")
        ],
        "the client sees its own account's public events: not the internal call record, not globex"
    );
    // Nothing else of ours reaches the client: the next message of its
    // stream is a heartbeat once everything above has passed.
    let heartbeat = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let m = client.message().await.unwrap().unwrap();
            match m.item {
                Some(Item::Heartbeat(_)) => return m.cursor,
                Some(Item::Event(e)) => assert!(!s.ours(&e), "{e:?} reached the client"),
                None => panic!("an empty message"),
            }
        }
    })
    .await
    .unwrap();
    assert!(!heartbeat.is_empty(), "a heartbeat carries the cursor");

    // Resume after the second event: the rest, once each, then new ones.
    drop(staff);
    let resumed = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                resume_cursor: all[1].1.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut resumed = resumed;
    s.rename(&s.acme, "Acme Group").await;
    let rest = next_ours(&s, &mut resumed, 4).await;
    assert_eq!(
        kinds(&rest),
        vec![
            format!("interaction_created {a}"),
            format!("account_updated {a}"),
            format!("account_updated {g}"),
            format!("account_updated {a}"),
        ],
        "no gap, no duplicate"
    );
    assert_eq!(rest[0].0.id, all[2].0.id);

    // The client resumes from its heartbeat: only what came after it.
    drop(client);
    let mut client = s
        .subscribe(
            &s.client,
            SubscribeEventsRequest {
                resume_cursor: heartbeat,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let after = next_ours(&s, &mut client, 1).await;
    assert_eq!(
        after[0].0.id, rest[3].0.id,
        "the rename after the heartbeat"
    );

    // From a time, narrowed to one account and a type prefix.
    let mut replay = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: started.as_second(),
                    nanos: 0,
                }),
                accounts: vec![format!("accounts/{a}")],
                event_types: vec!["concierge.customers.v1.account_*".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let replayed = next_ours(&s, &mut replay, 3).await;
    assert_eq!(
        kinds(&replayed),
        vec![
            format!("account_created {a}"),
            format!("account_updated {a}"),
            format!("account_updated {a}"),
        ]
    );
}

async fn bad_subscriptions_are_refused_with_the_field_named(s: Suite) {
    let field = |status: &tonic::Status| {
        use tonic_types::StatusExt;
        status
            .get_error_details()
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| v.field.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let old = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: jiff::Timestamp::now().as_second() - 40 * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::OutOfRange, "{old:?}");
    assert_eq!(field(&old), vec!["start_time"]);
    let forged = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                resume_cursor: "bm90IGEgY3Vyc29y".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument);
    assert_eq!(field(&forged), vec!["resume_cursor"]);
    let pattern = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                event_types: vec!["concierge.*.v1.case_resolved".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(pattern.code(), Code::InvalidArgument);
    assert_eq!(field(&pattern), vec!["event_types[0]"]);
    let other = s
        .subscribe(
            &s.client,
            SubscribeEventsRequest {
                accounts: vec![format!("accounts/{}", s.globex)],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let anonymous = GatewayServiceClient::new(s.channel.clone())
        .subscribe_events(SubscribeEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // One caller holds at most 16 subscriptions; a closed one frees its place.
    let mut open = Vec::new();
    for _ in 0..concierge_gateway::events::MAX_PER_CALLER {
        open.push(
            s.subscribe(&s.client, SubscribeEventsRequest::default())
                .await
                .unwrap(),
        );
    }
    let over = s
        .subscribe(&s.client, SubscribeEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    s.subscribe(&s.admin, SubscribeEventsRequest::default())
        .await
        .expect("another caller is not held back");
    drop(open.pop());
    concierge_common::testing::eventually(
        Duration::from_secs(20),
        "a place freed by a closed subscription",
        || async {
            s.subscribe(&s.client, SubscribeEventsRequest::default())
                .await
                .is_ok()
        },
    )
    .await;
}

#[tokio::test]
async fn on_the_local_bus_a_subscriber_sees_what_it_may_and_resumes() {
    a_subscriber_sees_what_it_may_and_resumes_without_gap_or_duplicate(Suite::start(None).await)
        .await;
}

#[tokio::test]
async fn on_jetstream_a_subscriber_sees_what_it_may_and_resumes() {
    let Some(url) = concierge_common::testing::nats_url("the event subscription test") else {
        return;
    };
    a_subscriber_sees_what_it_may_and_resumes_without_gap_or_duplicate(
        Suite::start(Some(url)).await,
    )
    .await;
}

#[tokio::test]
async fn bad_subscriptions_are_refused_on_both_buses() {
    bad_subscriptions_are_refused_with_the_field_named(Suite::start(None).await).await;
    if let Some(url) = concierge_common::testing::nats_url("the event subscription test") {
        bad_subscriptions_are_refused_with_the_field_named(Suite::start(Some(url)).await).await;
    }
}

/// A webhook receiver on loopback: it records every POST and answers 500
/// to the first `failures` of each path, 200 after.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<std::sync::Mutex<Vec<Received>>>,
    failures: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
}

#[derive(Clone)]
struct Received {
    path: String,
    signature: String,
    event_id: String,
    body: Vec<u8>,
    status: u16,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.path,
            self.status,
            self.event_id,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Receiver {
    async fn start(failures: &[(&str, u32)]) -> (Self, String) {
        let this = Self::default();
        for (path, n) in failures {
            this.failures.lock().unwrap().insert(path.to_string(), *n);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = {
            let this = this.clone();
            axum::Router::new().route(
                "/{*path}",
                axum::routing::post(
                    move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
                        let this = this.clone();
                        async move {
                            let path = uri.path().to_string();
                            let fail = {
                                let mut f = this.failures.lock().unwrap();
                                match f.get_mut(&path) {
                                    Some(n) if *n > 0 => {
                                        *n -= 1;
                                        true
                                    }
                                    _ => false,
                                }
                            };
                            let status = if fail { 500 } else { 200 };
                            let header = |h: &str| {
                                headers
                                    .get(h)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            this.got.lock().unwrap().push(Received {
                                path,
                                signature: header("concierge-signature"),
                                event_id: header("concierge-event-id"),
                                body: body.to_vec(),
                                status,
                            });
                            (
                                http::StatusCode::from_u16(status).unwrap(),
                                if fail {
                                    "receiver down for maintenance"
                                } else {
                                    "ok"
                                },
                            )
                        }
                    },
                ),
            )
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        (this, url)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        concierge_common::testing::eventually(
            Duration::from_secs(20),
            &format!("{n} POSTs to {path}"),
            || async { self.at(path).len() >= n },
        )
        .await;
        self.at(path)
    }
}

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

/// Whether a POST is signed with `secret` as the contract says.
fn signed(r: &Received, secret: &str) -> bool {
    use hmac::Mac;
    let Some((t, v1)) = r
        .signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

impl Suite {
    fn gateway(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::new(self.channel.clone())
    }

    async fn create_webhook(&self, key: &str, w: Webhook) -> Result<Webhook, tonic::Status> {
        self.gateway()
            .create_webhook(self.req(
                key,
                CreateWebhookRequest {
                    webhook: Some(w),
                    webhook_id: String::new(),
                    request_id: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn deliveries(&self, webhook: &str) -> Vec<WebhookDelivery> {
        self.gateway()
            .list_webhook_deliveries(self.req(
                &self.admin,
                ListWebhookDeliveriesRequest {
                    parent: webhook.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .webhook_deliveries
    }
}

fn hook(url: &str, types: &[&str]) -> Webhook {
    Webhook {
        display_name: "Escalations channel".into(),
        url: url.into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        secret: SECRET.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_the_event_once_more_signed_and_not_again() {
    let clock = concierge_common::clock::TestClock::new(jiff::Timestamp::now());
    let s = Suite::start_with(None, Arc::new(clock.clone()), Targets::Any).await;
    let (receiver, url) = Receiver::start(&[("/flaky", 3), ("/once", 1)]).await;
    let mut flaky = hook(
        &format!("{url}/flaky"),
        &["concierge.customers.v1.account_created"],
    );
    flaky.account = format!("accounts/{}", s.acme);
    let created = s.create_webhook(&s.admin, flaky).await.unwrap();
    assert!(created.secret.is_empty(), "the secret is never returned");
    assert_eq!(created.secret_hint, "cdef");
    assert_eq!(created.state, webhook::State::Active as i32);
    // A client's own webhook: its account's public events only.
    let clients = s
        .create_webhook(
            &s.client,
            hook(&format!("{url}/client"), &["concierge.customers.v1.*"]),
        )
        .await
        .unwrap();
    assert_eq!(clients.account, format!("accounts/{}", s.acme));

    s.create_account(&s.acme).await;
    s.log_call(&s.acme).await;
    s.create_account(&s.globex).await;

    let first = receiver.wait_for("/flaky", 1).await;
    // The next attempts come due 10 s, 20 s and 40 s after each failure:
    // the clock moves on a minute at a time until they have all been made.
    concierge_common::testing::eventually(Duration::from_secs(30), "four POSTs to /flaky", || {
        clock.advance(jiff::SignedDuration::from_mins(1));
        async { receiver.at("/flaky").len() >= 4 }
    })
    .await;
    let got = receiver.at("/flaky");
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>()[..4],
        [500, 500, 500, 200]
    );
    let event_id = &first[0].event_id;
    let acme_created = got[..4].iter().all(|r| &r.event_id == event_id);
    assert!(acme_created, "the same event each time: {got:?}");
    assert!(
        got.iter().all(|r| signed(r, SECRET)),
        "every POST is signed"
    );
    let body: serde_json::Value = serde_json::from_slice(&got[3].body).unwrap();
    assert_eq!(body["type"], "concierge.customers.v1.account_created");
    assert_eq!(body["payload"]["displayName"], s.acme.as_str());

    let deliveries = s.deliveries(&created.name).await;
    let acme = deliveries.iter().find(|d| &d.event_id == event_id).unwrap();
    assert_eq!(acme.state, webhook_delivery::State::Succeeded as i32);
    assert_eq!(acme.attempt_count, 4);
    assert_eq!(
        acme.attempts
            .iter()
            .map(|a| a.http_status)
            .collect::<Vec<_>>(),
        vec![500, 500, 500, 200]
    );
    assert!(acme.attempts[0].error.contains("maintenance"));

    // Not again: a test event sent now is the next thing the receiver gets.
    clock.advance(jiff::SignedDuration::from_hours(3));
    let test = s
        .gateway()
        .test_webhook(s.req(
            &s.admin,
            TestWebhookRequest {
                name: created.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(test.event_type, "concierge.gateway.v1.webhook_test");
    let all = receiver.wait_for("/flaky", 5).await;
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all.iter().filter(|r| &r.event_id == event_id).count(), 4);
    assert_eq!(all[4].event_id, test.event_id);

    // The client's webhook got its account's creation and nothing else:
    // not the internal call record, not globex.
    let mine = receiver.wait_for("/client", 1).await;
    assert_eq!(mine.len(), 1);
    assert!(signed(&mine[0], SECRET));
    let body: serde_json::Value = serde_json::from_slice(&mine[0].body).unwrap();
    assert_eq!(body["account"], format!("accounts/{}", s.acme));
    assert_eq!(body["type"], "concierge.customers.v1.account_created");

    // A delivery given up is retried by hand, as a new series.
    let mut once = hook(
        &format!("{url}/once"),
        &["concierge.customers.v1.account_updated"],
    );
    once.max_attempts = 1;
    let once = s.create_webhook(&s.admin, once).await.unwrap();
    s.rename(&s.acme, "Acme Holdings").await;
    receiver.wait_for("/once", 1).await;
    concierge_common::testing::eventually(
        Duration::from_secs(20),
        "the delivery FAILED",
        || async {
            s.deliveries(&once.name)
                .await
                .first()
                .is_some_and(|d| d.state == webhook_delivery::State::Failed as i32)
        },
    )
    .await;
    let failed = s.deliveries(&once.name).await.remove(0);
    let retried = s
        .gateway()
        .retry_webhook_delivery(s.req(
            &s.admin,
            RetryWebhookDeliveryRequest {
                name: failed.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.state, webhook_delivery::State::Pending as i32);
    receiver.wait_for("/once", 2).await;
    concierge_common::testing::eventually(
        Duration::from_secs(20),
        "the retry SUCCEEDED",
        || async {
            s.deliveries(&once.name)
                .await
                .first()
                .is_some_and(|d| d.state == webhook_delivery::State::Succeeded as i32)
        },
    )
    .await;
    let again = s
        .gateway()
        .retry_webhook_delivery(s.req(
            &s.admin,
            RetryWebhookDeliveryRequest {
                name: failed.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::FailedPrecondition,
        "only a FAILED delivery is retried"
    );

    s.gateway()
        .update_webhook(s.req(
            &s.admin,
            UpdateWebhookRequest {
                webhook: Some(Webhook {
                    name: once.name.clone(),
                    display_name: "Renamed, then removed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap();
    s.gateway()
        .delete_webhook(s.req(
            &s.admin,
            DeleteWebhookRequest {
                name: once.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();

    // Staff follow the gateway's own events; every type of its catalogue
    // came out of this test, the outcomes of deliveries included.
    let mut own = s
        .subscribe(
            &s.admin,
            SubscribeEventsRequest {
                start_time: Some(concierge_common::clock::to_proto(
                    jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5),
                )),
                event_types: vec!["concierge.gateway.v1.*".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    use concierge_proto::catalogue::Catalogue;
    let declared: std::collections::BTreeSet<&str> = concierge_proto::gateway::EventType::DECLARED
        .iter()
        .map(|d| d.event_type)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < declared.len() {
            let m = own.message().await.unwrap().unwrap();
            if let Some(Item::Event(e)) = m.item {
                assert_eq!(
                    e.visibility,
                    concierge_proto::events::Visibility::Internal as i32
                );
                if e.r#type.contains("webhook_created") || e.r#type.contains("webhook_updated") {
                    let w = Webhook::decode(e.payload.unwrap().value.as_slice()).unwrap();
                    assert!(w.secret.is_empty(), "no event carries a secret");
                }
                seen.insert(e.r#type);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("every gateway event type; saw {seen:?}"));
    assert_eq!(
        seen.iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        declared
    );
}

#[tokio::test]
async fn webhooks_inside_the_company_or_malformed_are_refused_and_nothing_is_stored() {
    let s = Suite::start_with(None, Arc::new(SystemClock), Targets::Public).await;
    let field = |status: &tonic::Status| {
        use tonic_types::StatusExt;
        status
            .get_error_details()
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| v.field.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    for url in [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://cases.concierge.svc.cluster.local/hook",
        "http://hooks.example.com/hook",
        "https://user:secret@hooks.example.com/hook",
    ] {
        let refused = s
            .create_webhook(
                &s.admin,
                hook(url, &["concierge.cases.v1.escalation_raised"]),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}");
        assert_eq!(field(&refused), vec!["webhook.url"], "{url}");
    }
    let mut bad = hook(
        "https://hooks.example.com/x",
        &[
            "concierge.*.v1.x",
            "concierge.gateway.v1.webhook_delivery_failed",
        ],
    );
    bad.secret = "short".into();
    bad.max_attempts = 99;
    let refused = s.create_webhook(&s.admin, bad).await.unwrap_err();
    let mut fields = field(&refused);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "webhook.event_types[0]",
            "webhook.event_types[1]",
            "webhook.max_attempts",
            "webhook.secret"
        ]
    );
    let mut other = hook("https://hooks.example.com/x", &["concierge.cases.v1.*"]);
    other.account = format!("accounts/{}", s.globex);
    let denied = s.create_webhook(&s.client, other).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let listed = s
        .gateway()
        .list_webhooks(s.req(&s.admin, ListWebhooksRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.webhooks.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_webhook_is_paused_resumed_and_rotated_by_etag() {
    let s = Suite::start(None).await;
    let (receiver, url) = Receiver::start(&[]).await;
    let w = s
        .create_webhook(
            &s.admin,
            hook(
                &format!("{url}/hook"),
                &["concierge.customers.v1.account_created"],
            ),
        )
        .await
        .unwrap();
    let paused = s
        .gateway()
        .pause_webhook(s.req(
            &s.admin,
            PauseWebhookRequest {
                name: w.name.clone(),
                etag: w.etag.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, webhook::State::Paused as i32);
    let test = s
        .gateway()
        .test_webhook(s.req(
            &s.admin,
            TestWebhookRequest {
                name: w.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(test.code(), Code::FailedPrecondition);
    // Paused: events are not queued meanwhile.
    s.create_account(&s.globex).await;
    let stale = s
        .gateway()
        .resume_webhook(s.req(
            &s.admin,
            ResumeWebhookRequest {
                name: w.name.clone(),
                etag: w.etag.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        stale.code(),
        Code::Aborted,
        "the etag moved on with the pause"
    );
    let resumed = s
        .gateway()
        .resume_webhook(s.req(
            &s.admin,
            ResumeWebhookRequest {
                name: w.name.clone(),
                etag: paused.etag.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.state, webhook::State::Active as i32);
    // Rotate the secret: later POSTs are signed with the new one.
    let new_secret = "whsec-rotated-abcdefghijklmnopqrstuvwxyz0123";
    let rotated = s
        .gateway()
        .update_webhook(s.req(
            &s.admin,
            UpdateWebhookRequest {
                webhook: Some(Webhook {
                    name: w.name.clone(),
                    etag: resumed.etag.clone(),
                    secret: new_secret.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["secret".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.secret.is_empty());
    assert_eq!(rotated.secret_hint, "0123");
    s.create_account(&s.acme).await;
    let got = receiver.wait_for("/hook", 1).await;
    assert_eq!(got.len(), 1, "globex's creation came while paused: {got:?}");
    assert!(signed(&got[0], new_secret) && !signed(&got[0], SECRET));
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["account"], format!("accounts/{}", s.acme));
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_disabled_until_resumed() {
    let s = Suite::start(None).await;
    let (receiver, url) = Receiver::start(&[("/down", u32::MAX)]).await;
    let mut w = hook(
        &format!("{url}/down"),
        &["concierge.customers.v1.account_created"],
    );
    w.max_attempts = 1;
    let w = s.create_webhook(&s.admin, w).await.unwrap();
    for i in 0..5 {
        s.create_account(&format!("{}n{i}", s.acme)).await;
    }
    receiver.wait_for("/down", 5).await;
    let get = || async {
        s.gateway()
            .get_webhook(s.req(
                &s.admin,
                GetWebhookRequest {
                    name: w.name.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    };
    concierge_common::testing::eventually(
        Duration::from_secs(20),
        "the webhook disabled",
        || async { get().await.state == webhook::State::Disabled as i32 },
    )
    .await;
    let disabled = get().await;
    assert_eq!(disabled.consecutive_failure_count, 5);
    // Disabled: nothing more is queued, nothing is sent.
    s.create_account(&s.globex).await;
    let resumed = s
        .gateway()
        .resume_webhook(s.req(
            &s.admin,
            ResumeWebhookRequest {
                name: w.name.clone(),
                etag: disabled.etag.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.state, webhook::State::Active as i32);
    assert_eq!(resumed.consecutive_failure_count, 0);
    let failed = s
        .gateway()
        .list_webhook_deliveries(s.req(
            &s.admin,
            ListWebhookDeliveriesRequest {
                parent: "webhooks/-".into(),
                filter: "state = FAILED".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook_deliveries;
    assert_eq!(failed.len(), 5, "one per account, each given up");
    assert!(failed.iter().all(|d| !d.event_subject.contains("globex")));
}
