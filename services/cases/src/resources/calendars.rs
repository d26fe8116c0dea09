//! Business calendars.

use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::{CREATE_TIME, UPDATE_TIME};
use crate::Rules;

pub static CALENDARS: Kind = Kind {
    resource_type: "Calendar",
    table: "calendars",
    fields: &[
        Field {
            name: "display_name",
            column: "display_name",
            ty: FieldType::Text,
        },
        Field {
            name: "time_zone.id",
            column: "time_zone",
            ty: FieldType::Text,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<Rules> for Calendar {
    const KIND: &'static Kind = &CALENDARS;
    const COLLECTIONS: &'static [&'static str] = &["calendars"];
    const FIELD: &'static str = "calendar";
    const UPDATABLE: &'static [&'static str] =
        &["display_name", "time_zone", "working_periods", "holidays"];

    standard_meta!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            (
                "time_zone",
                Value::Text(
                    self.time_zone
                        .as_ref()
                        .map(|t| t.id.clone())
                        .unwrap_or_default(),
                ),
            ),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "time_zone" => self.time_zone = from.time_zone.clone(),
            "working_periods" => self.working_periods = from.working_periods.clone(),
            "holidays" => self.holidays = from.holidays.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.display_name.trim().is_empty() {
            v.add("calendar.display_name", "required");
        }
        v.check(crate::calendar::from_proto(self).map(drop));
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}
