//! A survey's life: scheduled when a case resolves (or by hand), sent after
//! its trigger's delay unless its contact was surveyed too recently,
//! answered once through the link in its e-mail, or expired, or withdrawn.
//!
//! - **Scheduling** happens in the transaction that records the case event
//!   in the consumer's inbox, with the survey's send timer: a redelivered
//!   event schedules nothing twice, and each survey is named after the
//!   event and the trigger, so not even a replay past the inbox can.
//! - **Sending** is the timer's: the suppression check, the contact's
//!   address and language (customers service), the e-mail, and only then the
//!   transaction that marks the survey SENT with the SHA-256 of its token.
//!   The token is in the e-mail and nowhere else. A crash between the two
//!   sends the e-mail again with a new token: the contact may get the survey
//!   twice, and only the later link works.
//! - **Answering** takes the token alone and spends it in the transaction
//!   that records the answer.

use std::sync::Arc;

use base64::Engine as _;
use concierge_common::clock;
use concierge_common::crud::{self, Ctx, Store};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::idempotency::Key;
use concierge_common::inbox::{Consumer, Inbox, Subscription};
use concierge_common::kit;
use concierge_common::mail::{ContentLanguage, SendError, mailbox};
use concierge_common::resource::{self, Stored};
use concierge_common::storage::Conn;
use concierge_common::supervise::{Need, Supervisor};
use concierge_common::{on_conn, timers};
use concierge_proto::catalogue::{self, EventOf};
use concierge_proto::concierge::cases::v1::Case;
use concierge_proto::csat::{
    SubmitSurveyResponseRequest, SubmitSurveyResponseResponse, Survey, SurveyInvitation,
    SurveyKind, SurveyResponse, SurveyTemplate, SurveyTrigger, survey, survey_response,
    survey_trigger,
};
use concierge_proto::events::Event;
use jiff::{SignedDuration, Timestamp};
use lettre::Message;
use lettre::message::header::ContentType;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::resources::{
    DEFAULT_DELAY, DEFAULT_RESPONSE_WINDOW, SURVEYS, TEMPLATES, TRIGGERS, duration_or,
};
use crate::{Csat, EVENTS, RULES, Rules, texts};

/// The durable name of the consumer of case events.
pub const CONSUMER: &str = "csat-case-events";
/// The timer kind of a scheduled survey's sending.
pub const SEND: &str = "survey_send";
/// The timer kind of a sent survey's link expiring.
pub const EXPIRE: &str = "survey_expire";
/// A comment's longest length, in characters.
pub const MAX_COMMENT: usize = 4000;
/// The longest token a link carries; anything longer is not one.
const MAX_TOKEN_LEN: usize = 64;

pub fn send_timer(survey: &str) -> String {
    format!("send:{survey}")
}

pub fn expiry_timer(survey: &str) -> String {
    format!("expire:{survey}")
}

/// A fresh response token: 256 random bits, URL-safe.
fn new_token() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// What is stored of a token: its SHA-256, hex.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The one answer to every link that does not work, whatever the reason, so
/// a guesser learns nothing.
fn link_not_valid() -> Error {
    Error::NotFound {
        resource_type: "Survey",
        name: "this survey link: it is unknown, expired, already answered or withdrawn".into(),
    }
}

fn shaped_like_a_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn state_of(s: &Survey) -> survey::State {
    survey::State::try_from(s.state).unwrap_or(survey::State::Unspecified)
}

/// How a new survey is scheduled.
pub(crate) struct Schedule {
    pub survey: Survey,
    pub case_title: String,
    pub suppression_days: i32,
    pub response_window: SignedDuration,
}

/// Writes a new SCHEDULED survey with its send timer and its
/// `survey_scheduled` event, in the caller's transaction.
pub(crate) async fn insert_scheduled(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    mut schedule: Schedule,
    now: i64,
) -> Result<Survey> {
    let s = &mut schedule.survey;
    s.state = survey::State::Scheduled as i32;
    let due = s
        .schedule_time
        .as_ref()
        .and_then(clock::from_proto)
        .unwrap_or_else(|| clock::from_micros(now));
    let stored = Stored {
        name: s.name.clone(),
        parent: String::new(),
        account: s.account.clone(),
        create_time: now,
        update_time: now,
        delete_time: 0,
        revision: 1,
        body: crud::strip_meta::<Survey, Rules>(s),
    };
    resource::insert(
        conn,
        &SURVEYS,
        &stored,
        &concierge_common::crud::Resource::<Rules>::columns(s),
    )
    .await?;
    on_conn!(conn, c => sqlx::query(
        "UPDATE surveys SET suppression_days = $1, response_window_seconds = $2, case_title = $3 WHERE name = $4",
    )
    .bind(i64::from(schedule.suppression_days))
    .bind(schedule.response_window.as_secs())
    .bind(&schedule.case_title)
    .bind(&s.name)
    .execute(&mut **c)
    .await?
    .rows_affected());
    concierge_common::crud::Resource::<Rules>::set_meta(s, now, now, stored.etag());
    timers::arm(conn, &send_timer(&s.name), SEND, &s.name, due, b"").await?;
    crud::record_event(
        conn,
        &RULES,
        ctx,
        EVENTS,
        catalogue::csat::SURVEY_SCHEDULED,
        s,
        now,
    )
    .await?;
    Ok(schedule.survey)
}

