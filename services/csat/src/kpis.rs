//! KPIs: first-response time, time to resolve, SLA compliance, backlog age,
//! reopen rate, dispute cycle time, credits granted and agent availability,
//! grouped like scores, each against its target.
//!
//! The CSAT service reads no other service's tables: two consumers keep
//! what the KPIs need of each case (`csat-kpi-cases`) and each dispute
//! (`csat-kpi-disputes`) from their events, and the contact centre's
//! availability intervals are ingested through the API. A case's business
//! time comes from its stopped client SLA clocks ("first_response",
//! "resolve"), read from the cases service when the first response appears
//! and when the case stops being open; a case without such a clock counts
//! its wall-clock span.
//!
//! The database selects the facts of the period (each query bounded); the
//! figures (percentiles, shares, sums per currency) are computed here, the
//! same way on both databases.

use std::collections::{BTreeMap, HashMap};

use concierge_common::clock;
use concierge_common::crud::{Authorize, Ctx, Lifecycle, Resource, strip_meta};
use concierge_common::error::{Error, Result, Violations};
use concierge_common::filter::{self, Field, FieldType, Value};
use concierge_common::idempotency::Key;
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::principal::Principal;
use concierge_common::resource::{self, Kind, Stored};
use concierge_common::{names, on_conn};
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::{Case, CaseType, SlaState, case, sla_clock};
use concierge_proto::csat::{
    AvailabilityInterval, BatchCreateAvailabilityIntervalsResponse,
    CreateAvailabilityIntervalRequest, Dimension, DurationStats, GroupKey, KpiKind, KpiRow,
    KpiSettings, KpiTarget, KpiValue, MoneyTotals, QueryKpisRequest, QueryKpisResponse, Ratio,
    availability_interval, kpi_target, kpi_value,
};
use concierge_proto::disputes::Dispute;
use concierge_proto::events::{Event, Visibility};
use concierge_proto::types::Money;
use jiff::SignedDuration;

use crate::resources::{managers_write, staff_reads};
use crate::scores::{
    Period, bad_token, fingerprint, page_after, page_size, page_token, staff_only,
};
use crate::{Csat, RULES, Rules};

/// The durable name of the consumer of case events.
pub const CASE_FACTS: &str = "csat-kpi-cases";
/// The durable name of the consumer of dispute events.
pub const DISPUTE_FACTS: &str = "csat-kpi-disputes";
/// The name of the one KPI settings resource.
pub const SETTINGS_NAME: &str = "kpiSettings";
/// The share of scheduled time an agent is expected to be available.
pub const DEFAULT_AVAILABILITY_PERCENT: f64 = 75.0;
/// The most facts one query reads from one source: far more than a
/// company's month, and a bound on the work and memory of one call.
const MAX_FACTS: usize = 200_000;
/// The most intervals one batch ingests.
pub const MAX_BATCH: usize = 1000;
/// The longest interval: a shift, or a schedule of a month at most.
const MAX_INTERVAL: SignedDuration = SignedDuration::from_hours(31 * 24);
/// The longest duration target.
const MAX_TARGET: SignedDuration = SignedDuration::from_hours(366 * 24);
/// A client clock read for the first response and for the resolution.
const FIRST_RESPONSE_CLOCK: &str = "first_response";
const RESOLVE_CLOCK: &str = "resolve";

const ALL_KINDS: [KpiKind; 8] = [
    KpiKind::FirstResponseTime,
    KpiKind::TimeToResolve,
    KpiKind::SlaCompliance,
    KpiKind::BacklogAge,
    KpiKind::ReopenRate,
    KpiKind::DisputeCycleTime,
    KpiKind::CreditsGranted,
    KpiKind::AgentAvailability,
];

/// How a KPI's value is shaped, and so which targets fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Durations,
    Share,
    Money,
}

fn shape(kind: KpiKind) -> Option<Shape> {
    match kind {
        KpiKind::Unspecified => None,
        KpiKind::FirstResponseTime
        | KpiKind::TimeToResolve
        | KpiKind::BacklogAge
        | KpiKind::DisputeCycleTime => Some(Shape::Durations),
        KpiKind::SlaCompliance | KpiKind::ReopenRate | KpiKind::AgentAvailability => {
            Some(Shape::Share)
        }
        KpiKind::CreditsGranted => Some(Shape::Money),
    }
}

// --- KPI targets ---

pub static SETTINGS: Kind = Kind {
    resource_type: "KpiSettings",
    table: "kpi_settings",
    fields: &[],
};

/// The targets before anyone changed them: agents available at least 75% of
/// their scheduled time.
pub fn default_settings() -> KpiSettings {
    KpiSettings {
        name: SETTINGS_NAME.into(),
        targets: vec![KpiTarget {
            kind: KpiKind::AgentAvailability as i32,
            threshold: Some(kpi_target::Threshold::MinPercent(
                DEFAULT_AVAILABILITY_PERCENT,
            )),
        }],
        ..Default::default()
    }
}

