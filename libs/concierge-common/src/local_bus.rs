//! The event bus of `concierge dev`: JetStream's guarantees on one SQLite
//! file, so that the dev suite behaves like production where it matters. An
//! event published twice is kept once (the event id plays `Nats-Msg-Id`),
//! events keep their order, a consumer's position survives a restart (it
//! catches up on what it missed), and a subscriber can resume from a
//! position or a time within retention.

use std::time::Duration;

use prost::Message;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::on_conn;
use crate::storage::Db;
use concierge_proto::events::Event;

/// How long the dev bus keeps events, as the JetStream streams do.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bus_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        occur_time INTEGER NOT NULL,
        event BLOB NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS bus_events_time ON bus_events (occur_time)",
    "CREATE TABLE IF NOT EXISTS bus_consumers (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    )",
];

/// A durable, ordered log of events in one SQLite database.
#[derive(Clone)]
pub struct LocalBus {
    db: Db,
    /// The last sequence published, for followers waiting on new events.
    last: watch::Sender<i64>,
}

/// One event of the log with its position.
#[derive(Debug, Clone)]
pub struct Logged {
    pub seq: i64,
    pub event: Event,
}

impl LocalBus {
    /// Opens (creating) the log in `db`, which must be SQLite.
    pub async fn open(db: Db) -> Result<Self> {
        if !matches!(db, Db::Sqlite(..)) {
            return Err(Error::invalid(
                "events.url",
                "the local event bus runs on SQLite",
            ));
        }
        let mut tx = db.begin().await?;
        for statement in SCHEMA {
            on_conn!(&mut tx.conn(), c => {
                sqlx::query(statement).execute(&mut **c).await?.rows_affected()
            });
        }
        tx.commit().await?;
        let bus = Self {
            db,
            last: watch::channel(0).0,
        };
        let last = bus.last_seq().await?;
        bus.last.send_replace(last);
        Ok(bus)
    }

    /// Appends events in order; an id already in the log is skipped, so a
    /// relay that crashed between publishing and marking publishes again
    /// harmlessly.
    pub async fn publish(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for e in events {
            let occur = e
                .occur_time
                .as_ref()
                .map(|t| {
                    t.seconds
                        .saturating_mul(1_000_000)
                        .saturating_add(i64::from(t.nanos / 1000))
                })
                .unwrap_or_default();
            on_conn!(&mut tx.conn(), c => {
                sqlx::query(
                    "INSERT INTO bus_events (id, type, occur_time, event) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&e.id)
                .bind(&e.r#type)
                .bind(occur)
                .bind(e.encode_to_vec())
                .execute(&mut **c)
                .await?
                .rows_affected()
            });
        }
        tx.commit().await?;
        let last = self.last_seq().await?;
        self.last.send_replace(last);
        Ok(())
    }

    async fn last_seq(&self) -> Result<i64> {
        let mut pooled = self.db.acquire().await?;
        let last: Option<i64> = on_conn!(&mut pooled.conn(), c => {
            sqlx::query_scalar("SELECT MAX(seq) FROM bus_events")
                .fetch_one(&mut **c)
                .await?
        });
        Ok(last.unwrap_or(0))
    }

    /// The position of the newest event (0 when the log is empty).
    pub fn last(&self) -> i64 {
        *self.last.borrow()
    }

    /// The first position still kept, or `None` when nothing is.
    pub async fn first_seq(&self) -> Result<Option<i64>> {
        let mut pooled = self.db.acquire().await?;
        Ok(on_conn!(&mut pooled.conn(), c => {
            sqlx::query_scalar("SELECT MIN(seq) FROM bus_events")
                .fetch_one(&mut **c)
                .await?
        }))
    }

    /// The position just before the first event that occurred at or after
    /// `micros`.
    pub async fn position_at(&self, micros: i64) -> Result<i64> {
        let mut pooled = self.db.acquire().await?;
        let first: Option<i64> = on_conn!(&mut pooled.conn(), c => {
            sqlx::query_scalar("SELECT MIN(seq) FROM bus_events WHERE occur_time >= $1")
                .bind(micros)
                .fetch_one(&mut **c)
                .await?
        });
        Ok(match first {
            Some(seq) => seq - 1,
            None => self.last(),
        })
    }

    /// Up to `limit` events after `after`, of `types` (all when empty).
    pub async fn read_after(
        &self,
        after: i64,
        types: &[String],
        limit: i64,
    ) -> Result<Vec<Logged>> {
        self.read_after_of(after, None, types, limit).await
    }

    /// [`Self::read_after`] within one domain's events (`source`, e.g.
    /// "cases": what its JetStream stream would hold).
    pub async fn read_after_of(
        &self,
        after: i64,
        source: Option<&str>,
        types: &[String],
        limit: i64,
    ) -> Result<Vec<Logged>> {
        let mut sql = String::from("SELECT seq, event FROM bus_events WHERE seq > $1");
        if !types.is_empty() {
            let marks: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 3)).collect();
            sql.push_str(&format!(" AND type IN ({})", marks.join(", ")));
        }
        let prefix = source.map(|s| format!("concierge.{s}.v1.%"));
        if prefix.is_some() {
            sql.push_str(&format!(" AND type LIKE ${}", types.len() + 3));
        }
        sql.push_str(" ORDER BY seq LIMIT $2");
        let mut pooled = self.db.acquire().await?;
        let rows: Vec<(i64, Vec<u8>)> = on_conn!(&mut pooled.conn(), c => {
            let mut q = sqlx::query_as(&sql).bind(after).bind(limit);
            for t in types {
                q = q.bind(t);
            }
            if let Some(p) = &prefix {
                q = q.bind(p);
            }
            q.fetch_all(&mut **c).await?
        });
        rows.into_iter()
            .map(|(seq, body)| {
                Ok(Logged {
                    seq,
                    event: Event::decode(body.as_slice()).map_err(Error::internal)?,
                })
            })
            .collect()
    }

