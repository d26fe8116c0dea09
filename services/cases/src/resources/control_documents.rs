//! Control documents (archived as issued, under their account) and the
//! weekly run's settings (a singleton).

use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::types::Money;

use super::{CREATE_TIME, time};
use crate::Rules;

pub static CONTROL_DOCUMENTS: Kind = Kind {
    resource_type: "ControlDocument",
    table: "control_documents",
    fields: &[
        Field {
            name: "trigger",
            column: "trigger",
            ty: FieldType::Enum {
                parse: |s| control_document::Trigger::from_str_name(s).map(|v| v as i32),
                prefix: "TRIGGER_",
            },
        },
        Field {
            name: "as_of_time",
            column: "as_of_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "row_count",
            column: "row_count",
            ty: FieldType::Int,
        },
        CREATE_TIME,
    ],
};

/// The week a document went out in, set by the sender (see
/// `control::sent_week`), kept in the row beside the body.
pub struct SentWeek<'a>(pub &'a str);

impl Resource<Rules> for ControlDocument {
    const KIND: &'static Kind = &CONTROL_DOCUMENTS;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "controlDocuments"];
    const FIELD: &'static str = "control_document";
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
    fn set_meta(&mut self, create_time: i64, _update_time: i64, _etag: String) {
        self.create_time = concierge_common::clock::micros_to_proto(create_time);
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("trigger", Value::Int(i64::from(self.trigger))),
            ("as_of_time", time(&self.as_of_time)),
            ("row_count", Value::Int(i64::from(self.row_count))),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {
        *self = ControlDocument {
            name: std::mem::take(&mut self.name),
            ..Default::default()
        };
    }
}

impl<'a> SentWeek<'a> {
    pub(crate) fn column(&self) -> (&'static str, Value) {
        ("sent_week", Value::Text(self.0.to_string()))
    }
}

pub static CONTROL_DOCUMENT_SETTINGS: Kind = Kind {
    resource_type: "ControlDocumentSettings",
    table: "control_document_settings",
    fields: &[],
};

/// The one settings resource's name.
pub const SETTINGS_NAME: &str = "controlDocumentSettings";

/// The settings before anyone changed them: on, Mondays at 08:00 in each
/// account's time zone, for accounts of at least 30,000.00 USD a month.
pub fn default_settings() -> ControlDocumentSettings {
    ControlDocumentSettings {
        name: SETTINGS_NAME.into(),
        enabled: true,
        mrc_thresholds: vec![Money {
            currency_code: "USD".into(),
            minor_units: 3_000_000,
        }],
        send_weekday: Weekday::Monday as i32,
        send_minute: 8 * 60,
        case_types: Vec::new(),
        include_disputes: false,
        email_subject_template: "Open requests of {{account}} on {{date}}".into(),
        update_time: None,
        etag: String::new(),
    }
}

const SUBJECT_PLACEHOLDERS: &[&str] = &["account", "date"];

impl Resource<Rules> for ControlDocumentSettings {
    const KIND: &'static Kind = &CONTROL_DOCUMENT_SETTINGS;
    const COLLECTIONS: &'static [&'static str] = &["controlDocumentSettings"];
    const FIELD: &'static str = "control_document_settings";
    const UPDATABLE: &'static [&'static str] = &[
        "enabled",
        "mrc_thresholds",
        "send_weekday",
        "send_minute",
        "case_types",
        "include_disputes",
        "email_subject_template",
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
    fn set_meta(&mut self, _create_time: i64, update_time: i64, etag: String) {
        self.update_time = concierge_common::clock::micros_to_proto(update_time);
        self.etag = etag;
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "enabled" => self.enabled = from.enabled,
            "mrc_thresholds" => self.mrc_thresholds = from.mrc_thresholds.clone(),
            "send_weekday" => self.send_weekday = from.send_weekday,
            "send_minute" => self.send_minute = from.send_minute,
            "case_types" => self.case_types = from.case_types.clone(),
            "include_disputes" => self.include_disputes = from.include_disputes,
            "email_subject_template" => {
                self.email_subject_template = from.email_subject_template.clone()
            }
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        let field = "control_document_settings";
        if self.mrc_thresholds.len() > 20 {
            v.add(
                format!("{field}.mrc_thresholds"),
                "at most 20, one per currency",
            );
        }
        let mut currencies = std::collections::BTreeSet::new();
        for (i, m) in self.mrc_thresholds.iter().enumerate() {
            v.check(concierge_common::money::check(
                &format!("{field}.mrc_thresholds[{i}]"),
                m,
                false,
            ));
            if !currencies.insert(m.currency_code.clone()) {
                v.add(
                    format!("{field}.mrc_thresholds[{i}].currency_code"),
                    "one threshold per currency",
                );
            }
        }
        match Weekday::try_from(self.send_weekday) {
            Ok(Weekday::Unspecified) | Err(_) => {
                v.add(format!("{field}.send_weekday"), "required: a weekday")
            }
            Ok(_) => {}
        }
        if !(0..24 * 60).contains(&self.send_minute) {
            v.add(
                format!("{field}.send_minute"),
                "minutes after midnight: 0 to 1439 (480 is 08:00)",
            );
        }
        for (i, t) in self.case_types.iter().enumerate() {
            if !matches!(CaseType::try_from(*t), Ok(t) if t != CaseType::Unspecified) {
                v.add(format!("{field}.case_types[{i}]"), "not a case type");
            }
        }
        let subject = &self.email_subject_template;
        if subject.trim().is_empty() || subject.len() > 300 {
            v.add(
                format!("{field}.email_subject_template"),
                "required, at most 300 bytes",
            );
        }
        let mut rest = subject.as_str();
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                v.add(
                    format!("{field}.email_subject_template"),
                    "a {{ without its }}",
                );
                break;
            };
            let placeholder = after[..close].trim();
            if !SUBJECT_PLACEHOLDERS.contains(&placeholder) {
                v.add(
                    format!("{field}.email_subject_template"),
                    "placeholders are {{account}} and {{date}}",
                );
            }
            rest = &after[close + 2..];
        }
    }
    fn clear_output_only(&mut self) {
        self.update_time = None;
    }
}
