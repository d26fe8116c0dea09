//! The customers resources as the generic store sees them: their table,
//! their filter columns, which fields an update mask may name, and how each
//! is checked before it is written.

use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_common::{clock, money, names};
use concierge_proto::customers::{
    Account, Contact, ContactRole, Direction, FollowUp, Interaction, InventoryItem, InventoryKind,
    InventoryRole, Site, StaffMember, StaffRole, Tier, account, follow_up, inventory_item,
};
use concierge_proto::types::ContactChannel;

pub use concierge_common::crud::Resource;

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

fn int(v: impl Into<i64>) -> Value {
    Value::Int(v.into())
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    Value::Int(
        t.as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .unwrap_or(0),
    )
}

fn required(v: &mut Violations, field: String, value: &str) {
    if value.trim().is_empty() {
        v.add(field, "required");
    }
}

fn max_len(v: &mut Violations, field: String, value: &str, max: usize) {
    if value.chars().count() > max {
        v.add(field, format!("at most {max} characters"));
    }
}

fn time_zone(v: &mut Violations, field: String, value: &str) {
    if value.is_empty() {
        v.add(
            field,
            "required: an IANA time zone such as \"America/New_York\"",
        );
    } else if jiff::tz::TimeZone::get(value).is_err() {
        v.add(field, format!("{value:?} is not an IANA time zone"));
    }
}

fn staff_ref(v: &mut Violations, field: String, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            v.add(field, "required: a staff member, \"staff/{staff_member}\"");
        }
    } else if names::parse(&field, value, &["staff"]).is_err() {
        v.add(
            field,
            format!("{value:?} is not a staff member name, \"staff/{{staff_member}}\""),
        );
    }
}

fn case_ref(v: &mut Violations, field: String, value: &str) {
    if !value.is_empty() && names::parse(&field, value, &["cases"]).is_err() {
        v.add(
            field,
            format!("{value:?} is not a case name, \"cases/{{case}}\""),
        );
    }
}

fn language(v: &mut Violations, field: String, value: &str) {
    let ok = value.is_empty()
        || (value.len() <= 35
            && value.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            }));
    if !ok {
        v.add(
            field,
            format!("{value:?} is not a BCP-47 language tag such as \"en\" or \"tr\""),
        );
    }
}

fn enum_set<E: TryFrom<i32>>(v: &mut Violations, field: String, value: i32, required: bool) {
    if E::try_from(value).is_err() {
        v.add(field, format!("{value} is not a known value"));
    } else if required && value == 0 {
        v.add(field, "required");
    }
}

macro_rules! enum_values {
    ($name:ident, $ty:ty, $prefix:literal) => {
        const $name: FieldType = FieldType::Enum {
            parse: |s| <$ty>::from_str_name(s).map(|v| v as i32),
            prefix: $prefix,
        };
    };
}

enum_values!(TIERS, Tier, "TIER_");
enum_values!(ACCOUNT_STATES, account::State, "STATE_");
enum_values!(INVENTORY_KINDS, InventoryKind, "INVENTORY_KIND_");
enum_values!(INVENTORY_ROLES, InventoryRole, "INVENTORY_ROLE_");
enum_values!(INVENTORY_STATES, inventory_item::State, "STATE_");
enum_values!(CHANNELS, ContactChannel, "CONTACT_CHANNEL_");
enum_values!(DIRECTIONS, Direction, "DIRECTION_");
enum_values!(FOLLOW_UP_STATES, follow_up::State, "STATE_");
enum_values!(STAFF_ROLES, StaffRole, "STAFF_ROLE_");

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
const fn text_field(name: &'static str) -> Field {
    Field {
        name,
        column: name,
        ty: FieldType::Text,
    }
}

