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
use concierge_gateway::{Gateway, Limits};
use concierge_proto::concierge::gateway::v1::gateway_service_client::GatewayServiceClient;
use concierge_proto::concierge::gateway::v1::subscribe_events_response::Item;
use concierge_proto::concierge::gateway::v1::{SubscribeEventsRequest, SubscribeEventsResponse};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::*;
use concierge_proto::events::Event;
use concierge_proto::types::ContactChannel;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

struct Suite {
    _suite: InProcess,
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
        let clock: SharedClock = Arc::new(SystemClock);
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
                clock: clock.clone(),
                mail: Arc::new(concierge_common::mail::Mailer::Off),
                files: concierge_common::files::Files::memory(),
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
        let gateway = Gateway::open(
            gateway_db.db.clone(),
            codec,
            clock,
            Limits::default(),
            None,
            suite.backends(),
            Some(feed),
        )
        .await
        .unwrap();
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
