//! AIP standard methods over resource tables, shared by every service: create
//! (idempotent on `request_id`), get, list (AIP-160 filter, `order_by`,
//! keyset pages), update (field mask, etag), custom state changes and delete,
//! each writing its outbox event in the same transaction. What a principal
//! may do, and the rules between resources, stay with each service: it gives
//! a [`Policy`] per resource kind.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;

use crate::clock::{SharedClock, from_micros, to_micros};
use crate::error::{Error, Result, Violations};
use crate::filter::Value;
use crate::outbox::{self, NewEvent};
use crate::paging::{PageQuery, PageTokens};
use crate::principal::Principal;
use crate::relay::{self, Bus, BusTarget, Nudge};
use crate::resource::{self, Kind, Scope, Stored};
use crate::storage::{Conn, Db};
use crate::supervise::{Need, Supervisor};
use crate::{idempotency, names};
use concierge_proto::catalogue::{Created, Deleted, EventOf, Undeleted, Updated};
use concierge_proto::events::Visibility;

/// What the generic methods need of a resource message. `P` is the service's
/// [`Policy`] type: it makes the impl local to the service (the message types
/// come from the proto crate), and ties each resource to its service's rules.
pub trait Resource<P>:
    prost::Message + prost::Name + Default + Clone + Send + Sync + 'static
{
    const KIND: &'static Kind;
    /// Collections of the name pattern, e.g. `["accounts", "sites"]`.
    const COLLECTIONS: &'static [&'static str];
    /// The request field the resource travels in, e.g. `inventory_item`.
    const FIELD: &'static str;
    /// Fields an update mask may name.
    const UPDATABLE: &'static [&'static str];

    fn name(&self) -> &str;
    /// The etag the caller sent (empty for append-only resources).
    fn etag(&self) -> &str;
    fn set_name(&mut self, name: String);
    /// Sets the output-only bookkeeping fields from the stored row.
    fn set_meta(&mut self, create_time: i64, update_time: i64, etag: String);
    /// The filter columns' values.
    fn columns(&self) -> Vec<(&'static str, Value)>;
    /// Copies `path` (one of `UPDATABLE`) from `from`.
    fn copy_field(&mut self, from: &Self, path: &str);
    /// Checks the writable fields, naming each bad one under `FIELD`.
    fn check(&self, v: &mut Violations);
    /// Clears output-only fields a caller may have sent.
    fn clear_output_only(&mut self);
    /// Checks the caller's id for a new resource (AIP-133 `*_id`) or makes
    /// one up; a kind with its own id rules overrides it.
    fn new_id(field: &str, requested: &str) -> Result<String> {
        names::new_id(field, requested)
    }
    /// The account the resource belongs to, "accounts/{account}", or empty:
    /// what client principals are scoped by and events are tagged with.
    fn account(&self) -> String {
        account_of(self.name()).unwrap_or_default()
    }
}

/// The account part of a resource name ("accounts/x/sites/y" → "accounts/x").
pub fn account_of(name: &str) -> Option<String> {
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some("accounts"), Some(id)) if !id.is_empty() => Some(format!("accounts/{id}")),
        _ => None,
    }
}

/// Who may do what with one resource kind. It only decides, from the
/// principal, the resource and the facts the store read for the decision
/// ([`Lifecycle::facts`]); it never touches storage, so a service's whole
/// authorisation matrix reads (and is tested) on its own.
pub trait Authorize<R>: Send + Sync {
    /// What a write decision needs that the resource does not carry (the
    /// account as stored, whose manager may write under it); `()` for most.
    type Facts: Default + Send + Sync;
    /// Who may see events about `r`.
    fn visibility(&self, r: &R) -> Visibility;
    /// What an event about `r` carries when `audience` may see it: all of
    /// `r` by default. A kind with fields for staff only leaves them out of
    /// the events a client's systems may receive (PUBLIC ones).
    fn event_payload(&self, r: &R, _audience: Visibility) -> R
    where
        R: Clone,
    {
        r.clone()
    }
    /// Before anything is read for `p`: a client asking about another
    /// account must get NOT_FOUND, exactly as for a name that does not exist.
    fn may_read(&self, p: &Principal, name: &str) -> Result<()>;
    /// After a resource is read, for resources whose name does not tell
    /// whose they are (a case belongs to the account in its `account`
    /// field): a client gets NOT_FOUND for another account's.
    fn may_see(&self, _p: &Principal, _r: &R) -> Result<()> {
        Ok(())
    }
    /// Before a write's input is even looked at (`target` is the parent of a
    /// create, the name otherwise): refusals that must not depend on the input.
    fn may_attempt_write(&self, p: &Principal, target: &str) -> Result<()>;
    /// Whether `p` may write `r` as it stands: asked of the stored resource
    /// before a change and of the new one after it.
    fn may_write(&self, p: &Principal, r: &R, facts: &Self::Facts) -> Result<()>;
    /// Whether `p` may create `r`; by default what [`Authorize::may_write`]
    /// says. A kind whose creators differ from its editors (a client opens a
    /// case but does not change it) says so here.
    fn may_create(&self, p: &Principal, r: &R, facts: &Self::Facts) -> Result<()> {
        self.may_write(p, r, facts)
    }
    /// The account a list is confined to for `p`, after checking `parent`.
    fn list_account(&self, p: &Principal, parent: &str) -> Result<Option<String>>;
    /// A condition every list of `p` must meet beyond the account (a client
    /// lists public notes only).
    fn list_restriction(&self, _p: &Principal) -> Option<crate::filter::Expr> {
        None
    }
}

