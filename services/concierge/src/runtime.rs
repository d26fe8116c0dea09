//! Wiring services into processes: `concierge dev` (everything in one
//! process on SQLite), `concierge serve <service>` (one service per process,
//! as on Kubernetes) and `concierge migrate`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use concierge_cases::Cases;
use concierge_common::clock::{Clock, SharedClock, SystemClock};
use concierge_common::config::{DatabaseConfig, ServerConfig};
use concierge_common::kit::{Deps, InProcess, Migrations, Peers, Registration, Workers};
use concierge_common::principal::{PrincipalCodec, Role};
use concierge_common::relay::{Bus, BusTarget};
use concierge_common::server::{self, Serve};
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_common::telemetry::{self, TelemetryConfig};
use concierge_csat::Csat;
use concierge_customers::Customers;
use concierge_disputes::Disputes;
use concierge_gateway::{Gateway, Limits, keys};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpListener;

/// The secret the gateway signs principals with and services verify them by.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InternalConfig {
    pub principal_secret: Option<SecretString>,
}

impl InternalConfig {
    fn codec(&self) -> anyhow::Result<PrincipalCodec> {
        match &self.principal_secret {
            Some(s) if s.expose_secret().len() >= 16 => Ok(PrincipalCodec::new(s.clone())),
            Some(_) => anyhow::bail!("internal.principal_secret must be at least 16 characters"),
            None => anyhow::bail!(
                "internal.principal_secret is not set (CONCIERGE_INTERNAL__PRINCIPAL_SECRET): the gateway and every service need the same one"
            ),
        }
    }
}

/// The event bus.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// NATS with JetStream, e.g. `nats://nats:4222`. Without it events stay
    /// in the service's outbox until a bus is configured.
    pub nats_url: Option<String>,
}

/// Where the gateway finds a backend service.
#[derive(Debug, Clone, Deserialize)]
pub struct BackendConfig {
    pub url: String,
    #[serde(default = "default_connections")]
    pub connections: usize,
}

fn default_connections() -> usize {
    4
}

/// Configuration of `concierge serve <service>`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServeConfig {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub telemetry: TelemetryConfig,
    pub internal: InternalConfig,
    /// Where events go.
    pub events: EventsConfig,
    /// Gateway only.
    pub limits: Limits,
    /// Gateway only: OIDC for people.
    pub oidc: Option<concierge_gateway::oidc::OidcConfig>,
    /// Gateway only: service ("customers", …) → where it runs.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Where outgoing e-mail goes (`CONCIERGE_MAIL__*`); without an SMTP
    /// server it is not sent.
    pub mail: concierge_common::mail::MailConfig,
    /// Where files (dispute documents) go (`CONCIERGE_FILES__URL`); without
    /// it, a `concierge-files` directory where the process runs.
    pub files: concierge_common::files::FilesConfig,
    /// Where people reach the gateway's web pages (`CONCIERGE_PUBLIC_URL`),
    /// e.g. `https://concierge.example.com`: the base of the links services
    /// send by e-mail (survey responses).
    pub public_url: Option<String>,
    /// Gateway only: where it serves its web pages (the survey response
    /// page) over HTTP/1.1, host:port (`CONCIERGE_WEB_LISTEN`); not served
    /// when unset.
    pub web_listen: Option<SocketAddr>,
}

/// The public URL when none is configured: the web listener `concierge dev`
/// opens by default.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:50051";

/// Every service this binary runs, each one line: `dev`, `serve`,
/// `migrate`, the gateway's routing and health loop over this list.
pub fn services() -> Vec<Registration> {
    vec![
        Registration::of::<Customers>(),
        Registration::of::<Cases>(),
        Registration::of::<Disputes>(),
        Registration::of::<Csat>(),
    ]
}

/// The gateway is the front door, not a registered service: it routes to
/// the others and owns only its API keys.
const GATEWAY: &str = "gateway";

/// What `concierge serve` and `concierge migrate` can run: the gateway or a
/// registered service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceName(&'static str);

impl ServiceName {
    fn as_str(self) -> &'static str {
        self.0
    }

    fn registration(self) -> Option<Registration> {
        services().into_iter().find(|r| r.name == self.0)
    }

    fn migrations(self) -> Migrations {
        match self.registration() {
            Some(r) => (r.migrations)(),
            None => concierge_gateway::migrations(),
        }
    }
}

