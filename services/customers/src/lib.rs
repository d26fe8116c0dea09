//! The customers service: accounts and everything known about a client
//! (contacts, sites, inventory, the interaction log, follow-ups) plus the
//! staff directory that portfolios and escalation chains refer to.

pub mod authz;
pub mod resources;
mod service;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{self, Ctx, Policy, Store};
use concierge_common::error::{Error, Result};
use concierge_common::kit;
use concierge_common::on_conn;
use concierge_common::principal::{Principal, PrincipalCodec, Role};
use concierge_common::resource::{self, Scope};
use concierge_common::storage::{Conn, Db};
use concierge_common::supervise::Supervisor;
use concierge_proto::customers::customers_service_server::CustomersServiceServer;
use concierge_proto::customers::{
    Account, Contact, FollowUp, Interaction, InventoryItem, Site, StaffMember, account, follow_up,
};
use concierge_proto::events::Visibility;
use sqlx::migrate::Migrator;

use authz::Area;

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

    fn db(&self) -> &Db {
        self.store.db()
    }
}

/// The account a write lands in, which must exist and not be deleted.
async fn live_account(conn: &mut Conn<'_>, name: &str) -> Result<Account> {
    let stored = resource::get(conn, &resources::ACCOUNTS, name)
        .await?
        .filter(|s| s.delete_time == 0)
        .ok_or_else(|| Error::NotFound {
            resource_type: "Account",
            name: name.to_string(),
        })?;
    Store::decode::<_, Rules>(&stored)
}

async fn staff_exists(conn: &mut Conn<'_>, field: &str, name: &str) -> Result<()> {
    if resource::get(conn, &resources::STAFF_MEMBERS, name)
        .await?
        .is_none()
    {
        return Err(Error::invalid(
            field,
            format!("{name} is not in the staff directory"),
        ));
    }
    Ok(())
}

/// The parts of the rules every customers resource shares; `area` and
/// `client_visible` are what tell them apart.
impl Rules {
    fn may_read(
        p: &Principal,
        resource_type: &'static str,
        name: &str,
        client_visible: bool,
    ) -> Result<()> {
        authz::read(p, resource_type, name, client_visible)
    }

    fn may_attempt_write(
        p: &Principal,
        area: Area,
        resource_type: &'static str,
        target: &str,
    ) -> Result<()> {
        if p.role == Role::Client {
            return authz::write(p, area, resource_type, target, None);
        }
        Ok(())
    }

    /// Account-scoped writes are decided against the account as stored.
    async fn may_write_in_account(
        conn: &mut Conn<'_>,
        p: &Principal,
        area: Area,
        resource_type: &'static str,
        name: &str,
    ) -> Result<()> {
        if p.role == Role::Client {
            return authz::write(p, area, resource_type, name, None);
        }
        // Writes under an account need the account alive; the account record
        // also decides whether an account manager may write there.
        let account = match crud::account_of(name) {
            Some(account) => Some(live_account(conn, &account).await?),
            None => None,
        };
        authz::write(p, area, resource_type, name, account.as_ref())
    }

    fn list_account(
        p: &Principal,
        resource_type: &'static str,
        parent: &str,
        client_visible: bool,
    ) -> Result<Option<String>> {
        if p.role != Role::Client {
            return Ok(None);
        }
        authz::read(p, resource_type, parent, client_visible)?;
        Ok(p.account.clone())
    }
}

/// Policy for the resources that live under an account.
macro_rules! account_scoped_policy {
    ($ty:ty, $area:expr, $client_visible:expr, $($hooks:tt)*) => {
        impl Policy<$ty> for Rules {
            fn visibility(&self, _r: &$ty) -> Visibility {
                if $client_visible { Visibility::Public } else { Visibility::Internal }
            }
            fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
                Rules::may_read(p, <$ty as crud::Resource<Rules>>::KIND.resource_type, name, $client_visible)
            }
            fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
                Rules::may_attempt_write(p, $area, <$ty as crud::Resource<Rules>>::KIND.resource_type, target)
            }
            async fn may_write(&self, conn: &mut Conn<'_>, p: &Principal, r: &$ty) -> Result<()> {
                Rules::may_write_in_account(conn, p, $area, <$ty as crud::Resource<Rules>>::KIND.resource_type, &r.name).await
            }
            fn list_account(&self, p: &Principal, parent: &str) -> Result<Option<String>> {
                Rules::list_account(p, <$ty as crud::Resource<Rules>>::KIND.resource_type, parent, $client_visible)
            }
            $($hooks)*
        }
    };
}

