//! A PostgreSQL restart, as the pool sees it: every pooled connection dies
//! at once. Shown without restarting the shared server, by terminating the
//! backends of this test's own database.

use concierge_common::error::Result;
use concierge_common::on_conn;
use concierge_common::storage::Db;
use concierge_common::testing::{Backend, TestDb};
use tonic::Code;

/// Terminates every backend connected to the test database, the way an
/// administrator's shutdown (SQLSTATE 57P01) ends them.
async fn terminate_backends(admin_url: &str, db_url: &str) -> i64 {
    use sqlx::Connection;
    let name = db_url.rsplit_once('/').unwrap().1;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    killed.into_iter().filter(|k| *k).count() as i64
}

async fn write(db: &Db, n: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    on_conn!(&mut tx.conn(), c => sqlx::query("INSERT INTO notes_t (n) VALUES ($1)")
        .bind(n)
        .execute(&mut **c)
        .await?
        .rows_affected());
    tx.commit().await
}

async fn read(db: &Db) -> Result<i64> {
    let mut pooled = db.acquire().await?;
    Ok(
        on_conn!(&mut pooled.conn(), c => sqlx::query_scalar("SELECT COUNT(*) FROM notes_t")
        .fetch_one(&mut **c)
        .await?),
    )
}

/// Fills the pool with `n` live connections.
async fn warm(db: &Db, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut c = db.acquire().await.unwrap();
        on_conn!(&mut c.conn(), x => sqlx::query("SELECT 1").execute(&mut **x).await.unwrap().rows_affected());
        held.push(c);
    }
}

/// The gRPC code a caller would get.
fn code<T>(result: Result<T>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(e) => tonic::Status::from(e).code(),
    }
}

/// A fresh database with a table to write, and six pooled connections
/// open to it (so that there is a pool for a restart to kill).
async fn warm_database() -> TestDb {
    let test = TestDb::new(Backend::Postgres, "storage_faults")
        .await
        .unwrap();
    on_conn!(&mut test.db.acquire().await.unwrap().conn(), c => sqlx::query("CREATE TABLE notes_t (n BIGINT NOT NULL)")
        .execute(&mut **c).await.unwrap().rows_affected());
    warm(&test.db, 6).await;
    test
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_every_pooled_connection_died_succeed() {
    let Some(admin) = concierge_common::testing::postgres_url(
        "writes_after_every_pooled_connection_died_succeed",
    ) else {
        return;
    };
    let test = warm_database().await;
    let db = &test.db;
    write(db, 0).await.unwrap();

    assert!(terminate_backends(&admin, &test.url).await >= 6);
    // Every write goes through BEGIN first, which finds the dead connection
    // before doing anything and is retried: the caller sees nothing.
    for n in 1..=8 {
        write(db, n)
            .await
            .unwrap_or_else(|e| panic!("write {n} after the restart: {e:?}"));
    }
    assert_eq!(read(db).await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_every_pooled_connection_died_are_never_internal() {
    let Some(admin) = concierge_common::testing::postgres_url(
        "reads_after_every_pooled_connection_died_are_never_internal",
    ) else {
        return;
    };
    let test = warm_database().await;
    let db = &test.db;

    assert!(terminate_backends(&admin, &test.url).await >= 6);
    // A read runs on whatever connection it gets: the first to meet a dead
    // one may be told to retry (UNAVAILABLE), never INTERNAL; once one was
    // found dead, the rest are checked before use and replaced.
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(code(read(db).await));
    }
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Ok | Code::Unavailable)),
        "{codes:?}"
    );
    assert!(
        codes.iter().filter(|c| **c == Code::Unavailable).count() <= 1,
        "at most the first read meets a dead connection: {codes:?}"
    );
    assert_eq!(codes.last(), Some(&Code::Ok));
}
