//! The gRPC server bootstrap every service and the gateway share: health that
//! says NOT_SERVING until the service is ready (and again while draining),
//! reflection of the services actually served, and a graceful drain on
//! SIGTERM/SIGINT: NOT_SERVING first while connections are still accepted
//! (so load balancers stop sending before anything is refused), then in-flight
//! calls bounded by a grace period, because `serve_with_shutdown` alone waits
//! forever on open streams.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
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
    /// Fully-qualified names of the public services served, for health,
    /// reflection and metric labels.
    pub health_names: Vec<String>,
    /// How long in-flight calls may take once the server stops accepting.
    pub grace_period: Duration,
    /// How long the server keeps accepting new connections and calls after
    /// the shutdown signal while health already says NOT_SERVING, so that
    /// load balancers and Kubernetes endpoints stop routing here before
    /// anything is refused.
    pub drain_delay: Duration,
}

/// The standard services the bootstrap adds to every server.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The connections a server serves. Every accepted socket gets TCP_NODELAY:
/// a reply's trailers go out in their own small write, and without it they
/// wait for the client's delayed ACK (about 40 ms per call for clients such
/// as Python grpcio that do not set it themselves).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The `/package.Service/Method` paths of the served services, read from the
/// descriptors they were generated from: only these become metric labels.
fn served_paths(services: &[String]) -> Result<HashSet<String>> {
    let mut paths = HashSet::new();
    for encoded in [
        concierge_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded).map_err(Error::internal)?;
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let full = format!("{package}.{}", service.name.unwrap_or_default());
                if !services.contains(&full) {
                    continue;
                }
                for method in service.method {
                    paths.insert(format!("/{full}/{}", method.name.unwrap_or_default()));
                }
            }
        }
    }
    Ok(paths)
}

/// A running server: the bound address and a way to drain it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
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
/// NOT_SERVING, the server goes on serving for `drain_delay`, then refuses new
/// connections and gives in-flight calls `grace_period` to finish.
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
    // Reflection lists what this server serves, not every service the
    // contracts describe: a client that discovers a service can call it.
    let served: Vec<String> = serve
        .health_names
        .iter()
        .cloned()
        .chain(STANDARD_SERVICES.map(String::from))
        .collect();
    let reflecting = || {
        served.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(concierge_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |b, name| b.with_service_name(name.clone()),
        )
    };
    let reflection = reflecting().build_v1().map_err(Error::internal)?;
    let reflection_alpha = reflecting().build_v1alpha().map_err(Error::internal)?;
    let paths = Arc::new(served_paths(&served)?);
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

    let (accepting_tx, mut accepting_rx) = watch::channel(true);
    let server = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(move |inner| Metered {
            inner,
            paths: paths.clone(),
        }))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // HTTP/2 pins a client to one pod; recycling connections rebalances.
        .max_connection_age(Duration::from_secs(300))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = accepting_rx.wait_for(|accepting| !*accepting).await;
        });
    let Serve {
        grace_period: grace,
        drain_delay,
        ..
    } = serve;
    let mut stop_rx = stop_tx.subscribe();
    let done = tokio::spawn(async move {
        let mut server = Box::pin(server);
        tokio::select! {
            result = &mut server => return result.map_err(Error::internal),
            _ = stopped(&mut stop_rx) => {},
        }
        tracing::info!(%addr, drain_delay_ms = drain_delay.as_millis() as u64, "draining: NOT_SERVING, still accepting");
        health.set(false).await;
        tokio::select! {
            result = &mut server => return result.map_err(Error::internal),
            _ = tokio::time::sleep(drain_delay) => {},
        }
        tracing::info!(%addr, "no longer accepting; finishing calls in flight");
        let _ = accepting_tx.send(false);
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
    /// The methods that are labelled by name; any other path is "unknown",
    /// so that callers cannot create series by inventing paths.
    paths: Arc<HashSet<String>>,
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
        let (service, method) = match request.uri().path() {
            path if self.paths.contains(path) => {
                path[1..].split_once('/').unwrap_or(("unknown", "unknown"))
            }
            _ => ("unknown", "unknown"),
        };
        let (service, method) = (service.to_string(), method.to_string());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            if let Ok(response) = &result {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn accepted_connections_get_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        // A client that leaves Nagle on, as Python grpcio does.
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(!client.nodelay().unwrap());
        let socket = accepted.next().await.unwrap().unwrap();
        assert!(socket.nodelay().unwrap(), "TCP_NODELAY on the server side");
    }

    #[test]
    fn only_the_served_services_methods_are_labelled() {
        let served = vec![
            "concierge.customers.v1.CustomersService".to_string(),
            "grpc.health.v1.Health".to_string(),
        ];
        let paths = served_paths(&served).unwrap();
        assert!(paths.contains("/concierge.customers.v1.CustomersService/GetAccount"));
        assert!(paths.contains("/grpc.health.v1.Health/Check"));
        assert!(!paths.contains("/concierge.cases.v1.CasesService/GetCase"));
        assert!(!paths.contains("/concierge.customers.v1.CustomersService/Nope"));
    }
}
