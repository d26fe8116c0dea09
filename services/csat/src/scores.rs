//! Scores: CSAT %, NPS and CES over the answered surveys, grouped by
//! account, portfolio, account manager, case type and month, and each
//! client's current satisfaction with its trend.
//!
//! The database counts surveys by group, kind and score (one aggregate
//! scan); every figure is then computed from those counts exactly as the
//! contract defines it, so a figure and its counts always agree. A survey
//! counts in the month (and window) it was sent: its answer and its
//! response rate belong together.
//!
//! The portfolio is the account's account manager today, which the
//! consumer `csat-account-portfolios` keeps from the customers service's
//! events; an account it has not heard of counts in the portfolio of the
//! manager the survey was sent under.

use std::collections::BTreeMap;

use base64::Engine as _;
use concierge_common::clock;
use concierge_common::crud::Ctx;
use concierge_common::error::{Error, Result};
use concierge_common::filter::{self, Field, FieldType, Value};
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::on_conn;
use concierge_common::principal::Role;
use concierge_common::storage::Conn;
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::CaseType;
use concierge_proto::csat::{
    ClientSatisfaction, Dimension, GroupKey, Month, QueryScoresRequest, QueryScoresResponse,
    ScoreRow, ScoreSummary, SurveyKind, client_satisfaction,
};
use concierge_proto::customers::Account;
use concierge_proto::events::Event;
use jiff::SignedDuration;
use sha2::{Digest, Sha256};

use crate::Csat;

/// The durable name of the consumer of account events.
pub const PORTFOLIOS: &str = "csat-account-portfolios";
/// The longest span of months one query covers.
pub const MAX_MONTHS: i64 = 120;
/// The most (group, kind, score) counts one query reads: far more than any
/// portfolio view needs, and a bound on the work and memory of one call.
const MAX_COUNTS: usize = 200_000;
/// A client's satisfaction is read over this window, against the one before.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(90 * 24);
/// CSAT % at or above which a client is satisfied, and below which at risk.
const SATISFIED: f64 = 85.0;
const NEUTRAL: f64 = 70.0;
/// A change of CSAT % between windows that is a trend.
const TREND_POINTS: f64 = 5.0;
const MAX_BATCH: usize = 1000;

const KINDS: FieldType = FieldType::Enum {
    parse: |s| SurveyKind::from_str_name(s).map(|v| v as i32),
    prefix: "SURVEY_KIND_",
};
const CASE_TYPES: FieldType = FieldType::Enum {
    parse: |s| CaseType::from_str_name(s).map(|v| v as i32),
    prefix: "CASE_TYPE_",
};

/// The portfolio of a survey row `s` joined with `p`.
const PORTFOLIO: &str = "COALESCE(p.account_manager, s.account_manager)";

/// The fields a score filter takes, over `surveys s LEFT JOIN portfolios p`.
pub(crate) static FIELDS: &[Field] = &[
    Field {
        name: "account",
        column: "s.account",
        ty: FieldType::Text,
    },
    Field {
        name: "portfolio",
        column: PORTFOLIO,
        ty: FieldType::Text,
    },
    Field {
        name: "account_manager",
        column: "s.account_manager",
        ty: FieldType::Text,
    },
    Field {
        name: "case_type",
        column: "s.case_type",
        ty: CASE_TYPES,
    },
    Field {
        name: "kind",
        column: "s.kind",
        ty: KINDS,
    },
];

/// The consumer that keeps each account's account manager: the portfolio.
pub struct AccountPortfolios {
    csat: Csat,
}

impl AccountPortfolios {
    pub fn new(csat: Csat) -> Self {
        Self { csat }
    }
}

