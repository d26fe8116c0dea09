//! The disputes resources as the generic store sees them: their tables,
//! their filter columns, which fields an update mask may name, and how each
//! is checked before it is written.

use concierge_common::error::Violations;
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::resource::Kind;
use concierge_common::{clock, money, names};
use concierge_proto::disputes::{
    BillingPeriod, CalendarDate, Dispute, DisputeDocument, DisputeHistoryEntry, DisputeLine,
    DisputeReason, DisputeSettings, RoundingMode, SlaCreditTier, credit_approval, dispute,
    dispute_document,
};
use concierge_proto::types::Money;

pub use concierge_common::crud::Resource;

use crate::Rules;

/// The settings are one resource with this name.
pub const SETTINGS_NAME: &str = "disputeSettings";

/// Most lines one dispute may hold.
pub const MAX_LINES: usize = 200;

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

fn max_len(v: &mut Violations, field: String, value: &str, max: usize) {
    if value.len() > max {
        v.add(field, format!("at most {max} bytes"));
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

enum_values!(STATES, dispute::State, "STATE_");
enum_values!(APPROVAL_STATES, credit_approval::State, "STATE_");
enum_values!(DOCUMENT_TYPES, dispute_document::Type, "TYPE_");

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { name, column, ty }
}

const fn text_field(name: &'static str) -> Field {
    field(name, name, FieldType::Text)
}

const CREATE_TIME: Field = field("create_time", "create_time", FieldType::Timestamp);
const UPDATE_TIME: Field = field("update_time", "update_time", FieldType::Timestamp);

pub static DISPUTES: Kind = Kind {
    resource_type: "Dispute",
    table: "disputes",
    fields: &[
        text_field("account"),
        text_field("account_manager"),
        field("state", "state", STATES),
        text_field("owner"),
        field("overdue", "overdue", FieldType::Bool),
        text_field("related_case"),
        text_field("invoice_number"),
        field("approval.state", "approval_state", APPROVAL_STATES),
        field(
            "total_disputed.currency_code",
            "total_disputed_currency_code",
            FieldType::Text,
        ),
        field(
            "total_disputed.minor_units",
            "total_disputed_minor_units",
            FieldType::Int,
        ),
        field(
            "approved_credit.minor_units",
            "approved_credit_minor_units",
            FieldType::Int,
        ),
        field("vetting_due_time", "vetting_due_time", FieldType::Timestamp),
        CREATE_TIME,
        UPDATE_TIME,
    ],
};

/// A calendar date that exists.
pub fn date(d: &CalendarDate) -> Option<jiff::civil::Date> {
    let year = i16::try_from(d.year)
        .ok()
        .filter(|y| (1970..=2199).contains(y))?;
    let month = i8::try_from(d.month).ok()?;
    let day = i8::try_from(d.day).ok()?;
    jiff::civil::Date::new(year, month, day).ok()
}

fn check_period(v: &mut Violations, field: &str, p: &Option<BillingPeriod>) {
    let Some(p) = p else { return };
    let mut ends = [None, None];
    for (i, (name, d)) in [("start_date", &p.start_date), ("end_date", &p.end_date)]
        .into_iter()
        .enumerate()
    {
        match d {
            None => v.add(format!("{field}.{name}"), "required"),
            Some(d) => match date(d) {
                Some(d) => ends[i] = Some(d),
                None => v.add(
                    format!("{field}.{name}"),
                    "not a calendar date between 1970 and 2199",
                ),
            },
        }
    }
    if let [Some(start), Some(end)] = ends
        && end < start
    {
        v.add(
            format!("{field}.end_date"),
            format!("{end} is before the start date {start}: a period cannot end before it starts"),
        );
    }
}

/// An amount that must be positive and in `currency` when that is known.
fn amount(v: &mut Violations, field: &str, m: &Option<Money>, currency: &mut Option<String>) {
    let Some(m) = m else {
        v.add(field, "required");
        return;
    };
    if let Err(concierge_common::Error::InvalidArgument(bad)) = money::check(field, m, false) {
        for b in bad {
            v.add(b.field, b.description);
        }
        return;
    }
    if m.minor_units <= 0 {
        v.add(format!("{field}.minor_units"), "must be positive");
    }
    match currency {
        Some(c) if *c != m.currency_code => v.add(
            format!("{field}.currency_code"),
            format!(
                "{} differs from {c}: every amount of a dispute is in one currency",
                m.currency_code
            ),
        ),
        Some(_) => {}
        None => *currency = Some(m.currency_code.clone()),
    }
}

fn check_line(v: &mut Violations, i: usize, l: &DisputeLine, currency: &mut Option<String>) {
    let f = |name: &str| format!("dispute.lines[{i}].{name}");
    if l.id.len() > 63
        || !l
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        v.add(f("id"), "1-63 letters, digits, '-' or '_'");
    }
    if l.charge_description.trim().is_empty() {
        v.add(f("charge_description"), "required");
    }
    max_len(v, f("charge_description"), &l.charge_description, 500);
    if !l.inventory_item.is_empty()
        && names::parse(
            &f("inventory_item"),
            &l.inventory_item,
            &["accounts", "sites", "inventoryItems"],
        )
        .is_err()
    {
        v.add(
            f("inventory_item"),
            "must be \"accounts/{account}/sites/{site}/inventoryItems/{inventory_item}\"",
        );
    }
    amount(v, &f("billed_amount"), &l.billed_amount, currency);
    amount(v, &f("disputed_amount"), &l.disputed_amount, currency);
    if let (Some(b), Some(d)) = (&l.billed_amount, &l.disputed_amount)
        && b.currency_code == d.currency_code
        && b.minor_units > 0
        && d.minor_units > b.minor_units
    {
        v.add(
            f("disputed_amount"),
            format!(
                "{} is more than the {} billed",
                money::format(d),
                money::format(b)
            ),
        );
    }
    check_period(v, &f("service_period"), &l.service_period);
    match DisputeReason::try_from(l.reason) {
        Ok(DisputeReason::Unspecified) => v.add(
            f("reason"),
            "required: OUTAGE, WRONG_RATE, UNRECOGNISED_CHARGE, BILLED_AFTER_DISCONNECT, DUPLICATE or OTHER",
        ),
        Ok(DisputeReason::Other) if l.reason_detail.trim().is_empty() => v.add(
            f("reason_detail"),
            "required when the reason is OTHER: say what is wrong with the charge",
        ),
        Ok(_) => {}
        Err(_) => v.add(f("reason"), format!("{} is not a known reason", l.reason)),
    }
    max_len(v, f("reason_detail"), &l.reason_detail, 4000);
}

