//! The command line: what each command group takes, and the module that
//! carries it out.

mod bench;
mod cases;
mod chase_rules;
mod chase_runs;
mod clock;
mod control_doc;
mod csat;
mod customers;
mod disputes;
mod escalations;
mod events;
mod keys;
mod review;
mod server;
mod webhooks;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "concierge",
    version,
    about = "Concierge: keep every client promise."
)]
pub struct Cli {
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

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every service in this process on SQLite, with zero set-up.
    Dev(server::Dev),
    /// Run one service, as a Kubernetes Deployment does. Configuration comes
    /// from --config, then CONCIERGE_* variables (e.g. CONCIERGE_DATABASE__URL).
    Serve(server::Serve),
    /// Bring a service's database schema up to date.
    Migrate(server::Migrate),
    /// Mint, list and revoke API keys (admin, against the gateway database).
    Keys(keys::Keys),
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
    /// Billing disputes: claims, their credit with its working, approval,
    /// the company's position and the client's answer.
    Disputes {
        #[command(subcommand)]
        command: disputes::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The account manager's morning: every case of the portfolio that needs
    /// action, most urgent first, with what to do next.
    ///
    /// Example: another's breached SLAs (managers and admins),
    ///   --manager staff/ayse --filter 'reason = SLA_BREACHED'
    #[command(verbatim_doc_comment)]
    Review {
        #[command(flatten)]
        review: review::ReviewArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow the suite's events as they happen (what you may see of them).
    Events {
        #[command(subcommand)]
        command: events::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Webhooks: events POSTed, signed, to other systems (an escalation channel).
    Webhooks {
        #[command(subcommand)]
        command: webhooks::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// CSAT: survey templates, triggers, and the surveys sent after cases.
    Csat {
        #[command(subcommand)]
        command: csat::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Management reports: `monthly`, a portfolio's month with charts.
    Report {
        #[command(subcommand)]
        command: csat::ReportKind,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A client's control document: generate, send, list, open.
    ControlDoc {
        #[command(subcommand)]
        command: control_doc::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Who the gateway takes you for (your key's role, staff member, account).
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read or move the test clock of `concierge dev --test-clock`.
    Clock {
        #[command(subcommand)]
        command: clock::Command,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Measure things on purpose (never in tests).
    Bench {
        #[command(subcommand)]
        command: bench::Command,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(dev) => server::dev(dev).await,
        Command::Serve(serve) => server::serve(serve).await,
        Command::Migrate(migrate) => server::migrate(migrate).await,
        Command::Keys(keys) => keys::run(keys).await,
        Command::Customers { command, client } => customers::run(command, &client).await,
        Command::Cases { command, client } => cases::run(command, &client).await,
        Command::Disputes { command, client } => disputes::run(command, &client).await,
        Command::Clock { command, client } => clock::run(command, &client).await,
        Command::Review { review, client } => review::review(review, &client).await,
        Command::Events { command, client } => events::run(command, &client).await,
        Command::Webhooks { command, client } => webhooks::run(command, &client).await,
        Command::Csat { command, client } => csat::run(command, &client).await,
        Command::Report {
            command: csat::ReportKind::Monthly { command },
            client,
        } => csat::monthly_reports(command, &client).await,
        Command::Whoami { client } => review::whoami(&client).await,
        Command::ControlDoc { command, client } => control_doc::run(command, &client).await,
        Command::Bench { command } => bench::run(command).await,
    }
}
