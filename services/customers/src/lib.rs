//! The customers service: accounts and everything known about a client
//! (contacts, sites, inventory, the interaction log, follow-ups) plus the
//! staff directory that portfolios and escalation chains refer to.

pub mod authz;
pub mod resources;
mod service;

use std::any::Any;
use std::sync::Arc;

use concierge_common::clock::{SharedClock, to_micros};
use concierge_common::error::{Error, Result, Violations};
use concierge_common::idempotency;
use concierge_common::outbox::{self, NewEvent};
use concierge_common::paging::{PageQuery, PageTokens};
use concierge_common::principal::{Principal, PrincipalCodec};
use concierge_common::resource::{self, Scope, Stored};
use concierge_common::storage::{Conn, Db};
use concierge_common::{names, on_conn};
use concierge_proto::customers::customers_service_server::CustomersServiceServer;
use concierge_proto::customers::{Account, Contact, InventoryItem, Site, StaffMember, account};
use concierge_proto::events::Visibility;
use sqlx::migrate::Migrator;

use authz::Area;
use resources::Resource;

/// The fully-qualified gRPC service name, for health and routing.
pub const SERVICE_NAME: &str = "concierge.customers.v1.CustomersService";
/// The event `source` of this service.
const SOURCE: &str = "customers";

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The customers service over its own database.
#[derive(Clone)]
pub struct Customers {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// Wakes the outbox relay after each commit.
    nudge: concierge_common::relay::Nudge,
    tokens: PageTokens,
    principals: PrincipalCodec,
    clock: SharedClock,
}

/// The parts of a create request.
pub(crate) struct New<'a, R> {
    pub parent: &'a str,
    pub resource: Option<R>,
    pub id: &'a str,
    pub request_id: &'a str,
}

/// The caller of one request.
pub(crate) struct Ctx {
    pub principal: Principal,
    pub request_id: String,
}

impl Customers {
    /// Migrates `db` and opens the service on it.
    pub async fn open(db: Db, principals: PrincipalCodec, clock: SharedClock) -> Result<Self> {
        db.migrate(&SQLITE, &POSTGRES).await?;
        let key = {
            let mut tx = db.begin().await?;
            let key = outbox::service_secret(&mut tx.conn(), "page_token_key", 32).await?;
            tx.commit().await?;
            key
        };
        let service = Self {
            inner: Arc::new(Inner {
                db,
                nudge: Default::default(),
                tokens: PageTokens::new(key),
                principals,
                clock,
            }),
        };
        service.purge_idempotency_keys_hourly();
        Ok(service)
    }

