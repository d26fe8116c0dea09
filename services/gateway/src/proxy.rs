//! The forwarding path: authenticate, rate-limit, stamp the verified
//! principal, request id and deadline onto the call, and hand the untouched
//! gRPC frames to the backend. Messages are never decoded here, which keeps
//! the hop cheap and lets a service add methods without a gateway release.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::error::Error;
use concierge_common::principal::{
    PRINCIPAL_HEADER, PRINCIPAL_LIFETIME, Principal, PrincipalCodec, REQUEST_ID_HEADER,
};
use concierge_common::rpc::once_only;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderValue;
use tonic::Status;
use tower::ServiceExt;

use crate::auth::Authenticator;

pub use concierge_common::channel::{Backend, BoxError, local, remote};

/// Limits and deadlines of the forwarding path.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Sustained calls per second per principal. The default (2,500, burst
    /// 5,000) is what the README's capacity reasoning arrives at: a little
    /// over half of what one replica serves, so one runaway integration
    /// cannot take a deployment of two replicas.
    pub requests_per_second: u32,
    /// Calls a principal may make at once above the sustained rate.
    pub burst: u32,
    /// Deadline given to calls that come without one.
    #[serde(with = "concierge_common::config::secs")]
    pub default_deadline: Duration,
    /// Longest deadline a caller may ask for.
    #[serde(with = "concierge_common::config::secs")]
    pub max_deadline: Duration,
    /// Sustained failed authentications (and key lookups the cache cannot
    /// answer) per second per peer address.
    pub failed_authentications_per_second: u32,
    /// How many of them a peer may make at once.
    pub failed_authentications_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: 2_500,
            burst: 5_000,
            default_deadline: Duration::from_secs(30),
            max_deadline: Duration::from_secs(300),
            failed_authentications_per_second: 5,
            failed_authentications_burst: 50,
        }
    }
}

impl Limits {
    pub(crate) fn failure_allowance(&self) -> crate::auth::FailureAllowance {
        crate::auth::FailureAllowance {
            per_second: self.failed_authentications_per_second,
            burst: self.failed_authentications_burst,
        }
    }
}

/// How long a signed principal header is reused for calls of the same
/// principal to the same service. It is good for [`PRINCIPAL_LIFETIME`]
/// from signing, so a reused one still has most of its life left.
pub const SIGNED_REUSE: Duration = Duration::from_secs(60);
const _: () = assert!(SIGNED_REUSE.as_secs() * 2 < PRINCIPAL_LIFETIME.as_secs());

/// Signs the principal header for a service, reusing a header it signed for
/// the same principal and service within [`SIGNED_REUSE`]: otherwise every
/// call pays an HMAC and a protobuf encoding. Keyed by the whole principal,
/// so a key whose role or account changed gets a header that says so.
pub(crate) struct Signer {
    codec: PrincipalCodec,
    reused: moka::sync::Cache<(Principal, &'static str), HeaderValue>,
}

impl Signer {
    pub fn new(codec: PrincipalCodec) -> Self {
        Self {
            codec,
            reused: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SIGNED_REUSE)
                .build(),
        }
    }

    /// `principal`'s header for `service`.
    pub fn header(&self, principal: Principal, service: &'static str) -> HeaderValue {
        let key = (principal, service);
        if let Some(header) = self.reused.get(&key) {
            return header;
        }
        let header = HeaderValue::from_str(&self.codec.encode(&key.0, service))
            .expect("base64 is a valid header value");
        self.reused.insert(key, header.clone());
        header
    }
}

pub(crate) struct Shared {
    pub auth: Authenticator,
    pub signer: Signer,
    pub limiter: DefaultKeyedRateLimiter<String>,
    pub limits: Limits,
}

impl Shared {
    pub fn new(
        auth: Authenticator,
        principals: PrincipalCodec,
        limits: Limits,
    ) -> Result<Self, Error> {
        let rate = NonZeroU32::new(limits.requests_per_second)
            .ok_or_else(|| Error::invalid("limits.requests_per_second", "must be positive"))?;
        let burst = NonZeroU32::new(limits.burst.max(limits.requests_per_second))
            .ok_or_else(|| Error::invalid("limits.burst", "must be positive"))?;
        Ok(Self {
            auth,
            signer: Signer::new(principals),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            limits,
        })
    }
}

fn status_response(status: Status, request_id: &str) -> http::Response<tonic::body::Body> {
    let mut response = status.into_http::<tonic::body::Body>();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// `grpc-timeout` (e.g. "500m", "30S") as a duration.
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The address a call came from, when it came over TCP.
fn peer(parts: &http::request::Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.ip())
}

/// The request id a call brought, or a new one.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The methods that need no login: a survey's response link carries its
/// token, the only credential they accept (`concierge.csat.v1.CsatService`).
pub const OPEN_METHODS: &[&str] = &[
    "/concierge.csat.v1.CsatService/GetSurveyInvitation",
    "/concierge.csat.v1.CsatService/SubmitSurveyResponse",
];

/// Answers a call to a method no backend serves: UNIMPLEMENTED with what is
/// missing, once the caller has authenticated (so the gateway tells nothing
/// to a caller it does not know). `described` holds the services the
/// contracts describe, served here or not.
pub(crate) async fn unserved(
    shared: Arc<Shared>,
    described: Arc<std::collections::HashSet<String>>,
    request: http::Request<axum::body::Body>,
) -> http::Response<tonic::body::Body> {
    let (parts, _body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    if let Err(e) = shared.auth.authenticate(&parts.headers, peer(&parts)).await {
        metrics::counter!("concierge_gateway_calls_total", "service" => "unknown", "outcome" => "unauthenticated").increment(1);
        return status_response(e.into(), &request_id);
    }
    metrics::counter!("concierge_gateway_calls_total", "service" => "unknown", "outcome" => "unimplemented").increment(1);
    let path = parts.uri.path();
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(service, _)| service)
        .unwrap_or_default();
    let message = if described.contains(service) {
        format!("{service} is not served by this deployment yet")
    } else {
        let shown: String = path.chars().take(200).collect();
        format!("{shown} is not a Concierge method")
    };
    status_response(Error::NotServed(message).into(), &request_id)
}

