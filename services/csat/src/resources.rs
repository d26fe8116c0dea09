//! The CSAT resources on the kit's store: survey templates, survey
//! triggers and surveys, their filter columns, who may do what with them,
//! and what goes with each write.
//!
//! | role                  | read                          | write |
//! |-----------------------|-------------------------------|-------|
//! | client                | nothing (its contacts answer by link, without a login) | nothing |
//! | agent, account manager| templates, triggers, surveys  | send a survey by hand, withdraw one |
//! | manager, admin        | as staff                      | and templates and triggers |
//!
//! A survey's response token is never in the resource: only its SHA-256 is
//! stored, in a column of its own.

use concierge_common::clock;
use concierge_common::crud::{Authorize, Ctx, Lifecycle, Resource};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::filter::{Field, FieldType, Value};
use concierge_common::principal::{Principal, Role};
use concierge_common::resource::Kind;
use concierge_common::storage::Conn;
use concierge_common::{on_conn, timers};
use concierge_proto::concierge::cases::v1::CaseType;
use concierge_proto::csat::{
    Survey, SurveyKind, SurveyTemplate, SurveyTrigger, survey, survey_trigger,
};
use concierge_proto::events::Visibility;
use jiff::SignedDuration;

use crate::Rules;

/// A trigger's delay when it sets none: at once.
pub const DEFAULT_DELAY: SignedDuration = SignedDuration::ZERO;
/// How long a response link works when the trigger sets no window.
pub const DEFAULT_RESPONSE_WINDOW: SignedDuration = SignedDuration::from_hours(14 * 24);
/// The longest delay and response window a trigger may set.
const MAX_WAIT: SignedDuration = SignedDuration::from_hours(90 * 24);
/// The shortest response window: a link must survive a night.
const MIN_RESPONSE_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// The longest suppression a trigger may set.
pub const MAX_SUPPRESSION_DAYS: i32 = 365;
const MAX_CASE_TYPES: usize = 20;

const KINDS: FieldType = FieldType::Enum {
    parse: |s| SurveyKind::from_str_name(s).map(|v| v as i32),
    prefix: "SURVEY_KIND_",
};
const EVENTS: FieldType = FieldType::Enum {
    parse: |s| survey_trigger::Event::from_str_name(s).map(|v| v as i32),
    prefix: "EVENT_",
};
const STATES: FieldType = FieldType::Enum {
    parse: |s| survey::State::from_str_name(s).map(|v| v as i32),
    prefix: "STATE_",
};
const CASE_TYPES: FieldType = FieldType::Enum {
    parse: |s| CaseType::from_str_name(s).map(|v| v as i32),
    prefix: "CASE_TYPE_",
};

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { name, column, ty }
}

pub static TEMPLATES: Kind = Kind {
    resource_type: "SurveyTemplate",
    table: "survey_templates",
    fields: &[
        field("display_name", "display_name", FieldType::Text),
        field("kind", "kind", KINDS),
    ],
};

pub static TRIGGERS: Kind = Kind {
    resource_type: "SurveyTrigger",
    table: "survey_triggers",
    fields: &[
        field("display_name", "display_name", FieldType::Text),
        field("event", "event", EVENTS),
        field("survey_template", "survey_template", FieldType::Text),
        field("enabled", "enabled", FieldType::Bool),
    ],
};

pub static SURVEYS: Kind = Kind {
    resource_type: "Survey",
    table: "surveys",
    fields: &[
        field("account", "account", FieldType::Text),
        field("account_manager", "account_manager", FieldType::Text),
        field("contact", "contact", FieldType::Text),
        field("case", "case_name", FieldType::Text),
        field("case_type", "case_type", CASE_TYPES),
        field("kind", "kind", KINDS),
        field("state", "state", STATES),
        field("detractor", "detractor", FieldType::Bool),
        field("survey_trigger", "survey_trigger", FieldType::Text),
        field("send_time", "send_time", FieldType::Timestamp),
        field("response.submit_time", "submit_time", FieldType::Timestamp),
        field("response.score", "score", FieldType::Int),
        field("create_time", "create_time", FieldType::Timestamp),
    ],
};

