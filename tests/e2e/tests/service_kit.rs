//! What adding a service costs: a type that implements the kit's `Service`
//! and one `Registration` line. The example below is no product service: it
//! serves the test-clock contract from a table of its own database, and runs
//! one worker. Registered next to the customers service, it is migrated,
//! opened, supervised, served on loopback, health-checked and routed by the
//! gateway with no code that knows its name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::error::Error;
use concierge_common::kit::{self, Deps, InProcess, Registration, Service as _, Workers};
use concierge_common::on_conn;
use concierge_common::principal::{PrincipalCodec, Role};
use concierge_common::server::{self, Serve};
use concierge_common::storage::Db;
use concierge_common::supervise::{Need, Supervisor};
use concierge_common::testing::{Backend, TestDb, eventually};
use concierge_customers::Customers;
use concierge_gateway::keys::{self, NewKey};
use concierge_gateway::{Gateway, Limits};
use concierge_proto::concierge::testing::v1::test_clock_service_client::TestClockServiceClient;
use concierge_proto::concierge::testing::v1::test_clock_service_server::{
    TestClockService, TestClockServiceServer,
};
use concierge_proto::concierge::testing::v1::{
    AdvanceTestClockRequest, GetTestClockRequest, TestClock,
};
use sqlx::migrate::Migrator;
use tonic::{Request, Response, Status};

static SQLITE: Migrator = sqlx::migrate!("tests/kit_example/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("tests/kit_example/postgres");

/// The example service: its clock is a row of its own database.
#[derive(Clone)]
struct Example {
    db: Db,
}

impl Example {
    async fn read(&self) -> concierge_common::Result<(i64, i64)> {
        let mut pooled = self.db.acquire().await?;
        let row: (i64, i64) = on_conn!(&mut pooled.conn(), c => sqlx::query_as(
            "SELECT now_micros, worker_runs FROM example_clock WHERE name = 'testClock'")
            .fetch_one(&mut **c)
            .await
            .map_err(Error::from)?);
        Ok(row)
    }
}

impl kit::Service for Example {
    const NAME: &'static str = "example";
    const GRPC_NAME: &'static str = "concierge.testing.v1.TestClockService";

    fn migrations() -> kit::Migrations {
        kit::Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        }
    }

    async fn open(deps: Deps) -> concierge_common::Result<Self> {
        Self::migrations().apply(&deps.db).await?;
        Ok(Self { db: deps.db })
    }

    fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(TestClockServiceServer::new(self.clone()))
    }

    /// One worker, counting its runs in the service's table.
    fn supervise(&self, supervisor: &Supervisor, _workers: &Workers) {
        let db = self.db.clone();
        supervisor.spawn("example-worker", Need::Required, move || {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await?;
                on_conn!(&mut tx.conn(), c => sqlx::query(
                    "UPDATE example_clock SET worker_runs = worker_runs + 1")
                    .execute(&mut **c)
                    .await
                    .map(drop)
                    .map_err(Error::from)?);
                tx.commit().await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

#[tonic::async_trait]
impl TestClockService for Example {
    async fn get_test_clock(
        &self,
        _request: Request<GetTestClockRequest>,
    ) -> Result<Response<TestClock>, Status> {
        let (now, _) = self.read().await?;
        Ok(Response::new(TestClock {
            name: "testClock".into(),
            now: concierge_common::clock::micros_to_proto(now),
        }))
    }

    async fn advance_test_clock(
        &self,
        _request: Request<AdvanceTestClockRequest>,
    ) -> Result<Response<TestClock>, Status> {
        Err(Error::PermissionDenied("the example's clock stands still".into()).into())
    }
}

#[tokio::test]
async fn a_registered_service_is_migrated_supervised_served_and_routed() {
    // The one line a new service adds.
    let services = [
        Registration::of::<Customers>(),
        Registration::of::<Example>(),
    ];

    let codec = PrincipalCodec::new("kit-example-secret".into());
    let clock: SharedClock = Arc::new(SystemClock);
    let supervisor = Supervisor::default();
    let mut dbs: BTreeMap<&'static str, TestDb> = BTreeMap::new();
    let suite = InProcess::start(
        &services,
        async |service| {
            let db = TestDb::new(Backend::Sqlite, service.name).await.unwrap();
            let handle = db.db.clone();
            dbs.insert(service.name, db);
            Ok(handle)
        },
        &concierge_common::kit::Shared {
            principals: codec.clone(),
            clock: clock.clone(),
            mail: Arc::new(concierge_common::mail::Mailer::Off),
            files: concierge_common::files::Files::memory(),
            public_url: "http://127.0.0.1:50051".into(),
        },
        &supervisor,
        |service| Workers {
            instance: format!("{}-test", service.name),
            poll: Duration::from_secs(1),
            bus: None,
        },
    )
    .await
    .unwrap();

    // Its own schema, on its own database, migrated on open; its worker runs.
    let example = Example {
        db: dbs["example"].db.clone(),
    };
    eventually(Duration::from_secs(10), "the example's worker ran", || {
        let example = example.clone();
        async move { matches!(example.read().await, Ok((_, runs)) if runs >= 1) }
    })
    .await;
    assert!(
        Example::migrations()
            .unapplied(&dbs["example"].db)
            .await
            .unwrap()
            .is_empty()
    );
    let customers_db = &dbs["customers"].db;
    let tables: i64 = {
        let mut pooled = customers_db.acquire().await.unwrap();
        on_conn!(&mut pooled.conn(), c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'example_clock'")
            .fetch_one(&mut **c)
            .await
            .unwrap())
    };
    assert_eq!(tables, 0, "no service reads another's tables");

    // Routed by the gateway from the registration alone.
    let gateway_db = TestDb::new(Backend::Sqlite, "kit-gateway").await.unwrap();
    let gateway = Gateway::open(
        gateway_db.db.clone(),
        codec.clone(),
        clock.clone(),
        Limits::default(),
        None,
        suite.backends(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        gateway.service_names(),
        vec![
            "concierge.customers.v1.CustomersService".to_string(),
            "concierge.gateway.v1.GatewayService".to_string(),
            "concierge.testing.v1.TestClockService".to_string()
        ]
    );
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
    let key = keys::mint(
        &gateway_db.db,
        NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "admin".into(),
            expire_time: None,
        },
        jiff::Timestamp::now(),
    )
    .await
    .unwrap()
    .key;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TestClockServiceClient::new(channel.clone());
    let mut ask = Request::new(GetTestClockRequest {
        name: "testClock".into(),
    });
    ask.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let clock = client.get_test_clock(ask).await.unwrap().into_inner();
    assert_eq!(
        clock.now.map(|t| t.seconds),
        Some(1_798_761_600),
        "the answer comes from the example's own table"
    );

    // Health knows it by its gRPC name, at the gateway and on its loopback.
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    eventually(
        Duration::from_secs(10),
        "the example is SERVING at the gateway",
        || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "concierge.testing.v1.TestClockService".into(),
                    })
                    .await
                    .map(|r| r.into_inner().status);
                matches!(status, Ok(s) if s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            }
        },
    )
    .await;
    let mut direct = TestClockServiceClient::new(suite.peers.channel("example").unwrap());
    let unsigned = direct
        .get_test_clock(GetTestClockRequest {
            name: "testClock".into(),
        })
        .await;
    assert!(unsigned.is_ok(), "the loopback port serves the example too");
    suite.close().await;
}
