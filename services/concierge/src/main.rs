//! `concierge`: one binary for running Concierge and for talking to it.

mod bench;
mod cases;
mod customers;
mod database;
mod output;
mod runtime;
mod test_clock;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use clap::{Parser, Subcommand};
use concierge_common::principal::Role;
use runtime::{DevOptions, ServiceName};

#[derive(Parser)]
#[command(
    name = "concierge",
    version,
    about = "Concierge: keep every client promise."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How client commands reach a gateway.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The gateway to talk to: https://host:port, or http:// on this machine
    /// (a bare 127.0.0.1:50050 means http://).
    #[arg(
        long,
        env = "CONCIERGE_GATEWAY",
        default_value = "http://127.0.0.1:50050",
        global = true
    )]
    pub gateway: String,
    /// API key (or OIDC token) to call with.
    #[arg(long, env = "CONCIERGE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Trust the CA certificates (PEM) in this file for an https:// gateway,
    /// instead of the system's.
    #[arg(long, env = "CONCIERGE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Send the API key over plain http:// to another machine. Anyone on the
    /// path can read it: only where the network is protected otherwise.
    #[arg(long, env = "CONCIERGE_INSECURE_PLAINTEXT", global = true)]
    pub insecure_plaintext: bool,
    /// Print proto3 JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<concierge_sdk::Client> {
        let mut b = concierge_sdk::Client::builder(self.gateway.clone())
            .insecure_plaintext(self.insecure_plaintext);
        if let Some(k) = &self.api_key {
            b = b.api_key(k.clone());
        }
        if let Some(ca) = &self.ca_file {
            b = b.ca_file(ca);
        }
        Ok(b.build()?)
    }
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

/// The gateway database `concierge keys` works on: --database-url, or the
/// one `concierge dev` keeps in its data directory, which must exist.
fn keys_database(database_url: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(url) = database_url {
        return Ok(url);
    }
    let db = data_dir.join("gateway.db");
    if !db.is_file() {
        let shown = std::path::absolute(&db).unwrap_or(db);
        anyhow::bail!(
            "no gateway database at {}: `concierge keys` manages the keys of a `concierge dev` data directory (run it where `concierge dev` runs, or pass --data-dir DIR), or of a deployed gateway with --database-url postgres://… (CONCIERGE_DATABASE__URL)",
            shown.display()
        );
    }
    Ok(runtime::dev_gateway_url(data_dir))
}

