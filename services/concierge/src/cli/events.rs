//! `concierge events tail`: follows the suite's events through the gateway
//! as they happen, one line each (or proto3 JSON per line with `--json`),
//! reconnecting from the last cursor when the connection drops, so that
//! nothing is missed or shown twice.

use std::io::Write;
use std::time::Duration;

use concierge_proto::concierge::gateway::v1::subscribe_events_response::Item;
use concierge_proto::concierge::gateway::v1::*;
use concierge_proto::events::{Event, Visibility};

use super::ClientArgs;
use crate::output;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Follow events as they happen, until Ctrl-C or --limit.
    ///
    /// Examples:
    ///   --type 'concierge.cases.v1.*' --account acme
    ///   --since 2h --limit 20
    ///   --cursor <the cursor a previous tail printed on exit>
    #[command(verbatim_doc_comment)]
    Tail(TailArgs),
}

#[derive(clap::Args)]
pub struct TailArgs {
    /// Event types: exact ("concierge.cases.v1.case_resolved") or a prefix
    /// ending in "*"; repeat for several. Default: every type you may see.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Only these accounts ("acme" or "accounts/acme"); repeat for several.
    #[arg(long)]
    account: Vec<String>,
    /// Only events whose subject starts with this, e.g. "cases/123".
    #[arg(long)]
    subject: Vec<String>,
    /// Replay from this long ago ("2h", "30m") or this instant (RFC 3339,
    /// "2026-12-01T09:00:00Z") before following; default: new events only.
    #[arg(long)]
    since: Option<String>,
    /// Resume just after a cursor a previous tail printed.
    #[arg(long, conflicts_with = "since")]
    cursor: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
}

fn start_time(since: &str) -> anyhow::Result<prost_types::Timestamp> {
    let at = match since.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => {
            let ago: jiff::SignedDuration = since.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--since {since:?}: give a duration (\"2h\", \"30m\") or an instant (\"2026-12-01T09:00:00Z\")"
                )
            })?;
            jiff::Timestamp::now()
                .checked_sub(ago.abs())
                .map_err(|e| anyhow::anyhow!("--since {since:?}: {e}"))?
        }
    };
    Ok(concierge_common::clock::to_proto(at))
}

fn line(e: &Event) -> String {
    let when = e
        .occur_time
        .as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let internal = if e.visibility == Visibility::Public as i32 {
        ""
    } else {
        "  (internal)"
    };
    format!(
        "{when}  {}  {}  {}  by {}{internal}",
        e.r#type.strip_prefix("concierge.").unwrap_or(&e.r#type),
        e.subject,
        if e.account.is_empty() {
            "-"
        } else {
            &e.account
        },
        e.actor
    )
}

pub async fn run(command: Command, client: &ClientArgs) -> anyhow::Result<()> {
    match command {
        Command::Tail(args) => tail(args, client).await,
    }
}

async fn tail(args: TailArgs, client: &ClientArgs) -> anyhow::Result<()> {
    let mut request = SubscribeEventsRequest {
        event_types: args.types,
        accounts: args
            .account
            .iter()
            .map(|a| format!("accounts/{}", a.trim_start_matches("accounts/")))
            .collect(),
        subject_prefixes: args.subject,
        resume_cursor: args.cursor.unwrap_or_default(),
        start_time: args.since.as_deref().map(start_time).transpose()?,
    };
    let sdk = client.client()?;
    let mut shown = 0u64;
    let mut reconnects = 0u32;
    let limit = args.limit.unwrap_or(u64::MAX);
    loop {
        let mut stream = match sdk.gateway().subscribe_events(request.clone()).await {
            Ok(r) => r.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable && reconnects > 0 => {
                reconnects = reconnects.saturating_add(1);
                tokio::time::sleep(backoff(reconnects)).await;
                continue;
            }
            Err(e) => return Err(output::rpc(e)),
        };
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("resume with: --cursor {}", request.resume_cursor);
                    return Ok(());
                }
            };
            match next {
                Ok(Some(m)) => {
                    reconnects = 0;
                    request.resume_cursor = m.cursor.clone();
                    // A resume starts from the cursor, not from the time.
                    request.start_time = None;
                    let Some(Item::Event(e)) = m.item else {
                        continue;
                    };
                    let printed = if client.json {
                        output::json_line(&e)?
                    } else {
                        line(&e)
                    };
                    let mut out = std::io::stdout().lock();
                    // A reader that went away (`| head`) ends the tail.
                    if writeln!(out, "{printed}")
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return Ok(());
                    }
                    shown = shown.saturating_add(1);
                    if shown >= limit {
                        eprintln!("resume with: --cursor {}", request.resume_cursor);
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e)
                    if e.code() == tonic::Code::Unavailable || e.code() == tonic::Code::Unknown =>
                {
                    break;
                }
                Err(e) => return Err(output::rpc(e)),
            }
        }
        // The connection dropped: resume from the last cursor.
        reconnects = reconnects.saturating_add(1);
        eprintln!("the stream was interrupted; resuming");
        tokio::time::sleep(backoff(reconnects)).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << attempt.min(6)))
}
