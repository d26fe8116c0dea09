//! The baseline: pgbench against the same PostgreSQL server in the same run,
//! in a scratch database made for it and dropped after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::Connection as _;

use super::Cell;

/// Rows the point SELECT picks from.
const ROWS: u32 = 10_000;

/// What pgbench runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    /// A point SELECT by primary key, prepared: GetCase's floor.
    Select,
    /// A single-row INSERT, committed on its own: CreateCase's floor.
    Insert,
}

impl Sql {
    pub fn as_str(self) -> &'static str {
        match self {
            Sql::Select => "select",
            Sql::Insert => "insert",
        }
    }

    fn script(self) -> String {
        match self {
            Sql::Select => {
                format!("\\set id random(1, {ROWS})\nSELECT account, body FROM rows WHERE id = :id;\n")
            }
            // About the size of a stored case.
            Sql::Insert => "INSERT INTO inserts (account, body) VALUES ('accounts/load-w', convert_to(repeat('x', 200), 'UTF8'));\n".into(),
        }
    }
}

pub struct Scratch {
    admin_url: String,
    name: String,
    url: String,
    /// Scripts and per-transaction logs.
    dir: PathBuf,
}

impl Scratch {
    pub async fn create(admin_url: &str, dir: &Path) -> anyhow::Result<Self> {
        let name = format!("concierge_load_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(admin_url).context("--postgres-url")?;
        url.set_path(&name);
        let scratch = Self {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
            dir: dir.join("pgbench"),
        };
        std::fs::create_dir_all(&scratch.dir)?;
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {}", scratch.name))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let made = async {
            let mut db = sqlx::PgConnection::connect(&scratch.url).await?;
            for sql in [
                "CREATE TABLE rows (id bigint PRIMARY KEY, account text NOT NULL, body bytea NOT NULL)".to_string(),
                format!("INSERT INTO rows SELECT i, 'accounts/load-' || (i % 4), convert_to(repeat('x', 200), 'UTF8') FROM generate_series(1, {ROWS}) AS i"),
                "CREATE TABLE inserts (id bigserial PRIMARY KEY, account text NOT NULL, body bytea NOT NULL)".to_string(),
                "VACUUM ANALYZE rows".to_string(),
            ] {
                sqlx::query(&sql).execute(&mut db).await?;
            }
            db.close().await?;
            anyhow::Ok(())
        };
        if let Err(e) = made.await {
            scratch.drop_database().await?;
            return Err(e);
        }
        Ok(scratch)
    }

    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }

    /// `clients` pgbench connections running `sql` for `seconds`.
    pub async fn run(&self, sql: Sql, clients: usize, seconds: u64) -> anyhow::Result<Cell> {
        let script = self.dir.join(format!("{}.sql", sql.as_str()));
        std::fs::write(&script, sql.script())?;
        let logs = self.dir.join(format!("log-{}-{clients}", sql.as_str()));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        // Two threads drive any number of clients on this 2-core class of
        // machine; more would only contend with the server.
        let threads = clients.min(2);
        let out = tokio::process::Command::new("pgbench")
            .args(["--no-vacuum", "--protocol=prepared", "--log"])
            .arg(format!("--log-prefix={}", logs.join("tx").display()))
            .arg(format!("--client={clients}"))
            .arg(format!("--jobs={threads}"))
            .arg(format!("--time={seconds}"))
            .arg("--file")
            .arg(&script)
            .arg(&self.url)
            .kill_on_drop(true)
            .output()
            .await
            .context("running pgbench (Debian: postgresql-client)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "pgbench failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |prefix: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let tps = field("tps = ").context("pgbench printed no tps")?;
        let failed = field("number of failed transactions: ").unwrap_or(0.0) as u64;
        let latencies = transaction_latencies(&logs)?;
        let mut errors = std::collections::BTreeMap::new();
        if failed > 0 {
            errors.insert("SQL".to_string(), failed);
        }
        let mut cell = Cell::measured(
            sql.as_str(),
            clients,
            "pgbench",
            latencies,
            errors,
            Default::default(),
            Duration::from_secs(seconds),
            None,
            None,
        );
        // pgbench's own count leaves out its connection set-up.
        cell.rps = tps;
        let _ = std::fs::remove_dir_all(&logs);
        Ok(cell)
    }
}

/// The latency of every transaction from pgbench's per-transaction logs
/// (`client_id transaction_no time_us …`, one file per thread).
fn transaction_latencies(dir: &Path) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                all.push(Duration::from_micros(us));
            }
        }
    }
    Ok(all)
}