pub(crate) fn staff_reads(p: &Principal) -> Result<()> {
    if p.role == Role::Client {
        return Err(Error::PermissionDenied(
            "surveys and their settings are internal to the company; a contact answers through the link in the e-mail".into(),
        ));
    }
    Ok(())
}

pub(crate) fn managers_write(p: &Principal, what: &str) -> Result<()> {
    match p.role {
        Role::Manager | Role::Admin => Ok(()),
        _ => Err(Error::PermissionDenied(format!(
            "{what} are set by managers and admins"
        ))),
    }
}

fn display_name(field: &str, value: &str, v: &mut Violations) {
    if value.trim().is_empty() || value.chars().count() > 200 {
        v.add(field, "required: 1 to 200 characters");
    }
}

/// A duration field within `min..=MAX_WAIT`, or unset.
fn wait(field: &str, d: &Option<prost_types::Duration>, min: SignedDuration, v: &mut Violations) {
    let Some(d) = d else { return };
    match concierge_common::bounded::Duration::try_from(d) {
        Ok(d) if d.get() >= min && d.get() <= MAX_WAIT => {}
        _ => v.add(field, format!("between {min:#} and {MAX_WAIT:#}, or unset")),
    }
}

/// A trigger's duration, or its default when unset.
pub fn duration_or(d: &Option<prost_types::Duration>, default: SignedDuration) -> SignedDuration {
    d.as_ref()
        .and_then(|d| concierge_common::bounded::Duration::try_from(d).ok())
        .map(concierge_common::bounded::Duration::get)
        .unwrap_or(default)
}

impl Resource<Rules> for SurveyTemplate {
    const KIND: &'static Kind = &TEMPLATES;
    const COLLECTIONS: &'static [&'static str] = &["surveyTemplates"];
    const FIELD: &'static str = "survey_template";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "texts",
        "default_language_code",
        "comment_enabled",
    ];

    concierge_common::resource_bookkeeping!();

    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            ("kind", Value::Int(i64::from(self.kind))),
        ]
    }

    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "texts" => self.texts = from.texts.clone(),
            "default_language_code" => {
                self.default_language_code = from.default_language_code.clone()
            }
            "comment_enabled" => self.comment_enabled = from.comment_enabled,
            _ => {}
        }
    }

    fn check(&self, v: &mut Violations) {
        display_name("survey_template.display_name", &self.display_name, v);
        let kind = SurveyKind::try_from(self.kind).unwrap_or(SurveyKind::Unspecified);
        if kind == SurveyKind::Unspecified {
            v.add(
                "survey_template.kind",
                "required: SURVEY_KIND_CSAT_1_5, SURVEY_KIND_NPS_0_10 or SURVEY_KIND_CES_1_7",
            );
        }
        crate::texts::check_template(self, v);
    }

    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

impl Authorize<SurveyTemplate> for Rules {
    type Facts = ();
    fn visibility(&self, _t: &SurveyTemplate) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        managers_write(p, "survey templates")
    }
    fn may_write(&self, p: &Principal, _t: &SurveyTemplate, _f: &()) -> Result<()> {
        managers_write(p, "survey templates")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_reads(p).map(|_| None)
    }
}

impl Lifecycle<SurveyTemplate> for Rules {
    /// A template a trigger sends cannot go.
    async fn check_delete(&self, conn: &mut Conn<'_>, t: &SurveyTemplate) -> Result<()> {
        let user: Option<String> = on_conn!(conn, c => sqlx::query_scalar(
            "SELECT name FROM survey_triggers WHERE survey_template = $1 ORDER BY name LIMIT 1",
        )
        .bind(&t.name)
        .fetch_optional(&mut **c)
        .await?);
        if let Some(trigger) = user {
            return Err(Error::FailedPrecondition {
                reason: Reason::SurveyTemplateInUse,
                subject: t.name.clone(),
                description: format!(
                    "{trigger} sends {}: delete the trigger or point it at another template first",
                    t.name
                ),
            });
        }
        Ok(())
    }
}

