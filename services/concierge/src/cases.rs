//! `concierge cases …`: cases, their notes and SLA clocks, through the gateway.

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;

use crate::ClientArgs;
use crate::customers::account_name;
use crate::output::{self, short};

fn case_name(s: &str) -> String {
    if s.starts_with("cases/") {
        s.to_string()
    } else {
        format!("cases/{s}")
    }
}

fn parse_enum(
    value: &str,
    prefix: &str,
    parse: fn(&str) -> Option<i32>,
    what: &str,
) -> anyhow::Result<i32> {
    let upper = value.to_ascii_uppercase().replace('-', "_");
    parse(&upper)
        .or_else(|| parse(&format!("{prefix}{upper}")))
        .filter(|v| *v != 0)
        .ok_or_else(|| anyhow::anyhow!("{value:?} is not a {what}"))
}

fn rpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(concierge_sdk::describe(&e))
}

fn time(t: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t: jiff::Timestamp = t
        .parse()
        .map_err(|e| anyhow::anyhow!("{t:?} is not an RFC 3339 instant: {e}"))?;
    Ok(concierge_common::clock::to_proto(t))
}

fn show_time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

fn show_duration(d: &Option<prost_types::Duration>) -> String {
    let secs = d.as_ref().map(|d| d.seconds).unwrap_or(0);
    format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
}

fn state(c: &Case) -> String {
    case::State::try_from(c.state)
        .map(|s| short(s.as_str_name(), "STATE_"))
        .unwrap_or_default()
}