/// The sum of `amounts` (all in one currency, checked before), exact; none
/// when there is nothing to sum or the sum overflows.
pub fn sum<'a>(amounts: impl Iterator<Item = &'a Money>) -> Option<Money> {
    let mut total: Option<Money> = None;
    for m in amounts {
        match &mut total {
            None => total = Some(m.clone()),
            Some(t) => t.minor_units = t.minor_units.checked_add(m.minor_units)?,
        }
    }
    total
}

impl Resource<Rules> for Dispute {
    const KIND: &'static Kind = &DISPUTES;
    const COLLECTIONS: &'static [&'static str] = &["disputes"];
    const FIELD: &'static str = "dispute";
    const UPDATABLE: &'static [&'static str] = &[
        "invoice_number",
        "invoice_period",
        "description",
        "lines",
        "contact",
        "owner",
        "related_case",
        "labels",
    ];

    concierge_common::resource_bookkeeping!();
    fn account(&self) -> String {
        self.account.clone()
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let total = self.total_disputed.clone().unwrap_or_default();
        let approved = self
            .approved_credit
            .as_ref()
            .map(|m| m.minor_units)
            .unwrap_or_default();
        vec![
            ("account_manager", text(&self.account_manager)),
            ("state", int(self.state)),
            ("owner", text(&self.owner)),
            ("overdue", int(self.overdue)),
            ("related_case", text(&self.related_case)),
            ("invoice_number", text(&self.invoice_number)),
            (
                "approval_state",
                int(self.approval.as_ref().map(|a| a.state).unwrap_or_default()),
            ),
            ("total_disputed_currency_code", text(&total.currency_code)),
            ("total_disputed_minor_units", int(total.minor_units)),
            ("approved_credit_minor_units", int(approved)),
            ("vetting_due_time", time(&self.vetting_due_time)),
        ]
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "invoice_number" => self.invoice_number = from.invoice_number.clone(),
            "invoice_period" => self.invoice_period = from.invoice_period,
            "description" => self.description = from.description.clone(),
            "lines" => {
                self.lines = from.lines.clone();
                // Decided by ProposeCredit and ApproveCredit, never sent.
                for l in &mut self.lines {
                    l.approved_amount = None;
                }
            }
            "contact" => self.contact = from.contact.clone(),
            "owner" => self.owner = from.owner.clone(),
            "related_case" => self.related_case = from.related_case.clone(),
            "labels" => self.labels = from.labels.clone(),
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        match names::parse("dispute.account", &self.account, &["accounts"]) {
            Ok(_) => {}
            Err(_) if self.account.is_empty() => {
                v.add("dispute.account", "required: \"accounts/{account}\"")
            }
            Err(_) => v.add("dispute.account", "must be \"accounts/{account}\""),
        }
        if self.invoice_number.trim().is_empty() {
            v.add("dispute.invoice_number", "required");
        }
        max_len(
            v,
            "dispute.invoice_number".into(),
            &self.invoice_number,
            100,
        );
        check_period(v, "dispute.invoice_period", &self.invoice_period);
        max_len(v, "dispute.description".into(), &self.description, 20_000);
        if self.lines.len() > MAX_LINES {
            v.add("dispute.lines", format!("at most {MAX_LINES} lines"));
        } else {
            let mut currency = None;
            let mut ids = std::collections::HashSet::new();
            for (i, l) in self.lines.iter().enumerate() {
                check_line(v, i, l, &mut currency);
                if !l.id.is_empty() && !ids.insert(l.id.as_str()) {
                    v.add(
                        format!("dispute.lines[{i}].id"),
                        format!("{:?} is the id of an earlier line", l.id),
                    );
                }
            }
        }
        if !self.contact.is_empty() {
            match names::parse("dispute.contact", &self.contact, &["accounts", "contacts"]) {
                Ok(ids) if format!("accounts/{}", ids[0]) == self.account => {}
                Ok(_) => v.add(
                    "dispute.contact",
                    "must be a contact of the dispute's account",
                ),
                Err(_) => v.add(
                    "dispute.contact",
                    "must be \"accounts/{account}/contacts/{contact}\"",
                ),
            }
        }
        if !self.owner.is_empty() && names::parse("dispute.owner", &self.owner, &["staff"]).is_err()
        {
            v.add("dispute.owner", "must be \"staff/{staff_member}\"");
        }
        if !self.related_case.is_empty()
            && names::parse("dispute.related_case", &self.related_case, &["cases"]).is_err()
        {
            v.add("dispute.related_case", "must be \"cases/{case}\"");
        }
        if self.labels.len() > 64 {
            v.add("dispute.labels", "at most 64 labels");
        }
        for (k, val) in &self.labels {
            if k.is_empty() || k.len() > 63 || val.len() > 256 {
                v.add(
                    format!("dispute.labels[{k}]"),
                    "keys are 1-63 characters, values at most 256",
                );
            }
        }
    }
    fn clear_output_only(&mut self) {
        let keep = Dispute {
            name: std::mem::take(&mut self.name),
            account: std::mem::take(&mut self.account),
            invoice_number: std::mem::take(&mut self.invoice_number),
            invoice_period: self.invoice_period.take(),
            description: std::mem::take(&mut self.description),
            lines: std::mem::take(&mut self.lines)
                .into_iter()
                .map(|mut l| {
                    l.approved_amount = None;
                    l
                })
                .collect(),
            contact: std::mem::take(&mut self.contact),
            owner: std::mem::take(&mut self.owner),
            related_case: std::mem::take(&mut self.related_case),
            labels: std::mem::take(&mut self.labels),
            etag: std::mem::take(&mut self.etag),
            ..Default::default()
        };
        *self = keep;
    }
}

