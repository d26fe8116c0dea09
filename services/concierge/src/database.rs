//! Opening a service's database from the command line, with a failure an
//! operator can act on: which server (never the password), why, and what to
//! check. The pool alone answers an unreachable PostgreSQL with a bare
//! "pool timed out" after its acquire timeout, its cause thrown away.

use std::str::FromStr;
use std::time::Duration;

use concierge_common::storage::Db;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

/// How long a first connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `url`'s database, after one direct connection that reports its own cause.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        probe_postgres(url).await?;
    }
    Db::connect(url, max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("opening the database {}: {e}", redacted(url)))
}

/// `user@host:port/database`: where a URL points, without its secrets.
fn target(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(the user's database)")
    )
}

/// The URL with any password replaced, for messages.
fn redacted(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) if url.starts_with("postgres") => format!("postgres://{}", target(&o)),
        _ => url
            .split_once('?')
            .map(|(path, _)| path.to_string())
            .unwrap_or_else(|| url.to_string()),
    }
}

const CHECK: &str = "check that PostgreSQL runs there and accepts connections from this machine, and that database.url (CONCIERGE_DATABASE__URL or --database-url) names the right host, port, user and database";

async fn probe_postgres(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "database.url is not a PostgreSQL URL such as postgres://user:password@host:5432/database: {e}"
        )
    })?;
    let target = target(&options);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Err(_) => anyhow::bail!(
            "database unavailable: PostgreSQL at {target} did not answer within {}s; {CHECK} (a firewall that drops packets looks like this)",
            CONNECT_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => anyhow::bail!("database unavailable: PostgreSQL at {target}: {e}; {CHECK}"),
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_a_message_keeps_no_password() {
        let shown = redacted("postgres://app:hunter2@db.internal:6432/cases?sslmode=require");
        assert_eq!(shown, "postgres://app@db.internal:6432/cases");
        assert_eq!(
            redacted("sqlite:///tmp/x.db?mode=rwc"),
            "sqlite:///tmp/x.db"
        );
    }
}