impl clap::ValueEnum for ServiceName {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::LazyLock<Vec<ServiceName>> = std::sync::LazyLock::new(|| {
            std::iter::once(ServiceName(GATEWAY))
                .chain(services().iter().map(|r| ServiceName(r.name)))
                .collect()
        });
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0))
    }
}

/// Where a service's relay publishes, when NATS is configured. It is
/// connected in the background: a service started during a NATS outage
/// serves, keeps its events in the outbox and publishes them once NATS
/// answers (`concierge_bus_connected` says which).
fn event_bus(events: &EventsConfig) -> Option<BusTarget> {
    match &events.nats_url {
        Some(url) => Some(BusTarget::Nats(url.clone())),
        None => {
            tracing::warn!("events.nats_url is not set: events stay in the outbox until it is");
            None
        }
    }
}

/// The gRPC service name of a backend known by its short name.
fn grpc_name(short: &str) -> anyhow::Result<&'static str> {
    let all = services();
    match all.iter().find(|r| r.name == short) {
        Some(r) => Ok(r.grpc_name),
        None => anyhow::bail!(
            "unknown backend {short:?}; known: {}",
            all.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The channels to the peers `service` calls, from `backends.<peer>.url`.
fn peer_channels(
    service: &Registration,
    backends: &BTreeMap<String, BackendConfig>,
) -> anyhow::Result<Peers> {
    let mut peers = Peers::default();
    for &peer in service.peers {
        let b = backends.get(peer).ok_or_else(|| {
            anyhow::anyhow!(
                "{} calls the {peer} service: set backends.{peer}.url (CONCIERGE_BACKENDS__{}__URL)",
                service.name,
                peer.to_uppercase()
            )
        })?;
        let channel = tonic::transport::Endpoint::from_shared(b.url.clone())?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        peers.insert(peer, channel);
    }
    for &peer in service.optional_peers {
        if let Some(b) = backends.get(peer) {
            let channel = tonic::transport::Endpoint::from_shared(b.url.clone())?
                .connect_timeout(std::time::Duration::from_secs(5))
                .tcp_nodelay(true)
                .connect_lazy();
            peers.insert(peer, channel);
        }
    }
    Ok(peers)
}

pub async fn serve(which: ServiceName, cfg: ServeConfig) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(which.as_str(), &cfg.telemetry)?;
    let codec = cfg.internal.codec()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let db = crate::database::connect(
        cfg.database.url.expose_secret(),
        cfg.database.max_connections,
    )
    .await?;
    if !cfg.database.migrate {
        schema_is_current(which, &db).await?;
    }
    let listener = TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.server.listen))?;
    // Every background loop of the process runs under this supervisor;
    // while a required one is down, health reads NOT_SERVING.
    let supervisor = Supervisor::default();
    let (routes, names) = match which.registration() {
        Some(service) => {
            let mail = concierge_common::mail::Mailer::from_config(&cfg.mail, None)?;
            tracing::info!("{}", mail.describe());
            let files = match &cfg.files.url {
                Some(url) => concierge_common::files::Files::open(url)?,
                None => {
                    let dir = std::env::current_dir()?.join("concierge-files");
                    tracing::warn!(
                        "files.url is not set: files are kept in {}, on this replica's disk only",
                        dir.display()
                    );
                    concierge_common::files::Files::local(&dir)?
                }
            };
            tracing::info!("{}", files.describe());
            let public_url = match &cfg.public_url {
                Some(url) => url.clone(),
                None => {
                    tracing::warn!(
                        "public_url is not set (CONCIERGE_PUBLIC_URL): links in e-mails point to {DEFAULT_PUBLIC_URL}"
                    );
                    DEFAULT_PUBLIC_URL.to_string()
                }
            };
            let opened = service
                .open(Deps {
                    db: db.clone(),
                    principals: codec,
                    clock,
                    peers: peer_channels(&service, &cfg.backends)?,
                    mail: Arc::new(mail),
                    files,
                    public_url,
                })
                .await?;
            opened.supervise(
                &supervisor,
                &Workers {
                    instance: format!("{}-{}", service.name, uuid::Uuid::new_v4()),
                    poll: std::time::Duration::from_secs(1),
                    bus: event_bus(&cfg.events),
                },
            );
            (opened.routes(), vec![service.grpc_name.to_string()])
        }
        None => {
            let mut backends = BTreeMap::new();
            for (short, b) in &cfg.backends {
                backends.insert(
                    grpc_name(short)?,
                    concierge_gateway::remote(&b.url, b.connections)?,
                );
            }
            if backends.is_empty() {
                anyhow::bail!(
                    "the gateway has no backends: set backends.customers.url (CONCIERGE_BACKENDS__CUSTOMERS__URL)"
                );
            }
            let gw = Gateway::open(
                db.clone(),
                codec,
                clock,
                cfg.limits.clone(),
                cfg.oidc.clone(),
                backends,
                cfg.events.nats_url.clone().map(|url| {
                    concierge_gateway::events::Feed::new(
                        BusTarget::Nats(url),
                        services().iter().map(|r| r.name).collect(),
                    )
                }),
            )
            .await?;
            gw.supervise(&supervisor);
            if let Some(addr) = cfg.web_listen {
                let web = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} (web_listen)"))?;
                tracing::info!(addr = %addr, "serving the web pages (survey responses)");
                gw.serve_web(web);
            }
            (gw.routes(), gw.service_names())
        }
    };
    let ready_db = db.clone();
    let ready_workers = supervisor.clone();
    let running = server::start(
        server::Listener::new(listener, cfg.server.tls()?),
        routes,
        Serve {
            health_names: names,
            grace_period: cfg.server.grace_period,
            drain_delay: cfg.server.drain_delay,
        },
        async move {
            ready_db.ping().await?;
            ready_workers.wait_healthy().await;
            Ok(())
        },
        server::shutdown_signal(),
    )
    .await?;
    supervisor.report_health(running.health(), running.draining());
    tracing::info!(service = which.as_str(), addr = %running.addr, "serving");
    running.wait().await?;
    db.close().await;
    Ok(())
}

