//! The cases service: the service requests of every client, their status
//! machine, notes and links, and the promise each case carries — SLA clocks
//! counted in business time.
//!
//! What is here so far: the business-time engine ([`calendar`]), the
//! explainable SLA ledger ([`sla`]), the status machine ([`lifecycle`]),
//! policy matching ([`policy`]), and through the API the business calendars
//! (with business-time arithmetic) and hand-off codes.

pub mod calendar;
pub mod clocks;
mod dependencies;
pub mod directory;
pub mod lifecycle;
pub mod policy;
mod rearm;
pub mod resources;
mod service;
pub mod sla;
pub mod timers;

use concierge_common::clock::SharedClock;
use concierge_common::crud::{Ctx, Policy, Store};
use concierge_common::error::{Error, Result};
use concierge_common::kit;
use concierge_common::on_conn;
use concierge_common::principal::{Principal, PrincipalCodec, Role};
use concierge_common::storage::{Conn, Db};
use concierge_proto::concierge::cases::v1::cases_service_server::CasesServiceServer;
use concierge_proto::concierge::cases::v1::{
    Calendar, Case, CaseLink, CasePriority, HandOffCode, Note, SlaClock, SlaPolicy, case,
    case_link, note,
};
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
    directory: directory::Directory,
}

/// Who may do what with cases resources. Carries what one request learned
/// before writing (the account's facts, the case a note is on), which the
/// output-only fields of a new resource are set from.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub(crate) facts: Option<directory::AccountFacts>,
    pub(crate) case_account: Option<String>,
    /// The SLA policy and revision a new case is given.
    pub(crate) sla_policy: Option<(String, String)>,
    /// The contacts a new public update is sent to.
    pub(crate) notified_contacts: Vec<String>,
}

/// The rules of a request that learned nothing beforehand.
pub(crate) const RULES: Rules = Rules {
    facts: None,
    case_account: None,
    sla_policy: None,
    notified_contacts: Vec::new(),
};

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
        Ok(Self {
            store,
            principals,
            directory,
        })
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

    fn migrations() -> kit::Migrations {
        kit::Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        }
    }

    async fn open(deps: kit::Deps) -> Result<Self> {
        let customers = deps.peers.channel("customers")?;
        Self::open(deps.db, deps.principals, deps.clock, customers).await
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

    fn db(&self) -> &Db {
        self.store.db()
    }
}

/// Company-wide configuration (calendars, hand-off codes): staff read it,
/// managers and admins change it, clients never see it.
macro_rules! configuration_policy {
    ($ty:ty, $what:literal $(, after_write = $after:path)? $(, check_delete = $check:path)?) => {
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
            $(
            async fn after_write(
                &self,
                conn: &mut Conn<'_>,
                _ctx: &Ctx,
                before: Option<&$ty>,
                after: &$ty,
                now: i64,
            ) -> Result<()> {
                $after(conn, before, after, now).await
            }
            )?
            $(
            async fn check_delete(&self, conn: &mut Conn<'_>, r: &$ty) -> Result<()> {
                $check(conn, r).await
            }
            )?
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

// A calendar change re-arms open cases' timers in the background; a
// calendar an SLA policy counts in is not deleted.
configuration_policy!(
    Calendar,
    "business calendars",
    after_write = rearm::after_calendar_write,
    check_delete = calendar_in_use
);

/// Refuses to delete a calendar an SLA policy counts business time in,
/// deleted policies included: the cases pinned to their revisions still
/// read their clocks in it. Runs in the delete's transaction, which holds the
/// calendar's row; a policy naming it takes that row too (check_references),
/// so a policy created at the same moment cannot slip past.
async fn calendar_in_use(conn: &mut Conn<'_>, c: &Calendar) -> Result<()> {
    let users: Vec<String> = on_conn!(conn, x => sqlx::query_scalar(
        "SELECT name FROM sla_policies WHERE calendar = $1 ORDER BY name LIMIT 20")
        .bind(&c.name)
        .fetch_all(&mut **x)
        .await?);
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        reason: concierge_common::error::Reason::CalendarInUse,
        subject: c.name.clone(),
        description: format!(
            "{} counts business time for {}: point them at another calendar first",
            c.name,
            users.join(", ")
        ),
    })
}
configuration_policy!(HandOffCode, "hand-off codes");