/// Forwards one call to `backend`.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    service: &'static str,
    backend: Backend,
    request: http::Request<axum::body::Body>,
) -> http::Response<tonic::body::Body> {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    // The server span this call runs in carries the id it is known by.
    tracing::Span::current().record("request_id", request_id.as_str());

    let open = OPEN_METHODS.contains(&parts.uri.path());
    let principal = if open {
        None
    } else {
        match shared.auth.authenticate(&parts.headers, peer(&parts)).await {
            Ok(p) => Some(p),
            Err(e) => {
                metrics::counter!("concierge_gateway_calls_total", "service" => service, "outcome" => "unauthenticated").increment(1);
                return status_response(e.into(), &request_id);
            }
        }
    };
    // A link's caller has no principal: it is held to the rate of one by
    // its address.
    let limited = match &principal {
        Some(p) => p.subject.clone(),
        None => format!(
            "link-peer/{}",
            peer(&parts).map(|ip| ip.to_string()).unwrap_or_default()
        ),
    };
    if let Err(not_until) = shared.limiter.check_key(&limited) {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        metrics::counter!("concierge_gateway_calls_total", "service" => service, "outcome" => "rate_limited").increment(1);
        return status_response(
            Error::RateLimited {
                retry_after: wait.max(Duration::from_millis(1)),
            }
            .into(),
            &request_id,
        );
    }

    // Credentials stop here; what the service gets is the verified principal.
    let headers = &mut parts.headers;
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-api-key");
    match principal {
        Some(principal) => {
            headers.insert(PRINCIPAL_HEADER, shared.signer.header(principal, service));
        }
        // Nothing a caller sends passes for a principal.
        None => {
            headers.remove(PRINCIPAL_HEADER);
        }
    }
    headers.insert(
        REQUEST_ID_HEADER,
        once_only(HeaderValue::from_str(&request_id).expect("checked above")),
    );
    let asked = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let deadline = asked
        .unwrap_or(shared.limits.default_deadline)
        .min(shared.limits.max_deadline);
    headers.insert(
        "grpc-timeout",
        HeaderValue::from_str(&format!("{}m", deadline.as_millis().max(1)))
            .expect("digits are a valid header value"),
    );

    let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
    let outcome = tokio::time::timeout(deadline, backend.oneshot(request)).await;
    let response = match outcome {
        Ok(Ok(mut response)) => {
            response.headers_mut().insert(
                REQUEST_ID_HEADER,
                once_only(HeaderValue::from_str(&request_id).expect("checked above")),
            );
            metrics::counter!("concierge_gateway_calls_total", "service" => service, "outcome" => "forwarded").increment(1);
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(service, error = %e, %request_id, "backend unreachable");
            metrics::counter!("concierge_gateway_calls_total", "service" => service, "outcome" => "unavailable").increment(1);
            status_response(
                Error::Unavailable(format!("{service} is unavailable")).into(),
                &request_id,
            )
        }
        Err(_) => {
            metrics::counter!("concierge_gateway_calls_total", "service" => service, "outcome" => "deadline_exceeded").increment(1);
            status_response(
                Status::deadline_exceeded("the call ran past its deadline"),
                &request_id,
            )
        }
    };
    metrics::histogram!("concierge_gateway_forward_seconds", "service" => service)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_methods_are_methods_of_the_contracts() {
        use prost::Message;
        let set =
            prost_types::FileDescriptorSet::decode(concierge_proto::FILE_DESCRIPTOR_SET).unwrap();
        let described: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
                })
            })
            .collect();
        for open in OPEN_METHODS {
            assert!(described.iter().any(|d| d == open), "{open}");
        }
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn a_signed_header_is_reused_only_for_the_same_principal_and_service() {
        let codec = PrincipalCodec::new("a shared secret of some length".to_string().into());
        let signer = Signer::new(codec.clone());
        let cases = "concierge.cases.v1.CasesService";
        let customers = "concierge.customers.v1.CustomersService";
        let agent = Principal {
            subject: "apiKeys/k1".into(),
            role: concierge_common::principal::Role::Agent,
            account: None,
            staff_member: None,
            display_name: "Integration".into(),
        };
        let first = signer.header(agent.clone(), cases);
        assert_eq!(signer.header(agent.clone(), cases), first, "reused");
        let decoded = codec.decode(first.to_str().unwrap(), cases).unwrap();
        assert_eq!(decoded, agent);

        // Another service gets a header of its own, no use to the first.
        let other = signer.header(agent.clone(), customers);
        assert_ne!(other, first);
        assert!(codec.decode(other.to_str().unwrap(), cases).is_err());
        assert_eq!(
            codec.decode(other.to_str().unwrap(), customers).unwrap(),
            agent
        );

        // The same key with another role is another principal.
        let promoted = Principal {
            role: concierge_common::principal::Role::Manager,
            ..agent.clone()
        };
        let header = signer.header(promoted.clone(), cases);
        assert_ne!(header, first);
        assert_eq!(
            codec.decode(header.to_str().unwrap(), cases).unwrap(),
            promoted
        );
    }
}