/// Writes `after` over `stored` (read with a lock in the caller's
/// transaction) as a new revision, with what leaving its old state drops
/// and the event that announces it.
pub(crate) async fn write(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    stored: &Stored,
    before: &Survey,
    mut after: Survey,
    event: EventOf<Survey>,
    now: i64,
) -> Result<Survey> {
    use concierge_common::crud::{Lifecycle, Resource};
    let now = now.max(stored.update_time);
    let next = Stored {
        update_time: now,
        revision: stored.revision + 1,
        body: crud::strip_meta::<Survey, Rules>(&after),
        ..stored.clone()
    };
    resource::update(conn, &SURVEYS, &next, stored.revision, &after.columns()).await?;
    after.set_meta(next.create_time, next.update_time, next.etag());
    RULES
        .after_write(conn, ctx, Some(before), &after, now)
        .await?;
    crud::record_event(conn, &RULES, ctx, EVENTS, event, &after, now).await?;
    Ok(after)
}

/// Withdraws the SCHEDULED surveys whose `column` is `value` (a case
/// reopened, a trigger deleted), each with its `survey_cancelled` event.
pub(crate) async fn cancel_scheduled(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    column: &'static str,
    value: &str,
    why: &str,
    now: i64,
) -> Result<usize> {
    let column = match column {
        "case_name" => "case_name",
        _ => "survey_trigger",
    };
    let sql = format!("SELECT name FROM surveys WHERE {column} = $1 AND state = $2 ORDER BY name");
    let names: Vec<String> = on_conn!(conn, c => sqlx::query_scalar(&sql)
        .bind(value)
        .bind(i64::from(survey::State::Scheduled as i32))
        .fetch_all(&mut **c)
        .await?);
    let mut cancelled = 0;
    for name in names {
        let Some(stored) = resource::get_for_update(conn, &SURVEYS, &name).await? else {
            continue;
        };
        let before: Survey = Store::decode::<Survey, Rules>(&stored)?;
        if state_of(&before) != survey::State::Scheduled {
            continue;
        }
        let mut after = before.clone();
        after.state = survey::State::Cancelled as i32;
        write(
            conn,
            ctx,
            &stored,
            &before,
            after,
            catalogue::csat::SURVEY_CANCELLED,
            now,
        )
        .await?;
        tracing::info!(survey = %name, why, "scheduled survey withdrawn");
        cancelled += 1;
    }
    Ok(cancelled)
}

/// The consumer of the cases service's events: a resolved or closed case
/// schedules the surveys of the triggers that match it; a reopened one
/// withdraws those not sent yet.
pub struct CaseEvents {
    csat: Csat,
}

impl CaseEvents {
    pub fn new(csat: Csat) -> Self {
        Self { csat }
    }
}

impl Consumer for CaseEvents {
    fn subscription(&self) -> Subscription {
        Subscription::new(
            CONSUMER,
            "cases",
            &[
                catalogue::cases::CASE_RESOLVED.event_type(),
                catalogue::cases::CASE_CLOSED.event_type(),
                catalogue::cases::CASE_REOPENED.event_type(),
            ],
        )
    }

