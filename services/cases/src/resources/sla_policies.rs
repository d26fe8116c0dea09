//! SLA policies.

use concierge_common::clock;
use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::names;
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::UPDATE_TIME;
use crate::Rules;

pub static SLA_POLICIES: Kind = Kind {
    resource_type: "SlaPolicy",
    table: "sla_policies",
    fields: &[
        Field {
            name: "display_name",
            column: "display_name",
            ty: FieldType::Text,
        },
        Field {
            name: "precedence",
            column: "precedence",
            ty: FieldType::Int,
        },
        Field {
            name: "calendar",
            column: "calendar",
            ty: FieldType::Text,
        },
        Field {
            name: "case_types",
            column: "case_types",
            ty: FieldType::Text,
        },
        Field {
            name: "priorities",
            column: "priorities",
            ty: FieldType::Text,
        },
        Field {
            name: "account_tiers",
            column: "account_tiers",
            ty: FieldType::Text,
        },
        UPDATE_TIME,
    ],
};

fn names_of<E: Copy>(
    values: &[i32],
    parse: impl Fn(i32) -> Option<E>,
    name: impl Fn(E) -> &'static str,
) -> String {
    let names: Vec<&str> = values.iter().filter_map(|v| parse(*v)).map(name).collect();
    format!(" {} ", names.join(" "))
}

