//! `concierge webhooks`: register receivers for events, pause and resume
//! them, send a test event, and read (and retry) what was delivered.

use clap::Subcommand;
use concierge_proto::concierge::gateway::v1::*;

use super::ClientArgs;
use crate::output::{self, Answer, ListArgs, paged};

#[derive(Subcommand)]
pub enum Command {
    /// Webhooks you may see.
    ///
    /// Examples: the disabled ones; those of one account;
    ///   --filter 'state = DISABLED'
    ///   --filter 'account = "accounts/acme"' --order-by 'display_name'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One webhook (never its secret: the last four characters tell secrets apart).
    Get { webhook: String },
    /// Register a receiver: events of the given types are POSTed to --url,
    /// signed with a secret (generated and shown once unless given).
    ///
    /// Example: the company's escalation channel
    ///   --display-name 'Escalations channel' --url https://hooks.example.com/concierge --type concierge.cases.v1.escalation_raised
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        /// https only (http to this machine in `concierge dev`).
        #[arg(long)]
        url: String,
        /// Event types, exact or a prefix ending in "*"; repeat for several.
        #[arg(long = "type", value_name = "TYPE", required = true)]
        types: Vec<String>,
        /// Only this account's events ("acme" or "accounts/acme").
        #[arg(long)]
        account: Option<String>,
        /// The signing secret (at least 32 characters); default: 32 random
        /// bytes, shown once.
        #[arg(long, env = "CONCIERGE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Attempts per event (default 8).
        #[arg(long, default_value_t = 0)]
        max_attempts: i32,
    },
    /// Change a webhook's name, URL or types, or rotate its secret.
    Update {
        webhook: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        url: Option<String>,
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// A new secret, generated and shown once.
        #[arg(long)]
        rotate_secret: bool,
    },
    /// Delete a webhook; its pending deliveries are dropped.
    Delete { webhook: String },
    /// Stop delivering (events are not queued meanwhile).
    Pause { webhook: String },
    /// Deliver again (a paused or disabled webhook).
    Resume { webhook: String },
    /// Send a test event now.
    Test { webhook: String },
    /// Deliveries of one webhook (or of all), newest first.
    ///
    /// Examples: what failed; one event's deliveries;
    ///   --filter 'state = FAILED'
    ///   --filter 'event_subject = "cases/c1/escalations/1"'
    #[command(verbatim_doc_comment)]
    Deliveries {
        webhook: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// One delivery with every attempt.
    Delivery { name: String },
    /// Deliver a FAILED delivery's event again.
    Retry { name: String },
}

fn webhook_name(w: &str) -> String {
    format!("webhooks/{}", w.trim_start_matches("webhooks/"))
}

fn state(s: i32) -> String {
    output::short(
        webhook::State::try_from(s)
            .unwrap_or_default()
            .as_str_name(),
        "STATE_",
    )
}

fn delivery_state(s: i32) -> String {
    output::short(
        webhook_delivery::State::try_from(s)
            .unwrap_or_default()
            .as_str_name(),
        "STATE_",
    )
}

fn webhook_text(w: &Webhook) -> String {
    format!(
        "{}  {}  {}\n  {}\n  types: {}{}\n  secret …{}  failures in a row: {}",
        w.name,
        state(w.state),
        w.display_name,
        w.url,
        w.event_types.join(", "),
        if w.account.is_empty() {
            String::new()
        } else {
            format!("\n  account: {}", w.account)
        },
        w.secret_hint,
        w.consecutive_failure_count
    )
}

fn delivery_text(d: &WebhookDelivery) -> String {
    let mut out = format!(
        "{}  {}  {} attempt(s)\n  {}  {}  {}",
        d.name,
        delivery_state(d.state),
        d.attempt_count,
        d.event_type,
        d.event_subject,
        d.event_id
    );
    for a in &d.attempts {
        let when = a
            .attempt_time
            .as_ref()
            .and_then(concierge_common::clock::from_proto)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let status = if a.http_status == 0 {
            "no answer".to_string()
        } else {
            format!("HTTP {}", a.http_status)
        };
        out.push_str(&format!("\n  {when}  {status}  {}", a.error));
    }
    out
}