impl Consumer for AccountPortfolios {
    fn subscription(&self) -> Subscription {
        Subscription::new(
            PORTFOLIOS,
            "customers",
            &[
                catalogue::customers::ACCOUNT_CREATED.event_type(),
                catalogue::customers::ACCOUNT_UPDATED.event_type(),
            ],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let account: Account = concierge_common::outbox::unpack(event)?;
        let update_time = account
            .update_time
            .as_ref()
            .and_then(clock::from_proto)
            .map(clock::to_micros)
            .unwrap_or_else(|| self.csat.store().now());
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        // An older change delivered late does not undo a newer one.
        on_conn!(&mut tx.conn(), c => sqlx::query(
            "INSERT INTO portfolios (account, account_manager, update_time, display_name) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account) DO UPDATE SET account_manager = excluded.account_manager, \
             update_time = excluded.update_time, display_name = excluded.display_name \
             WHERE portfolios.update_time <= excluded.update_time",
        )
        .bind(&account.name)
        .bind(&account.account_manager)
        .bind(update_time)
        .bind(&account.display_name)
        .execute(&mut **c)
        .await?
        .rows_affected());
        tx.commit().await?;
        Ok(())
    }
}

/// Surveys sent and answered, by kind and score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub sent: i64,
    /// `[kind][score]` answered, kinds 1-3, scores 0-10.
    pub answered: [[i64; 11]; 4],
}

impl Counts {
    fn add(&mut self, kind: i32, score: i64, n: i64) {
        self.sent = self.sent.saturating_add(n);
        if let (Ok(k), Ok(s)) = (usize::try_from(kind), usize::try_from(score))
            && k < 4
            && s < 11
        {
            self.answered[k][s] = self.answered[k][s].saturating_add(n);
        }
    }

    pub(crate) fn merge(&mut self, other: &Counts) {
        self.sent = self.sent.saturating_add(other.sent);
        for k in 0..4 {
            for s in 0..11 {
                self.answered[k][s] = self.answered[k][s].saturating_add(other.answered[k][s]);
            }
        }
    }

    /// Answers of negative sentiment (CSAT 1-2, NPS 0-6, CES 1-3): the
    /// detractors.
    pub fn detractors(&self) -> i64 {
        self.of(SurveyKind::Csat15, 1..=2)
            + self.of(SurveyKind::Nps010, 0..=6)
            + self.of(SurveyKind::Ces17, 1..=3)
    }

    fn of(&self, kind: SurveyKind, scores: std::ops::RangeInclusive<usize>) -> i64 {
        self.answered[kind as usize][scores].iter().sum()
    }

    /// The contract's figures from the counts.
    pub fn summary(&self) -> ScoreSummary {
        let percent = |part: i64, whole: i64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let csat = self.of(SurveyKind::Csat15, 1..=5);
        let satisfied = self.of(SurveyKind::Csat15, 4..=5);
        let nps = self.of(SurveyKind::Nps010, 0..=10);
        let promoters = self.of(SurveyKind::Nps010, 9..=10);
        let passives = self.of(SurveyKind::Nps010, 7..=8);
        let detractors = self.of(SurveyKind::Nps010, 0..=6);
        let ces = self.of(SurveyKind::Ces17, 1..=7);
        let ces_total: i64 = (1..=7)
            .map(|s| self.answered[SurveyKind::Ces17 as usize][s] * s as i64)
            .sum();
        let agree = self.of(SurveyKind::Ces17, 5..=7);
        let answered = csat + nps + ces;
        ScoreSummary {
            csat_response_count: csat,
            csat_satisfied_count: satisfied,
            csat_percent: percent(satisfied, csat),
            nps_response_count: nps,
            nps_promoter_count: promoters,
            nps_passive_count: passives,
            nps_detractor_count: detractors,
            nps: percent(promoters, nps) - percent(detractors, nps),
            ces_response_count: ces,
            ces_mean: if ces == 0 {
                0.0
            } else {
                ces_total as f64 / ces as f64
            },
            ces_agree_count: agree,
            ces_agree_percent: percent(agree, ces),
            sent_count: self.sent,
            response_rate_percent: percent(answered, self.sent),
        }
    }
}

/// One group's key, in the order rows are given.
pub(crate) type Key = (String, String, String, i32, i64);

