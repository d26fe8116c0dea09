//! Issuing a control document: read the account's open requests and its
//! facts, write the document, archive it exactly as it will be sent, and
//! queue its e-mail (a timer, with the archive in one transaction); then
//! send it, on any replica, at least once, recording each delivery.

use std::collections::{BTreeSet, HashMap};

use concierge_common::clock;
use concierge_common::crud::{Ctx, Resource, Store, strip_meta};
use concierge_common::error::{Error, Reason, Result};
use concierge_common::idempotency::Key;
use concierge_common::mail::{ContentLanguage, SendError, mailbox};
use concierge_common::outbox::{self, NewEvent};
use concierge_common::resource::{self, Stored};
use concierge_common::storage::Conn;
use concierge_common::timers::{self, Claimed};
use concierge_proto::catalogue;
use concierge_proto::concierge::cases::v1::*;
use concierge_proto::events::Visibility;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};

use super::{Inputs, csv, default_types, html, language, rows, week_key, zone};
use crate::resources::{CONTROL_DOCUMENTS, SETTINGS_NAME, SentWeek, default_settings};
use crate::{Cases, Rules, store};

/// The timer kind of a document's e-mail.
pub(crate) const CONTROL_DOC_MAIL: &str = "control_doc_mail";

/// The most requests one document lists.
const MAX_ROWS: i64 = 10_000;
/// The most distinct owners whose names a document looks up.
const MAX_OWNERS: usize = 200;

/// What to issue.
pub(crate) struct Issue<'a> {
    pub account: &'a str,
    pub trigger: control_document::Trigger,
    pub archive: bool,
    pub send: bool,
    pub extra_recipients: &'a [String],
    pub force: bool,
    pub once: Option<Key>,
}

/// The document without its rows and content (the BASIC view).
pub(crate) fn basic(doc: &ControlDocument) -> ControlDocument {
    ControlDocument {
        rows: Vec::new(),
        csv_content: String::new(),
        html_content: String::new(),
        pdf_content: Vec::new(),
        ..doc.clone()
    }
}

/// The most extra addresses one send names.
const MAX_EXTRA_RECIPIENTS: usize = 20;

fn deliveries_to(extra: &[String]) -> Result<Vec<ControlDocumentDelivery>> {
    if extra.len() > MAX_EXTRA_RECIPIENTS {
        return Err(Error::invalid(
            "extra_recipients",
            format!("at most {MAX_EXTRA_RECIPIENTS} addresses"),
        ));
    }
    extra
        .iter()
        .enumerate()
        .map(|(i, email)| {
            mailbox("", email)
                .map_err(|_| {
                    Error::invalid(
                        format!("extra_recipients[{i}]"),
                        format!("{email:?} is not an e-mail address"),
                    )
                })
                .map(|_| ControlDocumentDelivery {
                    email: email.clone(),
                    state: control_document_delivery::State::Pending as i32,
                    ..Default::default()
                })
        })
        .collect()
}

impl Cases {
    /// The weekly run's settings: as changed, else the defaults.
    pub(crate) async fn control_settings(&self) -> Result<ControlDocumentSettings> {
        self.store()
            .get_singleton(
                &crate::RULES,
                &Ctx::system("cases", ""),
                SETTINGS_NAME,
                default_settings,
            )
            .await
    }

