//! What `concierge bench` measures the cases service with, run on purpose
//! and never in tests: seeding many chase runs the way changes start them,
//! and writing a control document from cases in memory.

use concierge_common::crud::{Resource, strip_meta};
use concierge_common::error::Result;
use concierge_common::resource::{self, Stored};
use concierge_proto::concierge::cases::v1::*;

use crate::chase::{LiveRules, begin, insert_begun, settle, summarise};
use crate::resources::CASES;
use crate::{Cases, Rules};

/// Writes `count` open cases of `account` that a change has just put in
/// jeopardy without a reason, each with the run the built-in rule starts in
/// that change (its row, its first step and the step's timer, due now), in
/// transactions of 1,000 cases, through the engine's own functions.
pub async fn seed_jeopardy_runs(svc: &Cases, account: &str, count: usize, now: i64) -> Result<()> {
    let rules: Vec<ChaseRule> = svc
        .store()
        .list_all(
            &crate::RULES,
            &concierge_common::crud::Ctx::system("bench", ""),
            "enabled = true",
        )
        .await?;
    let rules = LiveRules::new(rules);
    let mut done = 0;
    while done < count {
        let mut tx = svc.store().db().begin().await?;
        let mut conn = tx.conn();
        for i in done..(done + 1000).min(count) {
            let mut c = Case {
                name: format!("cases/chase-{i:07}"),
                title: format!("Order {i}"),
                r#type: CaseType::OrderNew as i32,
                account: account.to_string(),
                performing_team: "provisioning".into(),
                state: case::State::Jeopardy as i32,
                jeopardy: Some(Jeopardy {
                    flagged_missing_reason: true,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let turn = settle(&rules, &mut c);
            let begun: Vec<_> = turn
                .started
                .iter()
                .filter_map(|r| rules.get(r))
                .map(|live| begin(&live.rule, &c, now))
                .collect();
            let runs: Vec<&ChaseRun> = begun.iter().map(|(r, ..)| r).collect();
            summarise(c.chase.get_or_insert_with(Default::default), &runs);
            let stored = Stored {
                name: c.name.clone(),
                parent: String::new(),
                account: account.to_string(),
                create_time: now,
                update_time: now,
                delete_time: 0,
                revision: 1,
                body: strip_meta::<Case, Rules>(&c),
            };
            resource::insert(&mut conn, &CASES, &stored, &c.columns()).await?;
            for (run, step, due) in &begun {
                insert_begun(&mut conn, &c, run, step, *due, now).await?;
            }
        }
        tx.commit().await?;
        done = (done + 1000).min(count);
    }
    Ok(())
}

/// An account's control document from `cases` in memory: its CSV and its
/// HTML page.
pub fn render_control_document(cases: &[Case], time_zone: &str) -> Result<(String, String)> {
    use std::collections::HashMap;
    let rows = crate::control::rows(&crate::control::Inputs {
        cases,
        updates: &HashMap::new(),
        sites: &HashMap::new(),
        owners: &HashMap::new(),
    });
    let tz = crate::control::zone(time_zone);
    let doc = ControlDocument {
        account_display_name: "Bench Corp".into(),
        row_count: i32::try_from(rows.len()).unwrap_or(i32::MAX),
        rows,
        ..Default::default()
    };
    let csv = crate::control::csv(&doc.rows, &tz)?;
    let html = crate::control::html(&doc, &tz, "en", "")?;
    Ok((csv, html))
}
