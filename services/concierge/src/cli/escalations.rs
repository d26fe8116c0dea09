//! `concierge cases escalations`: raise one on a case, list a case's (or
//! every case's), and take, resolve or withdraw one.

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;

use super::ClientArgs;
use crate::output::{self, Answer};

#[derive(Subcommand)]
pub enum EscalationsCommand {
    /// Escalate a case to a team (--team) or a person (--staff-member).
    Raise {
        case: String,
        /// 1 for the first level; each further one goes a step higher.
        #[arg(long, default_value_t = 1)]
        level: i32,
        #[arg(long)]
        team: Option<String>,
        /// "staff/ayse" or "ayse".
        #[arg(long)]
        staff_member: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// A case's escalations, newest first; without a case, every open one.
    List { case: Option<String> },
    /// Take an escalation ("cases/…/escalations/…").
    Ack { name: String },
    /// Record what was done.
    Resolve {
        name: String,
        #[arg(long)]
        outcome: String,
    },
    /// Withdraw an escalation raised in error.
    Cancel {
        name: String,
        #[arg(long)]
        reason: String,
    },
}

fn line(e: &Escalation) -> String {
    let state = escalation::State::try_from(e.state)
        .map(|s| s.as_str_name().trim_start_matches("STATE_").to_lowercase())
        .unwrap_or_default();
    let target = if e.target_team.is_empty() {
        &e.target_staff_member
    } else {
        &e.target_team
    };
    format!(
        "{}  level {}  {state}  to {target}  {}",
        e.name, e.level, e.reason
    )
}

pub async fn run(command: EscalationsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    let rid = || uuid::Uuid::new_v4().to_string();
    let print = |e: Escalation| output::emit(json, &e, |e| println!("{}", line(e)));
    match command {
        EscalationsCommand::Raise {
            case,
            level,
            team,
            staff_member,
            reason,
        } => print(
            c.create_escalation(CreateEscalationRequest {
                parent: super::cases::case_name(&case),
                escalation: Some(Escalation {
                    level,
                    target_team: team.unwrap_or_default(),
                    target_staff_member: staff_member
                        .map(|s| format!("staff/{}", s.trim_start_matches("staff/")))
                        .unwrap_or_default(),
                    reason,
                    ..Default::default()
                }),
                escalation_id: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        EscalationsCommand::List { case } => {
            let (parent, filter) = match case {
                Some(case) => (super::cases::case_name(&case), String::new()),
                None => (
                    "cases/-".to_string(),
                    "state = RAISED OR state = ACKNOWLEDGED".to_string(),
                ),
            };
            let resp = c
                .list_escalations(ListEscalationsRequest {
                    parent,
                    page_size: 1000,
                    filter,
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
                for e in &resp.escalations {
                    println!("{}", line(e));
                }
            })
        }
        EscalationsCommand::Ack { name } => print(
            c.acknowledge_escalation(AcknowledgeEscalationRequest {
                name,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        EscalationsCommand::Resolve { name, outcome } => print(
            c.resolve_escalation(ResolveEscalationRequest {
                name,
                outcome,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
        EscalationsCommand::Cancel { name, reason } => print(
            c.cancel_escalation(CancelEscalationRequest {
                name,
                reason,
                etag: String::new(),
                request_id: rid(),
            })
            .await
            .answer()?,
        ),
    }
}
