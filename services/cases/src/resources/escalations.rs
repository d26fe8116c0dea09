//! Escalations of a case. They change only through their custom methods
//! (acknowledge, resolve, cancel), never by a plain update.

use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::names;
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::{CREATE_TIME, UPDATE_TIME};
use crate::Rules;

pub static ESCALATIONS: Kind = Kind {
    resource_type: "Escalation",
    table: "escalations",
    fields: &[
        Field {
            name: "level",
            column: "level",
            ty: FieldType::Int,
        },
        Field {
            name: "target_team",
            column: "target_team",
            ty: FieldType::Text,
        },
        Field {
            name: "target_staff_member",
            column: "target_staff_member",
            ty: FieldType::Text,
        },
        Field {
            name: "state",
            column: "state",
            ty: FieldType::Enum {
                parse: |s| escalation::State::from_str_name(s).map(|v| v as i32),
                prefix: "STATE_",
            },
        },
        Field {
            name: "delivery.state",
            column: "delivery_state",
            ty: FieldType::Enum {
                parse: |s| escalation_delivery::State::from_str_name(s).map(|v| v as i32),
                prefix: "STATE_",
            },
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

/// The highest level: senior agent, specialist, manager, director, executive.
pub const MAX_LEVEL: i32 = 5;
const MAX_REASON: usize = 4_000;

impl Resource<Rules> for Escalation {
    const KIND: &'static Kind = &ESCALATIONS;
    const COLLECTIONS: &'static [&'static str] = &["cases", "escalations"];
    const FIELD: &'static str = "escalation";
    const UPDATABLE: &'static [&'static str] = &[];

    standard_meta!();
    fn account(&self) -> String {
        self.account.clone()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("level", Value::Int(i64::from(self.level))),
            ("target_team", Value::Text(self.target_team.clone())),
            (
                "target_staff_member",
                Value::Text(self.target_staff_member.clone()),
            ),
            ("state", Value::Int(i64::from(self.state))),
            (
                "delivery_state",
                Value::Int(self.delivery.as_ref().map_or(0, |d| i64::from(d.state))),
            ),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        if !(1..=MAX_LEVEL).contains(&self.level) {
            v.add(
                "escalation.level",
                format!("must be 1 (the first level) to {MAX_LEVEL}"),
            );
        }
        match (
            self.target_team.trim().is_empty(),
            self.target_staff_member.is_empty(),
        ) {
            (true, true) => v.add(
                "escalation.target_team",
                "required: a team or a target_staff_member",
            ),
            (false, false) => v.add(
                "escalation.target_staff_member",
                "only one of target_team and target_staff_member",
            ),
            (true, false) => {
                v.check(names::parse(
                    "escalation.target_staff_member",
                    &self.target_staff_member,
                    &["staff"],
                ));
            }
            (false, true) => {
                if self.target_team.len() > 200 {
                    v.add("escalation.target_team", "at most 200 bytes");
                }
            }
        }
        if self.reason.trim().is_empty() {
            v.add("escalation.reason", "required");
        } else if self.reason.len() > MAX_REASON {
            v.add("escalation.reason", format!("at most {MAX_REASON} bytes"));
        }
    }
    fn clear_output_only(&mut self) {
        *self = Escalation {
            name: std::mem::take(&mut self.name),
            level: self.level,
            target_team: std::mem::take(&mut self.target_team),
            target_staff_member: std::mem::take(&mut self.target_staff_member),
            reason: std::mem::take(&mut self.reason),
            ..Default::default()
        };
    }
}