    /// Forgets `request_id`s older than their retention, hourly, for as long
    /// as the service is alive.
    fn purge_idempotency_keys_hourly(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let now = to_micros(inner.clock.now());
                let purged = async {
                    let mut tx = inner.db.begin().await?;
                    let n = idempotency::purge_expired(&mut tx.conn(), now).await?;
                    tx.commit().await?;
                    Ok::<_, Error>(n)
                };
                match purged.await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "forgot expired request ids"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purging expired request ids failed"),
                }
            }
        });
    }

    /// The tonic service, with message limits set for both directions.
    pub fn server(&self) -> CustomersServiceServer<Self> {
        CustomersServiceServer::new(self.clone())
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Starts relaying this service's outbox to `bus`.
    pub fn relay_events(&self, bus: concierge_common::relay::Bus) -> tokio::task::JoinHandle<()> {
        concierge_common::relay::spawn(
            self.inner.db.clone(),
            bus,
            self.inner.clock.clone(),
            self.inner.nudge.clone(),
            std::time::Duration::from_secs(1),
        )
    }

    pub(crate) fn ctx<T>(&self, request: &tonic::Request<T>) -> Result<Ctx> {
        Ok(Ctx {
            principal: self.inner.principals.from_request(request)?,
            request_id: concierge_common::principal::request_id(request),
        })
    }

    fn now(&self) -> i64 {
        to_micros(self.inner.clock.now())
    }

    /// Decodes a stored row into its resource with the bookkeeping fields set.
    fn decode<R: Resource>(stored: &Stored) -> Result<R> {
        let mut r = R::decode(stored.body.as_slice()).map_err(Error::internal)?;
        r.set_meta(stored.create_time, stored.update_time, stored.etag());
        Ok(r)
    }

    async fn record<R: Resource>(
        &self,
        conn: &mut Conn<'_>,
        ctx: &Ctx,
        verb: &str,
        r: &R,
        now: i64,
    ) -> Result<()> {
        let account = authz::account_of(r.name()).unwrap_or_default();
        outbox::record(
            conn,
            NewEvent {
                event_type: format!("concierge.customers.v1.{}_{verb}", R::FIELD),
                source: SOURCE,
                subject: r.name(),
                account: &account,
                visibility: if R::CLIENT_VISIBLE {
                    Visibility::Public
                } else {
                    Visibility::Internal
                },
                actor: &ctx.principal,
                request_id: &ctx.request_id,
                occur_time: concierge_common::clock::from_micros(now),
                payload: Some(outbox::pack(r)),
            },
        )
        .await?;
        Ok(())
    }

    /// The account a write lands in, which must exist and not be deleted.
    async fn live_account(&self, conn: &mut Conn<'_>, name: &str) -> Result<Account> {
        let stored = resource::get(conn, &resources::ACCOUNTS, name)
            .await?
            .filter(|s| s.delete_time == 0)
            .ok_or_else(|| Error::NotFound {
                resource_type: "Account",
                name: name.to_string(),
            })?;
        Self::decode(&stored)
    }

    fn area<R: Resource>() -> Area {
        match R::KIND.table {
            "interactions" | "follow_ups" => Area::Activity,
            "staff_members" => Area::Directory,
            _ => Area::AccountData,
        }
    }

    /// Checks that `p` may write `r` (whose account, if any, is loaded here).
    async fn authorize_write<R: Resource>(
        &self,
        conn: &mut Conn<'_>,
        p: &Principal,
        r: &R,
    ) -> Result<()> {
        let name = r.name();
        // A client is told NOT_FOUND for another account before anything is read.
        if p.role == concierge_common::principal::Role::Client {
            return authz::write(p, Self::area::<R>(), R::KIND.resource_type, name, None);
        }
        let account = match (r as &dyn Any).downcast_ref::<Account>() {
            Some(new_account) => Some(new_account.clone()),
            None => match authz::account_of(name) {
                Some(account) => Some(self.live_account(conn, &account).await?),
                None => None,
            },
        };
        authz::write(
            p,
            Self::area::<R>(),
            R::KIND.resource_type,
            name,
            account.as_ref(),
        )
    }

    /// Rules between resources that a single resource's checks cannot see.
    async fn check_references<R: Resource>(&self, conn: &mut Conn<'_>, r: &R) -> Result<()> {
        let any = r as &dyn Any;
        if let Some(a) = any.downcast_ref::<Account>() {
            if !a.account_manager.is_empty() {
                self.staff_exists(conn, "account.account_manager", &a.account_manager)
                    .await?;
            }
        } else if let Some(c) = any.downcast_ref::<Contact>() {
            if c.client_delegate {
                let account = authz::account_of(&c.name).unwrap_or_default();
                let sql = "SELECT COUNT(*) FROM contacts WHERE account = $1 AND client_delegate = 1 AND name <> $2";
                let n: i64 = on_conn!(conn, x => sqlx::query_scalar(sql).bind(&account).bind(&c.name).fetch_one(&mut **x).await?);
                if n > 0 {
                    return Err(Error::FailedPrecondition {
                        reason: "CLIENT_DELEGATE_TAKEN",
                        subject: account,
                        description:
                            "the account already has a client delegate; unset it there first".into(),
                    });
                }
            }
        } else if let Some(item) = any.downcast_ref::<InventoryItem>() {
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
        } else if let Some(s) = any.downcast_ref::<StaffMember>()
            && !s.manager.is_empty()
        {
            {
                self.staff_exists(conn, "staff_member.manager", &s.manager)
                    .await?;
                // Walk up from the new manager: meeting this member again
                // would make the escalation chain a loop.
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
                            let m: StaffMember = Self::decode(&stored)?;
                            if m.manager.is_empty() {
                                break;
                            }
                            next = m.manager;
                        }
                        None => break,
                    }
                }
            }
        }
        Ok(())
    }

    async fn staff_exists(&self, conn: &mut Conn<'_>, field: &str, name: &str) -> Result<()> {
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

    /// AIP-133 create, idempotent on `request_id`.
    pub(crate) async fn create<R: Resource, Q: prost::Message + Clone>(
        &self,
        ctx: &Ctx,
        method: &'static str,
        request: &Q,
        new: New<'_, R>,
    ) -> Result<R> {
        let New {
            parent,
            resource,
            id,
            request_id,
        } = new;
        // A client is refused before its input is even looked at, and gets
        // NOT_FOUND for another account's collections.
        if ctx.principal.role == concierge_common::principal::Role::Client {
            authz::write(
                &ctx.principal,
                Self::area::<R>(),
                R::KIND.resource_type,
                parent,
                None,
            )?;
        }
        let mut v = Violations::new();
        let parent_collections = &R::COLLECTIONS[..R::COLLECTIONS.len() - 1];
        if parent_collections.is_empty() {
            if !parent.is_empty() {
                v.add("parent", "must be empty: this collection has no parent");
            }
        } else {
            v.check(names::parse("parent", parent, parent_collections));
        }
        let id = v.check(names::new_id(&format!("{}_id", R::FIELD), id));
        let Some(mut r) = resource else {
            // Report the missing resource alone, not every empty field of a
            // resource that was never sent.
            v.add(R::FIELD, "required");
            return v.into_result().map(|_| R::default());
        };
        r.clear_output_only();
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

        let key = idempotency::Key::new(&ctx.principal.subject, request_id, method, request)?;
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &key
            && let Some(previous) = key.replay::<R>(&mut conn).await?
        {
            return Ok(previous);
        }
        self.authorize_write(&mut conn, &ctx.principal, &r).await?;
        self.check_references(&mut conn, &r).await?;
        let any = &mut r as &mut dyn Any;
        if let Some(a) = any.downcast_mut::<Account>() {
            a.state = account::State::Active as i32;
        } else if let Some(f) = any.downcast_mut::<concierge_proto::customers::FollowUp>() {
            f.state = concierge_proto::customers::follow_up::State::Open as i32;
        }
        let now = self.now();
        let stored = Stored {
            name: r.name().to_string(),
            parent: parent.to_string(),
            account: authz::account_of(r.name()).unwrap_or_default(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: strip_meta(&r),
        };
        resource::insert(&mut conn, R::KIND, &stored, &r.columns()).await?;
        r.set_meta(now, now, stored.etag());
        self.record(&mut conn, ctx, "created", &r, now).await?;
        if let Some(key) = &key {
            key.save(&mut conn, &r, now).await?;
        }
        tx.commit().await?;
        self.inner.nudge.poke();
        Ok(r)
    }

    /// AIP-131 get.
    pub(crate) async fn get<R: Resource>(&self, ctx: &Ctx, name: &str) -> Result<R> {
        names::parse("name", name, R::COLLECTIONS)?;
        authz::read(
            &ctx.principal,
            R::KIND.resource_type,
            name,
            R::CLIENT_VISIBLE,
        )?;
        let mut pooled = self.inner.db.acquire().await?;
        let stored = resource::get(&mut pooled.conn(), R::KIND, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: R::KIND.resource_type,
                name: name.to_string(),
            })?;
        Self::decode(&stored)
    }

    /// AIP-132 list with AIP-160 filter, `order_by` and keyset pagination.
    pub(crate) async fn list<R: Resource>(
        &self,
        ctx: &Ctx,
        page: PageQuery<'_>,
    ) -> Result<(Vec<R>, String)> {
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
            if ids.last() == Some(&"-") && ids.len() > 1 {
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
        // A client lists only inside its own account; the account collection
        // shows it just its own record.
        let account = if p.role == concierge_common::principal::Role::Client {
            if !parent_collections.is_empty() {
                authz::read(p, R::KIND.resource_type, page.parent, R::CLIENT_VISIBLE)?;
            } else if R::KIND.table != "accounts" {
                authz::read(p, R::KIND.resource_type, "", false)?;
            }
            p.account.clone()
        } else {
            None
        };
        let mut query = resource::prepare(R::KIND, &page, scope, account)?;
        query.after = self.inner.tokens.decode(R::KIND.table, &p.subject, &page)?;
        let mut pooled = self.inner.db.acquire().await?;
        let result = resource::list(&mut pooled.conn(), R::KIND, &query).await?;
        let items = result
            .items
            .iter()
            .map(Self::decode)
            .collect::<Result<Vec<R>>>()?;
        let next = result
            .next
            .map(|c| {
                self.inner
                    .tokens
                    .encode(R::KIND.table, &p.subject, &page, &c)
            })
            .unwrap_or_default();
        Ok((items, next))
    }

    /// AIP-134 update with a field mask, guarded by the etag.
    pub(crate) async fn update<R: Resource>(
        &self,
        ctx: &Ctx,
        resource: Option<R>,
        mask: Option<prost_types::FieldMask>,
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
        if ctx.principal.role == concierge_common::principal::Role::Client {
            authz::write(
                &ctx.principal,
                Self::area::<R>(),
                R::KIND.resource_type,
                &name,
                None,
            )?;
        }
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        let stored = resource::get_for_update(&mut conn, R::KIND, &name)
            .await?
            .filter(|s| s.delete_time == 0)
            .ok_or_else(|| Error::NotFound {
                resource_type: R::KIND.resource_type,
                name: name.clone(),
            })?;
        let etag = patch.etag().to_string();
        resource::check_etag(&name, &etag, &stored)?;
        let mut r: R = Self::decode(&stored)?;
        // Authorise against the account as it stands before the change, and
        // for a re-assigned account also as it will stand after it.
        self.authorize_write(&mut conn, &ctx.principal, &r).await?;
        for p in &paths {
            r.copy_field(&patch, p);
        }
        let mut v = Violations::new();
        r.check(&mut v);
        v.into_result()?;
        if (&r as &dyn Any).is::<Account>() {
            self.authorize_write(&mut conn, &ctx.principal, &r).await?;
        }
        self.check_references(&mut conn, &r).await?;
        let now = self.now().max(stored.update_time);
        let next = Stored {
            update_time: now,
            revision: stored.revision + 1,
            body: strip_meta(&r),
            ..stored.clone()
        };
        resource::update(&mut conn, R::KIND, &next, stored.revision, &r.columns()).await?;
        r.set_meta(next.create_time, next.update_time, next.etag());
        self.record(&mut conn, ctx, "updated", &r, now).await?;
        tx.commit().await?;
        self.inner.nudge.poke();
        Ok(r)
    }

    /// Changes a stored resource in a transaction: `change` may refuse (its
    /// error is returned and nothing is written) or edit the resource.
    pub(crate) async fn change<R: Resource>(
        &self,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        verb: &str,
        include_deleted: bool,
        change: impl FnOnce(&mut R, &mut Stored) -> Result<()>,
    ) -> Result<R> {
        names::parse("name", name, R::COLLECTIONS)?;
        if ctx.principal.role == concierge_common::principal::Role::Client {
            authz::write(
                &ctx.principal,
                Self::area::<R>(),
                R::KIND.resource_type,
                name,
                None,
            )?;
        }
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        let stored = resource::get_for_update(&mut conn, R::KIND, name)
            .await?
            .filter(|s| include_deleted || s.delete_time == 0)
            .ok_or_else(|| Error::NotFound {
                resource_type: R::KIND.resource_type,
                name: name.to_string(),
            })?;
        resource::check_etag(name, etag, &stored)?;
        let mut r: R = Self::decode(&stored)?;
        if let Some(a) = (&r as &dyn Any).downcast_ref::<Account>() {
            authz::write(&ctx.principal, Area::AccountData, "Account", name, Some(a))?;
        } else {
            self.authorize_write(&mut conn, &ctx.principal, &r).await?;
        }
        let now = self.now().max(stored.update_time);
        let mut next = Stored {
            update_time: now,
            revision: stored.revision + 1,
            ..stored.clone()
        };
        change(&mut r, &mut next)?;
        next.body = strip_meta(&r);
        resource::update(&mut conn, R::KIND, &next, stored.revision, &r.columns()).await?;
        r.set_meta(next.create_time, next.update_time, next.etag());
        self.record(&mut conn, ctx, verb, &r, now).await?;
        tx.commit().await?;
        self.inner.nudge.poke();
        Ok(r)
    }

    /// Hard delete (everything but accounts, which are soft-deleted).
    pub(crate) async fn delete<R: Resource>(
        &self,
        ctx: &Ctx,
        name: &str,
        etag: &str,
    ) -> Result<()> {
        names::parse("name", name, R::COLLECTIONS)?;
        if ctx.principal.role == concierge_common::principal::Role::Client {
            authz::write(
                &ctx.principal,
                Self::area::<R>(),
                R::KIND.resource_type,
                name,
                None,
            )?;
        }
        let mut tx = self.inner.db.begin().await?;
        let mut conn = tx.conn();
        let stored = resource::get_for_update(&mut conn, R::KIND, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: R::KIND.resource_type,
                name: name.to_string(),
            })?;
        resource::check_etag(name, etag, &stored)?;
        let r: R = Self::decode(&stored)?;
        self.authorize_write(&mut conn, &ctx.principal, &r).await?;
        if (&r as &dyn Any).is::<Site>() {
            let items = resource::count(
                &mut conn,
                &resources::INVENTORY_ITEMS,
                &Scope::Parent(name.to_string()),
            )
            .await?;
            if items > 0 {
                return Err(Error::FailedPrecondition {
                    reason: "SITE_HAS_INVENTORY",
                    subject: name.to_string(),
                    description: format!(
                        "{name} still has {items} inventory items; delete or move them first"
                    ),
                });
            }
        }
        resource::delete(&mut conn, R::KIND, name).await?;
        let now = self.now();
        self.record(&mut conn, ctx, "deleted", &r, now).await?;
        tx.commit().await?;
        self.inner.nudge.poke();
        Ok(())
    }

    /// The escalation chain above a staff member, nearest first.
    pub(crate) async fn escalation_chain(&self, ctx: &Ctx, name: &str) -> Result<Vec<StaffMember>> {
        let start: StaffMember = self.get(ctx, name).await?;
        let mut pooled = self.inner.db.acquire().await?;
        let mut conn = pooled.conn();
        let mut chain = Vec::new();
        let mut next = start.manager;
        while !next.is_empty() && chain.len() < 64 {
            let Some(stored) = resource::get(&mut conn, &resources::STAFF_MEMBERS, &next).await?
            else {
                break;
            };
            let m: StaffMember = Self::decode(&stored)?;
            next = m.manager.clone();
            chain.push(m);
        }
        Ok(chain)
    }
}

/// The body is stored without the bookkeeping fields, which live in columns.
fn strip_meta<R: Resource>(r: &R) -> Vec<u8> {
    let mut copy = r.clone();
    copy.set_meta(0, 0, String::new());
    copy.encode_to_vec()
}
