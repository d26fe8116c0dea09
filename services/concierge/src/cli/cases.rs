//! `concierge cases …`: cases, their notes and SLA clocks, through the gateway.

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;

use super::ClientArgs;
use super::customers::account_name;
use crate::output::{self, Answer, ListArgs, paged, parse_enum, short};

pub(super) fn case_name(s: &str) -> String {
    if s.starts_with("cases/") {
        s.to_string()
    } else {
        format!("cases/{s}")
    }
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
    if !c.hand_off_code.is_empty() {
        out.push_str(&format!(
            "\n  hand-off: {} ({})",
            c.hand_off_code,
            if c.presented_to_carrier {
                "presented to the carrier"
            } else {
                "not presented"
            }
        ));
    }
    if c.withheld_by_dependency {
        out.push_str("\n  withheld: depends on an open case");
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
        /// An inventory item the case concerns, by its id at the site
        /// (repeat for several).
        #[arg(long = "item", requires = "site")]
        items: Vec<String>,
        #[arg(long)]
        id: Option<String>,
    },
    Get {
        case: String,
    },
    /// Triage a repair: the site's inventory, what is impacted, monitoring
    /// and the failover paths.
    Triage {
        case: String,
        /// Also record the triage as an internal note on the case.
        #[arg(long)]
        record: bool,
    },
    /// List cases.
    ///
    /// Examples: a portfolio's open cases,
    ///   --filter 'account_manager = "staff/ayse" AND state = OPEN'
    /// and the urgent ones, longest open first,
    ///   --filter 'priority = CRITICAL OR priority = HIGH' --order-by 'create_time'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
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
        /// Also send a public update to the client delegate and the case's contact.
        #[arg(long, requires = "public")]
        notify: bool,
    },
    /// The notes of a case you may see.
    Notes {
        case: String,
    },
    /// Where each SLA clock of a case stands; without a case, the clocks of
    /// every case you may see, soonest target first.
    ///
    /// Examples: --filter 'state = BREACHED'
    ///   --filter 'state = AT_RISK AND target_time < "2026-12-01T00:00:00Z"'
    #[command(verbatim_doc_comment)]
    Clocks {
        case: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Link two cases: TYPE is parent-of, child-of, depends-on, blocks,
    /// duplicate-of or duplicated-by.
    Link {
        case: String,
        #[arg(value_name = "TYPE")]
        kind: String,
        target: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The links of a case.
    Links {
        case: String,
    },
    /// Set an order's hand-off code toward the carrier (NR, HE, EN, PE, …).
    HandOff {
        case: String,
        code: String,
        #[arg(long, default_value = "")]
        carrier_reference: String,
    },
    /// Merge a duplicate into an open case of the same account.
    Merge {
        case: String,
        #[arg(long)]
        into: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Business calendars (working hours, holidays).
    Calendars {
        #[command(subcommand)]
        command: CalendarsCommand,
    },
    /// Hand-off codes toward the carrier (configuration).
    HandOffCodes {
        #[command(subcommand)]
        command: HandOffCodesCommand,
    },
    /// Escalations: raise, list, acknowledge, resolve, cancel.
    Escalations {
        #[command(subcommand)]
        command: super::escalations::EscalationsCommand,
    },
    /// Chase rules: list them, apply a TOML file of them, delete one.
    ChaseRules {
        #[command(subcommand)]
        command: super::chase_rules::ChaseRulesCommand,
    },
    /// Chase runs at work: list them, their steps, cancel one.
    ChaseRuns {
        #[command(subcommand)]
        command: super::chase_runs::ChaseRunsCommand,
    },
    /// SLA policies (targets in business time, versioned).
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// Why a clock stands where it does: its ledger, segment by segment.
    Explain {
        case: String,
        /// The clock's key, e.g. "restore".
        key: String,
    },
}

#[derive(Subcommand)]
pub enum CalendarsCommand {
    /// Create a calendar, e.g. --hours mon-fri=09:00-17:00 --holiday 2026-11-26.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        display_name: String,
        /// IANA time zone.
        #[arg(long)]
        time_zone: String,
        /// Working hours: "mon-fri=09:00-17:00", "sat=10:00-14:00"; repeatable.
        #[arg(long = "hours", required = true)]
        hours: Vec<String>,
        /// A day off, "2026-11-26"; or a short day, "2026-11-27=09:00-13:00". Repeatable.
        #[arg(long = "holiday")]
        holidays: Vec<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum HandOffCodesCommand {
    /// Create a code, e.g. --id PE --display-name "Presented" --presented --type order-new.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        display_name: String,
        /// The code says the order is with the carrier.
        #[arg(long)]
        presented: bool,
        /// Case types it applies to (repeatable); none means all.
        #[arg(long = "type")]
        types: Vec<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum PoliciesCommand {
    /// Create a policy; targets are durations such as 1h, 8h, 5d.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        display_name: String,
        /// The calendar's id.
        #[arg(long)]
        calendar: String,
        /// Case types it applies to (repeatable); none means all.
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long)]
        first_response: Option<String>,
        #[arg(long)]
        delivery: Option<String>,
        /// Read the hours in the calendar's, the site's or the account's time zone.
        #[arg(long, default_value = "calendar")]
        time_zone_source: String,
    },
    List,
    /// Every revision of a policy, oldest first.
    Revisions {
        id: String,
    },
    /// Make an earlier revision current again (as a new revision).
    Rollback {
        id: String,
        #[arg(long)]
        revision: String,
    },
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn minutes(hhmm: &str) -> anyhow::Result<i32> {
    let (h, m) = hhmm
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("{hhmm:?} is not HH:MM"))?;
    Ok(h.parse::<i32>()? * 60 + m.parse::<i32>()?)
}

fn span(text: &str) -> anyhow::Result<(i32, i32)> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("{text:?} is not HH:MM-HH:MM"))?;
    Ok((minutes(a)?, minutes(b)?))
}