/// A row of the aggregate: the group's columns, then kind, score and count.
type CountRow = (String, String, String, i64, i64, i64, i64, i64);

pub(crate) fn month_of(m: &Option<Month>, field: &str) -> Result<jiff::civil::Date> {
    let m = m
        .as_ref()
        .ok_or_else(|| Error::invalid(field, "required: a year and a month"))?;
    if !(2000..=2200).contains(&m.year) || !(1..=12).contains(&m.month) {
        return Err(Error::invalid(
            field,
            "a year from 2000 to 2200 and a month from 1 to 12",
        ));
    }
    let (year, month) = (
        i16::try_from(m.year).map_err(|_| Error::invalid(field, "year out of range"))?,
        i8::try_from(m.month).map_err(|_| Error::invalid(field, "month out of range"))?,
    );
    jiff::civil::Date::new(year, month, 1).map_err(|e| Error::invalid(field, e.to_string()))
}

fn time_zone(tz: &Option<concierge_proto::types::TimeZone>) -> Result<jiff::tz::TimeZone> {
    match tz
        .as_ref()
        .map(|t| t.id.as_str())
        .filter(|id| !id.is_empty())
    {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(id) if id.len() <= 64 => jiff::tz::TimeZone::get(id).map_err(|_| {
            Error::invalid("time_zone.id", format!("{id:?} is not an IANA time zone"))
        }),
        Some(_) => Err(Error::invalid(
            "time_zone.id",
            "an IANA time zone, e.g. Europe/Istanbul",
        )),
    }
}

/// The months a query covers: the first, and the first instant of each month
/// from it to the month after the last, in the query's time zone.
pub(crate) struct Period {
    pub start: jiff::civil::Date,
    pub bounds: Vec<i64>,
}

impl Period {
    pub fn of(
        start_month: &Option<Month>,
        end_month: &Option<Month>,
        tz: &Option<concierge_proto::types::TimeZone>,
    ) -> Result<Self> {
        let start = month_of(start_month, "start_month")?;
        let end = month_of(end_month, "end_month")?;
        let months =
            i64::from(end.year() - start.year()) * 12 + i64::from(end.month() - start.month()) + 1;
        if months < 1 {
            return Err(Error::invalid("end_month", "on or after start_month"));
        }
        if months > MAX_MONTHS {
            return Err(Error::invalid(
                "end_month",
                format!("at most {MAX_MONTHS} months after start_month"),
            ));
        }
        let tz = time_zone(tz)?;
        Ok(Self {
            start,
            bounds: boundaries(start, months, &tz)?,
        })
    }

    /// The month `i` of the period, as the contract writes it.
    pub fn month(&self, i: i64) -> Result<Month> {
        let first = self
            .start
            .checked_add(jiff::Span::new().months(i))
            .map_err(Error::internal)?;
        Ok(Month {
            year: i32::from(first.year()),
            month: i32::from(first.month()),
        })
    }

    /// Which month of the period holds the instant `t` (micros), if any.
    pub fn index(&self, t: i64) -> Option<i64> {
        let (first, last) = (*self.bounds.first()?, *self.bounds.last()?);
        if t < first || t >= last {
            return None;
        }
        let i = self.bounds.partition_point(|b| *b <= t);
        i64::try_from(i).ok().map(|i| i - 1)
    }
}

/// The first instant of each month from `start` to the month after `end`.
fn boundaries(start: jiff::civil::Date, months: i64, tz: &jiff::tz::TimeZone) -> Result<Vec<i64>> {
    (0..=months)
        .map(|i| {
            let first = start
                .checked_add(jiff::Span::new().months(i))
                .map_err(|e| Error::invalid("end_month", e.to_string()))?;
            tz.to_timestamp(first.to_datetime(jiff::civil::Time::midnight()))
                .map(clock::to_micros)
                .map_err(|e| Error::invalid("time_zone", e.to_string()))
        })
        .collect()
}

pub(crate) fn page_size(n: i32) -> usize {
    match n {
        n if n <= 0 => 50,
        n => usize::try_from(n.min(1000)).unwrap_or(1000),
    }
}

