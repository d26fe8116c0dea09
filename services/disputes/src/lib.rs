//! The billing disputes service: a client's claim against invoice charges,
//! vetted on time (business time from the cases service's calendars), its
//! credit calculated exactly with every step shown, approved by a second
//! pair of eyes above a threshold, and not closed until the client has
//! confirmed the outcome.
//!
//! Where things are: the transition table in [`transitions`]; the credit
//! calculation, a pure function, in [`credit`]; who may do what in
//! [`authz`]; what goes with each write in `hooks`; the gRPC methods in
//! `api`; the calls to the customers and cases services in [`peers`].

mod api;
pub mod authz;
pub mod credit;
mod documents;
mod hooks;
mod mail;
pub mod peers;
pub mod resources;
pub mod transitions;
mod vetting;

use std::sync::Arc;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Events, Store};
use concierge_common::error::Result;
use concierge_common::kit;
use concierge_common::principal::PrincipalCodec;
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_proto::disputes::disputes_service_server::DisputesServiceServer;
use sqlx::migrate::Migrator;

/// The fully-qualified gRPC service name, for health and routing.
pub const SERVICE_NAME: &str = "concierge.disputes.v1.DisputesService";

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The disputes service's events: `concierge.disputes.v1.*`, from
/// `disputes`.
pub(crate) const EVENTS: Events = Events {
    package: "concierge.disputes.v1",
    source: "disputes",
};

/// The disputes service over its own database.
#[derive(Clone)]
pub struct Disputes {
    store: Store,
    principals: PrincipalCodec,
    peers: peers::Peers,
    files: concierge_common::files::Files,
    mail: Arc<concierge_common::mail::Mailer>,
}

/// The disputes service's rules: who may do what ([`authz`]) and what goes
/// with each write (`hooks`), carrying what one change records in the
/// dispute's history.
#[derive(Clone, Default)]
pub struct Rules {
    recorded: Option<Arc<hooks::Recorded>>,
}

/// The rules of reads and of writes that record nothing.
pub(crate) const RULES: Rules = Rules { recorded: None };

impl Rules {
    pub(crate) fn recording(recorded: hooks::Recorded) -> Self {
        Self {
            recorded: Some(Arc::new(recorded)),
        }
    }
}

impl Disputes {
    /// Migrates `db` and opens the service on it; `customers` and `cases`
    /// are channels to those services (loopback ones in `concierge dev`),
    /// `files` where the documents go.
    pub async fn open(
        db: Db,
        principals: PrincipalCodec,
        clock: SharedClock,
        customers: tonic::transport::Channel,
        cases: tonic::transport::Channel,
        files: concierge_common::files::Files,
    ) -> Result<Self> {
        let store =
            Store::open(db, &SQLITE, &POSTGRES, clock, EVENTS.package, EVENTS.source).await?;
        let peers = peers::Peers::new(customers, cases, &principals);
        Ok(Self {
            store,
            principals,
            peers,
            files,
            mail: Arc::new(concierge_common::mail::Mailer::Off),
        })
    }

    /// The service sending its e-mail (the company's positions) through
    /// `mail`.
    pub fn with_mail(self, mail: Arc<concierge_common::mail::Mailer>) -> Self {
        Self { mail, ..self }
    }

    pub(crate) fn mail(&self) -> &concierge_common::mail::Mailer {
        &self.mail
    }

    pub(crate) fn files(&self) -> &concierge_common::files::Files {
        &self.files
    }

    /// The tonic service, with message limits set for both directions.
    pub fn server(&self) -> DisputesServiceServer<Self> {
        DisputesServiceServer::new(self.clone())
            // A document chunk (1 MiB) and its framing fit; nothing much larger.
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

impl kit::Service for Disputes {
    const NAME: &'static str = "disputes";
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
        Self::open(
            deps.db,
            deps.principals,
            deps.clock,
            customers,
            cases,
            deps.files,
        )
        .await
        .map(|d| d.with_mail(deps.mail))
    }

    fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(self.server())
    }

    /// The outbox relay, the request-id purge and the timer sweep (vetting
    /// clocks, position e-mails).
    fn supervise(&self, supervisor: &Supervisor, workers: &kit::Workers) {
        self.store.supervise(supervisor, workers.bus.clone());
        vetting::supervise(self, supervisor, workers);
    }
}
