//! The service kit: what a service is to the processes that run it. A
//! service implements [`Service`] (its name, schema, gRPC routes, background
//! workers); `concierge dev`, `concierge serve`, `concierge migrate`, the
//! gateway's routing and health all loop over the [`Registration`]s of the
//! binary and know no service by name. Adding a service is its crate and one
//! `Registration::of::<NewService>()` line.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::migrate::Migrator;
use tonic::service::Routes;
use tonic::transport::Channel;

use tokio::net::TcpListener;

use crate::channel::Backend;
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::principal::PrincipalCodec;
use crate::relay::BusTarget;
use crate::server::{Running, Serve};
use crate::storage::Db;
use crate::supervise::Supervisor;

/// A service's schema, one migration set per database engine.
#[derive(Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

impl Migrations {
    /// Brings `db` up to this build's schema.
    pub async fn apply(&self, db: &Db) -> Result<()> {
        db.migrate(self.sqlite, self.postgres).await
    }

    /// The migrations `db` still lacks for this build (empty when its schema
    /// is current); reads without changing anything.
    pub async fn unapplied(&self, db: &Db) -> Result<Vec<i64>> {
        db.unapplied_migrations(self.sqlite, self.postgres).await
    }
}

/// The channels to the services a service calls, by their short names.
#[derive(Clone, Default)]
pub struct Peers(BTreeMap<&'static str, Channel>);

impl Peers {
    pub fn insert(&mut self, service: &'static str, channel: Channel) {
        self.0.insert(service, channel);
    }

    /// The channel to `service`; a process that did not wire it is
    /// misconfigured, which is said at start, not on the first call.
    pub fn channel(&self, service: &str) -> Result<Channel> {
        self.0.get(service).cloned().ok_or_else(|| {
            Error::invalid(
                format!("backends.{service}.url"),
                format!("not set: this service calls the {service} service"),
            )
        })
    }
}

/// What a service is opened with: its own database, the secret principals
/// are signed with, the clock, and channels to its peers.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    pub principals: PrincipalCodec,
    pub clock: SharedClock,
    pub peers: Peers,
    /// Where the service's outgoing e-mail goes.
    pub mail: std::sync::Arc<crate::mail::Mailer>,
    /// Where the service keeps files its database points at.
    pub files: crate::files::Files,
    /// Where people reach the suite's web pages (the gateway's), e.g.
    /// `https://concierge.example.com`: the base of links sent by e-mail.
    pub public_url: String,
}

/// How a process runs a service's background workers.
#[derive(Clone)]
pub struct Workers {
    /// This replica's name among the service's replicas (timer leases).
    pub instance: String,
    /// How often a worker without a wake-up polls for due work.
    pub poll: Duration,
    /// Where the outbox relay publishes; `None` leaves events in the outbox.
    pub bus: Option<BusTarget>,
}

/// One service of the suite.
pub trait Service: Clone + Send + Sync + Sized + 'static {
    /// The short name: `concierge serve <NAME>`, `backends.<NAME>.url`, the
    /// data file of `concierge dev`.
    const NAME: &'static str;
    /// The fully-qualified gRPC service name, for health and routing.
    const GRPC_NAME: &'static str;
    /// The short names of the services this one calls.
    const PEERS: &'static [&'static str] = &[];
    /// Services this one calls when they are deployed (a feature that reads
    /// them is off without them).
    const OPTIONAL_PEERS: &'static [&'static str] = &[];

    fn migrations() -> Migrations;

    /// Migrates `deps.db` and opens the service on it.
    fn open(deps: Deps) -> impl Future<Output = Result<Self>> + Send;

    /// The gRPC routes the service answers.
    fn routes(&self) -> Routes;

    /// Starts the service's background work under `supervisor`: while a
    /// required worker is down, the process reports NOT_SERVING.
    fn supervise(&self, supervisor: &Supervisor, workers: &Workers);
}

type Opening = Pin<Box<dyn Future<Output = Result<Box<dyn Opened>>> + Send>>;

/// A service opened by a process, whatever its type.
pub trait Opened: Send + Sync {
    fn routes(&self) -> Routes;
    fn supervise(&self, supervisor: &Supervisor, workers: &Workers);
}

