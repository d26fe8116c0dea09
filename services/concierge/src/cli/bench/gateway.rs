//! `concierge bench gateway`: GetAccount through the gateway against
//! GetAccount straight to the customers service, same process, same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::server::{self, Serve};
use concierge_common::storage::Db;
use concierge_customers::Customers;
use concierge_gateway::{Gateway, Limits, keys};
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::customers::{Account, CreateAccountRequest, GetAccountRequest, Tier};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

struct Stats {
    calls: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: String,
    connections: usize,
    secs: u64,
    header: (&'static str, String),
    name: String,
) -> anyhow::Result<Stats> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        let channel: Channel = Endpoint::from_shared(url.clone())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(CustomersServiceClient::new(channel));
    }
    let value: MetadataValue<_> = header.1.parse()?;
    let run = |clients: Vec<CustomersServiceClient<Channel>>, period: Duration| {
        let value = value.clone();
        let name = name.clone();
        async move {
            let until = Instant::now() + period;
            let mut tasks = Vec::new();
            for mut client in clients {
                let value = value.clone();
                let name = name.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(100_000);
                    while Instant::now() < until {
                        let mut req = tonic::Request::new(GetAccountRequest { name: name.clone() });
                        req.metadata_mut().insert(header.0, value.clone());
                        let t = Instant::now();
                        client.get_account(req).await?;
                        lat.push(t.elapsed());
                    }
                    Ok::<_, tonic::Status>((client, lat))
                }));
            }
            let mut clients = Vec::new();
            let mut all = Vec::new();
            for t in tasks {
                let (c, lat) = t.await??;
                clients.push(c);
                all.extend(lat);
            }
            Ok::<_, anyhow::Error>((clients, all))
        }
    };
    let (clients, _) = run(clients, Duration::from_secs(1)).await?;
    let started = Instant::now();
    let (_, mut all) = run(clients, Duration::from_secs(secs)).await?;
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(Stats {
        calls: all.len(),
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// `routes` served on a free loopback port, ready at once.
pub(super) async fn on_loopback(routes: tonic::service::Routes) -> anyhow::Result<server::Running> {
    Ok(server::start(
        TcpListener::bind("127.0.0.1:0").await?,
        routes,
        Serve {
            health_names: vec![],
            grace_period: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
        },
        async { Ok(()) },
        std::future::pending(),
    )
    .await?)
}

pub async fn run(
    connections: usize,
    backend_connections: usize,
    seconds: u64,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("concierge-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let codec = PrincipalCodec::new(uuid::Uuid::new_v4().to_string().into());
    let clock: SharedClock = Arc::new(SystemClock);
    let customers_url = database_url
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("customers.db").display()));
    let customers_db = Db::connect(&customers_url, 16).await?;
    let customers = Customers::open(customers_db.clone(), codec.clone(), clock.clone()).await?;
    let direct = on_loopback(tonic::service::Routes::new(customers.server())).await?;
    let direct_url = format!("http://{}", direct.addr);

    let gateway_db = Db::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
        4,
    )
    .await?;
    let backends = BTreeMap::from([(
        concierge_customers::SERVICE_NAME,
        concierge_gateway::remote(&direct_url, backend_connections)?,
    )]);
    let limits = Limits {
        requests_per_second: 10_000_000,
        burst: 10_000_000,
        ..Limits::default()
    };
    let gw = Gateway::open(
        gateway_db.clone(),
        codec.clone(),
        clock.clone(),
        limits,
        None,
        backends,
        None,
    )
    .await?;
    let gateway = on_loopback(gw.routes()).await?;
    let gateway_url = format!("http://{}", gateway.addr);
    let key = keys::mint(
        &gateway_db,
        keys::NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "bench".into(),
            expire_time: None,
        },
        clock.now(),
    )
    .await?;

    let sdk = concierge_sdk::Client::builder(gateway_url.clone())
        .api_key(key.key.clone())
        .build()?;
    let account = sdk
        .customers()
        .create_account(CreateAccountRequest {
            account: Some(Account {
                display_name: "Bench Corp".into(),
                tier: Tier::Enterprise as i32,
                time_zone: "America/Chicago".into(),
                ..Default::default()
            }),
            account_id: "bench".into(),
            request_id: String::new(),
        })
        .await?
        .into_inner();

    let admin = Principal {
        subject: "apiKeys/bench".into(),
        role: Role::Admin,
        account: None,
        staff_member: None,
        display_name: "bench".into(),
    };
    println!(
        "GetAccount, {connections} connections ({backend_connections} from the gateway to the service), {seconds}s each, customers on {customers_url}"
    );
    let d = load(
        direct_url,
        connections,
        seconds,
        (
            PRINCIPAL_HEADER,
            codec.encode(&admin, concierge_customers::SERVICE_NAME),
        ),
        account.name.clone(),
    )
    .await?;
    let g = load(
        gateway_url,
        connections,
        seconds,
        ("authorization", format!("Bearer {}", key.key)),
        account.name.clone(),
    )
    .await?;
    println!(
        "{:<22} {:>10} {:>12} {:>10} {:>10}",
        "path", "calls", "requests/s", "p50", "p99"
    );
    for (label, s) in [("direct to service", &d), ("through gateway", &g)] {
        println!(
            "{label:<22} {:>10} {:>12.0} {:>10.3?} {:>10.3?}",
            s.calls, s.rps, s.p50, s.p99
        );
    }
    println!(
        "gateway/direct throughput ratio: {:.2}; added p50: {:.3?}; added p99: {:.3?}",
        g.rps / d.rps,
        g.p50.saturating_sub(d.p50),
        g.p99.saturating_sub(d.p99)
    );
    gateway.shutdown().await?;
    direct.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
