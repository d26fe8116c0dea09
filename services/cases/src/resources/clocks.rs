//! SLA clocks, as their index lists them.

use concierge_common::clock;
use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::time;
use crate::Rules;

pub static SLA_CLOCKS: Kind = Kind {
    resource_type: "SlaClock",
    table: "sla_clocks",
    fields: &[
        Field {
            name: "key",
            column: "clock_key",
            ty: FieldType::Text,
        },
        Field {
            name: "kind",
            column: "kind",
            ty: FieldType::Enum {
                parse: |s| sla_clock::Kind::from_str_name(s).map(|v| v as i32),
                prefix: "KIND_",
            },
        },
        Field {
            name: "state",
            column: "state",
            ty: FieldType::Enum {
                parse: |s| SlaState::from_str_name(s).map(|v| v as i32),
                prefix: "SLA_STATE_",
            },
        },
        Field {
            name: "status",
            column: "status",
            ty: FieldType::Enum {
                parse: |s| sla_clock::Status::from_str_name(s).map(|v| v as i32),
                prefix: "STATUS_",
            },
        },
        Field {
            name: "target_time",
            column: "target_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "breach_time",
            column: "breach_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "sla_policy",
            column: "sla_policy",
            ty: FieldType::Text,
        },
    ],
};

/// SLA clocks are read, never written through the API: they follow from
/// their case, its policy revision and its calendar.
impl Resource<Rules> for SlaClock {
    const KIND: &'static Kind = &SLA_CLOCKS;
    const COLLECTIONS: &'static [&'static str] = &["cases", "slaClocks"];
    const FIELD: &'static str = "sla_clock";
    const UPDATABLE: &'static [&'static str] = &[];

    fn name(&self) -> &str {
        &self.name
    }
    fn etag(&self) -> &str {
        ""
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_meta(&mut self, _create_time: i64, _update_time: i64, _etag: String) {}
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let target = self
            .target_time
            .as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .unwrap_or(i64::MAX);
        vec![
            ("clock_key", Value::Text(self.key.clone())),
            ("kind", Value::Int(i64::from(self.kind))),
            ("state", Value::Int(i64::from(self.state))),
            ("status", Value::Int(i64::from(self.status))),
            ("target_time", Value::Int(target)),
            ("breach_time", time(&self.breach_time)),
            ("sla_policy", Value::Text(self.sla_policy.clone())),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {}
}
