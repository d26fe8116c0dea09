//! The same load from the Rust SDK: one `concierge_sdk::Client` (one HTTP/2
//! connection) per connection, each on its own task, calls back to back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::rpc::code_name;
use concierge_proto::concierge::cases::v1::{
    Case, CaseType, CreateCaseRequest, GetCaseRequest, ListCasesRequest,
};

use super::target::Target;
use super::{Budget, Cell, Op, Seed, cpu_seconds};

/// What one connection measured.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    stop: Option<Instant>,
}

impl Measured {
    fn failed(&mut self, status: &tonic::Status) {
        let code = code_name(status.code()).to_string();
        *self.errors.entry(code.clone()).or_default() += 1;
        self.samples
            .entry(code)
            .or_insert_with(|| status.message().to_string());
    }
}

pub async fn cell(
    target: &Target,
    seed: &Arc<Seed>,
    op: Op,
    connections: usize,
    budget: &Budget,
) -> anyhow::Result<Cell> {
    let start = Instant::now() + Duration::from_secs_f64(budget.warmup);
    let end = start + Duration::from_secs(budget.seconds);
    let quota = match budget.count {
        0 => usize::MAX,
        n => n.div_ceil(connections as u64) as usize,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        let client = concierge_sdk::Client::builder(target.url.clone())
            .api_key(target.key.clone())
            .build()?;
        let seed = seed.clone();
        tasks.spawn(async move {
            let mut cases = client.cases();
            // Each connection starts at its own place in the rotation, as
            // load.py's processes do.
            let mut n = index * 7;
            let mut call = async |n: usize| -> Result<(), tonic::Status> {
                match op.kind_at(n, &seed) {
                    Op::Create => cases
                        .create_case(CreateCaseRequest {
                            case: Some(Case {
                                title: format!("Circuit down {n}"),
                                r#type: CaseType::Repair as i32,
                                account: seed.writes_account.clone(),
                                ..Default::default()
                            }),
                            case_id: String::new(),
                            request_id: uuid::Uuid::new_v4().to_string(),
                        })
                        .await
                        .map(drop),
                    Op::Get => cases
                        .get_case(GetCaseRequest {
                            name: seed.cases[n % seed.cases.len()].clone(),
                        })
                        .await
                        .map(drop),
                    _ => cases
                        .list_cases(ListCasesRequest {
                            page_size: seed.list_page_size,
                            filter: format!(
                                "account = \"{}\"",
                                seed.accounts[n % seed.accounts.len()]
                            ),
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                }
            };
            let mut m = Measured::default();
            while Instant::now() < start {
                if let Err(s) = call(n).await {
                    m.failed(&s);
                }
                n += 1;
            }
            m.latencies.reserve(100_000);
            while Instant::now() < end && m.latencies.len() < quota {
                let t = Instant::now();
                if let Err(s) = call(n).await {
                    m.failed(&s);
                }
                m.latencies.push(t.elapsed());
                n += 1;
            }
            m.stop = Some(Instant::now());
            m
        });
    }
    // Both CPUs are read at the end of the warm-up and once every
    // connection has stopped: the same window as the latencies.
    tokio::time::sleep_until(start.into()).await;
    let me = [std::process::id()];
    let (client0, server0) = (cpu_seconds(&me)?, cpu_seconds(&target.server_pids)?);
    let mut all = Measured::default();
    let mut stop = start;
    while let Some(m) = tasks.join_next().await {
        let m = m?;
        all.latencies.extend(m.latencies);
        for (code, n) in m.errors {
            *all.errors.entry(code).or_default() += n;
        }
        for (code, s) in m.samples {
            all.samples.entry(code).or_insert(s);
        }
        stop = stop.max(m.stop.unwrap_or(start));
    }
    let (client1, server1) = (cpu_seconds(&me)?, cpu_seconds(&target.server_pids)?);
    Ok(Cell::measured(
        op.as_str(),
        connections,
        "sdk",
        all.latencies,
        all.errors,
        all.samples,
        stop - start,
        Some(client1 - client0),
        (!target.server_pids.is_empty()).then_some(server1 - server0),
    ))
}