fn case_text(c: &Case) -> String {
    let kind = CaseType::try_from(c.r#type)
        .map(|t| short(t.as_str_name(), "CASE_TYPE_"))
        .unwrap_or_default();
    let priority = CasePriority::try_from(c.priority)
        .map(|p| short(p.as_str_name(), "CASE_PRIORITY_"))
        .unwrap_or_default();
    let mut out = format!(
        "{}  {}\n  {kind}, {priority} priority, {}  account: {}  owner: {}\n  SLA policy: {}  etag: {}",
        c.name,
        c.title,
        state(c),
        c.account,
        if c.owner.is_empty() { "-" } else { &c.owner },
        if c.sla_policy.is_empty() {
            "-".to_string()
        } else {
            format!("{}@{}", c.sla_policy, c.sla_policy_revision)
        },
        c.etag
    );
    if !c.state_reason.is_empty() {
        out.push_str(&format!("\n  reason: {}", c.state_reason));
    }
    out
}

#[derive(Subcommand)]
pub enum Command {
    /// Open a case for a client.
    Create {
        /// The client's account ("acme" or "accounts/acme").
        #[arg(long)]
        account: String,
        /// repair, order_new, order_move, order_disconnect, billing, inquiry, complaint, installation or training.
        #[arg(long = "type")]
        case_type: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// critical, high, medium or low.
        #[arg(long)]
        priority: Option<String>,
        /// The site's id within the account.
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    Get {
        case: String,
    },
    /// List cases; a portfolio is --filter 'account_manager = "staff/…"'.
    List {
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long, default_value = "")]
        order_by: String,
        #[arg(long, default_value_t = 0)]
        page_size: i32,
    },
    /// Acknowledge a new case (the first response).
    Open {
        case: String,
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// The performing team starts work.
    Start {
        case: String,
    },
    /// Wait on the client (client clocks pause).
    PendClient {
        case: String,
        #[arg(long)]
        reason: String,
    },
    /// Wait on the carrier (the carrier's clock runs).
    PendCarrier {
        case: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        carrier_reference: String,
    },
    Resume {
        case: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Put the case in jeopardy (JP), with a reason and revised ETA if known.
    Jeopardy {
        case: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Revised ETA, RFC 3339.
        #[arg(long)]
        eta: Option<String>,
    },
    Resolve {
        case: String,
        #[arg(long)]
        root_cause: String,
        #[arg(long)]
        code: String,
        #[arg(long)]
        summary: String,
    },
    Close {
        case: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Reopen {
        case: String,
        #[arg(long)]
        reason: String,
    },
    Cancel {
        case: String,
        #[arg(long)]
        reason: String,
    },
    /// Add a note: internal unless --public.
    Note {
        case: String,
        #[arg(long)]
        body: String,
        #[arg(long)]
        public: bool,
    },
    /// The notes of a case you may see.
    Notes {
        case: String,
    },
    /// Where each SLA clock of a case stands.
    Clocks {
        case: String,
    },
    /// Why a clock stands where it does: its ledger, segment by segment.
    Explain {
        case: String,
        /// The clock's key, e.g. "restore".
        key: String,
    },
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    let print = |case: Case| -> anyhow::Result<()> {
        if json {
            println!("{}", output::json(&case)?);
        } else {
            println!("{}", case_text(&case));
        }
        Ok(())
    };
    let rid = || uuid::Uuid::new_v4().to_string();
    match command {
        Command::Create {
            account,
            case_type,
            title,
            description,
            priority,
            site,
            id,
        } => {
            let account = account_name(&account);
            let case = Case {
                title,
                description,
                r#type: parse_enum(
                    &case_type,
                    "CASE_TYPE_",
                    |s| CaseType::from_str_name(s).map(|v| v as i32),
                    "case type",
                )?,
                priority: match priority {
                    Some(p) => parse_enum(
                        &p,
                        "CASE_PRIORITY_",
                        |s| CasePriority::from_str_name(s).map(|v| v as i32),
                        "priority",
                    )?,
                    None => 0,
                },
                site: site
                    .map(|s| format!("{account}/sites/{s}"))
                    .unwrap_or_default(),
                account,
                ..Default::default()
            };
            let created = c
                .create_case(CreateCaseRequest {
                    case: Some(case),
                    case_id: id.unwrap_or_default(),
                    request_id: rid(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            print(created)
        }
        Command::Get { case } => print(
            c.get_case(GetCaseRequest {
                name: case_name(&case),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::List {
            filter,
            order_by,
            page_size,
        } => {
            let resp = c
                .list_cases(ListCasesRequest {
                    page_size,
                    page_token: String::new(),
                    filter,
                    order_by,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                println!("{}", output::json(&resp)?);
            } else {
                let rows: Vec<Vec<String>> = resp
                    .cases
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            state(k),
                            k.account.clone(),
                            k.owner.clone(),
                            k.title.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["NAME", "STATE", "ACCOUNT", "OWNER", "TITLE"], &rows)
                );
            }
            Ok(())
        }
        Command::Open { case, owner } => print(
            c.open_case(OpenCaseRequest {
                name: case_name(&case),
                owner,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Start { case } => print(
            c.start_case_work(StartCaseWorkRequest {
                name: case_name(&case),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::PendClient { case, reason } => print(
            c.pend_case_on_client(PendCaseOnClientRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::PendCarrier {
            case,
            reason,
            carrier_reference,
        } => print(
            c.pend_case_on_carrier(PendCaseOnCarrierRequest {
                name: case_name(&case),
                reason,
                carrier_reference,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Resume { case, reason } => print(
            c.resume_case(ResumeCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Jeopardy { case, reason, eta } => print(
            c.mark_case_jeopardy(MarkCaseJeopardyRequest {
                name: case_name(&case),
                reason,
                revised_eta_time: eta.map(|t| time(&t)).transpose()?,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Resolve {
            case,
            root_cause,
            code,
            summary,
        } => print(
            c.resolve_case(ResolveCaseRequest {
                name: case_name(&case),
                resolution: Some(Resolution {
                    root_cause,
                    resolution_code: code,
                    summary,
                    resolver: String::new(),
                }),
                restore_time: None,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Close { case, reason } => print(
            c.close_case(CloseCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Reopen { case, reason } => print(
            c.reopen_case(ReopenCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Cancel { case, reason } => print(
            c.cancel_case(CancelCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        ),
        Command::Note { case, body, public } => {
            let visibility = if public {
                note::Visibility::Public
            } else {
                note::Visibility::Internal
            };
            let n = c
                .create_note(CreateNoteRequest {
                    parent: case_name(&case),
                    note: Some(Note {
                        visibility: visibility as i32,
                        body,
                        ..Default::default()
                    }),
                    note_id: String::new(),
                    notify_client: false,
                    request_id: rid(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                println!("{}", output::json(&n)?)
            } else {
                println!("{}", n.name)
            }
            Ok(())
        }
        Command::Notes { case } => {
            let resp = c
                .list_notes(ListNotesRequest {
                    parent: case_name(&case),
                    ..Default::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                println!("{}", output::json(&resp)?);
            } else {
                for n in &resp.notes {
                    let vis = note::Visibility::try_from(n.visibility)
                        .map(|v| short(v.as_str_name(), "VISIBILITY_"))
                        .unwrap_or_default();
                    println!(
                        "{}  [{vis}] {}: {}",
                        show_time(&n.create_time),
                        n.author,
                        n.body
                    );
                }
            }
            Ok(())
        }
        Command::Clocks { case } => {
            let resp = c
                .list_sla_clocks(ListSlaClocksRequest {
                    parent: case_name(&case),
                    ..Default::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                println!("{}", output::json(&resp)?);
            } else {
                let rows: Vec<Vec<String>> = resp
                    .sla_clocks
                    .iter()
                    .map(|k| {
                        vec![
                            k.key.clone(),
                            SlaState::try_from(k.state)
                                .map(|s| short(s.as_str_name(), "SLA_STATE_"))
                                .unwrap_or_default(),
                            sla_clock::Status::try_from(k.status)
                                .map(|s| short(s.as_str_name(), "STATUS_"))
                                .unwrap_or_default(),
                            show_duration(&k.elapsed_duration),
                            show_duration(&k.remaining_duration),
                            show_duration(&k.paused_duration),
                            show_time(&k.target_time),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(
                        &[
                            "CLOCK",
                            "STATE",
                            "NOW",
                            "ELAPSED",
                            "REMAINING",
                            "PAUSED",
                            "TARGET"
                        ],
                        &rows
                    )
                );
            }
            Ok(())
        }
        Command::Explain { case, key } => {
            let resp = c
                .explain_sla_clock(ExplainSlaClockRequest {
                    name: format!("{}/slaClocks/{key}", case_name(&case)),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                println!("{}", output::json(&resp)?);
            } else {
                for s in &resp.segments {
                    println!(
                        "{} → {}  {:>7}  total {:>7}  {}",
                        show_time(&s.start_time),
                        show_time(&s.end_time),
                        show_duration(&s.counted_duration),
                        show_duration(&s.cumulative_elapsed_duration),
                        s.explanation
                    );
                }
            }
            Ok(())
        }
    }
}