/// The revision a policy row is at: its etag's number.
pub fn revision_of(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn check_target(v: &mut Violations, field: &str, t: &SlaTarget, key_required: bool) {
    if key_required
        && (t.key.is_empty()
            || !t
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    {
        v.add(
            format!("{field}.key"),
            "required: lowercase letters, digits, '_' or '-', e.g. \"presented_to_carrier\"",
        );
    }
    match t
        .duration
        .as_ref()
        .map(concierge_common::bounded::Duration::try_from)
    {
        Some(Ok(d)) if d.get().is_positive() && d.get() <= crate::sla::MAX_TARGET => {}
        Some(Ok(d)) if d.get().is_positive() => v.add(
            format!("{field}.duration"),
            "must be at most 366 days: a target further out is a project plan, not an SLA",
        ),
        Some(Err(e)) => v.add(format!("{field}.duration"), e.to_string()),
        _ => v.add(format!("{field}.duration"), "required: a positive duration"),
    }
    if TimeBasis::try_from(t.basis).is_err() {
        v.add(
            format!("{field}.basis"),
            format!("{} is not a time basis", t.basis),
        );
    }
}

impl Resource<Rules> for SlaPolicy {
    const KIND: &'static Kind = &SLA_POLICIES;
    const COLLECTIONS: &'static [&'static str] = &["slaPolicies"];
    const FIELD: &'static str = "sla_policy";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "description",
        "case_types",
        "priorities",
        "account_tiers",
        "precedence",
        "calendar",
        "time_zone_source",
        "first_response",
        "milestones",
        "overall_delivery",
        "carrier_targets",
        "pause_states",
        "at_risk_percent",
    ];

    fn name(&self) -> &str {
        &self.name
    }
    fn etag(&self) -> &str {
        &self.etag
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_meta(&mut self, create_time: i64, update_time: i64, etag: String) {
        self.create_time = clock::micros_to_proto(create_time);
        self.update_time = clock::micros_to_proto(update_time);
        self.revision_id = revision_of(&etag);
        self.revision_create_time = self.update_time;
        self.etag = etag;
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            ("precedence", Value::Int(i64::from(self.precedence))),
            ("calendar", Value::Text(self.calendar.clone())),
            (
                "case_types",
                Value::Text(names_of(
                    &self.case_types,
                    |v| CaseType::try_from(v).ok(),
                    |t| t.as_str_name(),
                )),
            ),
            (
                "priorities",
                Value::Text(names_of(
                    &self.priorities,
                    |v| CasePriority::try_from(v).ok(),
                    |p| p.as_str_name(),
                )),
            ),
            (
                "account_tiers",
                Value::Text(format!(" {} ", self.account_tiers.join(" "))),
            ),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "description" => self.description = from.description.clone(),
            "case_types" => self.case_types = from.case_types.clone(),
            "priorities" => self.priorities = from.priorities.clone(),
            "account_tiers" => self.account_tiers = from.account_tiers.clone(),
            "precedence" => self.precedence = from.precedence,
            "calendar" => self.calendar = from.calendar.clone(),
            "time_zone_source" => self.time_zone_source = from.time_zone_source,
            "first_response" => self.first_response = from.first_response.clone(),
            "milestones" => self.milestones = from.milestones.clone(),
            "overall_delivery" => self.overall_delivery = from.overall_delivery.clone(),
            "carrier_targets" => self.carrier_targets = from.carrier_targets.clone(),
            "pause_states" => self.pause_states = from.pause_states.clone(),
            "at_risk_percent" => self.at_risk_percent = from.at_risk_percent,
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.display_name.trim().is_empty() {
            v.add(
                "sla_policy.display_name",
                "required, e.g. \"Enterprise repairs P1\"",
            );
        }
        if names::parse("sla_policy.calendar", &self.calendar, &["calendars"]).is_err() {
            v.add(
                "sla_policy.calendar",
                "required: the business calendar, \"calendars/{calendar}\"",
            );
        }
        for (i, t) in self.case_types.iter().enumerate() {
            if !matches!(CaseType::try_from(*t), Ok(x) if x != CaseType::Unspecified) {
                v.add(
                    format!("sla_policy.case_types[{i}]"),
                    format!("{t} is not a case type"),
                );
            }
        }
        for (i, p) in self.priorities.iter().enumerate() {
            if !matches!(CasePriority::try_from(*p), Ok(x) if x != CasePriority::Unspecified) {
                v.add(
                    format!("sla_policy.priorities[{i}]"),
                    format!("{p} is not a priority"),
                );
            }
        }
        for (i, s) in self.pause_states.iter().enumerate() {
            if !matches!(case::State::try_from(*s), Ok(x) if crate::lifecycle::is_open(x)) {
                v.add(
                    format!("sla_policy.pause_states[{i}]"),
                    "only the states of an open case can pause a clock",
                );
            }
        }
        if !(0..=99).contains(&self.at_risk_percent) {
            v.add(
                "sla_policy.at_risk_percent",
                "between 1 and 99 (0 means 80)",
            );
        }
        let mut keys = std::collections::BTreeSet::new();
        if let Some(t) = &self.first_response {
            check_target(v, "sla_policy.first_response", t, false);
        }
        if let Some(t) = &self.overall_delivery {
            check_target(v, "sla_policy.overall_delivery", t, false);
        }
        for (i, t) in self.milestones.iter().enumerate() {
            check_target(v, &format!("sla_policy.milestones[{i}]"), t, true);
            if !keys.insert(t.key.clone()) {
                v.add(
                    format!("sla_policy.milestones[{i}].key"),
                    format!("{:?} is used twice", t.key),
                );
            }
        }
        for (i, t) in self.carrier_targets.iter().enumerate() {
            check_target(v, &format!("sla_policy.carrier_targets[{i}]"), t, true);
            if !keys.insert(t.key.clone()) {
                v.add(
                    format!("sla_policy.carrier_targets[{i}].key"),
                    format!("{:?} is used twice", t.key),
                );
            }
        }
        if self.first_response.is_none()
            && self.overall_delivery.is_none()
            && self.milestones.is_empty()
            && self.carrier_targets.is_empty()
        {
            v.add(
                "sla_policy.overall_delivery",
                "a policy needs at least one target",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.revision_id.clear();
        self.revision_create_time = None;
        self.create_time = None;
        self.update_time = None;
        self.delete_time = None;
    }
}
