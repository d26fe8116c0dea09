//! The chase rules Concierge ships with: the three chases an account manager
//! used to run by hand (DOMAIN.md). They are installed enabled, once per
//! database; after that they are the company's to edit or disable, never to
//! delete, and a later start never overwrites an edit.

use concierge_common::crud::{Ctx, New};
use concierge_common::error::{Error, Result};
use concierge_proto::concierge::cases::v1::*;

use crate::{Cases, RULES};

fn wait(hours: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: hours * 3600,
        nanos: 0,
    })
}

fn note(body: &str) -> ChaseAction {
    ChaseAction {
        action_type: Some(chase_action::ActionType::PostNote(PostNoteAction {
            visibility: note::Visibility::Internal as i32,
            body_template: body.into(),
        })),
    }
}

fn escalate_to_account_manager_chain() -> ChaseAction {
    ChaseAction {
        action_type: Some(chase_action::ActionType::Escalate(EscalateAction {
            level: 1,
            target: escalate_action::Target::AccountManagerChain as i32,
            team: String::new(),
            staff_member: String::new(),
            reason_template: "{{rule}}: {{missing}} still missing on {{case.name}} since {{since}}"
                .into(),
        })),
    }
}

/// A rule that asks once at once, then asks again and escalates after `after`.
fn ask_then_escalate(
    display_name: &str,
    description: &str,
    kind: chase_condition::Kind,
    missing: &str,
    after: (i64, TimeBasis),
) -> ChaseRule {
    ChaseRule {
        display_name: display_name.into(),
        description: description.into(),
        condition: Some(ChaseCondition {
            kind: kind as i32,
            expression: String::new(),
            missing_description: missing.into(),
        }),
        steps: vec![
            ChaseRuleStep {
                wait: wait(0),
                basis: TimeBasis::WallClock as i32,
                actions: vec![note(
                    "{{case.performing_team}}: please give us {{missing}} for {{case.name}} ({{case.title}}).",
                )],
            },
            ChaseRuleStep {
                wait: wait(after.0),
                basis: after.1 as i32,
                actions: vec![
                    note(
                        "Second request, {{case.performing_team}}: {{missing}} for {{case.name}} is still missing since {{since}}. Escalated.",
                    ),
                    escalate_to_account_manager_chain(),
                ],
            },
        ],
        enabled: true,
        ..Default::default()
    }
}

/// The built-in rules, by id.
pub(crate) fn rules() -> Vec<(&'static str, ChaseRule)> {
    use chase_condition::Kind;
    vec![
        (
            "jeopardy-without-reason",
            ask_then_escalate(
                "JP without reason",
                "A case in jeopardy without a reason or a revised ETA: ask the performing team for both; after 48 hours, ask again and escalate to the account manager's chain.",
                Kind::JeopardyWithoutReason,
                "the reason for the jeopardy and a revised ETA",
                (48, TimeBasis::WallClock),
            ),
        ),
        (
            "construction-undefined",
            ask_then_escalate(
                "Construction undefined",
                "Construction is required but not defined: ask the performing team for the definition; after 5 business days (40 working hours of the case's calendar), ask again and escalate.",
                Kind::ConstructionUndefined,
                "the construction definition",
                (40, TimeBasis::Business),
            ),
        ),
        (
            "not-presented-to-carrier",
            ask_then_escalate(
                "Not presented to carrier",
                "An order not presented to the carrier and not withheld by a recorded dependency: ask for it to be placed; after 48 hours, ask again and escalate.",
                Kind::NotPresentedToCarrier,
                "the order placed with the carrier",
                (48, TimeBasis::WallClock),
            ),
        ),
    ]
}

/// Installs the built-in rules that are not there yet. Several replicas
/// starting at once race on the same names; the losers see ALREADY_EXISTS,
/// which is what they wanted.
pub(crate) async fn install(cases: &Cases) -> Result<()> {
    let ctx = Ctx::system("chase-rules", "");
    for (id, rule) in rules() {
        let created = cases
            .store()
            .create_learned(
                &RULES,
                &ctx,
                "InstallChaseRule",
                &rule,
                New {
                    parent: "",
                    resource: Some(rule.clone()),
                    id,
                    request_id: "",
                },
                false,
                |r: &mut ChaseRule| r.built_in = true,
            )
            .await;
        match created {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
