//! What every RPC leaves behind, whichever service serves it: a server span
//! after the OpenTelemetry RPC conventions, continuing the caller's trace
//! (W3C `traceparent`); the Prometheus call metrics; and one access log line
//! when it ends. And the other half of the trace: every outgoing call carries
//! the current span as its `traceparent` (and the request id of the call it
//! is made for), so one request is one trace, and one request id, across the
//! gateway and the services.
//!
//! An RPC ends when its response body does (a stream's code comes in its
//! trailers), or when the body is dropped unfinished: the client went away.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use prost::Message as _;
use tonic::Code;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::principal::REQUEST_ID_HEADER;

/// A gRPC code as the gRPC ecosystem writes it (`OK`, `NOT_FOUND`…): the
/// values dashboards and alerts written for other gRPC servers expect.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The codes that are the server's fault, which mark a server span as an
/// error (the OpenTelemetry gRPC conventions); the others are the caller's.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

tokio::task_local! {
    /// The request id of the call being served, for the calls it makes.
    static REQUEST_ID: Option<Arc<str>>;
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, once_only(value));
        }
    }
}

/// `value` marked never to be indexed by HPACK. A value every call has a
/// different one of (a request id, a trace context) would only push out of
/// the connection's header table the values that repeat, such as the signed
/// principal, which then travel whole on every call.
pub fn once_only(mut value: http::HeaderValue) -> http::HeaderValue {
    value.set_sensitive(true);
    value
}

/// Writes the current span's trace context into `headers` (`traceparent`,
/// `tracestate`). Without trace export there is no context to write, and a
/// `traceparent` already there (a client's, passing the gateway) stays.
pub fn inject(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// The caller's trace context, from `headers`.
fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// A client (a gRPC channel, a gateway backend) whose calls carry the
/// current trace context, so the server's span joins the caller's trace.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S> Propagate<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Propagate<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let headers = request.headers_mut();
        inject(headers);
        if !headers.contains_key(REQUEST_ID_HEADER)
            && let Ok(Some(id)) = REQUEST_ID.try_with(Clone::clone)
            && let Ok(value) = http::HeaderValue::from_str(&id)
        {
            headers.insert(REQUEST_ID_HEADER, once_only(value));
        }
        self.inner.call(request)
    }
}