    async fn handle(&self, event: &Event, inbox: Inbox<'_>) -> Result<()> {
        let case: Case = concierge_common::outbox::unpack(event)?;
        let ctx = Ctx::system(CONSUMER, &event.request_id);
        let now = self.csat.store().now();
        let trigger_event = if event.r#type == catalogue::cases::CASE_RESOLVED.event_type() {
            survey_trigger::Event::CaseResolved
        } else if event.r#type == catalogue::cases::CASE_CLOSED.event_type() {
            survey_trigger::Event::CaseClosed
        } else {
            let Some(mut tx) = inbox.begin().await? else {
                return Ok(());
            };
            let n = cancel_scheduled(
                &mut tx.conn(),
                &ctx,
                "case_name",
                &case.name,
                "the case was reopened",
                now,
            )
            .await?;
            tx.commit().await?;
            if n > 0 {
                self.csat.store().nudge();
            }
            return Ok(());
        };
        let occurred = event
            .occur_time
            .as_ref()
            .and_then(clock::from_proto)
            .unwrap_or_else(|| clock::from_micros(now));
        let Some(mut tx) = inbox.begin().await? else {
            return Ok(());
        };
        let mut scheduled = 0;
        for trigger in enabled_triggers(&mut tx.conn(), trigger_event).await? {
            if !trigger.case_types.is_empty() && !trigger.case_types.contains(&case.r#type) {
                continue;
            }
            if case.contact.is_empty() {
                tracing::info!(case = %case.name, trigger = %trigger.name, "no survey: the case names no contact");
                continue;
            }
            let Some(template) =
                resource::get(&mut tx.conn(), &TEMPLATES, &trigger.survey_template).await?
            else {
                continue;
            };
            let template: SurveyTemplate = Store::decode::<SurveyTemplate, Rules>(&template)?;
            let delay = duration_or(&trigger.delay, DEFAULT_DELAY);
            let window = duration_or(&trigger.response_window, DEFAULT_RESPONSE_WINDOW);
            let due = occurred.saturating_add(delay).unwrap_or(occurred);
            // A new consumer reads the stream's 30 days: a case resolved
            // longer ago than its link would live is not surveyed now.
            if due.saturating_add(window).unwrap_or(due) < clock::from_micros(now) {
                continue;
            }
            let name = format!("surveys/{}", derived_id(&event.id, &trigger.name));
            if resource::get(&mut tx.conn(), &SURVEYS, &name)
                .await?
                .is_some()
            {
                continue;
            }
            let survey = Survey {
                name,
                survey_template: template.name.clone(),
                kind: template.kind,
                survey_trigger: trigger.name.clone(),
                r#case: case.name.clone(),
                case_type: case.r#type,
                contact: case.contact.clone(),
                account: case.account.clone(),
                account_manager: case.account_manager.clone(),
                schedule_time: Some(clock::to_proto(due)),
                ..Default::default()
            };
            insert_scheduled(
                &mut tx.conn(),
                &ctx,
                Schedule {
                    survey,
                    case_title: case.title.clone(),
                    suppression_days: trigger.suppression_days,
                    response_window: window,
                },
                now,
            )
            .await?;
            scheduled += 1;
        }
        tx.commit().await?;
        if scheduled > 0 {
            self.csat.store().nudge();
            tracing::info!(case = %case.name, surveys = scheduled, "surveys scheduled");
        }
        Ok(())
    }
}

/// A survey id that one event and one trigger always give.
fn derived_id(event_id: &str, trigger: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}\n{trigger}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

async fn enabled_triggers(
    conn: &mut Conn<'_>,
    event: survey_trigger::Event,
) -> Result<Vec<SurveyTrigger>> {
    let names: Vec<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM survey_triggers WHERE event = $1 AND enabled = 1 ORDER BY name",
    )
    .bind(i64::from(event as i32))
    .fetch_all(&mut **c)
    .await?);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    resource::get_many(conn, &TRIGGERS, &refs)
        .await?
        .iter()
        .map(Store::decode::<SurveyTrigger, Rules>)
        .collect()
}

/// The longest suppression any enabled trigger sets: what a survey sent
/// by hand is held to.
pub(crate) async fn longest_suppression(conn: &mut Conn<'_>) -> Result<i32> {
    let mut longest = 0;
    for event in [
        survey_trigger::Event::CaseResolved,
        survey_trigger::Event::CaseClosed,
    ] {
        for t in enabled_triggers(conn, event).await? {
            longest = longest.max(t.suppression_days);
        }
    }
    Ok(longest)
}

/// What the send timer reads of a survey row besides the resource.
struct Pending {
    stored: Stored,
    survey: Survey,
    suppression_days: i64,
    response_window: SignedDuration,
    case_title: String,
}

