//! The cases service: the service requests of every client, their status
//! machine, notes and links, and the promise each case carries — SLA clocks
//! counted in business time.
//!
//! What is here so far: the business-time engine ([`calendar`]), the
//! explainable SLA ledger ([`sla`]), the status machine ([`lifecycle`]),
//! policy matching ([`policy`]), and through the API the business calendars
//! (with business-time arithmetic) and hand-off codes.

pub mod calendar;
pub mod lifecycle;
pub mod policy;
pub mod resources;
mod service;
pub mod sla;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Policy, Store};
use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, PrincipalCodec, Role};
use concierge_common::storage::{Conn, Db};
use concierge_proto::concierge::cases::v1::cases_service_server::CasesServiceServer;
use concierge_proto::concierge::cases::v1::{Calendar, HandOffCode};
use concierge_proto::events::Visibility;
use sqlx::migrate::Migrator;

/// The fully-qualified gRPC service name, for health and routing.
pub const SERVICE_NAME: &str = "concierge.cases.v1.CasesService";

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The cases service over its own database.
#[derive(Clone)]
pub struct Cases {
    store: Store,
    principals: PrincipalCodec,
}

/// Who may do what with cases resources.
#[derive(Debug, Clone, Copy)]
pub struct Rules;

impl Cases {
    /// Migrates `db` and opens the service on it.
    pub async fn open(db: Db, principals: PrincipalCodec, clock: SharedClock) -> Result<Self> {
        let store =
            Store::open(db, &SQLITE, &POSTGRES, clock, "concierge.cases.v1", "cases").await?;
        Ok(Self { store, principals })
    }

    /// The tonic service, with message limits set for both directions.
    pub fn server(&self) -> CasesServiceServer<Self> {
        CasesServiceServer::new(self.clone())
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
            principal: self.principals.from_request(request)?,
            request_id: concierge_common::principal::request_id(request),
        })
    }
}

/// Company-wide configuration (calendars, hand-off codes): staff read it,
/// managers and admins change it, clients never see it.
macro_rules! configuration_policy {
    ($ty:ty, $what:literal) => {
        impl Policy<$ty> for Rules {
            fn visibility(&self, _r: &$ty) -> Visibility {
                Visibility::Internal
            }
            fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
                staff_only(p, $what)
            }
            fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
                staff_only(p, $what)
            }
            async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, _r: &$ty) -> Result<()> {
                match p.role {
                    Role::Manager | Role::Admin => Ok(()),
                    _ => Err(Error::PermissionDenied(format!(
                        "only managers and admins change {}",
                        $what
                    ))),
                }
            }
            fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
                staff_only(p, $what).map(|()| None)
            }
        }
    };
}

fn staff_only(p: &Principal, what: &str) -> Result<()> {
    if p.role == Role::Client {
        return Err(Error::PermissionDenied(format!(
            "{what} are internal to the company"
        )));
    }
    Ok(())
}

configuration_policy!(Calendar, "business calendars");
configuration_policy!(HandOffCode, "hand-off codes");