/// The `/package.Service/Method` paths of `services` (every service the
/// descriptors know when `None`), read from the descriptors they were
/// generated from: only these name spans and metric labels.
pub(crate) fn method_paths(services: Option<&[String]>) -> crate::Result<HashSet<String>> {
    let mut paths = HashSet::new();
    for encoded in [
        concierge_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .map_err(crate::error::Error::internal)?;
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let full = format!("{package}.{}", service.name.unwrap_or_default());
                if services.is_some_and(|s| !s.contains(&full)) {
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

/// Every method the contracts describe: what an in-process backend, which
/// has no list of its own, names spans by.
fn described_paths() -> Arc<HashSet<String>> {
    static PATHS: OnceLock<Arc<HashSet<String>>> = OnceLock::new();
    PATHS
        .get_or_init(|| Arc::new(method_paths(None).unwrap_or_default()))
        .clone()
}

/// Serves every call inside its server span and reports it when it ends.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    /// The methods named in spans and labels; any other path is "unknown",
    /// so that callers cannot create series by inventing paths.
    paths: Arc<HashSet<String>>,
    /// Whether calls count in `grpc_server_*`: a server's do; an in-process
    /// backend's are already counted by the gateway in front of it.
    metered: bool,
}

impl<S> Observe<S> {
    /// A served service (spans, metrics, access log), knowing `paths`.
    pub(crate) fn server(inner: S, paths: Arc<HashSet<String>>) -> Self {
        Self {
            inner,
            paths,
            metered: true,
        }
    }

    /// A service served in this process behind the gateway (`concierge
    /// dev`): its own span and access log, as if it were served apart.
    pub fn in_process(inner: S) -> Self {
        Self {
            inner,
            paths: described_paths(),
            metered: false,
        }
    }
}

/// The request id of a call's (or a reply's) headers.
fn request_id_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The code a response carries in `headers` (trailers-only answers and
/// trailers), if any.
fn code_of(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
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
        let name = format!("{service}/{method}");
        let span = tracing::info_span!(
            "rpc",
            otel.name = name.as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service.as_str(),
            rpc.method = method.as_str(),
            rpc.grpc.status_code = Empty,
            request_id = Empty,
        );
        // Without trace export this sets nothing; an invalid (absent)
        // parent makes the span a root.
        let _ = span.set_parent(extract(request.headers()));
        let request_id = request_id_of(request.headers());
        if let Some(id) = &request_id {
            span.record("request_id", id.as_str());
        }
        let mut finish = Finish {
            span: span.clone(),
            service,
            method,
            request_id,
            code: None,
            started: Instant::now(),
            metered: self.metered,
        };
        let call = tracing::Instrument::instrument(
            REQUEST_ID.scope(
                finish.request_id.as_deref().map(Arc::from),
                self.inner.call(request),
            ),
            span,
        );
        Box::pin(async move {
            let response = match call.await {
                Ok(response) => response,
                Err(e) => {
                    finish.code = Some(Code::Unknown);
                    drop(finish);
                    return Err(e);
                }
            };
            // The gateway makes up the request id of a call that came
            // without one, and says it in the reply.
            if finish.request_id.is_none() {
                finish.request_id = request_id_of(response.headers());
                if let Some(id) = &finish.request_id {
                    finish.span.record("request_id", id.as_str());
                }
            }
            finish.code = code_of(response.headers());
            Ok(response.map(|body| {
                tonic::body::Body::new(ObservedBody {
                    inner: body,
                    finish: Some(finish),
                })
            }))
        })
    }
}

/// The health service, whose calls (load balancers' and Kubernetes'
/// probes) are logged at `debug`.
const HEALTH: &str = "grpc.health.v1.Health";

/// Reports an RPC once, when dropped: its metrics, its span's code, its
/// access log line.
struct Finish {
    span: tracing::Span,
    service: String,
    method: String,
    request_id: Option<String>,
    code: Option<Code>,
    started: Instant,
    metered: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        // No code by the end: the caller went away before the answer did.
        let code = self.code.unwrap_or(Code::Cancelled);
        let name = code_name(code);
        let elapsed = self.started.elapsed();
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        if self.metered {
            metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => self.service.clone(),
                "grpc_method" => self.method.clone(),
                "grpc_code" => name,
            )
            .increment(1);
            metrics::histogram!(
                "grpc_server_handling_seconds",
                "grpc_service" => self.service.clone(),
                "grpc_method" => self.method.clone(),
            )
            .record(elapsed.as_secs_f64());
        }
        let trace_id = {
            let cx = self.span.context();
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid().then(|| sc.trace_id().to_string())
        };
        let (service, method) = (self.service.as_str(), self.method.as_str());
        let request_id = self.request_id.as_deref().unwrap_or_default();
        let trace_id = trace_id.as_deref().unwrap_or_default();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        // Probes ask every few seconds; a line each would bury the calls.
        if service == HEALTH {
            tracing::debug!(target: "concierge::access", service, method, code = name, latency_ms, request_id, trace_id, "rpc finished");
        } else {
            tracing::info!(target: "concierge::access", service, method, code = name, latency_ms, request_id, trace_id, "rpc finished");
        }
    }
}

/// A response body that reads the code from the trailers and finishes the
/// RPC when it ends or is dropped.
struct ObservedBody {
    inner: tonic::body::Body,
    finish: Option<Finish>,
}

type Data = <tonic::body::Body as http_body::Body>::Data;

impl http_body::Body for ObservedBody {
    type Data = Data;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Data>, Self::Error>>> {
        let this = &mut *self;
        // A streaming reply is produced as it is polled: inside the span.
        let _in_span = this.finish.as_ref().map(|f| f.span.enter());
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        drop(_in_span);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(finish)) = (frame.trailers_ref(), &mut this.finish)
                    && let Some(code) = code_of(trailers)
                {
                    finish.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(finish) = &mut this.finish {
                    finish.code = Some(status.code());
                }
                this.finish = None;
            }
            Poll::Ready(None) => this.finish = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }

    #[test]
    fn an_in_process_backend_names_every_described_method() {
        let all = described_paths();
        assert!(all.contains("/concierge.cases.v1.CasesService/GetCase"));
        assert!(all.contains("/concierge.customers.v1.CustomersService/GetAccount"));
        assert!(!all.contains("/concierge.customers.v1.CustomersService/Nope"));
    }
}
