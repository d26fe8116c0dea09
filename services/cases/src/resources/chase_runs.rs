//! Chase runs and their steps: written only by the chase engine (a case's
//! change, a due step, CancelChaseRun), never by a plain create or update.

use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::time;
use crate::Rules;

const RULE: Field = Field {
    name: "rule",
    column: "rule",
    ty: FieldType::Text,
};

pub static CHASE_RUNS: Kind = Kind {
    resource_type: "ChaseRun",
    table: "chase_runs",
    fields: &[
        RULE,
        Field {
            name: "state",
            column: "state",
            ty: FieldType::Enum {
                parse: |s| chase_run::State::from_str_name(s).map(|v| v as i32),
                prefix: "STATE_",
            },
        },
        Field {
            name: "steps_taken",
            column: "steps_taken",
            ty: FieldType::Int,
        },
        Field {
            name: "next_step_time",
            column: "next_step_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "start_time",
            column: "start_time",
            ty: FieldType::Timestamp,
        },
    ],
};

pub static CHASE_STEPS: Kind = Kind {
    resource_type: "ChaseStep",
    table: "chase_steps",
    fields: &[
        Field {
            name: "chase_run",
            column: "chase_run",
            ty: FieldType::Text,
        },
        RULE,
        Field {
            name: "step_number",
            column: "step_number",
            ty: FieldType::Int,
        },
        Field {
            name: "state",
            column: "state",
            ty: FieldType::Enum {
                parse: |s| chase_step::State::from_str_name(s).map(|v| v as i32),
                prefix: "STATE_",
            },
        },
        Field {
            name: "schedule_time",
            column: "schedule_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "execute_time",
            column: "execute_time",
            ty: FieldType::Timestamp,
        },
    ],
};

impl Resource<Rules> for ChaseRun {
    const KIND: &'static Kind = &CHASE_RUNS;
    const COLLECTIONS: &'static [&'static str] = &["cases", "chaseRuns"];
    const FIELD: &'static str = "chase_run";
    const UPDATABLE: &'static [&'static str] = &[];

    fn name(&self) -> &str {
        &self.name
    }
    fn etag(&self) -> &str {
        &self.etag
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_meta(&mut self, _create_time: i64, _update_time: i64, etag: String) {
        self.etag = etag;
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("rule", Value::Text(self.rule.clone())),
            ("state", Value::Int(i64::from(self.state))),
            ("steps_taken", Value::Int(i64::from(self.steps_taken))),
            ("next_step_time", time(&self.next_step_time)),
            ("start_time", time(&self.start_time)),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {
        *self = ChaseRun {
            name: std::mem::take(&mut self.name),
            ..Default::default()
        };
    }
}

impl Resource<Rules> for ChaseStep {
    const KIND: &'static Kind = &CHASE_STEPS;
    const COLLECTIONS: &'static [&'static str] = &["cases", "chaseSteps"];
    const FIELD: &'static str = "chase_step";
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
        vec![
            ("chase_run", Value::Text(self.chase_run.clone())),
            ("rule", Value::Text(self.rule.clone())),
            ("step_number", Value::Int(i64::from(self.step_number))),
            ("state", Value::Int(i64::from(self.state))),
            ("schedule_time", time(&self.schedule_time)),
            ("execute_time", time(&self.execute_time)),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {
        *self = ChaseStep {
            name: std::mem::take(&mut self.name),
            ..Default::default()
        };
    }
}