    /// Waits until an event after `after` is in the log, or `at_most`.
    pub async fn wait_after(&self, after: i64, at_most: Duration) {
        let mut rx = self.last.subscribe();
        let _ = tokio::time::timeout(at_most, rx.wait_for(|last| *last > after)).await;
    }

    /// A durable consumer's position and the failed attempts at the event
    /// after it; a new consumer starts at the beginning of the log.
    pub async fn consumer(&self, name: &str) -> Result<(i64, u32)> {
        let mut pooled = self.db.acquire().await?;
        let row: Option<(i64, i64)> = on_conn!(&mut pooled.conn(), c => {
            sqlx::query_as("SELECT position, attempts FROM bus_consumers WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **c)
                .await?
        });
        Ok(row
            .map(|(p, a)| (p, u32::try_from(a).unwrap_or(u32::MAX)))
            .unwrap_or((0, 0)))
    }

    /// Records a durable consumer's position and the failed attempts at the
    /// event after it.
    pub async fn set_consumer(&self, name: &str, position: i64, attempts: u32) -> Result<()> {
        let mut tx = self.db.begin().await?;
        on_conn!(&mut tx.conn(), c => {
            sqlx::query(
                "INSERT INTO bus_consumers (name, position, attempts) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, attempts = excluded.attempts",
            )
            .bind(name)
            .bind(position)
            .bind(i64::from(attempts))
            .execute(&mut **c)
            .await?
            .rows_affected()
        });
        tx.commit().await
    }

    /// Forgets events past [`RETENTION`] every hour under `supervisor`, so
    /// that the log of a long-running `concierge dev` stays bounded.
    pub fn supervise(
        &self,
        supervisor: &crate::supervise::Supervisor,
        clock: crate::clock::SharedClock,
    ) {
        let this = self.clone();
        supervisor.spawn(
            "local-bus-prune",
            crate::supervise::Need::Optional,
            move || {
                let (this, clock) = (this.clone(), clock.clone());
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(3600));
                    loop {
                        tick.tick().await;
                        match this.prune(crate::clock::to_micros(clock.now())).await {
                            Ok(n) if n > 0 => {
                                tracing::info!(events = n, "forgot events past retention")
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "pruning the local event log failed")
                            }
                        }
                    }
                }
            },
        );
    }

    /// Forgets events older than [`RETENTION`] before `now_micros`.
    pub async fn prune(&self, now_micros: i64) -> Result<u64> {
        let cutoff = now_micros.saturating_sub(RETENTION.as_micros() as i64);
        let mut tx = self.db.begin().await?;
        let n = on_conn!(&mut tx.conn(), c => {
            sqlx::query("DELETE FROM bus_events WHERE occur_time < $1")
                .bind(cutoff)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok(n)
    }
}
