//! Links between cases.

use concierge_common::clock;
use concierge_common::crud::Resource;
use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::names;
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::*;

use super::CREATE_TIME;
use crate::Rules;

pub static CASE_LINKS: Kind = Kind {
    resource_type: "CaseLink",
    table: "case_links",
    fields: &[
        Field {
            name: "type",
            column: "type",
            ty: FieldType::Enum {
                parse: |s| case_link::Type::from_str_name(s).map(|v| v as i32),
                prefix: "TYPE_",
            },
        },
        Field {
            name: "target",
            column: "target",
            ty: FieldType::Text,
        },
        CREATE_TIME,
    ],
};

/// The link the other case gets: parent ↔ child, depends on ↔ blocks,
/// duplicate of ↔ duplicated by.
pub fn inverse_type(t: case_link::Type) -> case_link::Type {
    use case_link::Type::*;
    match t {
        ParentOf => ChildOf,
        ChildOf => ParentOf,
        DependsOn => Blocks,
        Blocks => DependsOn,
        DuplicateOf => DuplicatedBy,
        DuplicatedBy => DuplicateOf,
        Unspecified => Unspecified,
    }
}

impl Resource<Rules> for CaseLink {
    const KIND: &'static Kind = &CASE_LINKS;
    const COLLECTIONS: &'static [&'static str] = &["cases", "links"];
    const FIELD: &'static str = "case_link";
    /// A link is replaced, not edited.
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
    fn set_meta(&mut self, create_time: i64, _update_time: i64, etag: String) {
        self.create_time = clock::micros_to_proto(create_time);
        self.etag = etag;
    }
    /// Links are scoped like their case; the account is the parent case's,
    /// filled in from the table when read.
    fn account(&self) -> String {
        String::new()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("type", Value::Int(i64::from(self.r#type))),
            ("target", Value::Text(self.target.clone())),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        if !matches!(case_link::Type::try_from(self.r#type), Ok(t) if t != case_link::Type::Unspecified)
        {
            v.add(
                "case_link.type",
                "required: parent of, child of, depends on, blocks, duplicate of or duplicated by",
            );
        }
        if names::parse("case_link.target", &self.target, &["cases"]).is_err() {
            v.add(
                "case_link.target",
                "required: the other case, \"cases/{case}\"",
            );
        } else if self.name.starts_with(&format!("{}/", self.target)) {
            v.add("case_link.target", "a case cannot be linked to itself");
        }
    }
    fn clear_output_only(&mut self) {
        self.inverse.clear();
        self.creator.clear();
        self.create_time = None;
    }
}