/// With `database.migrate = false` a service leaves its schema to the
/// migration job; starting on an older schema would fail later, on the first
/// request that needs a missing column, so refuse at once and say what to run.
async fn schema_is_current(which: ServiceName, db: &Db) -> anyhow::Result<()> {
    let unapplied = which.migrations().unapplied(db).await;
    let fix = format!(
        "run `concierge migrate {}` with a database role that may change the schema (the concierge-migrate Job), or set database.migrate = true",
        which.as_str()
    );
    match unapplied {
        Ok(v) if v.is_empty() => Ok(()),
        Ok(v) => anyhow::bail!(
            "the {} database schema is behind this build (database.migrate is false): migrations {} are not applied; {fix}",
            which.as_str(),
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the {} database schema cannot be checked (database.migrate is false); {fix}",
            which.as_str()
        ))),
    }
}

pub async fn migrate(which: ServiceName, database_url: &str) -> anyhow::Result<()> {
    let db = crate::database::connect(database_url, 2).await?;
    which.migrations().apply(&db).await?;
    db.close().await;
    println!("{} database is up to date", which.as_str());
    Ok(())
}

fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(file).display())
}

/// The gateway database of a dev data directory (for `concierge keys`).
pub fn dev_gateway_url(dir: &Path) -> String {
    sqlite_url(dir, "gateway.db")
}

fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    write_private(path, &secret)?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub struct DevOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where the web pages (the survey response page) are served.
    pub web_listen: SocketAddr,
    /// As `serve` reads it (`CONCIERGE_TELEMETRY__*`), `--metrics-listen`
    /// included.
    pub telemetry: TelemetryConfig,
    /// The gateway's limits, as `serve` reads them (`CONCIERGE_LIMITS__*`).
    pub limits: Limits,
    /// Run on a controllable clock starting at this instant.
    pub test_clock: Option<jiff::Timestamp>,
    /// As `serve` reads it (`CONCIERGE_MAIL__*`); without an SMTP server,
    /// mail is written under the data directory.
    pub mail: concierge_common::mail::MailConfig,
}

