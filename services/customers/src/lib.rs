//! The customers service: accounts and everything known about a client
//! (contacts, sites, inventory, the interaction log, follow-ups) plus the
//! staff directory that portfolios and escalation chains refer to.

pub mod authz;
mod hooks;
pub mod resources;
mod service;
mod store;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Store};
use concierge_common::error::Result;
use concierge_common::kit;
use concierge_common::principal::PrincipalCodec;
use concierge_common::resource;
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_proto::customers::StaffMember;
use concierge_proto::customers::customers_service_server::CustomersServiceServer;
use sqlx::migrate::Migrator;

/// The fully-qualified gRPC service name, for health and routing.
pub const SERVICE_NAME: &str = "concierge.customers.v1.CustomersService";

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The customers service over its own database.
#[derive(Clone)]
pub struct Customers {
    store: Store,
    principals: PrincipalCodec,
}

/// Who may do what with customers resources (see [`authz`]) and the rules
/// between them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules;

impl Customers {
    /// Migrates `db` and opens the service on it.
    pub async fn open(db: Db, principals: PrincipalCodec, clock: SharedClock) -> Result<Self> {
        let store = Store::open(
            db,
            &SQLITE,
            &POSTGRES,
            clock,
            "concierge.customers.v1",
            "customers",
        )
        .await?;
        Ok(Self { store, principals })
    }

    /// The tonic service, with message limits set for both directions.
    pub fn server(&self) -> CustomersServiceServer<Self> {
        CustomersServiceServer::new(self.clone())
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024)
    }

    pub fn db(&self) -> &Db {
        self.store.db()
    }

    /// Starts relaying this service's outbox to `bus`.
    pub fn relay_events(&self, bus: concierge_common::relay::Bus) -> tokio::task::JoinHandle<()> {
        self.store.relay_events(bus)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn ctx<T>(&self, request: &tonic::Request<T>) -> Result<Ctx> {
        Ok(Ctx {
            principal: self.principals.from_request(request, SERVICE_NAME)?,
            request_id: concierge_common::principal::request_id(request),
        })
    }

    /// The escalation chain above a staff member, nearest first.
    pub(crate) async fn escalation_chain(&self, ctx: &Ctx, name: &str) -> Result<Vec<StaffMember>> {
        let start: StaffMember = self.store.get(&Rules, ctx, name).await?;
        let mut pooled = self.store.db().acquire().await?;
        let mut conn = pooled.conn();
        let mut chain = Vec::new();
        let mut next = start.manager;
        while !next.is_empty() && chain.len() < 64 {
            let Some(stored) = resource::get(&mut conn, &resources::STAFF_MEMBERS, &next).await?
            else {
                break;
            };
            let m: StaffMember = Store::decode::<_, Rules>(&stored)?;
            next = m.manager.clone();
            chain.push(m);
        }
        Ok(chain)
    }
}

impl kit::Service for Customers {
    const NAME: &'static str = "customers";
    const GRPC_NAME: &'static str = SERVICE_NAME;

    fn migrations() -> kit::Migrations {
        kit::Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        }
    }

    async fn open(deps: kit::Deps) -> Result<Self> {
        Self::open(deps.db, deps.principals, deps.clock).await
    }

    fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(self.server())
    }

    /// The outbox relay and the request-id purge; customers has no workers
    /// of its own.
    fn supervise(&self, supervisor: &Supervisor, workers: &kit::Workers) {
        self.store.supervise(supervisor, workers.bus.clone())
    }
}
