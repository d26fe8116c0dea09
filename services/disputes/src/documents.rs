//! A dispute's supporting documents: received in chunks into a staging
//! object while their size and SHA-256 are counted, checked against what
//! the upload announced, sniffed for what they really are (executables are
//! refused), then moved to their place in the file store; only then is the
//! row written that lists them, with the history entry and the event, in one
//! transaction. Downloads read the stored object in chunks.

use std::pin::Pin;

use concierge_common::crud::{Ctx, Resource, Store, strip_meta};
use concierge_common::error::{Error, Reason, Result, Violations};
use concierge_common::files::store_error;
use concierge_common::idempotency::Key;
use concierge_common::outbox::{self, NewEvent};
use concierge_common::resource::{self, Stored};
use concierge_common::{clock, names, timers};
use concierge_proto::catalogue::{EventOf, disputes as events};
use concierge_proto::disputes::{
    Dispute, DisputeDocument, DownloadDisputeDocumentResponse, UploadDisputeDocumentRequest,
    dispute, download_dispute_document_response, upload_dispute_document_request,
};
use futures::Stream;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::hooks::{Entry, append_history};
use crate::resources::DOCUMENTS;
use crate::{Disputes, EVENTS, RULES};

/// The largest chunk an upload may send, and the size of download chunks.
pub const CHUNK: usize = 1024 * 1024;

/// How much of the start of a document is kept to tell what it is.
const SNIFF: usize = 8 * 1024;

/// Parts the staging upload buffers before sending (S3 wants at least 5 MiB).
const PART: usize = 8 * 1024 * 1024;

/// Media types of programs: never accepted as evidence, whatever the upload
/// calls them.
const EXECUTABLES: &[&str] = &[
    "application/x-executable",
    "application/x-elf",
    "application/x-sharedlib",
    "application/x-mach-binary",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-msdos-executable",
    "application/java-vm",
    "application/vnd.android.dex",
    "application/x-shellscript",
    "application/wasm",
];

/// What the content is, from its first bytes: the media type when it is
/// recognised, and whether it is a program.
fn sniff(head: &[u8]) -> (Option<String>, bool) {
    if head.starts_with(b"#!") {
        return (Some("application/x-shellscript".into()), true);
    }
    match infer::get(head) {
        Some(t) => {
            let mime = t.mime_type().to_string();
            let program =
                t.matcher_type() == infer::MatcherType::App || EXECUTABLES.contains(&mime.as_str());
            (Some(mime), program)
        }
        None => (None, false),
    }
}

/// Where a document's bytes live: its name and its hash, so that two
/// uploads racing for one name never overwrite each other's bytes.
fn object_key(name: &str, sha256: &str) -> String {
    format!("{name}/{sha256}")
}

fn state_of(d: &Dispute) -> dispute::State {
    dispute::State::try_from(d.state).unwrap_or(dispute::State::Unspecified)
}

/// The stream a download answers with.
pub type DownloadStream = Pin<
    Box<
        dyn Stream<Item = std::result::Result<DownloadDisputeDocumentResponse, tonic::Status>>
            + Send,
    >,
>;

impl Disputes {
    /// The dispute a document call is about, as the caller may see it.
    async fn document_dispute(&self, ctx: &Ctx, parent: &str) -> Result<Dispute> {
        names::parse("parent", parent, &["disputes"])?;
        self.store().get(&RULES, ctx, parent).await
    }

