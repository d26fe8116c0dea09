//! `concierge cases chase-runs`: the chase rules at work on a case (or on
//! every case): their runs, the steps each took or will take, and stopping
//! a run a person has dealt with.

use clap::Subcommand;
use concierge_proto::concierge::cases::v1::*;

use super::ClientArgs;
use crate::output::{self, Answer};

#[derive(Subcommand)]
pub enum ChaseRunsCommand {
    /// A case's runs, newest first; without a case, every active one.
    List { case: Option<String> },
    /// The steps of a case's runs, in the order they fall due.
    Steps { case: String },
    /// Stop a run ("cases/…/chaseRuns/…"); its rule starts no new run on
    /// the case until its condition clears.
    Cancel {
        name: String,
        #[arg(long)]
        reason: String,
    },
}

fn word(name: &str) -> String {
    name.trim_start_matches("STATE_").to_lowercase()
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

fn run_line(r: &ChaseRun) -> String {
    let state = chase_run::State::try_from(r.state)
        .map(|s| word(s.as_str_name()))
        .unwrap_or_default();
    let next = if r.next_step_number > 0 {
        format!(
            "  step {} due {}",
            r.next_step_number,
            time(&r.next_step_time)
        )
    } else {
        String::new()
    };
    format!(
        "{}  {state}  {}  {} step(s) taken{next}",
        r.name, r.rule_display_name, r.steps_taken
    )
}

fn step_line(s: &ChaseStep) -> String {
    let state = chase_step::State::try_from(s.state)
        .map(|st| word(st.as_str_name()))
        .unwrap_or_default();
    let did: Vec<String> = s
        .outcomes
        .iter()
        .map(|o| {
            if !o.error.is_empty() {
                format!("failed: {}", o.error)
            } else if !o.note.is_empty() {
                format!("note {}", o.note)
            } else if !o.escalation.is_empty() {
                format!("escalation {}", o.escalation)
            } else {
                format!("notified {}", o.recipients.join(", "))
            }
        })
        .collect();
    let when = if s.execute_time.is_some() {
        format!("ran {}", time(&s.execute_time))
    } else {
        format!("due {}", time(&s.schedule_time))
    };
    format!(
        "{}  step {}  {state}  {when}  {}",
        s.name,
        s.step_number,
        did.join("; ")
    )
}

pub async fn run(command: ChaseRunsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.client()?.cases();
    let json = args.json;
    match command {
        ChaseRunsCommand::List { case } => {
            let (parent, filter) = match case {
                Some(case) => (super::cases::case_name(&case), String::new()),
                None => ("cases/-".to_string(), "state = ACTIVE".to_string()),
            };
            let resp = c
                .list_chase_runs(ListChaseRunsRequest {
                    parent,
                    page_size: 1000,
                    filter,
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
                for r in &resp.chase_runs {
                    println!("{}", run_line(r));
                }
            })
        }
        ChaseRunsCommand::Steps { case } => {
            let resp = c
                .list_chase_steps(ListChaseStepsRequest {
                    parent: super::cases::case_name(&case),
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .answer()?;
            output::emit(json, &resp, |resp| {
                for s in &resp.chase_steps {
                    println!("{}", step_line(s));
                }
            })
        }
        ChaseRunsCommand::Cancel { name, reason } => {
            let run = c
                .cancel_chase_run(CancelChaseRunRequest {
                    name,
                    reason,
                    etag: String::new(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                })
                .await
                .answer()?;
            output::emit(json, &run, |r| println!("{}", run_line(r)))
        }
    }
}
