//! The gateway: the one door for clients. It authenticates (API keys, OIDC
//! JWTs), applies per-principal rate limits and deadlines, and routes every
//! public v1 service to its backend with a verified principal and a request
//! id. It never decides what a principal may do: every service does that.

pub mod api;
pub mod auth;
pub mod delivery;
pub mod events;
pub mod keys;
pub mod oidc;
pub mod proxy;
pub mod review;
mod store;
pub mod survey_page;
pub mod webhook_api;
pub mod webhooks;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::SharedClock;
use concierge_common::error::Result;
use concierge_common::principal::PrincipalCodec;
use concierge_common::storage::Db;
use sqlx::migrate::Migrator;
use tonic::service::Routes;

pub use proxy::{Backend, Limits, local, remote};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The gateway's own schema (API keys).
pub fn migrations() -> concierge_common::kit::Migrations {
    concierge_common::kit::Migrations {
        sqlite: &SQLITE,
        postgres: &POSTGRES,
    }
}

/// Migrates the gateway's own database (API keys).
pub async fn migrate(db: &Db) -> Result<()> {
    migrations().apply(db).await
}

/// The gateway over its database and its backends.
pub struct Gateway {
    db: Db,
    clock: SharedClock,
    /// The webhooks' deliveries and the bus they read, when there is one.
    webhooks: Option<(delivery::Deliveries, events::Feed)>,
    shared: Arc<proxy::Shared>,
    backends: BTreeMap<&'static str, Backend>,
    /// Every service the contracts describe, served here or not.
    described: Arc<HashSet<String>>,
}

/// The fully-qualified names of the services in the contracts.
fn described_services() -> Result<HashSet<String>> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(concierge_proto::FILE_DESCRIPTOR_SET)
        .map_err(concierge_common::Error::internal)?;
    Ok(set
        .file
        .into_iter()
        .flat_map(|file| {
            let package = file.package.unwrap_or_default();
            file.service
                .into_iter()
                .map(move |s| format!("{package}.{}", s.name.unwrap_or_default()))
        })
        .collect())
}

impl Gateway {
    /// `backends` maps fully-qualified gRPC service names to where they run.
    pub async fn open(
        db: Db,
        principals: PrincipalCodec,
        clock: SharedClock,
        limits: Limits,
        oidc: Option<oidc::OidcConfig>,
        mut backends: BTreeMap<&'static str, Backend>,
        events: Option<events::Feed>,
    ) -> Result<Self> {
        migrate(&db).await?;
        let oidc = oidc.map(oidc::Oidc::new).transpose()?;
        // The gateway's own service sits behind its own front door, reading
        // the other services on the caller's behalf.
        let webhooks = match &events {
            Some(feed) => {
                let store = concierge_common::crud::Store::open(
                    db.clone(),
                    &SQLITE,
                    &POSTGRES,
                    clock.clone(),
                    "concierge.gateway.v1",
                    "gateway",
                )
                .await?;
                Some((
                    delivery::Deliveries::new(store, feed.webhook_targets)?,
                    feed.clone(),
                ))
            }
            None => None,
        };
        let review = review::Review::new(
            review::sources(&backends, &principals),
            review::customers(&backends),
            principals.clone(),
            clock.clone(),
        );
        backends.insert(
            api::SERVICE_NAME,
            local(
                api::Api::new(
                    principals.clone(),
                    review,
                    events.map(|mut feed| {
                        // Staff follow the gateway's own events (webhook
                        // deliveries) too.
                        feed.sources.push("gateway");
                        events::Subscriptions::new(feed, clock.clone())
                    }),
                    webhooks.as_ref().map(|(d, feed)| webhook_api::WebhookApi {
                        deliveries: d.clone(),
                        targets: feed.webhook_targets,
                    }),
                )
                .server(),
            ),
        );
        let auth =
            auth::Authenticator::new(db.clone(), clock.clone(), oidc, limits.failure_allowance())?;
        let shared = Arc::new(proxy::Shared::new(auth, principals, limits)?);
        Ok(Self {
            db,
            clock,
            webhooks,
            shared,
            backends,
            described: Arc::new(described_services()?),
        })
    }

