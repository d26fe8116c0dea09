//! `concierge`: one binary for running Concierge and for talking to it.

mod bench;
mod cases;
mod customers;
mod output;
mod runtime;
mod test_clock;

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// The gateway to talk to.
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
    /// Print proto3 JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<concierge_sdk::Client> {
        let mut b = concierge_sdk::Client::builder(self.gateway.clone());
        if let Some(k) = &self.api_key {
            b = b.api_key(k.clone());
        }
        Ok(b.build()?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every service in this process on SQLite, with zero set-up.
    Dev {
        /// Where the databases and the admin key live; reuse it to keep everything.
        #[arg(long, default_value = ".concierge")]
        data_dir: PathBuf,
        /// Where the gateway listens (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: SocketAddr,
        /// Serve Prometheus metrics on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
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
        /// Overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
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
            runtime::dev(DevOptions {
                data_dir,
                listen,
                metrics_listen,
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
        } => {
            let url = database_url.unwrap_or_else(|| runtime::dev_gateway_url(&data_dir));
            let db = concierge_common::storage::Db::connect(&url, 2).await?;
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
                    println!("{}\n{}", minted.name, minted.key);
                }
                KeysCommand::List => {
                    let rows: Vec<Vec<String>> = concierge_gateway::keys::list(&db)
                        .await?
                        .into_iter()
                        .map(|k| {
                            vec![
                                k.name,
                                k.role,
                                k.account,
                                k.staff_member,
                                k.display_name,
                                if k.revoked {
                                    "revoked".into()
                                } else {
                                    "active".into()
                                },
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
            use output::Answer as _;
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
            .answer()?;
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
