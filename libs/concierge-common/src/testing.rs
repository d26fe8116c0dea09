//! Test support shared by every service's tests: a fresh database per test on
//! SQLite or on the real PostgreSQL, and waiting on conditions instead of
//! sleeping.

use std::time::Duration;

use crate::storage::Db;

/// The environment variable naming a PostgreSQL server for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`. `.ci/run` always sets it.
pub const POSTGRES_ENV: &str = "CONCIERGE_TEST_POSTGRES_URL";

/// Which database a storage test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("url", &self.url).finish()
    }
}

/// The admin URL of the test PostgreSQL server, or `None` after saying loudly
/// that the PostgreSQL variant of `test` is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test} on PostgreSQL: set {POSTGRES_ENV} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it; .ci/run always does ***\n"
            );
            None
        }
    }
}

/// A URL to a new, empty database on the server behind `admin_url`.
pub async fn create_postgres_database(admin_url: &str) -> (String, String) {
    use sqlx::Connection;
    let name = format!("concierge_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    (format!("{base}/{name}"), name)
}

impl TestDb {
    /// A fresh database; `None` (after a loud notice) when PostgreSQL is asked
    /// for but not configured.
    pub async fn new(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                let db = Db::connect(&url, 4).await.expect("open SQLite");
                Some(Self {
                    db,
                    url,
                    cleanup: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = postgres_url(test)?;
                let (url, name) = create_postgres_database(&admin).await;
                let db = Db::connect(&url, 8).await.expect("open PostgreSQL");
                Some(Self {
                    db,
                    url,
                    cleanup: Some((admin, name)),
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.cleanup.take() {
            // Drop runs outside async; a short-lived runtime on its own thread
            // removes the database so that test runs leave nothing behind.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Polls `condition` until it holds or `within` passes; the way tests wait
/// for servers and background work, never with a bare sleep.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Duration::from_millis(5);
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}
