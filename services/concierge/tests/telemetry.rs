//! What `concierge dev` tells an operator, read where an operator reads it:
//! the spans an OTLP collector receives, the Prometheus endpoint, the log
//! lines. Waits are on conditions, never on timers.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierge_common::testing::eventually;
use concierge_proto::concierge::cases::v1 as cases;
use concierge_proto::customers::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

mod support;
use support::{BIN, Output};

/// An OTLP/gRPC trace collector in the test process: it keeps every span
/// it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Starts the collector on a loopback port; its OTLP endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}

/// A span's attributes, as strings.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// `concierge dev` exporting spans to `collector`, logging JSON at INFO to
/// output the test reads, with its metrics on `metrics_port`: settings
/// read the way `serve` reads them.
fn start_dev(
    dir: &std::path::Path,
    collector: &str,
    metrics_port: u16,
) -> (support::Proc, String, String, Output) {
    let mut dev = Command::new(BIN);
    dev.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("CONCIERGE_TELEMETRY__OTLP_ENDPOINT", collector)
        .env("CONCIERGE_TELEMETRY__LOG_FORMAT", "json")
        .env(
            "CONCIERGE_TELEMETRY__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("RUST_LOG", "info")
        // The batch exporter's standard setting: send within 100 ms, not 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    support::start_dev_capturing(dev)
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One CreateCase through the gateway is one trace: the gateway's server
/// span continues the caller's `traceparent`, the cases service's span is
/// its child, and the customers service's span (the account check the cases
/// service makes over gRPC) is the child of that. And the call leaves one
/// access log line per span, with its code and request id.
#[tokio::test]
async fn one_create_case_is_one_trace_across_gateway_cases_and_customers() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let (_dev, url, key, output) = start_dev(dir.path(), &endpoint, metrics_port);
    let client = concierge_sdk::Client::builder(url)
        .api_key(key)
        .build()
        .unwrap();
    client
        .customers()
        .create_account(CreateAccountRequest {
            account: Some(Account {
                display_name: "Traced Holding".into(),
                tier: Tier::Strategic as i32,
                time_zone: "Europe/Istanbul".into(),
                language_code: "tr".into(),
                ..Default::default()
            }),
            account_id: "traced".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let mut create = tonic::Request::new(cases::CreateCaseRequest {
        case: Some(cases::Case {
            title: "Circuit down".into(),
            r#type: cases::CaseType::Repair as i32,
            account: "accounts/traced".into(),
            ..Default::default()
        }),
        case_id: "traced1".into(),
        request_id: String::new(),
    });
    create.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .unwrap(),
    );
    create
        .metadata_mut()
        .insert("x-request-id", "req-traced-1".parse().unwrap());
    client.cases().create_case(create).await.unwrap();

    const CREATE_CASE: &str = "concierge.cases.v1.CasesService/CreateCase";
    const GET_ACCOUNT: &str = "concierge.customers.v1.CustomersService/GetAccount";
    let caller_trace = hex::decode(CALLER_TRACE).unwrap();
    let in_trace = |name: &str| -> Vec<Span> {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.name == name && s.trace_id == caller_trace)
            .collect()
    };
    eventually(
        Duration::from_secs(20),
        "the gateway's, cases' and customers' spans of the call",
        || {
            let done = in_trace(CREATE_CASE).len() >= 2 && !in_trace(GET_ACCOUNT).is_empty();
            async move { done }
        },
    )
    .await;

    let create_spans = in_trace(CREATE_CASE);
    let gateway = create_spans
        .iter()
        .find(|s| s.parent_span_id == hex::decode(CALLER_SPAN).unwrap())
        .expect("the gateway's span continues the caller's traceparent");
    let cases_span = create_spans
        .iter()
        .find(|s| s.parent_span_id == gateway.span_id)
        .expect("the cases service's span is the child of the gateway's");
    let customers = in_trace(GET_ACCOUNT)
        .into_iter()
        .find(|s| s.parent_span_id == cases_span.span_id)
        .expect("the customers service's span is the child of the cases service's");
    for span in [gateway, cases_span, &customers] {
        assert_eq!(span.kind, SpanKind::Server as i32, "{}", span.name);
        let a = attributes(span);
        assert_eq!(a["rpc.system"], "grpc");
        assert_eq!(a["rpc.grpc.status_code"], "0", "{}", span.name);
        assert_eq!(
            format!("{}/{}", a["rpc.service"], a["rpc.method"]),
            span.name
        );
        assert_eq!(a["request_id"], "req-traced-1", "{}", span.name);
    }

    // One access log line per span, each with its code and request id.
    let finished = |method: &str| {
        output
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == "rpc finished" && l["method"] == method)
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "the access log lines", || {
        let done = finished("CreateCase").len() >= 2 && !finished("GetAccount").is_empty();
        async move { done }
    })
    .await;
    for line in finished("CreateCase").iter().chain(&finished("GetAccount")) {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["code"], "OK", "{line}");
        assert_eq!(line["request_id"], "req-traced-1", "{line}");
        assert_eq!(line["trace_id"], CALLER_TRACE, "{line}");
        assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    }
}

