//! Test support shared by every service's tests: a fresh database per test on
//! SQLite or on the real PostgreSQL, and waiting on conditions instead of
//! sleeping.

use std::time::Duration;

use crate::clock::TestClock;
use crate::kit::{Deps, Peers, Service};
use crate::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec};
use crate::server::Running;
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

/// The environment variable naming a NATS server with JetStream for tests,
/// e.g. `nats://127.0.0.1:4222`. `.ci/run` always sets it.
pub const NATS_ENV: &str = "CONCIERGE_TEST_NATS_URL";

/// The environment variable naming a Python with grpcio-tools and
/// googleapis-common-protos, for the interop tests. `.ci/run` always sets it.
pub const PYTHON_ENV: &str = "CONCIERGE_TEST_PYTHON";

/// Set (to anything but empty, `0` or `false`) on CI machines.
pub const CI_ENV: &str = "CI";

/// The value of `var`, which `test` needs. Without it the test is skipped
/// with a loud notice on a developer's machine; under CI it fails, so a CI
/// set-up that lost a service cannot pass green by skipping what needs it.
/// `example` is a value to suggest, e.g. `nats://127.0.0.1:4222`.
pub fn required_env(var: &str, test: &str, example: &str) -> Option<String> {
    match skip_or_fail(
        var,
        std::env::var(var).ok().as_deref(),
        std::env::var(CI_ENV).ok().as_deref(),
        test,
        example,
    ) {
        Ok(value) => value,
        Err(message) => panic!("{message}"),
    }
}

/// The decision of [`required_env`], apart from the process environment so
/// that it can be tested.
fn skip_or_fail(
    var: &str,
    value: Option<&str>,
    ci: Option<&str>,
    test: &str,
    example: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        return Ok(Some(v.to_string()));
    }
    let under_ci =
        ci.is_some_and(|c| !c.is_empty() && c != "0" && !c.eq_ignore_ascii_case("false"));
    if under_ci {
        return Err(format!(
            "{test} needs {var} (e.g. {example}), and {CI_ENV} is set: under CI a missing service fails the run instead of skipping the test; fix the CI set-up"
        ));
    }
    eprintln!(
        "\n*** SKIPPED {test}: set {var} (e.g. {example}) to run it; .ci/run always does ***\n"
    );
    Ok(None)
}

