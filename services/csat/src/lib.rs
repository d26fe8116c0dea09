//! The CSAT service: a survey after every resolved case, answered through
//! an unguessable link in an e-mail, feeding each client's and each
//! portfolio's satisfaction.
//!
//! Where things are: the resources, who may do what with them and what goes
//! with each write in [`resources`]; how a case event becomes a survey, how
//! a survey is sent, answered and expires in `surveys`; the texts a survey
//! is sent and shown in in [`texts`]; the gRPC methods in `api`; the calls
//! to the customers and cases services in [`peers`].

mod api;
pub mod kpis;
pub mod peers;
pub mod plans;
pub mod report;
pub mod resources;
pub mod scores;
pub mod surveys;
pub mod texts;

use std::sync::Arc;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Events, Store};
use concierge_common::error::Result;
use concierge_common::kit;
use concierge_common::principal::PrincipalCodec;
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_proto::csat::csat_service_server::CsatServiceServer;
use sqlx::migrate::Migrator;

/// The fully-qualified gRPC service name, for health and routing.
pub const SERVICE_NAME: &str = "concierge.csat.v1.CsatService";

/// The methods that need no login: the response token is their only
/// credential, so the gateway lets them through unauthenticated.
pub const TOKEN_METHODS: &[&str] = &["GetSurveyInvitation", "SubmitSurveyResponse"];

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The CSAT service's events: `concierge.csat.v1.*`, from `csat`.
pub(crate) const EVENTS: Events = Events {
    package: "concierge.csat.v1",
    source: "csat",
};

/// The CSAT service over its own database.
#[derive(Clone)]
pub struct Csat {
    store: Store,
    principals: PrincipalCodec,
    peers: peers::Peers,
    mail: Arc<concierge_common::mail::Mailer>,
    links: Arc<str>,
}

/// The CSAT service's rules: who may do what ([`resources`]) and what goes
/// with each write.
#[derive(Clone, Copy, Default)]
pub struct Rules;

pub(crate) const RULES: Rules = Rules;

/// Where the gateway serves the response page, under the public URL.
pub const RESPONSE_PATH: &str = "/surveys/respond";

/// Where response links point when no public address is given.
pub const DEFAULT_LINK_BASE: &str = "http://127.0.0.1:50051/surveys/respond";

impl Csat {
    /// Migrates `db` and opens the service on it; `customers` and `cases`
    /// are channels to those services (loopback ones in `concierge dev`).
    pub async fn open(
        db: Db,
        principals: PrincipalCodec,
        clock: SharedClock,
        customers: tonic::transport::Channel,
        cases: tonic::transport::Channel,
    ) -> Result<Self> {
        let store =
            Store::open(db, &SQLITE, &POSTGRES, clock, EVENTS.package, EVENTS.source).await?;
        let peers = peers::Peers::new(customers, cases, &principals);
        let csat = Self {
            store,
            principals,
            peers,
            mail: Arc::new(concierge_common::mail::Mailer::Off),
            links: DEFAULT_LINK_BASE.into(),
        };
        csat.arm_monthly_run().await?;
        Ok(csat)
    }

    /// The service sending its surveys through `mail`.
    pub fn with_mail(self, mail: Arc<concierge_common::mail::Mailer>) -> Self {
        Self { mail, ..self }
    }

    /// Response links as `<base>?token=…`: the public address of the
    /// gateway's response page.
    pub fn with_link_base(self, base: &str) -> Self {
        Self {
            links: base.trim_end_matches('/').into(),
            ..self
        }
    }

    pub(crate) fn link(&self, token: &str) -> String {
        format!("{}?token={token}", self.links)
    }

    pub(crate) fn mail(&self) -> &concierge_common::mail::Mailer {
        &self.mail
    }

    /// The tonic service, with message limits set for both directions.
    pub fn server(&self) -> CsatServiceServer<Self> {
        CsatServiceServer::new(self.clone())
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024)
    }

    pub fn db(&self) -> &Db {
        self.store.db()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn peers(&self) -> &peers::Peers {
        &self.peers
    }

    pub(crate) fn ctx<T>(&self, request: &tonic::Request<T>) -> Result<Ctx> {
        Ok(Ctx {
            principal: self.principals.from_request(request, SERVICE_NAME)?,
            request_id: concierge_common::principal::request_id(request),
        })
    }
}

impl kit::Service for Csat {
    const NAME: &'static str = "csat";
    const GRPC_NAME: &'static str = SERVICE_NAME;
    const PEERS: &'static [&'static str] = &["customers", "cases"];

    fn migrations() -> kit::Migrations {
        kit::Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        }
    }

    async fn open(deps: kit::Deps) -> Result<Self> {
        let customers = deps.peers.channel("customers")?;
        let cases = deps.peers.channel("cases")?;
        let links = format!("{}{RESPONSE_PATH}", deps.public_url.trim_end_matches('/'));
        Self::open(deps.db, deps.principals, deps.clock, customers, cases)
            .await
            .map(|c| c.with_mail(deps.mail).with_link_base(&links))
    }

    fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(self.server())
    }

    /// The outbox relay, the request-id purge, the timer sweep (surveys
    /// going out and expiring) and the consumer of the cases service's
    /// events.
    fn supervise(&self, supervisor: &Supervisor, workers: &kit::Workers) {
        self.store.supervise(supervisor, workers.bus.clone());
        surveys::supervise(self, supervisor, workers);
    }
}
