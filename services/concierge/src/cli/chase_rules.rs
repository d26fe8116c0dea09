//! `concierge cases chase-rules`: list, apply from a file, delete. A file is
//! the company's chasing policy as it wants it: `apply` upserts each rule
//! whole (UpdateChaseRule with allow_missing and the mask "*"), so what the
//! file says is what the rule becomes, and rules the file does not name are
//! left alone.
//!
//! ```toml
//! [[rule]]
//! id = "site-survey"
//! display_name = "Site survey missing"
//! condition = { kind = "construction_undefined", expression = 'type = ORDER_NEW', missing = "the site survey" }
//! calendar = "us-central"            # business-time waits; default: the case's SLA calendar
//!
//! [[rule.step]]
//! wait = "0h"
//! [[rule.step.action]]
//! post_note = { visibility = "internal", body = "{{case.performing_team}}: please send {{missing}}." }
//!
//! [[rule.step]]
//! wait = "40h"
//! basis = "business"
//! [[rule.step.action]]
//! escalate = { level = 1, target = "account_manager_chain", reason = "{{missing}} still missing" }
//! ```

use std::path::PathBuf;

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;
use serde::Deserialize;

use super::ClientArgs;
use crate::output::{self, Answer, parse_enum};

#[derive(Subcommand)]
pub enum ChaseRulesCommand {
    /// The rules, built-in ones included.
    List,
    /// Create or replace the rules a TOML file describes (see the README).
    Apply {
        /// The rules file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Check every rule with the service, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a rule (built-in rules are disabled instead: enabled = false).
    Delete { id: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    id: String,
    display_name: String,
    #[serde(default)]
    description: String,
    condition: ConditionEntry,
    #[serde(default)]
    calendar: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    step: Vec<StepEntry>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionEntry {
    kind: String,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    missing: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepEntry {
    wait: String,
    #[serde(default = "business")]
    basis: String,
    #[serde(default)]
    action: Vec<ActionEntry>,
}

fn business() -> String {
    "business".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum ActionEntry {
    PostNote {
        visibility: String,
        body: String,
    },
    Notify {
        recipient: String,
        #[serde(default)]
        staff_member: String,
        #[serde(default)]
        message: String,
    },
    Escalate {
        #[serde(default = "first_level")]
        level: i32,
        target: String,
        #[serde(default)]
        team: String,
        #[serde(default)]
        staff_member: String,
        #[serde(default)]
        reason: String,
    },
}

fn first_level() -> i32 {
    1
}

fn action(entry: ActionEntry) -> anyhow::Result<ChaseAction> {
    use chase_action::ActionType;
    Ok(ChaseAction {
        action_type: Some(match entry {
            ActionEntry::PostNote { visibility, body } => ActionType::PostNote(PostNoteAction {
                visibility: parse_enum(
                    &visibility,
                    "VISIBILITY_",
                    |s| note::Visibility::from_str_name(s).map(|v| v as i32),
                    "note visibility (internal or public)",
                )?,
                body_template: body,
            }),
            ActionEntry::Notify {
                recipient,
                staff_member,
                message,
            } => ActionType::Notify(NotifyAction {
                recipient: parse_enum(
                    &recipient,
                    "RECIPIENT_",
                    |s| notify_action::Recipient::from_str_name(s).map(|v| v as i32),
                    "recipient (performing_team, owner, account_manager, watchers or staff_member)",
                )?,
                staff_member,
                message_template: message,
            }),
            ActionEntry::Escalate {
                level,
                target,
                team,
                staff_member,
                reason,
            } => ActionType::Escalate(EscalateAction {
                level,
                target: parse_enum(
                    &target,
                    "TARGET_",
                    |s| escalate_action::Target::from_str_name(s).map(|v| v as i32),
                    "target (owner_chain, account_manager_chain, performing_team, team or staff_member)",
                )?,
                team,
                staff_member,
                reason_template: reason,
            }),
        }),
    })
}

fn rule(entry: RuleEntry) -> anyhow::Result<ChaseRule> {
    let id = entry.id.trim_start_matches("chaseRules/").to_string();
    let mut steps = Vec::new();
    for (i, step) in entry.step.into_iter().enumerate() {
        let wait: jiff::SignedDuration = step.wait.parse().map_err(|e| {
            anyhow::anyhow!(
                "rule {id}, step {}: wait {:?} is not a duration such as 48h: {e}",
                i + 1,
                step.wait
            )
        })?;
        steps.push(ChaseRuleStep {
            wait: Some(prost_types::Duration {
                seconds: wait.as_secs(),
                nanos: wait.subsec_nanos(),
            }),
            basis: parse_enum(
                &step.basis,
                "TIME_BASIS_",
                |s| TimeBasis::from_str_name(s).map(|v| v as i32),
                "time basis (business or wall_clock)",
            )?,
            actions: step
                .action
                .into_iter()
                .map(action)
                .collect::<anyhow::Result<_>>()
                .map_err(|e| anyhow::anyhow!("rule {id}, step {}: {e}", i + 1))?,
        });
    }
    Ok(ChaseRule {
        name: format!("chaseRules/{id}"),
        display_name: entry.display_name,
        description: entry.description,
        condition: Some(ChaseCondition {
            kind: parse_enum(
                &entry.condition.kind,
                "KIND_",
                |s| chase_condition::Kind::from_str_name(s).map(|v| v as i32),
                "condition kind (jeopardy_without_reason, construction_undefined, not_presented_to_carrier, sla_at_risk, sla_breached, client_deliverable_overdue or expression)",
            )
            .map_err(|e| anyhow::anyhow!("rule {id}: {e}"))?,
            expression: entry.condition.expression,
            missing_description: entry.condition.missing,
        }),
        steps,
        calendar: if entry.calendar.is_empty() {
            String::new()
        } else {
            format!("calendars/{}", entry.calendar.trim_start_matches("calendars/"))
        },
        enabled: entry.enabled,
        ..Default::default()
    })
}

/// The rules of a file, each checked for shape here; the service checks
/// the rest.
fn read(path: &std::path::Path) -> anyhow::Result<Vec<ChaseRule>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let file: File =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if file.rule.is_empty() {
        anyhow::bail!("{} has no [[rule]]", path.display());
    }
    file.rule.into_iter().map(rule).collect()
}

pub async fn run(command: ChaseRulesCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    match command {
        ChaseRulesCommand::List => {
            let resp = c
                .list_chase_rules(ListChaseRulesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
                for r in &resp.chase_rules {
                    let kind = r
                        .condition
                        .as_ref()
                        .and_then(|c| chase_condition::Kind::try_from(c.kind).ok())
                        .map(|k| k.as_str_name().trim_start_matches("KIND_").to_lowercase())
                        .unwrap_or_default();
                    println!(
                        "{}  {}  {kind}  {} step(s){}{}",
                        r.name,
                        r.display_name,
                        r.steps.len(),
                        if r.enabled { "" } else { "  disabled" },
                        if r.built_in { "  built-in" } else { "" },
                    );
                }
            })
        }
        ChaseRulesCommand::Apply { file, dry_run } => {
            let rules = read(&file)?;
            let mut applied = Vec::new();
            for r in rules {
                let name = r.name.clone();
                let stored = c
                    .update_chase_rule(UpdateChaseRuleRequest {
                        chase_rule: Some(r),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["*".into()],
                        }),
                        allow_missing: true,
                        validate_only: dry_run,
                    })
                    .await
                    .answer()
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                applied.push(stored);
            }
            let verb = if dry_run { "checked" } else { "applied" };
            output::emit(
                json,
                &ListChaseRulesResponse {
                    chase_rules: applied,
                    next_page_token: String::new(),
                },
                |resp| {
                    for r in &resp.chase_rules {
                        println!("{verb} {}  {}", r.name, r.display_name);
                    }
                },
            )
        }
        ChaseRulesCommand::Delete { id } => {
            let name = format!("chaseRules/{}", id.trim_start_matches("chaseRules/"));
            c.delete_chase_rule(DeleteChaseRuleRequest {
                name: name.clone(),
                etag: String::new(),
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .answer()?;
            println!("deleted {name}");
            Ok(())
        }
    }
}
