//! The e-mail an escalation sends its target: queued in the transaction that
//! raises it (a timer, so a crash loses none), sent after the commit by
//! whichever replica's sweep claims it, in each recipient's language
//! (English or Turkish), and retried with a growing wait while the staff
//! directory or the mail server cannot be reached.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use concierge_common::clock;
use concierge_common::crud::Store;
use concierge_common::error::{Error, Result};
use concierge_common::mail::{ContentLanguage, SendError, mailbox};
use concierge_common::resource;
use concierge_common::storage::Conn;
use concierge_common::timers::{self, Claimed};
use concierge_proto::concierge::cases::v1::{CasePriority, Escalation};
use concierge_proto::customers::StaffMember;
use lettre::Message;
use lettre::message::header::ContentType;

use crate::resources::ESCALATIONS;
use crate::{Cases, Rules};

/// The timer kind of an escalation's e-mail.
pub(crate) const ESCALATION_MAIL: &str = "escalation_mail";

/// The timer kind of a chase step's notification e-mail.
pub(crate) const NOTIFY_MAIL: &str = "chase_notify_mail";

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        (
            "escalation.en",
            include_str!("../templates/mail/escalation.en.txt"),
        ),
        (
            "escalation.tr",
            include_str!("../templates/mail/escalation.tr.txt"),
        ),
    ] {
        env.add_template(name, source)
            .expect("the mail templates are checked by their unit test");
    }
    env
});

/// Queues `e`'s e-mail in the transaction that raises it, due at once.
pub(crate) async fn queue_escalation(conn: &mut Conn<'_>, e: &Escalation, now: i64) -> Result<()> {
    timers::arm(
        conn,
        &format!("{}:mail", e.name),
        ESCALATION_MAIL,
        &e.name,
        clock::from_micros(now),
        b"",
    )
    .await
}

/// Queues the e-mail of the `action`-th action (a notify) of the chase
/// step `step`, with its text as the step wrote it, in the step's
/// transaction.
pub(crate) async fn queue_notification(
    conn: &mut Conn<'_>,
    step: &str,
    action: usize,
    text: &str,
    now: i64,
) -> Result<()> {
    timers::arm(
        conn,
        &format!("{step}:notify:{action}"),
        NOTIFY_MAIL,
        step,
        clock::from_micros(now),
        text.as_bytes(),
    )
    .await
}

/// The language of `member`'s mail.
fn language_of(member: &StaffMember) -> &'static str {
    concierge_common::mail::language(&member.language_code)
}