pub static HISTORY: Kind = Kind {
    resource_type: "DisputeHistoryEntry",
    table: "dispute_history_entries",
    fields: &[
        text_field("actor"),
        text_field("action"),
        field("from_state", "from_state", STATES),
        field("to_state", "to_state", STATES),
        CREATE_TIME,
    ],
};

impl Resource<Rules> for DisputeHistoryEntry {
    const KIND: &'static Kind = &HISTORY;
    const COLLECTIONS: &'static [&'static str] = &["disputes", "history"];
    const FIELD: &'static str = "dispute_history_entry";
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
            ("actor", text(&self.actor)),
            ("action", text(&self.action)),
            ("from_state", int(self.from_state)),
            ("to_state", int(self.to_state)),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, _v: &mut Violations) {}
    fn clear_output_only(&mut self) {}
}

pub static DOCUMENTS: Kind = Kind {
    resource_type: "DisputeDocument",
    table: "dispute_documents",
    fields: &[
        field("type", "type", DOCUMENT_TYPES),
        text_field("media_type"),
        text_field("uploaded_by"),
        CREATE_TIME,
    ],
};

/// A media type as "type/subtype", e.g. "application/pdf".
pub fn media_type_ok(m: &str) -> bool {
    m.len() <= 255
        && m.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && !b.contains('/')
                && m.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/.+-".contains(c))
        })
}