async fn pending(conn: &mut Conn<'_>, name: &str) -> Result<Option<Pending>> {
    let Some(stored) = resource::get(conn, &SURVEYS, name).await? else {
        return Ok(None);
    };
    let survey: Survey = Store::decode::<Survey, Rules>(&stored)?;
    let (suppression_days, window, case_title): (i64, i64, String) = on_conn!(conn, c => sqlx::query_as(
        "SELECT suppression_days, response_window_seconds, case_title FROM surveys WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut **c)
    .await?);
    Ok(Some(Pending {
        stored,
        survey,
        suppression_days,
        response_window: SignedDuration::from_secs(window.max(0)),
        case_title,
    }))
}

/// The latest survey sent to `contact` since `since`, other than `except`.
async fn recent_survey(
    conn: &mut Conn<'_>,
    contact: &str,
    except: &str,
    since: i64,
) -> Result<Option<String>> {
    Ok(on_conn!(conn, c => sqlx::query_scalar(
        "SELECT name FROM surveys WHERE contact = $1 AND send_time >= $2 AND send_time > 0 AND name <> $3 \
         ORDER BY send_time DESC, name LIMIT 1",
    )
    .bind(contact)
    .bind(since)
    .bind(except)
    .fetch_optional(&mut **c)
    .await?))
}

/// How one send attempt ended.
enum Attempt {
    /// The survey is no longer waiting to go out.
    Gone,
    Suppressed,
    Cancelled,
    Mailed,
}

impl Csat {
    /// Claims the survey timers due at `now` and works them: sends, expires.
    /// Returns how many surveys changed.
    pub async fn sweep(&self, owner: &str, now: Timestamp) -> Result<usize> {
        let due = timers::claim_due(self.db(), now, owner, timers::LEASE, 100).await?;
        let mut changed = 0;
        for timer in due {
            let outcome = match timer.kind.as_str() {
                SEND => self.send(owner, &timer).await.map(|s| match s {
                    Attempt::Gone => 0,
                    _ => 1,
                }),
                EXPIRE => self.expire(owner, &timer).await,
                crate::plans::DUE => self.plan_due(owner, &timer).await,
                crate::report::REPORT_MAIL => self.mail_report(owner, &timer).await,
                crate::report::REPORT_TICK => self.monthly_run(owner, &timer).await,
                other => {
                    tracing::warn!(
                        kind = other,
                        "a timer of no kind this service knows; dropped"
                    );
                    let mut tx = self.db().begin().await?;
                    timers::complete(&mut tx, owner, &timer).await?;
                    tx.commit().await?;
                    Ok(0)
                }
            };
            match outcome {
                Ok(n) => changed += n,
                Err(e) => {
                    tracing::warn!(survey = %timer.subject, error = %e, "survey not sent; retrying later");
                    timers::retry_later(self.db(), now, owner, &timer).await?;
                }
            }
        }
        if changed > 0 {
            self.store().nudge();
        }
        Ok(changed)
    }

    async fn send(&self, owner: &str, timer: &timers::Claimed) -> Result<Attempt> {
        let ctx = Ctx::system("csat", "");
        let now = self.store().now();
        let p = {
            let mut pooled = self.db().acquire().await?;
            pending(&mut pooled.conn(), &timer.subject).await?
        };
        let Some(p) = p.filter(|p| state_of(&p.survey) == survey::State::Scheduled) else {
            let mut tx = self.db().begin().await?;
            timers::complete(&mut tx, owner, timer).await?;
            tx.commit().await?;
            return Ok(Attempt::Gone);
        };
        if p.suppression_days > 0 {
            let since = now.saturating_sub(p.suppression_days.saturating_mul(86_400_000_000));
            let recent = {
                let mut pooled = self.db().acquire().await?;
                recent_survey(&mut pooled.conn(), &p.survey.contact, &p.survey.name, since).await?
            };
            if let Some(by) = recent {
                return self
                    .settle(owner, timer, &ctx, now, move |s| {
                        s.state = survey::State::Suppressed as i32;
                        s.suppressed_by = by;
                        Some(catalogue::csat::SURVEY_SUPPRESSED)
                    })
                    .await
                    .map(|_| Attempt::Suppressed);
            }
        }
        let contact = match self.peers().contact("", "contact", &p.survey.contact).await {
            Ok(c) if !c.email.is_empty() => c,
            Ok(_) | Err(Error::InvalidArgument(_)) => {
                tracing::warn!(survey = %p.survey.name, contact = %p.survey.contact, "survey withdrawn: its contact is gone or has no e-mail address");
                return self
                    .settle(owner, timer, &ctx, now, |s| {
                        s.state = survey::State::Cancelled as i32;
                        Some(catalogue::csat::SURVEY_CANCELLED)
                    })
                    .await
                    .map(|_| Attempt::Cancelled);
            }
            Err(e) => return Err(e),
        };
        let account = match self.peers().account("", "account", &p.survey.account).await {
            Ok(a) => a.display_name,
            Err(Error::InvalidArgument(_)) => p.survey.account.clone(),
            Err(e) => return Err(e),
        };
        let template = {
            let mut pooled = self.db().acquire().await?;
            resource::get(&mut pooled.conn(), &TEMPLATES, &p.survey.survey_template).await?
        };
        let Some(template) = template else {
            tracing::warn!(survey = %p.survey.name, "survey withdrawn: its template is gone");
            return self
                .settle(owner, timer, &ctx, now, |s| {
                    s.state = survey::State::Cancelled as i32;
                    Some(catalogue::csat::SURVEY_CANCELLED)
                })
                .await
                .map(|_| Attempt::Cancelled);
        };
        let template: SurveyTemplate = Store::decode::<SurveyTemplate, Rules>(&template)?;
        let Some(text) = texts::pick(&template, &contact.language_code).cloned() else {
            return Err(Error::internal(anyhow::anyhow!(
                "{} has no texts",
                template.name
            )));
        };
        let kind = SurveyKind::try_from(template.kind).unwrap_or(SurveyKind::Unspecified);
        let (min_score, max_score) = texts::scale(kind).unwrap_or((0, 0));
        let expire = clock::from_micros(now)
            .saturating_add(p.response_window)
            .unwrap_or_else(|_| clock::from_micros(now));
        let invitation = SurveyInvitation {
            kind: template.kind,
            min_score,
            max_score,
            language_code: text.language_code.clone(),
            question: text.question.clone(),
            scale_low_label: text.scale_low_label.clone(),
            scale_high_label: text.scale_high_label.clone(),
            comment_enabled: template.comment_enabled,
            comment_prompt: text.comment_prompt.clone(),
            case_title: p.case_title.clone(),
            expire_time: Some(clock::to_proto(expire)),
        };
        let token = new_token();
        let link = self.link(&token);
        let (subject, body) = texts::render_mail(
            &text,
            &texts::MailFacts {
                link: &link,
                case_title: &p.case_title,
                account: &account,
                contact_name: &contact.display_name,
                expire_date: &expire.strftime("%Y-%m-%d").to_string(),
            },
        )?;
        let from = self.mail().from().cloned().ok_or_else(|| {
            Error::Unavailable(
                "no mail server is configured (mail.smtp_url): surveys wait until one is".into(),
            )
        })?;
        let message = Message::builder()
            .from(from)
            .to(mailbox(&contact.display_name, &contact.email)?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .header(ContentLanguage(text.language_code.clone()))
            .body(body)
            .map_err(Error::internal)?;
        match self.mail().send(message).await {
            Ok(_) => {}
            Err(SendError::Retry(why)) => return Err(Error::Unavailable(why)),
            Err(SendError::Refused(why)) => {
                tracing::warn!(survey = %p.survey.name, error = %why, "survey withdrawn: the mail server refused its address for good");
                return self
                    .settle(owner, timer, &ctx, now, |s| {
                        s.state = survey::State::Cancelled as i32;
                        Some(catalogue::csat::SURVEY_CANCELLED)
                    })
                    .await
                    .map(|_| Attempt::Cancelled);
            }
        }
        let hash = token_hash(&token);
        let language = text.language_code.clone();
        let thank_you = text.thank_you_message.clone();
        let mut tx = self.db().begin().await?;
        let Some(stored) =
            resource::get_for_update(&mut tx.conn(), &SURVEYS, &p.stored.name).await?
        else {
            return Ok(Attempt::Gone);
        };
        let before: Survey = Store::decode::<Survey, Rules>(&stored)?;
        if state_of(&before) != survey::State::Scheduled {
            // Withdrawn while its e-mail went out: the link does not work.
            timers::complete(&mut tx, owner, timer).await?;
            tx.commit().await?;
            return Ok(Attempt::Gone);
        }
        let mut after = before.clone();
        after.state = survey::State::Sent as i32;
        after.send_time = Some(clock::to_proto(clock::from_micros(now)));
        after.expire_time = Some(clock::to_proto(expire));
        after.language_code = language;
        write(
            &mut tx.conn(),
            &ctx,
            &stored,
            &before,
            after,
            catalogue::csat::SURVEY_SENT,
            now,
        )
        .await?;
        on_conn!(&mut tx.conn(), c => sqlx::query(
            "UPDATE surveys SET token_hash = $1, invitation = $2, thank_you = $3 WHERE name = $4",
        )
        .bind(&hash)
        .bind(invitation.encode_to_vec())
        .bind(&thank_you)
        .bind(&p.stored.name)
        .execute(&mut **c)
        .await?
        .rows_affected());
        timers::arm(
            &mut tx.conn(),
            &expiry_timer(&p.stored.name),
            EXPIRE,
            &p.stored.name,
            expire,
            b"",
        )
        .await?;
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(Attempt::Mailed)
    }

    /// Moves a SCHEDULED survey on without sending it (suppressed,
    /// withdrawn) and completes its timer, in one transaction.
    async fn settle(
        &self,
        owner: &str,
        timer: &timers::Claimed,
        ctx: &Ctx,
        now: i64,
        change: impl FnOnce(&mut Survey) -> Option<EventOf<Survey>>,
    ) -> Result<()> {
        let mut tx = self.db().begin().await?;
        if let Some(stored) =
            resource::get_for_update(&mut tx.conn(), &SURVEYS, &timer.subject).await?
        {
            let before: Survey = Store::decode::<Survey, Rules>(&stored)?;
            if state_of(&before) == survey::State::Scheduled {
                let mut after = before.clone();
                if let Some(event) = change(&mut after) {
                    write(&mut tx.conn(), ctx, &stored, &before, after, event, now).await?;
                }
            }
        }
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn expire(&self, owner: &str, timer: &timers::Claimed) -> Result<usize> {
        let ctx = Ctx::system("csat", "");
        let now = self.store().now();
        let mut tx = self.db().begin().await?;
        let mut expired = 0;
        if let Some(stored) =
            resource::get_for_update(&mut tx.conn(), &SURVEYS, &timer.subject).await?
        {
            let before: Survey = Store::decode::<Survey, Rules>(&stored)?;
            let due = before
                .expire_time
                .as_ref()
                .and_then(clock::from_proto)
                .map(clock::to_micros)
                .unwrap_or(0);
            if state_of(&before) == survey::State::Sent && due <= now {
                let mut after = before.clone();
                after.state = survey::State::Expired as i32;
                write(
                    &mut tx.conn(),
                    &ctx,
                    &stored,
                    &before,
                    after,
                    catalogue::csat::SURVEY_EXPIRED,
                    now,
                )
                .await?;
                expired = 1;
            }
        }
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(expired)
    }

    /// The survey a working link opens, locked when `lock`; `None` for a
    /// link that does not work (unknown, spent, withdrawn, expired).
    async fn by_token(
        &self,
        conn: &mut Conn<'_>,
        hash: &str,
        lock: bool,
    ) -> Result<Option<(Stored, Survey, SurveyInvitation, String)>> {
        let row: Option<(String, Option<Vec<u8>>, String)> = on_conn!(conn, c => sqlx::query_as(
            "SELECT name, invitation, thank_you FROM surveys WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&mut **c)
        .await?);
        let Some((name, invitation, thank_you)) = row else {
            return Ok(None);
        };
        let stored = if lock {
            resource::get_for_update(conn, &SURVEYS, &name).await?
        } else {
            resource::get(conn, &SURVEYS, &name).await?
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        let survey: Survey = Store::decode::<Survey, Rules>(&stored)?;
        let now = self.store().now();
        let open = state_of(&survey) == survey::State::Sent
            && survey
                .expire_time
                .as_ref()
                .and_then(clock::from_proto)
                .is_some_and(|t| clock::to_micros(t) > now);
        if !open {
            return Ok(None);
        }
        let invitation = SurveyInvitation::decode(invitation.unwrap_or_default().as_slice())
            .map_err(Error::internal)?;
        Ok(Some((stored, survey, invitation, thank_you)))
    }

    /// What the response page shows for a link.
    pub(crate) async fn invitation(&self, token: &str) -> Result<SurveyInvitation> {
        if token.is_empty() {
            return Err(Error::invalid(
                "response_token",
                "required: the token from the survey link",
            ));
        }
        if !shaped_like_a_token(token) {
            return Err(link_not_valid());
        }
        let mut pooled = self.db().acquire().await?;
        self.by_token(&mut pooled.conn(), &token_hash(token), false)
            .await?
            .map(|(_, _, invitation, _)| invitation)
            .ok_or_else(link_not_valid)
    }

    /// Records the answer a link carries and spends the link.
    pub(crate) async fn answer(
        &self,
        req: SubmitSurveyResponseRequest,
    ) -> Result<SubmitSurveyResponseResponse> {
        let token = req.response_token.clone();
        if token.is_empty() {
            return Err(Error::invalid(
                "response_token",
                "required: the token from the survey link",
            ));
        }
        if !shaped_like_a_token(&token) {
            return Err(link_not_valid());
        }
        if req.comment.chars().count() > MAX_COMMENT {
            return Err(Error::invalid(
                "comment",
                format!("at most {MAX_COMMENT} characters"),
            ));
        }
        let hash = token_hash(&token);
        let hashed = SubmitSurveyResponseRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let key = Key::new(
            &format!("survey-link:{hash}"),
            &req.request_id,
            "SubmitSurveyResponse",
            &hashed,
        )?;
        let ctx = Ctx::system("survey-link", &req.request_id);
        let mut tx = self.db().begin().await?;
        if let Some(key) = &key
            && let Some(first) = key
                .replay::<SubmitSurveyResponseResponse>(&mut tx.conn())
                .await?
        {
            return Ok(first);
        }
        let Some((stored, before, invitation, thank_you)) =
            self.by_token(&mut tx.conn(), &hash, true).await?
        else {
            return Err(link_not_valid());
        };
        let mut v = Violations::new();
        if !(invitation.min_score..=invitation.max_score).contains(&req.score) {
            v.add(
                "score",
                format!(
                    "from {} to {} on this survey's scale",
                    invitation.min_score, invitation.max_score
                ),
            );
        }
        if !invitation.comment_enabled && !req.comment.trim().is_empty() {
            v.add("comment", "this survey asks for no comment");
        }
        v.into_result()?;
        let kind = SurveyKind::try_from(before.kind).unwrap_or(SurveyKind::Unspecified);
        let sentiment = texts::sentiment(kind, req.score);
        let now = self.store().now();
        let language = if req.language_code.is_empty() {
            invitation.language_code.clone()
        } else {
            concierge_common::mail::language(&req.language_code).to_string()
        };
        let mut after = before.clone();
        after.state = survey::State::Answered as i32;
        after.detractor = sentiment == survey_response::Sentiment::Negative;
        after.response = Some(SurveyResponse {
            score: req.score,
            comment: req.comment.trim().to_string(),
            language_code: language,
            sentiment: sentiment as i32,
            submit_time: Some(clock::to_proto(clock::from_micros(now))),
        });
        // A detractor's plan is opened with the answer, named first so that
        // the survey points at it.
        let plan = after
            .detractor
            .then(|| format!("correctiveActionPlans/{}", uuid::Uuid::now_v7()));
        if let Some(plan) = &plan {
            after.corrective_action_plan = plan.clone();
        }
        let after = write(
            &mut tx.conn(),
            &ctx,
            &stored,
            &before,
            after,
            catalogue::csat::SURVEY_ANSWERED,
            now,
        )
        .await?;
        if let Some(plan) = plan {
            crud::record_event(
                &mut tx.conn(),
                &RULES,
                &ctx,
                EVENTS,
                catalogue::csat::DETRACTOR_DETECTED,
                &after,
                now,
            )
            .await?;
            crate::plans::open_for_detractor(
                &mut tx.conn(),
                &ctx,
                &after,
                &invitation.case_title,
                plan,
                now,
            )
            .await?;
        }
        let reply = SubmitSurveyResponseResponse {
            thank_you_message: if thank_you.is_empty() {
                match invitation.language_code.as_str() {
                    "tr" => "Yanıtınız için teşekkür ederiz.".into(),
                    _ => "Thank you for your answer.".into(),
                }
            } else {
                thank_you
            },
        };
        if let Some(key) = &key
            && !key.save_first(&mut tx.conn(), &reply, now).await?
        {
            return Err(concierge_common::idempotency::in_progress(key));
        }
        tx.commit().await?;
        self.store().nudge();
        Ok(reply)
    }

    /// A survey sent by hand about a case: scheduled now, held to the
    /// suppression of the triggers.
    pub(crate) async fn create_by_hand(
        &self,
        ctx: &Ctx,
        req: concierge_proto::csat::CreateSurveyRequest,
    ) -> Result<Survey> {
        use concierge_common::crud::{Authorize, Resource};
        Authorize::<Survey>::may_attempt_write(&RULES, &ctx.principal, "")?;
        let hashed = concierge_common::without_request_id!(req);
        let mut v = Violations::new();
        let id = v.check(concierge_common::names::new_id("survey_id", &req.survey_id));
        let Some(mut s) = req.survey.clone() else {
            return Err(Error::invalid("survey", "required"));
        };
        s.clear_output_only();
        s.check(&mut v);
        v.into_result()?;
        let key = Key::new(
            &ctx.principal.subject,
            &req.request_id,
            "CreateSurvey",
            &hashed,
        )?;
        if let Some(key) = &key {
            let mut pooled = self.db().acquire().await?;
            if let Some(first) = key.replay::<Survey>(&mut pooled.conn()).await? {
                return Ok(first);
            }
        }
        let case = self
            .peers()
            .case(&ctx.request_id, "survey.case", &s.r#case)
            .await?;
        if s.contact.is_empty() {
            s.contact = case.contact.clone();
        }
        if s.contact.is_empty() {
            return Err(Error::invalid(
                "survey.contact",
                format!("{} names no contact: name the contact to survey", case.name),
            ));
        }
        if !s
            .contact
            .starts_with(&format!("{}/contacts/", case.account))
        {
            return Err(Error::invalid(
                "survey.contact",
                format!("a contact of {}, the case's account", case.account),
            ));
        }
        let now = self.store().now();
        let mut tx = self.db().begin().await?;
        let template = resource::get(&mut tx.conn(), &TEMPLATES, &s.survey_template)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "survey.survey_template",
                    format!("{} does not exist", s.survey_template),
                )
            })?;
        let template: SurveyTemplate = Store::decode::<SurveyTemplate, Rules>(&template)?;
        let suppression_days = longest_suppression(&mut tx.conn()).await?;
        s.name = format!("surveys/{}", id.unwrap_or_default());
        s.kind = template.kind;
        s.case_type = case.r#type;
        s.account = case.account.clone();
        s.account_manager = case.account_manager.clone();
        s.schedule_time = Some(clock::to_proto(clock::from_micros(now)));
        let created = insert_scheduled(
            &mut tx.conn(),
            ctx,
            Schedule {
                survey: s,
                case_title: case.title.clone(),
                suppression_days,
                response_window: DEFAULT_RESPONSE_WINDOW,
            },
            now,
        )
        .await?;
        if let Some(key) = &key
            && !key.save_first(&mut tx.conn(), &created, now).await?
        {
            return Err(concierge_common::idempotency::in_progress(key));
        }
        tx.commit().await?;
        self.store().nudge();
        Ok(created)
    }

    /// Withdraws a scheduled or sent survey; its link stops working.
    pub(crate) async fn cancel(
        &self,
        ctx: &Ctx,
        req: concierge_proto::csat::CancelSurveyRequest,
    ) -> Result<Survey> {
        let hashed = concierge_common::without_request_id!(req);
        let key = Key::new(
            &ctx.principal.subject,
            &req.request_id,
            "CancelSurvey",
            &hashed,
        )?;
        let subject = req.name.clone();
        let survey = self
            .store()
            .change_once::<Survey, _>(
                &RULES,
                ctx,
                key,
                &req.name,
                &req.etag,
                catalogue::csat::SURVEY_CANCELLED,
                false,
                move |s, _| {
                    let state = state_of(s);
                    if !matches!(state, survey::State::Scheduled | survey::State::Sent) {
                        return Err(Error::FailedPrecondition {
                            reason: Reason::IllegalTransition,
                            subject,
                            description: format!(
                                "the survey is {}: only a scheduled or sent survey is withdrawn",
                                state.as_str_name()
                            ),
                        });
                    }
                    s.state = survey::State::Cancelled as i32;
                    Ok(())
                },
            )
            .await?;
        if !req.reason.is_empty() {
            tracing::info!(survey = %survey.name, reason = %req.reason, "survey withdrawn by hand");
        }
        Ok(survey)
    }
}

/// Runs the survey timers on every replica and the consumer of case events.
pub(crate) fn supervise(svc: &Csat, supervisor: &Supervisor, workers: &kit::Workers) {
    let (this, owner, poll) = (svc.clone(), workers.instance.clone(), workers.poll);
    supervisor.spawn("csat-survey-sweep", Need::Required, move || {
        let (svc, owner) = (this.clone(), owner.clone());
        async move {
            loop {
                let now = clock::from_micros(svc.store().now());
                if let Err(e) = svc.sweep(&owner, now).await {
                    tracing::warn!(error = %e, "sweeping survey timers failed");
                }
                tokio::time::sleep(poll).await;
            }
        }
    });
    concierge_common::inbox::supervise(
        supervisor,
        svc.db(),
        workers.bus.as_ref(),
        Arc::new(CaseEvents::new(svc.clone())),
        svc.store().clock().clone(),
    );
    concierge_common::inbox::supervise(
        supervisor,
        svc.db(),
        workers.bus.as_ref(),
        Arc::new(crate::scores::AccountPortfolios::new(svc.clone())),
        svc.store().clock().clone(),
    );
    concierge_common::inbox::supervise(
        supervisor,
        svc.db(),
        workers.bus.as_ref(),
        Arc::new(crate::kpis::CaseFacts::new(svc.clone())),
        svc.store().clock().clone(),
    );
    concierge_common::inbox::supervise(
        supervisor,
        svc.db(),
        workers.bus.as_ref(),
        Arc::new(crate::kpis::DisputeFacts::new(svc.clone())),
        svc.store().clock().clone(),
    );
}
