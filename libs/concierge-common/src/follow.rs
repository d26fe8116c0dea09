//! Following every domain's events from a position: what the gateway's
//! `SubscribeEvents` streams. On JetStream it reads each domain's stream
//! with an ordered consumer and merges them; on the local bus it reads the
//! one log. Every event comes with the [`Cursor`] just after it, which a
//! subscriber passes back to resume without a gap.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use base64::Engine;
use futures::stream::{BoxStream, StreamExt};
use prost::Message;

use crate::error::{Error, Result};
use crate::local_bus::LocalBus;
use crate::relay::{self, Bus};
use concierge_proto::events::Event;

/// Where a follower is in each stream: after a sequence, or (before its
/// first event of a stream) from a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    After(u64),
    Since(i64),
}

/// A follower's position in every stream it reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor(pub BTreeMap<String, Position>);

/// The one stream of the local bus, in a cursor.
const LOCAL: &str = "local";

/// The most streams a cursor names: more is not a cursor this suite made.
const MAX_CURSOR_STREAMS: usize = 64;

impl Cursor {
    /// The opaque form a subscriber holds.
    pub fn encode(&self) -> String {
        let text: Vec<String> = self
            .0
            .iter()
            .map(|(stream, p)| match p {
                Position::After(seq) => format!("{stream}={seq}"),
                Position::Since(micros) => format!("{stream}@{micros}"),
            })
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1;{}", text.join(",")))
    }

    /// Reads a cursor back; INVALID_ARGUMENT on `field` when it is not one.
    pub fn decode(field: &str, token: &str) -> Result<Self> {
        let bad = || Error::invalid(field, "not a cursor this service gave");
        if token.len() > 4096 {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let body = text.strip_prefix("v1;").ok_or_else(bad)?;
        let mut positions = BTreeMap::new();
        for part in body.split(',').filter(|p| !p.is_empty()) {
            let (stream, position) = if let Some((s, seq)) = part.split_once('=') {
                (s, Position::After(seq.parse().map_err(|_| bad())?))
            } else if let Some((s, micros)) = part.split_once('@') {
                (s, Position::Since(micros.parse().map_err(|_| bad())?))
            } else {
                return Err(bad());
            };
            if stream.is_empty()
                || stream.len() > 128
                || !stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad());
            }
            positions.insert(stream.to_string(), position);
            if positions.len() > MAX_CURSOR_STREAMS {
                return Err(bad());
            }
        }
        Ok(Self(positions))
    }
}

/// Where following starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Just after a cursor.
    After(Cursor),
    /// From the first event that occurred at or after this instant
    /// (microseconds since the epoch).
    Since(i64),
    /// With the next event.
    Now,
}

/// One event followed, with the position just after it.
#[derive(Debug, Clone)]
pub struct Followed {
    pub event: Event,
    pub cursor: Cursor,
}

/// A running follow: the position it started at, and its events.
pub struct Following {
    pub start: Cursor,
    pub events: BoxStream<'static, Result<Followed>>,
}

/// How long the local follower waits for an event before looking again.
const LOCAL_WAIT: Duration = Duration::from_secs(30);

/// Follows every event of `sources` (each domain's stream on JetStream; the
/// one log locally) from `start`. OUT_OF_RANGE when `start` is older than
/// what the streams keep, so that a subscriber never misses events without
/// being told.
pub async fn follow(
    bus: &Bus,
    sources: &[&str],
    start: Start,
    now_micros: i64,
) -> Result<Following> {
    if let Start::Since(micros) = start
        && micros < now_micros.saturating_sub(relay::RETENTION.as_micros() as i64)
    {
        return Err(out_of_range("start_time"));
    }
    match bus {
        Bus::Local(log) => follow_local(log.clone(), start).await,
        Bus::JetStream(js) => follow_jetstream(js.context(), sources, start).await,
    }
}

fn out_of_range(field: &str) -> Error {
    Error::OutOfRange {
        field: field.to_string(),
        why: "older than the events kept (30 days); start again from a time".into(),
    }
}