    /// A document, once the caller may see its dispute.
    pub(crate) async fn document(&self, ctx: &Ctx, name: &str) -> Result<DisputeDocument> {
        let ids = names::parse("name", name, &["disputes", "documents"])?;
        self.document_dispute(ctx, &format!("disputes/{}", ids[0]))
            .await?;
        let mut pooled = self.db().acquire().await?;
        let stored = resource::get(&mut pooled.conn(), &DOCUMENTS, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: "DisputeDocument",
                name: name.to_string(),
            })?;
        Store::decode::<DisputeDocument, crate::Rules>(&stored)
    }

    /// Receives an upload: metadata first, then the content.
    pub(crate) async fn upload(
        &self,
        ctx: &Ctx,
        mut stream: impl Stream<Item = std::result::Result<UploadDisputeDocumentRequest, tonic::Status>>
        + Unpin
        + Send,
    ) -> Result<DisputeDocument> {
        use futures::StreamExt;
        use upload_dispute_document_request::Payload;
        let first = stream.next().await.transpose().map_err(|s| {
            Error::invalid("upload", format!("the upload broke off: {}", s.message()))
        })?;
        let Some(UploadDisputeDocumentRequest {
            payload: Some(Payload::Upload(upload)),
        }) = first
        else {
            return Err(Error::invalid(
                "upload",
                "required: the first message carries the document's metadata",
            ));
        };
        let hashed = concierge_common::without_request_id!(upload);
        let key = Key::new(
            &ctx.principal.subject,
            &upload.request_id,
            "UploadDisputeDocument",
            &hashed,
        )?;
        if let Some(key) = &key {
            let mut pooled = self.db().acquire().await?;
            if let Some(previous) = key.replay::<DisputeDocument>(&mut pooled.conn()).await? {
                return Ok(previous);
            }
        }
        let d = self.document_dispute(ctx, &upload.parent).await?;
        if state_of(&d) == dispute::State::Closed {
            return Err(closed(&d));
        }
        let settings = self.settings().await?;
        let mut doc = upload
            .dispute_document
            .clone()
            .ok_or_else(|| Error::invalid("upload.dispute_document", "required"))?;
        doc.clear_output_only();
        let mut v = Violations::new();
        doc.check(&mut v);
        if doc.size_bytes > settings.max_document_size_bytes {
            v.add(
                "dispute_document.size_bytes",
                format!(
                    "{} bytes is over the limit of {} bytes (DisputeSettings.max_document_size_bytes)",
                    doc.size_bytes, settings.max_document_size_bytes
                ),
            );
        }
        v.into_result()?;
        let id = names::new_id("dispute_document_id", &upload.dispute_document_id)?;
        doc.name = format!("{}/documents/{id}", d.name);
        {
            let mut pooled = self.db().acquire().await?;
            let mut conn = pooled.conn();
            if resource::get(&mut conn, &DOCUMENTS, &doc.name)
                .await?
                .is_some()
            {
                return Err(Error::AlreadyExists {
                    resource_type: "DisputeDocument",
                    name: doc.name.clone(),
                });
            }
            room_for_one_more(&mut conn, &d).await?;
        }

        // The content, into a staging object while it is counted and hashed.
        let files = self.files();
        let staging = files.path(&format!("staging/{}", uuid::Uuid::new_v4()));
        let multipart = files
            .store()
            .put_multipart(&staging)
            .await
            .map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(multipart, PART);
        let announced = u64::try_from(doc.size_bytes).unwrap_or(0);
        let mut received: u64 = 0;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF);
        let refused = loop {
            let chunk = match stream.next().await {
                None => break None,
                Some(Err(s)) => {
                    break Some(Error::invalid(
                        "upload",
                        format!("the upload broke off: {}", s.message()),
                    ));
                }
                Some(Ok(UploadDisputeDocumentRequest {
                    payload: Some(Payload::Chunk(chunk)),
                })) => chunk,
                Some(Ok(_)) => {
                    break Some(Error::invalid(
                        "chunk",
                        "after the metadata, every message is a chunk of the content",
                    ));
                }
            };
            // An empty chunk would let a stream run on without end.
            if chunk.is_empty() || chunk.len() > CHUNK {
                break Some(Error::invalid(
                    "chunk",
                    format!("{} bytes: a chunk holds 1 to {CHUNK} bytes", chunk.len()),
                ));
            }
            received = received.saturating_add(chunk.len() as u64);
            if received > announced {
                break Some(Error::invalid(
                    "dispute_document.size_bytes",
                    format!("more bytes arrived than the {announced} announced"),
                ));
            }
            hasher.update(&chunk);
            if head.len() < SNIFF {
                let take = (SNIFF - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                break Some(store_error(e));
            }
            writer.write(&chunk);
        };
        let refused = refused.or_else(|| {
            if received != announced {
                return Some(Error::invalid(
                    "dispute_document.size_bytes",
                    format!("{announced} bytes were announced, {received} arrived"),
                ));
            }
            let sha = hex::encode(hasher.finalize());
            if sha != doc.sha256 {
                return Some(Error::invalid(
                    "dispute_document.sha256",
                    format!(
                        "the content's SHA-256 is {sha}, not the {} announced",
                        doc.sha256
                    ),
                ));
            }
            let (sniffed, program) = sniff(&head);
            if program {
                return Some(Error::invalid(
                    "dispute_document.media_type",
                    format!(
                        "the content is a program ({}): executables are not accepted as evidence",
                        sniffed.unwrap_or_default()
                    ),
                ));
            }
            if let Some(sniffed) = sniffed {
                if doc.media_type != sniffed && doc.media_type != "application/octet-stream" {
                    return Some(Error::invalid(
                        "dispute_document.media_type",
                        format!("the content is {sniffed}, not {}", doc.media_type),
                    ));
                }
                doc.media_type = sniffed;
            }
            if !settings.allowed_media_types.is_empty()
                && !settings.allowed_media_types.contains(&doc.media_type)
            {
                return Some(Error::invalid(
                    "dispute_document.media_type",
                    format!(
                        "{} is not accepted; these are: {}",
                        doc.media_type,
                        settings.allowed_media_types.join(", ")
                    ),
                ));
            }
            None
        });
        if let Some(e) = refused {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(store_error)?;
        let place = files.path(&object_key(&doc.name, &doc.sha256));
        files
            .store()
            .rename(&staging, &place)
            .await
            .map_err(store_error)?;

        // Listed only now that the bytes are whole where they belong.
        doc.uploaded_by = ctx.principal.subject.clone();
        let now = self.store().now();
        let (name, sha) = (doc.name.clone(), doc.sha256.clone());
        let written = self.record_upload(ctx, &d.name, doc, key, now).await;
        if written.is_err() {
            // The loser of a race for one name leaves the winner's bytes
            // alone when they are the same bytes (the same key).
            let winner = match self.db().acquire().await {
                Ok(mut pooled) => resource::get(&mut pooled.conn(), &DOCUMENTS, &name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| Store::decode::<DisputeDocument, crate::Rules>(&s).ok()),
                Err(_) => None,
            };
            let keep = winner.is_some_and(|w| w.sha256 == sha);
            if !keep && let Err(gone) = files.store().delete(&place).await {
                tracing::warn!(error = %gone, "an upload that was not recorded left {place}");
            }
        }
        written
    }

    async fn record_upload(
        &self,
        ctx: &Ctx,
        dispute_name: &str,
        mut doc: DisputeDocument,
        key: Option<Key>,
        now: i64,
    ) -> Result<DisputeDocument> {
        let mut tx = self.db().begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = &key
            && let Some(previous) = key.replay::<DisputeDocument>(&mut conn).await?
        {
            return Ok(previous);
        }
        let d = self.locked_dispute(&mut conn, dispute_name).await?;
        if state_of(&d) == dispute::State::Closed {
            return Err(closed(&d));
        }
        room_for_one_more(&mut conn, &d).await?;
        let stored = Stored {
            name: doc.name.clone(),
            parent: d.name.clone(),
            account: d.account.clone(),
            create_time: now,
            update_time: now,
            delete_time: 0,
            revision: 1,
            body: strip_meta::<DisputeDocument, crate::Rules>(&doc),
        };
        resource::insert(&mut conn, &DOCUMENTS, &stored, &doc.columns()).await?;
        doc.set_meta(now, now, stored.etag());
        append_history(
            &mut conn,
            ctx,
            &d,
            Entry {
                from_state: d.state,
                action: "UploadDisputeDocument",
                reason: &doc.display_name,
                amount: None,
            },
            now,
        )
        .await?;
        document_event(
            &mut conn,
            ctx,
            &d,
            events::DISPUTE_DOCUMENT_UPLOADED,
            &doc,
            now,
        )
        .await?;
        if let Some(key) = &key {
            key.save(&mut conn, &doc, now).await?;
        }
        tx.commit().await?;
        self.store().nudge();
        Ok(doc)
    }

    /// The dispute, locked for the rest of the transaction.
    async fn locked_dispute(
        &self,
        conn: &mut concierge_common::storage::Conn<'_>,
        name: &str,
    ) -> Result<Dispute> {
        let stored = resource::get_for_update(conn, &crate::resources::DISPUTES, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: "Dispute",
                name: name.to_string(),
            })?;
        Store::decode::<Dispute, crate::Rules>(&stored)
    }

    /// A document's content: its metadata, then chunks of at most [`CHUNK`]
    /// bytes, read one after the other from the file store.
    pub(crate) async fn download(&self, ctx: &Ctx, name: &str) -> Result<DownloadStream> {
        use download_dispute_document_response::Payload;
        let doc = self.document(ctx, name).await?;
        let files = self.files().clone();
        let place = files.path(&object_key(&doc.name, &doc.sha256));
        let size = u64::try_from(doc.size_bytes).unwrap_or(0);
        // Missing bytes are found before the first message, not after it.
        files.store().head(&place).await.map_err(store_error)?;
        let first = futures::stream::once(async move {
            Ok(DownloadDisputeDocumentResponse {
                payload: Some(Payload::DisputeDocument(doc)),
            })
        });
        let chunks = futures::stream::try_unfold(0u64, move |offset| {
            let (files, place) = (files.clone(), place.clone());
            async move {
                if offset >= size {
                    return Ok(None);
                }
                let end = offset.saturating_add(CHUNK as u64).min(size);
                let bytes = files
                    .store()
                    .get_range(&place, offset..end)
                    .await
                    .map_err(|e| tonic::Status::from(store_error(e)))?;
                Ok(Some((
                    DownloadDisputeDocumentResponse {
                        payload: Some(Payload::Chunk(bytes.to_vec())),
                    },
                    end,
                )))
            }
        });
        Ok(Box::pin(futures::StreamExt::chain(first, chunks)))
    }

    /// Removes a document uploaded in error, before the dispute is decided.
    pub(crate) async fn delete_document(
        &self,
        ctx: &Ctx,
        name: &str,
        etag: &str,
        key: Option<Key>,
    ) -> Result<()> {
        crate::authz::staff_only(&ctx.principal, "removing documents")
            .map_err(|_| Error::PermissionDenied("documents are removed by the company".into()))?;
        if let Some(key) = &key {
            let mut pooled = self.db().acquire().await?;
            if key.replay::<()>(&mut pooled.conn()).await?.is_some() {
                return Ok(());
            }
        }
        let doc = self.document(ctx, name).await?;
        let dispute_name = name.rsplitn(3, '/').nth(2).unwrap_or_default().to_string();
        let mut tx = self.db().begin().await?;
        let mut conn = tx.conn();
        let d = self.locked_dispute(&mut conn, &dispute_name).await?;
        if crate::transitions::decided(state_of(&d)) {
            return Err(Error::FailedPrecondition {
                reason: Reason::IllegalTransition,
                subject: d.name.clone(),
                description: format!(
                    "{} is decided ({}): its evidence stays on record",
                    d.name,
                    state_of(&d).as_str_name()
                ),
            });
        }
        let stored = resource::get_for_update(&mut conn, &DOCUMENTS, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource_type: "DisputeDocument",
                name: name.to_string(),
            })?;
        resource::check_etag(name, etag, &stored)?;
        resource::delete(&mut conn, &DOCUMENTS, name).await?;
        let now = self.store().now();
        append_history(
            &mut conn,
            ctx,
            &d,
            Entry {
                from_state: d.state,
                action: "DeleteDisputeDocument",
                reason: &doc.display_name,
                amount: None,
            },
            now,
        )
        .await?;
        document_event(
            &mut conn,
            ctx,
            &d,
            events::DISPUTE_DOCUMENT_DELETED,
            &doc,
            now,
        )
        .await?;
        if let Some(key) = &key {
            key.save(&mut conn, &(), now).await?;
        }
        // The bytes go after the commit; that they go at all is recorded
        // with it, so the sweep removes them if this attempt fails.
        let bytes = object_key(&doc.name, &doc.sha256);
        let removal = format!("{}:bytes", doc.name);
        timers::arm(
            &mut conn,
            &removal,
            REMOVE_BYTES,
            &doc.name,
            clock::from_micros(now),
            bytes.as_bytes(),
        )
        .await?;
        tx.commit().await?;
        self.store().nudge();
        match self.remove_bytes(&bytes).await {
            Ok(()) => {
                let mut pooled = self.db().acquire().await?;
                timers::disarm(&mut pooled.conn(), &removal).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a removed document's bytes stay until the sweep retries")
            }
        }
        Ok(())
    }

    /// Removes a document's bytes; bytes already gone are done.
    async fn remove_bytes(&self, key: &str) -> Result<()> {
        match self.files().store().delete(&self.files().path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// The sweep's part: the bytes of a removed document, queued as
    /// `timer`'s payload.
    pub(crate) async fn remove_queued_bytes(
        &self,
        owner: &str,
        timer: &timers::Claimed,
    ) -> Result<()> {
        self.remove_bytes(&String::from_utf8_lossy(&timer.payload))
            .await?;
        let mut tx = self.db().begin().await?;
        timers::complete(&mut tx, owner, timer).await?;
        tx.commit().await
    }
}

/// The timer kind of a removed document's bytes, still to delete.
pub(crate) const REMOVE_BYTES: &str = "remove_document_bytes";

/// How long an upload may take before what it staged counts as left behind
/// by a process that died mid-way.
pub const STAGING_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

impl Disputes {
    /// Removes what uploads staged and never finished (their process died
    /// mid-way) last written before `before`; returns how many objects.
    pub async fn sweep_staging(&self, before: jiff::Timestamp) -> Result<usize> {
        use futures::TryStreamExt;
        let prefix = self.files().path("staging");
        let cutoff = before.as_second();
        let stale: Vec<object_store::path::Path> = self
            .files()
            .store()
            .list(Some(&prefix))
            .try_filter(|m| std::future::ready(m.last_modified.timestamp() < cutoff))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(store_error)?;
        for place in &stale {
            match self.files().store().delete(place).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(stale.len())
    }
}

/// The most documents one dispute holds: the evidence of one claim, not a
/// file store for anything a caller likes to keep.
pub const MAX_DOCUMENTS: i64 = 100;

async fn room_for_one_more(
    conn: &mut concierge_common::storage::Conn<'_>,
    d: &Dispute,
) -> Result<()> {
    let held = resource::count(conn, &DOCUMENTS, &resource::Scope::Parent(d.name.clone())).await?;
    if held >= MAX_DOCUMENTS {
        return Err(Error::FailedPrecondition {
            reason: Reason::IllegalTransition,
            subject: d.name.clone(),
            description: format!(
                "{} holds {held} documents already, the most one dispute takes: remove one uploaded in error first",
                d.name
            ),
        });
    }
    Ok(())
}

fn closed(d: &Dispute) -> Error {
    Error::FailedPrecondition {
        reason: Reason::IllegalTransition,
        subject: d.name.clone(),
        description: format!("{} is closed: nothing is added to it", d.name),
    }
}

/// A document's event, tagged with its dispute's account (the document's
/// name does not say it).
async fn document_event(
    conn: &mut concierge_common::storage::Conn<'_>,
    ctx: &Ctx,
    d: &Dispute,
    event: EventOf<DisputeDocument>,
    doc: &DisputeDocument,
    now: i64,
) -> Result<()> {
    outbox::record(
        conn,
        NewEvent {
            event,
            source: EVENTS.source,
            subject: &doc.name,
            account: &d.account,
            visibility: event.audience(),
            actor: &ctx.principal,
            request_id: &ctx.request_id,
            occur_time: clock::from_micros(now),
            payload: doc,
        },
    )
    .await?;
    Ok(())
}