/// Latencies are Prometheus histograms (buckets `histogram_quantile` can
/// aggregate), codes are named as gRPC names them, and the process reports
/// its build, its database pools and its outbox backlogs.
#[tokio::test]
async fn dev_metrics_are_histograms_with_grpc_code_names_and_gauges() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Command::new(BIN);
    dev.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let (_dev, url, key) = support::start_dev(dev);
    let mut c = concierge_sdk::Client::builder(url)
        .api_key(key)
        .build()
        .unwrap()
        .customers();
    let bad = c
        .create_account(CreateAccountRequest {
            account: Some(Account::default()),
            account_id: "Not An Id".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    c.list_accounts(ListAccountsRequest::default())
        .await
        .unwrap();

    let service = r#"grpc_service="concierge.customers.v1.CustomersService""#;
    let wanted = [
        format!(r#"grpc_server_handled_total{{{service},grpc_method="ListAccounts",grpc_code="OK"}} 1"#),
        format!(
            r#"grpc_server_handled_total{{{service},grpc_method="CreateAccount",grpc_code="INVALID_ARGUMENT"}} 1"#
        ),
        format!(r#"grpc_server_handling_seconds_bucket{{{service},grpc_method="ListAccounts",le="+Inf"}} 1"#),
        format!(r#"grpc_server_handling_seconds_bucket{{{service},grpc_method="ListAccounts",le="0.005"}}"#),
        format!(r#"grpc_server_handling_seconds_count{{{service},grpc_method="ListAccounts"}} 1"#),
        r#"concierge_gateway_forward_seconds_bucket{service="concierge.customers.v1.CustomersService",le="+Inf"} 2"#.into(),
        format!(
            r#"concierge_build_info{{version="{}",service="concierge-dev"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
        r#"concierge_db_pool_max{database="customers"} 8"#.into(),
        r#"concierge_db_pool_max{database="gateway"} 4"#.into(),
        r#"concierge_db_pool_size{database="cases"}"#.into(),
        r#"concierge_db_pool_idle{database="cases"}"#.into(),
        r#"concierge_outbox_backlog{source="customers"} 0"#.into(),
        r#"concierge_outbox_backlog{source="cases"} 0"#.into(),
    ];
    let mut body = String::new();
    eventually(Duration::from_secs(15), "the histograms and gauges", || {
        body = scrape(port).unwrap_or_default();
        let ok = wanted.iter().all(|w| body.contains(w.as_str()));
        async move { ok }
    })
    .await;
    assert!(
        !body.contains("quantile="),
        "no latency is a summary any more:\n{body}"
    );
    assert!(
        !body.contains(r#"grpc_code="Ok""#),
        "codes are OK, not Ok:\n{body}"
    );
}