impl Policy<Account> for Rules {
    fn visibility(&self, _r: &Account) -> Visibility {
        Visibility::Public
    }
    fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
        Rules::may_read(p, "Account", name, true)
    }
    fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
        Rules::may_attempt_write(p, Area::AccountData, "Account", target)
    }
    /// An account manager writes the accounts it owns: it can neither edit
    /// another portfolio's account nor hand one of its own to someone else.
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, r: &Account) -> Result<()> {
        authz::write(p, Area::AccountData, "Account", &r.name, Some(r))
    }
    async fn check_references(&self, conn: &mut Conn<'_>, a: &Account) -> Result<()> {
        if !a.account_manager.is_empty() {
            staff_exists(conn, "account.account_manager", &a.account_manager).await?;
        }
        Ok(())
    }
    fn on_create(&self, _ctx: &Ctx, a: &mut Account, _now: i64) {
        a.state = account::State::Active as i32;
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        // A client's account list is its own account.
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

account_scoped_policy!(
    Contact,
    Area::AccountData,
    true,
    /// At most one client delegate per account.
    async fn check_references(&self, conn: &mut Conn<'_>, c: &Contact) -> Result<()> {
        if !c.client_delegate {
            return Ok(());
        }
        let account = crud::account_of(&c.name).unwrap_or_default();
        let sql = "SELECT COUNT(*) FROM contacts WHERE account = $1 AND client_delegate = 1 AND name <> $2";
        let n: i64 = on_conn!(conn, x => sqlx::query_scalar(sql).bind(&account).bind(&c.name).fetch_one(&mut **x).await?);
        if n > 0 {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::ClientDelegateTaken,
                subject: account,
                description: "the account already has a client delegate; unset it there first"
                    .into(),
            });
        }
        Ok(())
    }
);

account_scoped_policy!(
    Site,
    Area::AccountData,
    true,
    /// A site is deleted only once its inventory is gone.
    async fn check_delete(&self, conn: &mut Conn<'_>, s: &Site) -> Result<()> {
        let items = resource::count(
            conn,
            &resources::INVENTORY_ITEMS,
            &Scope::Parent(s.name.clone()),
        )
        .await?;
        if items > 0 {
            return Err(Error::FailedPrecondition {
                reason: concierge_common::error::Reason::SiteHasInventory,
                subject: s.name.clone(),
                description: format!(
                    "{} still has {items} inventory items; delete or move them first",
                    s.name
                ),
            });
        }
        Ok(())
    }
);

account_scoped_policy!(
    InventoryItem,
    Area::AccountData,
    true,
    /// An item is installed at a site that exists.
    async fn check_references(&self, conn: &mut Conn<'_>, item: &InventoryItem) -> Result<()> {
        let site = item
            .name
            .rsplitn(3, '/')
            .nth(2)
            .unwrap_or_default()
            .to_string();
        if resource::get(conn, &resources::SITES, &site)
            .await?
            .is_none()
        {
            return Err(Error::NotFound {
                resource_type: "Site",
                name: site,
            });
        }
        Ok(())
    }
);

account_scoped_policy!(Interaction, Area::Activity, false,);

account_scoped_policy!(
    FollowUp,
    Area::Activity,
    false,
    fn on_create(&self, _ctx: &Ctx, f: &mut FollowUp, _now: i64) {
        f.state = follow_up::State::Open as i32;
    }
);

impl Policy<StaffMember> for Rules {
    fn visibility(&self, _r: &StaffMember) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, name: &str) -> Result<()> {
        Rules::may_read(p, "StaffMember", name, false)
    }
    fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()> {
        Rules::may_attempt_write(p, Area::Directory, "StaffMember", target)
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, r: &StaffMember) -> Result<()> {
        authz::write(p, Area::Directory, "StaffMember", &r.name, None)
    }
    /// The manager exists, and the escalation chain stays a chain.
    async fn check_references(&self, conn: &mut Conn<'_>, s: &StaffMember) -> Result<()> {
        if s.manager.is_empty() {
            return Ok(());
        }
        staff_exists(conn, "staff_member.manager", &s.manager).await?;
        let mut next = s.manager.clone();
        for _ in 0..64 {
            if next == s.name {
                return Err(Error::invalid(
                    "staff_member.manager",
                    format!(
                        "{} reports to {} already: this would close a loop in the escalation chain",
                        s.manager, s.name
                    ),
                ));
            }
            match resource::get(conn, &resources::STAFF_MEMBERS, &next).await? {
                Some(stored) => {
                    let m: StaffMember = Store::decode::<_, Rules>(&stored)?;
                    if m.manager.is_empty() {
                        break;
                    }
                    next = m.manager;
                }
                None => break,
            }
        }
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Rules::list_account(p, "StaffMember", "", false)
    }
}
