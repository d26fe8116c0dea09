//! Storage bootstrap for `sqlite://` and `postgres://` URLs. SQLite is the
//! embedded default (`concierge dev`), PostgreSQL is production; the SQL is
//! shared wherever the two agree, and [`on_conn!`] runs one body of code
//! against whichever pool or transaction is behind a [`Db`] or [`Tx`].

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// A connection pool to a service's own database. SQLite's comes with its
/// write queue: one write transaction at a time, the others waiting their
/// turn in order (see [`Db::begin`]).
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool, Arc<Semaphore>),
    Postgres(PgPool),
}

/// A transaction on a [`Db`]; SQLite's holds its turn in the write queue
/// until it commits or is dropped.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>, OwnedSemaphorePermit),
    Postgres(Transaction<'static, Postgres>),
}

/// A borrowed connection of either kind: a transaction's or a pooled one.
#[derive(Debug)]
pub enum Conn<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

/// Runs `$body` with `$conn` bound to the concrete `&mut &mut XConnection`
/// behind a `&mut Conn`, so that one piece of SQL code serves both back
/// ends. Use `&mut **$conn` as the executor.
#[macro_export]
macro_rules! on_conn {
    ($c:expr, $conn:ident => $body:expr) => {
        match $c {
            $crate::storage::Conn::Sqlite($conn) => $body,
            $crate::storage::Conn::Postgres($conn) => $body,
        }
    };
}

/// A connection checked out of a [`Db`] pool, for reads outside a transaction.
#[derive(Debug)]
pub enum PooledConn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl PooledConn {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            PooledConn::Sqlite(c) => Conn::Sqlite(c),
            PooledConn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// Which SQL dialect a [`Db`] speaks, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Db {
    /// Opens a pool for `url` (`sqlite://path?mode=rwc`, `sqlite::memory:`,
    /// `postgres://…`). SQLite runs in WAL mode with `synchronous=FULL`, so an
    /// acknowledged write survives `kill -9` and a power cut alike.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| Error::internal(anyhow::anyhow!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                // An in-memory database lives and dies with its one connection.
                .max_connections(if in_memory { 1 } else { max_connections.max(1) })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool, Arc::new(Semaphore::new(1))))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| Error::internal(anyhow::anyhow!("bad PostgreSQL URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                // A ping on every acquire costs a round trip per query; only
                // a connection that sat idle (a server restart may have
                // killed it meanwhile), or any connection soon after one was
                // found dead, is checked, and replaced if it fails.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= IDLE_BEFORE_CHECK || connection_lost_recently() {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(Error::invalid(
                "database.url",
                "must start with sqlite: or postgres:",
            ))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(..) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies the common tables (outbox, idempotency keys, service secrets)
    /// and then the service's own migrations. The two migrators share sqlx's
    /// bookkeeping table, so each ignores the other's versions: common
    /// migrations are numbered below 1000, services' from 1000 up.
    ///
    /// A schema that is already up to date is left alone without a single
    /// DDL statement (sqlx's own run begins with `CREATE TABLE IF NOT
    /// EXISTS`), so a service whose database role may not change the schema
    /// starts once `concierge migrate` has run with a role that may.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> Result<()> {
        if matches!(self.unapplied_migrations(sqlite, postgres).await, Ok(v) if v.is_empty()) {
            return Ok(());
        }
        match self {
            Db::Sqlite(pool, _) => {
                run(&COMMON_SQLITE, pool).await?;
                run(sqlite, pool).await
            }
            Db::Postgres(pool) => {
                run(&COMMON_POSTGRES, pool).await?;
                run(postgres, pool).await
            }
        }
    }

    /// The versions of the common and the service's migrations that this
    /// database lacks (or holds with a different checksum), read without
    /// changing anything. Fails when a migration failed partway.
    pub async fn unapplied_migrations(
        &self,
        sqlite: &Migrator,
        postgres: &Migrator,
    ) -> Result<Vec<i64>> {
        // Asked before reading it, so that a database nothing was ever
        // migrated on lacks every migration rather than failing the read.
        let (migrators, bookkeeping) = match self {
            Db::Sqlite(pool, _) => (
                [&COMMON_SQLITE, sqlite],
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
                )
                .fetch_one(pool)
                .await?,
            ),
            Db::Postgres(pool) => (
                [&COMMON_POSTGRES, postgres],
                sqlx::query_scalar::<_, bool>("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(pool)
                    .await?,
            ),
        };
        if !bookkeeping {
            return Ok(migrators
                .iter()
                .flat_map(|m| m.iter())
                .filter(|m| m.migration_type.is_up_migration())
                .map(|m| m.version)
                .collect());
        }
        match self {
            Db::Sqlite(pool, _) => unapplied(&migrators, pool).await,
            Db::Postgres(pool) => unapplied(&migrators, pool).await,
        }
    }

    pub async fn acquire(&self) -> Result<PooledConn> {
        Ok(match self {
            Db::Sqlite(pool, _) => PooledConn::Sqlite(pool.acquire().await?),
            Db::Postgres(pool) => PooledConn::Postgres(pool.acquire().await?),
        })
    }

    /// Begins a write transaction. On SQLite it first waits its turn in the
    /// database's write queue, then takes the write lock at once (`BEGIN
    /// IMMEDIATE`: a deferred transaction that reads and then writes fails
    /// with SQLITE_BUSY, without waiting, whenever another writer committed
    /// in between). SQLite has one writer at a time anyway; without the queue
    /// the others would poll its lock with growing sleeps (the busy timeout),
    /// served in no order, and a few would wait many times longer than the
    /// rest. Reads never queue: WAL lets them run beside the writer.
    ///
    /// `BEGIN` is the first statement on the connection, so a pooled
    /// connection that died since its last use (a server restart, a
    /// terminated backend) fails there having done nothing: that is retried
    /// once on another connection (sqlx drops the dead one on release).
    pub async fn begin(&self) -> Result<Tx> {
        match self {
            Db::Sqlite(pool, queue) => {
                let turn = queue
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Unavailable("the database is closed".into()))?;
                Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?, turn))
            }
            Db::Postgres(pool) => match pool.begin().await {
                Ok(tx) => Ok(Tx::Postgres(tx)),
                Err(e) if is_connection_loss(&e) => {
                    note_connection_loss();
                    tracing::info!(error = %e, "a pooled connection was dead; retrying on another");
                    Ok(Tx::Postgres(pool.begin().await?))
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Db::Sqlite(pool, _) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool, queue) => {
                queue.close();
                pool.close().await
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// The pool's open connections, how many of them are idle, and how many
    /// it may open.
    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Db::Sqlite(pool, _) => PoolStats {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            },
            Db::Postgres(pool) => PoolStats {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            },
        }
    }

    /// Reports the pool as `concierge_db_pool_{size,idle,max}{database}`
    /// now and every [`POOL_SAMPLE_EVERY`], under `supervisor`: a pool that
    /// stays at its max with nothing idle is the one making calls wait.
    pub fn report_pool(&self, supervisor: &crate::supervise::Supervisor, database: &'static str) {
        let db = self.clone();
        supervisor.spawn(
            format!("{database}-db-pool-metrics"),
            crate::supervise::Need::Optional,
            move || {
                let db = db.clone();
                async move {
                    let mut tick = tokio::time::interval(POOL_SAMPLE_EVERY);
                    loop {
                        tick.tick().await;
                        let stats = db.pool_stats();
                        metrics::gauge!("concierge_db_pool_size", "database" => database)
                            .set(stats.size as f64);
                        metrics::gauge!("concierge_db_pool_idle", "database" => database)
                            .set(stats.idle as f64);
                        metrics::gauge!("concierge_db_pool_max", "database" => database)
                            .set(stats.max as f64);
                    }
                }
            },
        );
    }
}