impl<S: Service> Opened for S {
    fn routes(&self) -> Routes {
        Service::routes(self)
    }
    fn supervise(&self, supervisor: &Supervisor, workers: &Workers) {
        Service::supervise(self, supervisor, workers)
    }
}

/// A service as the binary registers it.
#[derive(Clone, Copy)]
pub struct Registration {
    pub name: &'static str,
    pub grpc_name: &'static str,
    pub peers: &'static [&'static str],
    pub optional_peers: &'static [&'static str],
    pub migrations: fn() -> Migrations,
    open: fn(Deps) -> Opening,
}

impl Registration {
    pub fn of<S: Service>() -> Self {
        Self {
            name: S::NAME,
            grpc_name: S::GRPC_NAME,
            peers: S::PEERS,
            optional_peers: S::OPTIONAL_PEERS,
            migrations: S::migrations,
            open: |deps| {
                Box::pin(async move { Ok(Box::new(S::open(deps).await?) as Box<dyn Opened>) })
            },
        }
    }

    /// Migrates `deps.db` and opens the service.
    pub async fn open(&self, deps: Deps) -> Result<Box<dyn Opened>> {
        (self.open)(deps).await
    }
}

/// What every service of one process is opened with besides its own
/// database.
#[derive(Clone)]
pub struct Shared {
    pub principals: PrincipalCodec,
    pub clock: SharedClock,
    pub mail: std::sync::Arc<crate::mail::Mailer>,
    pub files: crate::files::Files,
    /// As [`Deps::public_url`].
    pub public_url: String,
}

/// Every service of a list opened in one process, as `concierge dev` runs
/// them: each on its own database, each also listening on a loopback port so
/// that the others reach it over gRPC exactly as across processes.
pub struct InProcess {
    pub opened: Vec<(Registration, Box<dyn Opened>)>,
    pub peers: Peers,
    loopbacks: Vec<Running>,
    dbs: Vec<Db>,
}

impl InProcess {
    /// Opens `services` (each on the database `db_for` gives it) and starts
    /// their workers under `supervisor`. Every loopback port is bound before
    /// any service is opened, so every peer channel exists up front.
    pub async fn start(
        services: &[Registration],
        mut db_for: impl AsyncFnMut(&Registration) -> Result<Db>,
        shared: &Shared,
        supervisor: &Supervisor,
        workers: impl Fn(&Registration) -> Workers,
    ) -> Result<Self> {
        let Shared {
            principals,
            clock,
            mail,
            files,
            public_url,
        } = shared;
        let mut listeners = Vec::new();
        let mut peers = Peers::default();
        for service in services {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(Error::internal)?;
            let addr = listener.local_addr().map_err(Error::internal)?;
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(Error::internal)?
                .tcp_nodelay(true)
                .connect_lazy();
            peers.insert(service.name, channel);
            listeners.push(listener);
        }
        let mut this = Self {
            opened: Vec::new(),
            peers,
            loopbacks: Vec::new(),
            dbs: Vec::new(),
        };
        for (service, listener) in services.iter().zip(listeners) {
            let db = db_for(service).await?;
            this.dbs.push(db.clone());
            let opened = service
                .open(Deps {
                    db,
                    principals: principals.clone(),
                    clock: clock.clone(),
                    peers: this.peers.clone(),
                    mail: mail.clone(),
                    files: files.clone(),
                    public_url: public_url.clone(),
                })
                .await?;
            opened.supervise(supervisor, &workers(service));
            this.loopbacks.push(
                crate::server::start(
                    listener,
                    opened.routes(),
                    Serve {
                        health_names: vec![service.grpc_name.to_string()],
                        grace_period: Duration::from_secs(1),
                        drain_delay: Duration::ZERO,
                    },
                    async { Ok(()) },
                    std::future::pending(),
                )
                .await?,
            );
            this.opened.push((*service, opened));
        }
        Ok(this)
    }

    /// Each service in this process as a gateway backend, by gRPC name.
    pub fn backends(&self) -> BTreeMap<&'static str, Backend> {
        self.opened
            .iter()
            .map(|(r, s)| (r.grpc_name, crate::channel::local(s.routes())))
            .collect()
    }

    /// Stops the loopback servers and closes every database.
    pub async fn close(self) {
        drop(self.loopbacks);
        for db in self.dbs {
            db.close().await;
        }
    }
}
