//! How one service calls another inside the cluster: as itself, with its
//! principal signed for that one peer and the caller's request id passed on;
//! an outage worth waiting out is retried with jittered exponential backoff,
//! bounded in attempts and in time; and a refusal reaches the code that made
//! the call as a [`PeerError`] that still says which peer refused, with what
//! code and `ErrorInfo` reason, so that code can tell a resource that does
//! not exist from a permission it lacks from a peer that is down.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Reason, reason_from_name};
use crate::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, REQUEST_ID_HEADER};

/// How long and how often a call to a peer is tried before its outage is
/// the caller's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Calls at most, the first included.
    pub attempts: u32,
    /// The wait before the first retry; each later wait doubles, up to
    /// `max_delay`, and a random part of up to as much again is added so
    /// that replicas which lost the same peer do not come back in step.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The whole call, every attempt and wait included: past it the peer
    /// counts as unavailable, whatever attempts are left.
    pub deadline: Duration,
}

impl Default for Retry {
    /// Short enough that a caller of this service is answered within its
    /// own deadline, long enough to ride out a peer's replica restarting.
    fn default() -> Self {
        Self {
            attempts: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Whether a call that `code` refused is worth making again. A read
    /// changes nothing, so a peer that was too busy or lost a race may be
    /// asked again; a write only when the peer never took it in. A refusal
    /// of the request itself (its arguments, a missing resource, a
    /// permission, a precondition) would only be refused again.
    pub fn retries(code: Code, idempotent: bool) -> bool {
        match code {
            Code::Unavailable => true,
            Code::ResourceExhausted | Code::Aborted => idempotent,
            _ => false,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_total_delay(Some(self.deadline))
    }
}

/// A peer service's refusal, as the peer sent it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{peer} answered {code:?} ({reason}) after {attempts} attempt(s): {message}")]
pub struct PeerError {
    peer: &'static str,
    code: Code,
    /// `ErrorInfo.reason`, empty when the peer sent none.
    reason: String,
    message: String,
    // Boxed: every `Result` of this crate carries a `PeerError` inline.
    details: Box<ErrorDetails>,
    attempts: u32,
}

/// A peer's NOT_FOUND for `name` as INVALID_ARGUMENT on the request field
/// that named it (a case, a contact that does not exist); any other refusal
/// as it is.
pub fn missing_is_invalid(field: &str, name: &str) -> impl Fn(PeerError) -> crate::error::Error {
    let (field, name) = (field.to_string(), name.to_string());
    move |refused| match refused.code() {
        Code::NotFound => crate::error::Error::invalid(&field, format!("{name} does not exist")),
        _ => refused.into(),
    }
}

impl PeerError {
    /// The refusal `status` from `peer` (how the peer is named to people,
    /// e.g. "the customers service").
    pub fn from_status(peer: &'static str, status: &Status) -> Self {
        let details = status.get_error_details();
        Self {
            peer,
            code: status.code(),
            reason: details
                .error_info()
                .map(|info| info.reason.clone())
                .unwrap_or_default(),
            message: status.message().to_string(),
            details: Box::new(details),
            attempts: 1,
        }
    }

    /// How the peer is named to people.
    pub fn peer(&self) -> &'static str {
        self.peer
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The peer's `ErrorInfo.reason`, when it is one of ours.
    pub fn reason(&self) -> Option<Reason> {
        reason_from_name(&self.reason)
    }

    /// The peer's `ErrorInfo.reason` as it spelled it; empty without one.
    pub fn reason_name(&self) -> &str {
        &self.reason
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `google.rpc` details the peer sent with its refusal.
    pub fn details(&self) -> &ErrorDetails {
        &self.details
    }

    /// How many times the call was made before this was its answer.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// A client of one peer service, calling it as this service itself.
#[derive(Clone)]
pub struct Peer<C> {
    client: C,
    principals: PrincipalCodec,
    caller: Principal,
    audience: &'static str,
    name: &'static str,
    retry: Retry,
}

impl<C> std::fmt::Debug for Peer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("audience", &self.audience)
            .field("caller", &self.caller.subject)
            .field("retry", &self.retry)
            .finish()
    }
}

impl<C: Clone> Peer<C> {
    /// `client` (a generated client over the peer's channel) reaches
    /// `audience`, the peer's fully-qualified gRPC service name, which every
    /// call's principal is signed for; `component` is this service, whose
    /// system principal the calls are made as.
    pub fn new(
        client: C,
        principals: &PrincipalCodec,
        audience: &'static str,
        component: &str,
    ) -> Self {
        Self {
            client,
            principals: principals.clone(),
            caller: Principal::system(component),
            audience,
            name: audience,
            retry: Retry::default(),
        }
    }

    /// How the peer is named in what its refusals become (its service name
    /// until told otherwise).
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Calls a method that changes nothing (a get, a list), on behalf of
    /// the request `request_id` (empty for work of the service's own).
    pub async fn read<M, R, F, Fut>(
        &self,
        request_id: &str,
        message: M,
        method: F,
    ) -> Result<R, PeerError>
    where
        M: Clone,
        F: Fn(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.call(true, request_id, message, method).await
    }

    /// Calls a method that changes something: retried only when the peer
    /// never took it in.
    pub async fn write<M, R, F, Fut>(
        &self,
        request_id: &str,
        message: M,
        method: F,
    ) -> Result<R, PeerError>
    where
        M: Clone,
        F: Fn(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.call(false, request_id, message, method).await
    }

    async fn call<M, R, F, Fut>(
        &self,
        idempotent: bool,
        request_id: &str,
        message: M,
        method: F,
    ) -> Result<R, PeerError>
    where
        M: Clone,
        F: Fn(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let refused = |status: &Status, attempts: u32| PeerError {
            attempts,
            ..PeerError::from_status(self.name, status)
        };
        // Signed once for every attempt: the whole call ends well within a
        // signed principal's lifetime.
        let principal = MetadataValue::try_from(
            self.principals.encode(&self.caller, self.audience),
        )
        .map_err(|e| {
            refused(
                &Status::internal(format!("the principal header cannot be sent: {e}")),
                0,
            )
        })?;
        // Only for following a request through the logs: one that cannot
        // be sent as metadata is left off rather than failing the call.
        let request_id = MetadataValue::try_from(request_id)
            .ok()
            .filter(|v| !v.is_empty());
        let deadline = tokio::time::Instant::now() + self.retry.deadline;
        let attempts = AtomicU32::new(0);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            let mut request = tonic::Request::new(message.clone());
            // The peer gives up when this call's caller would have.
            request.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let metadata = request.metadata_mut();
            metadata.insert(PRINCIPAL_HEADER, principal.clone());
            if let Some(id) = &request_id {
                metadata.insert(REQUEST_ID_HEADER, id.clone());
            }
            method(self.client.clone(), request)
        };
        let retried = attempt
            .retry(self.retry.backoff())
            .when(|status: &Status| Retry::retries(status.code(), idempotent))
            .notify(|status: &Status, after: Duration| {
                tracing::debug!(
                    peer = self.name,
                    code = ?status.code(),
                    ?after,
                    "retrying a call the peer could not take"
                );
            });
        let out_of_time =
            || Status::deadline_exceeded(format!("no answer within {:?}", self.retry.deadline));
        match tokio::time::timeout_at(deadline, retried).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            // The attempt's own timeout, which tonic reports as CANCELLED,
            // is this deadline.
            Ok(Err(status))
                if status.code() == Code::Cancelled && tokio::time::Instant::now() >= deadline =>
            {
                Err(refused(&out_of_time(), attempts.load(Ordering::Relaxed)))
            }
            Ok(Err(status)) => Err(refused(&status, attempts.load(Ordering::Relaxed))),
            Err(_) => Err(refused(&out_of_time(), attempts.load(Ordering::Relaxed))),
        }
    }
}
