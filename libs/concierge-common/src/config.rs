//! Layered configuration: built-in defaults, then a TOML file, then
//! `CONCIERGE_*` environment variables (`__` separates sections, e.g.
//! `CONCIERGE_DATABASE__URL`), then command-line flags. Secrets are
//! `SecretString`s: they print as `[REDACTED]` in logs and debug output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Loads `T` from the layers. `flags` holds only what was given on the command
/// line (serialize it with `skip_serializing_if = "Option::is_none"`).
pub fn load<T: DeserializeOwned>(file: Option<&Path>, flags: impl serde::Serialize) -> Result<T> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.exists() {
            return Err(Error::invalid(
                "config",
                format!("{} does not exist", file.display()),
            ));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment
        .merge(Env::prefixed("CONCIERGE_").split("__"))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| Error::invalid("config", e.to_string()))
}

/// Where a gRPC server listens and how it stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "secs")]
    pub grace_period: Duration,
    /// How long the server keeps accepting calls after SIGTERM while health
    /// already reads NOT_SERVING, so that endpoints are withdrawn before
    /// anything is refused (no preStop sleep needed).
    #[serde(with = "secs")]
    pub drain_delay: Duration,
    /// A PEM certificate chain, for a server that terminates TLS itself
    /// (without a mesh); with `tls_key`. Read again when it changes.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
}

impl ServerConfig {
    /// The TLS files to serve with, when both are set.
    pub fn tls(&self) -> Result<Option<crate::server::TlsFiles>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                reload_every: Duration::from_secs(10),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::invalid(
                "server.tls_key",
                "set it with server.tls_cert",
            )),
            (None, Some(_)) => Err(Error::invalid(
                "server.tls_cert",
                "set it with server.tls_key",
            )),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".parse().expect("valid address"),
            grace_period: Duration::from_secs(20),
            drain_delay: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A service's own database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`. May carry a
    /// password, hence secret.
    pub url: SecretString,
    pub max_connections: u32,
    /// Bring the schema up to date at start. Off where a separate job runs
    /// `concierge migrate` with a role that may change the schema, so the
    /// service's own role needs no DDL rights; the service then only checks
    /// that the schema is at its version.
    pub migrate: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite::memory:"),
            max_connections: 16,
            migrate: true,
        }
    }
}

/// Duration fields are written as whole seconds.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Cfg {
        server: ServerConfig,
        database: DatabaseConfig,
    }

    #[test]
    // figment's Jail closure returns its own large error type.
    #[allow(clippy::result_large_err)]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[server]\nlisten = \"127.0.0.1:1000\"\ngrace_period = 5\n[database]\nurl = \"postgres://u:hunter2@db/x\"\n",
            )?;
            jail.set_env("CONCIERGE_SERVER__GRACE_PERIOD", "7");
            let flags = serde_json::json!({"server": {"listen": "127.0.0.1:2000"}});
            let cfg: Cfg = load(Some(Path::new("c.toml")), flags).unwrap();
            assert_eq!(cfg.server.listen, "127.0.0.1:2000".parse().unwrap());
            assert_eq!(cfg.server.grace_period, Duration::from_secs(7));
            assert_eq!(
                cfg.database.url.expose_secret(),
                "postgres://u:hunter2@db/x"
            );
            assert!(
                !format!("{cfg:?}").contains("hunter2"),
                "secrets never print"
            );
            Ok(())
        });
    }
}