/// What `concierge dev` reads of the configuration `serve` reads: the rest
/// is fixed (SQLite files in the data directory, every service in-process).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DevConfig {
    telemetry: concierge_common::telemetry::TelemetryConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every service in this process on SQLite, with zero set-up.
    Dev {
        /// Where the databases and the admin key live; reuse it to keep everything.
        #[arg(long, default_value = ".concierge")]
        data_dir: PathBuf,
        /// Where the gateway listens, host:port (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: String,
        /// Serve Prometheus metrics on this address, host:port.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Run every service on a controllable clock, starting now or at the
        /// given RFC 3339 instant; move it with `concierge clock advance`.
        #[arg(long, num_args = 0..=1, default_missing_value = "now", value_name = "START")]
        test_clock: Option<String>,
    },
    /// Run one service, as a Kubernetes Deployment does. Configuration comes
    /// from --config, then CONCIERGE_* variables (e.g. CONCIERGE_DATABASE__URL).
    Serve {
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
    },
    /// Bring a service's database schema up to date.
    Migrate {
        service: ServiceName,
        #[arg(long, env = "CONCIERGE_DATABASE__URL")]
        database_url: String,
    },
    /// Mint, list and revoke API keys (admin, against the gateway database).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// The gateway database; defaults to the one of `concierge dev --data-dir`.
        #[arg(long, env = "CONCIERGE_DATABASE__URL", global = true)]
        database_url: Option<String>,
        #[arg(long, default_value = ".concierge", global = true)]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Accounts, contacts, sites, inventory and the staff directory.
    Customers {
        #[command(subcommand)]
        command: customers::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cases, their notes and SLA clocks.
    Cases {
        #[command(subcommand)]
        command: cases::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read or move the test clock of `concierge dev --test-clock`.
    Clock {
        #[command(subcommand)]
        command: ClockCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Measure things on purpose (never in tests).
    Bench {
        #[command(subcommand)]
        command: bench::Command,
    },
}

#[derive(Subcommand)]
enum ClockCommand {
    /// Show the current instant.
    Get,
    /// Move the clock forward, e.g. `48h`, `5d`, `1h 30m`; with --calendar,
    /// that much business time on the calendar (`48h --calendar us-central`).
    Advance {
        #[arg(allow_hyphen_values = true)]
        by: String,
        /// A business calendar's id: count `by` in its working hours.
        #[arg(long)]
        calendar: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Mint a key; its secret is printed once.
    Create {
        /// agent, account_manager, manager, admin or client.
        #[arg(long)]
        role: String,
        /// For client keys: the one account, "accounts/{account}".
        #[arg(long)]
        account: Option<String>,
        /// For staff keys: "staff/{staff_member}" (decides an account manager's portfolio).
        #[arg(long)]
        staff_member: Option<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by name, "apiKeys/{key}".
    Revoke { name: String },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev {
            data_dir,
            listen,
            metrics_listen,
            test_clock,
        } => {
            let test_clock = match test_clock.as_deref() {
                None => None,
                Some("now") => Some(jiff::Timestamp::now()),
                Some(t) => Some(
                    t.parse()
                        .map_err(|e| anyhow::anyhow!("--test-clock {t:?}: {e}"))?,
                ),
            };
            let listen = listen_addr("--listen", &listen).await?;
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
            let DevConfig { telemetry } =
                concierge_common::config::load(None, serde_json::Value::Object(flags))?;
            let _lock = lock_data_dir(&data_dir)?;
            runtime::dev(DevOptions {
                data_dir,
                listen,
                telemetry,
                test_clock,
            })
            .await
        }
        Command::Serve {
            service,
            config,
            listen,
            database_url,
            no_migrate,
        } => {
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
            let cfg = concierge_common::config::load(
                config.as_deref(),
                serde_json::Value::Object(flags),
            )?;
            runtime::serve(service, cfg).await
        }
        Command::Migrate {
            service,
            database_url,
        } => runtime::migrate(service, &database_url).await,
        Command::Keys {
            command,
            database_url,
            data_dir,
            json,
        } => {
            let url = keys_database(database_url, &data_dir)?;
            let db = database::connect(&url, 2).await?;
            concierge_gateway::migrate(&db).await?;
            let now = jiff::Timestamp::now();
            match command {
                KeysCommand::Create {
                    role,
                    account,
                    staff_member,
                    display_name,
                } => {
                    let role = Role::parse(&role)
                        .ok_or_else(|| anyhow::anyhow!("unknown role {role:?}: agent, account_manager, manager, admin or client"))?;
                    let minted = concierge_gateway::keys::mint(
                        &db,
                        concierge_gateway::keys::NewKey {
                            role,
                            account: account.map(|a| customers::account_name(&a)),
                            staff_member: staff_member.map(|s| customers::staff_name(&s)),
                            display_name,
                            expire_time: None,
                        },
                        now,
                    )
                    .await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({ "name": minted.name, "key": minted.key })
                            )?
                        );
                    } else {
                        println!("{}\n{}", minted.name, minted.key);
                    }
                }
                KeysCommand::List => {
                    let keys = concierge_gateway::keys::list(&db).await?;
                    let state = |revoked: bool| if revoked { "revoked" } else { "active" };
                    if json {
                        // Field names and enum spellings as in the ApiKey
                        // resource's proto3 JSON.
                        let keys: Vec<_> = keys
                            .iter()
                            .map(|k| {
                                serde_json::json!({
                                    "name": k.name,
                                    "displayName": k.display_name,
                                    "role": format!("ROLE_{}", k.role.to_ascii_uppercase()),
                                    "account": k.account,
                                    "staffMember": k.staff_member,
                                    "state": format!("STATE_{}", state(k.revoked).to_ascii_uppercase()),
                                })
                            })
                            .collect();
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&serde_json::json!({ "apiKeys": keys }))?
                        );
                    } else {
                        let rows: Vec<Vec<String>> = keys
                            .into_iter()
                            .map(|k| {
                                vec![
                                    k.name,
                                    k.role,
                                    k.account,
                                    k.staff_member,
                                    k.display_name,
                                    state(k.revoked).into(),
                                ]
                            })
                            .collect();
                        println!(
                            "{}",
                            output::table(
                                &[
                                    "NAME",
                                    "ROLE",
                                    "ACCOUNT",
                                    "STAFF MEMBER",
                                    "DISPLAY NAME",
                                    "STATE"
                                ],
                                &rows
                            )
                        );
                    }
                }
                KeysCommand::Revoke { name } => {
                    if concierge_gateway::keys::revoke(&db, &name, now).await? {
                        println!("{name} revoked");
                    } else {
                        anyhow::bail!("{name} does not exist or is already revoked");
                    }
                }
            }
            db.close().await;
            Ok(())
        }
        Command::Customers { command, client } => customers::run(command, &client).await,
        Command::Cases { command, client } => cases::run(command, &client).await,
        Command::Clock { command, client } => {
            use concierge_proto::concierge::testing::v1::{
                AdvanceTestClockRequest, GetTestClockRequest,
            };
            let mut c = client.client()?.test_clock();
            let clock = match command {
                ClockCommand::Get => {
                    c.get_test_clock(GetTestClockRequest {
                        name: "testClock".into(),
                    })
                    .await
                }
                ClockCommand::Advance { by, calendar } => {
                    let by: jiff::SignedDuration = by.parse().map_err(|e| {
                        anyhow::anyhow!("{by:?} is not a duration such as 48h or 1h 30m: {e}")
                    })?;
                    c.advance_test_clock(AdvanceTestClockRequest {
                        name: "testClock".into(),
                        by: Some(prost_types::Duration {
                            seconds: by.as_secs(),
                            nanos: by.subsec_nanos(),
                        }),
                        calendar: calendar
                            .map(|c| format!("calendars/{}", c.trim_start_matches("calendars/")))
                            .unwrap_or_default(),
                    })
                    .await
                }
            }
            .map_err(|e| {
                // Without --test-clock nothing serves the clock: the gateway
                // answers UNIMPLEMENTED (older ones a bare HTTP 404, which
                // tonic reads as the same code).
                if e.code() == tonic::Code::Unimplemented {
                    anyhow::anyhow!(
                        "the gateway at {} has no test clock: it runs only in `concierge dev --test-clock` (optionally with a start, e.g. --test-clock 2026-11-25T19:00:00Z); restart dev with it ({})",
                        client.gateway,
                        concierge_sdk::describe(&e)
                    )
                } else {
                    output::rpc(e)
                }
            })?
            .into_inner();
            if client.json {
                println!("{}", output::json(&clock)?);
            } else {
                let now = clock
                    .now
                    .as_ref()
                    .and_then(concierge_common::clock::from_proto);
                println!("{}", now.map(|t| t.to_string()).unwrap_or_default());
            }
            Ok(())
        }
        Command::Bench { command } => bench::run(command).await,
    }
}
