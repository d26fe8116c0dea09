//! The cases service: the service requests of every client, their status
//! machine, notes and links, and the promise each case carries — SLA clocks
//! counted in business time.
//!
//! Where things are: the pure engines (business time, the SLA ledger, the
//! status machine, policy matching) in [`engine`]; who may do what in
//! [`authz`]; what goes with each write in `hooks`; every SQL statement in
//! `store`; the gRPC methods, one file per resource, in `api`; reading a
//! case's clocks in `reading`; the SLA timers and the re-arm after a calendar change in
//! [`timers`] and `rearm`; the client of the customers service in
//! [`directory`].

mod api;
pub mod authz;
pub mod bench;
mod chase;
mod control;
mod deliverables;
mod dependencies;
pub mod directory;
pub mod engine;
pub mod escalation_delivery;
pub mod handover;
mod hooks;
mod mail;
mod new_case;
mod reading;
mod rearm;
pub mod resources;
mod review;
mod store;
mod triage;

// The engines under their old paths, which callers and tests use.
pub use engine::{calendar, clocks, lifecycle, policy, sla};
pub mod timers;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Store};
use concierge_common::error::{Error, Result};
use concierge_common::kit;
use concierge_common::principal::PrincipalCodec;
use concierge_common::storage::{Conn, Db};
use concierge_proto::concierge::cases::v1::cases_service_server::CasesServiceServer;
use concierge_proto::concierge::cases::v1::{Case, Note, SlaPolicy, note};
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
    directory: directory::Directory,
    sla_config: std::sync::Arc<new_case::SlaConfigCache>,
    mail: std::sync::Arc<concierge_common::mail::Mailer>,
    /// The disputes service, where it is deployed: the control document
    /// lists open billing disputes from it.
    disputes: Option<control::disputes::DisputesPeer>,
}

/// The cases service's rules: who may do what with each kind
/// ([`authz`]) and what goes with each write (`hooks`). It holds nothing of
/// a request but, for a new case, what its create worked out before writing
/// (its SLA policy and calendar), which the hooks compute and write its
/// clocks from in the create's transaction.
#[derive(Clone, Default)]
pub struct Rules {
    new_case: Option<std::sync::Arc<new_case::NewCase>>,
}

/// The rules of every write but a case's create.
pub(crate) const RULES: Rules = Rules { new_case: None };

impl Rules {
    /// The rules of a case's create planned as `plan`.
    pub(crate) fn creating(plan: std::sync::Arc<new_case::NewCase>) -> Self {
        Self {
            new_case: Some(plan),
        }
    }
}

impl Cases {
    /// Migrates `db` and opens the service on it; `customers` is a channel to
    /// the customers service (a loopback one in `concierge dev`).
    pub async fn open(
        db: Db,
        principals: PrincipalCodec,
        clock: SharedClock,
        customers: tonic::transport::Channel,
    ) -> Result<Self> {
        let store =
            Store::open(db, &SQLITE, &POSTGRES, clock, EVENTS.package, EVENTS.source).await?;
        let directory = directory::Directory::new(customers, &principals);
        let cases = Self {
            store,
            principals,
            directory,
            sla_config: Default::default(),
            mail: std::sync::Arc::new(concierge_common::mail::Mailer::Off),
            disputes: None,
        };
        chase::install(&cases).await?;
        {
            let mut pooled = cases.store.db().acquire().await?;
            let now = concierge_common::clock::from_micros(cases.store.now());
            control::arm_tick(&mut pooled.conn(), now).await?;
        }
        Ok(cases)
    }

    /// The service sending its e-mail (escalations) through `mail`.
    pub fn with_mail(self, mail: std::sync::Arc<concierge_common::mail::Mailer>) -> Self {
        Self { mail, ..self }
    }

    /// The service reading open billing disputes (for control documents)
    /// from the disputes service behind `channel`.
    pub fn with_disputes(self, channel: tonic::transport::Channel) -> Self {
        let disputes = Some(control::disputes::DisputesPeer::new(
            channel,
            &self.principals,
        ));
        Self { disputes, ..self }
    }

