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

/// A backend behind `url`, reached over `connections` HTTP/2 connections used
/// in turn: one connection tops out around 30k calls/s, and several spread
/// the calls over the service's replicas behind a Kubernetes Service.
pub fn remote(url: &str, connections: usize) -> Result<Backend, Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid("url", format!("{url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let channels: Vec<_> = (0..connections.max(1))
        .map(|_| endpoint.connect_lazy())
        .collect();
    let pool = Pool {
        channels: Arc::new(channels),
        next: Arc::new(AtomicUsize::new(0)),
    };
    Ok(BoxCloneSyncService::new(crate::rpc::Propagate::new(
        tower::service_fn(move |req| {
            let channel = pool.pick();
            async move { channel.oneshot(req).await.map_err(BoxError::from) }
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

#[derive(Clone)]
struct Pool {
    channels: Arc<Vec<tonic::transport::Channel>>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    fn pick(&self) -> tonic::transport::Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }
}
