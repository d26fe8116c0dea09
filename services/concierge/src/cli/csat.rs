//! `concierge csat`: survey templates and triggers, and the surveys they
//! send (list, send one by hand, withdraw one).

use clap::Subcommand;
use concierge_proto::csat::*;

use super::ClientArgs;
use crate::output::{self, Answer, ListArgs, paged};

#[derive(Subcommand)]
pub enum Command {
    /// Survey templates: the question and scale, the texts per language.
    Templates {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Survey triggers: which case event sends which template, when.
    Triggers {
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// Surveys sent (or suppressed, withdrawn) and their answers.
    Surveys {
        #[command(subcommand)]
        command: SurveyCommand,
    },
    /// Corrective action plans: opened for detractors or by hand.
    Plans {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// CSAT %, NPS and CES by account, portfolio, manager, case type or
    /// month (a survey counts in the month it was sent).
    ///
    /// Examples: Ayşe's portfolio by month; the NPS of every account;
    ///   --from 2026-06 --to 2026-11 --by month --filter 'portfolio = "staff/ayse"'
    ///   --from 2026-11 --by account --filter 'kind = NPS_0_10'
    #[command(verbatim_doc_comment)]
    Scores {
        /// First month, YYYY-MM (default: this month, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last month, YYYY-MM (default: the first).
        #[arg(long)]
        to: Option<String>,
        /// Group by account, portfolio, account-manager, case-type, month
        /// (repeat or comma-separate).
        #[arg(long = "by", value_delimiter = ',')]
        by: Vec<String>,
        /// Over account, portfolio, account_manager, case_type, kind.
        #[arg(long, default_value = "")]
        filter: String,
        /// Month boundaries in this IANA time zone (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Rows fetched per call; every row is shown.
        #[arg(long, default_value_t = 1000)]
        page_size: i32,
    },
    /// KPIs by account, portfolio, manager, case type, month or agent,
    /// each against its target (a case's times in business time of its SLA
    /// calendar when it has one).
    ///
    /// Examples: Ayşe's portfolio this month; agents' availability by month;
    ///   --from 2026-11 --filter 'portfolio = "staff/ayse"'
    ///   --from 2026-09 --to 2026-11 --by agent,month --kind agent-availability --filter 'agent != ""'
    #[command(verbatim_doc_comment)]
    Kpis {
        /// First month, YYYY-MM (default: this month, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last month, YYYY-MM (default: the first).
        #[arg(long)]
        to: Option<String>,
        /// Group by account, portfolio, account-manager, case-type, month,
        /// agent (repeat or comma-separate).
        #[arg(long = "by", value_delimiter = ',')]
        by: Vec<String>,
        /// The KPIs (default all): first-response-time, time-to-resolve,
        /// sla-compliance, backlog-age, reopen-rate, dispute-cycle-time,
        /// credits-granted, agent-availability.
        #[arg(long = "kind", value_delimiter = ',')]
        kinds: Vec<String>,
        /// Over account, portfolio, account_manager, case_type, agent.
        #[arg(long, default_value = "")]
        filter: String,
        /// Month boundaries in this IANA time zone (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Rows fetched per call; every row is shown.
        #[arg(long, default_value_t = 1000)]
        page_size: i32,
    },
    /// The KPI targets (agent availability at least 75% until changed).
    KpiTargets {
        #[command(subcommand)]
        command: KpiTargetCommand,
    },
    /// Agents' phone-queue time from the contact centre: scheduled,
    /// available, on a call, on a break…
    Availability {
        #[command(subcommand)]
        command: AvailabilityCommand,
    },
    /// Clients' satisfaction now: level, trend, the window's scores.
    Satisfaction {
        /// Accounts, "acme" or "accounts/acme".
        #[arg(required = true)]
        accounts: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ReportKind {
    /// Monthly reports: a portfolio's (or the company's) month with
    /// charts, as an HTML page and CSV; made on the first of each month and
    /// on demand.
    Monthly {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Make a month's report now (this month: a preview to date).
    ///
    /// Examples: Ayşe's November, e-mailed to her and her manager; the company's;
    ///   --portfolio ayse --month 2026-11 --send
    ///   --month 2026-11 --html november.html
    #[command(verbatim_doc_comment)]
    Generate {
        /// The account manager whose portfolio, "ayse" or "staff/ayse"
        /// (default: the whole company).
        #[arg(long)]
        portfolio: Option<String>,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Month boundaries in this IANA time zone (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// E-mail it: to --to, else to the account manager and their manager.
        #[arg(long)]
        send: bool,
        /// A recipient, "staff/…" or an address (repeat; implies --send).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Write the HTML page here as well.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Write the CSV here as well.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
    },
    /// Reports, newest first.
    ///
    /// Example: Ayşe's reports this year;
    ///   --filter 'portfolio = "staff/ayse" AND month.year = 2026'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// A report's figures and who it went to.
    Get { report: String },
    /// Write a report's HTML page (or its CSV) to a file and print its path.
    Open {
        report: String,
        /// Where; default: ./<report id>.html (or .csv).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// The CSV instead of the page.
        #[arg(long)]
        csv: bool,
    },
    /// E-mail a report again: to --to, else to the account manager and
    /// their manager.
    Send {
        report: String,
        /// A recipient, "staff/…" or an address (repeat).
        #[arg(long = "to")]
        to: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum KpiTargetCommand {
    /// The targets.
    Get,
    /// Set one KPI's target: a time for the time KPIs, a share for the
    /// others (credits granted take none).
    ///
    /// Examples: first responses within 4 hours on average; at most 5% reopened
    ///   first-response-time --max-duration 4h
    ///   reopen-rate --max-percent 5
    #[command(verbatim_doc_comment)]
    Set {
        /// The KPI, e.g. first-response-time.
        kind: String,
        /// For a time KPI: the mean must not exceed it, e.g. 4h or 2d.
        #[arg(long, conflicts_with_all = ["min_percent", "max_percent"])]
        max_duration: Option<String>,
        /// For a share: at least this percent.
        #[arg(long, conflicts_with = "max_percent")]
        min_percent: Option<f64>,
        /// For a share: at most this percent.
        #[arg(long)]
        max_percent: Option<f64>,
    },
    /// Remove one KPI's target.
    Clear {
        /// The KPI, e.g. agent-availability.
        kind: String,
    },
}

#[derive(Subcommand)]
pub enum AvailabilityCommand {
    /// Ingest intervals from a CSV file with the header
    /// staff_member,kind,start_time,end_time,source,external_id (kind:
    /// scheduled, available, on-call, break, meeting, unavailable; times in
    /// RFC 3339). In batches of 1000, each stored whole or not at all; a
    /// row whose source and external id are stored already replaces it, so
    /// importing a file again is safe.
    Import {
        /// The CSV file.
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
    },
    /// Intervals, by start time.
    ///
    /// Example: one agent's breaks;
    ///   --filter 'staff_member = "staff/ali" AND kind = BREAK'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete an interval ingested in error.
    Delete { interval: String },
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Templates, by name.
    ///
    /// Example: the NPS ones;
    ///   --filter 'kind = NPS_0_10'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One template with its texts.
    Get { template: String },
    /// A template: its kind and, per language, the question (and labels,
    /// comment prompt and thank-you); the e-mail is the standard one.
    ///
    /// Example: a CSAT survey in English and Turkish, with a comment
    ///   --id post-resolution --display-name 'After resolution' --kind csat --question 'en=How satisfied are you with how we handled it?' --question 'tr=Talebinizin ele alınışından ne kadar memnunsunuz?' --comment-prompt 'en=Anything we could do better?' --comment-prompt 'tr=Neyi daha iyi yapabilirdik?'
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        /// csat (1-5), nps (0-10) or ces (1-7).
        #[arg(long)]
        kind: String,
        /// LANG=QUESTION; repeat per language (en, tr).
        #[arg(long = "question", value_name = "LANG=TEXT", required = true)]
        questions: Vec<String>,
        /// LANG=LABEL of the lowest score.
        #[arg(long = "low-label", value_name = "LANG=TEXT")]
        low_labels: Vec<String>,
        /// LANG=LABEL of the highest score.
        #[arg(long = "high-label", value_name = "LANG=TEXT")]
        high_labels: Vec<String>,
        /// LANG=PROMPT of an optional comment; giving one offers the comment.
        #[arg(long = "comment-prompt", value_name = "LANG=TEXT")]
        comment_prompts: Vec<String>,
        /// LANG=TEXT shown after the answer.
        #[arg(long = "thank-you", value_name = "LANG=TEXT")]
        thank_yous: Vec<String>,
        /// The language for contacts whose own is missing (default: the
        /// first question's).
        #[arg(long)]
        default_language: Option<String>,
    },
    /// Delete a template no trigger sends.
    Delete { template: String },
}

#[derive(Subcommand)]
pub enum TriggerCommand {
    /// Triggers, by name.
    ///
    /// Example: the enabled ones;
    ///   --filter 'enabled = true'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One trigger.
    Get { trigger: String },
    /// Send a template when cases resolve (or close), after a delay, at
    /// most once per contact in a number of days.
    ///
    /// Example: every resolved repair, two hours later, once a month at most
    ///   --id repairs --display-name 'Resolved repairs' --template post-resolution --on resolved --case-type repair --delay 2h --suppression-days 30
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        display_name: String,
        /// The template, "post-resolution" or "surveyTemplates/post-resolution".
        #[arg(long)]
        template: String,
        /// resolved or closed.
        #[arg(long, default_value = "resolved")]
        on: String,
        /// Case types it applies to (repeat); default: all.
        #[arg(long = "case-type", value_name = "TYPE")]
        case_types: Vec<String>,
        /// How long after the event the survey goes out, e.g. 2h.
        #[arg(long, default_value = "0s")]
        delay: String,
        /// A contact gets at most one survey in this many days.
        #[arg(long, default_value_t = 0)]
        suppression_days: i32,
        /// How long the link works, e.g. 336h (default 14 days).
        #[arg(long)]
        response_window: Option<String>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// Switch a trigger on.
    Enable { trigger: String },
    /// Switch a trigger off (nothing new is scheduled).
    Disable { trigger: String },
    /// Delete a trigger; the surveys it scheduled are withdrawn.
    Delete { trigger: String },
}

#[derive(Subcommand)]
pub enum SurveyCommand {
    /// Surveys, newest first.
    ///
    /// Examples: detractors; one account's answered surveys;
    ///   --filter 'detractor = true'
    ///   --filter 'account = "accounts/acme" AND state = ANSWERED'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One survey with its answer.
    Get { survey: String },
    /// Survey a case's contact now (suppression still applies).
    Send {
        /// The case, "c1" or "cases/c1".
        #[arg(long = "case")]
        case_name: String,
        /// The template, "post-resolution" or "surveyTemplates/…".
        #[arg(long)]
        template: String,
        /// Another contact of the case's account, "accounts/acme/contacts/deniz".
        #[arg(long)]
        contact: Option<String>,
    },
    /// Withdraw a scheduled or sent survey; its link stops working.
    Cancel {
        survey: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Plans, the soonest due first.
    ///
    /// Examples: Ayşe's overdue plans; those opened for detractors;
    ///   --filter 'account_manager = "staff/ayse" AND overdue = true'
    ///   --filter 'origin = DETRACTOR AND state = OPEN'
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// One plan with its actions.
    Get { plan: String },
    /// Open a plan by hand.
    ///
    /// Example: an executive call within a week
    ///   --account acme --title 'Win back Acme' --owner mira --action 'Executive call;due=2026-12-08T15:00:00Z;owner=mira'
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(long)]
        id: Option<String>,
        /// "acme" or "accounts/acme".
        #[arg(long)]
        account: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// "mira" or "staff/mira".
        #[arg(long)]
        owner: String,
        /// Cases behind it, "c1" or "cases/c1"; repeat.
        #[arg(long = "case", value_name = "CASE")]
        cases: Vec<String>,
        /// "DESCRIPTION[;due=INSTANT][;owner=STAFF]"; repeat.
        #[arg(long = "action", value_name = "ACTION")]
        actions: Vec<String>,
    },
    /// Move one action: open, in-progress, done or cancelled.
    Act {
        plan: String,
        action: String,
        #[arg(long)]
        state: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Close a plan whose actions are all done or dropped.
    Complete {
        plan: String,
        #[arg(long, default_value = "")]
        outcome: String,
    },
    /// Abandon a plan.
    Cancel {
        plan: String,
        #[arg(long)]
        reason: String,
    },
    /// Reopen a completed or cancelled plan.
    Reopen {
        plan: String,
        #[arg(long)]
        reason: String,
    },
}

fn staff(v: &str) -> String {
    named("staff", v)
}

/// "Executive call;due=2026-12-08T15:00:00Z;owner=mira".
fn action(spec: &str) -> anyhow::Result<CorrectiveAction> {
    let mut parts = spec.split(';');
    let mut a = CorrectiveAction {
        description: parts.next().unwrap_or_default().trim().to_string(),
        ..Default::default()
    };
    for part in parts {
        match part.split_once('=') {
            Some(("due", t)) => {
                let t: jiff::Timestamp = t.trim().parse().map_err(|e| {
                    anyhow::anyhow!("--action {spec:?}: due={t:?} is not an instant such as 2026-12-08T15:00:00Z: {e}")
                })?;
                a.due_time = Some(concierge_common::clock::to_proto(t));
            }
            Some(("owner", o)) => a.owner = staff(o.trim()),
            _ => anyhow::bail!("--action {spec:?}: write DESCRIPTION[;due=INSTANT][;owner=STAFF]"),
        }
    }
    Ok(a)
}

fn plan_state(s: i32) -> String {
    output::short(
        corrective_action_plan::State::try_from(s)
            .unwrap_or_default()
            .as_str_name(),
        "STATE_",
    )
}

fn plan_text(p: &CorrectiveActionPlan) -> String {
    let mut out = format!(
        "{}  {}{}  {}\n  account {}  owner {}  {}",
        p.name,
        plan_state(p.state),
        if p.overdue { " (overdue)" } else { "" },
        p.title,
        p.account,
        p.owner,
        output::short(
            corrective_action_plan::Origin::try_from(p.origin)
                .unwrap_or_default()
                .as_str_name(),
            "ORIGIN_"
        )
    );
    for a in &p.actions {
        out.push_str(&format!(
            "\n  [{}] {}{}  {}{}{}",
            a.id,
            output::short(
                corrective_action::State::try_from(a.state)
                    .unwrap_or_default()
                    .as_str_name(),
                "STATE_"
            ),
            if a.overdue { " (overdue)" } else { "" },
            a.description,
            if a.due_time.is_some() {
                format!("  due {}", when(&a.due_time))
            } else {
                String::new()
            },
            if a.owner.is_empty() {
                String::new()
            } else {
                format!("  {}", a.owner)
            }
        ));
    }
    out
}

fn report_month(r: &MonthlyReport) -> String {
    r.month
        .map(|m| format!("{:04}-{:02}", m.year, m.month))
        .unwrap_or_default()
}

/// A report in a few lines: the month's figures, the clients at risk, the
/// KPIs that missed their targets, the deliveries.
fn report_text(r: &MonthlyReport) -> String {
    let s = r.scores.unwrap_or_default();
    let cells = summary_cells(&s);
    let mut out = format!(
        "{}  {}  {}\n  CSAT % {}  NPS {}  CES {}  ({} sent)",
        r.name,
        report_month(r),
        r.portfolio_display_name,
        cells[0],
        cells[1],
        cells[2],
        s.sent_count
    );
    let at_risk: Vec<&str> = r
        .accounts
        .iter()
        .filter(|a| a.level == client_satisfaction::Level::AtRisk as i32)
        .map(|a| a.account_display_name.as_str())
        .collect();
    out.push_str(&format!(
        "\n  clients at risk: {}",
        if at_risk.is_empty() {
            "none".to_string()
        } else {
            at_risk.join(", ")
        }
    ));
    for k in r
        .kpis
        .iter()
        .filter(|k| k.target.is_some() && !k.meets_target && k.sample_count > 0)
    {
        out.push_str(&format!(
            "\n  missed: {}  {}",
            kpi_name(k.kind),
            kpi_value_text(k)
        ));
    }
    out.push_str(&format!(
        "\n  plans opened {}, overdue {}",
        r.corrective_action_plans_opened, r.corrective_action_plans_overdue
    ));
    for d in &r.deliveries {
        out.push_str(&format!(
            "\n  to {}  {}{}",
            d.email,
            output::short(
                report_delivery::State::try_from(d.state)
                    .unwrap_or_default()
                    .as_str_name(),
                "STATE_",
            ),
            if d.error.is_empty() {
                String::new()
            } else {
                format!("  {}", d.error)
            }
        ));
    }
    out
}

fn month(flag: &str, v: &str) -> anyhow::Result<Month> {
    v.split_once('-')
        .and_then(|(y, m)| {
            Some(Month {
                year: y.parse().ok()?,
                month: m.parse().ok()?,
            })
        })
        .ok_or_else(|| anyhow::anyhow!("{flag} {v:?}: a month as YYYY-MM, e.g. 2026-11"))
}

fn summary_cells(s: &ScoreSummary) -> Vec<String> {
    let figure = |n: i64, v: f64| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    vec![
        format!(
            "{} ({})",
            figure(s.csat_response_count, s.csat_percent),
            s.csat_response_count
        ),
        format!(
            "{} ({})",
            figure(s.nps_response_count, s.nps),
            s.nps_response_count
        ),
        format!(
            "{} ({})",
            figure(s.ces_response_count, s.ces_mean),
            s.ces_response_count
        ),
        s.sent_count.to_string(),
        figure(s.sent_count, s.response_rate_percent),
    ]
}

fn kpi_kind(text: &str) -> anyhow::Result<i32> {
    output::parse_enum(
        text,
        "KPI_KIND_",
        |s| KpiKind::from_str_name(s).map(|k| k as i32),
        "KPI (first-response-time, time-to-resolve, sla-compliance, backlog-age, reopen-rate, dispute-cycle-time, credits-granted, agent-availability)",
    )
}

fn kpi_name(kind: i32) -> String {
    output::short(
        KpiKind::try_from(kind).unwrap_or_default().as_str_name(),
        "KPI_KIND_",
    )
}

/// A duration as people read one: "2h 30m", "3d 4h", "45s".
fn human(d: &Option<prost_types::Duration>) -> String {
    let s = d.as_ref().map(|d| d.seconds).unwrap_or_default().max(0);
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn kpi_value_text(v: &KpiValue) -> String {
    match &v.value {
        _ if v.sample_count == 0 => "-".into(),
        Some(kpi_value::Value::DurationStats(s)) => format!(
            "mean {}  median {}  p90 {}  max {}",
            human(&s.mean),
            human(&s.median),
            human(&s.p90),
            human(&s.max)
        ),
        Some(kpi_value::Value::Ratio(r)) => {
            format!("{:.1}% ({} of {})", r.percent, r.numerator, r.denominator)
        }
        Some(kpi_value::Value::MoneyTotals(m)) => m
            .totals
            .iter()
            .map(concierge_common::money::format)
            .collect::<Vec<_>>()
            .join(", "),
        None => "-".into(),
    }
}

fn target_text(t: &KpiTarget) -> String {
    use kpi_target::Threshold;
    match &t.threshold {
        Some(Threshold::MaxDuration(d)) => format!("mean at most {}", human(&Some(*d))),
        Some(Threshold::MinPercent(p)) => format!("at least {p}%"),
        Some(Threshold::MaxPercent(p)) => format!("at most {p}%"),
        None => String::new(),
    }
}

fn group_text(g: &GroupKey) -> String {
    let mut parts = Vec::new();
    for part in [&g.account, &g.portfolio, &g.account_manager, &g.agent] {
        if !part.is_empty() {
            parts.push(part.clone());
        }
    }
    if g.case_type != 0 {
        parts.push(output::short(
            concierge_proto::concierge::cases::v1::CaseType::try_from(g.case_type)
                .unwrap_or_default()
                .as_str_name(),
            "CASE_TYPE_",
        ));
    }
    if let Some(m) = &g.month {
        parts.push(format!("{:04}-{:02}", m.year, m.month));
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

fn interval_text(i: &AvailabilityInterval) -> String {
    let at = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(concierge_common::clock::from_proto)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    format!(
        "{}  {}  {}  {} - {}{}",
        i.name,
        i.staff_member,
        output::short(
            availability_interval::Kind::try_from(i.kind)
                .unwrap_or_default()
                .as_str_name(),
            "KIND_",
        ),
        at(&i.start_time),
        at(&i.end_time),
        if i.external_id.is_empty() {
            String::new()
        } else {
            format!("  {}:{}", i.source, i.external_id)
        }
    )
}

/// The rows of an availability CSV file as requests, every bad row named.
fn read_intervals(
    path: &std::path::Path,
) -> anyhow::Result<Vec<CreateAvailabilityIntervalRequest>> {
    #[derive(serde::Deserialize)]
    struct Row {
        staff_member: String,
        kind: String,
        start_time: String,
        end_time: String,
        #[serde(default)]
        source: String,
        #[serde(default)]
        external_id: String,
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| anyhow::anyhow!("{} line {line}: {e}", path.display()))?;
        let time = |field: &str, v: &str| -> anyhow::Result<prost_types::Timestamp> {
            v.parse::<jiff::Timestamp>()
                .map(concierge_common::clock::to_proto)
                .map_err(|e| anyhow::anyhow!("{} line {line}: {field} {v:?}: {e}", path.display()))
        };
        let kind = output::parse_enum(
            &row.kind,
            "KIND_",
            |s| availability_interval::Kind::from_str_name(s).map(|k| k as i32),
            "kind (scheduled, available, on-call, break, meeting, unavailable)",
        )
        .map_err(|e| anyhow::anyhow!("{} line {line}: {e}", path.display()))?;
        out.push(CreateAvailabilityIntervalRequest {
            availability_interval: Some(AvailabilityInterval {
                staff_member: named("staff", &row.staff_member),
                kind,
                start_time: Some(time("start_time", &row.start_time)?),
                end_time: Some(time("end_time", &row.end_time)?),
                source: row.source,
                external_id: row.external_id,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok(out)
}

fn named(collection: &str, id: &str) -> String {
    format!(
        "{collection}/{}",
        id.trim_start_matches(&format!("{collection}/"))
    )
}

fn duration(flag: &str, text: &str) -> anyhow::Result<prost_types::Duration> {
    // Days are whole days here: 14d is 336 hours.
    let parsed = match text.strip_suffix('d').map(str::parse::<i64>) {
        Some(Ok(days)) => days
            .checked_mul(86_400)
            .map(jiff::SignedDuration::from_secs)
            .ok_or_else(|| anyhow::anyhow!("{flag} {text:?} is too long")),
        _ => text.parse::<jiff::SignedDuration>().map_err(|e| {
            anyhow::anyhow!("{flag} {text:?} is not a duration such as 2h or 14d: {e}")
        }),
    }?;
    Ok(concierge_common::bounded::Duration::to_proto(parsed))
}

/// "en=How satisfied…" → ("en", "How satisfied…").
fn localized(flag: &str, v: &str) -> anyhow::Result<(String, String)> {
    v.split_once('=')
        .map(|(l, t)| (l.trim().to_string(), t.to_string()))
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("{flag} {v:?}: write LANG=TEXT, e.g. en=How satisfied are you?")
        })
}

fn kind_text(k: i32) -> String {
    output::short(
        SurveyKind::try_from(k).unwrap_or_default().as_str_name(),
        "SURVEY_KIND_",
    )
}

fn survey_state(s: i32) -> String {
    output::short(
        survey::State::try_from(s).unwrap_or_default().as_str_name(),
        "STATE_",
    )
}

fn template_text(t: &SurveyTemplate) -> String {
    let mut out = format!(
        "{}  {}  {}  default language {}{}",
        t.name,
        kind_text(t.kind),
        t.display_name,
        t.default_language_code,
        if t.comment_enabled {
            ", with a comment"
        } else {
            ""
        }
    );
    for x in &t.texts {
        out.push_str(&format!("\n  [{}] {}", x.language_code, x.question));
    }
    out
}

fn trigger_text(t: &SurveyTrigger) -> String {
    let event = output::short(
        survey_trigger::Event::try_from(t.event)
            .unwrap_or_default()
            .as_str_name(),
        "EVENT_",
    );
    let secs = |d: &Option<prost_types::Duration>| {
        d.as_ref()
            .map(|d| format!("{:#}", jiff::SignedDuration::from_secs(d.seconds)))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{}  {}  {}\n  on {event}{}, sends {} after {}; link works {}; suppression {} day(s)",
        t.name,
        if t.enabled { "enabled" } else { "disabled" },
        t.display_name,
        if t.case_types.is_empty() {
            String::new()
        } else {
            format!(
                " of {}",
                t.case_types
                    .iter()
                    .map(|c| output::short(
                        concierge_proto::concierge::cases::v1::CaseType::try_from(*c)
                            .unwrap_or_default()
                            .as_str_name(),
                        "CASE_TYPE_"
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        t.survey_template,
        secs(&t.delay),
        if t.response_window.is_some() {
            secs(&t.response_window)
        } else {
            "14 days".into()
        },
        t.suppression_days
    )
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn survey_text(s: &Survey) -> String {
    let mut out = format!(
        "{}  {}  {}  {}\n  case {}  contact {}  account {}",
        s.name,
        survey_state(s.state),
        kind_text(s.kind),
        s.language_code,
        s.r#case,
        s.contact,
        s.account
    );
    if !s.suppressed_by.is_empty() {
        out.push_str(&format!("\n  suppressed by {}", s.suppressed_by));
    }
    if s.send_time.is_some() {
        out.push_str(&format!(
            "\n  sent {}, link until {}",
            when(&s.send_time),
            when(&s.expire_time)
        ));
    } else if s.schedule_time.is_some() {
        out.push_str(&format!("\n  scheduled for {}", when(&s.schedule_time)));
    }
    if let Some(r) = &s.response {
        out.push_str(&format!(
            "\n  answered {}: {}{}{}",
            when(&r.submit_time),
            r.score,
            if s.detractor { " (detractor)" } else { "" },
            if r.comment.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", r.comment)
            }
        ));
    }
    out
}

/// `concierge report monthly …`.
pub async fn monthly_reports(command: ReportCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.csat();
    let json = args.json;
    let rid = || uuid::Uuid::new_v4().to_string();
    let print = |r: MonthlyReport| output::emit(json, &r, |r| println!("{}", report_text(r)));
    match command {
        ReportCommand::Generate {
            portfolio,
            month: m,
            time_zone,
            send,
            to,
            html,
            csv,
        } => {
            let r = c
                .generate_monthly_report(GenerateMonthlyReportRequest {
                    portfolio: portfolio.map(|p| named("staff", &p)).unwrap_or_default(),
                    month: Some(month("--month", &m)?),
                    time_zone: time_zone.map(|id| concierge_proto::types::TimeZone { id }),
                    send: send || !to.is_empty(),
                    recipients: to,
                    request_id: rid(),
                })
                .await
                .answer()?;
            if let Some(path) = html {
                std::fs::write(&path, &r.html_content)?;
            }
            if let Some(path) = csv {
                std::fs::write(&path, &r.csv_content)?;
            }
            print(r)
        }
        ReportCommand::List { list } => {
            let (monthly_reports, next) = paged!(
                list,
                ListMonthlyReportsRequest {
                    filter: list.filter.clone(),
                    order_by: list.order_by.clone(),
                    page_size: list.page_size,
                    page_token: list.page_token.clone(),
                    view: MonthlyReportView::Basic as i32,
                },
                c.list_monthly_reports,
                monthly_reports
            );
            let reply = ListMonthlyReportsResponse {
                monthly_reports,
                next_page_token: next,
            };
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .monthly_reports
                    .iter()
                    .map(|m| {
                        let s = m.scores.unwrap_or_default();
                        let cells = summary_cells(&s);
                        vec![
                            m.name.clone(),
                            report_month(m),
                            m.portfolio_display_name.clone(),
                            output::short(
                                monthly_report::Trigger::try_from(m.trigger)
                                    .unwrap_or_default()
                                    .as_str_name(),
                                "TRIGGER_",
                            ),
                            cells[0].clone(),
                            cells[1].clone(),
                            m.deliveries.len().to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}{}",
                    output::table(
                        &[
                            "NAME",
                            "MONTH",
                            "PORTFOLIO",
                            "TRIGGER",
                            "CSAT %",
                            "NPS",
                            "SENT TO"
                        ],
                        &rows
                    ),
                    output::next_page(&r.next_page_token)
                );
            })
        }
        ReportCommand::Get { report } => print(
            c.get_monthly_report(GetMonthlyReportRequest {
                name: named("monthlyReports", &report),
                view: MonthlyReportView::Basic as i32,
            })
            .await
            .answer()?,
        ),
        ReportCommand::Open { report, out, csv } => {
            let r = c
                .get_monthly_report(GetMonthlyReportRequest {
                    name: named("monthlyReports", &report),
                    view: MonthlyReportView::Full as i32,
                })
                .await
                .answer()?;
            let id = r.name.trim_start_matches("monthlyReports/").to_string();
            let path = out.unwrap_or_else(|| {
                std::path::PathBuf::from(format!("{id}.{}", if csv { "csv" } else { "html" }))
            });
            std::fs::write(&path, if csv { &r.csv_content } else { &r.html_content })?;
            let shown = path.canonicalize().unwrap_or(path);
            println!("{}", shown.display());
            Ok(())
        }
        ReportCommand::Send { report, to } => print(
            c.send_monthly_report(SendMonthlyReportRequest {
                name: named("monthlyReports", &report),
                recipients: to,
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
    }
}

pub async fn run(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.csat();
    let json = args.json;
    let rid = || uuid::Uuid::new_v4().to_string();
    match command {
        Command::Templates { command } => {
            let print =
                |t: SurveyTemplate| output::emit(json, &t, |t| println!("{}", template_text(t)));
            match command {
                TemplateCommand::List { list } => {
                    let (survey_templates, next) = paged!(
                        list,
                        ListSurveyTemplatesRequest {
                            filter: list.filter.clone(),
                            order_by: list.order_by.clone(),
                            page_size: list.page_size,
                            page_token: list.page_token.clone(),
                        },
                        c.list_survey_templates,
                        survey_templates
                    );
                    let reply = ListSurveyTemplatesResponse {
                        survey_templates,
                        next_page_token: next,
                    };
                    output::emit(json, &reply, |r| {
                        let rows: Vec<Vec<String>> = r
                            .survey_templates
                            .iter()
                            .map(|t| {
                                vec![
                                    t.name.clone(),
                                    kind_text(t.kind),
                                    t.display_name.clone(),
                                    t.texts
                                        .iter()
                                        .map(|x| x.language_code.clone())
                                        .collect::<Vec<_>>()
                                        .join(","),
                                ]
                            })
                            .collect();
                        println!(
                            "{}{}",
                            output::table(&["NAME", "KIND", "DISPLAY NAME", "LANGUAGES"], &rows),
                            output::next_page(&r.next_page_token)
                        );
                    })
                }
                TemplateCommand::Get { template } => print(
                    c.get_survey_template(GetSurveyTemplateRequest {
                        name: named("surveyTemplates", &template),
                    })
                    .await
                    .answer()?,
                ),
                TemplateCommand::Create {
                    id,
                    display_name,
                    kind,
                    questions,
                    low_labels,
                    high_labels,
                    comment_prompts,
                    thank_yous,
                    default_language,
                } => {
                    let kind = output::parse_enum(
                        &match kind.to_ascii_lowercase().as_str() {
                            "csat" => "CSAT_1_5".to_string(),
                            "nps" => "NPS_0_10".to_string(),
                            "ces" => "CES_1_7".to_string(),
                            other => other.to_string(),
                        },
                        "SURVEY_KIND_",
                        |s| SurveyKind::from_str_name(s).map(|k| k as i32),
                        "survey kind (csat, nps, ces)",
                    )?;
                    let mut texts: Vec<LocalizedSurveyText> = Vec::new();
                    for q in &questions {
                        let (language_code, question) = localized("--question", q)?;
                        texts.push(LocalizedSurveyText {
                            language_code,
                            question,
                            ..Default::default()
                        });
                    }
                    let mut fill = |flag: &str,
                                    values: &[String],
                                    set: fn(&mut LocalizedSurveyText, String)|
                     -> anyhow::Result<()> {
                        for v in values {
                            let (language, text) = localized(flag, v)?;
                            let t = texts
                                .iter_mut()
                                .find(|t| t.language_code == language)
                                .ok_or_else(|| {
                                    anyhow::anyhow!(
                                        "{flag} {v:?}: give --question {language}=… first"
                                    )
                                })?;
                            set(t, text);
                        }
                        Ok(())
                    };
                    fill("--low-label", &low_labels, |t, v| t.scale_low_label = v)?;
                    fill("--high-label", &high_labels, |t, v| t.scale_high_label = v)?;
                    fill("--comment-prompt", &comment_prompts, |t, v| {
                        t.comment_prompt = v
                    })?;
                    fill("--thank-you", &thank_yous, |t, v| t.thank_you_message = v)?;
                    let default_language_code = default_language.unwrap_or_else(|| {
                        texts
                            .first()
                            .map(|t| t.language_code.clone())
                            .unwrap_or_default()
                    });
                    print(
                        c.create_survey_template(CreateSurveyTemplateRequest {
                            survey_template: Some(SurveyTemplate {
                                display_name,
                                kind,
                                texts,
                                default_language_code,
                                comment_enabled: !comment_prompts.is_empty(),
                                ..Default::default()
                            }),
                            survey_template_id: id.unwrap_or_default(),
                            request_id: rid(),
                        })
                        .await
                        .answer()?,
                    )
                }
                TemplateCommand::Delete { template } => {
                    let name = named("surveyTemplates", &template);
                    c.delete_survey_template(DeleteSurveyTemplateRequest {
                        name: name.clone(),
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                    println!("deleted {name}");
                    Ok(())
                }
            }
        }
        Command::Triggers { command } => {
            let print =
                |t: SurveyTrigger| output::emit(json, &t, |t| println!("{}", trigger_text(t)));
            match command {
                TriggerCommand::List { list } => {
                    let (survey_triggers, next) = paged!(
                        list,
                        ListSurveyTriggersRequest {
                            filter: list.filter.clone(),
                            order_by: list.order_by.clone(),
                            page_size: list.page_size,
                            page_token: list.page_token.clone(),
                        },
                        c.list_survey_triggers,
                        survey_triggers
                    );
                    let reply = ListSurveyTriggersResponse {
                        survey_triggers,
                        next_page_token: next,
                    };
                    output::emit(json, &reply, |r| {
                        for t in &r.survey_triggers {
                            println!("{}", trigger_text(t));
                        }
                        let next = output::next_page(&r.next_page_token);
                        if !next.is_empty() {
                            println!("{}", next.trim_start());
                        }
                    })
                }
                TriggerCommand::Get { trigger } => print(
                    c.get_survey_trigger(GetSurveyTriggerRequest {
                        name: named("surveyTriggers", &trigger),
                    })
                    .await
                    .answer()?,
                ),
                TriggerCommand::Create {
                    id,
                    display_name,
                    template,
                    on,
                    case_types,
                    delay,
                    suppression_days,
                    response_window,
                    disabled,
                } => {
                    let event = output::parse_enum(
                        &format!(
                            "CASE_{}",
                            on.trim_start_matches("case-").trim_start_matches("CASE_")
                        ),
                        "EVENT_",
                        |s| survey_trigger::Event::from_str_name(s).map(|e| e as i32),
                        "case event (resolved, closed)",
                    )?;
                    let case_types = case_types
                        .iter()
                        .map(|t| {
                            output::parse_enum(
                                t,
                                "CASE_TYPE_",
                                |s| {
                                    concierge_proto::concierge::cases::v1::CaseType::from_str_name(
                                        s,
                                    )
                                    .map(|c| c as i32)
                                },
                                "case type (repair, order-new, billing, inquiry…)",
                            )
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    print(
                        c.create_survey_trigger(CreateSurveyTriggerRequest {
                            survey_trigger: Some(SurveyTrigger {
                                display_name,
                                event,
                                case_types,
                                survey_template: named("surveyTemplates", &template),
                                delay: Some(duration("--delay", &delay)?),
                                suppression_days,
                                response_window: response_window
                                    .as_deref()
                                    .map(|w| duration("--response-window", w))
                                    .transpose()?,
                                enabled: !disabled,
                                ..Default::default()
                            }),
                            survey_trigger_id: id.unwrap_or_default(),
                            request_id: rid(),
                        })
                        .await
                        .answer()?,
                    )
                }
                TriggerCommand::Enable { trigger } => print(
                    c.update_survey_trigger(UpdateSurveyTriggerRequest {
                        survey_trigger: Some(SurveyTrigger {
                            name: named("surveyTriggers", &trigger),
                            enabled: true,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["enabled".into()],
                        }),
                    })
                    .await
                    .answer()?,
                ),
                TriggerCommand::Disable { trigger } => print(
                    c.update_survey_trigger(UpdateSurveyTriggerRequest {
                        survey_trigger: Some(SurveyTrigger {
                            name: named("surveyTriggers", &trigger),
                            enabled: false,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["enabled".into()],
                        }),
                    })
                    .await
                    .answer()?,
                ),
                TriggerCommand::Delete { trigger } => {
                    let name = named("surveyTriggers", &trigger);
                    c.delete_survey_trigger(DeleteSurveyTriggerRequest {
                        name: name.clone(),
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?;
                    println!("deleted {name}");
                    Ok(())
                }
            }
        }
        Command::Plans { command } => {
            let print =
                |p: CorrectiveActionPlan| output::emit(json, &p, |p| println!("{}", plan_text(p)));
            let plan_name = |p: &str| named("correctiveActionPlans", p);
            match command {
                PlanCommand::List { list } => {
                    let mut req = ListCorrectiveActionPlansRequest {
                        filter: list.filter.clone(),
                        order_by: list.order_by.clone(),
                        page_size: list.page_size,
                        page_token: list.page_token.clone(),
                    };
                    let mut reply = c.list_corrective_action_plans(req.clone()).await.answer()?;
                    while list.all && !reply.next_page_token.is_empty() {
                        req.page_token = std::mem::take(&mut reply.next_page_token);
                        let page = c.list_corrective_action_plans(req.clone()).await.answer()?;
                        reply
                            .corrective_action_plans
                            .extend(page.corrective_action_plans);
                        reply.next_page_token = page.next_page_token;
                    }
                    output::emit(json, &reply, |r| {
                        let rows: Vec<Vec<String>> = r
                            .corrective_action_plans
                            .iter()
                            .map(|p| {
                                vec![
                                    p.name.clone(),
                                    format!(
                                        "{}{}",
                                        plan_state(p.state),
                                        if p.overdue { " (overdue)" } else { "" }
                                    ),
                                    p.account.clone(),
                                    p.owner.clone(),
                                    when(&p.next_due_time),
                                    p.title.clone(),
                                ]
                            })
                            .collect();
                        println!(
                            "{}\n{} plan(s){}",
                            output::table(
                                &["NAME", "STATE", "ACCOUNT", "OWNER", "NEXT DUE", "TITLE"],
                                &rows
                            ),
                            r.total_size,
                            output::next_page(&r.next_page_token)
                        );
                    })
                }
                PlanCommand::Get { plan } => print(
                    c.get_corrective_action_plan(GetCorrectiveActionPlanRequest {
                        name: plan_name(&plan),
                    })
                    .await
                    .answer()?,
                ),
                PlanCommand::Create {
                    id,
                    account,
                    title,
                    description,
                    owner,
                    cases,
                    actions,
                } => print(
                    c.create_corrective_action_plan(CreateCorrectiveActionPlanRequest {
                        corrective_action_plan: Some(CorrectiveActionPlan {
                            title,
                            description,
                            account: named("accounts", &account),
                            owner: staff(&owner),
                            cases: cases.iter().map(|c| named("cases", c)).collect(),
                            actions: actions
                                .iter()
                                .map(|a| action(a))
                                .collect::<anyhow::Result<_>>()?,
                            ..Default::default()
                        }),
                        corrective_action_plan_id: id.unwrap_or_default(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
                PlanCommand::Act {
                    plan,
                    action,
                    state,
                    note,
                } => {
                    let state = output::parse_enum(
                        &state,
                        "STATE_",
                        |s| corrective_action::State::from_str_name(s).map(|v| v as i32),
                        "action state (open, in-progress, done, cancelled)",
                    )?;
                    print(
                        c.set_corrective_action_state(SetCorrectiveActionStateRequest {
                            name: plan_name(&plan),
                            action_id: action,
                            state,
                            note,
                            etag: String::new(),
                            request_id: rid(),
                        })
                        .await
                        .answer()?,
                    )
                }
                PlanCommand::Complete { plan, outcome } => print(
                    c.complete_corrective_action_plan(CompleteCorrectiveActionPlanRequest {
                        name: plan_name(&plan),
                        outcome,
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
                PlanCommand::Cancel { plan, reason } => print(
                    c.cancel_corrective_action_plan(CancelCorrectiveActionPlanRequest {
                        name: plan_name(&plan),
                        reason,
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
                PlanCommand::Reopen { plan, reason } => print(
                    c.reopen_corrective_action_plan(ReopenCorrectiveActionPlanRequest {
                        name: plan_name(&plan),
                        reason,
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
            }
        }
        Command::Scores {
            from,
            to,
            by,
            filter,
            time_zone,
            page_size,
        } => {
            let group_by = by
                .iter()
                .map(|d| {
                    output::parse_enum(
                        d,
                        "DIMENSION_",
                        |s| Dimension::from_str_name(s).map(|d| d as i32),
                        "dimension (account, portfolio, account-manager, case-type, month)",
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let from = from.unwrap_or_else(|| jiff::Timestamp::now().strftime("%Y-%m").to_string());
            let start_month = month("--from", &from)?;
            let end_month = match to {
                Some(t) => month("--to", &t)?,
                None => start_month,
            };
            let mut req = QueryScoresRequest {
                filter,
                start_month: Some(start_month),
                end_month: Some(end_month),
                group_by,
                time_zone: time_zone.map(|id| concierge_proto::types::TimeZone { id }),
                page_size,
                page_token: String::new(),
            };
            let mut reply = c.query_scores(req.clone()).await.answer()?;
            while !reply.next_page_token.is_empty() {
                req.page_token = std::mem::take(&mut reply.next_page_token);
                let page = c.query_scores(req.clone()).await.answer()?;
                reply.rows.extend(page.rows);
                reply.next_page_token = page.next_page_token;
            }
            output::emit(json, &reply, |r| {
                let group = |g: &GroupKey| {
                    let mut parts = Vec::new();
                    for part in [&g.account, &g.portfolio, &g.account_manager] {
                        if !part.is_empty() {
                            parts.push(part.clone());
                        }
                    }
                    if g.case_type != 0 {
                        parts.push(output::short(
                            concierge_proto::concierge::cases::v1::CaseType::try_from(g.case_type)
                                .unwrap_or_default()
                                .as_str_name(),
                            "CASE_TYPE_",
                        ));
                    }
                    if let Some(m) = &g.month {
                        parts.push(format!("{:04}-{:02}", m.year, m.month));
                    }
                    parts.join(" ")
                };
                let mut rows: Vec<Vec<String>> = r
                    .rows
                    .iter()
                    .map(|row| {
                        let mut cells = vec![group(&row.group.clone().unwrap_or_default())];
                        cells.extend(summary_cells(&row.scores.unwrap_or_default()));
                        cells
                    })
                    .collect();
                let mut total = vec!["all".to_string()];
                total.extend(summary_cells(&r.total.unwrap_or_default()));
                rows.push(total);
                println!(
                    "{}",
                    output::table(
                        &["GROUP", "CSAT %", "NPS", "CES", "SENT", "ANSWERED %"],
                        &rows
                    )
                );
            })
        }
        Command::Kpis {
            from,
            to,
            by,
            kinds,
            filter,
            time_zone,
            page_size,
        } => {
            let group_by = by
                .iter()
                .map(|d| {
                    output::parse_enum(
                        d,
                        "DIMENSION_",
                        |s| Dimension::from_str_name(s).map(|d| d as i32),
                        "dimension (account, portfolio, account-manager, case-type, month, agent)",
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let kinds = kinds
                .iter()
                .map(|k| kpi_kind(k))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let from = from.unwrap_or_else(|| jiff::Timestamp::now().strftime("%Y-%m").to_string());
            let start_month = month("--from", &from)?;
            let end_month = match to {
                Some(t) => month("--to", &t)?,
                None => start_month,
            };
            let mut req = QueryKpisRequest {
                kinds,
                filter,
                start_month: Some(start_month),
                end_month: Some(end_month),
                group_by,
                time_zone: time_zone.map(|id| concierge_proto::types::TimeZone { id }),
                page_size,
                page_token: String::new(),
            };
            let mut reply = c.query_kpis(req.clone()).await.answer()?;
            while !reply.next_page_token.is_empty() {
                req.page_token = std::mem::take(&mut reply.next_page_token);
                let page = c.query_kpis(req.clone()).await.answer()?;
                reply.rows.extend(page.rows);
                reply.next_page_token = page.next_page_token;
            }
            output::emit(json, &reply, |r| {
                let mut rows = Vec::new();
                let mut add = |group: String, values: &[KpiValue]| {
                    for v in values {
                        rows.push(vec![
                            group.clone(),
                            kpi_name(v.kind),
                            kpi_value_text(v),
                            v.sample_count.to_string(),
                            v.target.as_ref().map(target_text).unwrap_or_default(),
                            match (&v.target, v.meets_target) {
                                (None, _) => String::new(),
                                (Some(_), true) => "met".into(),
                                (Some(_), false) => "missed".into(),
                            },
                        ]);
                    }
                };
                for row in &r.rows {
                    add(
                        group_text(&row.group.clone().unwrap_or_default()),
                        &row.values,
                    );
                }
                if r.rows.len() != 1
                    || !r.rows[0]
                        .group
                        .clone()
                        .unwrap_or_default()
                        .eq(&GroupKey::default())
                {
                    add("all".into(), &r.totals);
                }
                println!(
                    "{}",
                    output::table(&["GROUP", "KPI", "VALUE", "N", "TARGET", ""], &rows)
                );
            })
        }
        Command::KpiTargets { command } => {
            let print = |s: KpiSettings| {
                output::emit(json, &s, |s| {
                    if s.targets.is_empty() {
                        println!("no targets");
                    }
                    for t in &s.targets {
                        println!("{}  {}", kpi_name(t.kind), target_text(t));
                    }
                })
            };
            let current = c
                .get_kpi_settings(GetKpiSettingsRequest {
                    name: "kpiSettings".into(),
                })
                .await
                .answer()?;
            let (kind, threshold) = match command {
                KpiTargetCommand::Get => return print(current),
                KpiTargetCommand::Set {
                    kind,
                    max_duration,
                    min_percent,
                    max_percent,
                } => {
                    use kpi_target::Threshold;
                    let threshold = match (max_duration, min_percent, max_percent) {
                        (Some(d), None, None) => {
                            Threshold::MaxDuration(duration("--max-duration", &d)?)
                        }
                        (None, Some(p), None) => Threshold::MinPercent(p),
                        (None, None, Some(p)) => Threshold::MaxPercent(p),
                        _ => anyhow::bail!(
                            "give one of --max-duration, --min-percent, --max-percent"
                        ),
                    };
                    (kpi_kind(&kind)?, Some(threshold))
                }
                KpiTargetCommand::Clear { kind } => (kpi_kind(&kind)?, None),
            };
            let mut targets: Vec<KpiTarget> = current
                .targets
                .iter()
                .filter(|t| t.kind != kind)
                .cloned()
                .collect();
            if threshold.is_some() {
                targets.push(KpiTarget { kind, threshold });
            }
            print(
                c.update_kpi_settings(UpdateKpiSettingsRequest {
                    kpi_settings: Some(KpiSettings {
                        name: current.name.clone(),
                        targets,
                        etag: current.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["targets".into()],
                    }),
                })
                .await
                .answer()?,
            )
        }
        Command::Availability { command } => match command {
            AvailabilityCommand::Import { file } => {
                let requests = read_intervals(&file)?;
                let total = requests.len();
                // A request id per batch from the file's content: a rerun
                // after a lost reply is answered, not stored again.
                let digest = {
                    use sha2::Digest as _;
                    hex::encode(&sha2::Sha256::digest(std::fs::read(&file)?)[..12])
                };
                let mut stored = 0;
                for (i, chunk) in requests.chunks(concierge_csat::kpis::MAX_BATCH).enumerate() {
                    let reply = c
                        .batch_create_availability_intervals(
                            BatchCreateAvailabilityIntervalsRequest {
                                requests: chunk.to_vec(),
                                request_id: format!("import-{digest}-{i}"),
                            },
                        )
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "rows {} to {}: {}",
                                i * concierge_csat::kpis::MAX_BATCH + 1,
                                i * concierge_csat::kpis::MAX_BATCH + chunk.len(),
                                output::rpc(e)
                            )
                        })?;
                    stored += reply.availability_intervals.len();
                }
                if json {
                    println!("{{\"availabilityIntervals\":{stored}}}");
                } else {
                    println!("{stored} of {total} interval(s) stored");
                }
                Ok(())
            }
            AvailabilityCommand::List { list } => {
                let (availability_intervals, next) = paged!(
                    list,
                    ListAvailabilityIntervalsRequest {
                        filter: list.filter.clone(),
                        order_by: list.order_by.clone(),
                        page_size: list.page_size,
                        page_token: list.page_token.clone(),
                    },
                    c.list_availability_intervals,
                    availability_intervals
                );
                let reply = ListAvailabilityIntervalsResponse {
                    availability_intervals,
                    next_page_token: next,
                };
                output::emit(json, &reply, |r| {
                    for i in &r.availability_intervals {
                        println!("{}", interval_text(i));
                    }
                    let next = output::next_page(&r.next_page_token);
                    if !next.is_empty() {
                        println!("{}", next.trim_start());
                    }
                })
            }
            AvailabilityCommand::Delete { interval } => {
                c.delete_availability_interval(DeleteAvailabilityIntervalRequest {
                    name: named("availabilityIntervals", &interval),
                    etag: String::new(),
                    request_id: rid(),
                })
                .await
                .answer()?;
                if !json {
                    println!("deleted {}", named("availabilityIntervals", &interval));
                }
                Ok(())
            }
        },
        Command::Satisfaction { accounts } => {
            let names = accounts
                .iter()
                .map(|a| format!("{}/satisfaction", named("accounts", a)))
                .collect();
            let reply = c
                .batch_get_client_satisfactions(BatchGetClientSatisfactionsRequest { names })
                .await
                .answer()?;
            output::emit(json, &reply, |r| {
                let rows: Vec<Vec<String>> = r
                    .client_satisfactions
                    .iter()
                    .map(|s| {
                        let current = s.current.unwrap_or_default();
                        vec![
                            s.name.trim_end_matches("/satisfaction").to_string(),
                            output::short(
                                client_satisfaction::Level::try_from(s.level)
                                    .unwrap_or_default()
                                    .as_str_name(),
                                "LEVEL_",
                            ),
                            output::short(
                                client_satisfaction::Trend::try_from(s.trend)
                                    .unwrap_or_default()
                                    .as_str_name(),
                                "TREND_",
                            ),
                            summary_cells(&current)[0].clone(),
                            s.detractor_count.to_string(),
                            s.open_corrective_action_plan_count.to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(
                        &[
                            "ACCOUNT",
                            "LEVEL",
                            "TREND",
                            "CSAT % (90 DAYS)",
                            "DETRACTORS",
                            "OPEN PLANS"
                        ],
                        &rows
                    )
                );
            })
        }
        Command::Surveys { command } => {
            let print = |s: Survey| output::emit(json, &s, |s| println!("{}", survey_text(s)));
            match command {
                SurveyCommand::List { list } => {
                    let mut req = ListSurveysRequest {
                        filter: list.filter.clone(),
                        order_by: list.order_by.clone(),
                        page_size: list.page_size,
                        page_token: list.page_token.clone(),
                    };
                    let mut reply = c.list_surveys(req.clone()).await.answer()?;
                    while list.all && !reply.next_page_token.is_empty() {
                        req.page_token = std::mem::take(&mut reply.next_page_token);
                        let page = c.list_surveys(req.clone()).await.answer()?;
                        reply.surveys.extend(page.surveys);
                        reply.next_page_token = page.next_page_token;
                    }
                    output::emit(json, &reply, |r| {
                        let rows: Vec<Vec<String>> = r
                            .surveys
                            .iter()
                            .map(|s| {
                                vec![
                                    s.name.clone(),
                                    survey_state(s.state),
                                    s.r#case.clone(),
                                    s.contact.clone(),
                                    s.response
                                        .as_ref()
                                        .map(|a| a.score.to_string())
                                        .unwrap_or_default(),
                                    if s.detractor {
                                        "yes".into()
                                    } else {
                                        String::new()
                                    },
                                ]
                            })
                            .collect();
                        println!(
                            "{}\n{} survey(s){}",
                            output::table(
                                &["NAME", "STATE", "CASE", "CONTACT", "SCORE", "DETRACTOR"],
                                &rows
                            ),
                            r.total_size,
                            output::next_page(&r.next_page_token)
                        );
                    })
                }
                SurveyCommand::Get { survey } => print(
                    c.get_survey(GetSurveyRequest {
                        name: named("surveys", &survey),
                    })
                    .await
                    .answer()?,
                ),
                SurveyCommand::Send {
                    case_name,
                    template,
                    contact,
                } => print(
                    c.create_survey(CreateSurveyRequest {
                        survey: Some(Survey {
                            survey_template: named("surveyTemplates", &template),
                            r#case: named("cases", &case_name),
                            contact: contact.unwrap_or_default(),
                            ..Default::default()
                        }),
                        survey_id: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
                SurveyCommand::Cancel { survey, reason } => print(
                    c.cancel_survey(CancelSurveyRequest {
                        name: named("surveys", &survey),
                        reason,
                        etag: String::new(),
                        request_id: rid(),
                    })
                    .await
                    .answer()?,
                ),
            }
        }
    }
}
