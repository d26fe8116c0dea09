//! The company's position, e-mailed to the client: queued in the
//! transaction that publishes it (a timer, so a crash loses none), sent
//! after the commit by whichever replica's sweep claims it, to every contact
//! the position names in the contact's language (English or Turkish), and
//! retried with a growing wait while the mail server or the customers
//! service cannot be reached.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use concierge_common::crud::Store;
use concierge_common::error::{Error, Result};
use concierge_common::mail::{ContentLanguage, SendError, language, mailbox};
use concierge_common::storage::Conn;
use concierge_common::timers::{self, Claimed};
use concierge_common::{clock, money, resource};
use concierge_proto::customers::Contact;
use concierge_proto::disputes::{Dispute, dispute};
use lettre::Message;
use lettre::message::header::ContentType;

use crate::resources::DISPUTES;
use crate::{Disputes, Rules};

/// The timer kind of a published position's e-mail.
pub(crate) const POSITION_MAIL: &str = "position_mail";

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        (
            "position.en",
            include_str!("../templates/mail/position.en.txt"),
        ),
        (
            "position.tr",
            include_str!("../templates/mail/position.tr.txt"),
        ),
    ] {
        env.add_template(name, source)
            .expect("the mail templates are checked by their unit test");
    }
    env
});

/// Queues the e-mail of the position `d` now carries, in the transaction
/// that publishes it, due at once. Its text travels with the timer, so a
/// later position does not change what this one said.
pub(crate) async fn queue_position(conn: &mut Conn<'_>, d: &Dispute, now: i64) -> Result<()> {
    let message = d
        .position
        .as_ref()
        .map(|p| p.message.as_str())
        .unwrap_or_default();
    timers::arm(
        conn,
        &format!("{}:position:{now}", d.name),
        POSITION_MAIL,
        &d.name,
        clock::from_micros(now),
        message.as_bytes(),
    )
    .await
}

/// The outcome in the reader's words.
fn outcome(state: dispute::State, language: &str) -> &'static str {
    use dispute::State as S;
    match (state, language) {
        (S::Approved, "tr") => "tamamen kabul edildi",
        (S::Approved, _) => "approved in full",
        (S::PartiallyApproved, "tr") => "kısmen kabul edildi",
        (S::PartiallyApproved, _) => "approved in part",
        (S::Denied, "tr") => "reddedildi",
        (S::Denied, _) => "denied",
        (S::CreditIssued | S::ClientConfirmed | S::Closed, "tr") => "alacak kaydedildi",
        (S::CreditIssued | S::ClientConfirmed | S::Closed, _) => "credit issued",
        (_, "tr") => "inceleniyor",
        _ => "under review",
    }
}

/// The subject and body of the position `message` on `d`, to `name`, in
/// `language`.
pub(crate) fn render(
    d: &Dispute,
    message: &str,
    name: &str,
    language: &str,
) -> Result<(String, String)> {
    let template = TEMPLATES
        .get_template(&format!("position.{language}"))
        .map_err(Error::internal)?;
    let state = dispute::State::try_from(d.state).unwrap_or(dispute::State::Unspecified);
    let date = |c: &Option<concierge_proto::disputes::CalendarDate>| {
        c.as_ref()
            .map(|c| format!("{:04}-{:02}-{:02}", c.year, c.month, c.day))
            .unwrap_or_default()
    };
    let period = d
        .invoice_period
        .as_ref()
        .map(|p| format!("{} – {}", date(&p.start_date), date(&p.end_date)))
        .unwrap_or_default();
    let issue = d.credit_issue.clone().unwrap_or_default();
    let text = template
        .render(minijinja::context! {
            name,
            message,
            dispute => d.name,
            invoice_number => d.invoice_number,
            period,
            disputed => d.total_disputed.as_ref().map(money::format).unwrap_or_default(),
            outcome => outcome(state, language),
            credit => d.approved_credit.as_ref().filter(|m| m.minor_units > 0).map(money::format).unwrap_or_default(),
            credit_reference => issue.credit_reference,
            credit_invoice => issue.invoice_number,
        })
        .map_err(Error::internal)?;
    let (subject, body) = text.split_once('\n').unwrap_or((&text, ""));
    Ok((subject.trim().to_string(), body.to_string()))
}

