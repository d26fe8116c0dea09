//! `concierge dev`, `serve` and `migrate`: their flags, made into what the
//! runtime takes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::runtime::{self, DevOptions, ServiceName};

// The about text of each of these is the doc comment of its `Command`
// variant; one here would be shown in its place.
#[derive(clap::Args)]
pub struct Dev {
    /// Where the databases and the admin key live; reuse it to keep everything.
    #[arg(long, default_value = ".concierge")]
    data_dir: PathBuf,
    /// Where the gateway listens, host:port (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:50050")]
    listen: String,
    /// Where the web pages (the survey response page) are served over
    /// HTTP/1.1, host:port; by default the gateway's port plus one (a free
    /// one when --listen picks a free one).
    #[arg(long)]
    web_listen: Option<String>,
    /// Serve Prometheus metrics on this address, host:port.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Run every service on a controllable clock, starting now or at the
    /// given RFC 3339 instant; move it with `concierge clock advance`.
    #[arg(long, num_args = 0..=1, default_missing_value = "now", value_name = "START")]
    test_clock: Option<String>,
}

#[derive(clap::Args)]
pub struct Serve {
    service: ServiceName,
    #[arg(long, env = "CONCIERGE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides server.listen, host:port.
    #[arg(long)]
    listen: Option<String>,
    /// Overrides database.url.
    #[arg(long)]
    database_url: Option<String>,
    /// Sets database.migrate = false: leave the schema to `concierge
    /// migrate` and only check that it is current.
    #[arg(long)]
    no_migrate: bool,
}

#[derive(clap::Args)]
pub struct Migrate {
    service: ServiceName,
    #[arg(long, env = "CONCIERGE_DATABASE__URL")]
    database_url: String,
}

pub async fn dev(
    Dev {
        data_dir,
        listen,
        web_listen,
        metrics_listen,
        test_clock,
    }: Dev,
) -> anyhow::Result<()> {
    let test_clock = match test_clock.as_deref() {
        None => None,
        Some("now") => Some(jiff::Timestamp::now()),
        Some(t) => Some(
            t.parse()
                .map_err(|e| anyhow::anyhow!("--test-clock {t:?}: {e}"))?,
        ),
    };
    let listen = listen_addr("--listen", &listen).await?;
    let web_listen = match web_listen {
        Some(w) => listen_addr("--web-listen", &w).await?,
        None => {
            let mut w = listen;
            if w.port() != 0 {
                w.set_port(w.port().checked_add(1).ok_or_else(|| {
                    anyhow::anyhow!("--listen uses the last port: give --web-listen")
                })?);
            }
            w
        }
    };
    let metrics_listen = match metrics_listen {
        Some(m) => Some(listen_addr("--metrics-listen", &m).await?),
        None => None,
    };
    // The same telemetry settings as `serve` (CONCIERGE_TELEMETRY__*),
    // the flag over them.
    let mut flags = serde_json::Map::new();
    if let Some(m) = metrics_listen {
        flags.insert(
            "telemetry".into(),
            serde_json::json!({ "metrics_listen": m.to_string() }),
        );
    }
    let DevConfig {
        telemetry,
        limits,
        mail,
    } = concierge_common::config::load(None, serde_json::Value::Object(flags))?;
    let _lock = lock_data_dir(&data_dir)?;
    runtime::dev(DevOptions {
        data_dir,
        listen,
        web_listen,
        telemetry,
        limits,
        test_clock,
        mail,
    })
    .await
}

/// What `concierge dev` reads of the configuration `serve` reads: the rest
/// is fixed (SQLite files in the data directory, every service in-process).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DevConfig {
    telemetry: concierge_common::telemetry::TelemetryConfig,
    /// The gateway's per-principal limits (`CONCIERGE_LIMITS__*`), so
    /// `concierge bench load` can measure the services rather than the
    /// limiter with its one admin key.
    limits: concierge_gateway::Limits,
    /// `CONCIERGE_MAIL__*`: an SMTP server instead of .eml files under the
    /// data directory.
    mail: concierge_common::mail::MailConfig,
}

pub async fn serve(
    Serve {
        service,
        config,
        listen,
        database_url,
        no_migrate,
    }: Serve,
) -> anyhow::Result<()> {
    let mut flags = serde_json::Map::new();
    if let Some(l) = listen {
        let l = listen_addr("--listen", &l).await?;
        flags.insert(
            "server".into(),
            serde_json::json!({ "listen": l.to_string() }),
        );
    }
    let mut database = serde_json::Map::new();
    if let Some(u) = database_url {
        database.insert("url".into(), u.into());
    }
    if no_migrate {
        database.insert("migrate".into(), false.into());
    }
    if !database.is_empty() {
        flags.insert("database".into(), database.into());
    }
    let cfg = concierge_common::config::load(config.as_deref(), serde_json::Value::Object(flags))?;
    runtime::serve(service, cfg).await
}

pub async fn migrate(
    Migrate {
        service,
        database_url,
    }: Migrate,
) -> anyhow::Result<()> {
    runtime::migrate(service, &database_url).await
}

/// A listening address from the command line: `127.0.0.1:50050`,
/// `[::1]:50050` or a host name such as `localhost:50050`, resolved.
async fn listen_addr(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    let hint =
        || format!("{flag} {value:?}: expected host:port, e.g. 127.0.0.1:50050 or localhost:50050");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(value)
        .await
        .with_context(hint)?
        .collect();
    // IPv4 first: `localhost` then serves the http://127.0.0.1 URL that
    // clients use by default, whatever order the resolver gives.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{}: it resolves to no address", hint()))
}

/// The lock that keeps a data directory to one `concierge dev`: two would
/// run two timer sweepers on one SQLite file. An OS advisory lock, so it
/// goes with the process however it ends (kill -9 included); the file
/// holds the owner's pid for the message.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("dev.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            let path = dir.join("dev.lock");
            anyhow::bail!(
                "{} is in use by another `concierge dev` (pid {}, which holds {}): use that one, stop it first, or give this one its own --data-dir",
                dir.display(),
                holder.trim(),
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