/// The subject and body of `e`'s e-mail to `name` in `language`.
pub(crate) fn render(e: &Escalation, name: &str, language: &str) -> Result<(String, String)> {
    let template = TEMPLATES
        .get_template(&format!("escalation.{language}"))
        .map_err(Error::internal)?;
    let priority = CasePriority::try_from(e.case_priority)
        .map(|p| {
            p.as_str_name()
                .trim_start_matches("CASE_PRIORITY_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let raised = e
        .create_time
        .as_ref()
        .and_then(clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let case = e.name.split("/escalations/").next().unwrap_or_default();
    let text = template
        .render(minijinja::context! {
            name,
            case,
            case_title => e.case_title,
            account => e.account,
            priority,
            level => e.level,
            reason => e.reason,
            raiser => e.raiser,
            raised,
            chase_step => e.chase_step,
            escalation => e.name,
        })
        .map_err(Error::internal)?;
    let (subject, body) = text.split_once('\n').unwrap_or((&text, ""));
    Ok((subject.trim().to_string(), body.to_string()))
}

impl Cases {
    /// Sends the escalation e-mails of `claimed`; returns how many went.
    pub(crate) async fn mail_escalations(&self, owner: &str, claimed: &[Claimed]) -> usize {
        let mut sent = 0;
        for timer in claimed {
            match self.mail_escalation(owner, timer).await {
                Ok(n) => sent += n,
                Err(e) => {
                    tracing::warn!(escalation = %timer.subject, error = %e, "escalation e-mail not sent; retrying later");
                    if let Err(e) = self.retry_later(owner, timer).await {
                        tracing::warn!(escalation = %timer.subject, error = %e, "could not reschedule an escalation e-mail");
                    }
                }
            }
        }
        sent
    }

    /// Sends the chase notifications of `claimed`; returns how many went.
    pub(crate) async fn mail_notifications(&self, owner: &str, claimed: &[Claimed]) -> usize {
        let mut sent = 0;
        for timer in claimed {
            match self.mail_notification(owner, timer).await {
                Ok(n) => sent += n,
                Err(e) => {
                    tracing::warn!(step = %timer.subject, error = %e, "chase notification not sent; retrying later");
                    if let Err(e) = self.retry_later(owner, timer).await {
                        tracing::warn!(step = %timer.subject, error = %e, "could not reschedule a chase notification");
                    }
                }
            }
        }
        sent
    }

    /// One notify action's e-mail: to each staff member it named, and to
    /// the active members of each team, the text its step wrote.
    async fn mail_notification(&self, owner: &str, timer: &Claimed) -> Result<usize> {
        use concierge_proto::concierge::cases::v1::ChaseStep;
        let action: usize = timer
            .id
            .rsplit(':')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(usize::MAX);
        let (step, case) = {
            let mut pooled = self.store().db().acquire().await?;
            let mut conn = pooled.conn();
            let step =
                resource::get(&mut conn, &crate::resources::CHASE_STEPS, &timer.subject).await?;
            let case_name = timer
                .subject
                .split("/chaseSteps/")
                .next()
                .unwrap_or_default();
            let case = resource::get(&mut conn, &crate::resources::CASES, case_name).await?;
            (step, case)
        };
        let mut sent = 0;
        if let (Some(step), Some(case), true) = (step, case, self.mail().is_on()) {
            let step: ChaseStep = Store::decode::<ChaseStep, Rules>(&step)?;
            let case: concierge_proto::concierge::cases::v1::Case =
                Store::decode::<_, Rules>(&case)?;
            let recipients = step
                .outcomes
                .get(action)
                .map(|o| o.recipients.clone())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&timer.payload).to_string();
            let from =
                self.mail().from().cloned().ok_or_else(|| {
                    Error::Unavailable("mail was switched off while sending".into())
                })?;
            for who in recipients {
                let (team, staff) = if who.starts_with("staff/") {
                    (String::new(), who)
                } else {
                    (who, String::new())
                };
                let members = self
                    .directory()
                    .escalation_recipients(&team, &staff)
                    .await?;
                for m in members.iter().filter(|m| !m.email.is_empty()) {
                    let message = Message::builder()
                        .from(from.clone())
                        .to(mailbox(&m.display_name, &m.email)?)
                        .subject(format!("[{}] {}", case.name, case.title))
                        .header(ContentType::TEXT_PLAIN)
                        .body(format!("{text}\n\n-- \nConcierge, {}\n", step.name))
                        .map_err(Error::internal)?;
                    match self.mail().send(message).await {
                        Ok(_) => sent += 1,
                        Err(SendError::Retry(why)) => return Err(Error::Unavailable(why)),
                        Err(SendError::Refused(why)) => {
                            tracing::warn!(step = %step.name, error = %why, "the mail server refused a chase notification for good");
                        }
                    }
                }
            }
        }
        let mut tx = self.store().db().begin().await?;
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(sent)
    }

    /// One escalation's e-mail: to its target in its language, or to each
    /// active member of its team, one message per language. Returns how
    /// many messages went.
    async fn mail_escalation(&self, owner: &str, timer: &Claimed) -> Result<usize> {
        let stored = {
            let mut pooled = self.store().db().acquire().await?;
            resource::get(&mut pooled.conn(), &ESCALATIONS, &timer.subject).await?
        };
        let mut sent = 0;
        if let (Some(stored), true) = (stored, self.mail().is_on()) {
            let e: Escalation = Store::decode::<Escalation, Rules>(&stored)?;
            let members = self
                .directory()
                .escalation_recipients(&e.target_team, &e.target_staff_member)
                .await?;
            let mut by_language: BTreeMap<&str, Vec<&StaffMember>> = BTreeMap::new();
            for m in members.iter().filter(|m| !m.email.is_empty()) {
                by_language.entry(language_of(m)).or_default().push(m);
            }
            if by_language.is_empty() {
                tracing::warn!(escalation = %e.name, "nobody to e-mail the escalation to");
            }
            for (language, members) in by_language {
                // One reader is greeted by name; a team, as a team.
                let name = match members.as_slice() {
                    [one] => one.display_name.clone(),
                    _ => e.target_team.clone(),
                };
                let (subject, body) = render(&e, &name, language)?;
                let from = self.mail().from().cloned().ok_or_else(|| {
                    Error::Unavailable("mail was switched off while sending".into())
                })?;
                let mut builder = Message::builder()
                    .from(from)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .header(ContentLanguage(language.to_string()));
                for m in &members {
                    builder = builder.to(mailbox(&m.display_name, &m.email)?);
                }
                let message = builder.body(body).map_err(Error::internal)?;
                match self.mail().send(message).await {
                    Ok(_) => sent += 1,
                    Err(SendError::Retry(why)) => return Err(Error::Unavailable(why)),
                    Err(SendError::Refused(why)) => {
                        tracing::warn!(escalation = %e.name, error = %why, "the mail server refused the escalation e-mail for good");
                    }
                }
            }
        }
        let mut tx = self.store().db().begin().await?;
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(sent)
    }

    /// Moves a message that could not go to a later attempt (see
    /// [`timers::retry_later`]).
    pub(crate) async fn retry_later(&self, owner: &str, timer: &Claimed) -> Result<()> {
        let now = clock::from_micros(self.store().now());
        timers::retry_later(self.store().db(), now, owner, timer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_mail_reads_in_english_and_in_turkish() {
        let e = Escalation {
            name: "cases/c1/escalations/e1".into(),
            level: 2,
            reason: "No ETA after 48 hours".into(),
            raiser: "system/chase-rules".into(),
            chase_step: "cases/c1/chaseSteps/r-2".into(),
            account: "accounts/acme".into(),
            case_title: "Fibre to HQ".into(),
            case_priority: CasePriority::High as i32,
            ..Default::default()
        };
        let (subject, body) = render(&e, "Cem", "en").unwrap();
        assert_eq!(subject, "Escalation (level 2): Fibre to HQ");
        assert!(body.starts_with("Hello Cem,"), "{body}");
        assert!(body.contains("priority high"), "{body}");
        assert!(body.contains("concierge cases escalations ack cases/c1/escalations/e1"));
        let (subject, body) = render(&e, "Cem", "tr").unwrap();
        assert_eq!(subject, "Eskalasyon (2. seviye): Fibre to HQ");
        assert!(body.starts_with("Merhaba Cem,"), "{body}");
        assert!(body.contains("Gerekçe: No ETA after 48 hours"), "{body}");
        let member = |tag: &str| StaffMember {
            language_code: tag.into(),
            ..Default::default()
        };
        assert_eq!(language_of(&member("tr-TR")), "tr");
        assert_eq!(language_of(&member("TR")), "tr");
        assert_eq!(language_of(&member("de")), "en");
        assert_eq!(language_of(&member("")), "en");
    }
}
