//! The gRPC server bootstrap every service and the gateway share: health that
//! says NOT_SERVING until the service is ready (and again while draining),
//! reflection, and a graceful drain on SIGTERM/SIGINT bounded by a grace
//! period, because `serve_with_shutdown` alone waits forever on open streams.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::{Error, Result};

/// Reports the health of the named services of one server.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    names: Vec<String>,
}

impl Health {
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        // "" is the whole server, which Kubernetes' gRPC probe asks about.
        self.reporter.set_service_status("", status).await;
        for name in &self.names {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// A resolved shutdown signal: SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// How one server runs.
pub struct Serve {
    /// Fully-qualified names of the public services, for health.
    pub health_names: Vec<String>,
    pub grace_period: Duration,
}

/// A running server: the bound address and a way to drain it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<Result<()>>,
    health: Health,
}

impl Running {
    /// The server's health, for what else decides readiness (supervised
    /// background workers).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Turns true when the drain begins; from then on health stays
    /// NOT_SERVING whatever else reports.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Begins the drain and waits for it to end.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.done.await.map_err(Error::internal)?
    }

    /// Waits until the server stops by itself (after a signal).
    pub async fn wait(self) -> Result<()> {
        self.done.await.map_err(Error::internal)?
    }
}

/// Serves `routes` (plus health and reflection) on `listener`. Health turns
/// SERVING once `ready` resolves Ok; after `shutdown` resolves, health turns
/// NOT_SERVING, new connections are refused and in-flight calls get
/// `grace_period` to finish.
pub async fn start(
    listener: TcpListener,
    routes: Routes,
    serve: Serve,
    ready: impl Future<Output = Result<()>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let addr = listener.local_addr().map_err(Error::internal)?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health {
        reporter,
        names: serve.health_names.clone(),
    };
    health.set(false).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concierge_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(Error::internal)?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concierge_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(Error::internal)?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha);

    let (stop_tx, _) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    });
    tokio::spawn({
        let health = health.clone();
        async move {
            match ready.await {
                Ok(()) => health.set(true).await,
                Err(e) => tracing::error!(error = %e, "service never became ready"),
            }
        }
    });

    let drain_signal = {
        let mut rx = stop_tx.subscribe();
        let health = health.clone();
        async move {
            stopped(&mut rx).await;
            tracing::info!(%addr, "draining");
            health.set(false).await;
        }
    };
    let server = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(|inner| Metered { inner }))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // HTTP/2 pins a client to one pod; recycling connections rebalances.
        .max_connection_age(Duration::from_secs(300))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), drain_signal);
    let grace = serve.grace_period;
    let mut stop_rx = stop_tx.subscribe();
    let done = tokio::spawn(async move {
        let mut server = Box::pin(server);
        tokio::select! {
            result = &mut server => return result.map_err(Error::internal),
            _ = stopped(&mut stop_rx) => {},
        }
        let started = Instant::now();
        match tokio::time::timeout(grace, server).await {
            Ok(result) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
                result.map_err(Error::internal)
            }
            Err(_) => {
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "grace period over; dropping open calls"
                );
                Ok(())
            }
        }
    });
    Ok(Running {
        addr,
        stop: stop_tx,
        done,
        health,
    })
}

/// Resolves once `stop` is set. A dropped sender is not a stop: a server whose
/// handle was dropped keeps serving.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Counts and times every call by service, method and gRPC code, for the
/// Prometheus exporter (`grpc_server_handled_total`,
/// `grpc_server_handling_seconds`).
#[derive(Clone)]
struct Metered<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Only our own and the standard gRPC services become labels, so that
        // junk paths cannot blow up the metric's cardinality.
        let labels = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(service, method)| {
                (service.starts_with("concierge.") || service.starts_with("grpc."))
                    && service.len() < 96
                    && method.len() < 64
                    && !method.contains('/')
            })
            .map(|(s, m)| (s.to_string(), m.to_string()));
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            if let (Some((service, method)), Ok(response)) = (labels, &result) {
                // A failed call is answered trailers-only, with the code in the
                // headers; a successful one has no code there.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                    .unwrap_or_else(|| "Ok".to_string());
                metrics::counter!("grpc_server_handled_total", "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_code" => code)
                    .increment(1);
                metrics::histogram!("grpc_server_handling_seconds", "grpc_service" => service, "grpc_method" => method)
                    .record(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}
