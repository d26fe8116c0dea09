//! The cases resources as the shared store sees them, one file per kind:
//! its table and filter fields (`Kind`), and how the store checks, names,
//! copies and indexes it (`Resource`).

/// The name, etag and timestamps of a resource whose message has `name`,
/// `etag`, `create_time` and `update_time`: most of them.
macro_rules! standard_meta {
    () => {
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
            self.create_time = concierge_common::clock::micros_to_proto(create_time);
            self.update_time = concierge_common::clock::micros_to_proto(update_time);
            self.etag = etag;
        }
    };
}

mod calendars;
mod cases;
mod chase_rules;
mod chase_runs;
mod clocks;
mod control_documents;
mod escalations;
mod hand_off_codes;
mod links;
mod notes;
mod sla_policies;

use concierge_common::clock;
use concierge_common::filter::{Field, FieldType, Value};

/// An instant as a filter column (µs; 0 when unset).
pub(crate) fn time(t: &Option<prost_types::Timestamp>) -> Value {
    Value::Int(
        t.as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .unwrap_or(0),
    )
}

pub use calendars::CALENDARS;
pub use cases::CASES;
pub use chase_rules::CHASE_RULES;
pub use chase_runs::{CHASE_RUNS, CHASE_STEPS};
pub use clocks::SLA_CLOCKS;
pub use control_documents::{
    CONTROL_DOCUMENT_SETTINGS, CONTROL_DOCUMENTS, SETTINGS_NAME, SentWeek, default_settings,
};
pub use escalations::{ESCALATIONS, MAX_LEVEL as MAX_ESCALATION_LEVEL};
pub use hand_off_codes::HAND_OFF_CODES;
pub use links::{CASE_LINKS, inverse_type};
pub use notes::NOTES;
pub use sla_policies::{SLA_POLICIES, revision_of};

const CREATE_TIME: Field = Field {
    name: "create_time",
    column: "create_time",
    ty: FieldType::Timestamp,
};
const UPDATE_TIME: Field = Field {
    name: "update_time",
    column: "update_time",
    ty: FieldType::Timestamp,
};

#[cfg(test)]
mod declared_columns {
    use concierge_common::kit::Service as _;
    use concierge_common::testing::{Backend, TestDb, assert_columns_agree};
    use concierge_proto::concierge::cases::v1::{
        Calendar, Case, CaseLink, ChaseRun, ChaseStep, Escalation, HandOffCode, Note, SlaClock,
        SlaPolicy,
    };

    use crate::{Cases, Rules};

    /// A filterable column is declared in the migrations, the kind's fields
    /// and the resource's columns: they agree, for every kind, on both
    /// databases.
    async fn every_filter_field_is_a_migrated_column_the_resource_writes(backend: Backend) {
        let Some(db) = TestDb::new(backend, "declared_columns").await else {
            return;
        };
        Cases::migrations().apply(&db.db).await.unwrap();
        assert_columns_agree::<Calendar, Rules>(&db.db).await;
        assert_columns_agree::<HandOffCode, Rules>(&db.db).await;
        assert_columns_agree::<Case, Rules>(&db.db).await;
        assert_columns_agree::<Note, Rules>(&db.db).await;
        assert_columns_agree::<SlaPolicy, Rules>(&db.db).await;
        assert_columns_agree::<CaseLink, Rules>(&db.db).await;
        assert_columns_agree::<SlaClock, Rules>(&db.db).await;
        assert_columns_agree::<Escalation, Rules>(&db.db).await;
        assert_columns_agree::<ChaseRun, Rules>(&db.db).await;
        assert_columns_agree::<ChaseStep, Rules>(&db.db).await;
    }

    concierge_common::both_backends!(
        multi_thread;
        every_filter_field_is_a_migrated_column_the_resource_writes
    );
}