/// A request's fingerprint: what its page tokens are bound to (the caller
/// clears `page_token` and `page_size` first).
pub(crate) fn fingerprint<M: prost::Message>(probe: &M) -> String {
    hex::encode(&Sha256::digest(probe.encode_to_vec())[..8])
}

/// The page token after a row whose group key is `parts`: bound to the
/// request it came from.
pub(crate) fn page_token(fingerprint: &str, parts: &[String]) -> String {
    let mut raw = fingerprint.to_string();
    for p in parts {
        raw.push('\u{1f}');
        raw.push_str(p);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn bad_token() -> Error {
    Error::invalid("page_token", "not a page token of this query")
}

/// The group key a page token continues after: `n` parts, or an error when
/// the token is not one of this request's.
pub(crate) fn page_after(fingerprint: &str, token: &str, n: usize) -> Result<Option<Vec<String>>> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad_token())?;
    let raw = String::from_utf8(raw).map_err(|_| bad_token())?;
    let mut parts = raw.split('\u{1f}');
    if parts.next() != Some(fingerprint) {
        return Err(bad_token());
    }
    let parts: Vec<String> = parts.map(str::to_string).collect();
    if parts.len() != n {
        return Err(bad_token());
    }
    Ok(Some(parts))
}

pub(crate) fn staff_only(ctx: &Ctx) -> Result<()> {
    if ctx.principal.role == Role::Client {
        return Err(Error::PermissionDenied(
            "satisfaction scores are internal to the company".into(),
        ));
    }
    Ok(())
}

