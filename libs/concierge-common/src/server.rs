//! The gRPC server bootstrap every service and the gateway share: health that
//! says NOT_SERVING until the service is ready (and again while draining),
//! reflection of the services actually served, and a graceful drain on
//! SIGTERM/SIGINT: NOT_SERVING first while connections are still accepted
//! (so load balancers stop sending before anything is refused), then in-flight
//! calls bounded by a grace period, because `serve_with_shutdown` alone waits
//! forever on open streams.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
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
pub(crate) fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Where a server listens: plain TCP (behind a mesh or a load balancer that
/// terminates TLS), or TLS the server terminates itself.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsFiles>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

impl Listener {
    /// A listener that terminates TLS with the certificate and key in
    /// `files`, or plain TCP when `files` is `None`.
    pub fn new(tcp: TcpListener, files: Option<TlsFiles>) -> Self {
        Self { tcp, tls: files }
    }
}

/// A PEM certificate chain and its private key, read again whenever either
/// file changes (a renewed certificate is served without a restart).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for a change.
    pub reload_every: Duration,
}

impl TlsFiles {
    fn stamp(&self) -> Option<(SystemTime, SystemTime, u64, u64)> {
        let cert = std::fs::metadata(&self.cert).ok()?;
        let key = std::fs::metadata(&self.key).ok()?;
        Some((
            cert.modified().ok()?,
            key.modified().ok()?,
            cert.len(),
            key.len(),
        ))
    }

    fn load(&self, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::invalid("server.tls_cert", format!("{}: {e}", self.cert.display()))
            })?;
        if chain.is_empty() {
            return Err(Error::invalid(
                "server.tls_cert",
                format!("{} holds no certificate", self.cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            Error::invalid("server.tls_key", format!("{}: {e}", self.key.display()))
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            Error::invalid(
                "server.tls_key",
                format!("does not fit the certificate: {e}"),
            )
        })
    }
}

/// The certificate handshakes use: the last one that loaded.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A TLS acceptor over `files`, and a task that reloads them on change for
/// as long as the acceptor lives.
fn tls_acceptor(files: TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let current = Arc::new(CurrentCert(RwLock::new(Arc::new(files.load(&provider)?))));
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let weak: Weak<CurrentCert> = Arc::downgrade(&current);
    tokio::spawn(async move {
        let mut seen = files.stamp();
        let mut tick = tokio::time::interval(files.reload_every);
        loop {
            tick.tick().await;
            let Some(current) = weak.upgrade() else { break };
            let stamp = files.stamp();
            if stamp == seen {
                continue;
            }
            seen = stamp;
            match files.load(&provider) {
                Ok(key) => {
                    *current
                        .0
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                }
                // Mid-rotation the key and the certificate may not match
                // yet: keep serving the old pair until they do.
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one")
                }
            }
        }
    });
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS connection, known to the server by its TCP addresses (so that
/// per-peer limits work the same with and without TLS).
struct TlsConnection(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connections made over `tcp`. Handshakes run side by side, so a
/// slow or silent client holds up no one else; the listener closes when the
/// server stops taking connections.
fn tls_incoming(
    mut tcp: TcpIncoming,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                accepted = tcp.next() => accepted,
            };
            let socket = match accepted {
                Some(Ok(socket)) => socket,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    continue;
                }
                None => break,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConnection(tls))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The `/package.Service/Method` paths of the served services, read from the
/// descriptors they were generated from: only these become metric labels.
fn served_paths(services: &[String]) -> Result<HashSet<String>> {
    crate::rpc::method_paths(Some(services))
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
/// NOT_SERVING, the server goes on serving for `drain_delay`, then refuses new
/// connections and gives in-flight calls `grace_period` to finish.
pub async fn start(
    listener: impl Into<Listener>,
    routes: Routes,
    serve: Serve,
    ready: impl Future<Output = Result<()>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let Listener { tcp, tls } = listener.into();
    let addr = tcp.local_addr().map_err(Error::internal)?;
    let acceptor = tls.map(tls_acceptor).transpose()?;
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

    let (accepting_tx, accepting_rx) = watch::channel(true);
    let no_longer_accepting = async move {
        let mut rx = accepting_rx;
        let _ = rx.wait_for(|accepting| !*accepting).await;
    };
    let router = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(move |inner| {
            crate::rpc::Observe::server(inner, paths.clone())
        }))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // HTTP/2 pins a client to one pod; recycling connections rebalances.
        .max_connection_age(Duration::from_secs(300))
        .add_routes(routes);
    let server: Pin<
        Box<dyn Future<Output = std::result::Result<(), tonic::transport::Error>> + Send>,
    > = match acceptor {
        None => Box::pin(router.serve_with_incoming_shutdown(incoming(tcp), no_longer_accepting)),
        Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
            tls_incoming(incoming(tcp), acceptor),
            no_longer_accepting,
        )),
    };
    let Serve {
        grace_period: grace,
        drain_delay,
        ..
    } = serve;
    let mut stop_rx = stop_tx.subscribe();
    let draining_health = health.clone();
    let done = tokio::spawn(async move {
        let health = draining_health;
        let mut server = server;
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