impl Disputes {
    /// Sends the position e-mail of `timer`: one message per language to
    /// the contacts the position names. Returns how many messages went.
    pub(crate) async fn mail_position(&self, owner: &str, timer: &Claimed) -> Result<usize> {
        let stored = {
            let mut pooled = self.db().acquire().await?;
            resource::get(&mut pooled.conn(), &DISPUTES, &timer.subject).await?
        };
        let mut sent = 0;
        if let (Some(stored), true) = (stored, self.mail().is_on()) {
            let d: Dispute = Store::decode::<Dispute, Rules>(&stored)?;
            let message = String::from_utf8_lossy(&timer.payload).to_string();
            let notified = d
                .position
                .as_ref()
                .map(|p| p.notified_contacts.clone())
                .unwrap_or_default();
            let mut by_language: BTreeMap<&str, Vec<Contact>> = BTreeMap::new();
            for name in notified {
                match self.peers().contact("", "contact", &name).await {
                    Ok(c) if !c.email.is_empty() => {
                        by_language
                            .entry(language(&c.language_code))
                            .or_default()
                            .push(c);
                    }
                    Ok(_) => {}
                    // A contact removed since the position was published
                    // is not written to.
                    Err(Error::InvalidArgument(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if by_language.is_empty() {
                tracing::warn!(dispute = %d.name, "nobody with an e-mail address to send the position to");
            }
            let from =
                self.mail().from().cloned().ok_or_else(|| {
                    Error::Unavailable("mail was switched off while sending".into())
                })?;
            for (language, contacts) in by_language {
                let name = match contacts.as_slice() {
                    [one] => one.display_name.clone(),
                    _ => d.account.clone(),
                };
                let (subject, body) = render(&d, &message, &name, language)?;
                let mut builder = Message::builder()
                    .from(from.clone())
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .header(ContentLanguage(language.to_string()));
                for c in &contacts {
                    builder = builder.to(mailbox(&c.display_name, &c.email)?);
                }
                let message = builder.body(body).map_err(Error::internal)?;
                match self.mail().send(message).await {
                    Ok(_) => sent += 1,
                    Err(SendError::Retry(why)) => return Err(Error::Unavailable(why)),
                    Err(SendError::Refused(why)) => {
                        tracing::warn!(dispute = %d.name, error = %why, "the mail server refused the position e-mail for good");
                    }
                }
            }
        }
        let mut tx = self.db().begin().await?;
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_proto::disputes::{BillingPeriod, CalendarDate, CreditIssue};
    use concierge_proto::types::Money;

    #[test]
    fn the_position_reads_in_english_and_in_turkish() {
        let usd = |m: i64| {
            Some(Money {
                currency_code: "USD".into(),
                minor_units: m,
            })
        };
        let d = Dispute {
            name: "disputes/d1".into(),
            invoice_number: "INV-42".into(),
            invoice_period: Some(BillingPeriod {
                start_date: Some(CalendarDate {
                    year: 2026,
                    month: 11,
                    day: 1,
                }),
                end_date: Some(CalendarDate {
                    year: 2026,
                    month: 11,
                    day: 30,
                }),
            }),
            state: dispute::State::CreditIssued as i32,
            total_disputed: usd(20_000),
            approved_credit: usd(1_250),
            credit_issue: Some(CreditIssue {
                credit_reference: "CM-7".into(),
                invoice_number: "INV-43".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (subject, body) = render(&d, "We credit 7.5 hours.", "Deniz", "en").unwrap();
        assert_eq!(
            subject,
            "Your billing dispute on invoice INV-42: our position"
        );
        assert!(body.starts_with("Hello Deniz,"), "{body}");
        assert!(body.contains("Credit: 12.50 USD"), "{body}");
        assert!(body.contains("Outcome: credit issued"), "{body}");
        assert!(
            body.contains("Credit memo: CM-7, on invoice INV-43"),
            "{body}"
        );
        assert!(body.contains("(2026-11-01 – 2026-11-30)"), "{body}");
        let (subject, body) = render(&d, "7,5 saatlik alacak.", "Deniz", "tr").unwrap();
        assert_eq!(subject, "INV-42 numaralı faturaya itirazınız: görüşümüz");
        assert!(body.starts_with("Merhaba Deniz,"), "{body}");
        assert!(body.contains("Sonuç: alacak kaydedildi"), "{body}");
        let denied = Dispute {
            state: dispute::State::Denied as i32,
            approved_credit: usd(0),
            credit_issue: None,
            ..d
        };
        let (_, body) = render(&denied, "No credit.", "Deniz", "en").unwrap();
        assert!(
            body.contains("Outcome: denied") && !body.contains("Credit"),
            "{body}"
        );
    }
}