/// Reads the counts of surveys sent from `from` to `to` matching `filter`,
/// grouped by `dims` (the month as its index among `bounds`).
pub(crate) async fn count(
    conn: &mut Conn<'_>,
    dims: &[Dimension],
    bounds: &[i64],
    filter: Option<&filter::Expr>,
    accounts: Option<&[String]>,
) -> Result<BTreeMap<Key, Counts>> {
    let mut params: Vec<Value> = Vec::new();
    let bind = |v: Value, params: &mut Vec<Value>| {
        params.push(v);
        format!("${}", params.len())
    };
    let (first, last) = (bounds[0], bounds[bounds.len() - 1]);
    let month_expr = if dims.contains(&Dimension::Month) {
        let mut e = String::from("CASE");
        for (i, b) in bounds
            .iter()
            .enumerate()
            .skip(1)
            .take(bounds.len().saturating_sub(2))
        {
            let p = bind(Value::Int(*b), &mut params);
            e.push_str(&format!(" WHEN s.send_time < {p} THEN {}", i - 1));
        }
        e.push_str(&format!(" ELSE {} END", bounds.len().saturating_sub(2)));
        // PostgreSQL reads a bare integer as INT4; the row holds BIGINTs.
        format!("CAST({e} AS BIGINT)")
    } else {
        "CAST(0 AS BIGINT)".into()
    };
    let pick = |d: Dimension, expr: &str, none: &str| {
        if dims.contains(&d) {
            expr.to_string()
        } else {
            none.to_string()
        }
    };
    let columns = [
        pick(Dimension::Account, "s.account", "''"),
        pick(Dimension::Portfolio, PORTFOLIO, "''"),
        pick(Dimension::AccountManager, "s.account_manager", "''"),
        pick(Dimension::CaseType, "s.case_type", "CAST(0 AS BIGINT)"),
        month_expr,
    ];
    let from = bind(Value::Int(first), &mut params);
    let to = bind(Value::Int(last), &mut params);
    let mut conditions = String::new();
    if let Some(accounts) = accounts {
        let marks: Vec<String> = accounts
            .iter()
            .map(|a| bind(Value::Text(a.clone()), &mut params))
            .collect();
        conditions.push_str(&format!(" AND s.account IN ({})", marks.join(", ")));
    }
    if let Some(f) = filter {
        conditions.push_str(" AND ");
        f.to_sql(&mut conditions, &mut params);
    }
    // The portfolio table is joined only when the portfolio is asked for:
    // joining every row read cost a year of the whole company a fifth of
    // its time (`concierge bench scores`).
    let join = if dims.contains(&Dimension::Portfolio) || conditions.contains(PORTFOLIO) {
        "LEFT JOIN portfolios p ON p.account = s.account"
    } else {
        ""
    };
    let mut sql = format!(
        "SELECT {} AS g_account, {} AS g_portfolio, {} AS g_manager, {} AS g_type, {} AS g_month, \
         s.kind, s.score, COUNT(*) FROM surveys s {join} \
         WHERE s.send_time > 0 AND s.send_time >= {from} AND s.send_time < {to}{conditions}",
        columns[0], columns[1], columns[2], columns[3], columns[4]
    );
    // Grouped by the dimensions asked for only: the constants standing for
    // the others, grouped on too, cost a year of the whole company more
    // than half its time.
    let mut group_by: Vec<&str> = [
        (Dimension::Account, "g_account"),
        (Dimension::Portfolio, "g_portfolio"),
        (Dimension::AccountManager, "g_manager"),
        (Dimension::CaseType, "g_type"),
        (Dimension::Month, "g_month"),
    ]
    .into_iter()
    .filter(|(d, _)| dims.contains(d))
    .map(|(_, column)| column)
    .collect();
    group_by.extend(["s.kind", "s.score"]);
    sql.push_str(&format!(
        " GROUP BY {} LIMIT {}",
        group_by.join(", "),
        MAX_COUNTS + 1
    ));
    let rows: Vec<CountRow> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql);
        for p in &params {
            q = match p {
                Value::Text(s) => q.bind(s.clone()),
                Value::Int(i) => q.bind(*i),
            };
        }
        q.fetch_all(&mut **c).await?
    });
    if rows.len() > MAX_COUNTS {
        return Err(Error::invalid(
            "group_by",
            "too many groups for one query: narrow the filter or the months, or group by less",
        ));
    }
    let mut groups: BTreeMap<Key, Counts> = BTreeMap::new();
    for (account, portfolio, manager, case_type, month, kind, score, n) in rows {
        let case_type = i32::try_from(case_type).unwrap_or_default();
        let kind = i32::try_from(kind).unwrap_or_default();
        groups
            .entry((account, portfolio, manager, case_type, month))
            .or_default()
            .add(kind, score, n);
    }
    Ok(groups)
}

/// Counts by (account, month index), each looked up at once rather than
/// searched for among every group.
pub(crate) fn by_account_month(
    groups: &BTreeMap<Key, Counts>,
) -> std::collections::HashMap<(&str, i64), Counts> {
    let mut out: std::collections::HashMap<(&str, i64), Counts> = std::collections::HashMap::new();
    for (k, c) in groups {
        out.entry((k.0.as_str(), k.4)).or_default().merge(c);
    }
    out
}

/// When each of `accounts` last had an answer.
async fn last_responses(
    conn: &mut Conn<'_>,
    accounts: &[String],
    until: i64,
) -> Result<std::collections::HashMap<String, i64>> {
    let marks: Vec<String> = (2..accounts.len() + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT account, MAX(submit_time) FROM surveys WHERE submit_time > 0 AND submit_time <= $1 \
         AND account IN ({}) GROUP BY account",
        marks.join(", ")
    );
    let rows: Vec<(String, i64)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql).bind(until);
        for a in accounts {
            q = q.bind(a.clone());
        }
        q.fetch_all(&mut **c).await?
    });
    Ok(rows.into_iter().collect())
}