/// How often [`Db::report_pool`] samples a pool: a pool's size changes by
/// the second, and a scrape comes every 15 s or so.
pub const POOL_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// A connection pool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

async fn run<'a, A>(migrator: &Migrator, conn: A) -> Result<()>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let migrator = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    };
    migrator
        .run(conn)
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("migration failed: {e}")))
}

async fn unapplied<'a, A>(migrators: &[&Migrator], conn: A) -> Result<Vec<i64>>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate as _;
    let mut conn = conn.acquire().await?;
    let unreadable = |e| Error::internal(anyhow::anyhow!("reading the schema version: {e}"));
    if let Some(version) = conn.dirty_version().await.map_err(unreadable)? {
        return Err(Error::internal(anyhow::anyhow!(
            "migration {version} failed partway; repair it by hand before migrating again"
        )));
    }
    let applied: std::collections::HashMap<i64, _> = conn
        .list_applied_migrations()
        .await
        .map_err(unreadable)?
        .into_iter()
        .map(|m| (m.version, m.checksum))
        .collect();
    Ok(migrators
        .iter()
        .flat_map(|m| m.iter())
        .filter(|m| m.migration_type.is_up_migration())
        .filter(|m| applied.get(&m.version) != Some(&m.checksum))
        .map(|m| m.version)
        .collect())
}

static COMMON_SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static COMMON_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(..) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx, _) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            // The turn in the write queue passes on once the commit is done.
            Tx::Sqlite(tx, _turn) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// How long a pooled PostgreSQL connection may sit idle before it is pinged
/// on its next acquire.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

/// For how long after a connection was found dead every acquire is checked:
/// its idle siblings most likely died with it.
const CHECK_AFTER_LOSS: Duration = Duration::from_secs(10);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds after [`epoch`] (plus one, so 0 means never) when a
/// connection was last found dead.
static LAST_LOSS_MS: AtomicU64 = AtomicU64::new(0);

/// Records that a database connection was found dead (by any pool in the
/// process): for a while after, pooled connections are checked before use.
pub fn note_connection_loss() {
    let ms = epoch().elapsed().as_millis() as u64 + 1;
    LAST_LOSS_MS.store(ms, Ordering::Relaxed);
}

fn connection_lost_recently() -> bool {
    let last = LAST_LOSS_MS.load(Ordering::Relaxed);
    last != 0
        && epoch().elapsed().as_millis() as u64 + 1 - last < CHECK_AFTER_LOSS.as_millis() as u64
}

/// True when `err` says the connection itself is gone, not the statement.
pub fn is_connection_loss(err: &sqlx::Error) -> bool {
    use crate::error::{StorageFault, classify_sqlstate};
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.code().as_deref().and_then(classify_sqlstate) == Some(StorageFault::ConnectionLost)
        }
        _ => false,
    }
}

/// True when a database error is a unique-key violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