    /// Writes `account`'s control document now; archives it, and queues its
    /// e-mail, when asked.
    pub(crate) async fn issue_control_document(
        &self,
        ctx: &Ctx,
        issue: Issue<'_>,
    ) -> Result<ControlDocument> {
        concierge_common::names::parse("parent", issue.account, &["accounts"])?;
        if issue.send && !issue.archive {
            return Err(Error::invalid(
                "send",
                "a document is archived before it is sent: set archive too",
            ));
        }
        let extra = deliveries_to(issue.extra_recipients)?;
        let settings = self.control_settings().await?;
        let (account, delegates, sites) = self
            .directory()
            .control_document_facts(&ctx.request_id, issue.account)
            .await?;
        let types = if settings.case_types.is_empty() {
            default_types()
        } else {
            settings.case_types.clone()
        };
        let (cases, updates) = {
            let mut pooled = self.store().db().acquire().await?;
            let mut conn = pooled.conn();
            let cases =
                store::control::open_cases_of(&mut conn, issue.account, &types, MAX_ROWS).await?;
            let updates = store::control::latest_public_updates(&mut conn, issue.account).await?;
            (cases, updates)
        };
        // Open billing disputes, when asked for and the service is there;
        // a disputes service that does not answer fails the document, which
        // would otherwise leave them out without a word.
        let disputes = match (settings.include_disputes, self.disputes()) {
            (true, Some(peer)) => peer.open_disputes(&ctx.request_id, issue.account).await?,
            _ => Vec::new(),
        };
        let owners: Vec<String> = cases
            .iter()
            .map(|c| c.owner.clone())
            .chain(disputes.iter().map(|d| d.owner.clone()))
            .filter(|o| !o.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(MAX_OWNERS)
            .collect();
        let owners = self
            .directory()
            .staff_names(&owners)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "owner names unavailable for a control document");
                HashMap::new()
            });
        let sites: HashMap<String, String> = sites
            .into_iter()
            .map(|s| (s.name, s.display_name))
            .collect();
        let mut rows = rows(&Inputs {
            cases: &cases,
            updates: &updates,
            sites: &sites,
            owners: &owners,
        });
        rows.extend(
            disputes
                .iter()
                .map(|d| super::disputes::row(d, owners.get(&d.owner).map_or("", String::as_str))),
        );
        // Disputes join the billing group; within it, cases first as ranked.
        rows.sort_by_key(|r| r.category);
        let delegate = delegates.iter().find(|c| !c.email.is_empty());
        let tz = zone(&account.time_zone);
        let lang = language(
            delegate
                .map(|d| d.language_code.as_str())
                .unwrap_or(&account.language_code),
        );
        let now = self.store().now();
        let mut doc = ControlDocument {
            account_display_name: account.display_name.clone(),
            account_mrc: account.mrc.clone(),
            client_delegate: delegate.map(|d| d.name.clone()).unwrap_or_default(),
            trigger: issue.trigger as i32,
            as_of_time: clock::micros_to_proto(now),
            row_count: i32::try_from(rows.len()).unwrap_or(i32::MAX),
            incomplete_row_count: i32::try_from(
                rows.iter().filter(|r| !r.missing_fields.is_empty()).count(),
            )
            .unwrap_or(i32::MAX),
            rows,
            generator: ctx.principal.subject.clone(),
            ..Default::default()
        };
        doc.csv_content = csv(&doc.rows, &tz)?;
        doc.html_content = html(
            &doc,
            &tz,
            lang,
            delegate.map(|d| d.display_name.as_str()).unwrap_or(""),
        )?;
        if !issue.archive {
            return Ok(doc);
        }
        let mut week = String::new();
        if issue.send {
            if let Some(d) = delegate {
                doc.deliveries.push(ControlDocumentDelivery {
                    contact: d.name.clone(),
                    email: d.email.clone(),
                    state: control_document_delivery::State::Pending as i32,
                    ..Default::default()
                });
            }
            doc.deliveries.extend(extra);
            if doc.deliveries.is_empty() {
                return Err(no_delegate(issue.account));
            }
            week = week_key(tz.to_datetime(clock::from_micros(now)).date());
        }
        let mut tx = self.store().db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &issue.once
            && let Some(previous) = key.replay::<ControlDocument>(&mut conn).await?
        {
            return Ok(previous);
        }
        if issue.send && !issue.force {
            refuse_second_send(&mut conn, issue.account, &week).await?;
        }
        doc.name = format!(
            "{}/controlDocuments/{}",
            issue.account,
            uuid::Uuid::now_v7()
        );
        doc.create_time = clock::micros_to_proto(now);
        let mut columns = doc.columns();
        columns.push(SentWeek(&week).column());
        let stored = Stored {
            name: doc.name.clone(),
            parent: issue.account.to_string(),
            account: issue.account.to_string(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: strip_meta::<ControlDocument, Rules>(&doc),
        };
        resource::insert(&mut conn, &CONTROL_DOCUMENTS, &stored, &columns).await?;
        outbox::record(
            &mut conn,
            NewEvent {
                event: catalogue::cases::CONTROL_DOCUMENT_ISSUED,
                source: crate::EVENTS.source,
                subject: &doc.name,
                account: issue.account,
                visibility: Visibility::Public,
                actor: &ctx.principal,
                request_id: &ctx.request_id,
                occur_time: clock::from_micros(now),
                payload: &basic(&doc),
            },
        )
        .await?;
        if issue.send {
            queue_mail(&mut conn, &doc.name, now).await?;
        }
        if let Some(key) = &issue.once {
            key.save(&mut conn, &doc, now).await?;
        }
        tx.commit().await?;
        self.store().nudge();
        Ok(doc)
    }

    /// E-mails an archived document (again): to its client delegate and to
    /// `extra` addresses.
    pub(crate) async fn send_control_document(
        &self,
        ctx: &Ctx,
        name: &str,
        include_delegate: bool,
        extra: &[String],
        force: bool,
        once: Option<Key>,
    ) -> Result<ControlDocument> {
        let extra = deliveries_to(extra)?;
        let doc: ControlDocument = self.store().get(&RULES_REF, ctx, name).await?;
        let account = concierge_common::crud::account_of(name).unwrap_or_default();
        let mut deliveries = Vec::new();
        if include_delegate && !doc.client_delegate.is_empty() {
            match self.directory().contact(&doc.client_delegate).await? {
                Some(c) if !c.email.is_empty() => deliveries.push(ControlDocumentDelivery {
                    contact: c.name,
                    email: c.email,
                    state: control_document_delivery::State::Pending as i32,
                    ..Default::default()
                }),
                _ => {}
            }
        }
        deliveries.extend(extra);
        if deliveries.is_empty() {
            return Err(no_delegate(&account));
        }
        let (facts, ..) = self
            .directory()
            .control_document_facts(&ctx.request_id, &account)
            .await?;
        let now = self.store().now();
        let week = week_key(
            zone(&facts.time_zone)
                .to_datetime(clock::from_micros(now))
                .date(),
        );
        let mut tx = self.store().db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &once
            && let Some(previous) = key.replay::<ControlDocument>(&mut conn).await?
        {
            return Ok(previous);
        }
        if !force {
            refuse_second_send(&mut conn, &account, &week).await?;
        }
        let row = resource::get_for_update(&mut conn, &CONTROL_DOCUMENTS, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: "ControlDocument",
                name: name.to_string(),
            })?;
        let mut doc: ControlDocument = Store::decode::<ControlDocument, Rules>(&row)?;
        doc.deliveries.extend(deliveries);
        save(&mut conn, &row, &doc, now).await?;
        store::control::set_sent_week(&mut conn, name, &week).await?;
        queue_mail(&mut conn, name, now).await?;
        if let Some(key) = &once {
            key.save(&mut conn, &doc, now).await?;
        }
        tx.commit().await?;
        Ok(doc)
    }

    /// Sends the pending deliveries of the documents of `claimed`; returns
    /// how many messages went.
    pub(crate) async fn mail_control_documents(&self, owner: &str, claimed: &[Claimed]) -> usize {
        let mut sent = 0;
        for timer in claimed {
            match self.mail_control_document(owner, timer).await {
                Ok(n) => sent += n,
                Err(e) => {
                    tracing::warn!(document = %timer.subject, error = %e, "control document e-mail not sent; retrying later");
                    if let Err(e) = self.retry_later(owner, timer).await {
                        tracing::warn!(document = %timer.subject, error = %e, "could not reschedule a control document e-mail");
                    }
                }
            }
        }
        sent
    }

    async fn mail_control_document(&self, owner: &str, timer: &Claimed) -> Result<usize> {
        let row = {
            let mut pooled = self.store().db().acquire().await?;
            resource::get(&mut pooled.conn(), &CONTROL_DOCUMENTS, &timer.subject).await?
        };
        let Some(row) = row else {
            return self.finish(owner, timer, None).await.map(|()| 0);
        };
        let mut doc: ControlDocument = Store::decode::<ControlDocument, Rules>(&row)?;
        let settings = self.control_settings().await?;
        let now = clock::from_micros(self.store().now());
        let mut sent = 0;
        let pending = control_document_delivery::State::Pending as i32;
        let view = doc_view(&row, &doc);
        for d in doc.deliveries.iter_mut().filter(|d| d.state == pending) {
            if !self.mail().is_on() {
                continue;
            }
            let contact = if d.contact.is_empty() {
                None
            } else {
                self.directory().contact(&d.contact).await?
            };
            let lang = language(contact.as_ref().map_or("", |c| c.language_code.as_str()));
            let to_name = contact.as_ref().map_or("", |c| c.display_name.as_str());
            let message = message(self, &settings, &view, d, to_name, lang)?;
            match self.mail().send(message).await {
                Ok(_) => {
                    d.state = control_document_delivery::State::Sent as i32;
                    d.send_time = Some(clock::to_proto(now));
                    sent += 1;
                }
                Err(SendError::Retry(why)) => {
                    // What went out so far is recorded; the rest waits.
                    self.finish(owner, timer, Some(&doc)).await?;
                    return Err(Error::Unavailable(why));
                }
                Err(SendError::Refused(why)) => {
                    d.state = control_document_delivery::State::Failed as i32;
                    d.error = why;
                }
            }
        }
        self.finish(owner, timer, Some(&doc)).await?;
        Ok(sent)
    }

    /// Records the deliveries of `doc` and completes the timer.
    async fn finish(
        &self,
        owner: &str,
        timer: &Claimed,
        doc: Option<&ControlDocument>,
    ) -> Result<()> {
        let mut tx = self.store().db().begin().await?;
        let mut conn = tx.conn();
        if let Some(doc) = doc
            && let Some(row) =
                resource::get_for_update(&mut conn, &CONTROL_DOCUMENTS, &doc.name).await?
        {
            let mut stored: ControlDocument = Store::decode::<ControlDocument, Rules>(&row)?;
            stored.deliveries = doc.deliveries.clone();
            save(&mut conn, &row, &stored, self.store().now()).await?;
        }
        let failed_retry = doc.is_some_and(|d| {
            d.deliveries
                .iter()
                .any(|x| x.state == control_document_delivery::State::Pending as i32)
        }) && self.mail().is_on();
        if !failed_retry {
            timers::complete(&mut tx, owner, timer).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The policy value the store's generic reads take.
const RULES_REF: Rules = crate::RULES;

fn no_delegate(account: &str) -> Error {
    Error::FailedPrecondition {
        reason: Reason::NoClientDelegate,
        subject: account.to_string(),
        description: format!(
            "{account} has no client delegate with an e-mail address: add one, or name extra_recipients"
        ),
    }
}

async fn refuse_second_send(conn: &mut Conn<'_>, account: &str, week: &str) -> Result<()> {
    if let Some(sent) = store::control::sent_in_week(conn, account, week).await? {
        return Err(Error::FailedPrecondition {
            reason: Reason::AlreadySentThisWeek,
            subject: sent.clone(),
            description: format!(
                "{sent} already went to {account} this week ({week}): send again with force"
            ),
        });
    }
    Ok(())
}

async fn queue_mail(conn: &mut Conn<'_>, name: &str, now: i64) -> Result<()> {
    timers::arm(
        conn,
        &format!("{name}:mail"),
        CONTROL_DOC_MAIL,
        name,
        clock::from_micros(now),
        b"",
    )
    .await
}

/// Writes `doc` over its row (its deliveries changed; its content never
/// does).
async fn save(conn: &mut Conn<'_>, row: &Stored, doc: &ControlDocument, now: i64) -> Result<()> {
    let next = Stored {
        update_time: now.max(row.update_time),
        revision: row.revision + 1,
        body: strip_meta::<ControlDocument, Rules>(doc),
        ..row.clone()
    };
    // The sent week is not among these columns: it is set once, apart.
    resource::update(
        conn,
        &CONTROL_DOCUMENTS,
        &next,
        row.revision,
        &doc.columns(),
    )
    .await
}

fn doc_view(row: &Stored, doc: &ControlDocument) -> ControlDocument {
    let mut d = doc.clone();
    d.set_meta(row.create_time, row.update_time, String::new());
    d
}

/// The e-mail of `doc` to one delivery, in `lang`, with the document as an
/// HTML page and a CSV file attached.
fn message(
    svc: &Cases,
    settings: &ControlDocumentSettings,
    doc: &ControlDocument,
    to: &ControlDocumentDelivery,
    to_name: &str,
    lang: &str,
) -> Result<Message> {
    let from = svc
        .mail()
        .from()
        .cloned()
        .ok_or_else(|| Error::Unavailable("mail is off".into()))?;
    let date = doc
        .as_of_time
        .as_ref()
        .and_then(clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let subject = ["{{account}}", "{{ account }}"]
        .iter()
        .fold(settings.email_subject_template.clone(), |s, p| {
            s.replace(p, &doc.account_display_name)
        });
    let subject = ["{{date}}", "{{ date }}"]
        .iter()
        .fold(subject, |s, p| s.replace(p, &date));
    let greeting = if to_name.is_empty() {
        String::new()
    } else {
        format!(" {to_name}")
    };
    let intro = if lang == "tr" {
        format!(
            "Merhaba{greeting},\n\n{} için açık taleplerin listesi ektedir ({date} itibarıyla): {} talep, {} tanesinde eksik bilgi var.\n\nDosyayı tarayıcınızda açıp yazdırabilir, CSV dosyasını tablo programında açabilirsiniz.\n\n-- \nConcierge\n",
            doc.account_display_name, doc.row_count, doc.incomplete_row_count
        )
    } else {
        format!(
            "Hello{greeting},\n\nAttached are the open requests of {} as of {date}: {} request(s), {} with details still missing.\n\nOpen the page in a browser to read or print it; the CSV file opens in a spreadsheet.\n\n-- \nConcierge\n",
            doc.account_display_name, doc.row_count, doc.incomplete_row_count
        )
    };
    let slug: String = doc
        .account_display_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let html_type = ContentType::parse("text/html; charset=utf-8").map_err(Error::internal)?;
    let csv_type = ContentType::parse("text/csv; charset=utf-8").map_err(Error::internal)?;
    Message::builder()
        .from(from)
        .to(mailbox(to_name, &to.email)?)
        .subject(subject)
        .header(ContentLanguage(lang.to_string()))
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(intro))
                .singlepart(
                    Attachment::new(format!("{slug}-open-requests-{date}.html"))
                        .body(doc.html_content.clone(), html_type),
                )
                .singlepart(
                    Attachment::new(format!("{slug}-open-requests-{date}.csv"))
                        .body(doc.csv_content.clone(), csv_type),
                ),
        )
        .map_err(Error::internal)
}