/// "mon-fri=09:00-17:00" → one period per day.
fn hours(text: &str) -> anyhow::Result<Vec<WorkingPeriod>> {
    let (days, times) = text
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{text:?} is not DAYS=HH:MM-HH:MM"))?;
    let (start, end) = span(times)?;
    let index = |d: &str| {
        DAYS.iter()
            .position(|(n, _)| *n == d)
            .ok_or_else(|| anyhow::anyhow!("{d:?} is not a day (mon..sun)"))
    };
    let (from, to) = match days.split_once('-') {
        Some((a, b)) => (index(a)?, index(b)?),
        None => (index(days)?, index(days)?),
    };
    Ok((from..=to)
        .map(|i| WorkingPeriod {
            weekday: DAYS[i].1 as i32,
            start_minute: start,
            end_minute: end,
        })
        .collect())
}

fn holiday(text: &str) -> anyhow::Result<Holiday> {
    let (date, times) = match text.split_once('=') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let d: jiff::civil::Date = date.parse().map_err(|e| anyhow::anyhow!("{date:?}: {e}"))?;
    let working_periods = match times {
        Some(t) => {
            let (start_minute, end_minute) = span(t)?;
            vec![WorkingPeriod {
                weekday: 0,
                start_minute,
                end_minute,
            }]
        }
        None => vec![],
    };
    Ok(Holiday {
        date: Some(LocalDate {
            year: d.year().into(),
            month: d.month().into(),
            day: d.day().into(),
        }),
        display_name: String::new(),
        working_periods,
    })
}