impl Resource<Rules> for DisputeDocument {
    const KIND: &'static Kind = &DOCUMENTS;
    const COLLECTIONS: &'static [&'static str] = &["disputes", "documents"];
    const FIELD: &'static str = "dispute_document";
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
    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("type", int(self.r#type)),
            ("media_type", text(&self.media_type)),
            ("uploaded_by", text(&self.uploaded_by)),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        match dispute_document::Type::try_from(self.r#type) {
            Ok(dispute_document::Type::Unspecified) => v.add(
                "dispute_document.type",
                "required: INVOICE, OUTAGE_REPORT, CONTRACT, CORRESPONDENCE, SCREENSHOT, CALCULATION, CREDIT_MEMO or OTHER",
            ),
            Ok(_) => {}
            Err(_) => v.add(
                "dispute_document.type",
                format!("{} is not a document type", self.r#type),
            ),
        }
        if self.display_name.trim().is_empty() {
            v.add("dispute_document.display_name", "required");
        }
        max_len(
            v,
            "dispute_document.display_name".into(),
            &self.display_name,
            255,
        );
        max_len(
            v,
            "dispute_document.description".into(),
            &self.description,
            4000,
        );
        if !media_type_ok(&self.media_type) {
            v.add(
                "dispute_document.media_type",
                format!(
                    "{:?} is not a media type such as \"application/pdf\"",
                    self.media_type
                ),
            );
        }
        if self.size_bytes <= 0 {
            v.add(
                "dispute_document.size_bytes",
                "required: the size of the content to come, in bytes",
            );
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            v.add(
                "dispute_document.sha256",
                "required: the SHA-256 of the content, 64 lowercase hex digits",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.uploaded_by.clear();
        self.create_time = None;
    }
}

pub static SETTINGS: Kind = Kind {
    resource_type: "DisputeSettings",
    table: "dispute_settings",
    fields: &[],
};

/// The settings before anyone changed them: approval above 1,000.00 in the
/// usual currencies, five days to vet (wall-clock until a calendar is
/// set), 25 MiB documents, the common SLA credit bands, half-even rounding.
pub fn default_settings() -> DisputeSettings {
    let hours = |h: i64| {
        Some(prost_types::Duration {
            seconds: h * 3600,
            nanos: 0,
        })
    };
    let tier = |min: i64, max: Option<i64>, bp: i32| SlaCreditTier {
        min_outage: hours(min),
        max_outage: max.and_then(hours),
        credit_basis_points: bp,
    };
    DisputeSettings {
        name: SETTINGS_NAME.into(),
        approval_thresholds: ["USD", "EUR", "GBP"]
            .into_iter()
            .map(|c| Money {
                currency_code: c.into(),
                minor_units: 100_000,
            })
            .collect(),
        vetting_target: hours(120),
        calendar: String::new(),
        max_document_size_bytes: 25 * 1024 * 1024,
        allowed_media_types: Vec::new(),
        sla_credit_tiers: vec![
            tier(1, Some(4), 500),
            tier(4, Some(8), 1_000),
            tier(8, Some(12), 2_500),
            tier(12, Some(24), 5_000),
            tier(24, None, 10_000),
        ],
        default_rounding_mode: RoundingMode::HalfEven as i32,
        ..Default::default()
    }
}

/// The largest document size the settings may allow: 1 GiB.
pub const MAX_DOCUMENT_LIMIT: i64 = 1024 * 1024 * 1024;

impl Resource<Rules> for DisputeSettings {
    const KIND: &'static Kind = &SETTINGS;
    const COLLECTIONS: &'static [&'static str] = &["disputeSettings"];
    const FIELD: &'static str = "dispute_settings";
    const UPDATABLE: &'static [&'static str] = &[
        "approval_thresholds",
        "vetting_target",
        "calendar",
        "max_document_size_bytes",
        "allowed_media_types",
        "sla_credit_tiers",
        "default_rounding_mode",
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
        self.update_time = clock::micros_to_proto(update_time);
        self.etag = etag;
    }
    fn columns(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "approval_thresholds" => self.approval_thresholds = from.approval_thresholds.clone(),
            "vetting_target" => self.vetting_target = from.vetting_target,
            "calendar" => self.calendar = from.calendar.clone(),
            "max_document_size_bytes" => {
                self.max_document_size_bytes = from.max_document_size_bytes
            }
            "allowed_media_types" => self.allowed_media_types = from.allowed_media_types.clone(),
            "sla_credit_tiers" => self.sla_credit_tiers = from.sla_credit_tiers.clone(),
            "default_rounding_mode" => self.default_rounding_mode = from.default_rounding_mode,
            _ => {}
        }
    }
    fn check(&self, v: &mut Violations) {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.approval_thresholds.iter().enumerate() {
            let f = format!("dispute_settings.approval_thresholds[{i}]");
            if let Err(concierge_common::Error::InvalidArgument(bad)) = money::check(&f, t, false) {
                for b in bad {
                    v.add(b.field, b.description);
                }
            }
            if !seen.insert(t.currency_code.as_str()) {
                v.add(
                    format!("{f}.currency_code"),
                    format!("{} has a threshold already", t.currency_code),
                );
            }
        }
        match concierge_common::bounded::Duration::required(
            "dispute_settings.vetting_target",
            &self.vetting_target,
        ) {
            Ok(d) if d.is_positive() => {}
            Ok(_) => v.add("dispute_settings.vetting_target", "must be positive"),
            Err(concierge_common::Error::InvalidArgument(bad)) => {
                for b in bad {
                    v.add(b.field, b.description);
                }
            }
            Err(e) => v.add("dispute_settings.vetting_target", e.to_string()),
        }
        if !self.calendar.is_empty()
            && names::parse("dispute_settings.calendar", &self.calendar, &["calendars"]).is_err()
        {
            v.add(
                "dispute_settings.calendar",
                "must be \"calendars/{calendar}\" (a cases service calendar), or empty for wall-clock time",
            );
        }
        if !(1..=MAX_DOCUMENT_LIMIT).contains(&self.max_document_size_bytes) {
            v.add(
                "dispute_settings.max_document_size_bytes",
                format!("must be between 1 and {MAX_DOCUMENT_LIMIT} (1 GiB)"),
            );
        }
        if self.allowed_media_types.len() > 100 {
            v.add("dispute_settings.allowed_media_types", "at most 100");
        }
        for (i, m) in self.allowed_media_types.iter().enumerate() {
            let ok = m.len() <= 255
                && m.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && m.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "/.+-".contains(c))
                });
            if !ok {
                v.add(
                    format!("dispute_settings.allowed_media_types[{i}]"),
                    format!("{m:?} is not a media type such as \"application/pdf\""),
                );
            }
        }
        crate::credit::check_tiers(
            v,
            "dispute_settings.sla_credit_tiers",
            &self.sla_credit_tiers,
        );
        if RoundingMode::try_from(self.default_rounding_mode).is_err() {
            v.add(
                "dispute_settings.default_rounding_mode",
                format!("{} is not a rounding mode", self.default_rounding_mode),
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.update_time = None;
    }
}