impl Resource<Rules> for KpiSettings {
    const KIND: &'static Kind = &SETTINGS;
    const COLLECTIONS: &'static [&'static str] = &[SETTINGS_NAME];
    const FIELD: &'static str = "kpi_settings";
    const UPDATABLE: &'static [&'static str] = &["targets"];

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
        if path == "targets" {
            self.targets = from.targets.clone();
        }
    }
    fn check(&self, v: &mut Violations) {
        let mut seen = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("kpi_settings.targets[{i}]");
            let kind = KpiKind::try_from(t.kind).unwrap_or(KpiKind::Unspecified);
            let Some(shape) = shape(kind) else {
                v.add(format!("{field}.kind"), "required: one of the KPIs");
                continue;
            };
            if seen.contains(&kind) {
                v.add(
                    format!("{field}.kind"),
                    format!("{} has a target already", kind.as_str_name()),
                );
                continue;
            }
            seen.push(kind);
            use kpi_target::Threshold;
            match (shape, &t.threshold) {
                (Shape::Money, _) => v.add(
                    format!("{field}.kind"),
                    "credits granted are sums per currency: they take no target",
                ),
                (_, None) => v.add(
                    format!("{field}.threshold"),
                    "required: max_duration for a time, min_percent or max_percent for a share",
                ),
                (Shape::Durations, Some(Threshold::MaxDuration(d))) => {
                    match concierge_common::bounded::Duration::try_from(d).map(|d| d.get()) {
                        Ok(d) if d.is_positive() && d <= MAX_TARGET => {}
                        _ => v.add(
                            format!("{field}.max_duration"),
                            "a positive duration of at most 366 days",
                        ),
                    }
                }
                (Shape::Share, Some(Threshold::MinPercent(p) | Threshold::MaxPercent(p))) => {
                    if !(0.0..=100.0).contains(p) {
                        let which = match t.threshold {
                            Some(Threshold::MinPercent(_)) => "min_percent",
                            _ => "max_percent",
                        };
                        v.add(format!("{field}.{which}"), "a percent from 0 to 100");
                    }
                }
                (Shape::Durations, Some(_)) => v.add(
                    format!("{field}.threshold"),
                    format!("{} is a time: set max_duration", kind.as_str_name()),
                ),
                (Shape::Share, Some(_)) => v.add(
                    format!("{field}.threshold"),
                    format!(
                        "{} is a share: set min_percent or max_percent",
                        kind.as_str_name()
                    ),
                ),
            }
        }
    }
    fn clear_output_only(&mut self) {
        self.update_time = None;
    }
}

impl Authorize<KpiSettings> for Rules {
    type Facts = ();
    fn visibility(&self, _s: &KpiSettings) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        managers_write(p, "the KPI targets")
    }
    fn may_write(&self, p: &Principal, _s: &KpiSettings, _f: &()) -> Result<()> {
        managers_write(p, "the KPI targets")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_reads(p).map(|_| None)
    }
}

impl Lifecycle<KpiSettings> for Rules {}

// --- Availability intervals ---

const INTERVAL_KINDS: FieldType = FieldType::Enum {
    parse: |s| availability_interval::Kind::from_str_name(s).map(|v| v as i32),
    prefix: "KIND_",
};

pub static INTERVALS: Kind = Kind {
    resource_type: "AvailabilityInterval",
    table: "availability_intervals",
    fields: &[
        Field {
            name: "staff_member",
            column: "staff_member",
            ty: FieldType::Text,
        },
        Field {
            name: "kind",
            column: "kind",
            ty: INTERVAL_KINDS,
        },
        Field {
            name: "source",
            column: "source",
            ty: FieldType::Text,
        },
        Field {
            name: "external_id",
            column: "external_id",
            ty: FieldType::Text,
        },
        Field {
            name: "start_time",
            column: "start_time",
            ty: FieldType::Timestamp,
        },
        Field {
            name: "end_time",
            column: "end_time",
            ty: FieldType::Timestamp,
        },
    ],
};

fn micros(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().and_then(clock::from_proto).map(clock::to_micros)
}

impl Resource<Rules> for AvailabilityInterval {
    const KIND: &'static Kind = &INTERVALS;
    const COLLECTIONS: &'static [&'static str] = &["availabilityIntervals"];
    const FIELD: &'static str = "availability_interval";
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
            ("staff_member", Value::Text(self.staff_member.clone())),
            ("kind", Value::Int(i64::from(self.kind))),
            ("source", Value::Text(self.source.clone())),
            ("external_id", Value::Text(self.external_id.clone())),
            (
                "start_time",
                Value::Int(micros(&self.start_time).unwrap_or(0)),
            ),
            ("end_time", Value::Int(micros(&self.end_time).unwrap_or(0))),
        ]
    }
    fn copy_field(&mut self, _from: &Self, _path: &str) {}
    fn check(&self, v: &mut Violations) {
        let f = |name: &str| format!("availability_interval.{name}");
        if names::parse(&f("staff_member"), &self.staff_member, &["staff"]).is_err() {
            v.add(f("staff_member"), "required: \"staff/{staff_member}\"");
        }
        match availability_interval::Kind::try_from(self.kind) {
            Ok(k) if k != availability_interval::Kind::Unspecified => {}
            _ => v.add(
                f("kind"),
                "required: SCHEDULED, AVAILABLE, ON_CALL, BREAK, MEETING or UNAVAILABLE",
            ),
        }
        let start = micros(&self.start_time);
        let end = micros(&self.end_time);
        if start.is_none() {
            v.add(f("start_time"), "required: a valid time");
        }
        if end.is_none() {
            v.add(f("end_time"), "required: a valid time");
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                v.add(f("end_time"), "must be after start_time");
            } else if e - s > MAX_INTERVAL.as_micros() as i64 {
                v.add(f("end_time"), "at most 31 days after start_time");
            }
        }
        if self.source.len() > 100 {
            v.add(f("source"), "at most 100 bytes");
        }
        if self.external_id.len() > 200 {
            v.add(f("external_id"), "at most 200 bytes");
        }
        if !self.external_id.is_empty() && self.source.is_empty() {
            v.add(
                f("source"),
                "required with external_id: the pair names the interval",
            );
        }
    }
    fn clear_output_only(&mut self) {
        self.create_time = None;
    }
}

impl Authorize<AvailabilityInterval> for Rules {
    type Facts = ();
    fn visibility(&self, _i: &AvailabilityInterval) -> Visibility {
        Visibility::Internal
    }
    fn may_read(&self, p: &Principal, _name: &str) -> Result<()> {
        staff_reads(p)
    }
    fn may_attempt_write(&self, p: &Principal, _target: &str) -> Result<()> {
        managers_write(p, "availability intervals")
    }
    fn may_write(&self, p: &Principal, _i: &AvailabilityInterval, _f: &()) -> Result<()> {
        managers_write(p, "availability intervals")
    }
    fn list_account(&self, p: &Principal, _parent: &str) -> Result<Option<String>> {
        staff_reads(p).map(|_| None)
    }
}

impl Lifecycle<AvailabilityInterval> for Rules {}

/// `field` inside request `i` of a batch, or as it is for one request.
fn in_batch(batch: bool, i: usize, field: &str) -> String {
    if batch {
        format!("requests[{i}].{field}")
    } else {
        field.to_string()
    }
}