/// Each of `accounts`' open corrective action plans: (all, detractor-opened).
async fn open_plans(
    conn: &mut Conn<'_>,
    accounts: &[String],
) -> Result<std::collections::HashMap<String, (i32, i32)>> {
    use concierge_proto::csat::corrective_action_plan::{Origin, State};
    let marks: Vec<String> = (3..accounts.len() + 3).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT account, CAST(COUNT(*) AS BIGINT), CAST(SUM(CASE WHEN origin = $1 THEN 1 ELSE 0 END) AS BIGINT) \
         FROM corrective_action_plans WHERE delete_time = 0 AND state = $2 AND account IN ({}) GROUP BY account",
        marks.join(", ")
    );
    let rows: Vec<(String, i64, i64)> = on_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql)
            .bind(Origin::Detractor as i64)
            .bind(State::Open as i64);
        for a in accounts {
            q = q.bind(a.clone());
        }
        q.fetch_all(&mut **c).await?
    });
    Ok(rows
        .into_iter()
        .map(|(a, all, detractor)| {
            let clamp = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
            (a, (clamp(all), clamp(detractor)))
        })
        .collect())
}

impl Csat {
    /// QueryScores.
    pub(crate) async fn query_scores(
        &self,
        ctx: &Ctx,
        req: QueryScoresRequest,
    ) -> Result<QueryScoresResponse> {
        staff_only(ctx)?;
        let period = Period::of(&req.start_month, &req.end_month, &req.time_zone)?;
        let bounds = &period.bounds;
        let mut dims = Vec::new();
        for (i, d) in req.group_by.iter().enumerate().take(8) {
            match Dimension::try_from(*d).unwrap_or(Dimension::Unspecified) {
                Dimension::Unspecified | Dimension::Agent => {
                    return Err(Error::invalid(
                        format!("group_by[{i}]"),
                        "ACCOUNT, PORTFOLIO, ACCOUNT_MANAGER, CASE_TYPE or MONTH (surveys are not per agent)",
                    ));
                }
                d if !dims.contains(&d) => dims.push(d),
                _ => {}
            }
        }
        if req.group_by.len() > 8 {
            return Err(Error::invalid("group_by", "at most 8 dimensions"));
        }
        let filter = filter::parse(&req.filter, FIELDS)?;
        let fingerprint = {
            let mut probe = req.clone();
            probe.page_token.clear();
            probe.page_size = 0;
            fingerprint(&probe)
        };
        let after = match page_after(&fingerprint, &req.page_token, 5)?.as_deref() {
            None => None,
            Some([a, p, m, t, month]) => Some((
                a.clone(),
                p.clone(),
                m.clone(),
                t.parse().map_err(|_| bad_token())?,
                month.parse().map_err(|_| bad_token())?,
            )),
            Some(_) => return Err(bad_token()),
        };
        let groups = {
            let mut pooled = self.db().acquire().await?;
            count(&mut pooled.conn(), &dims, bounds, filter.as_ref(), None).await?
        };
        let mut total = Counts::default();
        for c in groups.values() {
            total.merge(c);
        }
        let size = page_size(req.page_size);
        let mut rows = Vec::new();
        let mut next_page_token = String::new();
        let mut last: Option<&Key> = None;
        for (key, counts) in groups
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        {
            if rows.len() == size {
                if let Some(last) = last {
                    next_page_token = page_token(
                        &fingerprint,
                        &[
                            last.0.clone(),
                            last.1.clone(),
                            last.2.clone(),
                            last.3.to_string(),
                            last.4.to_string(),
                        ],
                    );
                }
                break;
            }
            let month = if dims.contains(&Dimension::Month) {
                Some(period.month(key.4)?)
            } else {
                None
            };
            rows.push(ScoreRow {
                group: Some(GroupKey {
                    account: key.0.clone(),
                    portfolio: key.1.clone(),
                    account_manager: key.2.clone(),
                    case_type: key.3,
                    month,
                    agent: String::new(),
                }),
                scores: Some(counts.summary()),
            });
            last = Some(key);
        }
        Ok(QueryScoresResponse {
            rows,
            total: Some(total.summary()),
            next_page_token,
        })
    }