    /// Runs the gateway's housekeeping under `supervisor`: now and then it
    /// forgets the rate-limit state of idle principals and peers, so that
    /// memory follows the callers of the last minutes, not of all time. It
    /// ends when the gateway is dropped.
    pub fn supervise(&self, supervisor: &concierge_common::supervise::Supervisor) {
        if let Some((deliveries, feed)) = &self.webhooks {
            // The gateway's own events (webhook deliveries) leave its outbox.
            deliveries
                .store()
                .supervise(supervisor, Some(feed.bus.clone()));
            for source in &feed.sources {
                concierge_common::inbox::supervise(
                    supervisor,
                    &self.db,
                    Some(&feed.bus),
                    Arc::new(delivery::Matcher::new(deliveries.clone(), source)),
                    self.clock.clone(),
                );
            }
            let (worker, clock, poll) = (deliveries.clone(), self.clock.clone(), feed.poll);
            supervisor.spawn(
                "gateway-webhook-deliveries",
                concierge_common::supervise::Need::Optional,
                move || worker.clone().run(clock.clone(), poll),
            );
            let (purger, clock) = (deliveries.clone(), self.clock.clone());
            supervisor.spawn(
                "gateway-webhook-delivery-purge",
                concierge_common::supervise::Need::Optional,
                move || purger.clone().purge_forever(clock.clone()),
            );
        } else {
            // (The store reports the pool when there is one.)
            self.db.report_pool(supervisor, "gateway");
        }
        let weak = Arc::downgrade(&self.shared);
        supervisor.spawn(
            "gateway-housekeeping",
            concierge_common::supervise::Need::Optional,
            move || {
                let weak = weak.clone();
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(60));
                    loop {
                        tick.tick().await;
                        let Some(shared) = weak.upgrade() else {
                            return Ok(());
                        };
                        shared.limiter.retain_recent();
                        shared.auth.forget_idle_peers();
                    }
                }
            },
        );
    }

    /// The web pages people open from links in e-mails (the survey response
    /// page), for a plain HTTP/1.1 listener of their own: browsers do not
    /// speak gRPC.
    pub fn web_routes(&self) -> axum::Router {
        survey_page::router(self.backends.get("concierge.csat.v1.CsatService").cloned())
    }

    /// Serves [`Gateway::web_routes`] on `listener` until the process ends.
    pub fn serve_web(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let app = self.web_routes();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the web listener stopped");
            }
        })
    }

    /// The public service names the gateway answers for (health, routing).
    pub fn service_names(&self) -> Vec<String> {
        self.backends.keys().map(|s| s.to_string()).collect()
    }

    /// The routes: one forwarding route per backend service, and an
    /// UNIMPLEMENTED answer for everything else. Health and reflection are
    /// added by the server bootstrap.
    pub fn routes(&self) -> Routes {
        let mut router = axum::Router::new();
        for (&service, backend) in &self.backends {
            let shared = self.shared.clone();
            let backend = backend.clone();
            let forward = tower::service_fn(move |request: http::Request<axum::body::Body>| {
                let shared = shared.clone();
                let backend = backend.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        proxy::forward(shared, service, backend, request).await,
                    )
                }
            });
            router = router.route_service(&format!("/{service}/{{*method}}"), forward);
        }
        let shared = self.shared.clone();
        let described = self.described.clone();
        let unserved = tower::service_fn(move |request: http::Request<axum::body::Body>| {
            let shared = shared.clone();
            let described = described.clone();
            async move {
                Ok::<_, std::convert::Infallible>(proxy::unserved(shared, described, request).await)
            }
        });
        Routes::from(router.fallback_service(unserved))
    }
}