/// The admin URL of the test PostgreSQL server, or `None` after saying loudly
/// that the PostgreSQL variant of `test` is skipped (never under CI).
pub fn postgres_url(test: &str) -> Option<String> {
    required_env(
        POSTGRES_ENV,
        &format!("{test} on PostgreSQL"),
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// The test NATS server, or `None` after a loud SKIPPED (never under CI).
pub fn nats_url(test: &str) -> Option<String> {
    required_env(NATS_ENV, test, "nats://127.0.0.1:4222")
}

/// The Python for interop tests, or `None` after a loud SKIPPED (never under CI).
pub fn python(test: &str) -> Option<String> {
    required_env(
        PYTHON_ENV,
        test,
        "a venv's bin/python with grpcio-tools and googleapis-common-protos",
    )
}

/// A real SMTP server on loopback (Python's aiosmtpd, from the CI venv),
/// keeping every message it receives as a file of a Maildir, with the
/// envelope's recipients in `X-RcptTo`. Stopped when dropped.
pub struct SmtpSink {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// `smtp://127.0.0.1:{port}`, for [`crate::mail::Mailer::smtp`].
    pub url: String,
}

impl SmtpSink {
    /// Starts one and waits (a bounded number of tries) until it accepts
    /// connections; `None` where Python is not configured (never under CI).
    pub async fn start(test: &str) -> Option<Self> {
        let python = python(test)?;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = std::process::Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("box"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting aiosmtpd with {python}: {e}"));
        let sink = Self {
            child,
            dir,
            url: format!("smtp://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(sink);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "aiosmtpd did not accept connections on port {port} within 10 s (is it installed in {python}'s venv?)"
        );
    }

    /// The messages received so far, in the order they arrived, each as its
    /// raw text.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("box").join("new")) else {
            return Vec::new();
        };
        // Maildir names start "{seconds}.M{microseconds}", whose digits vary
        // in number: the order is theirs as numbers, not as text.
        let arrival = |p: &std::path::PathBuf| -> (u64, u64) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let mut parts = name.split('.');
            let secs = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let micros = parts
                .next()
                .and_then(|m| m.strip_prefix('M'))
                .and_then(|m| m.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            (secs, micros)
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort_by_key(|p| (arrival(p), p.clone()));
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Runs each test once on SQLite and once on PostgreSQL (a fresh database
/// each), as `sqlite::<test>` and `postgres::<test>`. With `harness = H`
/// each test takes the `H` that `H::new(backend, test_name)` opens (`None`
/// skips a PostgreSQL run off CI, see [`postgres_url`]); with
/// `multi_thread;` each takes the [`Backend`] and runs on two worker
/// threads (tests of concurrent claimers).
#[macro_export]
macro_rules! both_backends {
    (harness = $harness:ident; $($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                let h = super::$harness::new($crate::testing::Backend::Sqlite, stringify!($test))
                    .await
                    .expect("SQLite is always there");
                super::$test(h).await;
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                let Some(h) = super::$harness::new($crate::testing::Backend::Postgres, stringify!($test)).await else { return };
                super::$test(h).await;
            })+
        }
    };
    (multi_thread; $($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test($crate::testing::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test($crate::testing::Backend::Postgres).await })+
        }
    };
}

/// The instant every service test's clock starts at.
pub const TEST_EPOCH: &str = "2026-11-02T09:00:00Z";

/// One service opened on a fresh test database, called through its gRPC
/// trait with principals signed as the gateway signs them.
pub struct Harness<S> {
    pub svc: S,
    pub codec: PrincipalCodec,
    pub clock: TestClock,
    pub db: TestDb,
    /// The service's files, in a directory removed with the harness.
    pub files: crate::files::Files,
    _files_dir: tempfile::TempDir,
}

impl<S: Service> Harness<S> {
    /// `S` on a fresh database of `backend`, calling `peers`; `None` when
    /// PostgreSQL is asked for but not configured (never under CI).
    pub async fn open(
        backend: Backend,
        test: &str,
        codec: PrincipalCodec,
        clock: TestClock,
        peers: Peers,
    ) -> Option<Self> {
        let off = std::sync::Arc::new(crate::mail::Mailer::Off);
        Self::open_mailing(backend, test, codec, clock, peers, off).await
    }

    /// [`Harness::open`] with its e-mail going to `mail`.
    pub async fn open_mailing(
        backend: Backend,
        test: &str,
        codec: PrincipalCodec,
        clock: TestClock,
        peers: Peers,
        mail: std::sync::Arc<crate::mail::Mailer>,
    ) -> Option<Self> {
        let db = TestDb::new(backend, test).await?;
        let files_dir = tempfile::tempdir().expect("a directory for the service's files");
        let files = crate::files::Files::local(files_dir.path()).expect("a local file store");
        let svc = S::open(Deps {
            db: db.db.clone(),
            principals: codec.clone(),
            clock: std::sync::Arc::new(clock.clone()),
            peers,
            mail,
            files: files.clone(),
            public_url: "http://127.0.0.1:8081".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("opening the {} service: {e}", S::NAME));
        Some(Self {
            svc,
            codec,
            clock,
            db,
            files,
            _files_dir: files_dir,
        })
    }

    /// `message` as `who` sends it through the gateway.
    pub fn req<T>(&self, who: &Principal, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut().insert(
            PRINCIPAL_HEADER,
            self.codec
                .encode(who, S::GRPC_NAME)
                .parse()
                .expect("a signed principal is a valid header"),
        );
        r
    }

    /// Serves the service on a loopback port, for a service under test
    /// that calls it; the server stops when the [`Running`] is dropped.
    pub async fn serve(&self) -> (Running, tonic::transport::Channel) {
        let running = crate::server::start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port"),
            self.svc.routes(),
            crate::server::Serve {
                health_names: vec![],
                grace_period: Duration::from_secs(1),
                drain_delay: Duration::ZERO,
            },
            async { Ok(()) },
            std::future::pending(),
        )
        .await
        .expect("serving on loopback");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
            .expect("a loopback URL")
            .connect_lazy();
        (running, channel)
    }

    /// Every event the service has written to its outbox, oldest first.
    pub async fn events(&self) -> Vec<concierge_proto::events::Event> {
        let mut pooled = self.db.db.acquire().await.expect("a connection");
        crate::outbox::read_after(&mut pooled.conn(), 0, 10_000)
            .await
            .expect("reading the outbox")
            .into_iter()
            .map(|p| p.event)
            .collect()
    }
}

/// The bookkeeping columns every resource table has (`resource.rs`).
const BOOKKEEPING: [&str; 8] = [
    "name",
    "parent",
    "account",
    "create_time",
    "update_time",
    "delete_time",
    "revision",
    "body",
];

/// Checks that the places a filterable column of `R` is declared agree, on
/// `db` as its migrations left it: every field of the kind is a column of
/// its table, and the resource writes every field column that is not
/// bookkeeping and nothing else. A column added to a migration and not to
/// the kind (or the other way round) fails here, on both databases.
pub async fn assert_columns_agree<R: crate::crud::Resource<P>, P>(db: &Db) {
    let kind = R::KIND;
    let mut pooled = db.acquire().await.expect("a connection");
    let table: Vec<String> = crate::on_conn!(&mut pooled.conn(), c => match db.dialect() {
        crate::storage::Dialect::Sqlite => sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(kind.table)
            .fetch_all(&mut **c)
            .await,
        crate::storage::Dialect::Postgres => sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
        )
        .bind(kind.table)
        .fetch_all(&mut **c)
        .await,
    }
    .expect("reading the table's columns"));
    assert!(!table.is_empty(), "{} has no table", kind.table);
    for f in kind.fields {
        assert!(
            table.iter().any(|c| c == f.column),
            "{}: the filter field {} names column {}, which the migrations do not create",
            kind.table,
            f.name,
            f.column
        );
    }
    let written: std::collections::BTreeSet<&str> =
        R::default().columns().iter().map(|(c, _)| *c).collect();
    let declared: std::collections::BTreeSet<&str> = kind
        .fields
        .iter()
        .map(|f| f.column)
        .filter(|c| !BOOKKEEPING.contains(c))
        .collect();
    assert_eq!(
        written, declared,
        "{}: the columns the resource writes differ from its kind's filter fields",
        kind.table
    );
}

/// Checks the events a scenario wrote against the domain's catalogue `E`:
/// each type is declared, its payload is the declared message, a staff-only
/// type's event is internal, and every declared type was emitted (so the
/// catalogue lists nothing that never happens).
pub fn assert_events_match_catalogue<E: concierge_proto::catalogue::Catalogue>(
    domain: &str,
    events: &[concierge_proto::events::Event],
) {
    use concierge_proto::events::Visibility;
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        let Some(declared) = E::from_event_type(&e.r#type).and_then(|t| t.declared()) else {
            panic!("{} is not in the {domain} catalogue", e.r#type);
        };
        let payload = e.payload.as_ref().expect("every event has a payload");
        assert_eq!(
            payload.type_url,
            declared.payload_type_url(),
            "{}'s payload",
            e.r#type
        );
        if declared.audience == Visibility::Internal {
            assert_eq!(e.visibility, Visibility::Internal as i32, "{}", e.r#type);
        }
        seen.insert(declared.event_type);
    }
    let declared: std::collections::BTreeSet<_> =
        E::DECLARED.iter().map(|d| d.event_type).collect();
    assert_eq!(seen, declared, "every declared event type is emitted");
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

#[cfg(test)]
mod tests {
    use super::skip_or_fail;

    #[test]
    fn a_missing_service_skips_on_a_laptop_and_fails_under_ci() {
        let skip = |ci| skip_or_fail("CONCIERGE_TEST_X", None, ci, "t", "x://");
        assert_eq!(skip(None), Ok(None));
        assert_eq!(skip(Some("")), Ok(None));
        assert_eq!(skip(Some("false")), Ok(None));
        assert_eq!(skip(Some("0")), Ok(None));
        for ci in ["true", "1", "yes"] {
            let err = skip(Some(ci)).unwrap_err();
            assert!(err.contains("CONCIERGE_TEST_X"), "{err}");
            assert!(err.contains("CI is set"), "{err}");
        }
        let empty = skip_or_fail("CONCIERGE_TEST_X", Some(""), Some("true"), "t", "x://");
        assert!(empty.is_err(), "an empty value is a missing one");
        assert_eq!(
            skip_or_fail("CONCIERGE_TEST_X", Some("x://h"), Some("true"), "t", "x://"),
            Ok(Some("x://h".into()))
        );
    }
}
