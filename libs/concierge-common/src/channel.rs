//! How one service reaches another (and the gateway its backends): a pool
//! of gRPC connections, or the service itself in the same process in
//! `concierge dev`. Either way a tower service of HTTP/2 gRPC requests, so
//! a generated client works over it unchanged. Either way every call
//! carries the caller's trace context (`traceparent`), and an in-process
//! service gets its own server span as a served one does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::error::Error;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a public service's calls go: a pool of gRPC connections to its
/// Deployment, or the service itself in the same process (`concierge dev`).
pub type Backend = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    BoxError,
>;

/// A backend in the same process.
pub fn local<S>(service: S) -> Backend
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(crate::rpc::Propagate::new(crate::rpc::Observe::in_process(
        service.map_err(Into::into),
    )))
}

/// A backend behind `url` (`http://host:port`), reached over `connections`
/// HTTP/2 connections used in turn: one connection tops out around 30k
/// calls/s, and several spread the calls over the service's replicas behind
/// a Kubernetes Service. Calls go straight to hyper's connection pool rather
/// than through a tonic `Channel`, whose buffer task costs every call a
/// hand-off between tasks; the gateway's hop is on every client call.
pub fn remote(url: &str, connections: usize) -> Result<Backend, Error> {
    let bad = |why: String| Error::invalid("url", format!("{url:?}: {why}"));
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        // Backends are inside the cluster, where the mesh's mTLS carries
        // the signed principal; this pool speaks plain HTTP/2 only, so an
        // https:// URL is refused rather than sent in clear.
        return Err(bad(
            "a backend is reached over http:// (plain HTTP/2 inside the cluster)".into(),
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("no host".into()))?;
    let clients: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_secs(5)));
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .http2_keep_alive_interval(Duration::from_secs(30))
                .http2_keep_alive_while_idle(true)
                .build(connector)
        })
        .collect();
    let pool = Pool {
        clients: Arc::new(clients),
        next: Arc::new(AtomicUsize::new(0)),
        authority,
    };
    Ok(BoxCloneSyncService::new(crate::rpc::Propagate::new(
        tower::service_fn(move |mut req: http::Request<tonic::body::Body>| {
            let client = pool.pick();
            let origin = pool.origin(req.uri());
            async move {
                *req.uri_mut() = origin?;
                let response = client.request(req).await?;
                Ok::<_, BoxError>(response.map(tonic::body::Body::new))
            }
        }),
    )))
}

/// A channel to one service (`cases` → `customers`) whose calls carry the
/// current trace context: wrap it before building the generated client.
pub type Traced = crate::rpc::Propagate<tonic::transport::Channel>;

/// `channel`, its calls carrying the current trace context.
pub fn traced(channel: tonic::transport::Channel) -> Traced {
    crate::rpc::Propagate::new(channel)
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

#[derive(Clone)]
struct Pool {
    clients: Arc<Vec<Client>>,
    next: Arc<AtomicUsize>,
    authority: http::uri::Authority,
}

impl Pool {
    fn pick(&self) -> Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// The backend's address with the call's path: a request the gateway
    /// received names the gateway, and hyper dials what the URI names.
    fn origin(&self, uri: &http::Uri) -> Result<http::Uri, BoxError> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Ok(http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()?)
    }
}