pub static ACCOUNTS: Kind = Kind {
    resource_type: "Account",
    table: "accounts",
    fields: &[
        text_field("display_name"),
        Field {
            name: "tier",
            column: "tier",
            ty: TIERS,
        },
        text_field("account_manager"),
        text_field("billing_account"),
        text_field("time_zone"),
        Field {
            name: "state",
            column: "state",
            ty: ACCOUNT_STATES,
        },
        Field {
            name: "mrc.currency_code",
            column: "mrc_currency_code",
            ty: FieldType::Text,
        },
        Field {
            name: "mrc.minor_units",
            column: "mrc_minor_units",
            ty: FieldType::Int,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for Account {
    const KIND: &'static Kind = &ACCOUNTS;
    const COLLECTIONS: &'static [&'static str] = &["accounts"];
    const FIELD: &'static str = "account";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "tier",
        "account_manager",
        "mrc",
        "billing_account",
        "time_zone",
        "language_code",
        "labels",
    ];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let mrc = self.mrc.clone().unwrap_or_default();
        vec![
            ("display_name", text(&self.display_name)),
            ("tier", int(self.tier)),
            ("account_manager", text(&self.account_manager)),
            ("billing_account", text(&self.billing_account)),
            ("time_zone", text(&self.time_zone)),
            ("state", int(self.state)),
            ("mrc_currency_code", text(&mrc.currency_code)),
            ("mrc_minor_units", int(mrc.minor_units)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "tier" => self.tier = from.tier,
            "account_manager" => self.account_manager = from.account_manager.clone(),
            "mrc" => self.mrc = from.mrc.clone(),
            "billing_account" => self.billing_account = from.billing_account.clone(),
            "time_zone" => self.time_zone = from.time_zone.clone(),
            "language_code" => self.language_code = from.language_code.clone(),
            "labels" => self.labels = from.labels.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        required(v, "account.display_name".into(), &self.display_name);
        max_len(v, "account.display_name".into(), &self.display_name, 200);
        enum_set::<Tier>(v, "account.tier".into(), self.tier, true);
        staff_ref(
            v,
            "account.account_manager".into(),
            &self.account_manager,
            false,
        );
        if let Some(mrc) = &self.mrc {
            v.check(money::check("account.mrc", mrc, false));
        }
        max_len(
            v,
            "account.billing_account".into(),
            &self.billing_account,
            100,
        );
        time_zone(v, "account.time_zone".into(), &self.time_zone);
        language(v, "account.language_code".into(), &self.language_code);
        if self.labels.len() > 64 {
            v.add("account.labels", "at most 64 labels");
        }
        for (k, val) in &self.labels {
            if k.is_empty() || k.len() > 63 || val.len() > 256 {
                v.add(
                    format!("account.labels[{k}]"),
                    "keys are 1-63 characters, values at most 256",
                );
            }
        }
    }
    fn clear_output_only(&mut self) {
        self.state = 0;
        self.create_time = None;
        self.update_time = None;
        self.delete_time = None;
    }
}

pub static CONTACTS: Kind = Kind {
    resource_type: "Contact",
    table: "contacts",
    fields: &[
        text_field("display_name"),
        text_field("email"),
        Field {
            name: "client_delegate",
            column: "client_delegate",
            ty: FieldType::Bool,
        },
        text_field("language_code"),
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for Contact {
    const KIND: &'static Kind = &CONTACTS;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "contacts"];
    const FIELD: &'static str = "contact";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "email",
        "phone",
        "roles",
        "client_delegate",
        "preferred_channel",
        "language_code",
    ];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", text(&self.display_name)),
            ("email", text(&self.email.to_ascii_lowercase())),
            ("client_delegate", int(self.client_delegate)),
            ("language_code", text(&self.language_code)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "email" => self.email = from.email.clone(),
            "phone" => self.phone = from.phone.clone(),
            "roles" => self.roles = from.roles.clone(),
            "client_delegate" => self.client_delegate = from.client_delegate,
            "preferred_channel" => self.preferred_channel = from.preferred_channel,
            "language_code" => self.language_code = from.language_code.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        required(v, "contact.display_name".into(), &self.display_name);
        max_len(v, "contact.display_name".into(), &self.display_name, 200);
        if !self.email.is_empty() {
            let ok = self.email.len() <= 254
                && self.email.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
                })
                && !self.email.chars().any(char::is_whitespace);
            if !ok {
                v.add(
                    "contact.email",
                    format!("{:?} is not an e-mail address", self.email),
                );
            }
        }
        if !self.phone.is_empty() {
            let digits = self.phone.strip_prefix('+').unwrap_or("");
            if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
                v.add(
                    "contact.phone",
                    format!(
                        "{:?} is not an E.164 number such as \"+905551234567\"",
                        self.phone
                    ),
                );
            }
        }
        if self.email.is_empty() && self.phone.is_empty() {
            v.add(
                "contact.email",
                "a contact needs an e-mail address or a phone number",
            );
        }
        if self.roles.is_empty() {
            v.add("contact.roles", "at least one role");
        }
        for (i, r) in self.roles.iter().enumerate() {
            enum_set::<ContactRole>(v, format!("contact.roles[{i}]"), *r, true);
        }
        enum_set::<ContactChannel>(
            v,
            "contact.preferred_channel".into(),
            self.preferred_channel,
            false,
        );
        language(v, "contact.language_code".into(), &self.language_code);
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

pub static SITES: Kind = Kind {
    resource_type: "Site",
    table: "sites",
    fields: &[
        text_field("display_name"),
        text_field("time_zone"),
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for Site {
    const KIND: &'static Kind = &SITES;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "sites"];
    const FIELD: &'static str = "site";
    const UPDATABLE: &'static [&'static str] = &["display_name", "address", "time_zone"];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", text(&self.display_name)),
            ("time_zone", text(&self.time_zone)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "address" => self.address = from.address.clone(),
            "time_zone" => self.time_zone = from.time_zone.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        required(v, "site.display_name".into(), &self.display_name);
        max_len(v, "site.display_name".into(), &self.display_name, 200);
        time_zone(v, "site.time_zone".into(), &self.time_zone);
        if let Some(a) = &self.address {
            if !a.region_code.is_empty()
                && (a.region_code.len() != 2
                    || !a.region_code.chars().all(|c| c.is_ascii_uppercase()))
            {
                v.add(
                    "site.address.region_code",
                    format!(
                        "{:?} is not a CLDR region code such as \"US\"",
                        a.region_code
                    ),
                );
            }
            if a.address_lines.len() > 5 {
                v.add("site.address.address_lines", "at most 5 lines");
            }
        }
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

pub static INVENTORY_ITEMS: Kind = Kind {
    resource_type: "InventoryItem",
    table: "inventory_items",
    fields: &[
        Field {
            name: "kind",
            column: "kind",
            ty: INVENTORY_KINDS,
        },
        text_field("product"),
        Field {
            name: "role",
            column: "role",
            ty: INVENTORY_ROLES,
        },
        text_field("carrier"),
        text_field("circuit_id"),
        Field {
            name: "monitored",
            column: "monitored",
            ty: FieldType::Bool,
        },
        Field {
            name: "state",
            column: "state",
            ty: INVENTORY_STATES,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for InventoryItem {
    const KIND: &'static Kind = &INVENTORY_ITEMS;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "sites", "inventoryItems"];
    const FIELD: &'static str = "inventory_item";
    const UPDATABLE: &'static [&'static str] = &[
        "kind",
        "product",
        "role",
        "carrier",
        "circuit_id",
        "bandwidth_kbps",
        "monitored",
        "monitoring_tool",
        "mrc",
        "hardware_model",
        "serial_number",
        "state",
    ];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("kind", int(self.kind)),
            ("product", text(&self.product)),
            ("role", int(self.role)),
            ("carrier", text(&self.carrier)),
            ("circuit_id", text(&self.circuit_id)),
            ("monitored", int(self.monitored)),
            ("state", int(self.state)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "kind" => self.kind = from.kind,
            "product" => self.product = from.product.clone(),
            "role" => self.role = from.role,
            "carrier" => self.carrier = from.carrier.clone(),
            "circuit_id" => self.circuit_id = from.circuit_id.clone(),
            "bandwidth_kbps" => self.bandwidth_kbps = from.bandwidth_kbps,
            "monitored" => self.monitored = from.monitored,
            "monitoring_tool" => self.monitoring_tool = from.monitoring_tool.clone(),
            "mrc" => self.mrc = from.mrc.clone(),
            "hardware_model" => self.hardware_model = from.hardware_model.clone(),
            "serial_number" => self.serial_number = from.serial_number.clone(),
            "state" => self.state = from.state,
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        enum_set::<InventoryKind>(v, "inventory_item.kind".into(), self.kind, true);
        required(v, "inventory_item.product".into(), &self.product);
        max_len(v, "inventory_item.product".into(), &self.product, 200);
        enum_set::<InventoryRole>(v, "inventory_item.role".into(), self.role, false);
        enum_set::<inventory_item::State>(v, "inventory_item.state".into(), self.state, false);
        if self.bandwidth_kbps < 0 {
            v.add("inventory_item.bandwidth_kbps", "must not be negative");
        }
        if self.kind == InventoryKind::Hardware as i32 && self.bandwidth_kbps != 0 {
            v.add(
                "inventory_item.bandwidth_kbps",
                "hardware has no bandwidth of its own",
            );
        }
        if self.monitored && self.monitoring_tool.trim().is_empty() {
            v.add(
                "inventory_item.monitoring_tool",
                "required when the item is monitored",
            );
        }
        if let Some(mrc) = &self.mrc {
            v.check(money::check("inventory_item.mrc", mrc, false));
        }
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

pub static INTERACTIONS: Kind = Kind {
    resource_type: "Interaction",
    table: "interactions",
    fields: &[
        Field {
            name: "channel",
            column: "channel",
            ty: CHANNELS,
        },
        Field {
            name: "direction",
            column: "direction",
            ty: DIRECTIONS,
        },
        Field {
            name: "occur_time",
            column: "occur_time",
            ty: FieldType::Timestamp,
        },
        text_field("agent"),
        text_field("contact"),
        Field {
            name: "case",
            column: "case_name",
            ty: FieldType::Text,
        },
        CREATE_TIME,
    ],
};

impl Resource<crate::Rules> for Interaction {
    const KIND: &'static Kind = &INTERACTIONS;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "interactions"];
    const FIELD: &'static str = "interaction";
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
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("channel", int(self.channel)),
            ("direction", int(self.direction)),
            ("occur_time", time(&self.occur_time)),
            ("agent", text(&self.agent)),
            ("contact", text(&self.contact)),
            ("case_name", text(&self.case)),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        enum_set::<ContactChannel>(v, "interaction.channel".into(), self.channel, true);
        enum_set::<Direction>(v, "interaction.direction".into(), self.direction, true);
        if self
            .occur_time
            .as_ref()
            .and_then(clock::from_proto)
            .is_none()
        {
            v.add(
                "interaction.occur_time",
                "required: when the interaction happened (UTC)",
            );
        }
        required(v, "interaction.summary".into(), &self.summary);
        max_len(v, "interaction.summary".into(), &self.summary, 10_000);
        staff_ref(v, "interaction.agent".into(), &self.agent, false);
        case_ref(v, "interaction.case".into(), &self.case);
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
    }
}

pub static FOLLOW_UPS: Kind = Kind {
    resource_type: "FollowUp",
    table: "follow_ups",
    fields: &[
        Field {
            name: "state",
            column: "state",
            ty: FOLLOW_UP_STATES,
        },
        text_field("owner"),
        Field {
            name: "due_time",
            column: "due_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "case",
            column: "case_name",
            ty: FieldType::Text,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for FollowUp {
    const KIND: &'static Kind = &FOLLOW_UPS;
    const COLLECTIONS: &'static [&'static str] = &["accounts", "followUps"];
    const FIELD: &'static str = "follow_up";
    const UPDATABLE: &'static [&'static str] = &["summary", "due_time", "owner", "case", "contact"];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("state", int(self.state)),
            ("owner", text(&self.owner)),
            ("due_time", time(&self.due_time)),
            ("case_name", text(&self.case)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "summary" => self.summary = from.summary.clone(),
            "due_time" => self.due_time = from.due_time,
            "owner" => self.owner = from.owner.clone(),
            "case" => self.case = from.case.clone(),
            "contact" => self.contact = from.contact.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        required(v, "follow_up.summary".into(), &self.summary);
        max_len(v, "follow_up.summary".into(), &self.summary, 2_000);
        if self.due_time.as_ref().and_then(clock::from_proto).is_none() {
            v.add(
                "follow_up.due_time",
                "required: when the follow-up is due (UTC)",
            );
        }
        staff_ref(v, "follow_up.owner".into(), &self.owner, true);
        case_ref(v, "follow_up.case".into(), &self.case);
        if !self.contact.is_empty()
            && names::parse(
                "follow_up.contact",
                &self.contact,
                &["accounts", "contacts"],
            )
            .is_err()
        {
            v.add(
                "follow_up.contact",
                "not a contact name, \"accounts/{account}/contacts/{contact}\"",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.state = 0;
        self.create_time = None;
        self.update_time = None;
        self.close_time = None;
    }
}

pub static STAFF_MEMBERS: Kind = Kind {
    resource_type: "StaffMember",
    table: "staff_members",
    fields: &[
        text_field("display_name"),
        text_field("email"),
        Field {
            name: "role",
            column: "role",
            ty: STAFF_ROLES,
        },
        text_field("manager"),
        text_field("team"),
        Field {
            name: "active",
            column: "active",
            ty: FieldType::Bool,
        },
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

impl Resource<crate::Rules> for StaffMember {
    const KIND: &'static Kind = &STAFF_MEMBERS;
    const COLLECTIONS: &'static [&'static str] = &["staff"];
    const FIELD: &'static str = "staff_member";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "email",
        "role",
        "manager",
        "team",
        "active",
        "language_code",
    ];

    concierge_common::resource_bookkeeping!();
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", text(&self.display_name)),
            ("email", text(&self.email.to_ascii_lowercase())),
            ("role", int(self.role)),
            ("manager", text(&self.manager)),
            ("team", text(&self.team)),
            ("active", int(self.active)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "email" => self.email = from.email.clone(),
            "role" => self.role = from.role,
            "manager" => self.manager = from.manager.clone(),
            "team" => self.team = from.team.clone(),
            "active" => self.active = from.active,
            "language_code" => self.language_code = from.language_code.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        required(v, "staff_member.display_name".into(), &self.display_name);
        language(v, "staff_member.language_code".into(), &self.language_code);
        if !self.email.contains('@') {
            v.add("staff_member.email", "required: an e-mail address");
        }
        enum_set::<StaffRole>(v, "staff_member.role".into(), self.role, true);
        staff_ref(v, "staff_member.manager".into(), &self.manager, false);
        if !self.manager.is_empty() && self.manager == self.name {
            v.add(
                "staff_member.manager",
                "a staff member cannot be its own manager",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

#[cfg(test)]
mod declared_columns {
    use concierge_common::kit::Service as _;
    use concierge_common::testing::{Backend, TestDb, assert_columns_agree};
    use concierge_proto::customers::{
        Account, Contact, FollowUp, Interaction, InventoryItem, Site, StaffMember,
    };

    use crate::{Customers, Rules};

    /// A filterable column is declared in the migrations, the kind's fields
    /// and the resource's columns: they agree, for every kind, on both
    /// databases.
    async fn every_filter_field_is_a_migrated_column_the_resource_writes(backend: Backend) {
        let Some(db) = TestDb::new(backend, "declared_columns").await else {
            return;
        };
        Customers::migrations().apply(&db.db).await.unwrap();
        assert_columns_agree::<Account, Rules>(&db.db).await;
        assert_columns_agree::<Contact, Rules>(&db.db).await;
        assert_columns_agree::<Site, Rules>(&db.db).await;
        assert_columns_agree::<InventoryItem, Rules>(&db.db).await;
        assert_columns_agree::<Interaction, Rules>(&db.db).await;
        assert_columns_agree::<FollowUp, Rules>(&db.db).await;
        assert_columns_agree::<StaffMember, Rules>(&db.db).await;
    }

    concierge_common::both_backends!(
        multi_thread;
        every_filter_field_is_a_migrated_column_the_resource_writes
    );
}
