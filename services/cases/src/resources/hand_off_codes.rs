//! Hand-off codes.

use concierge_common::crud::Resource;
use concierge_common::error::{Error, Result, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::{CREATE_TIME, UPDATE_TIME};
use crate::Rules;

pub static HAND_OFF_CODES: Kind = Kind {
    resource_type: "HandOffCode",
    table: "hand_off_codes",
    fields: &[
        Field {
            name: "display_name",
            column: "display_name",
            ty: FieldType::Text,
        },
        Field {
            name: "presented_to_carrier",
            column: "presented_to_carrier",
            ty: FieldType::Bool,
        },
        Field {
            name: "case_types",
            column: "case_types",
            ty: FieldType::Text,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<Rules> for HandOffCode {
    const KIND: &'static Kind = &HAND_OFF_CODES;
    const COLLECTIONS: &'static [&'static str] = &["handOffCodes"];
    const FIELD: &'static str = "hand_off_code";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "description",
        "presented_to_carrier",
        "case_types",
    ];

    /// The id is the code itself ("NR", "HE", "EN", "PE"): required, as the
    /// performing teams write it.
    fn new_id(field: &str, requested: &str) -> Result<String> {
        let ok = (1..=16).contains(&requested.len())
            && requested
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Ok(requested.to_string())
        } else {
            Err(Error::invalid(
                field,
                "required: the code itself, 1-16 letters, digits or hyphens, e.g. \"NR\"",
            ))
        }
    }
    standard_meta!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let types: Vec<&str> = self
            .case_types
            .iter()
            .filter_map(|t| CaseType::try_from(*t).ok())
            .map(|t| t.as_str_name())
            .collect();
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            (
                "presented_to_carrier",
                Value::Int(i64::from(self.presented_to_carrier)),
            ),
            ("case_types", Value::Text(format!(" {} ", types.join(" ")))),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "description" => self.description = from.description.clone(),
            "presented_to_carrier" => self.presented_to_carrier = from.presented_to_carrier,
            "case_types" => self.case_types = from.case_types.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.display_name.trim().is_empty() {
            v.add(
                "hand_off_code.display_name",
                "required, e.g. \"Not released\"",
            );
        }
        for (i, t) in self.case_types.iter().enumerate() {
            if !matches!(CaseType::try_from(*t), Ok(t) if t != CaseType::Unspecified) {
                v.add(
                    format!("hand_off_code.case_types[{i}]"),
                    format!("{t} is not a case type"),
                );
            }
        }
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}