/// `concierge dev`: the gateway and every service in one process on SQLite
/// files under the data directory; restarting on the same directory keeps
/// everything, including the admin key.
pub async fn dev(opts: DevOptions) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("concierge-dev", &opts.telemetry)?;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let dir = opts.data_dir.canonicalize()?;
    let codec = PrincipalCodec::new(read_or_create_secret(&dir.join("internal.secret"))?.into());
    let test_clock = opts.test_clock.map(concierge_common::clock::TestClock::new);
    let clock: SharedClock = match &test_clock {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };

    // The durable local bus of `concierge dev`: consumers catch up after a
    // restart, and the gateway's event stream resumes from a cursor.
    let log = concierge_common::local_bus::LocalBus::open(
        Db::connect(&sqlite_url(&dir, "events.db"), 4).await?,
    )
    .await?;
    let supervisor = Supervisor::default();
    log.supervise(&supervisor, clock.clone());
    let bus = Bus::Local(log);
    let mail =
        concierge_common::mail::Mailer::from_config(&opts.mail, Some(dir.join("outbox-mail")))?;
    let mail_goes = mail.describe();
    tracing::info!("{mail_goes}");
    let files = concierge_common::files::Files::local(&dir.join("files"))?;
    // Bound first: the links services e-mail point at it.
    let web = TcpListener::bind(opts.web_listen)
        .await
        .with_context(|| format!("listening on {} (--web-listen)", opts.web_listen))?;
    let public_url = format!("http://{}", web.local_addr()?);
    let suite = InProcess::start(
        &services(),
        async |service| Db::connect(&sqlite_url(&dir, &format!("{}.db", service.name)), 8).await,
        &concierge_common::kit::Shared {
            principals: codec.clone(),
            clock: clock.clone(),
            mail: Arc::new(mail),
            files,
            public_url: public_url.clone(),
        },
        &supervisor,
        |service| Workers {
            instance: format!("{}-dev", service.name),
            poll: std::time::Duration::from_secs(1),
            bus: Some(BusTarget::Ready(bus.clone())),
        },
    )
    .await?;
    let mut backends = suite.backends();
    let gateway_db = Db::connect(&sqlite_url(&dir, "gateway.db"), 4).await?;
    if let Some(c) = &test_clock {
        backends.insert(
            crate::test_clock::SERVICE_NAME,
            concierge_gateway::local(crate::test_clock::server(
                c.clone(),
                codec.clone(),
                suite.peers.channel("cases")?,
            )),
        );
    }
    let gateway = Gateway::open(
        gateway_db.clone(),
        codec,
        clock.clone(),
        opts.limits,
        None,
        backends,
        Some(concierge_gateway::events::Feed {
            // Webhooks to this machine, for trying a receiver out.
            webhook_targets: concierge_gateway::webhooks::Targets::Any,
            ..concierge_gateway::events::Feed::new(
                BusTarget::Ready(bus.clone()),
                services().iter().map(|r| r.name).collect(),
            )
        }),
    )
    .await?;
    gateway.supervise(&supervisor);
    let web_pages = gateway.serve_web(web);

    let key_file = dir.join("admin.key");
    let admin_key = match std::fs::read_to_string(&key_file) {
        Ok(k)
            if keys::verify(&gateway_db, k.trim(), clock.now())
                .await
                .is_ok() =>
        {
            k.trim().to_string()
        }
        _ => {
            let minted = keys::mint(
                &gateway_db,
                keys::NewKey {
                    role: Role::Admin,
                    account: None,
                    staff_member: None,
                    display_name: "concierge dev admin".into(),
                    expire_time: None,
                },
                clock.now(),
            )
            .await?;
            write_private(&key_file, &minted.key)?;
            minted.key
        }
    };

    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let running = server::start(
        listener,
        gateway.routes(),
        Serve {
            health_names: gateway.service_names(),
            grace_period: std::time::Duration::from_secs(5),
            // Ctrl-C on a laptop stops at once; nothing routes around it.
            drain_delay: std::time::Duration::ZERO,
        },
        {
            let supervisor = supervisor.clone();
            async move {
                supervisor.wait_healthy().await;
                Ok(())
            }
        },
        server::shutdown_signal(),
    )
    .await?;
    supervisor.report_health(running.health(), running.draining());
    let url = format!("http://{}", running.addr);
    let mut banner = format!(
        "Concierge dev is running.\n  gateway listening on {url}\n  web pages (survey responses) on {public_url}\n  admin API key: {admin_key}\n  data directory: {}\n  mail: {mail_goes}\n",
        dir.display()
    );
    if let Some(c) = &test_clock {
        banner.push_str(&format!(
            "  test clock: {} (move it with `concierge clock advance 48h`)\n",
            c.now()
        ));
    }
    banner.push_str(&format!(
        "\nUse it from another terminal:\n  export CONCIERGE_GATEWAY={url}\n  export CONCIERGE_API_KEY={admin_key}\n  concierge customers list\n"
    ));
    // Whoever reads our output may go away (`concierge dev | head`); the
    // server keeps running regardless.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    running.wait().await?;
    web_pages.abort();
    suite.close().await;
    gateway_db.close().await;
    Ok(())
}
