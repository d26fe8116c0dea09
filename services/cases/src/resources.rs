//! The cases resources as the shared store sees them.

use concierge_common::clock;
use concierge_common::crud::Resource;
use concierge_common::error::{Error, Result, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_proto::concierge::cases::v1::{Calendar, CaseType, HandOffCode};

use crate::Rules;

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
        self.create_time = clock::micros_to_proto(create_time);
        self.update_time = clock::micros_to_proto(update_time);
        self.etag = etag;
    }
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
        self.create_time = clock::micros_to_proto(create_time);
        self.update_time = clock::micros_to_proto(update_time);
        self.etag = etag;
    }
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

use concierge_common::names;
use concierge_proto::concierge::cases::v1::{
    Case, CasePriority, ConstructionDeliverable, Note, case, note,
};
use concierge_proto::types::ContactChannel;

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    Value::Int(
        t.as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .unwrap_or(0),
    )
}

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
        self.create_time = clock::micros_to_proto(create_time);
        self.update_time = clock::micros_to_proto(update_time);
        self.etag = etag;
    }
    fn account(&self) -> String {
        self.account.clone()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let sla = self.sla.clone().unwrap_or_default();
        let construction = self.construction.clone().unwrap_or_default();
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

use concierge_proto::concierge::cases::v1::{SlaPolicy, SlaTarget, TimeBasis};

pub static SLA_POLICIES: Kind = Kind {
    resource_type: "SlaPolicy",
    table: "sla_policies",
    fields: &[
        Field {
            name: "display_name",
            column: "display_name",
            ty: FieldType::Text,
        },
        Field {
            name: "precedence",
            column: "precedence",
            ty: FieldType::Int,
        },
        Field {
            name: "calendar",
            column: "calendar",
            ty: FieldType::Text,
        },
        Field {
            name: "case_types",
            column: "case_types",
            ty: FieldType::Text,
        },
        Field {
            name: "priorities",
            column: "priorities",
            ty: FieldType::Text,
        },
        Field {
            name: "account_tiers",
            column: "account_tiers",
            ty: FieldType::Text,
        },
        UPDATE_TIME,
    ],
};

fn names_of<E: Copy>(
    values: &[i32],
    parse: impl Fn(i32) -> Option<E>,
    name: impl Fn(E) -> &'static str,
) -> String {
    let names: Vec<&str> = values.iter().filter_map(|v| parse(*v)).map(name).collect();
    format!(" {} ", names.join(" "))
}

/// The revision a policy row is at: its etag's number.
pub fn revision_of(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn check_target(v: &mut Violations, field: &str, t: &SlaTarget, key_required: bool) {
    if key_required
        && (t.key.is_empty()
            || !t
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    {
        v.add(
            format!("{field}.key"),
            "required: lowercase letters, digits, '_' or '-', e.g. \"presented_to_carrier\"",
        );
    }
    match t
        .duration
        .as_ref()
        .map(concierge_common::bounded::Duration::try_from)
    {
        Some(Ok(d)) if d.get().is_positive() && d.get() <= crate::sla::MAX_TARGET => {}
        Some(Ok(d)) if d.get().is_positive() => v.add(
            format!("{field}.duration"),
            "must be at most 366 days: a target further out is a project plan, not an SLA",
        ),
        Some(Err(e)) => v.add(format!("{field}.duration"), e.to_string()),
        _ => v.add(format!("{field}.duration"), "required: a positive duration"),
    }
    if TimeBasis::try_from(t.basis).is_err() {
        v.add(
            format!("{field}.basis"),
            format!("{} is not a time basis", t.basis),
        );
    }
}

impl Resource<Rules> for SlaPolicy {
    const KIND: &'static Kind = &SLA_POLICIES;
    const COLLECTIONS: &'static [&'static str] = &["slaPolicies"];
    const FIELD: &'static str = "sla_policy";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "description",
        "case_types",
        "priorities",
        "account_tiers",
        "precedence",
        "calendar",
        "time_zone_source",
        "first_response",
        "milestones",
        "overall_delivery",
        "carrier_targets",
        "pause_states",
        "at_risk_percent",
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
    fn set_meta(&mut self, create_time: i64, update_time: i64, etag: String) {
        self.create_time = clock::micros_to_proto(create_time);
        self.update_time = clock::micros_to_proto(update_time);
        self.revision_id = revision_of(&etag);
        self.revision_create_time = self.update_time;
        self.etag = etag;
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            ("precedence", Value::Int(i64::from(self.precedence))),
            ("calendar", Value::Text(self.calendar.clone())),
            (
                "case_types",
                Value::Text(names_of(
                    &self.case_types,
                    |v| CaseType::try_from(v).ok(),
                    |t| t.as_str_name(),
                )),
            ),
            (
                "priorities",
                Value::Text(names_of(
                    &self.priorities,
                    |v| CasePriority::try_from(v).ok(),
                    |p| p.as_str_name(),
                )),
            ),
            (
                "account_tiers",
                Value::Text(format!(" {} ", self.account_tiers.join(" "))),
            ),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "description" => self.description = from.description.clone(),
            "case_types" => self.case_types = from.case_types.clone(),
            "priorities" => self.priorities = from.priorities.clone(),
            "account_tiers" => self.account_tiers = from.account_tiers.clone(),
            "precedence" => self.precedence = from.precedence,
            "calendar" => self.calendar = from.calendar.clone(),
            "time_zone_source" => self.time_zone_source = from.time_zone_source,
            "first_response" => self.first_response = from.first_response.clone(),
            "milestones" => self.milestones = from.milestones.clone(),
            "overall_delivery" => self.overall_delivery = from.overall_delivery.clone(),
            "carrier_targets" => self.carrier_targets = from.carrier_targets.clone(),
            "pause_states" => self.pause_states = from.pause_states.clone(),
            "at_risk_percent" => self.at_risk_percent = from.at_risk_percent,
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        if self.display_name.trim().is_empty() {
            v.add(
                "sla_policy.display_name",
                "required, e.g. \"Enterprise repairs P1\"",
            );
        }
        if names::parse("sla_policy.calendar", &self.calendar, &["calendars"]).is_err() {
            v.add(
                "sla_policy.calendar",
                "required: the business calendar, \"calendars/{calendar}\"",
            );
        }
        for (i, t) in self.case_types.iter().enumerate() {
            if !matches!(CaseType::try_from(*t), Ok(x) if x != CaseType::Unspecified) {
                v.add(
                    format!("sla_policy.case_types[{i}]"),
                    format!("{t} is not a case type"),
                );
            }
        }
        for (i, p) in self.priorities.iter().enumerate() {
            if !matches!(CasePriority::try_from(*p), Ok(x) if x != CasePriority::Unspecified) {
                v.add(
                    format!("sla_policy.priorities[{i}]"),
                    format!("{p} is not a priority"),
                );
            }
        }
        for (i, s) in self.pause_states.iter().enumerate() {
            if !matches!(case::State::try_from(*s), Ok(x) if crate::lifecycle::is_open(x)) {
                v.add(
                    format!("sla_policy.pause_states[{i}]"),
                    "only the states of an open case can pause a clock",
                );
            }
        }
        if !(0..=99).contains(&self.at_risk_percent) {
            v.add(
                "sla_policy.at_risk_percent",
                "between 1 and 99 (0 means 80)",
            );
        }
        let mut keys = std::collections::BTreeSet::new();
        if let Some(t) = &self.first_response {
            check_target(v, "sla_policy.first_response", t, false);
        }
        if let Some(t) = &self.overall_delivery {
            check_target(v, "sla_policy.overall_delivery", t, false);
        }
        for (i, t) in self.milestones.iter().enumerate() {
            check_target(v, &format!("sla_policy.milestones[{i}]"), t, true);
            if !keys.insert(t.key.clone()) {
                v.add(
                    format!("sla_policy.milestones[{i}].key"),
                    format!("{:?} is used twice", t.key),
                );
            }
        }
        for (i, t) in self.carrier_targets.iter().enumerate() {
            check_target(v, &format!("sla_policy.carrier_targets[{i}]"), t, true);
            if !keys.insert(t.key.clone()) {
                v.add(
                    format!("sla_policy.carrier_targets[{i}].key"),
                    format!("{:?} is used twice", t.key),
                );
            }
        }
        if self.first_response.is_none()
            && self.overall_delivery.is_none()
            && self.milestones.is_empty()
            && self.carrier_targets.is_empty()
        {
            v.add(
                "sla_policy.overall_delivery",
                "a policy needs at least one target",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.revision_id.clear();
        self.revision_create_time = None;
        self.create_time = None;
        self.update_time = None;
        self.delete_time = None;
    }
}

use concierge_proto::concierge::cases::v1::{CaseLink, case_link};

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

use concierge_proto::concierge::cases::v1::{SlaClock, SlaState, sla_clock};

/// The index of SLA clocks across cases (see the 1005 migration).
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

#[cfg(test)]
mod declared_columns {
    use concierge_common::kit::Service as _;
    use concierge_common::testing::{Backend, TestDb, assert_columns_agree};
    use concierge_proto::concierge::cases::v1::{
        Calendar, Case, CaseLink, HandOffCode, Note, SlaClock, SlaPolicy,
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
    }

    concierge_common::both_backends!(
        multi_thread;
        every_filter_field_is_a_migrated_column_the_resource_writes
    );
}
