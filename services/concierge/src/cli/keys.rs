//! `concierge keys`: API keys, minted, listed and revoked straight in the
//! gateway database.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use concierge_common::principal::Role;

use super::customers;
use crate::{database, output, runtime};

// The about text is the doc comment of the `keys` command's variant; one
// here would be shown in its place.
#[derive(clap::Args)]
pub struct Keys {
    #[command(subcommand)]
    command: Command,
    /// The gateway database; defaults to the one of `concierge dev --data-dir`.
    #[arg(long, env = "CONCIERGE_DATABASE__URL", global = true)]
    database_url: Option<String>,
    #[arg(long, default_value = ".concierge", global = true)]
    data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
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

pub async fn run(
    Keys {
        command,
        database_url,
        data_dir,
        json,
    }: Keys,
) -> anyhow::Result<()> {
    let url = keys_database(database_url, &data_dir)?;
    let db = database::connect(&url, 2).await?;
    concierge_gateway::migrate(&db).await?;
    let now = jiff::Timestamp::now();
    match command {
        Command::Create {
            role,
            account,
            staff_member,
            display_name,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role {role:?}: agent, account_manager, manager, admin or client"
                )
            })?;
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
        Command::List => {
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
        Command::Revoke { name } => {
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