async fn follow_local(log: LocalBus, start: Start) -> Result<Following> {
    let after = match start {
        Start::Now => log.last(),
        Start::Since(micros) => log.position_at(micros).await?,
        Start::After(cursor) => match cursor.0.get(LOCAL) {
            Some(Position::After(seq)) => {
                let seq = i64::try_from(*seq).map_err(|_| out_of_range("resume_cursor"))?;
                if let Some(first) = log.first_seq().await?
                    && seq.saturating_add(1) < first
                {
                    return Err(out_of_range("resume_cursor"));
                }
                seq
            }
            Some(Position::Since(micros)) => log.position_at(*micros).await?,
            None => return Err(Error::invalid("resume_cursor", "not a cursor of this bus")),
        },
    };
    let start = local_cursor(after);
    let events = futures::stream::unfold(
        (log, after, Vec::<crate::local_bus::Logged>::new()),
        |(log, mut after, mut ready)| async move {
            loop {
                if !ready.is_empty() {
                    let logged = ready.remove(0);
                    after = logged.seq;
                    let item = Followed {
                        event: logged.event,
                        cursor: local_cursor(after),
                    };
                    return Some((Ok(item), (log, after, ready)));
                }
                match log.read_after(after, &[], 100).await {
                    Ok(batch) if batch.is_empty() => log.wait_after(after, LOCAL_WAIT).await,
                    Ok(batch) => ready = batch,
                    Err(e) => return Some((Err(e), (log, after, ready))),
                }
            }
        },
    )
    .boxed();
    Ok(Following { start, events })
}

fn local_cursor(after: i64) -> Cursor {
    Cursor(BTreeMap::from([(
        LOCAL.to_string(),
        Position::After(u64::try_from(after).unwrap_or(0)),
    )]))
}

async fn follow_jetstream(
    js: &async_nats::jetstream::Context,
    sources: &[&str],
    start: Start,
) -> Result<Following> {
    let mut positions = BTreeMap::new();
    let mut feeds = Vec::new();
    for source in sources {
        let mut stream = relay::ensure_stream(js, source).await?;
        let name = relay::stream_name(source);
        let info = stream
            .info()
            .await
            .map_err(|e| Error::Unavailable(format!("JetStream stream {name}: {e}")))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let position = match &start {
            Start::Now => Position::After(last),
            Start::Since(micros) => Position::Since(*micros),
            Start::After(cursor) => match cursor.0.get(&name) {
                Some(Position::After(seq)) => {
                    // A gap: events after the cursor were dropped by age.
                    if seq.saturating_add(1) < first && *seq < last {
                        return Err(out_of_range("resume_cursor"));
                    }
                    Position::After(*seq)
                }
                Some(since) => *since,
                // A stream that did not exist when the cursor was made: all
                // of it is new to this subscriber.
                None => Position::After(0),
            },
        };
        positions.insert(name.clone(), position);
        let deliver_policy = match position {
            Position::After(seq) => DeliverPolicy::ByStartSequence {
                start_sequence: seq.saturating_add(1),
            },
            Position::Since(micros) => DeliverPolicy::ByStartTime {
                start_time: async_nats::datetime::from_nanos(i128::from(micros) * 1000)
                    .map_err(|_| Error::invalid("start_time", "out of range"))?,
            },
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Unavailable(format!("JetStream consumer on {name}: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::Unavailable(format!("JetStream consumer on {name}: {e}")))?;
        let stream_name = name.clone();
        feeds.push(
            messages
                .map(move |m| {
                    let m = m.map_err(|e| Error::Unavailable(format!("JetStream: {e}")))?;
                    let seq = m
                        .info()
                        .map(|i| i.stream_sequence)
                        .map_err(|e| Error::Unavailable(format!("JetStream: {e}")))?;
                    let event = Event::decode(m.payload.as_ref()).ok();
                    Ok((stream_name.clone(), seq, event))
                })
                .boxed(),
        );
    }
    let start_cursor = Cursor(positions.clone());
    let events = futures::stream::select_all(feeds)
        .scan(positions, |positions, item| {
            let out = item.map(|(stream, seq, event)| {
                positions.insert(stream, Position::After(seq));
                event.map(|event| Followed {
                    event,
                    cursor: Cursor(positions.clone()),
                })
            });
            futures::future::ready(Some(out))
        })
        // A message that is not an event moves the position and is skipped.
        .filter_map(|item| futures::future::ready(item.transpose()))
        .boxed();
    Ok(Following {
        start: start_cursor,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_itself_and_nothing_else_is_one() {
        let c = Cursor(BTreeMap::from([
            ("CONCIERGE_CASES".to_string(), Position::After(42)),
            (
                "CONCIERGE_CSAT".to_string(),
                Position::Since(1_700_000_000_000_000),
            ),
        ]));
        assert_eq!(Cursor::decode("c", &c.encode()).unwrap(), c);
        let token = |raw: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            Cursor::decode("c", &token("v1;")).unwrap(),
            Cursor::default()
        );
        for bad in [
            String::new() + "!!",
            token("v2;A=1"),
            token("v1;A=x"),
            token("v1;A"),
            token("v1;A B=1"),
            token(&format!("v1;{}", vec!["A=1"; 5000].join(","))),
        ] {
            let e = Cursor::decode("resume_cursor", &bad).unwrap_err();
            assert!(e.to_string().contains("resume_cursor"), "{bad}: {e}");
        }
    }
}