fn duration(text: &str) -> anyhow::Result<SlaTarget> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a duration such as 8h: {e}"))?;
    Ok(SlaTarget {
        duration: Some(prost_types::Duration {
            seconds: d.as_secs(),
            nanos: 0,
        }),
        ..Default::default()
    })
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    let print = |case: Case| output::emit(json, &case, |c| println!("{}", case_text(c)));
    let rid = || uuid::Uuid::new_v4().to_string();
    match command {
        Command::Create {
            account,
            case_type,
            title,
            description,
            priority,
            site,
            items,
            id,
        } => {
            let account = account_name(&account);
            let site = site.map(|s| format!("{account}/sites/{s}"));
            let inventory_items = match &site {
                Some(site) => items
                    .iter()
                    .map(|i| format!("{site}/inventoryItems/{i}"))
                    .collect(),
                None => Vec::new(),
            };
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
                site: site.unwrap_or_default(),
                inventory_items,
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
                .answer()?;
            print(created)
        }
        Command::Triage { case, record } => {
            let t = c
                .triage_repair_case(TriageRepairCaseRequest {
                    name: case_name(&case),
                    record_note: record,
                    request_id: uuid::Uuid::new_v4().to_string(),
                })
                .await
                .answer()?;
            output::emit(json, &t, print_triage)
        }
        Command::Get { case } => print(
            c.get_case(GetCaseRequest {
                name: case_name(&case),
            })
            .await
            .answer()?,
        ),
        Command::List { list } => {
            let req = ListCasesRequest {
                page_size: list.page_size,
                page_token: list.page_token.clone(),
                filter: list.filter.clone(),
                order_by: list.order_by.clone(),
            };
            let (cases, next_page_token) = paged!(list, req, c.list_cases, cases);
            let resp = ListCasesResponse {
                cases,
                next_page_token,
                ..Default::default()
            };
            output::emit(json, &resp, |resp| {
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
                    "{}{}",
                    output::table(&["NAME", "STATE", "ACCOUNT", "OWNER", "TITLE"], &rows),
                    output::next_page(&resp.next_page_token)
                );
            })
        }
        Command::Open { case, owner } => print(
            c.open_case(OpenCaseRequest {
                name: case_name(&case),
                owner,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Start { case } => print(
            c.start_case_work(StartCaseWorkRequest {
                name: case_name(&case),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::PendClient { case, reason } => print(
            c.pend_case_on_client(PendCaseOnClientRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
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
            .answer()?,
        ),
        Command::Resume { case, reason } => print(
            c.resume_case(ResumeCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
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
            .answer()?,
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
            .answer()?,
        ),
        Command::Close { case, reason } => print(
            c.close_case(CloseCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Reopen { case, reason } => print(
            c.reopen_case(ReopenCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Cancel { case, reason } => print(
            c.cancel_case(CancelCaseRequest {
                name: case_name(&case),
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Note {
            case,
            body,
            public,
            notify,
        } => {
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
                    notify_client: notify,
                    request_id: rid(),
                })
                .await
                .answer()?;
            output::emit(json, &n, |n| {
                println!("{}", n.name);
                for contact in &n.notified_contacts {
                    println!("  notified {contact}");
                }
            })
        }
        Command::Notes { case } => {
            let resp = c
                .list_notes(ListNotesRequest {
                    parent: case_name(&case),
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
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
            })
        }
        Command::Clocks { case, list } => {
            let across = case.is_none();
            let req = ListSlaClocksRequest {
                parent: case_name(case.as_deref().unwrap_or("-")),
                page_size: list.page_size,
                page_token: list.page_token.clone(),
                filter: list.filter.clone(),
                order_by: list.order_by.clone(),
            };
            let (sla_clocks, next_page_token) = paged!(list, req, c.list_sla_clocks, sla_clocks);
            let resp = ListSlaClocksResponse {
                sla_clocks,
                next_page_token,
            };
            output::emit(json, &resp, |resp| {
                let rows: Vec<Vec<String>> = resp
                    .sla_clocks
                    .iter()
                    .map(|k| {
                        let clock = if across {
                            k.name.replace("/slaClocks/", " ")
                        } else {
                            k.key.clone()
                        };
                        vec![
                            clock,
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
                    "{}{}",
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
                    ),
                    output::next_page(&resp.next_page_token)
                );
            })
        }
        Command::Link {
            case,
            kind,
            target,
            reason,
        } => {
            let kind = match kind.as_str() {
                "parent-of" => case_link::Type::ParentOf,
                "child-of" => case_link::Type::ChildOf,
                "depends-on" => case_link::Type::DependsOn,
                "blocks" => case_link::Type::Blocks,
                "duplicate-of" => case_link::Type::DuplicateOf,
                "duplicated-by" => case_link::Type::DuplicatedBy,
                other => anyhow::bail!(
                    "{other:?} is not a link type: parent-of, child-of, depends-on, blocks, duplicate-of, duplicated-by"
                ),
            };
            let link = c
                .create_case_link(CreateCaseLinkRequest {
                    parent: case_name(&case),
                    case_link: Some(CaseLink {
                        r#type: kind as i32,
                        target: case_name(&target),
                        reason,
                        ..Default::default()
                    }),
                    case_link_id: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?;
            output::emit(json, &link, |link| println!("{}", link.name))
        }
        Command::Links { case } => {
            let resp = c
                .list_case_links(ListCaseLinksRequest {
                    parent: case_name(&case),
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
                for l in &resp.case_links {
                    let kind = case_link::Type::try_from(l.r#type)
                        .map(|t| short(t.as_str_name(), "TYPE_"))
                        .unwrap_or_default();
                    println!("{kind:<14} {}  {}", l.target, l.reason);
                }
            })
        }
        Command::HandOff {
            case,
            code,
            carrier_reference,
        } => print(
            c.set_case_hand_off_code(SetCaseHandOffCodeRequest {
                name: case_name(&case),
                hand_off_code: code,
                carrier_reference,
                reason: String::new(),
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        Command::Merge { case, into, reason } => {
            let resp = c
                .merge_case(MergeCaseRequest {
                    name: case_name(&case),
                    target: case_name(&into),
                    reason,
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?;
            output::emit(json, &resp, |_| {
                println!("merged {} into {}", case_name(&case), case_name(&into))
            })
        }
        Command::ChaseRules { command } => super::chase_rules::run(command, args).await,
        Command::ChaseRuns { command } => super::chase_runs::run(command, args).await,
        Command::Escalations { command } => super::escalations::run(command, args).await,
        Command::Calendars { command } => match command {
            CalendarsCommand::Create {
                id,
                display_name,
                time_zone,
                hours: spans,
                holidays,
            } => {
                let mut working_periods = Vec::new();
                for h in &spans {
                    working_periods.extend(hours(h)?);
                }
                let calendar = Calendar {
                    display_name,
                    time_zone: Some(concierge_proto::types::TimeZone { id: time_zone }),
                    working_periods,
                    holidays: holidays
                        .iter()
                        .map(|h| holiday(h))
                        .collect::<anyhow::Result<_>>()?,
                    ..Default::default()
                };
                let created = c
                    .create_calendar(CreateCalendarRequest {
                        calendar: Some(calendar),
                        calendar_id: id,
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                output::emit(json, &created, |created| {
                    println!("{}  {}", created.name, created.display_name)
                })
            }
            CalendarsCommand::List => {
                let resp = c
                    .list_calendars(ListCalendarsRequest::default())
                    .await
                    .answer()?;
                output::emit(json, &resp, |resp| {
                    for k in &resp.calendars {
                        println!(
                            "{}  {}  ({})",
                            k.name,
                            k.display_name,
                            k.time_zone.as_ref().map(|t| t.id.as_str()).unwrap_or("")
                        );
                    }
                })
            }
        },
        Command::Policies { command } => match command {
            PoliciesCommand::Create {
                id,
                display_name,
                calendar,
                types,
                first_response,
                delivery,
                time_zone_source,
            } => {
                use concierge_proto::concierge::cases::v1::sla_policy::TimeZoneSource;
                let policy = SlaPolicy {
                    display_name,
                    calendar: format!("calendars/{}", calendar.trim_start_matches("calendars/")),
                    case_types: types
                        .iter()
                        .map(|t| {
                            parse_enum(
                                t,
                                "CASE_TYPE_",
                                |s| CaseType::from_str_name(s).map(|v| v as i32),
                                "case type",
                            )
                        })
                        .collect::<anyhow::Result<_>>()?,
                    first_response: first_response.map(|d| duration(&d)).transpose()?.map(|t| {
                        SlaTarget {
                            key: "first_response".into(),
                            ..t
                        }
                    }),
                    overall_delivery: delivery.map(|d| duration(&d)).transpose()?.map(|t| {
                        SlaTarget {
                            key: "delivery".into(),
                            ..t
                        }
                    }),
                    time_zone_source: parse_enum(
                        &time_zone_source,
                        "TIME_ZONE_SOURCE_",
                        |s| TimeZoneSource::from_str_name(s).map(|v| v as i32),
                        "time zone source (calendar, site, account)",
                    )?,
                    ..Default::default()
                };
                let created = c
                    .create_sla_policy(CreateSlaPolicyRequest {
                        sla_policy: Some(policy),
                        sla_policy_id: id,
                        validate_only: false,
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                output::emit(json, &created, |created| {
                    println!(
                        "{}@{}  {}",
                        created.name, created.revision_id, created.display_name
                    )
                })
            }
            PoliciesCommand::List => {
                let resp = c
                    .list_sla_policies(ListSlaPoliciesRequest::default())
                    .await
                    .answer()?;
                output::emit(json, &resp, |resp| {
                    for p in &resp.sla_policies {
                        println!(
                            "{}@{}  {}  (precedence {}, {})",
                            p.name, p.revision_id, p.display_name, p.precedence, p.calendar
                        );
                    }
                })
            }
            PoliciesCommand::Revisions { id } => {
                let resp = c
                    .list_sla_policy_revisions(ListSlaPolicyRevisionsRequest {
                        name: format!("slaPolicies/{id}"),
                        ..Default::default()
                    })
                    .await
                    .answer()?;
                output::emit(json, &resp, |resp| {
                    for p in &resp.sla_policies {
                        println!(
                            "{}@{}  {}  {}",
                            p.name,
                            p.revision_id,
                            show_time(&p.revision_create_time),
                            p.display_name
                        );
                    }
                })
            }
            PoliciesCommand::Rollback { id, revision } => {
                let p = c
                    .rollback_sla_policy(RollbackSlaPolicyRequest {
                        name: format!("slaPolicies/{id}"),
                        revision_id: revision,
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                output::emit(json, &p, |p| {
                    println!("{}@{}  {}", p.name, p.revision_id, p.display_name)
                })
            }
        },
        Command::HandOffCodes { command } => match command {
            HandOffCodesCommand::Create {
                id,
                display_name,
                presented,
                types,
            } => {
                let code = c
                    .create_hand_off_code(CreateHandOffCodeRequest {
                        hand_off_code: Some(HandOffCode {
                            display_name,
                            presented_to_carrier: presented,
                            case_types: types
                                .iter()
                                .map(|t| {
                                    parse_enum(
                                        t,
                                        "CASE_TYPE_",
                                        |s| CaseType::from_str_name(s).map(|v| v as i32),
                                        "case type",
                                    )
                                })
                                .collect::<anyhow::Result<_>>()?,
                            ..Default::default()
                        }),
                        hand_off_code_id: id,
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                output::emit(json, &code, |code| println!("{}", code.name))
            }
            HandOffCodesCommand::List => {
                let resp = c
                    .list_hand_off_codes(ListHandOffCodesRequest::default())
                    .await
                    .answer()?;
                output::emit(json, &resp, |resp| {
                    for code in &resp.hand_off_codes {
                        println!(
                            "{:<6} {}{}",
                            code.name.trim_start_matches("handOffCodes/"),
                            code.display_name,
                            if code.presented_to_carrier {
                                "  (presented to the carrier)"
                            } else {
                                ""
                            }
                        );
                    }
                })
            }
        },
        Command::Explain { case, key } => {
            let resp = c
                .explain_sla_clock(ExplainSlaClockRequest {
                    name: format!("{}/slaClocks/{key}", case_name(&case)),
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
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
            })
        }
    }
}

/// A triage as a person reads it: the inventory as a table, then the paths.
fn print_triage(t: &RepairTriage) {
    use concierge_proto::concierge::cases::v1::inventory_item_snapshot::{Kind, Role, State};
    let word = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_lowercase();
    if let Some(site) = &t.site {
        println!("{} ({})", site.display_name, site.name);
    }
    for i in &t.inventory {
        println!(
            "{} {:<9} {:<9} {:<10} {:<28} {:<12} {}{}",
            if i.impacted { "!" } else { " " },
            word(
                Kind::try_from(i.kind).unwrap_or_default().as_str_name(),
                "KIND_"
            ),
            word(
                Role::try_from(i.role).unwrap_or_default().as_str_name(),
                "ROLE_"
            ),
            word(
                State::try_from(i.state).unwrap_or_default().as_str_name(),
                "STATE_"
            ),
            i.product,
            i.carrier,
            if i.monitored {
                format!("monitored ({})", i.monitoring_tool)
            } else {
                String::new()
            },
            if i.open_cases.is_empty() {
                String::new()
            } else {
                format!("  also in {}", i.open_cases.join(", "))
            }
        );
    }
    if let Some(m) = &t.monitoring {
        println!("\nmonitoring: {}", m.obligations);
    }
    println!("re-route:");
    for r in &t.reroute_options {
        if r.available {
            println!("  {}", r.description);
        } else {
            println!("  {} (not now: {})", r.description, r.unavailable_reason);
        }
    }
    println!("relief:");
    for r in &t.relief_options {
        println!("  {}", r.description);
    }
    if !t.note.is_empty() {
        println!("recorded as {}", t.note);
    }
}
