//! Logs, traces and metrics. Text logs for people at a terminal, JSON logs in
//! production; OTLP trace export when an endpoint is configured, with W3C
//! trace context (`traceparent`) read from and written to calls; Prometheus
//! metrics on the admin address, latencies as histograms. The returned guard
//! flushes traces on drop.

use std::net::SocketAddr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `RUST_LOG`-style directives.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. No export when unset.
    pub otlp_endpoint: Option<String>,
    /// Where Prometheus scrapes `/metrics`. No exporter when unset.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info,sqlx=warn,h2=warn,tower=warn,hyper=warn".into(),
            otlp_endpoint: None,
            metrics_listen: None,
        }
    }
}

/// Keeps telemetry alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// The buckets of every histogram, in seconds (all of them are latencies):
/// from a cached read to a call that runs into its deadline.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the global subscriber and exporters. Safe to call more than once
/// in one process (tests, `concierge dev`): later calls keep the first setup.
pub fn init(service_name: &str, cfg: &TelemetryConfig) -> Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_filter))
        .map_err(|e| Error::invalid("telemetry.log_filter", e.to_string()))?;

    let fmt = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
    // The log filter decides what is logged, not what is traced: a
    // service logging only warnings still exports its request spans.
    .with_filter(filter);

    // Whoever calls next continues this process's trace, whether or not it
    // exports spans itself.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let mut tracer_provider = None;
    let otel = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| Error::invalid("telemetry.otlp_endpoint", e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service_name.to_string())
                        .build(),
                )
                .build();
            let tracer = provider.tracer(service_name.to_string());
            tracer_provider = Some(provider.clone());
            opentelemetry::global::set_tracer_provider(provider);
            // Spans down to INFO (the request spans); of events only
            // warnings and errors, which become events of their span.
            let traced = filter_fn(|meta| {
                *meta.level()
                    <= if meta.is_span() {
                        Level::INFO
                    } else {
                        Level::WARN
                    }
            });
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(traced),
            )
        }
        None => None,
    };

    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();

    if installed && let Some(addr) = cfg.metrics_listen {
        // Histograms, not the exporter's default summaries: quantiles of a
        // summary cannot be aggregated across replicas, buckets can
        // (`histogram_quantile`).
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .and_then(|b| b.install_recorder())
            .map_err(|e| Error::invalid("telemetry.metrics_listen", e.to_string()))?;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| Error::invalid("telemetry.metrics_listen", format!("{addr}: {e}")))?;
        tokio::spawn(serve_metrics(metrics_connections(listener), recorder));
        metrics::gauge!(
            "concierge_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "service" => service_name.to_string(),
        )
        .set(1.0);
        tracing::info!(%addr, "prometheus metrics on /metrics");
    }
    Ok(TelemetryGuard {
        tracer: tracer_provider,
    })
}

/// The connections Prometheus scrapes over, TCP_NODELAY like every other
/// socket we accept: a scrape's reply is written in pieces, and Nagle would
/// hold the last one for the scraper's delayed ACK.
fn metrics_connections(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    crate::server::incoming(listener)
}

/// Serves `/metrics` (everything else is 404) on `connections`, keeping the
/// recorder's histograms drained as the exporter's own listener would.
async fn serve_metrics(
    mut connections: tonic::transport::server::TcpIncoming,
    recorder: metrics_exporter_prometheus::PrometheusHandle,
) {
    use futures::StreamExt;
    use http_body_util::Full;
    use hyper::body::Bytes;

    let upkeep = recorder.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    while let Some(accepted) = connections.next().await {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: retrying at once would spin.
                tracing::warn!(error = %e, "accepting a metrics scrape failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let answer =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let response = if request.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(recorder.render())))
                    } else {
                        http::Response::builder()
                            .status(http::StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::new()))
                    };
                    std::future::ready(response)
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A scraper that hangs up mid-reply is not our error to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, answer)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn metrics_are_scraped_over_tcp_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = metrics_connections(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let socket = accepted.next().await.unwrap().unwrap();
        assert!(socket.nodelay().unwrap(), "TCP_NODELAY on the scraped side");
        drop((client, socket));

        // And the same connections answer a scrape.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("concierge_scrape_test_total").increment(3);
        });
        tokio::spawn(serve_metrics(accepted, handle));
        let mut scraper = tokio::net::TcpStream::connect(addr).await.unwrap();
        scraper
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        scraper.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("concierge_scrape_test_total 3"), "{reply}");
    }
}