impl Resource<Rules> for SurveyTrigger {
    const KIND: &'static Kind = &TRIGGERS;
    const COLLECTIONS: &'static [&'static str] = &["surveyTriggers"];
    const FIELD: &'static str = "survey_trigger";
    const UPDATABLE: &'static [&'static str] = &[
        "display_name",
        "event",
        "case_types",
        "survey_template",
        "delay",
        "suppression_days",
        "response_window",
        "enabled",
    ];

    concierge_common::resource_bookkeeping!();

    fn columns(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("display_name", Value::Text(self.display_name.clone())),
            ("event", Value::Int(i64::from(self.event))),
            ("survey_template", Value::Text(self.survey_template.clone())),
            ("enabled", Value::Int(i64::from(self.enabled))),
        ]
    }

    fn copy_field(&mut self, from: &Self, path: &str) {
        match path {
            "display_name" => self.display_name = from.display_name.clone(),
            "event" => self.event = from.event,
            "case_types" => self.case_types = from.case_types.clone(),
            "survey_template" => self.survey_template = from.survey_template.clone(),
            "delay" => self.delay = from.delay,
            "suppression_days" => self.suppression_days = from.suppression_days,
            "response_window" => self.response_window = from.response_window,
            "enabled" => self.enabled = from.enabled,
            _ => {}
        }
    }

    fn check(&self, v: &mut Violations) {
        display_name("survey_trigger.display_name", &self.display_name, v);
        let event = survey_trigger::Event::try_from(self.event)
            .unwrap_or(survey_trigger::Event::Unspecified);
        if event == survey_trigger::Event::Unspecified {
            v.add(
                "survey_trigger.event",
                "required: EVENT_CASE_RESOLVED or EVENT_CASE_CLOSED",
            );
        }
        if self.case_types.len() > MAX_CASE_TYPES {
            v.add(
                "survey_trigger.case_types",
                format!("at most {MAX_CASE_TYPES}; empty for every type"),
            );
        }
        for (i, t) in self.case_types.iter().enumerate().take(MAX_CASE_TYPES) {
            if CaseType::try_from(*t).unwrap_or(CaseType::Unspecified) == CaseType::Unspecified {
                v.add(format!("survey_trigger.case_types[{i}]"), "a case type");
            }
        }
        if concierge_common::names::parse(
            "survey_trigger.survey_template",
            &self.survey_template,
            &["surveyTemplates"],
        )
        .is_err()
        {
            v.add(
                "survey_trigger.survey_template",
                "required: a template, \"surveyTemplates/{survey_template}\"",
            );
        }
        wait("survey_trigger.delay", &self.delay, SignedDuration::ZERO, v);
        wait(
            "survey_trigger.response_window",
            &self.response_window,
            MIN_RESPONSE_WINDOW,
            v,
        );
        if !(0..=MAX_SUPPRESSION_DAYS).contains(&self.suppression_days) {
            v.add(
                "survey_trigger.suppression_days",
                format!("0 (no suppression) to {MAX_SUPPRESSION_DAYS}"),
            );
        }
    }

    fn clear_output_only(&mut self) {
        self.create_time = None;
        self.update_time = None;
    }
}

impl Authorize<SurveyTrigger> for Rules {
    type Facts = ();
    fn visibility(&self, _t: &SurveyTrigger) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        managers_write(p, "survey triggers")
    }
    fn may_write(&self, p: &Principal, _t: &SurveyTrigger, _f: &()) -> Result<()> {
        managers_write(p, "survey triggers")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_reads(p).map(|_| None)
    }
}

impl Lifecycle<SurveyTrigger> for Rules {
    /// The template it sends exists.
    async fn check_references(&self, conn: &mut Conn<'_>, t: &SurveyTrigger) -> Result<()> {
        if concierge_common::resource::get(conn, &TEMPLATES, &t.survey_template)
            .await?
            .is_none()
        {
            return Err(Error::invalid(
                "survey_trigger.survey_template",
                format!("{} does not exist", t.survey_template),
            ));
        }
        Ok(())
    }

    /// The surveys it scheduled and has not sent go with it.
    async fn after_delete(&self, conn: &mut Conn<'_>, t: &SurveyTrigger, now: i64) -> Result<()> {
        let ctx = Ctx::system("csat", "");
        crate::surveys::cancel_scheduled(
            conn,
            &ctx,
            "survey_trigger",
            &t.name,
            &format!("{} was deleted", t.name),
            now,
        )
        .await
        .map(drop)
    }
}

