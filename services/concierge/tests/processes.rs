//! The real binary, started as OS processes the way people and Kubernetes
//! start it. Waits are on conditions (a printed line, a health answer), never
//! on timers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use concierge_common::testing::{create_postgres_database, eventually, postgres_url};
use concierge_proto::customers::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

mod support;
use support::{BIN, Proc};

/// Starts `concierge dev` and reads the gateway address and admin key it prints.
fn start_dev(dir: &Path) -> (Proc, String, String) {
    start_dev_with(dir, &[])
}

fn start_dev_with(dir: &Path, extra: &[&str]) -> (Proc, String, String) {
    let mut dev = Command::new(BIN);
    dev.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra);
    support::start_dev(dev)
}

fn account(id: &str) -> CreateAccountRequest {
    CreateAccountRequest {
        account: Some(Account {
            display_name: format!("{id} Holding"),
            tier: Tier::Strategic as i32,
            time_zone: "Europe/Istanbul".into(),
            language_code: "tr".into(),
            ..Default::default()
        }),
        account_id: id.into(),
        request_id: format!("create-{id}"),
    }
}

#[tokio::test]
async fn dev_keeps_an_acknowledged_create_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url, key) = start_dev(dir.path());
    let client = concierge_sdk::Client::builder(url)
        .api_key(key.clone())
        .build()
        .unwrap();
    let created = client
        .customers()
        .create_account(account("anadolu"))
        .await
        .unwrap()
        .into_inner();
    // The create was acknowledged; now the process dies without any chance to flush.
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let (_second, url, key_again) = start_dev(dir.path());
    assert_eq!(
        key_again, key,
        "a restart on the same data directory keeps the admin key"
    );
    let client = concierge_sdk::Client::builder(url.clone())
        .api_key(key.clone())
        .build()
        .unwrap();
    let got = client
        .customers()
        .get_account(GetAccountRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    // The cases service is behind the same gateway: business time over a
    // calendar with a holiday.
    use concierge_proto::concierge::cases::v1 as cases;
    let mut c = client.cases();
    let weekdays = (1..=5)
        .map(|d| cases::WorkingPeriod {
            weekday: d,
            start_minute: 540,
            end_minute: 1020,
        })
        .collect();
    c.create_calendar(cases::CreateCalendarRequest {
        calendar: Some(cases::Calendar {
            display_name: "Istanbul office".into(),
            time_zone: Some(concierge_proto::types::TimeZone {
                id: "Europe/Istanbul".into(),
            }),
            working_periods: weekdays,
            holidays: vec![cases::Holiday {
                date: Some(cases::LocalDate {
                    year: 2026,
                    month: 10,
                    day: 29,
                }),
                display_name: "Republic Day".into(),
                working_periods: vec![],
            }],
            ..Default::default()
        }),
        calendar_id: "istanbul".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let end = c
        .add_business_time(cases::AddBusinessTimeRequest {
            calendar: "calendars/istanbul".into(),
            // Wednesday 2026-10-28 16:00 +03.
            start_time: Some(prost_types::Timestamp {
                seconds: 1_793_192_400,
                nanos: 0,
            }),
            duration: Some(prost_types::Duration {
                seconds: 2 * 3600,
                nanos: 0,
            }),
            time_zone: None,
        })
        .await
        .unwrap()
        .into_inner();
    // One hour Wednesday, the holiday skipped, one hour Friday: 10:00 +03.
    assert_eq!(end.end_time.unwrap().seconds, 1_793_343_600);

    // The CLI, through the same gateway, with --json for scripts.
    let out = Command::new(BIN)
        .args(["customers", "get", "anadolu", "--json"])
        .env("CONCIERGE_GATEWAY", &url)
        .env("CONCIERGE_API_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "accounts/anadolu");
    assert_eq!(json["tier"], "TIER_STRATEGIC");
    // Cases from the CLI: open one for the account, then follow it.
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("CONCIERGE_GATEWAY", &url)
            .env("CONCIERGE_API_KEY", &key)
            .output()
            .unwrap()
    };
    let created = cli(&[
        "cases",
        "create",
        "--account",
        "anadolu",
        "--type",
        "repair",
        "--title",
        "Hat kesik",
        "--id",
        "c1",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let pended = cli(&["cases", "open", "c1"]);
    assert!(
        pended.status.success(),
        "{}",
        String::from_utf8_lossy(&pended.stderr)
    );
    let refused = cli(&["cases", "close", "c1"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("STATE_OPEN"),
        "an illegal transition names the state"
    );
    let listed = cli(&["cases", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json["cases"][0]["state"], "STATE_OPEN");

    let bad = Command::new(BIN)
        .args(["customers", "list", "--filter", "colour = red"])
        .env("CONCIERGE_GATEWAY", &url)
        .env("CONCIERGE_API_KEY", &key)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown field `colour`"));
}

fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free ports, all chosen while each is still held: a port let
/// go before the next is chosen can come back as the next, and two processes
/// would then race for it.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

async fn wait_serving(url: &str, service: &str) {
    let url = url.to_string();
    let service = service.to_string();
    eventually(
        Duration::from_secs(30),
        &format!("{service} SERVING at {url}"),
        move || {
            let url = url.clone();
            let service = service.clone();
            async move {
                let Ok(channel) = tonic::transport::Channel::from_shared(url)
                    .unwrap()
                    .connect()
                    .await
                else {
                    return false;
                };
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest { service })
                    .await;
                status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32)
            }
        },
    )
    .await;
}

fn sigterm(p: &Proc) {
    let status = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn gateway_and_customers_as_separate_processes_on_postgres() {
    let Some(admin) = postgres_url("gateway_and_customers_as_separate_processes_on_postgres")
    else {
        return;
    };
    let (customers_db, _) = create_postgres_database(&admin).await;
    let (gateway_db, _) = create_postgres_database(&admin).await;
    let secret = "a-shared-internal-secret-for-this-test";

    let key = mint_key(&gateway_db, &["--role", "admin", "--display-name", "e2e"]);

    let [customers_port, gateway_port] = free_ports();
    let customers = serve(
        "customers",
        customers_port,
        &customers_db,
        secret,
        &[],
        &[("CONCIERGE_TELEMETRY__LOG_FORMAT", "json".into())],
    );
    let gateway = serve(
        "gateway",
        gateway_port,
        &gateway_db,
        secret,
        &[("customers", customers_port)],
        &[],
    );
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    wait_serving(
        &format!("http://127.0.0.1:{customers_port}"),
        concierge_customers::SERVICE_NAME,
    )
    .await;
    wait_serving(&gateway_url, concierge_customers::SERVICE_NAME).await;

    let mut c = concierge_sdk::Client::builder(gateway_url)
        .api_key(key)
        .build()
        .unwrap()
        .customers();
    let acme = c
        .create_account(account("acme"))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .create_account(account("acme"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme, again,
        "the retried create is answered from the idempotency record"
    );
    let site = c
        .create_site(CreateSiteRequest {
            parent: acme.name.clone(),
            site: Some(Site {
                display_name: "İstanbul HQ".into(),
                time_zone: "Europe/Istanbul".into(),
                ..Default::default()
            }),
            site_id: "ist".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for (id, product, role) in [
        ("fiber", "Dedicated Internet 100 Mb", InventoryRole::Primary),
        ("lte", "4G backup", InventoryRole::Backup),
    ] {
        c.create_inventory_item(CreateInventoryItemRequest {
            parent: site.name.clone(),
            inventory_item: Some(InventoryItem {
                kind: InventoryKind::Data as i32,
                product: product.into(),
                role: role as i32,
                state: inventory_item::State::Active as i32,
                ..Default::default()
            }),
            inventory_item_id: id.into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    }
    let items = c
        .list_inventory_items(ListInventoryItemsRequest {
            parent: site.name.clone(),
            order_by: "role".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        items
            .inventory_items
            .iter()
            .map(|i| i.product.as_str())
            .collect::<Vec<_>>(),
        vec!["Dedicated Internet 100 Mb", "4G backup"]
    );

    // SIGTERM drains both and they exit cleanly, well within the grace period
    // (the runtime stays free while waiting, so the client can answer GOAWAY).
    sigterm(&gateway);
    sigterm(&customers);
    for p in [gateway, customers] {
        let started = std::time::Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            let mut p = p;
            p.0.wait()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "drained before the 20 s grace period ran out"
        );
    }
    drop(c);
}

/// A client generated from `proto/` by other tooling (Python grpcio-tools)
/// works against the gateway: the contracts are the product, not our Rust.
#[tokio::test]
async fn a_python_client_generated_from_the_protos_works_through_the_gateway() {
    let Some(python) = concierge_common::testing::python("the Python interop test") else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto = repo.join("proto");
    let out = tempfile::tempdir().unwrap();
    let mut protos = Vec::new();
    for dir in ["concierge/customers/v1", "concierge/types/v1"] {
        for entry in std::fs::read_dir(proto.join(dir)).unwrap() {
            protos.push(entry.unwrap().path());
        }
    }
    let generated = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("--grpc_python_out={}", out.path().display()))
        .args(&protos)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let (_dev, url, key) = start_dev(dir.path());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(repo.join("tests/interop/python/customers_tour.py"))
            .env("PYTHONPATH", out.path())
            .env("CONCIERGE_GATEWAY", url)
            .env("CONCIERGE_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains("python interop: account, site and two inventory items")
    );
}

/// `concierge dev --test-clock`: every service reads time from one clock that
/// an admin moves forward from the CLI.
#[tokio::test]
async fn the_test_clock_drives_every_service_and_only_admins_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, url, key) = start_dev_with(dir.path(), &["--test-clock", "2026-03-06T17:00:00Z"]);
    let mut c = concierge_sdk::Client::builder(url.clone())
        .api_key(key.clone())
        .build()
        .unwrap()
        .customers();
    let created = c
        .create_account(account("clockwork"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.create_time.unwrap().seconds,
        "2026-03-06T17:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    );

    let cli = |args: &[&str], key: &str| {
        Command::new(BIN)
            .args(args)
            .env("CONCIERGE_GATEWAY", &url)
            .env("CONCIERGE_API_KEY", key)
            .output()
            .unwrap()
    };
    let advanced = cli(&["clock", "advance", "48h"], &key);
    assert!(
        advanced.status.success(),
        "{}",
        String::from_utf8_lossy(&advanced.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&advanced.stdout).trim(),
        "2026-03-08T17:00:00Z"
    );
    let updated = c
        .update_account(UpdateAccountRequest {
            account: Some(Account {
                name: created.name.clone(),
                billing_account: "B-9".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["billing_account".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.update_time.unwrap().seconds - created.create_time.unwrap().seconds,
        48 * 3600
    );

    let backwards = cli(&["clock", "advance", "-1h"], &key);
    assert!(!backwards.status.success());
    let minted = Command::new(BIN)
        .args(["keys", "create", "--role", "agent", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let agent = String::from_utf8(minted.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let refused = cli(&["clock", "advance", "1h"], &agent);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let now = cli(&["clock", "get"], &key);
    assert_eq!(
        String::from_utf8_lossy(&now.stdout).trim(),
        "2026-03-08T17:00:00Z",
        "refused moves moved nothing"
    );
}

/// `concierge dev --metrics-listen` serves Prometheus metrics of every call.
#[tokio::test]
async fn dev_exposes_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_dev, url, key) = start_dev_with(
        dir.path(),
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    );
    let mut c = concierge_sdk::Client::builder(url)
        .api_key(key)
        .build()
        .unwrap()
        .customers();
    c.create_account(account("metered")).await.unwrap();
    let missing = c
        .get_account(GetAccountRequest {
            name: "accounts/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let wanted = [
        r#"grpc_server_handled_total{grpc_service="concierge.customers.v1.CustomersService",grpc_method="CreateAccount",grpc_code="OK"} 1"#,
        r#"grpc_server_handled_total{grpc_service="concierge.customers.v1.CustomersService",grpc_method="GetAccount",grpc_code="NOT_FOUND"} 1"#,
        r#"concierge_gateway_calls_total{service="concierge.customers.v1.CustomersService",outcome="forwarded"} 2"#,
        // Every background loop runs supervised, the gateway's own included.
        r#"concierge_workers_live{worker="gateway-housekeeping"} 1"#,
        r#"concierge_workers_live{worker="cases-sla-timers"} 1"#,
    ];
    eventually(Duration::from_secs(10), "the metrics of both calls", || {
        let body = scrape(port).unwrap_or_default();
        let ok = wanted.iter().all(|w| body.contains(w));
        async move { ok }
    })
    .await;
}

/// The README's SLA tour, from the CLI against `concierge dev --test-clock`:
/// a calendar with Thanksgiving and a half day, a policy, a repair at a site
/// in New York, two days later.
#[tokio::test]
async fn the_sla_tour_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, url, key) = start_dev_with(dir.path(), &["--test-clock", "2026-11-25T19:00:00Z"]);
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("CONCIERGE_GATEWAY", &url)
            .env("CONCIERGE_API_KEY", &key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
    ]);
    cli(&[
        "customers",
        "sites",
        "create",
        "acme",
        "--id",
        "hq",
        "--display-name",
        "HQ",
        "--time-zone",
        "America/New_York",
    ]);
    cli(&[
        "cases",
        "calendars",
        "create",
        "--id",
        "us-central",
        "--display-name",
        "US Central",
        "--time-zone",
        "America/Chicago",
        "--hours",
        "mon-fri=09:00-17:00",
        "--holiday",
        "2026-11-26",
        "--holiday",
        "2026-11-27=09:00-13:00",
    ]);
    cli(&[
        "cases",
        "policies",
        "create",
        "--id",
        "repairs",
        "--display-name",
        "Repairs",
        "--calendar",
        "us-central",
        "--type",
        "repair",
        "--first-response",
        "1h",
        "--delivery",
        "8h",
        "--time-zone-source",
        "site",
    ]);
    cli(&[
        "cases",
        "create",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Circuit down",
        "--site",
        "hq",
        "--id",
        "c1",
    ]);
    cli(&["cases", "open", "c1"]);
    cli(&["clock", "advance", "48h"]);
    let clocks: serde_json::Value =
        serde_json::from_str(&cli(&["cases", "clocks", "c1", "--json"])).unwrap();
    let delivery = clocks["slaClocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "delivery")
        .unwrap()
        .clone();
    // Wednesday 14:00-17:00 and Friday 09:00-13:00 in New York: 7 of 8 hours.
    assert_eq!(delivery["elapsedDuration"], "25200s");
    assert_eq!(delivery["state"], "SLA_STATE_AT_RISK");
    assert_eq!(delivery["targetTime"], "2026-11-30T15:00:00Z");
    let why = cli(&["cases", "explain", "c1", "delivery"]);
    assert!(
        why.contains("outside the working hours of calendars/us-central"),
        "{why}"
    );

    // Across cases, filtered, read live.
    let across: serde_json::Value = serde_json::from_str(&cli(&[
        "cases",
        "clocks",
        "--filter",
        "key = \"delivery\"",
        "--json",
    ]))
    .unwrap();
    let across = across["slaClocks"].as_array().unwrap();
    assert_eq!(across.len(), 1);
    assert_eq!(across[0]["name"], "cases/c1/slaClocks/delivery");
    assert_eq!(across[0]["elapsedDuration"], "25200s");

    // An order waiting on the repair is withheld until the repair closes.
    cli(&[
        "cases",
        "create",
        "--account",
        "acme",
        "--type",
        "order-new",
        "--title",
        "Backup line",
        "--id",
        "o1",
    ]);
    cli(&["cases", "link", "o1", "depends-on", "c1"]);
    assert!(cli(&["cases", "links", "c1"]).contains("blocks  "));
    assert!(cli(&["cases", "get", "o1"]).contains("withheld: depends on an open case"));
    cli(&[
        "cases",
        "hand-off-codes",
        "create",
        "--id",
        "PE",
        "--display-name",
        "Presented",
        "--presented",
        "--type",
        "order-new",
    ]);
    assert!(
        cli(&["cases", "hand-off-codes", "list"])
            .contains("PE     Presented  (presented to the carrier)")
    );
    let presented = cli(&[
        "cases",
        "hand-off",
        "o1",
        "PE",
        "--carrier-reference",
        "PON-77",
    ]);
    assert!(
        presented.contains("hand-off: PE (presented to the carrier)"),
        "{presented}"
    );
    assert!(!presented.contains("withheld"), "{presented}");
    cli(&["cases", "cancel", "c1", "--reason", "raised twice"]);

    // A policy's history, and a rollback that becomes its next revision.
    cli(&[
        "cases",
        "policies",
        "rollback",
        "repairs",
        "--revision",
        "1",
    ]);
    let revisions = cli(&["cases", "policies", "revisions", "repairs"]);
    assert_eq!(revisions.lines().count(), 2, "{revisions}");
    assert!(revisions.contains("slaPolicies/repairs@2"), "{revisions}");

    // Friday 13:00 in Chicago, the half day just over: eight business hours
    // on the calendar are all of Monday, in one call.
    let now = cli(&["clock", "advance", "8h", "--calendar", "us-central"]);
    assert!(now.contains("2026-11-30T23:00:00Z"), "{now}");

    // Lists page like every other list: one at a time, or --all.
    let first = cli(&["cases", "list", "--page-size", "1"]);
    assert!(first.contains("next page: --page-token "), "{first}");
    let all: serde_json::Value = serde_json::from_str(&cli(&[
        "cases",
        "list",
        "--page-size",
        "1",
        "--all",
        "--json",
    ]))
    .unwrap();
    assert_eq!(all["cases"].as_array().unwrap().len(), 2, "{all}");
}

/// `concierge serve <service>` on a loopback port: its database, the
/// internal secret every process shares, the services it calls (short name →
/// port) and any other settings. With a NATS server at hand each process
/// relays its events to JetStream, as in production.
fn serve(
    service: &str,
    port: u16,
    database_url: &str,
    secret: &str,
    backends: &[(&str, u16)],
    settings: &[(&str, String)],
) -> Proc {
    let mut cmd = Command::new(BIN);
    if let Ok(nats) = std::env::var(concierge_common::testing::NATS_ENV) {
        cmd.env("CONCIERGE_EVENTS__NATS_URL", nats);
    }
    for (name, port) in backends {
        cmd.env(
            format!("CONCIERGE_BACKENDS__{}__URL", name.to_ascii_uppercase()),
            format!("http://127.0.0.1:{port}"),
        );
    }
    for (name, value) in settings {
        cmd.env(name, value);
    }
    Proc(
        cmd.args(["serve", service, "--listen", &format!("127.0.0.1:{port}")])
            .env("CONCIERGE_DATABASE__URL", database_url)
            .env("CONCIERGE_INTERNAL__PRINCIPAL_SECRET", secret)
            .spawn()
            .unwrap(),
    )
}

/// Mints a key with `concierge keys create` straight into the gateway's
/// database, as an operator does, and returns its secret.
fn mint_key(gateway_db: &str, args: &[&str]) -> String {
    let minted = Command::new(BIN)
        .args(["keys", "create"])
        .args(args)
        .args(["--database-url", gateway_db])
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    String::from_utf8(minted.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

/// A `concierge serve cases` replica with its Prometheus endpoint, where it
/// counts its timer sweeps: a test can wait until this very replica has swept
/// again, rather than guess how long that takes.
struct CasesReplica {
    proc: Proc,
    metrics_port: u16,
}

impl CasesReplica {
    fn start(port: u16, database_url: &str, secret: &str, customers_port: u16) -> Self {
        let metrics_port = free_port();
        let proc = serve(
            "cases",
            port,
            database_url,
            secret,
            &[("customers", customers_port)],
            &[(
                "CONCIERGE_TELEMETRY__METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )],
        );
        CasesReplica { proc, metrics_port }
    }

    /// `concierge_sla_timer_sweeps_total`, 0 until the first sweep.
    fn sweeps(&self) -> u64 {
        scrape(self.metrics_port)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("concierge_sla_timer_sweeps_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The body of a Prometheus endpoint's `/metrics`.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Two replicas of the cases service on one PostgreSQL database, behind a
/// gateway, with the system clock: a first-response target breaches in real
/// time, both replicas sweep their timers, and the breach is recorded (and,
/// with NATS, published) once. A client key reads public updates only.
#[tokio::test]
async fn cases_behind_the_gateway_as_two_replicas_on_postgres() {
    use concierge_proto::concierge::cases::v1 as cases;
    use prost::Message as _;

    let Some(admin) = postgres_url("cases_behind_the_gateway_as_two_replicas_on_postgres") else {
        return;
    };
    let (customers_db, _) = create_postgres_database(&admin).await;
    let (cases_db, _) = create_postgres_database(&admin).await;
    let (gateway_db, _) = create_postgres_database(&admin).await;
    let secret = "a-shared-internal-secret-for-this-test";
    let key = mint_key(&gateway_db, &["--role", "admin", "--display-name", "e2e"]);
    // The NATS half of the test (breaches published once) needs a bus.
    let nats = concierge_common::testing::nats_url(
        "the JetStream half of cases_behind_the_gateway_as_two_replicas_on_postgres",
    );

    let [customers_port, first_port, second_port, gateway_port] = free_ports();
    let customers = serve("customers", customers_port, &customers_db, secret, &[], &[]);
    // Both replicas start at once on the one database, as a Deployment's do.
    let first = CasesReplica::start(first_port, &cases_db, secret, customers_port);
    let second = CasesReplica::start(second_port, &cases_db, secret, customers_port);
    let gateway = serve(
        "gateway",
        gateway_port,
        &gateway_db,
        secret,
        &[("customers", customers_port), ("cases", first_port)],
        &[],
    );
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    wait_serving(
        &format!("http://127.0.0.1:{customers_port}"),
        concierge_customers::SERVICE_NAME,
    )
    .await;
    for port in [first_port, second_port] {
        wait_serving(
            &format!("http://127.0.0.1:{port}"),
            concierge_cases::SERVICE_NAME,
        )
        .await;
    }
    wait_serving(&gateway_url, concierge_customers::SERVICE_NAME).await;
    wait_serving(&gateway_url, concierge_cases::SERVICE_NAME).await;

    // Unique names: other tests publish into the same JetStream stream.
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let account_id = format!("sla{run}");
    let client = concierge_sdk::Client::builder(gateway_url.clone())
        .api_key(key)
        .build()
        .unwrap();
    let acme = client
        .customers()
        .create_account(account(&account_id))
        .await
        .unwrap()
        .into_inner();
    let mut c = client.cases();
    c.create_calendar(cases::CreateCalendarRequest {
        calendar: Some(cases::Calendar {
            display_name: "Always open".into(),
            time_zone: Some(concierge_proto::types::TimeZone { id: "UTC".into() }),
            working_periods: (1..=7)
                .map(|weekday| cases::WorkingPeriod {
                    weekday,
                    start_minute: 0,
                    end_minute: 1440,
                })
                .collect(),
            ..Default::default()
        }),
        calendar_id: "always".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    c.create_sla_policy(cases::CreateSlaPolicyRequest {
        sla_policy: Some(cases::SlaPolicy {
            display_name: "Repairs, answered within two seconds".into(),
            case_types: vec![cases::CaseType::Repair as i32],
            calendar: "calendars/always".into(),
            first_response: Some(cases::SlaTarget {
                key: "first_response".into(),
                display_name: "First response".into(),
                duration: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                basis: cases::TimeBasis::Business as i32,
            }),
            ..Default::default()
        }),
        sla_policy_id: "repairs".into(),
        validate_only: false,
        request_id: String::new(),
    })
    .await
    .unwrap();

    // Where the stream stood before the case, so that only later messages count.
    let stream = match &nats {
        Some(url) => {
            let bus = concierge_common::relay::JetStreamBus::connect(url, "cases")
                .await
                .unwrap();
            let mut stream = bus
                .context()
                .get_stream(concierge_common::relay::stream_name("cases"))
                .await
                .unwrap();
            let start = stream.info().await.unwrap().state.last_sequence + 1;
            Some((stream, start))
        }
        None => None,
    };

    let case = c
        .create_case(cases::CreateCaseRequest {
            case: Some(cases::Case {
                title: "Circuit down".into(),
                r#type: cases::CaseType::Repair as i32,
                account: acme.name.clone(),
                ..Default::default()
            }),
            case_id: format!("breach{run}"),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.sla_policy, "slaPolicies/repairs");
    let clock = format!("{}/slaClocks/first_response", case.name);

    // Nobody answers: the replicas' sweeps (every second, system clock) find
    // the breach; the gateway shows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let breached = loop {
        let got = c
            .get_case(cases::GetCaseRequest {
                name: case.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if got
            .sla
            .as_ref()
            .is_some_and(|s| s.state == cases::SlaState::Breached as i32)
        {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} was not SLA_STATE_BREACHED 30 s after creation with a 2 s first-response target; its SLA summary: {:?}",
            case.name,
            got.sla
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        breached.sla.unwrap().breached_clock_keys,
        vec!["first_response".to_string()]
    );

    // The breach timer is done with; then each replica sweeps twice more, so
    // that any sweep that could still have held the timer has finished.
    let pool = sqlx::PgPool::connect(&cases_db).await.unwrap();
    let breach_timer = format!("{clock}:sla_breach");
    eventually(
        Duration::from_secs(30),
        &format!("timer {breach_timer} gone"),
        || {
            let pool = pool.clone();
            let id = breach_timer.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM timers WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    == 0
            }
        },
    )
    .await;
    let swept = [first.sweeps(), second.sweeps()];
    assert!(
        swept.iter().all(|&n| n > 0),
        "both replicas count their sweeps: {swept:?}"
    );
    eventually(
        Duration::from_secs(30),
        "both replicas to sweep twice more",
        || {
            let ok = first.sweeps() >= swept[0] + 2 && second.sweeps() >= swept[1] + 2;
            async move { ok }
        },
    )
    .await;
    let events = |kind: &'static str| {
        let pool = pool.clone();
        let clock = clock.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM outbox WHERE type = $1 AND subject = $2",
            )
            .bind(format!("concierge.cases.v1.sla_clock_{kind}"))
            .bind(clock)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        events("breached").await,
        1,
        "one breach event, however many replicas sweep"
    );
    assert_eq!(events("at_risk").await, 1, "one at-risk event");

    // With NATS: once the relay has marked the event published, the stream
    // holds it exactly once.
    if let Some((stream, start)) = stream {
        eventually(
            Duration::from_secs(30),
            "the breach event relayed to JetStream",
            || {
                let pool = pool.clone();
                let clock = clock.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM outbox WHERE type = 'concierge.cases.v1.sla_clock_breached' AND subject = $1 AND publish_time > 0",
                    )
                    .bind(clock)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                        == 1
                }
            },
        )
        .await;
        let mut ours = Vec::new();
        let mut next = start;
        loop {
            let message = match stream
                .get_first_raw_message_by_subject("concierge.cases.v1.sla_clock_breached", next)
                .await
            {
                Ok(m) => m,
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                {
                    break;
                }
                Err(e) => panic!("reading CONCIERGE_CASES: {e}"),
            };
            next = message.sequence + 1;
            let event = concierge_proto::events::Event::decode(message.payload.as_ref()).unwrap();
            if event.subject == clock && event.account == acme.name {
                ours.push(event.id);
            }
        }
        assert_eq!(
            ours.len(),
            1,
            "the stream holds the breach of {clock} once: {ours:?}"
        );
    }

    // An internal note and a public update; the client's key sees the update only.
    for (id, visibility, body) in [
        (
            "internal",
            cases::note::Visibility::Internal,
            "Carrier says a backhoe cut the fibre.",
        ),
        (
            "public",
            cases::note::Visibility::Public,
            "We are on it; next update within the hour.",
        ),
    ] {
        c.create_note(cases::CreateNoteRequest {
            parent: case.name.clone(),
            note: Some(cases::Note {
                visibility: visibility as i32,
                body: body.into(),
                ..Default::default()
            }),
            note_id: id.into(),
            notify_client: false,
            request_id: String::new(),
        })
        .await
        .unwrap();
    }
    let client_key = mint_key(
        &gateway_db,
        &[
            "--role",
            "client",
            "--account",
            &acme.name,
            "--display-name",
            "client",
        ],
    );
    let mut as_client = concierge_sdk::Client::builder(gateway_url.clone())
        .api_key(client_key.clone())
        .build()
        .unwrap()
        .cases();
    let seen = as_client
        .list_notes(cases::ListNotesRequest {
            parent: case.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen.notes
            .iter()
            .map(|n| n.body.as_str())
            .collect::<Vec<_>>(),
        vec!["We are on it; next update within the hour."],
        "a client reads the public update, never the internal note"
    );
    let hidden = as_client
        .get_note(cases::GetNoteRequest {
            name: format!("{}/notes/internal", case.name),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);

    if nats.is_some() {
        // The served gateway follows the cases stream on JetStream: the
        // client's systems get the public update and never the internal note.
        let mut stream = concierge_sdk::Client::builder(gateway_url.clone())
            .api_key(client_key.clone())
            .build()
            .unwrap()
            .gateway()
            .subscribe_events(
                concierge_proto::concierge::gateway::v1::SubscribeEventsRequest {
                    event_types: vec!["concierge.cases.v1.note_created".into()],
                    start_time: Some(concierge_common::clock::to_proto(
                        jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10),
                    )),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .into_inner();
        use concierge_proto::concierge::gateway::v1::subscribe_events_response::Item;
        let first = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let m = stream.message().await.unwrap().unwrap();
                if let Some(Item::Event(e)) = m.item {
                    break e;
                }
            }
        })
        .await
        .expect("the public note's event within 30 s");
        assert_eq!(first.subject, format!("{}/notes/public", case.name));
        assert_eq!(first.account, acme.name);

        // The account changes hands: the cases replicas' consumer (one
        // durable consumer shared by both) moves the open case to the new
        // manager's portfolio.
        client
            .customers()
            .create_staff_member(CreateStaffMemberRequest {
                staff_member: Some(StaffMember {
                    display_name: "Bora".into(),
                    email: format!("bora{run}@example.com"),
                    role: StaffRole::AccountManager as i32,
                    active: true,
                    ..Default::default()
                }),
                staff_member_id: format!("bora{run}"),
                request_id: String::new(),
            })
            .await
            .unwrap();
        client
            .customers()
            .update_account(UpdateAccountRequest {
                account: Some(Account {
                    name: acme.name.clone(),
                    account_manager: format!("staff/bora{run}"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["account_manager".into()],
                }),
            })
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = c
                .get_case(cases::GetCaseRequest {
                    name: case.name.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if got.account_manager == format!("staff/bora{run}") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the case moved to the new manager within 30 s; it is {:?}",
                got.account_manager
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // SIGTERM drains every process and each exits cleanly.
    let CasesReplica { proc: first, .. } = first;
    let CasesReplica { proc: second, .. } = second;
    for p in [&gateway, &first, &second, &customers] {
        sigterm(p);
    }
    for p in [gateway, first, second, customers] {
        let started = std::time::Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            let mut p = p;
            p.0.wait()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "drained before the 20 s grace period ran out"
        );
    }
    pool.close().await;
    drop((c, as_client));
}

/// Waits (bounded) for a process that is expected to give up on its own.
async fn exit_of(mut p: Proc) -> (std::process::ExitStatus, String) {
    let mut status = None;
    eventually(Duration::from_secs(30), "the process to exit", || {
        status = p.0.try_wait().unwrap();
        std::future::ready(status.is_some())
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut p.0.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.unwrap(), stderr)
}

/// With `database.migrate = false`, as the manifests run it, a service leaves
/// its schema to `concierge migrate` (the migration Job, with the owner's
/// role): on an older schema it refuses to start, says what to run and
/// changes nothing; once migrated it serves with a role that may only read
/// and write. A service that migrates itself also starts with such a role
/// once the schema is current, since then it changes nothing.
#[tokio::test]
async fn serve_leaves_the_schema_to_migrate_and_needs_no_ddl_rights() {
    use sqlx::Connection as _;
    let Some(admin) = postgres_url("serve_leaves_the_schema_to_migrate_and_needs_no_ddl_rights")
    else {
        return;
    };
    let (owner_url, db_name) = create_postgres_database(&admin).await;
    let role = format!("concierge_app_{}", uuid::Uuid::new_v4().simple());
    let mut owner = sqlx::PgConnection::connect(&owner_url).await.unwrap();
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".into(),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ),
    ] {
        sqlx::query(&sql).execute(&mut owner).await.unwrap();
    }
    let (scheme, rest) = owner_url.split_once("://").unwrap();
    let host_and_db = rest.split_once('@').map_or(rest, |(_, h)| h);
    let app_url = format!("{scheme}://{role}@{host_and_db}");
    let secret = "a-shared-internal-secret-for-this-test";
    async fn tables(conn: &mut sqlx::PgConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    let refused = Command::new(BIN)
        .args(["serve", "customers", "--no-migrate", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("CONCIERGE_DATABASE__URL", &app_url)
        .env("CONCIERGE_INTERNAL__PRINCIPAL_SECRET", secret)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = exit_of(Proc(refused)).await;
    assert!(!status.success(), "serve --no-migrate on an empty database");
    assert!(
        stderr.contains("schema is behind this build")
            && stderr.contains("run `concierge migrate customers`"),
        "says what to run: {stderr}"
    );
    assert_eq!(
        tables(&mut owner).await,
        0,
        "the refused start changed nothing"
    );

    let migrated = Command::new(BIN)
        .args(["migrate", "customers", "--database-url", &owner_url])
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(tables(&mut owner).await > 0);

    // The manifests' way: the setting from the environment.
    let port = free_port();
    let checked = serve(
        "customers",
        port,
        &app_url,
        secret,
        &[],
        &[("CONCIERGE_DATABASE__MIGRATE", "false".into())],
    );
    wait_serving(
        &format!("http://127.0.0.1:{port}"),
        concierge_customers::SERVICE_NAME,
    )
    .await;
    let port = free_port();
    let self_migrating = serve("customers", port, &app_url, secret, &[], &[]);
    wait_serving(
        &format!("http://127.0.0.1:{port}"),
        concierge_customers::SERVICE_NAME,
    )
    .await;
    drop((checked, self_migrating));

    owner.close().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE {db_name} WITH (FORCE)"),
        format!("DROP ROLE {role}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
}

/// `concierge serve` started during a NATS outage (the URL points at a port
/// where nothing listens) serves, takes writes and keeps their events in the
/// outbox, reporting the bus as disconnected; it does not exit and
/// crash-loop. With a real NATS at hand, a replica on the same database
/// publishes them once it can.
#[tokio::test]
async fn serve_takes_writes_while_nats_is_down_and_keeps_the_events() {
    use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("customers.db").display()
    );
    let secret = "a-shared-internal-secret-for-this-test";
    let (port, metrics_port, closed) = (free_port(), free_port(), free_port());
    let mut customers = serve(
        "customers",
        port,
        &db,
        secret,
        &[],
        &[
            (
                "CONCIERGE_EVENTS__NATS_URL",
                format!("nats://127.0.0.1:{closed}"),
            ),
            (
                "CONCIERGE_TELEMETRY__METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            ),
        ],
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_serving(&url, "").await;

    let admin = PrincipalCodec::new(secret.into()).encode(
        &Principal {
            subject: "apiKeys/test".into(),
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "test".into(),
        },
        customers_service_server::SERVICE_NAME,
    );
    let mut client = customers_service_client::CustomersServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(account("acme"));
    request
        .metadata_mut()
        .insert(PRINCIPAL_HEADER, admin.parse().unwrap());
    client.create_account(request).await.unwrap();

    assert!(
        customers.0.try_wait().unwrap().is_none(),
        "the process keeps running"
    );
    eventually(
        Duration::from_secs(20),
        "concierge_bus_connected reports the outage",
        || async {
            scrape(metrics_port).is_some_and(|m| {
                m.lines()
                    .any(|l| l == "concierge_bus_connected{source=\"customers\"} 0")
            })
        },
    )
    .await;
    let pending = || async {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE publish_time = 0")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(
        pending().await,
        1,
        "the account_created event waits in the outbox"
    );

    // NATS is back (a replica pointed at the real one): the events drain.
    let Ok(nats) = std::env::var("CONCIERGE_TEST_NATS_URL") else {
        eprintln!("\n*** SKIPPED the drain half: set CONCIERGE_TEST_NATS_URL ***\n");
        return;
    };
    drop(customers);
    let port = free_port();
    let _again = serve(
        "customers",
        port,
        &db,
        secret,
        &[],
        &[("CONCIERGE_EVENTS__NATS_URL", nats)],
    );
    eventually(Duration::from_secs(30), "the outbox drained", || async {
        pending().await == 0
    })
    .await;
}