/// The cases service's events: `concierge.cases.v1.*`, from `cases`.
const EVENTS: concierge_common::crud::Events = concierge_common::crud::Events {
    package: "concierge.cases.v1",
    source: "cases",
};

/// Posts `body` on `case` as a public update from the service (named `name`
/// when the change already refers to it), in the transaction of the change
/// that says it: what the company waits on the client for, why a commitment
/// will be missed, read by the client where it reads every update.
async fn post_public_update(
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
        ..Default::default()
    };
    let rules = Rules {
        case_account: Some(case.account.clone()),
        ..RULES
    };
    concierge_common::crud::insert_new(conn, &rules, ctx, EVENTS, &case.name, update, now).await?;
    Ok(())
}

/// A client principal asking about another account's case or note gets
/// NOT_FOUND, as for one that does not exist.
fn own_account(
    p: &Principal,
    resource_type: &'static str,
    name: &str,
    account: &str,
) -> Result<()> {
    if p.role == Role::Client && p.account.as_deref() != Some(account) {
        return Err(Error::NotFound {
            resource_type,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Cases: staff work every case; a client opens cases for its own account
/// and follows them, and changes nothing else.
impl Policy<Case> for Rules {
    fn visibility(&self, _r: &Case) -> Visibility {
        Visibility::Public
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_see(&self, p: &Principal, r: &Case) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    /// A client opens cases for its own account, with the fields a client
    /// knows (case.proto lists them); the rest are the company's to set.
    async fn may_create(&self, _conn: &mut Conn<'_>, p: &Principal, r: &Case) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)?;
        if p.role == Role::Client {
            let staff_set = [
                ("case.owner", !r.owner.is_empty()),
                ("case.performing_team", !r.performing_team.is_empty()),
                ("case.carrier_reference", !r.carrier_reference.is_empty()),
                ("case.committed_time", r.committed_time.is_some()),
                ("case.construction", r.construction.is_some()),
                ("case.priority", r.priority == CasePriority::Critical as i32),
            ];
            if let Some((field, _)) = staff_set.iter().find(|(_, set)| *set) {
                return Err(Error::PermissionDenied(format!(
                    "{field} is set by the company, not by a client opening a case{}",
                    if *field == "case.priority" {
                        ": ask for HIGH and your account manager will escalate"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(())
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, r: &Case) -> Result<()> {
        own_account(p, "Case", &r.name, &r.account)?;
        if p.role == Role::Client {
            return Err(Error::PermissionDenied(
                "clients follow their cases and add public updates; staff change them".into(),
            ));
        }
        Ok(())
    }
    fn on_create(&self, ctx: &Ctx, c: &mut Case, now: i64) {
        c.state = case::State::New as i32;
        c.state_time = concierge_common::clock::micros_to_proto(now);
        c.creator = ctx.principal.subject.clone();
        if c.priority == CasePriority::Unspecified as i32 {
            c.priority = CasePriority::Medium as i32;
        }
        if let Some(f) = &self.facts {
            c.account_manager = f.account_manager.clone();
            c.account_tier = f.tier.clone();
        }
        if let Some((policy, revision)) = &self.sla_policy {
            c.sla_policy = policy.clone();
            c.sla_policy_revision = revision.clone();
        }
    }
    async fn derive(&self, conn: &mut Conn<'_>, c: &mut Case) -> Result<()> {
        c.withheld_by_dependency = dependencies::withheld(conn, c).await?;
        Ok(())
    }
    /// Every state the case enters is kept, in order: SLA clocks are read
    /// from it. A case closing (or reopening) releases (or again withholds)
    /// the cases that depend on it.
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        before: Option<&Case>,
        after: &Case,
        now: i64,
    ) -> Result<()> {
        // Every change may move a clock: its timers are re-armed right after
        // the commit, and this marker, durable with the change, makes sure.
        timers::mark_for_refresh(conn, &after.name, now).await?;
        // A jeopardy reason reaches the client as the public update the
        // change named, also when a case already in jeopardy gets a new one.
        if let Some(j) = &after.jeopardy
            && !j.public_note.is_empty()
            && before
                .and_then(|b| b.jeopardy.as_ref())
                .is_none_or(|b| b.public_note != j.public_note)
        {
            post_public_update(conn, ctx, after, Some(&j.public_note), &j.reason, now).await?;
        }
        if before.is_some_and(|b| b.state == after.state) {
            return Ok(());
        }
        if after.state == case::State::PendingClient as i32 && !after.state_reason.is_empty() {
            post_public_update(conn, ctx, after, None, &after.state_reason, now).await?;
        }
        let open = |c: &Case| {
            lifecycle::is_open(case::State::try_from(c.state).unwrap_or(case::State::Unspecified))
        };
        if before.is_some_and(|b| open(b) != open(after)) {
            dependencies::refresh_dependents(conn, &after.name).await?;
        }
        let next: i64 = on_conn!(conn, c => sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM case_states WHERE case_name = $1")
            .bind(&after.name)
            .fetch_one(&mut **c)
            .await?);
        let sql = "INSERT INTO case_states (case_name, seq, state, enter_time, reason, actor) VALUES ($1, $2, $3, $4, $5, $6)";
        on_conn!(conn, c => sqlx::query(sql)
            .bind(&after.name)
            .bind(next)
            .bind(i64::from(after.state))
            .bind(now)
            .bind(&after.state_reason)
            .bind(&ctx.principal.subject)
            .execute(&mut **c)
            .await?
            .rows_affected());
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

/// Notes: internal notes are for staff only and do not exist for a client,
/// through any method; a client reads and posts public updates on its own
/// account's cases.
impl Policy<Note> for Rules {
    fn visibility(&self, r: &Note) -> Visibility {
        if r.visibility == note::Visibility::Public as i32 {
            Visibility::Public
        } else {
            Visibility::Internal
        }
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_see(&self, p: &Principal, r: &Note) -> Result<()> {
        own_account(p, "Note", &r.name, &r.account)?;
        if p.role == Role::Client && r.visibility != note::Visibility::Public as i32 {
            return Err(Error::NotFound {
                resource_type: "Note",
                name: r.name.clone(),
            });
        }
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Ok(())
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, r: &Note) -> Result<()> {
        if p.role == Role::Client && r.visibility != note::Visibility::Public as i32 {
            return Err(Error::PermissionDenied(
                "clients post public updates only".into(),
            ));
        }
        Ok(())
    }
    fn on_create(&self, ctx: &Ctx, n: &mut Note, _now: i64) {
        let p = &ctx.principal;
        n.author = p.staff_member.clone().unwrap_or_else(|| p.subject.clone());
        n.author_display_name = p.display_name.clone();
        n.author_role = p.to_proto().role;
        // A note a caller writes arrives with its origin cleared; one the
        // service posts as part of a change says so.
        if n.origin == note::Origin::Unspecified as i32 {
            n.origin = note::Origin::Manual as i32;
        }
        n.account = self.case_account.clone().unwrap_or_default();
        n.notified_contacts = self.notified_contacts.clone();
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
    fn list_restriction(&self, p: &Principal) -> Option<concierge_common::filter::Expr> {
        (p.role == Role::Client).then_some(concierge_common::filter::Expr::Compare {
            column: "visibility",
            op: "=",
            value: concierge_common::filter::Value::Int(note::Visibility::Public as i64),
        })
    }
}

/// SLA policies: configuration like calendars, and every write keeps the
/// revision it produced, because cases stay on the revision they started with.
impl Policy<SlaPolicy> for Rules {
    fn visibility(&self, _r: &SlaPolicy) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "SLA policies")
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_only(p, "SLA policies")
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, _r: &SlaPolicy) -> Result<()> {
        match p.role {
            Role::Manager | Role::Admin => Ok(()),
            _ => Err(Error::PermissionDenied(
                "only managers and admins change SLA policies".into(),
            )),
        }
    }
    async fn check_references(&self, conn: &mut Conn<'_>, r: &SlaPolicy) -> Result<()> {
        // Taken for update: a delete of the calendar waits for this write,
        // then sees the policy that now counts in it.
        if concierge_common::resource::get_for_update(conn, &resources::CALENDARS, &r.calendar)
            .await?
            .is_none()
        {
            return Err(Error::invalid(
                "sla_policy.calendar",
                format!("{} does not exist", r.calendar),
            ));
        }
        Ok(())
    }
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        _before: Option<&SlaPolicy>,
        after: &SlaPolicy,
        now: i64,
    ) -> Result<()> {
        let revision: i64 = after.revision_id.parse().map_err(Error::internal)?;
        let body = prost::Message::encode_to_vec(after);
        on_conn!(conn, c => sqlx::query("INSERT INTO sla_policy_revisions (policy, revision, body, create_time) VALUES ($1, $2, $3, $4)")
            .bind(&after.name)
            .bind(revision)
            .bind(&body)
            .bind(now)
            .execute(&mut **c)
            .await?
            .rows_affected());
        Ok(())
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "SLA policies").map(|()| None)
    }
}

/// SLA clocks: read by whoever may read their case (a client, its own
/// account's), written only by the service as its cases change.
impl Policy<SlaClock> for Rules {
    fn visibility(&self, _r: &SlaClock) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, _p: &Principal, _name: &str) -> Result<()> {
        Ok(())
    }
    fn may_attempt_write(&self, _p: &Principal, _target: &str) -> Result<()> {
        Err(Error::PermissionDenied(
            "SLA clocks follow from their case; change the case".into(),
        ))
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, r: &SlaClock) -> Result<()> {
        <Self as Policy<SlaClock>>::may_attempt_write(self, p, &r.name)
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        Ok(if p.role == Role::Client {
            p.account.clone()
        } else {
            None
        })
    }
}

impl Cases {
    /// One revision of a policy, as it was written.
    pub(crate) async fn sla_policy_revision(
        &self,
        ctx: &Ctx,
        name: &str,
        revision: &str,
    ) -> Result<SlaPolicy> {
        staff_only(&ctx.principal, "SLA policies")?;
        let not_found = || Error::NotFound {
            resource_type: "SlaPolicy",
            name: format!("{name}@{revision}"),
        };
        let number: i64 = revision.parse().map_err(|_| not_found())?;
        let mut pooled = self.store.db().acquire().await?;
        let mut conn = pooled.conn();
        let body: Option<Vec<u8>> = on_conn!(&mut conn, c => sqlx::query_scalar(
            "SELECT body FROM sla_policy_revisions WHERE policy = $1 AND revision = $2")
            .bind(name)
            .bind(number)
            .fetch_optional(&mut **c)
            .await?);
        let body = body.ok_or_else(not_found)?;
        <SlaPolicy as prost::Message>::decode(body.as_slice()).map_err(Error::internal)
    }

    /// Every revision of a policy, oldest first.
    pub(crate) async fn sla_policy_revisions(
        &self,
        ctx: &Ctx,
        name: &str,
    ) -> Result<Vec<SlaPolicy>> {
        let _current: SlaPolicy = self.store.get(&RULES, ctx, name).await?;
        let mut pooled = self.store.db().acquire().await?;
        let mut conn = pooled.conn();
        let bodies: Vec<Vec<u8>> = on_conn!(&mut conn, c => sqlx::query_scalar(
            "SELECT body FROM sla_policy_revisions WHERE policy = $1 ORDER BY revision")
            .bind(name)
            .fetch_all(&mut **c)
            .await?);
        bodies
            .iter()
            .map(|b| <SlaPolicy as prost::Message>::decode(b.as_slice()).map_err(Error::internal))
            .collect()
    }
}

/// The case a link hangs from: "cases/a" of "cases/a/links/l".
fn link_source(link: &str) -> &str {
    link.rsplitn(3, '/').nth(2).unwrap_or_default()
}

/// Links between cases: staff work with them (clients see their cases, not
/// the company's bookkeeping between them). Both cases must exist and belong
/// to the same account; the other case gets the inverse link in the same
/// transaction, and loses it with it.
impl Policy<CaseLink> for Rules {
    fn visibility(&self, _r: &CaseLink) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_only(p, "case links")
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_only(p, "case links")
    }
    async fn may_write(&self, _conn: &mut Conn<'_>, p: &Principal, _r: &CaseLink) -> Result<()> {
        staff_only(p, "case links")
    }
    async fn check_references(&self, conn: &mut Conn<'_>, l: &CaseLink) -> Result<()> {
        let source = link_source(&l.name).to_string();
        let load = async |conn: &mut Conn<'_>, name: &str, field: &str| -> Result<Case> {
            let stored = concierge_common::resource::get(conn, &resources::CASES, name)
                .await?
                .ok_or_else(|| Error::invalid(field, format!("{name} does not exist")))?;
            Store::decode::<Case, Rules>(&stored)
        };
        let from = load(conn, &source, "parent").await?;
        let to = load(conn, &l.target, "case_link.target").await?;
        if from.account != to.account {
            return Err(Error::invalid(
                "case_link.target",
                format!("{} belongs to another account", l.target),
            ));
        }
        Ok(())
    }
    fn on_create(&self, ctx: &Ctx, l: &mut CaseLink, _now: i64) {
        let id = l.name.rsplit('/').next().unwrap_or_default().to_string();
        l.inverse = format!("{}/links/{id}", l.target);
        l.creator = ctx.principal.subject.clone();
    }
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&CaseLink>,
        after: &CaseLink,
        now: i64,
    ) -> Result<()> {
        if before.is_some() {
            return Ok(());
        }
        let source = link_source(&after.name).to_string();
        let kind = case_link::Type::try_from(after.r#type).unwrap_or(case_link::Type::Unspecified);
        let inverse = CaseLink {
            name: after.inverse.clone(),
            r#type: resources::inverse_type(kind) as i32,
            target: source,
            reason: after.reason.clone(),
            inverse: after.name.clone(),
            creator: after.creator.clone(),
            ..Default::default()
        };
        let stored = concierge_common::resource::Stored {
            name: inverse.name.clone(),
            parent: after.target.clone(),
            account: String::new(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: prost::Message::encode_to_vec(&inverse),
        };
        let columns = <CaseLink as concierge_common::crud::Resource<Rules>>::columns(&inverse);
        concierge_common::resource::insert(conn, &resources::CASE_LINKS, &stored, &columns).await?;
        dependencies::refresh(conn, &inverse.target).await?;
        dependencies::refresh(conn, &after.target).await
    }
    async fn after_delete(&self, conn: &mut Conn<'_>, l: &CaseLink) -> Result<()> {
        concierge_common::resource::delete(conn, &resources::CASE_LINKS, &l.inverse).await?;
        dependencies::refresh(conn, &l.target).await?;
        dependencies::refresh(conn, link_source(&l.name)).await
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_only(p, "case links").map(|()| None)
    }
}
