//! The Python grpcio generator, `benches/load.py`, run once per cell.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use rustix::process::{Pid, Signal, kill_process_group};

use super::target::Target;
use super::{Budget, Cell, Op, Seed};

pub struct Python {
    python: PathBuf,
    script: PathBuf,
    /// Generated once by the first run, reused by the others.
    stubs: PathBuf,
}

/// The process group of one `load.py` run (it and its client processes),
/// killed when dropped unless the run ended on its own: an error or Ctrl-C
/// in this process leaves no client running.
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Python {
    pub fn new(python: PathBuf, script: PathBuf, scratch: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            script.is_file(),
            "{} not found: run from the repository root or pass --script benches/load.py",
            script.display()
        );
        Ok(Self {
            python,
            script,
            stubs: scratch.join("python-stubs"),
        })
    }

    /// Makes sure the seed exists and returns it (the script owns its shape).
    pub async fn seed(&self, target: &Target) -> anyhow::Result<Seed> {
        let out = self.run(target, &["--op", "seed"]).await?;
        serde_json::from_str(&out).with_context(|| format!("load.py --op seed printed {out:?}"))
    }

    pub async fn cell(
        &self,
        target: &Target,
        op: Op,
        connections: usize,
        budget: &Budget,
    ) -> anyhow::Result<Cell> {
        let pids = target
            .server_pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let (connections, seconds, count, warmup) = (
            connections.to_string(),
            budget.seconds.to_string(),
            budget.count.to_string(),
            budget.warmup.to_string(),
        );
        let out = self
            .run(
                target,
                &[
                    "--op",
                    op.as_str(),
                    "--connections",
                    &connections,
                    "--seconds",
                    &seconds,
                    "--count",
                    &count,
                    "--warmup",
                    &warmup,
                    "--server-pid",
                    &pids,
                ],
            )
            .await?;
        serde_json::from_str(&out).with_context(|| format!("load.py printed {out:?}"))
    }

    /// Runs the script, returns the last line it printed. Exit 2 is a run
    /// whose calls failed: its report still counts them.
    async fn run(&self, target: &Target, args: &[&str]) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new(&self.python);
        command
            .arg(&self.script)
            .args(["--gateway", &target.url, "--stubs"])
            .arg(&self.stubs)
            .args(args)
            // Not on the command line, where `ps` shows it.
            .env("CONCIERGE_API_KEY", &target.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("running {} (--python)", self.python.display()))?;
        let mut group = Group(child.id().and_then(|id| Pid::from_raw(id as i32)));
        let output = child.wait_with_output().await?;
        let code = output.status.code();
        anyhow::ensure!(
            matches!(code, Some(0) | Some(2)),
            "{} {} {} failed: {}",
            self.python.display(),
            self.script.display(),
            args.join(" "),
            output.status
        );
        // Its client processes were joined before it exited.
        group.0 = None;
        let stdout = String::from_utf8(output.stdout)?;
        Ok(stdout
            .lines()
            .last()
            .context("load.py printed nothing")?
            .to_string())
    }
}