fn secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.gateway();
    let json = args.json;
    let rid = || uuid::Uuid::new_v4().to_string();
    let print = |w: Webhook| output::emit(json, &w, |w| println!("{}", webhook_text(w)));
    let print_delivery =
        |d: WebhookDelivery| output::emit(json, &d, |d| println!("{}", delivery_text(d)));
    match command {
        Command::List { list } => {
            let (webhooks, next) = paged!(
                list,
                ListWebhooksRequest {
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                },
                c.list_webhooks,
                webhooks
            );
            let reply = ListWebhooksResponse {
                webhooks,
                next_page_token: next,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .webhooks
                    .iter()
                    .map(|w| {
                        vec![
                            w.name.clone(),
                            state(w.state),
                            w.display_name.clone(),
                            w.url.clone(),
                            w.event_types.join(","),
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    output::table(&["NAME", "STATE", "DISPLAY NAME", "URL", "TYPES"], &rows),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        Command::Get { webhook } => print(
            c.get_webhook(GetWebhookRequest {
                name: webhook_name(&webhook),
            })
            .await
            .answer()?,
        ),
        Command::Create {
            id,
            display_name,
            url,
            types,
            account,
            secret: given,
            max_attempts,
        } => {
            let generated = given.is_none();
            let secret = given.unwrap_or_else(secret);
            let w = c
                .create_webhook(CreateWebhookRequest {
                    webhook: Some(Webhook {
                        display_name,
                        url,
                        event_types: types,
                        account: account
                            .map(|a| format!("accounts/{}", a.trim_start_matches("accounts/")))
                            .unwrap_or_default(),
                        secret: secret.clone(),
                        max_attempts,
                        ..Default::default()
                    }),
                    webhook_id: id.unwrap_or_default(),
                    request_id: rid(),
                })
                .await
                .answer()?;
            print(w)?;
            if generated {
                eprintln!("signing secret (shown once, keep it with the receiver): {secret}");
            }
            Ok(())
        }
        Command::Update {
            webhook,
            display_name,
            url,
            types,
            rotate_secret,
        } => {
            let mut patch = Webhook {
                name: webhook_name(&webhook),
                ..Default::default()
            };
            let mut paths = Vec::new();
            if let Some(d) = display_name {
                patch.display_name = d;
                paths.push("display_name".to_string());
            }
            if let Some(u) = url {
                patch.url = u;
                paths.push("url".to_string());
            }
            if !types.is_empty() {
                patch.event_types = types;
                paths.push("event_types".to_string());
            }
            let rotated = rotate_secret.then(secret);
            if let Some(s) = &rotated {
                patch.secret = s.clone();
                paths.push("secret".to_string());
            }
            if paths.is_empty() {
                anyhow::bail!(
                    "nothing to change: give --display-name, --url, --type or --rotate-secret"
                );
            }
            let w = c
                .update_webhook(UpdateWebhookRequest {
                    webhook: Some(patch),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await
                .answer()?;
            print(w)?;
            if let Some(s) = rotated {
                eprintln!("new signing secret (shown once): {s}");
            }
            Ok(())
        }
        Command::Delete { webhook } => {
            c.delete_webhook(DeleteWebhookRequest {
                name: webhook_name(&webhook),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?;
            println!("deleted {}", webhook_name(&webhook));
            Ok(())
        }
        Command::Pause { webhook } => print(
            c.pause_webhook(PauseWebhookRequest {
                name: webhook_name(&webhook),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Resume { webhook } => print(
            c.resume_webhook(ResumeWebhookRequest {
                name: webhook_name(&webhook),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Test { webhook } => print_delivery(
            c.test_webhook(TestWebhookRequest {
                name: webhook_name(&webhook),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Deliveries { webhook, list } => {
            let (webhook_deliveries, next) = paged!(
                list,
                ListWebhookDeliveriesRequest {
                    parent: webhook
                        .as_deref()
                        .map(webhook_name)
                        .unwrap_or_else(|| "webhooks/-".into()),
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                },
                c.list_webhook_deliveries,
                webhook_deliveries
            );
            let reply = ListWebhookDeliveriesResponse {
                webhook_deliveries,
                next_page_token: next,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .webhook_deliveries
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            delivery_state(d.state),
                            d.attempt_count.to_string(),
                            d.event_type.clone(),
                            d.event_subject.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    output::table(&["NAME", "STATE", "ATTEMPTS", "EVENT", "SUBJECT"], &rows),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        Command::Delivery { name } => print_delivery(
            c.get_webhook_delivery(GetWebhookDeliveryRequest { name })
                .await
                .answer()?,
        ),
        Command::Retry { name } => print_delivery(
            c.retry_webhook_delivery(RetryWebhookDeliveryRequest {
                name,
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
    }
}
