//! Cases.

use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::names;
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::types::ContactChannel;

use super::{CREATE_TIME, UPDATE_TIME, time};
use crate::Rules;

pub static CASES: Kind = Kind {
    resource_type: "Case",
    table: "cases",
    fields: &[
        Field {
            name: "account",
            column: "account",
            ty: FieldType::Text,
        },
        Field {
            name: "account_manager",
            column: "account_manager",
            ty: FieldType::Text,
        },
        Field {
            name: "site",
            column: "site",
            ty: FieldType::Text,
        },
        Field {
            name: "contact",
            column: "contact",
            ty: FieldType::Text,
        },
        Field {
            name: "owner",
            column: "owner",
            ty: FieldType::Text,
        },
        Field {
            name: "performing_team",
            column: "performing_team",
            ty: FieldType::Text,
        },
        Field {
            name: "type",
            column: "type",
            ty: FieldType::Enum {
                parse: |s| CaseType::from_str_name(s).map(|v| v as i32),
                prefix: "CASE_TYPE_",
            },
        },
        Field {
            name: "priority",
            column: "priority",
            ty: FieldType::Enum {
                parse: |s| CasePriority::from_str_name(s).map(|v| v as i32),
                prefix: "CASE_PRIORITY_",
            },
        },
        Field {
            name: "state",
            column: "state",
            ty: FieldType::Enum {
                parse: |s| case::State::from_str_name(s).map(|v| v as i32),
                prefix: "STATE_",
            },
        },
        Field {
            name: "hand_off_code",
            column: "hand_off_code",
            ty: FieldType::Text,
        },
        Field {
            name: "presented_to_carrier",
            column: "presented_to_carrier",
            ty: FieldType::Bool,
        },
        Field {
            name: "withheld_by_dependency",
            column: "withheld_by_dependency",
            ty: FieldType::Bool,
        },
        Field {
            name: "sla.state",
            column: "sla_state",
            ty: FieldType::Enum {
                parse: |s| {
                    concierge_proto::concierge::cases::v1::SlaState::from_str_name(s)
                        .map(|v| v as i32)
                },
                prefix: "SLA_STATE_",
            },
        },
        Field {
            name: "sla.next_target_time",
            column: "sla_next_target_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "jeopardy.flagged_missing_reason",
            column: "jeopardy_flagged",
            ty: FieldType::Bool,
        },
        Field {
            name: "construction.required",
            column: "construction_required",
            ty: FieldType::Bool,
        },
        Field {
            name: "chase.highest_step_reached",
            column: "chase_highest_step",
            ty: FieldType::Int,
        },
        Field {
            name: "finding.reason",
            column: "finding_reason",
            ty: FieldType::Enum {
                parse: |s| case_finding::Reason::from_str_name(s).map(|v| v as i32),
                prefix: "REASON_",
            },
        },
        Field {
            name: "finding.due_time",
            column: "finding_due_time",
            ty: FieldType::Timestamp,
        },
        CREATE_TIME,
        UPDATE_TIME,
        Field {
            name: "resolve_time",
            column: "resolve_time",
            ty: FieldType::Timestamp,
        },
    ],
};

fn under_account(
    v: &mut Violations,
    field: &str,
    value: &str,
    account: &str,
    collections: &[&str],
) {
    if value.is_empty() {
        return;
    }
    let shaped = names::parse(field, value, collections).is_ok();
    if !shaped || !value.starts_with(&format!("{account}/")) {
        v.add(
            field,
            format!(
                "{value:?} is not a {} of {account}",
                collections.last().unwrap_or(&"resource")
            ),
        );
    }
}

