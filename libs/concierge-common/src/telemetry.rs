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
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets(&LATENCY_BUCKETS)
            .and_then(|b| b.install())
            .map_err(|e| Error::invalid("telemetry.metrics_listen", e.to_string()))?;
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
