//! `concierge review`: the portfolio review as a table, most urgent first;
//! `concierge whoami`: who the gateway takes the caller for.

use concierge_proto::concierge::gateway::v1::*;

use super::ClientArgs;
use crate::output::{self, Answer};

#[derive(clap::Args)]
pub struct ReviewArgs {
    /// Another account manager's portfolio ("staff/ayse" or "ayse"):
    /// managers only. Default: the caller's own.
    #[arg(long)]
    manager: Option<String>,
    /// AIP-160 over account, reason (any finding's), case.type,
    /// case.priority and case.state.
    #[arg(long, default_value = "")]
    filter: String,
    /// Items to show at most (up to 1000).
    #[arg(long, default_value_t = 200)]
    page_size: i32,
}

fn word(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix)
        .to_lowercase()
        .replace('_', " ")
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

pub async fn review(args: ReviewArgs, client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.client()?.gateway();
    let resp = c
        .get_portfolio_review(GetPortfolioReviewRequest {
            account_manager: args
                .manager
                .map(|m| format!("staff/{}", m.trim_start_matches("staff/")))
                .unwrap_or_default(),
            page_size: args.page_size.clamp(1, 1000),
            page_token: String::new(),
            filter: args.filter,
        })
        .await
        .answer()?;
    output::emit(client.json, &resp, |r| {
        println!(
            "{} needs action on {} item(s) ({})",
            r.account_manager,
            r.total_size,
            r.reason_counts
                .iter()
                .map(|c| format!(
                    "{} {}",
                    c.count,
                    word(
                        ReviewReason::try_from(c.reason)
                            .unwrap_or_default()
                            .as_str_name(),
                        "REVIEW_REASON_"
                    )
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "{:>4}  {:<24} {:<22} {:<28} {:<16}  NEXT",
            "#", "ITEM", "ACCOUNT", "WHY", "DUE"
        );
        for item in &r.items {
            let first = item.findings.first().cloned().unwrap_or_default();
            let why = word(
                ReviewReason::try_from(first.reason)
                    .unwrap_or_default()
                    .as_str_name(),
                "REVIEW_REASON_",
            );
            let more = if item.findings.len() > 1 {
                format!(" (+{})", item.findings.len() - 1)
            } else {
                String::new()
            };
            let account = if item.account_display_name.is_empty() {
                item.account.clone()
            } else {
                item.account_display_name.clone()
            };
            println!(
                "{:>4}  {:<24} {:<22} {:<28} {:<16}  {}",
                item.urgency_rank,
                item.subject,
                account,
                format!("{why}{more}"),
                when(&first.due_time.or(first.since_time)),
                item.suggested_action
            );
        }
    })
}

pub async fn whoami(client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.client()?.gateway();
    let p = c.get_caller(GetCallerRequest {}).await.answer()?;
    output::emit(client.json, &p, |p| {
        let role = concierge_proto::types::Role::try_from(p.role)
            .map(|r| word(r.as_str_name(), "ROLE_"))
            .unwrap_or_default();
        println!("{}  {role}", p.subject);
        if !p.staff_member.is_empty() {
            println!("staff member: {}", p.staff_member);
        }
        if !p.account.is_empty() {
            println!("account: {}", p.account);
        }
    })
}
