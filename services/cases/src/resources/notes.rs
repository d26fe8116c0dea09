//! Notes.

use concierge_common::clock;
use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::CREATE_TIME;
use crate::Rules;

pub static NOTES: Kind = Kind {
    resource_type: "Note",
    table: "notes",
    fields: &[
        Field {
            name: "visibility",
            column: "visibility",
            ty: FieldType::Enum {
                parse: |s| note::Visibility::from_str_name(s).map(|v| v as i32),
                prefix: "VISIBILITY_",
            },
        },
        Field {
            name: "origin",
            column: "origin",
            ty: FieldType::Enum {
                parse: |s| note::Origin::from_str_name(s).map(|v| v as i32),
                prefix: "ORIGIN_",
            },
        },
        Field {
            name: "author",
            column: "author",
            ty: FieldType::Text,
        },
        CREATE_TIME,
    ],
};

impl Resource<Rules> for Note {
    const KIND: &'static Kind = &NOTES;
    const COLLECTIONS: &'static [&'static str] = &["cases", "notes"];
    const FIELD: &'static str = "note";
    /// Notes are a record: never edited.
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
        self.create_time = clock::micros_to_proto(create_time);
    }
    fn account(&self) -> String {
        self.account.clone()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("visibility", Value::Int(i64::from(self.visibility))),
            ("origin", Value::Int(i64::from(self.origin))),
            ("author", Value::Text(self.author.clone())),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        if !matches!(note::Visibility::try_from(self.visibility), Ok(x) if x != note::Visibility::Unspecified)
        {
            v.add("note.visibility", "required: VISIBILITY_INTERNAL (staff only) or VISIBILITY_PUBLIC (the client sees it)");
        }
        if self.body.trim().is_empty() {
            v.add("note.body", "required");
        } else if self.body.chars().count() > 20_000 {
            v.add("note.body", "at most 20,000 characters");
        }
    }
    fn clear_output_only(&mut self) {
        *self = Note {
            name: std::mem::take(&mut self.name),
            visibility: self.visibility,
            body: std::mem::take(&mut self.body),
            ..Default::default()
        };
    }
}
