//! The gateway under load: one already running, or a `concierge dev` this
//! run starts on a fresh data directory and stops however the run ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long a debug build on a loaded machine may take to migrate its
/// databases and start serving.
const START_DEADLINE: Duration = Duration::from_secs(120);

pub struct Target {
    pub url: String,
    pub key: String,
    /// The processes whose CPU is the server's.
    pub server_pids: Vec<u32>,
    dev: Option<Dev>,
}

/// A `concierge dev` child: killed and its data directory removed when
/// dropped, so an error or Ctrl-C anywhere in the run leaves nothing behind.
struct Dev {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target {
    /// A gateway someone else runs, its server processes named by pid.
    pub async fn given(url: String, key: String, server_pids: Vec<u32>) -> anyhow::Result<Self> {
        for pid in &server_pids {
            super::cpu_seconds(&[*pid]).with_context(|| format!("--server-pid {pid}"))?;
        }
        let mut target = Self {
            url,
            key,
            server_pids,
            dev: None,
        };
        target.wait_serving().await?;
        Ok(target)
    }

    /// `concierge dev` (this very binary) on a fresh data directory, with
    /// the per-principal rate limit lifted: the run's one admin key is the
    /// load being measured, not a client to hold back.
    pub async fn dev() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("concierge-load-{}", uuid::Uuid::new_v4()));
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            // One access-log line per call would be a load of its own.
            .env("RUST_LOG", "warn")
            .env("CONCIERGE_TELEMETRY__LOG_FILTER", "warn")
            // Its warnings are passed on to our stderr as plain text.
            .env("NO_COLOR", "1")
            .env("CONCIERGE_LIMITS__REQUESTS_PER_SECOND", "1000000000")
            .env("CONCIERGE_LIMITS__BURST", "1000000000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting concierge dev")?;
        let mut dev = Dev { child, dir };
        let pid = dev.child.id().context("concierge dev exited at once")?;
        let stdout = dev.child.stdout.take().context("dev's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut url, mut key) = (None, None);
        tokio::time::timeout(START_DEADLINE, async {
            while key.is_none() {
                let line = lines
                    .next_line()
                    .await?
                    .context("concierge dev exited before printing its address and key")?;
                if let Some(u) = line.trim().strip_prefix("gateway listening on ") {
                    url = Some(u.to_string());
                }
                if let Some(k) = line.trim().strip_prefix("admin API key: ") {
                    key = Some(k.to_string());
                }
            }
            anyhow::Ok(())
        })
        .await
        .context("concierge dev did not print its address in time")??;
        // Dev logs to stdout after its banner: a pipe nobody reads would
        // block it once full. Its warnings are worth seeing; the rest of the
        // banner (the key again) is not.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("concierge dev: {line}");
                }
            }
        });
        let mut target = Self {
            url: url.context("concierge dev printed no gateway address")?,
            key: key.unwrap_or_default(),
            server_pids: vec![pid],
            dev: Some(dev),
        };
        target.wait_serving().await?;
        Ok(target)
    }

    /// Waits until the gateway's health reads SERVING (its services are
    /// migrated and their workers up), or fails at the deadline.
    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let client = concierge_sdk::Client::builder(self.url.clone())
            .api_key(self.key.clone())
            .build()?;
        let mut health = HealthClient::new(client.channel());
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let last = match health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                Ok(r) => format!("{:?}", r.into_inner().status()),
                Err(e) => concierge_sdk::describe(&e),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "the gateway at {} is not SERVING after {START_DEADLINE:?}: {last}",
                self.url
            );
            if let Some(dev) = &mut self.dev
                && let Some(status) = dev.child.try_wait()?
            {
                anyhow::bail!(
                    "concierge dev (data directory {}) exited: {status}",
                    dev.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