/// What goes with a write of one resource kind, in the write's transaction:
/// the facts its authorisation rests on, the rules between resources, the
/// fields it derives and the rows it records with it. It never decides who
/// may: that is [`Authorize`]'s.
pub trait Lifecycle<R>: Authorize<R> {
    /// Reads what [`Authorize::may_write`] decides on for `p` (the account a
    /// write lands in, which must be alive).
    fn facts(
        &self,
        _conn: &mut Conn<'_>,
        _p: &Principal,
        _r: &R,
    ) -> impl Future<Output = Result<Self::Facts>> + Send {
        async { Ok(Self::Facts::default()) }
    }
    /// Rules between resources (references exist, uniqueness) on what is about
    /// to be written.
    fn check_references(
        &self,
        _conn: &mut Conn<'_>,
        _r: &R,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Refuses a delete the data does not allow (a site that still has inventory).
    fn check_delete(
        &self,
        _conn: &mut Conn<'_>,
        _r: &R,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Writes that go with a delete at `now`, in its transaction (the other
    /// half of a two-way link).
    fn after_delete(
        &self,
        _conn: &mut Conn<'_>,
        _r: &R,
        _now: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Sets the output-only fields of a new resource (its initial state, its
    /// creator).
    fn on_create(&self, _ctx: &Ctx, _r: &mut R, _now: i64) {}
    /// Output-only fields derived from other resources (a case withheld by
    /// an open dependency), set in a change's transaction just before it is
    /// written at `now`, so the stored resource, the reply and the event
    /// agree; rows that follow from them may be written with it.
    fn derive(
        &self,
        _conn: &mut Conn<'_>,
        _r: &mut R,
        _now: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Writes that go with a change, in its transaction (a state history
    /// row). `before` is None for a create.
    fn after_write(
        &self,
        _conn: &mut Conn<'_>,
        _ctx: &Ctx,
        _before: Option<&R>,
        _after: &R,
        _now: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A service's rules for one resource kind: who may ([`Authorize`]) and
/// what goes with a write ([`Lifecycle`]).
pub trait Policy<R>: Lifecycle<R> {}

impl<R, T: Lifecycle<R>> Policy<R> for T {}

/// What a gRPC handler returns.
pub type Reply<T> = std::result::Result<tonic::Response<T>, tonic::Status>;

/// A handler's result as gRPC, through the one error mapping.
pub fn reply<T>(result: Result<T>) -> Reply<T> {
    result
        .map(tonic::Response::new)
        .map_err(tonic::Status::from)
}

/// A create request as idempotency hashes it: without its `request_id`.
#[macro_export]
macro_rules! without_request_id {
    ($req:expr) => {{
        let mut copy = $req.clone();
        copy.request_id.clear();
        copy
    }};
}

/// The name, etag and timestamps of a resource that keeps them in its
/// `name`, `etag`, `create_time` and `update_time` fields, as most do: the
/// four [`Resource`] methods, written once.
#[macro_export]
macro_rules! resource_bookkeeping {
    () => {
        fn name(&self) -> &str {
            &self.name
        }
        fn etag(&self) -> &str {
            &self.etag
        }
        fn set_name(&mut self, name: String) {
            self.name = name;
        }
        fn set_meta(&mut self, create_time: i64, update_time: i64, etag: String) {
            self.create_time = $crate::clock::micros_to_proto(create_time);
            self.update_time = $crate::clock::micros_to_proto(update_time);
            self.etag = etag;
        }
    };
}

/// The paging parameters of an AIP-132 list request.
#[macro_export]
macro_rules! page_query {
    ($req:expr) => {
        $crate::page_query!($req, "", false)
    };
    ($req:expr, $parent:expr) => {
        $crate::page_query!($req, $parent, false)
    };
    ($req:expr, $parent:expr, $show_deleted:expr) => {
        $crate::paging::PageQuery {
            parent: $parent,
            page_size: $req.page_size,
            page_token: &$req.page_token,
            filter: &$req.filter,
            order_by: &$req.order_by,
            show_deleted: $show_deleted,
        }
    };
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub request_id: String,
}

impl Ctx {
    /// The service acting on its own behalf (timers, lookups a client's
    /// request needs but the client may not make itself).
    pub fn system(component: &str, request_id: &str) -> Self {
        Self {
            principal: Principal::system(component),
            request_id: request_id.to_string(),
        }
    }
}

/// The parts of a create request.
#[derive(Debug)]
pub struct New<'a, R> {
    pub parent: &'a str,
    pub resource: Option<R>,
    pub id: &'a str,
    pub request_id: &'a str,
}

/// A service's resource tables, outbox and page tokens.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    tokens: PageTokens,
    clock: SharedClock,
    nudge: Nudge,
    /// e.g. "concierge.customers.v1": the catalogue every event it records
    /// must be of.
    package: &'static str,
    /// e.g. "customers".
    source: &'static str,
}

/// The body is stored without the bookkeeping fields, which live in columns.
pub fn strip_meta<R: Resource<P>, P>(r: &R) -> Vec<u8> {
    let mut copy = r.clone();
    copy.set_meta(0, 0, String::new());
    copy.encode_to_vec()
}

/// The package and service an event is published under, e.g.
/// `concierge.cases.v1` and `cases`.
#[derive(Debug, Clone, Copy)]
pub struct Events {
    pub package: &'static str,
    pub source: &'static str,
}

/// Writes the event `event` about `r`, which is its payload.
pub async fn record_event<R: Resource<P>, P: Policy<R>>(
    conn: &mut Conn<'_>,
    policy: &P,
    ctx: &Ctx,
    events: Events,
    event: EventOf<R>,
    r: &R,
    now: i64,
) -> Result<()> {
    // The payload's type is the compiler's to check; that a service
    // announces its own domain's events only is checked here.
    if !event
        .event_type()
        .strip_prefix(events.package)
        .is_some_and(|t| t.starts_with('.'))
    {
        return Err(Error::internal(anyhow::anyhow!(
            "{} publishes {}.* events, not {event:?}",
            events.source,
            events.package
        )));
    }
    let account = r.account();
    // A staff-only event type stays internal whatever its payload.
    let visibility = match event.audience() {
        Visibility::Internal => Visibility::Internal,
        _ => policy.visibility(r),
    };
    let payload = policy.event_payload(r, visibility);
    outbox::record(
        conn,
        NewEvent {
            event,
            source: events.source,
            subject: r.name(),
            account: &account,
            visibility,
            actor: &ctx.principal,
            request_id: &ctx.request_id,
            occur_time: from_micros(now),
            payload: &payload,
        },
    )
    .await?;
    Ok(())
}

/// Inserts a checked, named resource inside the caller's transaction with
/// everything a create does (create hook, row, after-write hook, `created`
/// event): how a change posts a resource of another kind as part of itself,
/// e.g. a transition's public update, so both commit or neither does.
pub async fn insert_new<R: Resource<P> + Created, P: Policy<R>>(
    conn: &mut Conn<'_>,
    policy: &P,
    ctx: &Ctx,
    events: Events,
    parent: &str,
    mut r: R,
    now: i64,
) -> Result<R> {
    policy.on_create(ctx, &mut r, now);
    let stored = Stored {
        name: r.name().to_string(),
        parent: parent.to_string(),
        account: r.account(),
        create_time: now,
        update_time: now,
        delete_time: 0,
        revision: 1,
        body: strip_meta::<R, P>(&r),
    };
    resource::insert(conn, R::KIND, &stored, &r.columns()).await?;
    r.set_meta(now, now, stored.etag());
    policy.after_write(conn, ctx, None, &r, now).await?;
    record_event(conn, policy, ctx, events, R::CREATED, &r, now).await?;
    Ok(r)
}

/// A singleton's one name is its collection, e.g. "disputeSettings".
fn singleton_name<R: Resource<P>, P>(field: &str, name: &str) -> Result<()> {
    let only = R::COLLECTIONS[0];
    if name != only {
        return Err(Error::invalid(
            field,
            format!("the settings are one resource, {only:?}"),
        ));
    }
    Ok(())
}

fn not_found<R: Resource<P>, P>(name: &str) -> Error {
    Error::NotFound {
        resource_type: R::KIND.resource_type,
        name: name.to_string(),
    }
}

impl Store {
    /// Migrates `db` (common tables, then the service's) and opens the store.
    pub async fn open(
        db: Db,
        sqlite: &Migrator,
        postgres: &Migrator,
        clock: SharedClock,
        package: &'static str,
        source: &'static str,
    ) -> Result<Self> {
        db.migrate(sqlite, postgres).await?;
        let key = {
            let mut tx = db.begin().await?;
            let key = outbox::service_secret(&mut tx.conn(), "page_token_key", 32).await?;
            tx.commit().await?;
            key
        };
        let store = Self {
            inner: Arc::new(Inner {
                db,
                tokens: PageTokens::new(key),
                clock,
                nudge: Nudge::default(),
                package,
                source,
            }),
        };
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub fn now(&self) -> i64 {
        to_micros(self.inner.clock.now())
    }

    /// Wakes the relay: call after committing a transaction that wrote events.
    pub fn nudge(&self) {
        self.inner.nudge.poke();
    }

    /// Starts relaying the outbox to `bus`.
    pub fn relay_events(&self, bus: Bus) -> tokio::task::JoinHandle<()> {
        relay::spawn(
            self.inner.db.clone(),
            bus,
            self.inner.clock.clone(),
            self.inner.nudge.clone(),
            Duration::from_secs(1),
        )
    }

    /// Starts the store's background work under `supervisor`: the relay of
    /// its outbox to `bus` (when there is one; NATS is connected in the
    /// background, so a bus outage at start delays events, not the service)
    /// and the hourly purge of expired `request_id`s, and the gauges of its
    /// database pool.
    pub fn supervise(&self, supervisor: &Supervisor, bus: Option<BusTarget>) {
        let source = self.inner.source;
        self.inner.db.report_pool(supervisor, source);
        if let Some(bus) = bus {
            let (db, clock, nudge) = (
                self.inner.db.clone(),
                self.inner.clock.clone(),
                self.inner.nudge.clone(),
            );
            supervisor.spawn(
                format!("{source}-outbox-relay"),
                Need::Required,
                move || {
                    relay::run(
                        db.clone(),
                        bus.clone(),
                        source,
                        clock.clone(),
                        nudge.clone(),
                        Duration::from_secs(1),
                    )
                },
            );
        }
        let this = self.clone();
        supervisor.spawn(
            format!("{source}-request-id-purge"),
            Need::Optional,
            move || {
                let this = this.clone();
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(3600));
                    loop {
                        tick.tick().await;
                        match this.purge_expired_request_ids().await {
                            Ok(n) if n > 0 => {
                                tracing::info!(purged = n, "forgot expired request ids")
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "purging expired request ids failed")
                            }
                        }
                    }
                }
            },
        );
    }

    /// Forgets `request_id`s older than their retention.
    pub async fn purge_expired_request_ids(&self) -> Result<u64> {
        let mut tx = self.inner.db.begin().await?;
        let n = idempotency::purge_expired(&mut tx.conn(), self.now()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Decodes a stored row into its resource with the bookkeeping fields set.
    pub fn decode<R: Resource<P>, P>(stored: &Stored) -> Result<R> {
        let mut r = R::decode(stored.body.as_slice()).map_err(Error::internal)?;
        r.set_meta(stored.create_time, stored.update_time, stored.etag());
        Ok(r)
    }

    /// Writes the event `event` about `r`.
    pub async fn record<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        event: EventOf<R>,
        r: &R,
        now: i64,
    ) -> Result<()> {
        record_event(conn, policy, ctx, self.events(), event, r, now).await
    }

    /// Who this store's events come from.
    pub fn events(&self) -> Events {
        Events {
            package: self.inner.package,
            source: self.inner.source,
        }
    }

    /// AIP-133 create, idempotent on `request_id`.
    pub async fn create<R: Resource<P> + Created, P: Policy<R>, Q: prost::Message>(
        &self,
        policy: &P,
        ctx: &Ctx,
        method: &'static str,
        request: &Q,
        new: New<'_, R>,
    ) -> Result<R> {
        self.create_or_validate(policy, ctx, method, request, new, false)
            .await
    }

    /// [`Self::create`], or with `validate_only` every check a real create
    /// runs (authorisation, fields, references, hooks) inside a transaction
    /// that is then rolled back: the resource as it would be, nothing saved,
    /// and a caller who may not create learns nothing more than that.
    pub async fn create_or_validate<R: Resource<P> + Created, P: Policy<R>, Q: prost::Message>(
        &self,
        policy: &P,
        ctx: &Ctx,
        method: &'static str,
        request: &Q,
        new: New<'_, R>,
        validate_only: bool,
    ) -> Result<R> {
        self.create_learned(policy, ctx, method, request, new, validate_only, |_| {})
            .await
    }

    /// [`Self::create_or_validate`] with what the request learned before it
    /// (a new case's account manager and tier, from the customers service;
    /// the SLA policy it pins): `learned` sets those output-only fields on
    /// the new resource once the caller's copies of them are cleared, before
    /// the lifecycle hooks run. What the hooks themselves need to write with
    /// the resource (a new case's clocks) travels in the `policy` value the
    /// request passes.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_learned<R: Resource<P> + Created, P: Policy<R>, Q: prost::Message>(
        &self,
        policy: &P,
        ctx: &Ctx,
        method: &'static str,
        request: &Q,
        new: New<'_, R>,
        validate_only: bool,
        learned: impl FnOnce(&mut R) + Send,
    ) -> Result<R> {
        let New {
            parent,
            resource,
            id,
            request_id,
        } = new;
        policy.may_attempt_write(&ctx.principal, parent)?;
        let mut v = Violations::new();
        let parent_collections = &R::COLLECTIONS[..R::COLLECTIONS.len() - 1];
        if parent_collections.is_empty() {
            if !parent.is_empty() {
                v.add("parent", "must be empty: this collection has no parent");
            }
        } else {
            v.check(names::parse("parent", parent, parent_collections));
        }
        let id = v.check(R::new_id(&format!("{}_id", R::FIELD), id));
        let Some(mut r) = resource else {
            // Report the missing resource alone, not every empty field of a
            // resource that was never sent.
            v.add(R::FIELD, "required");
            return v.into_result().map(|_| R::default());
        };
        r.clear_output_only();
        learned(&mut r);
        if let Some(id) = &id {
            let collection = R::COLLECTIONS[R::COLLECTIONS.len() - 1];
            r.set_name(if parent.is_empty() {
                format!("{collection}/{id}")
            } else {
                format!("{parent}/{collection}/{id}")
            });
        }
        r.check(&mut v);
        v.into_result()?;

        let key = if validate_only {
            None
        } else {
            idempotency::Key::new(&ctx.principal.subject, request_id, method, request)?
        };
        // The key is looked up only when this attempt cannot be the first:
        // its insert finds an earlier one (on PostgreSQL after waiting for a
        // concurrent duplicate to commit), or the attempt failed, as a retry
        // of a create that already made its resource does. A first create
        // spends no statement on it.
        let attempt: Result<Option<R>> = async {
            let mut tx = self.inner.db.begin().await?;
            let mut conn = tx.conn();
            let facts = policy.facts(&mut conn, &ctx.principal, &r).await?;
            policy.may_create(&ctx.principal, &r, &facts)?;
            policy.check_references(&mut conn, &r).await?;
            let now = self.now();
            let r = insert_new(&mut conn, policy, ctx, self.events(), parent, r, now).await?;
            if validate_only {
                // Dropping the transaction rolls every write above back.
                drop(tx);
                return Ok(Some(r));
            }
            if let Some(key) = &key
                && !key.save_first(&mut conn, &r, now).await?
            {
                return Ok(None);
            }
            tx.commit().await?;
            self.nudge();
            Ok(Some(r))
        }
        .await;
        match (attempt, &key) {
            (Ok(Some(r)), _) => Ok(r),
            (Ok(None), Some(key)) => {
                let mut pooled = self.inner.db.acquire().await?;
                key.replay::<R>(&mut pooled.conn())
                    .await?
                    .ok_or_else(|| idempotency::in_progress(key))
            }
            (Err(e), Some(key)) => {
                let mut pooled = match self.inner.db.acquire().await {
                    Ok(pooled) => pooled,
                    Err(_) => return Err(e),
                };
                match key.replay::<R>(&mut pooled.conn()).await {
                    Ok(Some(previous)) => Ok(previous),
                    Err(reused @ Error::RequestIdReused { .. }) => Err(reused),
                    _ => Err(e),
                }
            }
            (Ok(None), None) => Err(Error::internal(anyhow::anyhow!(
                "a create without a request_id found one"
            ))),
            (Err(e), None) => Err(e),
        }
    }

    /// AIP-131 get.
    pub async fn get<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
    ) -> Result<R> {
        names::parse("name", name, R::COLLECTIONS)?;
        policy.may_read(&ctx.principal, name)?;
        let mut pooled = self.inner.db.acquire().await?;
        let stored = resource::get(&mut pooled.conn(), R::KIND, name)
            .await?
            .ok_or_else(|| not_found::<R, P>(name))?;
        let r = Self::decode::<R, P>(&stored)?;
        policy.may_see(&ctx.principal, &r)?;
        Ok(r)
    }

    /// AIP-132 list with AIP-160 filter, `order_by` and keyset pagination.
    /// A last parent segment of "-" reads across the account (AIP-159).
    pub async fn list<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        page: PageQuery<'_>,
    ) -> Result<(Vec<R>, String)> {
        let (items, next, _) = self.list_page(policy, ctx, page, false).await?;
        Ok((items, next))
    }

    /// [`Self::list`] and the number of resources the list holds across all
    /// its pages (`total_size`), counted under the same conditions.
    pub async fn list_counted<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        page: PageQuery<'_>,
    ) -> Result<(Vec<R>, String, i32)> {
        let (items, next, total) = self.list_page(policy, ctx, page, true).await?;
        Ok((items, next, total.unwrap_or_default()))
    }

    async fn list_page<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        page: PageQuery<'_>,
        count: bool,
    ) -> Result<(Vec<R>, String, Option<i32>)> {
        let parent_collections = &R::COLLECTIONS[..R::COLLECTIONS.len() - 1];
        let p = &ctx.principal;
        let scope = if parent_collections.is_empty() {
            if !page.parent.is_empty() {
                return Err(Error::invalid(
                    "parent",
                    "must be empty: this collection has no parent",
                ));
            }
            Scope::Parent(String::new())
        } else {
            let ids = names::parse("parent", page.parent, parent_collections)?;
            if ids.iter().all(|id| *id == "-") {
                // `accounts/-/sites/-`: every parent of every ancestor.
                Scope::All
            } else if ids.last() == Some(&"-") && ids.len() > 1 {
                Scope::Account(format!("accounts/{}", ids[0]))
            } else if ids.contains(&"-") {
                return Err(Error::invalid(
                    "parent",
                    "only the last segment may be the wildcard \"-\"",
                ));
            } else {
                Scope::Parent(page.parent.to_string())
            }
        };
        let account = policy.list_account(p, page.parent)?;
        let mut query = resource::prepare(R::KIND, &page, scope, account)?;
        if let Some(must) = policy.list_restriction(p) {
            query.filter = Some(match query.filter.take() {
                Some(asked) => crate::filter::Expr::And(vec![asked, must]),
                None => must,
            });
        }
        let (after, counted) =
            match self
                .inner
                .tokens
                .decode_counted(R::KIND.table, &p.subject, &page)?
            {
                Some((cursor, counted)) => (Some(cursor), counted),
                None => (None, None),
            };
        query.after = after;
        let mut pooled = self.inner.db.acquire().await?;
        let result = resource::list(&mut pooled.conn(), R::KIND, &query).await?;
        // Counted once, on the first page; the pages after carry the count
        // in their (signed) token, so paging through a big list costs one
        // count, not one per page.
        let total = match (count, counted) {
            (false, _) => None,
            (true, Some(n)) => Some(n),
            (true, None) => {
                Some(resource::count_matching(&mut pooled.conn(), R::KIND, &query).await?)
            }
        };
        let items = result
            .items
            .iter()
            .map(Self::decode::<R, P>)
            .collect::<Result<Vec<R>>>()?;
        let next = result
            .next
            .map(|c| {
                self.inner
                    .tokens
                    .encode_counted(R::KIND.table, &p.subject, &page, &c, total)
            })
            .unwrap_or_default();
        Ok((
            items,
            next,
            total.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        ))
    }

    /// Every resource of a kind that `filter` selects, page by page: for
    /// small configuration collections (policies), not for cases.
    pub async fn list_all<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        filter: &str,
    ) -> Result<Vec<R>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = PageQuery {
                parent: "",
                page_size: crate::paging::MAX_PAGE_SIZE as i32,
                page_token: &token,
                filter,
                order_by: "",
                show_deleted: false,
            };
            let (items, next) = self.list(policy, ctx, page).await?;
            all.extend(items);
            if next.is_empty() {
                return Ok(all);
            }
            token = next;
        }
    }

    /// A singleton resource (a service's settings): the one row named by
    /// `R::COLLECTIONS[0]`, or `default` with the etag of revision 0 while
    /// nobody has written it. Reading it is the policy's to allow.
    pub async fn get_singleton<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
        default: impl FnOnce() -> R,
    ) -> Result<R> {
        singleton_name::<R, P>("name", name)?;
        policy.may_read(&ctx.principal, name)?;
        let mut pooled = self.inner.db.acquire().await?;
        Ok(
            match resource::get(&mut pooled.conn(), R::KIND, name).await? {
                Some(row) => Self::decode::<R, P>(&row)?,
                None => {
                    let mut r = default();
                    r.set_meta(0, 0, resource::etag(0));
                    r
                }
            },
        )
    }

    /// AIP-134 update of a singleton by mask, guarded by the etag; the first
    /// update writes `default` with the change. Announced by `R::UPDATED`.
    pub async fn update_singleton<R: Resource<P> + Updated, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        patch: Option<R>,
        mask: Option<prost_types::FieldMask>,
        default: impl FnOnce() -> R + Send,
    ) -> Result<R> {
        let patch = patch.ok_or_else(|| Error::invalid(R::FIELD, "required"))?;
        let name = patch.name().to_string();
        singleton_name::<R, P>(&format!("{}.name", R::FIELD), &name)?;
        policy.may_attempt_write(&ctx.principal, &name)?;
        // A singleton's writers do not depend on facts: refused before the
        // request is looked at further.
        policy.may_write(&ctx.principal, &patch, &P::Facts::default())?;
        let paths = mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid(
                "update_mask",
                "name the fields to change, or \"*\" for all",
            ));
        }
        let paths: Vec<String> = if paths.iter().any(|p| p == "*") {
            R::UPDATABLE.iter().map(|p| p.to_string()).collect()
        } else {
            let mut v = Violations::new();
            for p in &paths {
                if !R::UPDATABLE.contains(&p.as_str()) {
                    v.add(
                        "update_mask",
                        format!(
                            "`{p}` cannot be updated; updatable: {}",
                            R::UPDATABLE.join(", ")
                        ),
                    );
                }
            }
            v.into_result()?;
            paths
        };
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        let row = resource::get_for_update(&mut conn, R::KIND, &name).await?;
        let mut r = match &row {
            Some(row) => Self::decode::<R, P>(row)?,
            None => default(),
        };
        let current = row.as_ref().map_or(resource::etag(0), |r| r.etag());
        if !patch.etag().is_empty() && patch.etag() != current {
            return Err(Error::EtagMismatch { name, current });
        }
        let facts = policy.facts(&mut conn, &ctx.principal, &r).await?;
        policy.may_write(&ctx.principal, &r, &facts)?;
        for p in &paths {
            r.copy_field(&patch, p);
        }
        let mut v = Violations::new();
        r.check(&mut v);
        v.into_result()?;
        let now = self.now().max(row.as_ref().map_or(0, |r| r.update_time));
        let next = Stored {
            name: name.clone(),
            parent: String::new(),
            account: String::new(),
            create_time: row.as_ref().map_or(now, |r| r.create_time),
            update_time: now,
            delete_time: 0,
            revision: row.as_ref().map_or(1, |r| r.revision + 1),
            body: strip_meta::<R, P>(&r),
        };
        match &row {
            Some(old) => resource::update(&mut conn, R::KIND, &next, old.revision, &[]).await?,
            None => resource::insert(&mut conn, R::KIND, &next, &[]).await?,
        }
        r.set_meta(next.create_time, now, next.etag());
        self.record(policy, &mut conn, ctx, R::UPDATED, &r, now)
            .await?;
        tx.commit().await?;
        self.nudge();
        Ok(r)
    }

    /// AIP-134 update with a field mask, guarded by the etag.
    pub async fn update<R: Resource<P> + Updated, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        resource: Option<R>,
        mask: Option<prost_types::FieldMask>,
    ) -> Result<R> {
        self.update_or_validate(policy, ctx, resource, mask, false, None)
            .await
    }

    /// An update with AIP-163 `validate_only`: every check a real update
    /// makes (authorisation, etag, fields, references) runs inside the
    /// transaction, which is then rolled back; the reply is the resource as
    /// it would have been written. `once`, the key of a request's
    /// `request_id`, makes a retry get the first reply.
    pub async fn update_or_validate<R: Resource<P> + Updated, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        resource: Option<R>,
        mask: Option<prost_types::FieldMask>,
        validate_only: bool,
        once: Option<idempotency::Key>,
    ) -> Result<R> {
        let Some(patch) = resource else {
            return Err(Error::invalid(R::FIELD, "required"));
        };
        let name = patch.name().to_string();
        names::parse(&format!("{}.name", R::FIELD), &name, R::COLLECTIONS)?;
        let paths = mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid(
                "update_mask",
                "name the fields to change, or \"*\" for all",
            ));
        }
        let paths: Vec<&str> = if paths.iter().any(|p| p == "*") {
            R::UPDATABLE.to_vec()
        } else {
            let mut v = Violations::new();
            for p in &paths {
                if !R::UPDATABLE.contains(&p.as_str()) {
                    v.add(
                        "update_mask",
                        format!(
                            "`{p}` cannot be updated; updatable: {}",
                            R::UPDATABLE.join(", ")
                        ),
                    );
                }
            }
            v.into_result()?;
            paths.iter().map(String::as_str).collect()
        };
        policy.may_attempt_write(&ctx.principal, &name)?;
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && let Some(previous) = key.replay::<R>(&mut conn).await?
        {
            return Ok(previous);
        }
        let stored = resource::get_for_update(&mut conn, R::KIND, &name)
            .await?
            .filter(|s| s.delete_time == 0)
            .ok_or_else(|| not_found::<R, P>(&name))?;
        let mut r: R = Self::decode::<R, P>(&stored)?;
        policy.may_see(&ctx.principal, &r)?;
        resource::check_etag(&name, patch.etag(), &stored)?;
        let before = r.clone();
        // Authorised against the resource as it stands and as it will stand
        // (its name, which the facts hang on, does not change).
        let facts = policy.facts(&mut conn, &ctx.principal, &r).await?;
        policy.may_write(&ctx.principal, &r, &facts)?;
        for p in &paths {
            r.copy_field(&patch, p);
        }
        let mut v = Violations::new();
        r.check(&mut v);
        v.into_result()?;
        policy.may_write(&ctx.principal, &r, &facts)?;
        policy.check_references(&mut conn, &r).await?;
        let now = self.now().max(stored.update_time);
        policy.derive(&mut conn, &mut r, now).await?;
        let next = Stored {
            update_time: now,
            revision: stored.revision + 1,
            body: strip_meta::<R, P>(&r),
            ..stored.clone()
        };
        resource::update(&mut conn, R::KIND, &next, stored.revision, &r.columns()).await?;
        r.set_meta(next.create_time, next.update_time, next.etag());
        policy
            .after_write(&mut conn, ctx, Some(&before), &r, now)
            .await?;
        if validate_only {
            // Dropping the transaction rolls it back.
            return Ok(r);
        }
        self.record(policy, &mut conn, ctx, R::UPDATED, &r, now)
            .await?;
        if let Some(key) = &once {
            key.save(&mut conn, &r, now).await?;
        }
        tx.commit().await?;
        self.nudge();
        Ok(r)
    }

    /// A custom method that changes a stored resource (AIP-136): `change` may
    /// refuse (nothing is written) or edit the resource and its row, which
    /// `event` then announces.
    #[allow(clippy::too_many_arguments)]
    pub async fn change<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        event: EventOf<R>,
        include_deleted: bool,
        change: impl FnOnce(&mut R, &mut Stored) -> Result<()> + Send,
    ) -> Result<R> {
        self.change_once(
            policy,
            ctx,
            None,
            name,
            etag,
            event,
            include_deleted,
            change,
        )
        .await
    }

    /// [`Store::change`] made idempotent by `once`, the key of the request's
    /// `request_id`: a retry gets the first reply rather than making the
    /// change again (which a state transition would refuse, or a rollback
    /// repeat). The key is read and saved in the change's transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_once<R: Resource<P>, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        once: Option<idempotency::Key>,
        name: &str,
        etag: &str,
        event: EventOf<R>,
        include_deleted: bool,
        change: impl FnOnce(&mut R, &mut Stored) -> Result<()> + Send,
    ) -> Result<R> {
        names::parse("name", name, R::COLLECTIONS)?;
        policy.may_attempt_write(&ctx.principal, name)?;
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && let Some(previous) = key.replay::<R>(&mut conn).await?
        {
            return Ok(previous);
        }
        let stored = resource::get_for_update(&mut conn, R::KIND, name)
            .await?
            .filter(|s| include_deleted || s.delete_time == 0)
            .ok_or_else(|| not_found::<R, P>(name))?;
        let mut r: R = Self::decode::<R, P>(&stored)?;
        policy.may_see(&ctx.principal, &r)?;
        resource::check_etag(name, etag, &stored)?;
        let facts = policy.facts(&mut conn, &ctx.principal, &r).await?;
        policy.may_write(&ctx.principal, &r, &facts)?;
        let before = r.clone();
        let now = self.now().max(stored.update_time);
        let mut next = Stored {
            update_time: now,
            revision: stored.revision + 1,
            ..stored.clone()
        };
        change(&mut r, &mut next)?;
        policy.derive(&mut conn, &mut r, now).await?;
        next.body = strip_meta::<R, P>(&r);
        resource::update(&mut conn, R::KIND, &next, stored.revision, &r.columns()).await?;
        r.set_meta(next.create_time, next.update_time, next.etag());
        policy
            .after_write(&mut conn, ctx, Some(&before), &r, now)
            .await?;
        self.record(policy, &mut conn, ctx, event, &r, now).await?;
        if let Some(key) = &once {
            key.save(&mut conn, &r, now).await?;
        }
        tx.commit().await?;
        self.nudge();
        Ok(r)
    }

    /// AIP-164 soft delete: the resource stays, hidden from lists, until
    /// undeleted. `mark` sets the resource's own `delete_time` (and state).
    pub async fn soft_delete<R: Resource<P> + Deleted, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        mark: impl FnOnce(&mut R, Option<prost_types::Timestamp>) + Send,
    ) -> Result<R> {
        self.change(policy, ctx, name, etag, R::DELETED, false, |r, row| {
            row.delete_time = row.update_time;
            mark(r, crate::clock::micros_to_proto(row.delete_time));
            Ok(())
        })
        .await
    }

    /// AIP-164 undelete; FAILED_PRECONDITION for a resource that is not
    /// deleted. `mark` clears the resource's `delete_time` (and state).
    pub async fn undelete<R: Resource<P> + Undeleted, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        mark: impl FnOnce(&mut R) + Send,
    ) -> Result<R> {
        self.change(policy, ctx, name, etag, R::UNDELETED, true, |r, row| {
            if row.delete_time == 0 {
                return Err(Error::FailedPrecondition {
                    reason: crate::error::Reason::NotDeleted,
                    subject: name.to_string(),
                    description: format!("{name} is not deleted"),
                });
            }
            row.delete_time = 0;
            mark(r);
            Ok(())
        })
        .await
    }

    /// AIP-135 delete, for good.
    pub async fn delete<R: Resource<P> + Deleted, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        name: &str,
        etag: &str,
    ) -> Result<()> {
        self.delete_once::<R, P>(policy, ctx, None, name, etag)
            .await
    }

    /// [`Store::delete`] made idempotent by `once`, the key of the request's
    /// `request_id`: a retry (its reply lost) succeeds again rather than
    /// finding nothing to delete.
    pub async fn delete_once<R: Resource<P> + Deleted, P: Policy<R>>(
        &self,
        policy: &P,
        ctx: &Ctx,
        once: Option<idempotency::Key>,
        name: &str,
        etag: &str,
    ) -> Result<()> {
        names::parse("name", name, R::COLLECTIONS)?;
        policy.may_attempt_write(&ctx.principal, name)?;
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && key.replay::<()>(&mut conn).await?.is_some()
        {
            return Ok(());
        }
        let stored = resource::get_for_update(&mut conn, R::KIND, name)
            .await?
            .ok_or_else(|| not_found::<R, P>(name))?;
        let r: R = Self::decode::<R, P>(&stored)?;
        policy.may_see(&ctx.principal, &r)?;
        resource::check_etag(name, etag, &stored)?;
        let facts = policy.facts(&mut conn, &ctx.principal, &r).await?;
        policy.may_write(&ctx.principal, &r, &facts)?;
        policy.check_delete(&mut conn, &r).await?;
        resource::delete(&mut conn, R::KIND, name).await?;
        let now = self.now();
        policy.after_delete(&mut conn, &r, now).await?;
        self.record(policy, &mut conn, ctx, R::DELETED, &r, now)
            .await?;
        if let Some(key) = &once {
            key.save(&mut conn, &(), now).await?;
        }
        tx.commit().await?;
        self.nudge();
        Ok(())
    }
}
