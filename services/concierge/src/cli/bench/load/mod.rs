//! `concierge bench load`: closed-loop load on a gateway from two clients,
//! Python grpcio (`benches/load.py`, a client we did not write) and the Rust
//! SDK, per operation and connection count, with the server's CPU and, with
//! PostgreSQL, pgbench from the same run as the baseline.
//!
//! Both clients matter: replies that waited for the client's delayed ACK (no
//! TCP_NODELAY on accepted sockets, ~40 ms a call) were found with a Python
//! client while a Rust benchmark hid them.

mod pgbench;
mod python;
mod sdk;
mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use self::pgbench::{Scratch, Sql};
use self::python::Python;
use self::target::Target;
use crate::output;

#[derive(clap::Args)]
pub struct Load {
    /// Operations: create (CreateCase), get (GetCase), list (ListCases, a
    /// page of 20 of one account) and mixed (of every 10 calls: 1 create,
    /// 7 gets, 2 lists).
    #[arg(long, value_delimiter = ',', default_value = "create,get,list,mixed")]
    ops: Vec<Op>,
    /// Connection counts: each connection is one client process (Python)
    /// or one SDK client (Rust) calling back to back.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    connections: Vec<usize>,
    /// python (benches/load.py, grpcio), sdk (concierge-sdk).
    #[arg(long, value_delimiter = ',', default_value = "python,sdk")]
    clients: Vec<ClientKind>,
    /// Seconds each cell is measured, at most.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Calls each cell makes over all its connections, at most (0: only
    /// --seconds bounds it).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Seconds of calls before each cell's measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A running gateway to load; without it `concierge dev` is started on a
    /// fresh data directory (rate limit lifted) and stopped at the end.
    #[arg(long)]
    gateway: Option<String>,
    /// An admin API key of --gateway (the seed creates accounts, a
    /// calendar and an SLA policy).
    #[arg(long, env = "CONCIERGE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The processes behind --gateway whose CPU is the server's.
    #[arg(long, value_delimiter = ',', requires = "gateway")]
    server_pid: Vec<u32>,
    /// A PostgreSQL server URL whose user may create databases: pgbench runs
    /// a prepared point SELECT and a single-row INSERT there at the same
    /// connection counts, and GetCase and CreateCase are given as ratios to them.
    #[arg(long, env = "CONCIERGE_BENCH_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// Connection counts for pgbench (default: --connections).
    #[arg(long, value_delimiter = ',', requires = "postgres_url")]
    pgbench_connections: Vec<usize>,
    /// A Python with grpcio and grpcio-tools.
    #[arg(long, env = "CONCIERGE_BENCH_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// The Python generator.
    #[arg(long, default_value = "benches/load.py")]
    script: PathBuf,
    /// Fail unless GetCase at 1 connection from Python reaches this fraction
    /// of pgbench's prepared SELECT at 1 client, measured in the same run.
    #[arg(long, requires = "postgres_url")]
    min_get_select_ratio: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Get,
    List,
    Mixed,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Mixed => "mixed",
        }
    }

    /// The call the `n`th of a connection makes.
    fn kind_at(self, n: usize, seed: &Seed) -> Op {
        match self {
            Op::Mixed => seed.mix[n % seed.mix.len()],
            op => op,
        }
    }

    /// What pgbench compares it with.
    fn baseline(self) -> Option<Sql> {
        match self {
            Op::Get => Some(Sql::Select),
            Op::Create => Some(Sql::Insert),
            Op::List | Op::Mixed => None,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Python,
    Sdk,
}

/// How long a cell runs.
pub struct Budget {
    seconds: u64,
    count: u64,
    warmup: f64,
}

/// What `load.py --op seed` made through the API; load.py owns its shape.
#[derive(Deserialize)]
pub struct Seed {
    cases: Vec<String>,
    accounts: Vec<String>,
    writes_account: String,
    list_page_size: i32,
    mix: Vec<Op>,
}

/// One measured cell: an operation from one client at one connection count.
/// load.py prints exactly this.
#[derive(Serialize, Deserialize)]
pub struct Cell {
    op: String,
    connections: usize,
    client: String,
    calls: u64,
    errors: BTreeMap<String, u64>,
    #[serde(default)]
    error_samples: BTreeMap<String, String>,
    seconds: f64,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    client_cpu_s: Option<f64>,
    server_cpu_s: Option<f64>,
    /// req/s ÷ pgbench's req/s at the same connection count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vs_pgbench: Option<f64>,
}

impl Cell {
    #[allow(clippy::too_many_arguments)]
    fn measured(
        op: &str,
        connections: usize,
        client: &str,
        latencies: Vec<Duration>,
        errors: BTreeMap<String, u64>,
        error_samples: BTreeMap<String, String>,
        window: Duration,
        client_cpu_s: Option<f64>,
        server_cpu_s: Option<f64>,
    ) -> Self {
        // The precision the measurement has, and what load.py prints.
        let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
        let ms = |p: f64| {
            (!latencies.is_empty()).then(|| {
                round(
                    super::percentile(latencies.clone(), p).as_secs_f64() * 1000.0,
                    3,
                )
            })
        };
        let secs = window.as_secs_f64();
        Cell {
            op: op.to_string(),
            connections,
            client: client.to_string(),
            calls: latencies.len() as u64,
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            errors,
            error_samples,
            seconds: round(secs, 3),
            rps: if secs > 0.0 {
                round(latencies.len() as f64 / secs, 1)
            } else {
                0.0
            },
            client_cpu_s: client_cpu_s.map(|v| round(v, 3)),
            server_cpu_s: server_cpu_s.map(|v| round(v, 3)),
            vs_pgbench: None,
        }
    }

    fn failed_calls(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// User+system CPU seconds of these processes so far, all their threads.
pub fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("no process {pid}"))?;
        // The command name may hold spaces and parentheses: fields count
        // from the last ')'. utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("/proc/{pid}/stat: {stat:?}"))?;
        }
    }
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Files of one run (Python stubs, pgbench scripts and logs), removed
/// however the run ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(args: Load) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.connections.is_empty() && !args.connections.contains(&0),
        "--connections: counts of at least 1"
    );
    anyhow::ensure!(args.seconds > 0, "--seconds: at least 1");
    anyhow::ensure!(
        args.warmup >= 0.0 && args.warmup.is_finite(),
        "--warmup: seconds, 0 or more"
    );
    let scratch = ScratchDir(
        std::env::temp_dir().join(format!("concierge-bench-load-{}", uuid::Uuid::new_v4())),
    );
    std::fs::create_dir_all(&scratch.0)?;
    let script = if args.script.is_file() {
        args.script.clone()
    } else {
        // A binary built from this tree also finds it from anywhere.
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../benches/load.py"
        ))
    };
    let python = Python::new(args.python.clone(), script, &scratch.0)?;
    let target = match &args.gateway {
        Some(url) => {
            let key = args
                .api_key
                .clone()
                .context("--gateway needs --api-key (or CONCIERGE_API_KEY)")?;
            Target::given(url.clone(), key, args.server_pid.clone()).await?
        }
        None => Target::dev().await?,
    };
    let pg = match &args.postgres_url {
        Some(url) => Some(Scratch::create(url, &scratch.0).await?),
        None => None,
    };
    let started = load_average();
    let measured = tokio::select! {
        r = measure(&args, &target, &python, pg.as_ref()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(pg) = &pg
        && let Err(e) = pg.drop_database().await
    {
        eprintln!("warning: the scratch database was not dropped: {e:#}");
    }
    let cells = measured?;
    report(&args, &target, &cells, &started)?;
    check(&args, &cells)
}

async fn measure(
    args: &Load,
    target: &Target,
    python: &Python,
    pg: Option<&Scratch>,
) -> anyhow::Result<Vec<Cell>> {
    let budget = Budget {
        seconds: args.seconds,
        count: args.count,
        warmup: args.warmup,
    };
    let seed = Arc::new(python.seed(target).await?);
    let pg_levels = if args.pgbench_connections.is_empty() {
        &args.connections
    } else {
        &args.pgbench_connections
    };
    let mut cells = Vec::new();
    let mut baselines: Vec<Cell> = Vec::new();
    for &op in &args.ops {
        for &connections in &args.connections {
            // Each baseline right before the cells it is the floor of: a
            // shared machine's load drifts less within a minute.
            if let (Some(pg), Some(sql)) = (pg, op.baseline())
                && pg_levels.contains(&connections)
                && !baselines
                    .iter()
                    .any(|b| b.op == sql.as_str() && b.connections == connections)
            {
                eprintln!("pgbench {} × {connections}", sql.as_str());
                let cell = pg.run(sql, connections, args.seconds).await?;
                baselines.push(cell);
            }
            for &client in &args.clients {
                let label = match client {
                    ClientKind::Python => "python",
                    ClientKind::Sdk => "sdk",
                };
                eprintln!("{} × {connections} from {label}", op.as_str());
                let mut cell = match client {
                    ClientKind::Python => python.cell(target, op, connections, &budget).await?,
                    ClientKind::Sdk => sdk::cell(target, &seed, op, connections, &budget).await?,
                };
                cell.vs_pgbench = op.baseline().and_then(|sql| {
                    baselines
                        .iter()
                        .find(|b| b.op == sql.as_str() && b.connections == connections)
                        .map(|b| cell.rps / b.rps)
                });
                cells.push(cell);
            }
        }
    }
    // pgbench levels no gateway cell has.
    if let Some(pg) = pg {
        for sql in args.ops.iter().filter_map(|op| op.baseline()) {
            for &connections in pg_levels {
                if !baselines
                    .iter()
                    .any(|b| b.op == sql.as_str() && b.connections == connections)
                {
                    eprintln!("pgbench {} × {connections}", sql.as_str());
                    baselines.push(pg.run(sql, connections, args.seconds).await?);
                }
            }
        }
    }
    cells.extend(baselines);
    Ok(cells)
}

fn report(args: &Load, target: &Target, cells: &[Cell], started: &str) -> anyhow::Result<()> {
    let ended = load_average();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "gateway": target.url,
                "server_pids": target.server_pids,
                "load_average": { "start": started, "end": ended },
                "cells": cells,
            }))?
        );
        return Ok(());
    }
    let num = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|c| {
            vec![
                c.op.clone(),
                c.connections.to_string(),
                c.client.clone(),
                format!("{:.0}", c.rps),
                num(c.p50_ms, 2),
                num(c.p99_ms, 2),
                num(c.client_cpu_s, 2),
                num(c.server_cpu_s, 2),
                c.failed_calls().to_string(),
                num(c.vs_pgbench, 3),
            ]
        })
        .collect();
    println!(
        "gateway {} (server pids {:?}); {} s a cell after {} s of warm-up; load average {started} at the start, {ended} at the end",
        target.url, target.server_pids, args.seconds, args.warmup
    );
    println!(
        "{}",
        output::table(
            &[
                "OP",
                "CONNS",
                "CLIENT",
                "REQ/S",
                "P50 MS",
                "P99 MS",
                "CLIENT CPU S",
                "SERVER CPU S",
                "ERRORS",
                "÷ PGBENCH",
            ],
            &rows
        )
    );
    println!(
        "÷ PGBENCH: get ÷ pgbench's prepared point SELECT, create ÷ its single-row INSERT, at the same connection count"
    );
    Ok(())
}

