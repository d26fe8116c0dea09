//! The transactional outbox: an event is a row written in the same
//! transaction as the change it announces, so a committed change always has
//! its event and a rolled-back one never does. A relay publishes rows in
//! `seq` order afterwards, at least once.

use prost::Message;
use prost_types::Any;

use crate::clock::to_proto;
use crate::error::Result;
use crate::on_conn;
use crate::principal::Principal;
use crate::storage::Conn;
use concierge_proto::catalogue::EventOf;
use concierge_proto::events::{Event, Visibility};

/// What a change announces: an event type of the producing domain's
/// catalogue and the payload that type declares, checked by the compiler.
#[derive(Debug, Clone)]
pub struct NewEvent<'a, P> {
    /// e.g. `catalogue::customers::ACCOUNT_CREATED`.
    pub event: EventOf<P>,
    pub source: &'static str,
    pub subject: &'a str,
    pub account: &'a str,
    pub visibility: Visibility,
    pub actor: &'a Principal,
    pub request_id: &'a str,
    pub occur_time: jiff::Timestamp,
    /// Travels as `google.protobuf.Any`, its `type_url` naming `P`.
    pub payload: &'a P,
}

/// Packs a message as `google.protobuf.Any`.
pub fn pack<M: Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// The payload `event` carries, as the `M` its type declares: what a
/// consumer reads. INVALID_ARGUMENT on `payload` when it is missing, names
/// another message, or does not decode (a consumer dead-letters such an
/// event: no redelivery mends it).
pub fn unpack<M: Message + prost::Name + Default>(event: &Event) -> Result<M> {
    let any = event
        .payload
        .as_ref()
        .ok_or_else(|| crate::error::Error::invalid("payload", "not set"))?;
    if any.type_url != M::type_url() {
        return Err(crate::error::Error::invalid(
            "payload.type_url",
            format!("{} is not {}", any.type_url, M::type_url()),
        ));
    }
    M::decode(any.value.as_slice())
        .map_err(|e| crate::error::Error::invalid("payload", e.to_string()))
}

/// Writes an event into the outbox of the transaction behind `conn`.
pub async fn record<P: Message + prost::Name>(
    conn: &mut Conn<'_>,
    e: NewEvent<'_, P>,
) -> Result<Event> {
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: e.event.event_type().to_string(),
        source: e.source.to_string(),
        subject: e.subject.to_string(),
        account: e.account.to_string(),
        visibility: e.visibility as i32,
        occur_time: Some(to_proto(e.occur_time)),
        actor: e.actor.subject.clone(),
        request_id: e.request_id.to_string(),
        payload: Some(pack(e.payload)),
    };
    let body = event.encode_to_vec();
    let sql = "INSERT INTO outbox (id, type, subject, account, visibility, occur_time, event) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_conn!(conn, c => {
        sqlx::query(sql)
            .bind(&event.id)
            .bind(&event.r#type)
            .bind(&event.subject)
            .bind(&event.account)
            .bind(event.visibility as i64)
            .bind(e.occur_time.as_microsecond())
            .bind(&body)
            .execute(&mut **c)
            .await?
            .rows_affected()
    });
    Ok(event)
}

/// An outbox row as a relay reads it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event: Event,
}

/// The oldest unpublished events, at most `limit`. On PostgreSQL the rows
/// are locked with `SKIP LOCKED` so that several relays share the work.
pub async fn pending(conn: &mut Conn<'_>, limit: i64) -> Result<Vec<Pending>> {
    let lock = matches!(conn, Conn::Postgres(_));
    let sql = format!(
        "SELECT seq, event FROM outbox WHERE publish_time = 0 ORDER BY seq LIMIT $1{}",
        if lock { " FOR UPDATE SKIP LOCKED" } else { "" }
    );
    let rows: Vec<(i64, Vec<u8>)> = on_conn!(conn, c => {
        sqlx::query_as(&sql).bind(limit).fetch_all(&mut **c).await?
    });
    rows.into_iter()
        .map(|(seq, body)| {
            Ok(Pending {
                seq,
                event: Event::decode(body.as_slice()).map_err(crate::error::Error::internal)?,
            })
        })
        .collect()
}

/// The most events [`backlog`] counts: a backlog of millions (a bus down
/// for a day) is reported as this many, in bounded time, every poll.
pub const BACKLOG_COUNT_LIMIT: i64 = 1_000_000;

/// How many events wait to be published, up to [`BACKLOG_COUNT_LIMIT`].
pub async fn backlog(conn: &mut Conn<'_>) -> Result<i64> {
    let (n,): (i64,) = on_conn!(conn, c => {
        sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE publish_time = 0 LIMIT $1) AS waiting",
        )
        .bind(BACKLOG_COUNT_LIMIT)
        .fetch_one(&mut **c)
            .await?
    });
    Ok(n)
}

/// Marks events published, in one statement.
pub async fn mark_published(conn: &mut Conn<'_>, seqs: &[i64], now_micros: i64) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (2..seqs.len() + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE outbox SET publish_time = $1 WHERE seq IN ({})",
        marks.join(", ")
    );
    on_conn!(conn, c => {
        let mut q = sqlx::query(&sql).bind(now_micros);
        for seq in seqs {
            q = q.bind(*seq);
        }
        q.execute(&mut **c).await?.rows_affected()
    });
    Ok(())
}

/// Events in `seq` order after `after_seq`, published or not: the read side
/// of `concierge dev`'s in-process bus and of tests.
pub async fn read_after(conn: &mut Conn<'_>, after_seq: i64, limit: i64) -> Result<Vec<Pending>> {
    let rows: Vec<(i64, Vec<u8>)> = on_conn!(conn, c => {
        sqlx::query_as("SELECT seq, event FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&mut **c)
            .await?
    });
    rows.into_iter()
        .map(|(seq, body)| {
            Ok(Pending {
                seq,
                event: Event::decode(body.as_slice()).map_err(crate::error::Error::internal)?,
            })
        })
        .collect()
}

/// Reads a service secret, creating it with `len` random bytes on first use.
/// Every replica sharing the database gets the same value.
pub async fn service_secret(conn: &mut Conn<'_>, name: &str, len: usize) -> Result<Vec<u8>> {
    use rand::RngCore;
    let mut fresh = vec![0u8; len];
    rand::rng().fill_bytes(&mut fresh);
    on_conn!(conn, c => {
        sqlx::query("INSERT INTO service_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(&fresh)
            .execute(&mut **c)
            .await?
            .rows_affected()
    });
    let value: Vec<u8> = on_conn!(conn, c => {
        sqlx::query_scalar("SELECT value FROM service_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut **c)
            .await?
    });
    Ok(value)
}
