//! `concierge bench …`: measurements run on purpose and reported as ratios
//! against a baseline taken in the same run, never as timed test assertions.

mod disputes;
mod events;
mod gateway;
mod load;
mod review;
mod scores;
mod storage;

use std::time::Duration;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Keyset paging of ListCases at page 1 and deep in 1,000,000 cases, and
    /// the timer sweep against a bare SKIP LOCKED claim loop, on PostgreSQL.
    Storage {
        /// A PostgreSQL server URL whose user may create databases.
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        cases: i64,
        #[arg(long, default_value_t = 100_000)]
        timers: i64,
    },
    /// GetAccount through the gateway against GetAccount straight to the
    /// customers service, same process, same database, same run.
    Gateway {
        /// Concurrent callers, each on its own HTTP/2 connection.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// HTTP/2 connections from the gateway to the service; 4 is what
        /// `serve gateway` opens to each backend unless configured.
        #[arg(long, default_value_t = 4)]
        backend_connections: usize,
        /// Seconds each side is measured (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The customers database; a fresh SQLite file when absent.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// CreateCase, GetCase, ListCases and a mix of them, closed loop through
    /// a gateway from Python grpcio processes and from the SDK, at several
    /// connection counts; with PostgreSQL, pgbench from the same run as the
    /// baseline.
    Load(Box<load::Load>),
    /// The portfolio review of a manager with 5,000 cases that need action
    /// among 1,000,000, against the bare SQL read of the same rows.
    Review {
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        cases: i64,
        #[arg(long, default_value_t = 5_000)]
        portfolio: i64,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Chase steps taken by the sweep for cases whose condition just became
    /// true, against a hand-written loop of the same writes.
    Chase {
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: String,
        #[arg(long, default_value_t = 100_000)]
        cases: usize,
    },
    /// The credit calculation against a bare multiply-divide; a dispute's
    /// create and five transitions through the gateway against straight to
    /// the service; a document up and down against a file copy.
    Disputes {
        #[arg(long, default_value_t = 200_000)]
        rounds: usize,
        #[arg(long, default_value_t = 300)]
        disputes: usize,
        #[arg(long, default_value_t = 100)]
        document_mib: usize,
    },
    /// QueryScores and BatchGetClientSatisfactions over 10,000,000 survey
    /// responses against the same aggregates in plain SQL, on PostgreSQL.
    Scores {
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: String,
        #[arg(long, default_value_t = 10_000_000)]
        responses: i64,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Keep the database afterwards (to read the plans with EXPLAIN).
        #[arg(long)]
        keep: bool,
    },
    /// Events from the outbox to JetStream against a bare publish loop, and
    /// from commit to a SubscribeEvents subscriber against a bare NATS
    /// publish to a subscriber.
    Events {
        #[arg(
            long,
            env = "CONCIERGE_BENCH_NATS_URL",
            default_value = "nats://127.0.0.1:4222"
        )]
        nats_url: String,
        /// Also relay from PostgreSQL (a server whose user may create databases).
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: Option<String>,
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        samples: usize,
    },
    /// An account's control document with 2,000 open requests: rows, CSV
    /// and HTML, against reading the cases.
    ControlDoc {
        #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL")]
        postgres_url: String,
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        #[arg(long, default_value_t = 30)]
        rounds: usize,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gateway {
            connections,
            backend_connections,
            seconds,
            database_url,
        } => gateway::run(connections, backend_connections, seconds, database_url).await,
        Command::Storage {
            postgres_url,
            cases,
            timers,
        } => storage::run(&postgres_url, cases, timers).await,
        Command::Load(load) => load::run(*load).await,
        Command::Review {
            postgres_url,
            cases,
            portfolio,
            rounds,
        } => review::review(&postgres_url, cases, portfolio, rounds).await,
        Command::Chase {
            postgres_url,
            cases,
        } => review::chase(&postgres_url, cases).await,
        Command::ControlDoc {
            postgres_url,
            requests,
            rounds,
        } => review::control_doc(&postgres_url, requests, rounds).await,
        Command::Disputes {
            rounds,
            disputes,
            document_mib,
        } => disputes::run(rounds, disputes, document_mib).await,
        Command::Scores {
            postgres_url,
            responses,
            rounds,
            keep,
        } => scores::run(&postgres_url, responses, rounds, keep).await,
        Command::Events {
            nats_url,
            postgres_url,
            events,
            samples,
        } => events::run(nats_url, postgres_url, events, samples).await,
    }
}

/// A fresh database on the server behind `admin_url`, and a cases service
/// on it (its customers service unreachable: nothing measured asks it).
pub(super) async fn fresh(
    admin_url: &str,
) -> anyhow::Result<(
    String,
    concierge_common::storage::Db,
    concierge_cases::Cases,
    concierge_common::principal::PrincipalCodec,
)> {
    let (name, url) = create_database(admin_url).await?;
    let db = concierge_common::storage::Db::connect(&url, 8).await?;
    let codec =
        concierge_common::principal::PrincipalCodec::new("bench-secret-bench-secret".into());
    let nowhere = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let svc = concierge_cases::Cases::open(
        db.clone(),
        codec.clone(),
        std::sync::Arc::new(concierge_common::clock::SystemClock),
        nowhere,
    )
    .await?;
    Ok((name, db, svc, codec))
}

/// A new, empty database on the server behind `admin_url`: its name and URL.
pub(super) async fn create_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let name = format!("concierge_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(admin_url)
    );
    println!("database {name}");
    Ok((name, url))
}

pub(super) async fn drop_database(
    admin_url: &str,
    db: concierge_common::storage::Db,
    name: &str,
) -> anyhow::Result<()> {
    db.close().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// The `p` quantile (0..1) of `v`, nearest rank.
fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}