/// Fails the run on any failed call, and on GetCase below the floor.
fn check(args: &Load, cells: &[Cell]) -> anyhow::Result<()> {
    let failed: Vec<String> = cells
        .iter()
        .filter(|c| c.failed_calls() > 0)
        .map(|c| {
            format!(
                "{} × {} from {}: {:?} {:?}",
                c.op, c.connections, c.client, c.errors, c.error_samples
            )
        })
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "calls failed:\n  {}",
        failed.join("\n  ")
    );
    if let Some(floor) = args.min_get_select_ratio {
        let get = cells
            .iter()
            .find(|c| c.op == "get" && c.connections == 1 && c.client == "python")
            .context(
                "--min-get-select-ratio needs --ops get, --connections 1 and --clients python",
            )?;
        let ratio = get
            .vs_pgbench
            .context("--min-get-select-ratio needs pgbench at 1 client")?;
        anyhow::ensure!(
            ratio >= floor,
            "GetCase at 1 connection from Python ran at {:.0} req/s, {ratio:.4} of pgbench's prepared SELECT: below the floor {floor} (p50 {:.1} ms: a stall such as replies waiting for a delayed ACK?)",
            get.rps,
            get.p50_ms.unwrap_or(f64::NAN)
        );
        eprintln!("GetCase ÷ SELECT at 1 connection: {ratio:.4} (floor {floor})");
    }
    Ok(())
}