    pub(crate) fn disputes(&self) -> Option<&control::disputes::DisputesPeer> {
        self.disputes.as_ref()
    }

    pub(crate) fn mail(&self) -> &concierge_common::mail::Mailer {
        &self.mail
    }

    pub(crate) fn sla_config_cache(&self) -> &new_case::SlaConfigCache {
        &self.sla_config
    }

    pub(crate) fn directory(&self) -> &directory::Directory {
        &self.directory
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
            principal: self.principals.from_request(request, SERVICE_NAME)?,
            request_id: concierge_common::principal::request_id(request),
        })
    }
}

impl kit::Service for Cases {
    const NAME: &'static str = "cases";
    const GRPC_NAME: &'static str = SERVICE_NAME;
    const PEERS: &'static [&'static str] = &["customers"];
    const OPTIONAL_PEERS: &'static [&'static str] = &["disputes"];

    fn migrations() -> kit::Migrations {
        kit::Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        }
    }

    async fn open(deps: kit::Deps) -> Result<Self> {
        let customers = deps.peers.channel("customers")?;
        let disputes = deps.peers.channel("disputes").ok();
        let cases = Self::open(deps.db, deps.principals, deps.clock, customers)
            .await?
            .with_mail(deps.mail);
        Ok(match disputes {
            Some(channel) => cases.with_disputes(channel),
            None => cases,
        })
    }

    fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(self.server())
    }

    fn supervise(
        &self,
        supervisor: &concierge_common::supervise::Supervisor,
        workers: &kit::Workers,
    ) {
        Cases::supervise(
            self,
            supervisor,
            workers.instance.clone(),
            workers.poll,
            workers.bus.clone(),
        )
    }
}

/// The cases service's events: `concierge.cases.v1.*`, from `cases`.
pub(crate) const EVENTS: concierge_common::crud::Events = concierge_common::crud::Events {
    package: "concierge.cases.v1",
    source: "cases",
};

/// Posts `body` on `case` as a public update from the service (named `name`
/// when the change already refers to it), in the transaction of the change
/// that says it: what the company waits on the client for, why a commitment
/// will be missed, read by the client where it reads every update.
pub(crate) async fn post_public_update(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    case: &Case,
    name: Option<&str>,
    body: &str,
    now: i64,
) -> Result<()> {
    let name = match name {
        Some(n) => n.to_string(),
        None => format!(
            "{}/notes/{}",
            case.name,
            concierge_common::names::new_id("note_id", "")?
        ),
    };
    let update = Note {
        name,
        visibility: note::Visibility::Public as i32,
        body: body.to_string(),
        origin: note::Origin::System as i32,
        account: case.account.clone(),
        ..Default::default()
    };
    concierge_common::crud::insert_new(conn, &RULES, ctx, EVENTS, &case.name, update, now).await?;
    Ok(())
}

impl Cases {
    /// One revision of a policy, as it was written.
    pub(crate) async fn sla_policy_revision(
        &self,
        ctx: &Ctx,
        name: &str,
        revision: &str,
    ) -> Result<SlaPolicy> {
        authz::staff_only(&ctx.principal, "SLA policies")?;
        let not_found = || Error::NotFound {
            resource_type: "SlaPolicy",
            name: format!("{name}@{revision}"),
        };
        let number: i64 = revision.parse().map_err(|_| not_found())?;
        let mut pooled = self.store.db().acquire().await?;
        store::sla_policies::revision(&mut pooled.conn(), name, number)
            .await?
            .ok_or_else(not_found)
    }

    /// Every revision of a policy, oldest first.
    pub(crate) async fn sla_policy_revisions(
        &self,
        ctx: &Ctx,
        name: &str,
    ) -> Result<Vec<SlaPolicy>> {
        let _current: SlaPolicy = self.store.get(&RULES, ctx, name).await?;
        let mut pooled = self.store.db().acquire().await?;
        store::sla_policies::revisions(&mut pooled.conn(), name).await
    }
}

/// The case a link hangs from: "cases/a" of "cases/a/links/l".
pub(crate) fn link_source(link: &str) -> &str {
    link.rsplitn(3, '/').nth(2).unwrap_or_default()
}