impl Resource<Rules> for Survey {
    const KIND: &'static Kind = &SURVEYS;
    const COLLECTIONS: &'static [&'static str] = &["surveys"];
    const FIELD: &'static str = "survey";
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
        let time = |t: &Option<prost_types::Timestamp>| {
            Value::Int(
                t.as_ref()
                    .and_then(clock::from_proto)
                    .map(clock::to_micros)
                    .unwrap_or(0),
            )
        };
        let response = self.response.clone().unwrap_or_default();
        vec![
            ("account_manager", Value::Text(self.account_manager.clone())),
            ("contact", Value::Text(self.contact.clone())),
            ("case_name", Value::Text(self.r#case.clone())),
            ("case_type", Value::Int(i64::from(self.case_type))),
            ("kind", Value::Int(i64::from(self.kind))),
            ("state", Value::Int(i64::from(self.state))),
            ("detractor", Value::Int(i64::from(self.detractor))),
            ("survey_trigger", Value::Text(self.survey_trigger.clone())),
            ("send_time", time(&self.send_time)),
            ("submit_time", time(&response.submit_time)),
            (
                "score",
                Value::Int(if self.response.is_some() {
                    i64::from(response.score)
                } else {
                    -1
                }),
            ),
        ]
    }

    fn copy_field(&mut self, _from: &Self, _path: &str) {}

    fn check(&self, v: &mut Violations) {
        if concierge_common::names::parse(
            "survey.survey_template",
            &self.survey_template,
            &["surveyTemplates"],
        )
        .is_err()
        {
            v.add(
                "survey.survey_template",
                "required: \"surveyTemplates/{survey_template}\"",
            );
        }
        if concierge_common::names::parse("survey.case", &self.r#case, &["cases"]).is_err() {
            v.add(
                "survey.case",
                "required: the case surveyed, \"cases/{case}\"",
            );
        }
        if !self.contact.is_empty()
            && concierge_common::names::parse(
                "survey.contact",
                &self.contact,
                &["accounts", "contacts"],
            )
            .is_err()
        {
            v.add(
                "survey.contact",
                "a contact, \"accounts/{account}/contacts/{contact}\", or empty for the case's",
            );
        }
    }

    fn clear_output_only(&mut self) {
        let keep = Survey {
            name: std::mem::take(&mut self.name),
            survey_template: std::mem::take(&mut self.survey_template),
            r#case: std::mem::take(&mut self.r#case),
            contact: std::mem::take(&mut self.contact),
            etag: std::mem::take(&mut self.etag),
            ..Default::default()
        };
        *self = keep;
    }

    fn account(&self) -> String {
        self.account.clone()
    }
}

impl Authorize<Survey> for Rules {
    type Facts = ();
    fn visibility(&self, _s: &Survey) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_write(&self, p: &Principal, _s: &Survey, _f: &()) -> Result<()> {
        staff_reads(p)
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_reads(p).map(|_| None)
    }
}

impl Lifecycle<Survey> for Rules {
    /// A survey that leaves a state drops what that state kept: a scheduled
    /// one its send timer; a sent one its expiry timer and its link.
    async fn after_write(
        &self,
        conn: &mut Conn<'_>,
        _ctx: &Ctx,
        before: Option<&Survey>,
        after: &Survey,
        _now: i64,
    ) -> Result<()> {
        let Some(before) = before else { return Ok(()) };
        let (scheduled, sent) = (survey::State::Scheduled as i32, survey::State::Sent as i32);
        if before.state == scheduled && after.state != scheduled {
            timers::disarm(conn, &crate::surveys::send_timer(&after.name)).await?;
        }
        if before.state == sent && after.state != sent {
            timers::disarm(conn, &crate::surveys::expiry_timer(&after.name)).await?;
            on_conn!(conn, c => sqlx::query("UPDATE surveys SET token_hash = NULL WHERE name = $1")
                .bind(&after.name)
                .execute(&mut **c)
                .await?
                .rows_affected());
        }
        Ok(())
    }
}