    /// GetClientSatisfaction and BatchGetClientSatisfactions, in the order
    /// asked.
    pub(crate) async fn satisfactions(
        &self,
        ctx: &Ctx,
        names: &[String],
    ) -> Result<Vec<ClientSatisfaction>> {
        let now = clock::from_micros(self.store().now());
        self.satisfactions_at(ctx, names, now).await
    }

    /// Clients' satisfaction as it stood at `now` (a month's end, for its
    /// report; answers are counted by when they were sent).
    pub(crate) async fn satisfactions_at(
        &self,
        ctx: &Ctx,
        names: &[String],
        now: jiff::Timestamp,
    ) -> Result<Vec<ClientSatisfaction>> {
        staff_only(ctx)?;
        if names.is_empty() || names.len() > MAX_BATCH {
            return Err(Error::invalid(
                "names",
                format!("1 to {MAX_BATCH} names, \"accounts/{{account}}/satisfaction\""),
            ));
        }
        let mut accounts = Vec::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            let field = if names.len() == 1 {
                "name".to_string()
            } else {
                format!("names[{i}]")
            };
            let parts = concierge_common::names::parse(&field, n, &["accounts", "satisfaction"]);
            let account = match (parts, n.strip_suffix("/satisfaction")) {
                (_, Some(a))
                    if concierge_common::names::parse(&field, a, &["accounts"]).is_ok() =>
                {
                    a.to_string()
                }
                _ => {
                    return Err(Error::invalid(field, "\"accounts/{account}/satisfaction\""));
                }
            };
            accounts.push(account);
        }
        let current_from = now.checked_sub(WINDOW).unwrap_or(now);
        let previous_from = current_from.checked_sub(WINDOW).unwrap_or(current_from);
        let bounds = [
            clock::to_micros(previous_from),
            clock::to_micros(current_from),
            clock::to_micros(now).saturating_add(1),
        ];
        // The last 12 months in UTC, this one included.
        let this_month = jiff::tz::TimeZone::UTC
            .to_datetime(now)
            .date()
            .first_of_month();
        let first_month = this_month
            .checked_sub(jiff::Span::new().months(11))
            .map_err(Error::internal)?;
        let month_bounds = boundaries(first_month, 12, &jiff::tz::TimeZone::UTC)?;
        let mut pooled = self.db().acquire().await?;
        let windows = count(
            &mut pooled.conn(),
            &[Dimension::Account, Dimension::Month],
            &bounds,
            None,
            Some(&accounts),
        )
        .await?;
        let monthly = count(
            &mut pooled.conn(),
            &[Dimension::Account, Dimension::Month],
            &month_bounds,
            None,
            Some(&accounts),
        )
        .await?;
        let last_responses =
            last_responses(&mut pooled.conn(), &accounts, clock::to_micros(now)).await?;
        let open_plans = open_plans(&mut pooled.conn(), &accounts).await?;
        let (windows, monthly) = (by_account_month(&windows), by_account_month(&monthly));
        let mut out = Vec::with_capacity(accounts.len());
        for (name, account) in names.iter().zip(&accounts) {
            let window = |i: i64| {
                windows
                    .get(&(account.as_str(), i))
                    .cloned()
                    .unwrap_or_default()
            };
            let current_counts = window(1);
            let (previous, current) = (window(0).summary(), current_counts.summary());
            let detractors = current_counts.detractors();
            let last_response = last_responses.get(account).copied();
            let (open_plan_count, open_detractor_plans) =
                open_plans.get(account).copied().unwrap_or_default();
            use client_satisfaction::{Level, Trend};
            let level = if open_detractor_plans > 0 {
                Level::AtRisk
            } else if current.csat_response_count == 0 {
                Level::NoData
            } else if current.csat_percent >= SATISFIED {
                Level::Satisfied
            } else if current.csat_percent >= NEUTRAL {
                Level::Neutral
            } else {
                Level::AtRisk
            };
            let trend = if current.csat_response_count == 0 || previous.csat_response_count == 0 {
                Trend::NoData
            } else if current.csat_percent - previous.csat_percent >= TREND_POINTS {
                Trend::Improving
            } else if previous.csat_percent - current.csat_percent >= TREND_POINTS {
                Trend::Declining
            } else {
                Trend::Stable
            };
            let months: Vec<ScoreRow> = (0..12)
                .map(|i| {
                    let first = first_month
                        .checked_add(jiff::Span::new().months(i))
                        .unwrap_or(first_month);
                    let counts = monthly
                        .get(&(account.as_str(), i))
                        .cloned()
                        .unwrap_or_default();
                    ScoreRow {
                        group: Some(GroupKey {
                            account: account.clone(),
                            month: Some(Month {
                                year: i32::from(first.year()),
                                month: i32::from(first.month()),
                            }),
                            ..Default::default()
                        }),
                        scores: Some(counts.summary()),
                    }
                })
                .collect();
            out.push(ClientSatisfaction {
                name: name.clone(),
                level: level as i32,
                trend: trend as i32,
                window: Some(concierge_common::bounded::Duration::to_proto(WINDOW)),
                current: Some(current),
                previous: Some(previous),
                monthly: months,
                detractor_count: detractors,
                open_corrective_action_plan_count: open_plan_count,
                last_response_time: last_response.and_then(clock::micros_to_proto),
                update_time: Some(clock::to_proto(now)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(kind: SurveyKind, scores: &[i64]) -> Counts {
        let mut c = Counts::default();
        for s in scores {
            c.add(kind as i32, *s, 1);
        }
        c
    }

    #[test]
    fn the_formulas_match_hand_computed_examples() {
        let csat = counts(SurveyKind::Csat15, &[5, 4, 3, 2, 1, 5]).summary();
        assert_eq!(
            (csat.csat_response_count, csat.csat_satisfied_count),
            (6, 3)
        );
        assert_eq!(csat.csat_percent, 50.0);

        let nps = counts(SurveyKind::Nps010, &[10, 9, 8, 7, 6, 0, 10, 10]).summary();
        assert_eq!(
            (
                nps.nps_promoter_count,
                nps.nps_passive_count,
                nps.nps_detractor_count
            ),
            (4, 2, 2)
        );
        assert_eq!(nps.nps, 25.0, "50% promoters - 25% detractors");

        let ces = counts(SurveyKind::Ces17, &[7, 5, 4, 1]).summary();
        assert_eq!(ces.ces_mean, 4.25);
        assert_eq!((ces.ces_agree_count, ces.ces_agree_percent), (2, 50.0));

        let mut all = counts(SurveyKind::Csat15, &[5]);
        all.add(SurveyKind::Csat15 as i32, -1, 3); // sent, not answered
        let s = all.summary();
        assert_eq!((s.sent_count, s.csat_response_count), (4, 1));
        assert_eq!(s.response_rate_percent, 25.0);
        assert_eq!(
            Counts::default().summary().csat_percent,
            0.0,
            "no data, no NaN"
        );
    }

    #[test]
    fn month_boundaries_follow_the_time_zone() {
        let istanbul = jiff::tz::TimeZone::get("Europe/Istanbul").unwrap();
        let b = boundaries(jiff::civil::date(2026, 11, 1), 2, &istanbul).unwrap();
        assert_eq!(
            b.iter()
                .map(|m| clock::from_micros(*m).to_string())
                .collect::<Vec<_>>(),
            vec![
                "2026-10-31T21:00:00Z",
                "2026-11-30T21:00:00Z",
                "2026-12-31T21:00:00Z"
            ]
        );
    }

    #[test]
    fn page_tokens_belong_to_their_query() {
        let key = vec!["accounts/a".to_string(), "staff/x".into(), String::new()];
        let t = page_token("f1", &key);
        assert_eq!(page_after("f1", &t, 3).unwrap(), Some(key));
        assert!(page_after("f2", &t, 3).is_err());
        assert!(page_after("f1", &t, 4).is_err(), "another query's shape");
        assert!(page_after("f1", "!!", 3).is_err());
        assert_eq!(page_after("f1", "", 3).unwrap(), None);
    }
}
