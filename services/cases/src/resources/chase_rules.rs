//! Chase rules: what is checked before one is stored. A rule runs by itself
//! on every case its condition matches, so everything that can be wrong with
//! it is refused here, naming the field, rather than found when a step falls
//! due on a client's case.

use concierge_common::crud::Resource;
use concierge_common::error::{Error, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_common::{bounded, filter, names};
use concierge_proto::concierge::cases::v1::*;

use super::{CASES, CREATE_TIME, UPDATE_TIME};
use crate::Rules;

pub static CHASE_RULES: Kind = Kind {
    resource_type: "ChaseRule",
    table: "chase_rules",
    fields: &[
        Field {
            name: "display_name",
            column: "display_name",
            ty: FieldType::Text,
        },
        Field {
            name: "condition.kind",
            column: "condition_kind",
            ty: FieldType::Enum {
                parse: |s| chase_condition::Kind::from_str_name(s).map(|v| v as i32),
                prefix: "KIND_",
            },
        },
        Field {
            name: "built_in",
            column: "built_in",
            ty: FieldType::Bool,
        },
        Field {
            name: "enabled",
            column: "enabled",
            ty: FieldType::Bool,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

/// Steps a rule may have: the built-in ones have two; a chase of more than
/// ten rounds is a process to fix, not to automate.
pub const MAX_STEPS: usize = 10;
/// Actions one step may take.
pub const MAX_ACTIONS: usize = 5;
/// The longest wait between two steps: a year of wall-clock time (or of
/// business time, which is longer still).
pub const MAX_WAIT: jiff::SignedDuration = jiff::SignedDuration::from_hours(366 * 24);
use super::escalations::MAX_LEVEL;
const MAX_TEMPLATE: usize = 4_000;
const MAX_TEXT: usize = 500;

/// What a template may say; `{{…}}` with anything else is refused.
pub const PLACEHOLDERS: &[&str] = &[
    "case.name",
    "case.title",
    "case.performing_team",
    "missing",
    "step",
    "rule",
    "since",
];

/// Checks `template` (at `field`): bounded, every `{{…}}` closed and known.
fn check_template(v: &mut Violations, field: &str, template: &str, required: bool) {
    if template.trim().is_empty() {
        if required {
            v.add(field, "required");
        }
        return;
    }
    if template.len() > MAX_TEMPLATE {
        v.add(
            field,
            format!("is {} bytes long; at most {MAX_TEMPLATE}", template.len()),
        );
        return;
    }
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            v.add(field, "has a `{{` that is never closed with `}}`");
            return;
        };
        let placeholder = after[..close].trim();
        if !PLACEHOLDERS.contains(&placeholder) {
            let shown: String = placeholder.chars().take(40).collect();
            v.add(
                field,
                format!(
                    "has an unknown placeholder {{{{{shown}}}}}; known: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{{{p}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        rest = &after[close + 2..];
    }
}

fn check_staff(v: &mut Violations, field: &str, staff_member: &str, needed: bool, what: &str) {
    if needed {
        v.check(names::parse(field, staff_member, &["staff"]));
    } else if !staff_member.is_empty() {
        v.add(field, format!("only for {what}"));
    }
}

fn check_action(v: &mut Violations, at: &str, action: &ChaseAction) {
    use chase_action::ActionType;
    match &action.action_type {
        None => v.add(at, "required: post_note, notify or escalate"),
        Some(ActionType::PostNote(note)) => {
            let at = format!("{at}.post_note");
            match note::Visibility::try_from(note.visibility) {
                Ok(note::Visibility::Internal | note::Visibility::Public) => {}
                _ => v.add(
                    format!("{at}.visibility"),
                    "required: VISIBILITY_INTERNAL or VISIBILITY_PUBLIC",
                ),
            }
            check_template(v, &format!("{at}.body_template"), &note.body_template, true);
        }
        Some(ActionType::Notify(notify)) => {
            use notify_action::Recipient;
            let at = format!("{at}.notify");
            let recipient = Recipient::try_from(notify.recipient).unwrap_or(Recipient::Unspecified);
            if recipient == Recipient::Unspecified {
                v.add(format!("{at}.recipient"), "required");
            }
            check_staff(
                v,
                &format!("{at}.staff_member"),
                &notify.staff_member,
                recipient == Recipient::StaffMember,
                "RECIPIENT_STAFF_MEMBER",
            );
            check_template(
                v,
                &format!("{at}.message_template"),
                &notify.message_template,
                false,
            );
        }
        Some(ActionType::Escalate(escalate)) => {
            use escalate_action::Target;
            let at = format!("{at}.escalate");
            if !(1..=MAX_LEVEL).contains(&escalate.level) {
                v.add(
                    format!("{at}.level"),
                    format!("must be 1 (the first level) to {MAX_LEVEL}"),
                );
            }
            let target = Target::try_from(escalate.target).unwrap_or(Target::Unspecified);
            if target == Target::Unspecified {
                v.add(format!("{at}.target"), "required");
            }
            if target == Target::Team {
                if escalate.team.trim().is_empty() {
                    v.add(format!("{at}.team"), "required for TARGET_TEAM");
                }
            } else if !escalate.team.is_empty() {
                v.add(format!("{at}.team"), "only for TARGET_TEAM");
            }
            check_staff(
                v,
                &format!("{at}.staff_member"),
                &escalate.staff_member,
                target == Target::StaffMember,
                "TARGET_STAFF_MEMBER",
            );
            check_template(
                v,
                &format!("{at}.reason_template"),
                &escalate.reason_template,
                false,
            );
        }
    }
}

fn check_step(v: &mut Violations, at: &str, step: &ChaseRuleStep) {
    let wait = match &step.wait {
        None => Some(jiff::SignedDuration::ZERO),
        some => v.check(bounded::Duration::required(&format!("{at}.wait"), some)),
    };
    if let Some(wait) = wait {
        if wait.is_negative() {
            v.add(format!("{at}.wait"), "must not be negative");
        } else if wait > MAX_WAIT {
            v.add(format!("{at}.wait"), "must be at most 366 days (8784h)");
        }
    }
    if TimeBasis::try_from(step.basis).is_err() {
        v.add(format!("{at}.basis"), "is not a TimeBasis");
    }
    if step.actions.is_empty() {
        v.add(format!("{at}.actions"), "required: at least one action");
    } else if step.actions.len() > MAX_ACTIONS {
        v.add(
            format!("{at}.actions"),
            format!("has {} actions; at most {MAX_ACTIONS}", step.actions.len()),
        );
    }
    for (i, action) in step.actions.iter().take(MAX_ACTIONS).enumerate() {
        check_action(v, &format!("{at}.actions[{i}]"), action);
    }
}

impl Resource<Rules> for ChaseRule {
    const KIND: &'static Kind = &CHASE_RULES;
    const COLLECTIONS: &'static [&'static str] = &["chaseRules"];
    const FIELD: &'static str = "chase_rule";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "description",
        "condition",
        "steps",
        "calendar",
        "enabled",
    ];

    standard_meta!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            (
                "condition_kind",
                Value::Int(self.condition.as_ref().map_or(0, |c| i64::from(c.kind))),
            ),
            ("built_in", Value::Int(i64::from(self.built_in))),
            ("enabled", Value::Int(i64::from(self.enabled))),
            ("calendar", Value::Text(self.calendar.clone())),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "description" => self.description = from.description.clone(),
            "condition" => self.condition = from.condition.clone(),
            "steps" => self.steps = from.steps.clone(),
            "calendar" => self.calendar = from.calendar.clone(),
            "enabled" => self.enabled = from.enabled,
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.display_name.trim().is_empty() {
            v.add("chase_rule.display_name", "required");
        } else if self.display_name.len() > MAX_TEXT {
            v.add(
                "chase_rule.display_name",
                format!("at most {MAX_TEXT} bytes"),
            );
        }
        if self.description.len() > MAX_TEMPLATE {
            v.add(
                "chase_rule.description",
                format!("at most {MAX_TEMPLATE} bytes"),
            );
        }
        match &self.condition {
            None => v.add("chase_rule.condition", "required"),
            Some(c) => {
                use chase_condition::Kind as K;
                let kind = K::try_from(c.kind).unwrap_or(K::Unspecified);
                if kind == K::Unspecified {
                    v.add("chase_rule.condition.kind", "required");
                }
                match filter::parse(&c.expression, CASES.fields) {
                    Ok(None) if kind == K::Expression => v.add(
                        "chase_rule.condition.expression",
                        "required for KIND_EXPRESSION: it is the whole condition",
                    ),
                    Ok(_) => {}
                    Err(Error::InvalidArgument(violations)) => {
                        for e in violations {
                            v.add("chase_rule.condition.expression", e.description);
                        }
                    }
                    Err(e) => v.add("chase_rule.condition.expression", e.to_string()),
                }
                if c.missing_description.len() > MAX_TEXT {
                    v.add(
                        "chase_rule.condition.missing_description",
                        format!("at most {MAX_TEXT} bytes"),
                    );
                }
            }
        }
        if self.steps.is_empty() {
            v.add("chase_rule.steps", "required: at least one step");
        } else if self.steps.len() > MAX_STEPS {
            v.add(
                "chase_rule.steps",
                format!("has {} steps; at most {MAX_STEPS}", self.steps.len()),
            );
        }
        for (i, step) in self.steps.iter().take(MAX_STEPS).enumerate() {
            check_step(v, &format!("chase_rule.steps[{i}]"), step);
        }
        if !self.calendar.is_empty() {
            v.check(names::parse(
                "chase_rule.calendar",
                &self.calendar,
                &["calendars"],
            ));
        }
    }
    fn clear_output_only(&mut self) {
        self.built_in = false;
        self.create_time = None;
        self.update_time = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(template: &str) -> Vec<String> {
        let mut v = Violations::new();
        check_template(&mut v, "t", template, true);
        match v.into_result() {
            Ok(()) => vec![],
            Err(Error::InvalidArgument(vs)) => vs.into_iter().map(|f| f.description).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn templates_name_only_known_placeholders() {
        assert!(
            checked("Please give {{missing}} for {{ case.name }} ({{rule}}, step {{step}})")
                .is_empty()
        );
        assert!(checked("{{case.account_manager}}")[0].contains("unknown placeholder"));
        assert!(checked("Hello {{missing")[0].contains("never closed"));
        assert_eq!(checked("  ")[0], "required");
    }
}