impl Resource<Rules> for Case {
    const KIND: &'static Kind = &CASES;
    const COLLECTIONS: &'static [&'static str] = &["cases"];
    const FIELD: &'static str = "case";
    const UPDATABLE: &'static [&'static str] = &[
        "title",
        "description",
        "priority",
        "site",
        "inventory_items",
        "contact",
        "channel",
        "owner",
        "performing_team",
        "carrier_reference",
        "requested_time",
        "committed_time",
        "construction",
        "construction.required",
        "construction.definition",
        "construction.deliverables",
        "construction.eta_time",
        "outage",
        "labels",
    ];

    standard_meta!();
    fn account(&self) -> String {
        self.account.clone()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let sla = self.sla.clone().unwrap_or_default();
        let construction = self.construction.clone().unwrap_or_default();
        let (finding_reason, finding_due_time) = crate::review::columns(self);
        // `account` is a bookkeeping column already (see `account()`).
        vec![
            ("account_manager", Value::Text(self.account_manager.clone())),
            ("site", Value::Text(self.site.clone())),
            ("contact", Value::Text(self.contact.clone())),
            ("owner", Value::Text(self.owner.clone())),
            ("performing_team", Value::Text(self.performing_team.clone())),
            ("type", Value::Int(i64::from(self.r#type))),
            ("priority", Value::Int(i64::from(self.priority))),
            ("state", Value::Int(i64::from(self.state))),
            ("hand_off_code", Value::Text(self.hand_off_code.clone())),
            (
                "presented_to_carrier",
                Value::Int(i64::from(self.presented_to_carrier)),
            ),
            (
                "withheld_by_dependency",
                Value::Int(i64::from(self.withheld_by_dependency)),
            ),
            ("sla_state", Value::Int(i64::from(sla.state))),
            ("sla_next_target_time", time(&sla.next_target_time)),
            (
                "jeopardy_flagged",
                Value::Int(i64::from(
                    self.jeopardy
                        .as_ref()
                        .is_some_and(|j| j.flagged_missing_reason),
                )),
            ),
            (
                "construction_required",
                Value::Int(i64::from(construction.required)),
            ),
            ("resolve_time", time(&self.resolve_time)),
            (
                "chase_highest_step",
                Value::Int(i64::from(
                    self.chase.as_ref().map_or(0, |k| k.highest_step_reached),
                )),
            ),
            ("finding_reason", Value::Int(finding_reason)),
            ("finding_due_time", Value::Int(finding_due_time)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        let construction =
            |c: &mut Case| c.construction.get_or_insert_with(Default::default).clone();
        match path {
            "title" => self.title = from.title.clone(),
            "description" => self.description = from.description.clone(),
            "priority" => self.priority = from.priority,
            "site" => self.site = from.site.clone(),
            "inventory_items" => self.inventory_items = from.inventory_items.clone(),
            "contact" => self.contact = from.contact.clone(),
            "channel" => self.channel = from.channel,
            "owner" => self.owner = from.owner.clone(),
            "performing_team" => self.performing_team = from.performing_team.clone(),
            "carrier_reference" => self.carrier_reference = from.carrier_reference.clone(),
            "requested_time" => self.requested_time = from.requested_time,
            "committed_time" => self.committed_time = from.committed_time,
            "construction" => self.construction = from.construction.clone(),
            "outage" => self.outage = from.outage,
            "labels" => self.labels = from.labels.clone(),
            sub if sub.starts_with("construction.") => {
                let theirs = from.construction.clone().unwrap_or_default();
                let mut mine = construction(self);
                match sub {
                    "construction.required" => mine.required = theirs.required,
                    "construction.definition" => mine.definition = theirs.definition,
                    "construction.deliverables" => mine.deliverables = theirs.deliverables,
                    "construction.eta_time" => mine.eta_time = theirs.eta_time,
                    _ => {}
                }
                self.construction = Some(mine);
            }
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.title.trim().is_empty() {
            v.add("case.title", "required: what the client needs, in a line");
        } else if self.title.chars().count() > 300 {
            v.add("case.title", "at most 300 characters");
        }
        if self.description.chars().count() > 20_000 {
            v.add("case.description", "at most 20,000 characters");
        }
        if !matches!(CaseType::try_from(self.r#type), Ok(t) if t != CaseType::Unspecified) {
            v.add("case.type", "required: repair, order (new, move, disconnect), billing, inquiry, complaint, installation or training");
        }
        if CasePriority::try_from(self.priority).is_err() {
            v.add(
                "case.priority",
                format!("{} is not a priority", self.priority),
            );
        }
        if ContactChannel::try_from(self.channel).is_err() {
            v.add("case.channel", format!("{} is not a channel", self.channel));
        }
        if names::parse("case.account", &self.account, &["accounts"]).is_err() {
            v.add(
                "case.account",
                "required: the client's account, \"accounts/{account}\"",
            );
        } else {
            under_account(
                v,
                "case.site",
                &self.site,
                &self.account,
                &["accounts", "sites"],
            );
            under_account(
                v,
                "case.contact",
                &self.contact,
                &self.account,
                &["accounts", "contacts"],
            );
            for (i, item) in self.inventory_items.iter().enumerate() {
                under_account(
                    v,
                    &format!("case.inventory_items[{i}]"),
                    item,
                    &self.account,
                    &["accounts", "sites", "inventoryItems"],
                );
            }
        }
        if !self.owner.is_empty() && names::parse("case.owner", &self.owner, &["staff"]).is_err() {
            v.add("case.owner", "a staff member, \"staff/{staff_member}\"");
        }
        // Every instant a caller sets is one the engines can compute with.
        let instant = |v: &mut Violations, field: &str, t: &Option<prost_types::Timestamp>| {
            v.check(concierge_common::bounded::Instant::optional(field, t));
        };
        instant(v, "case.requested_time", &self.requested_time);
        instant(v, "case.committed_time", &self.committed_time);
        if let Some(c) = &self.construction {
            instant(v, "case.construction.eta_time", &c.eta_time);
            for (i, d) in c.deliverables.iter().enumerate() {
                check_deliverable(v, i, d);
                instant(
                    v,
                    &format!("case.construction.deliverables[{i}].due_time"),
                    &d.due_time,
                );
            }
        }
        if let Some(o) = &self.outage {
            instant(v, "case.outage.start_time", &o.start_time);
            instant(v, "case.outage.restore_time", &o.restore_time);
        }
        if let Some(o) = &self.outage
            && let (Some(start), Some(restore)) = (o.start_time, o.restore_time)
            && (restore.seconds, restore.nanos) < (start.seconds, start.nanos)
        {
            v.add(
                "case.outage.restore_time",
                "must not be before outage.start_time",
            );
        }
    }
    fn clear_output_only(&mut self) {
        let keep = Case {
            name: std::mem::take(&mut self.name),
            title: std::mem::take(&mut self.title),
            description: std::mem::take(&mut self.description),
            r#type: self.r#type,
            priority: self.priority,
            account: std::mem::take(&mut self.account),
            site: std::mem::take(&mut self.site),
            inventory_items: std::mem::take(&mut self.inventory_items),
            contact: std::mem::take(&mut self.contact),
            channel: self.channel,
            owner: std::mem::take(&mut self.owner),
            performing_team: std::mem::take(&mut self.performing_team),
            carrier_reference: std::mem::take(&mut self.carrier_reference),
            requested_time: self.requested_time.take(),
            committed_time: self.committed_time.take(),
            construction: self.construction.take().map(|mut c| {
                c.define_time = None;
                c.client_inform_time = None;
                c
            }),
            outage: self.outage.take().map(|mut o| {
                o.duration = None;
                o.client_hold_duration = None;
                o
            }),
            labels: std::mem::take(&mut self.labels),
            ..Default::default()
        };
        *self = keep;
    }
}

fn check_deliverable(v: &mut Violations, i: usize, d: &ConstructionDeliverable) {
    use concierge_proto::concierge::cases::v1::construction_deliverable::{Kind as K, State as S};
    if !matches!(K::try_from(d.kind), Ok(k) if k != K::Unspecified) {
        v.add(
            format!("case.construction.deliverables[{i}].kind"),
            "required: right of entry, conduit, financial participation or other",
        );
    }
    if S::try_from(d.state).is_err() {
        v.add(
            format!("case.construction.deliverables[{i}].state"),
            format!("{} is not a state", d.state),
        );
    }
}