impl Csat {
    /// CreateAvailabilityInterval and BatchCreateAvailabilityIntervals: all
    /// are stored or none; one with the `source` and `external_id` of an
    /// interval already stored replaces it under its name. Not announced
    /// as events: they are readings of another system, not changes anyone
    /// follows.
    pub(crate) async fn ingest_intervals(
        &self,
        ctx: &Ctx,
        once: Option<Key>,
        requests: Vec<CreateAvailabilityIntervalRequest>,
        batch: bool,
    ) -> Result<Vec<AvailabilityInterval>> {
        Authorize::<AvailabilityInterval>::may_attempt_write(&RULES, &ctx.principal, "")?;
        if batch && (requests.is_empty() || requests.len() > MAX_BATCH) {
            return Err(Error::invalid(
                "requests",
                format!("1 to {MAX_BATCH} intervals"),
            ));
        }
        let mut v = Violations::new();
        let mut prepared = Vec::with_capacity(requests.len());
        for (i, req) in requests.into_iter().enumerate() {
            let Some(mut interval) = req.availability_interval else {
                v.add(in_batch(batch, i, "availability_interval"), "required");
                continue;
            };
            interval.clear_output_only();
            interval.name.clear();
            interval.etag.clear();
            let mut own = Violations::new();
            interval.check(&mut own);
            let id = if req.availability_interval_id.is_empty() {
                None
            } else {
                own.check(AvailabilityInterval::new_id(
                    "availability_interval_id",
                    &req.availability_interval_id,
                ))
            };
            if let Err(Error::InvalidArgument(vs)) = own.into_result() {
                for fv in vs {
                    v.add(in_batch(batch, i, &fv.field), fv.description);
                }
                continue;
            }
            prepared.push((interval, id));
        }
        v.into_result()?;
        let mut tx = self.db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && let Some(previous) = key
                .replay::<BatchCreateAvailabilityIntervalsResponse>(&mut conn)
                .await?
        {
            return Ok(previous.availability_intervals);
        }
        let now = self.store().now();
        let mut out = Vec::with_capacity(prepared.len());
        for (mut interval, id) in prepared {
            let existing: Option<String> = if interval.external_id.is_empty() {
                None
            } else {
                on_conn!(&mut conn, c => sqlx::query_scalar(
                    "SELECT name FROM availability_intervals WHERE source = $1 AND external_id = $2",
                )
                .bind(&interval.source)
                .bind(&interval.external_id)
                .fetch_optional(&mut **c)
                .await?)
            };
            let stored = match existing {
                Some(name) => {
                    let stored = resource::get_for_update(&mut conn, &INTERVALS, &name)
                        .await?
                        .ok_or_else(|| Error::internal(anyhow::anyhow!("{name} vanished")))?;
                    interval.name = name;
                    let next = Stored {
                        update_time: now.max(stored.update_time),
                        revision: stored.revision + 1,
                        body: strip_meta::<_, Rules>(&interval),
                        ..stored.clone()
                    };
                    resource::update(
                        &mut conn,
                        &INTERVALS,
                        &next,
                        stored.revision,
                        &interval.columns(),
                    )
                    .await?;
                    next
                }
                None => {
                    let id = match id {
                        Some(id) => id,
                        None => AvailabilityInterval::new_id("availability_interval_id", "")?,
                    };
                    interval.name = format!("availabilityIntervals/{id}");
                    let stored = Stored {
                        name: interval.name.clone(),
                        parent: String::new(),
                        account: String::new(),
                        create_time: now,
                        update_time: now,
                        delete_time: 0,
                        revision: 1,
                        body: strip_meta::<_, Rules>(&interval),
                    };
                    resource::insert(&mut conn, &INTERVALS, &stored, &interval.columns()).await?;
                    stored
                }
            };
            interval.set_meta(stored.create_time, stored.update_time, stored.etag());
            out.push(interval);
        }
        if let Some(key) = &once {
            let response = BatchCreateAvailabilityIntervalsResponse {
                availability_intervals: out.clone(),
            };
            key.save(&mut conn, &response, now).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// DeleteAvailabilityInterval: gone for good (it was ingested in error).
    pub(crate) async fn delete_interval(
        &self,
        ctx: &Ctx,
        once: Option<Key>,
        name: &str,
        etag: &str,
    ) -> Result<()> {
        names::parse("name", name, &["availabilityIntervals"])?;
        Authorize::<AvailabilityInterval>::may_attempt_write(&RULES, &ctx.principal, name)?;
        let mut tx = self.db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && key.replay::<()>(&mut conn).await?.is_some()
        {
            return Ok(());
        }
        let stored = resource::get_for_update(&mut conn, &INTERVALS, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: INTERVALS.resource_type,
                name: name.to_string(),
            })?;
        resource::check_etag(name, etag, &stored)?;
        resource::delete(&mut conn, &INTERVALS, name).await?;
        if let Some(key) = &once {
            key.save(&mut conn, &(), self.store().now()).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

// --- Facts of cases and disputes ---

/// The consumer that keeps what the KPIs read of each case.
pub struct CaseFacts {
    csat: Csat,
}

impl CaseFacts {
    pub fn new(csat: Csat) -> Self {
        Self { csat }
    }
}

/// What the KPIs read of a case's stopped client clocks.
#[derive(Debug, Default)]
struct Clocks {
    first_response: Option<i64>,
    resolve: Option<i64>,
    /// (clock name, stop time, met)
    stopped: Vec<(String, i64, bool)>,
}

fn read_clocks(clocks: &[concierge_proto::concierge::cases::v1::SlaClock]) -> Clocks {
    let mut out = Clocks::default();
    for c in clocks {
        if c.kind != sla_clock::Kind::Client as i32 || c.status != sla_clock::Status::Stopped as i32
        {
            continue;
        }
        let Some(stop) = micros(&c.stop_time) else {
            continue;
        };
        let elapsed = c
            .elapsed_duration
            .as_ref()
            .and_then(|d| concierge_common::bounded::Duration::try_from(d).ok())
            .map(|d| i64::try_from(d.get().as_micros()).unwrap_or(i64::MAX));
        match c.key.as_str() {
            FIRST_RESPONSE_CLOCK => out.first_response = elapsed,
            RESOLVE_CLOCK => out.resolve = elapsed,
            _ => {}
        }
        let met = c.state == SlaState::Met as i32;
        if met || c.state == SlaState::Breached as i32 {
            out.stopped.push((c.name.clone(), stop, met));
        }
    }
    out
}

impl Consumer for CaseFacts {
    fn subscription(&self) -> Subscription {
        use catalogue::cases as c;
        Subscription::new(
            CASE_FACTS,
            "cases",
            &[
                c::CASE_CREATED.event_type(),
                c::CASE_UPDATED.event_type(),
                c::CASE_STATE_CHANGED.event_type(),
                c::CASE_RESOLVED.event_type(),
                c::CASE_CLOSED.event_type(),
                c::CASE_REOPENED.event_type(),
                c::CASE_CANCELLED.event_type(),
                c::CASE_MERGED.event_type(),
            ],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let case: Case = concierge_common::outbox::unpack(event)?;
        let state = case::State::try_from(case.state).unwrap_or_default();
        let ended = matches!(
            state,
            case::State::Resolved | case::State::Closed | case::State::Cancelled
        );
        let first_response_time = micros(&case.first_response_time).unwrap_or(0);
        let resolve_time = micros(&case.resolve_time).unwrap_or(0);
        let close_time = micros(&case.close_time).unwrap_or(0);
        let create_time = micros(&case.create_time).unwrap_or(0);
        let update_time = micros(&case.update_time).unwrap_or_else(|| self.csat.store().now());
        let known_first_response: Option<i64> = {
            let mut pooled = self.csat.db().acquire().await?;
            on_conn!(&mut pooled.conn(), c => sqlx::query_scalar(
                "SELECT first_response_time FROM kpi_cases WHERE case_name = $1",
            )
            .bind(&case.name)
            .fetch_optional(&mut **c)
            .await?)
        };
        // The clocks are read when there is something new to read off them:
        // the first response has just come, or the case stopped being open.
        let first_response_new = first_response_time > 0 && known_first_response.unwrap_or(0) == 0;
        let clocks = if !case.sla_policy.is_empty() && (ended || first_response_new) {
            let clocks = self
                .csat
                .peers()
                .client_clocks(&event.request_id, &case.name)
                .await?;
            read_clocks(&clocks)
        } else {
            Clocks::default()
        };
        let end_time = match state {
            case::State::Resolved => resolve_time,
            case::State::Closed if resolve_time > 0 => resolve_time,
            case::State::Closed | case::State::Cancelled => close_time,
            _ => 0,
        };
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let mut conn = tx.conn();
        // An older change delivered late does not undo a newer one, and a
        // business time once read stays until a newer reading.
        on_conn!(&mut conn, c => sqlx::query(
            "INSERT INTO kpi_cases (case_name, account, account_manager, owner, case_type, create_time, \
             first_response_time, first_response_micros, resolve_time, resolve_micros, end_time, \
             reopen_count, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (case_name) DO UPDATE SET account = excluded.account, \
             account_manager = excluded.account_manager, owner = excluded.owner, \
             case_type = excluded.case_type, create_time = excluded.create_time, \
             first_response_time = excluded.first_response_time, \
             first_response_micros = CASE WHEN excluded.first_response_micros >= 0 \
               THEN excluded.first_response_micros ELSE kpi_cases.first_response_micros END, \
             resolve_time = excluded.resolve_time, \
             resolve_micros = CASE WHEN excluded.resolve_micros >= 0 \
               THEN excluded.resolve_micros ELSE kpi_cases.resolve_micros END, \
             end_time = excluded.end_time, reopen_count = excluded.reopen_count, \
             update_time = excluded.update_time \
             WHERE kpi_cases.update_time <= excluded.update_time",
        )
        .bind(&case.name)
        .bind(&case.account)
        .bind(&case.account_manager)
        .bind(&case.owner)
        .bind(i64::from(case.r#type))
        .bind(create_time)
        .bind(first_response_time)
        .bind(clocks.first_response.unwrap_or(-1))
        .bind(resolve_time)
        .bind(clocks.resolve.unwrap_or(-1))
        .bind(end_time)
        .bind(i64::from(case.reopen_count))
        .bind(update_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
        for (clock, stop, met) in &clocks.stopped {
            on_conn!(&mut conn, c => sqlx::query(
                "INSERT INTO kpi_sla_clocks (clock, case_name, stop_time, met) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (clock) DO UPDATE SET stop_time = excluded.stop_time, met = excluded.met",
            )
            .bind(clock)
            .bind(&case.name)
            .bind(*stop)
            .bind(i64::from(*met))
            .execute(&mut **c)
            .await?
            .rows_affected());
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The consumer that keeps what the KPIs read of each dispute.
pub struct DisputeFacts {
    csat: Csat,
}

impl DisputeFacts {
    pub fn new(csat: Csat) -> Self {
        Self { csat }
    }
}

impl Consumer for DisputeFacts {
    fn subscription(&self) -> Subscription {
        use catalogue::disputes as d;
        Subscription::new(
            DISPUTE_FACTS,
            "disputes",
            &[
                d::DISPUTE_CREATED.event_type(),
                d::DISPUTE_UPDATED.event_type(),
                d::DISPUTE_STATE_CHANGED.event_type(),
                d::CREDIT_ISSUED.event_type(),
                d::DISPUTE_DELETED.event_type(),
            ],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let dispute: Dispute = concierge_common::outbox::unpack(event)?;
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let mut conn = tx.conn();
        if event.r#type == catalogue::disputes::DISPUTE_DELETED.event_type() {
            on_conn!(&mut conn, c => sqlx::query("DELETE FROM kpi_disputes WHERE dispute = $1")
                .bind(&dispute.name)
                .execute(&mut **c)
                .await?
                .rows_affected());
            tx.commit().await?;
            return Ok(());
        }
        let update_time = micros(&dispute.update_time).unwrap_or_else(|| self.csat.store().now());
        let credit = dispute.credit_issue.as_ref();
        let amount = credit.and_then(|c| c.amount.clone()).unwrap_or_default();
        let credit_time = credit.and_then(|c| micros(&c.issue_time)).unwrap_or(0);
        on_conn!(&mut conn, c => sqlx::query(
            "INSERT INTO kpi_disputes (dispute, account, account_manager, owner, submit_time, close_time, \
             credit_minor_units, credit_currency, credit_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (dispute) DO UPDATE SET account = excluded.account, \
             account_manager = excluded.account_manager, owner = excluded.owner, \
             submit_time = excluded.submit_time, close_time = excluded.close_time, \
             credit_minor_units = excluded.credit_minor_units, credit_currency = excluded.credit_currency, \
             credit_time = excluded.credit_time, update_time = excluded.update_time \
             WHERE kpi_disputes.update_time <= excluded.update_time",
        )
        .bind(&dispute.name)
        .bind(&dispute.account)
        .bind(&dispute.account_manager)
        .bind(&dispute.owner)
        .bind(micros(&dispute.submit_time).unwrap_or(0))
        .bind(micros(&dispute.close_time).unwrap_or(0))
        .bind(amount.minor_units)
        .bind(&amount.currency_code)
        .bind(credit_time)
        .bind(update_time)
        .execute(&mut **c)
        .await?
        .rows_affected());
        tx.commit().await?;
        Ok(())
    }
}

// --- QueryKpis ---

const CASE_TYPES: FieldType = FieldType::Enum {
    parse: |s| CaseType::from_str_name(s).map(|v| v as i32),
    prefix: "CASE_TYPE_",
};

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { name, column, ty }
}

/// The filter fields over `kpi_cases c LEFT JOIN portfolios p`.
static CASE_FIELDS: &[Field] = &[
    field("account", "c.account", FieldType::Text),
    field(
        "portfolio",
        "COALESCE(p.account_manager, c.account_manager)",
        FieldType::Text,
    ),
    field("account_manager", "c.account_manager", FieldType::Text),
    field("case_type", "c.case_type", CASE_TYPES),
    field("agent", "c.owner", FieldType::Text),
];

/// Over `kpi_disputes d LEFT JOIN portfolios p`: a dispute has no case type.
static DISPUTE_FIELDS: &[Field] = &[
    field("account", "d.account", FieldType::Text),
    field(
        "portfolio",
        "COALESCE(p.account_manager, d.account_manager)",
        FieldType::Text,
    ),
    field("account_manager", "d.account_manager", FieldType::Text),
    field("case_type", "0", CASE_TYPES),
    field("agent", "d.owner", FieldType::Text),
];

/// Over `availability_intervals a`: an agent and nothing else.
static AVAILABILITY_FIELDS: &[Field] = &[
    field("account", "''", FieldType::Text),
    field("portfolio", "''", FieldType::Text),
    field("account_manager", "''", FieldType::Text),
    field("case_type", "0", CASE_TYPES),
    field("agent", "a.staff_member", FieldType::Text),
];

/// A row's group: account, portfolio, account manager, case type, month
/// (its index in the period), agent.
type GroupId = (String, String, String, i32, i64, String);

/// What one group has gathered of each KPI.
#[derive(Debug, Default, Clone)]
struct Gathered {
    durations: HashMap<KpiKind, Vec<i64>>,
    shares: HashMap<KpiKind, (i64, i64, i64)>,
    credits: BTreeMap<String, i128>,
    credit_count: i64,
}

impl Gathered {
    fn duration(&mut self, kind: KpiKind, micros: i64) {
        self.durations.entry(kind).or_default().push(micros.max(0));
    }
    /// One sample of a share: `part` of `whole`.
    fn share(&mut self, kind: KpiKind, part: i64, whole: i64) {
        let s = self.shares.entry(kind).or_default();
        s.0 = s.0.saturating_add(part);
        s.1 = s.1.saturating_add(whole);
        s.2 += 1;
    }
    fn credit(&mut self, currency: &str, minor_units: i64) {
        *self.credits.entry(currency.to_string()).or_default() += i128::from(minor_units);
        self.credit_count += 1;
    }
    fn merge(&mut self, other: &Gathered) {
        for (k, v) in &other.durations {
            self.durations.entry(*k).or_default().extend(v);
        }
        for (k, (p, w, n)) in &other.shares {
            let s = self.shares.entry(*k).or_default();
            s.0 = s.0.saturating_add(*p);
            s.1 = s.1.saturating_add(*w);
            s.2 += n;
        }
        for (c, m) in &other.credits {
            *self.credits.entry(c.clone()).or_default() += m;
        }
        self.credit_count += other.credit_count;
    }

    fn value(&self, kind: KpiKind, target: Option<&KpiTarget>) -> Result<KpiValue> {
        use kpi_target::Threshold;
        let (sample_count, value, meets) = match shape(kind) {
            Some(Shape::Durations) => {
                let mut v = self.durations.get(&kind).cloned().unwrap_or_default();
                v.sort_unstable();
                let stats = duration_stats(&v);
                let meets = match target.and_then(|t| t.threshold.as_ref()) {
                    Some(Threshold::MaxDuration(max)) if !v.is_empty() => {
                        let mean = stats.mean.unwrap_or_default();
                        (mean.seconds, mean.nanos) <= (max.seconds, max.nanos)
                    }
                    _ => false,
                };
                (
                    v.len() as i64,
                    kpi_value::Value::DurationStats(stats),
                    meets,
                )
            }
            Some(Shape::Share) => {
                let (part, whole, n) = self.shares.get(&kind).copied().unwrap_or_default();
                let percent = if whole > 0 {
                    part as f64 * 100.0 / whole as f64
                } else {
                    0.0
                };
                let meets = whole > 0
                    && match target.and_then(|t| t.threshold.as_ref()) {
                        Some(Threshold::MinPercent(min)) => percent >= *min,
                        Some(Threshold::MaxPercent(max)) => percent <= *max,
                        _ => false,
                    };
                (
                    n,
                    kpi_value::Value::Ratio(Ratio {
                        numerator: part,
                        denominator: whole,
                        percent,
                    }),
                    meets,
                )
            }
            Some(Shape::Money) => {
                let mut totals = Vec::with_capacity(self.credits.len());
                for (currency, sum) in &self.credits {
                    let minor_units = i64::try_from(*sum).map_err(|_| {
                        Error::invalid(
                            "filter",
                            format!("the {currency} credits exceed what one total holds: narrow the query"),
                        )
                    })?;
                    totals.push(Money {
                        currency_code: currency.clone(),
                        minor_units,
                    });
                }
                (
                    self.credit_count,
                    kpi_value::Value::MoneyTotals(MoneyTotals {
                        totals,
                        count: self.credit_count,
                    }),
                    false,
                )
            }
            None => return Err(Error::internal(anyhow::anyhow!("no KPI {kind:?}"))),
        };
        Ok(KpiValue {
            kind: kind as i32,
            sample_count,
            value: Some(value),
            target: target.cloned(),
            meets_target: meets,
        })
    }
}

fn to_duration(micros: i64) -> prost_types::Duration {
    concierge_common::bounded::Duration::to_proto(SignedDuration::from_micros(micros))
}

/// Mean, median, 90th percentile (nearest rank) and longest of sorted
/// durations in microseconds; all zero for none.
fn duration_stats(sorted: &[i64]) -> DurationStats {
    if sorted.is_empty() {
        return DurationStats {
            mean: Some(to_duration(0)),
            median: Some(to_duration(0)),
            p90: Some(to_duration(0)),
            max: Some(to_duration(0)),
        };
    }
    let n = sorted.len();
    let rank = |p: usize| sorted[(n * p).div_ceil(100).clamp(1, n) - 1];
    let sum: i128 = sorted.iter().map(|v| i128::from(*v)).sum();
    let mean = i64::try_from(sum / n as i128).unwrap_or(i64::MAX);
    DurationStats {
        mean: Some(to_duration(mean)),
        median: Some(to_duration(rank(50))),
        p90: Some(to_duration(rank(90))),
        max: Some(to_duration(sorted[n - 1])),
    }
}

/// `(start, end)` spans of time, in microseconds.
type Spans = Vec<(i64, i64)>;

/// Merges overlapping `(start, end)` spans (sorted by start).
fn merged(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The overlap of two sets of merged spans.
fn intersection(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Seconds of `spans` in each month of `bounds`, by month index.
fn seconds_by_month(spans: &[(i64, i64)], bounds: &[i64]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for (m, w) in bounds.windows(2).enumerate() {
        let total: i64 = spans
            .iter()
            .map(|(s, e)| ((*e).min(w[1]) - (*s).max(w[0])).max(0))
            .sum();
        if total > 0 {
            out.insert(m as i64, total / 1_000_000);
        }
    }
    out
}

/// Binds `params` into a query and reads its rows.
macro_rules! fetch {
    ($conn:expr, $sql:expr, $params:expr, $row:ty) => {{
        let rows: Vec<$row> = on_conn!($conn, c => {
            let mut q = sqlx::query_as($sql);
            for p in $params {
                q = match p {
                    Value::Text(s) => q.bind(s.clone()),
                    Value::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(&mut **c).await?
        });
        if rows.len() > MAX_FACTS {
            return Err(Error::invalid(
                "filter",
                "too many cases, disputes or intervals for one query: narrow the filter or the months",
            ));
        }
        rows
    }};
}

/// A fact's group columns, a time and two numbers.
type FactRow = (String, String, String, i64, String, i64, i64, i64);

impl Csat {
    /// QueryKpis.
    pub(crate) async fn query_kpis(
        &self,
        ctx: &Ctx,
        req: QueryKpisRequest,
    ) -> Result<QueryKpisResponse> {
        staff_only(ctx)?;
        let mut kinds = Vec::new();
        for (i, k) in req.kinds.iter().enumerate().take(ALL_KINDS.len() + 1) {
            match KpiKind::try_from(*k) {
                Ok(k) if k != KpiKind::Unspecified => {
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                _ => return Err(Error::invalid(format!("kinds[{i}]"), "one of the KPIs")),
            }
        }
        if kinds.is_empty() {
            kinds = ALL_KINDS.to_vec();
        }
        let period = Period::of(&req.start_month, &req.end_month, &req.time_zone)?;
        if req.group_by.len() > 8 {
            return Err(Error::invalid("group_by", "at most 8 dimensions"));
        }
        let mut dims = Vec::new();
        for (i, d) in req.group_by.iter().enumerate() {
            match Dimension::try_from(*d).unwrap_or(Dimension::Unspecified) {
                Dimension::Unspecified => {
                    return Err(Error::invalid(
                        format!("group_by[{i}]"),
                        "ACCOUNT, PORTFOLIO, ACCOUNT_MANAGER, CASE_TYPE, MONTH or AGENT",
                    ));
                }
                d if !dims.contains(&d) => dims.push(d),
                _ => {}
            }
        }
        let case_filter = filter::parse(&req.filter, CASE_FIELDS)?;
        let dispute_filter = filter::parse(&req.filter, DISPUTE_FIELDS)?;
        let availability_filter = filter::parse(&req.filter, AVAILABILITY_FIELDS)?;
        let fingerprint = {
            let mut probe = req.clone();
            probe.page_token.clear();
            probe.page_size = 0;
            fingerprint(&probe)
        };
        let after: Option<GroupId> = match page_after(&fingerprint, &req.page_token, 6)?.as_deref()
        {
            None => None,
            Some([a, p, m, t, month, agent]) => Some((
                a.clone(),
                p.clone(),
                m.clone(),
                t.parse().map_err(|_| bad_token())?,
                month.parse().map_err(|_| bad_token())?,
                agent.clone(),
            )),
            Some(_) => return Err(bad_token()),
        };
        let settings = self
            .store()
            .get_singleton(&RULES, ctx, SETTINGS_NAME, default_settings)
            .await?;
        let group = |account: &str,
                     portfolio: &str,
                     manager: &str,
                     case_type: i64,
                     month: i64,
                     agent: &str|
         -> GroupId {
            let has = |d| dims.contains(&d);
            (
                if has(Dimension::Account) {
                    account.into()
                } else {
                    String::new()
                },
                if has(Dimension::Portfolio) {
                    portfolio.into()
                } else {
                    String::new()
                },
                if has(Dimension::AccountManager) {
                    manager.into()
                } else {
                    String::new()
                },
                if has(Dimension::CaseType) {
                    i32::try_from(case_type).unwrap_or_default()
                } else {
                    0
                },
                if has(Dimension::Month) { month } else { 0 },
                if has(Dimension::Agent) {
                    agent.into()
                } else {
                    String::new()
                },
            )
        };
        let wants = |k: KpiKind| kinds.contains(&k);
        let (from, to) = (period.bounds[0], period.bounds[period.bounds.len() - 1]);
        let mut groups: BTreeMap<GroupId, Gathered> = BTreeMap::new();
        let mut pooled = self.db().acquire().await?;
        let mut conn = pooled.conn();

        // Reads one source: SELECT {columns} FROM {from} WHERE {time} in the
        // period (and the filter), with the group columns first.
        let select = |columns: &str,
                      from_clause: &str,
                      time: &str,
                      extra: &str,
                      filter: Option<&filter::Expr>|
         -> (String, Vec<Value>) {
            let mut params = vec![Value::Int(from), Value::Int(to)];
            let mut sql = format!(
                "SELECT {columns} FROM {from_clause} WHERE {time} >= $1 AND {time} < $2{extra}"
            );
            if let Some(f) = filter {
                sql.push_str(" AND ");
                f.to_sql(&mut sql, &mut params);
            }
            sql.push_str(&format!(" LIMIT {}", MAX_FACTS + 1));
            (sql, params)
        };
        const CASES: &str = "kpi_cases c LEFT JOIN portfolios p ON p.account = c.account";
        const CASE_GROUP: &str = "c.account, COALESCE(p.account_manager, c.account_manager), c.account_manager, c.case_type, c.owner";
        const DISPUTES: &str = "kpi_disputes d LEFT JOIN portfolios p ON p.account = d.account";
        const DISPUTE_GROUP: &str = "d.account, COALESCE(p.account_manager, d.account_manager), d.account_manager, CAST(0 AS BIGINT), d.owner";

        if wants(KpiKind::FirstResponseTime) {
            let (sql, params) = select(
                &format!(
                    "{CASE_GROUP}, c.first_response_time, c.first_response_micros, c.first_response_time - c.create_time"
                ),
                CASES,
                "c.first_response_time",
                "",
                case_filter.as_ref(),
            );
            for (a, p, m, t, agent, at, business, wall) in fetch!(&mut conn, &sql, &params, FactRow)
            {
                let Some(month) = period.index(at) else {
                    continue;
                };
                groups
                    .entry(group(&a, &p, &m, t, month, &agent))
                    .or_default()
                    .duration(
                        KpiKind::FirstResponseTime,
                        if business >= 0 { business } else { wall },
                    );
            }
        }
        if wants(KpiKind::TimeToResolve) || wants(KpiKind::ReopenRate) {
            let (sql, params) = select(
                &format!(
                    "{CASE_GROUP}, c.resolve_time, CASE WHEN c.resolve_micros >= 0 THEN c.resolve_micros \
                     ELSE c.resolve_time - c.create_time END, c.reopen_count"
                ),
                CASES,
                "c.resolve_time",
                "",
                case_filter.as_ref(),
            );
            for (a, p, m, t, agent, at, spent, reopens) in fetch!(&mut conn, &sql, &params, FactRow)
            {
                let Some(month) = period.index(at) else {
                    continue;
                };
                let g = groups
                    .entry(group(&a, &p, &m, t, month, &agent))
                    .or_default();
                if wants(KpiKind::TimeToResolve) {
                    g.duration(KpiKind::TimeToResolve, spent);
                }
                if wants(KpiKind::ReopenRate) {
                    g.share(KpiKind::ReopenRate, i64::from(reopens > 0), 1);
                }
            }
        }
        if wants(KpiKind::SlaCompliance) {
            let (sql, params) = select(
                &format!("{CASE_GROUP}, k.stop_time, k.met, CAST(0 AS BIGINT)"),
                "kpi_sla_clocks k JOIN kpi_cases c ON c.case_name = k.case_name \
                 LEFT JOIN portfolios p ON p.account = c.account",
                "k.stop_time",
                "",
                case_filter.as_ref(),
            );
            for (a, p, m, t, agent, at, met, _) in fetch!(&mut conn, &sql, &params, FactRow) {
                let Some(month) = period.index(at) else {
                    continue;
                };
                groups
                    .entry(group(&a, &p, &m, t, month, &agent))
                    .or_default()
                    .share(KpiKind::SlaCompliance, met, 1);
            }
        }
        if wants(KpiKind::BacklogAge) {
            // The backlog at the end of each month grouped (of the period
            // when months are not), and never later than now.
            let now = self.store().now();
            let months: Vec<i64> = if dims.contains(&Dimension::Month) {
                (0..period.bounds.len() as i64 - 1).collect()
            } else {
                vec![period.bounds.len() as i64 - 2]
            };
            let mut read = 0usize;
            for month in months {
                let end = period.bounds[usize::try_from(month + 1).unwrap_or_default()].min(now);
                let mut params = vec![Value::Int(end)];
                let mut sql = format!(
                    "SELECT {CASE_GROUP}, c.create_time, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM {CASES} \
                     WHERE c.create_time > 0 AND c.create_time < $1 AND (c.end_time = 0 OR c.end_time > $1)"
                );
                if let Some(f) = case_filter.as_ref() {
                    sql.push_str(" AND ");
                    f.to_sql(&mut sql, &mut params);
                }
                sql.push_str(&format!(" LIMIT {}", MAX_FACTS + 1));
                let rows = fetch!(&mut conn, &sql, &params, FactRow);
                read += rows.len();
                if read > MAX_FACTS {
                    return Err(Error::invalid(
                        "filter",
                        "too many open cases over these months for one query: narrow the filter or the months",
                    ));
                }
                for (a, p, m, t, agent, created, _, _) in rows {
                    groups
                        .entry(group(&a, &p, &m, t, month, &agent))
                        .or_default()
                        .duration(KpiKind::BacklogAge, end - created);
                }
            }
        }
        if wants(KpiKind::DisputeCycleTime) {
            let (sql, params) = select(
                &format!(
                    "{DISPUTE_GROUP}, d.close_time, d.close_time - d.submit_time, CAST(0 AS BIGINT)"
                ),
                DISPUTES,
                "d.close_time",
                " AND d.submit_time > 0",
                dispute_filter.as_ref(),
            );
            for (a, p, m, t, agent, at, cycle, _) in fetch!(&mut conn, &sql, &params, FactRow) {
                let Some(month) = period.index(at) else {
                    continue;
                };
                groups
                    .entry(group(&a, &p, &m, t, month, &agent))
                    .or_default()
                    .duration(KpiKind::DisputeCycleTime, cycle);
            }
        }
        if wants(KpiKind::CreditsGranted) {
            let (sql, params) = select(
                &format!("{DISPUTE_GROUP}, d.credit_time, d.credit_minor_units, d.credit_currency"),
                DISPUTES,
                "d.credit_time",
                "",
                dispute_filter.as_ref(),
            );
            type CreditRow = (String, String, String, i64, String, i64, i64, String);
            for (a, p, m, t, agent, at, minor_units, currency) in
                fetch!(&mut conn, &sql, &params, CreditRow)
            {
                let Some(month) = period.index(at) else {
                    continue;
                };
                groups
                    .entry(group(&a, &p, &m, t, month, &agent))
                    .or_default()
                    .credit(&currency, minor_units);
            }
        }
        if wants(KpiKind::AgentAvailability) {
            let mut params = vec![Value::Int(to), Value::Int(from)];
            let mut sql = String::from(
                "SELECT a.staff_member, a.kind, a.start_time, a.end_time FROM availability_intervals a \
                 WHERE a.start_time < $1 AND a.end_time > $2",
            );
            if let Some(f) = availability_filter.as_ref() {
                sql.push_str(" AND ");
                f.to_sql(&mut sql, &mut params);
            }
            sql.push_str(&format!(" LIMIT {}", MAX_FACTS + 1));
            type IntervalRow = (String, i64, i64, i64);
            let mut by_agent: BTreeMap<String, (Spans, Spans)> = BTreeMap::new();
            for (agent, kind, start, end) in fetch!(&mut conn, &sql, &params, IntervalRow) {
                use availability_interval::Kind as K;
                let spans = by_agent.entry(agent).or_default();
                match K::try_from(i32::try_from(kind).unwrap_or_default()) {
                    Ok(K::Scheduled) => spans.0.push((start, end)),
                    Ok(K::Available | K::OnCall) => spans.1.push((start, end)),
                    _ => {}
                }
            }
            for (agent, (scheduled, available)) in by_agent {
                let scheduled = merged(scheduled);
                let covered = intersection(&scheduled, &merged(available));
                let wholes = seconds_by_month(&scheduled, &period.bounds);
                let parts = seconds_by_month(&covered, &period.bounds);
                for (month, whole) in wholes {
                    let part = parts.get(&month).copied().unwrap_or(0);
                    groups
                        .entry(group("", "", "", 0, month, &agent))
                        .or_default()
                        .share(KpiKind::AgentAvailability, part, whole);
                }
            }
        }
        drop(pooled);

        let target = |k: KpiKind| settings.targets.iter().find(|t| t.kind == k as i32);
        let values = |g: &Gathered| -> Result<Vec<KpiValue>> {
            kinds.iter().map(|k| g.value(*k, target(*k))).collect()
        };
        let mut total = Gathered::default();
        for g in groups.values() {
            total.merge(g);
        }
        let size = page_size(req.page_size);
        let mut rows = Vec::new();
        let mut next_page_token = String::new();
        let mut last: Option<&GroupId> = None;
        for (key, g) in groups
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        {
            if rows.len() == size {
                if let Some(l) = last {
                    next_page_token = page_token(
                        &fingerprint,
                        &[
                            l.0.clone(),
                            l.1.clone(),
                            l.2.clone(),
                            l.3.to_string(),
                            l.4.to_string(),
                            l.5.clone(),
                        ],
                    );
                }
                break;
            }
            rows.push(KpiRow {
                group: Some(GroupKey {
                    account: key.0.clone(),
                    portfolio: key.1.clone(),
                    account_manager: key.2.clone(),
                    case_type: key.3,
                    month: if dims.contains(&Dimension::Month) {
                        Some(period.month(key.4)?)
                    } else {
                        None
                    },
                    agent: key.5.clone(),
                }),
                values: values(g)?,
            });
            last = Some(key);
        }
        Ok(QueryKpisResponse {
            rows,
            totals: values(&total)?,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=10).map(|s| s * 1_000_000).collect();
        let s = duration_stats(&v);
        assert_eq!(s.median.unwrap().seconds, 5);
        assert_eq!(s.p90.unwrap().seconds, 9);
        assert_eq!(s.max.unwrap().seconds, 10);
        assert_eq!(
            (s.mean.unwrap().seconds, s.mean.unwrap().nanos),
            (5, 500_000_000)
        );
        let one = duration_stats(&[7_000_000]);
        assert_eq!(
            (one.median.unwrap().seconds, one.p90.unwrap().seconds),
            (7, 7)
        );
    }

    #[test]
    fn available_time_counts_only_inside_the_schedule() {
        let h = 3_600_000_000i64;
        // Scheduled 9-13 and 14-18; available 8-12 and 12:30-15, on a call
        // 15-15:30 (counts), overlapping spans counted once.
        let scheduled = merged(vec![(14 * h, 18 * h), (9 * h, 13 * h)]);
        let available = merged(vec![
            (8 * h, 12 * h),
            (12 * h + h / 2, 15 * h),
            (15 * h, 15 * h + h / 2),
            (11 * h, 12 * h),
        ]);
        let covered = intersection(&scheduled, &available);
        let secs = |spans: &[(i64, i64)]| spans.iter().map(|(s, e)| e - s).sum::<i64>() / h;
        assert_eq!(secs(&scheduled), 8);
        // 9-12 (3 h) + 12:30-13 (0.5 h) + 14-15:30 (1.5 h) = 5 h.
        assert_eq!(covered.iter().map(|(s, e)| e - s).sum::<i64>(), 5 * h);
        // Split at a month boundary at 16:00.
        let by_month = seconds_by_month(&scheduled, &[0, 16 * h, 24 * h]);
        assert_eq!(by_month.get(&0), Some(&(6 * 3600)));
        assert_eq!(by_month.get(&1), Some(&(2 * 3600)));
    }
}
