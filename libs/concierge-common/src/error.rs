//! The one error type services return, and its one exhaustive mapping to
//! `tonic::Status` with `google.rpc` details (AIP-193): exactly one
//! `ErrorInfo`, plus `BadRequest`, `PreconditionFailure`, `ResourceInfo` or
//! `RetryInfo` where they help the caller. Internal causes are logged, never
//! sent.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::peer::PeerError;

/// The `ErrorInfo.domain` of every Concierge error.
pub const ERROR_DOMAIN: &str = "concierge.dev";

/// Why a call failed, as `ErrorInfo.reason` spells it: declared once, in
/// `concierge/types/v1/error_reason.proto`, so SDKs match on the same list.
pub use concierge_proto::types::ErrorReason as Reason;

/// The `ErrorInfo.reason` of `r`: its name without the enum's prefix.
pub fn reason_name(r: Reason) -> &'static str {
    let name = r.as_str_name();
    name.strip_prefix("ERROR_REASON_").unwrap_or(name)
}

/// The reason an `ErrorInfo.reason` names, if it is one of ours.
pub fn reason_from_name(name: &str) -> Option<Reason> {
    Reason::from_str_name(&format!("ERROR_REASON_{name}")).filter(|r| *r != Reason::Unspecified)
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `account.mrc.currency_code`.
    pub field: String,
    /// What is wrong with it, for a person.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every way a Concierge request can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    #[error("{resource_type} {name} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        name: String,
    },
    #[error("etag mismatch on {name}")]
    EtagMismatch { name: String, current: String },
    #[error("request_id {request_id} was already used with different parameters")]
    RequestIdReused { request_id: String },
    #[error("failed precondition {}: {description}", reason_name(*.reason))]
    FailedPrecondition {
        /// Why, for `ErrorInfo` and `PreconditionFailure`.
        reason: Reason,
        /// The subject the precondition is about (a resource name).
        subject: String,
        description: String,
    },
    /// A concurrent request got there first; retrying is safe and will see
    /// its outcome.
    #[error("conflict {}: {description}", reason_name(*.reason))]
    Conflict { reason: Reason, description: String },
    /// A position outside what is kept (an event cursor past retention):
    /// OUT_OF_RANGE naming the field.
    #[error("{field} is out of range: {why}")]
    OutOfRange { field: String, why: String },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The method belongs to a service this deployment does not serve.
    #[error("not served: {0}")]
    NotServed(String),
    /// A peer service's refusal this service has no word of its own for:
    /// it reaches the caller with the peer's code, reason and details.
    #[error("{0}")]
    Peer(PeerError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }
    /// What a peer service's refusal `status` means for this service's
    /// caller: as `From<PeerError>` maps it, below.
    pub fn from_peer(peer: &'static str, status: &Status) -> Self {
        PeerError::from_status(peer, status).into()
    }
}

/// What a peer service's refusal means for this service's caller. The
/// peer's code and `ErrorInfo` reason are kept where the caller can act on
/// them (a missing resource, a precondition, a permission, a conflict to
/// retry, an outage to wait out, or a refusal this service has no better
/// word for); a refusal only this service could have caused (it sent a bad
/// or badly signed request) is this service's fault: INTERNAL, with the
/// peer's answer logged. Where a call knows better what a code means for
/// its caller (a referenced resource that does not exist is a bad field of
/// the caller's request), it maps that code itself before this.
impl From<PeerError> for Error {
    fn from(refused: PeerError) -> Self {
        let said = || format!("{}: {}", refused.peer(), refused.message());
        match refused.code() {
            Code::NotFound => Self::NotFound {
                resource_type: "Resource",
                name: refused
                    .details()
                    .resource_info()
                    .map(|r| r.resource_name.clone())
                    .unwrap_or_default(),
            },
            Code::PermissionDenied => Self::PermissionDenied(said()),
            Code::FailedPrecondition => Self::FailedPrecondition {
                reason: refused.reason().unwrap_or(Reason::Unspecified),
                subject: refused
                    .details()
                    .precondition_failure()
                    .and_then(|p| p.violations.first().map(|v| v.subject.clone()))
                    .unwrap_or_default(),
                description: said(),
            },
            Code::Aborted => Self::Conflict {
                reason: refused.reason().unwrap_or(Reason::TransactionConflict),
                description: said(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                tracing::warn!(peer = refused.peer(), error = %refused, "a peer service is unavailable");
                Self::Unavailable(format!("{} is unavailable; retry", refused.peer()))
            }
            Code::InvalidArgument | Code::Unauthenticated => Self::Internal(refused.into()),
            _ => Self::Peer(refused),
        }
    }
}

/// What a storage failure means for the caller. A lost connection (the
/// server restarting, a backend terminated, a dead socket) is worth a retry
/// elsewhere or later: UNAVAILABLE. A transaction that lost a race with a
/// concurrent one (serialization failure, deadlock) is worth retrying as a
/// whole: ABORTED. Everything else is a bug or a broken schema: INTERNAL.
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        let unavailable = |why: &str| {
            crate::storage::note_connection_loss();
            Self::Unavailable(format!("database unavailable: {why}; retry"))
        };
        match &err {
            sqlx::Error::PoolTimedOut => {
                Self::Unavailable("database unavailable: no connection free in time; retry".into())
            }
            sqlx::Error::PoolClosed => {
                Self::Unavailable("database unavailable: shutting down".into())
            }
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
                unavailable("connection lost")
            }
            // The wire protocol going astray is what a socket the server
            // closed mid-conversation looks like.
            sqlx::Error::Protocol(_) => unavailable("connection lost"),
            sqlx::Error::Database(db) => match db.code().as_deref().map(classify_sqlstate) {
                Some(Some(StorageFault::ConnectionLost)) => unavailable("connection lost"),
                Some(Some(StorageFault::Busy)) => {
                    Self::Unavailable("database unavailable: too busy; retry".into())
                }
                Some(Some(StorageFault::Conflict)) => Self::Conflict {
                    reason: Reason::TransactionConflict,
                    description:
                        "the change conflicted with a concurrent one and was not made; retry it"
                            .into(),
                },
                _ => Self::Internal(err.into()),
            },
            _ => Self::Internal(err.into()),
        }
    }
}

/// The storage failures a caller can do something about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// The connection is gone: UNAVAILABLE.
    ConnectionLost,
    /// The server refuses more work for now: UNAVAILABLE.
    Busy,
    /// The transaction lost a race and was rolled back: ABORTED.
    Conflict,
}

/// Classifies a PostgreSQL SQLSTATE (or a SQLite extended result code, which
/// sqlx reports as a number in the same place).
pub fn classify_sqlstate(code: &str) -> Option<StorageFault> {
    match code {
        // Class 08: connection exception; 57P01 admin shutdown, 57P02 crash
        // shutdown, 57P03 cannot connect now (starting up or shutting down).
        c if c.starts_with("08") => Some(StorageFault::ConnectionLost),
        "57P01" | "57P02" | "57P03" => Some(StorageFault::ConnectionLost),
        // Too many connections; out of memory or disk on the server.
        "53000" | "53100" | "53200" | "53300" => Some(StorageFault::Busy),
        // serialization_failure, deadlock_detected.
        "40001" | "40P01" => Some(StorageFault::Conflict),
        // SQLite: SQLITE_BUSY and its extended codes once busy_timeout ran out,
        // SQLITE_LOCKED.
        "5" | "6" | "261" | "773" => Some(StorageFault::Busy),
        // SQLITE_BUSY_SNAPSHOT: a read snapshot went stale under a writer.
        "517" => Some(StorageFault::Conflict),
        _ => None,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let mut details = ErrorDetails::new();
        let (code, message, reason) = match &err {
            Error::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                (
                    Code::InvalidArgument,
                    err.to_string(),
                    Reason::InvalidArgument,
                )
            }
            Error::NotFound {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "not found");
                (Code::NotFound, err.to_string(), Reason::NotFound)
            }
            Error::AlreadyExists {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "already exists");
                (Code::AlreadyExists, err.to_string(), Reason::AlreadyExists)
            }
            Error::EtagMismatch { name, current } => {
                details.add_precondition_failure_violation(
                    "ETAG",
                    name.clone(),
                    format!("the resource changed; its current etag is {current}: read it again"),
                );
                (
                    Code::Aborted,
                    format!("{name} was changed by someone else (etag mismatch)"),
                    Reason::EtagMismatch,
                )
            }
            Error::RequestIdReused { request_id } => {
                details.add_bad_request_violation(
                    "request_id",
                    format!("{request_id} was already used for a request with other parameters"),
                );
                (
                    Code::InvalidArgument,
                    err.to_string(),
                    Reason::RequestIdReused,
                )
            }
            Error::FailedPrecondition {
                reason,
                subject,
                description,
            } => {
                details.add_precondition_failure_violation(
                    reason_name(*reason),
                    subject.clone(),
                    description.clone(),
                );
                (Code::FailedPrecondition, description.clone(), *reason)
            }
            Error::Conflict {
                reason,
                description,
            } => (Code::Aborted, description.clone(), *reason),
            Error::OutOfRange { field, why } => {
                details.add_bad_request_violation(field.clone(), why.clone());
                (Code::OutOfRange, err.to_string(), Reason::EventsExpired)
            }
            Error::PermissionDenied(why) => (
                Code::PermissionDenied,
                why.clone(),
                Reason::PermissionDenied,
            ),
            Error::Unauthenticated(why) => {
                (Code::Unauthenticated, why.clone(), Reason::Unauthenticated)
            }
            Error::RateLimited { retry_after } => {
                details.set_retry_info(Some(*retry_after));
                (
                    Code::ResourceExhausted,
                    err.to_string(),
                    Reason::RateLimited,
                )
            }
            Error::Unavailable(why) => {
                details.set_retry_info(Some(Duration::from_secs(1)));
                (Code::Unavailable, why.clone(), Reason::Unavailable)
            }
            Error::NotServed(why) => (Code::Unimplemented, why.clone(), Reason::NotServed),
            Error::Peer(refused) => {
                details = refused.details().clone();
                (
                    refused.code(),
                    format!("{}: {}", refused.peer(), refused.message()),
                    refused.reason().unwrap_or(match refused.code() {
                        Code::AlreadyExists => Reason::AlreadyExists,
                        Code::Unimplemented => Reason::NotServed,
                        _ => Reason::Internal,
                    }),
                )
            }
            Error::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                (
                    Code::Internal,
                    "internal error".to_string(),
                    Reason::Internal,
                )
            }
        };
        details.set_error_info(
            reason_name(reason),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        Status::with_error_details(code, message, details)
    }
}

/// Collects field violations while a request is parsed, so that a caller sees
/// every bad field at once rather than one per attempt.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the violation of a parse result and returns its value if any.
    pub fn check<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(Error::InvalidArgument(vs)) => {
                self.0.extend(vs);
                None
            }
            Err(other) => {
                self.add("", other.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database error as a driver reports it, with only its SQLSTATE.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "from the server"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn code_of(err: sqlx::Error) -> Code {
        Status::from(Error::from(err)).code()
    }

    #[test]
    fn each_sqlstate_reaches_the_caller_as_the_code_that_says_what_to_do() {
        let cases = [
            // Connection exceptions (class 08) and the server going away.
            ("08000", Code::Unavailable),
            ("08003", Code::Unavailable),
            ("08006", Code::Unavailable),
            ("08001", Code::Unavailable),
            ("08004", Code::Unavailable),
            ("57P01", Code::Unavailable),
            ("57P02", Code::Unavailable),
            ("57P03", Code::Unavailable),
            ("53300", Code::Unavailable),
            // Lost a race: retry the whole transaction.
            ("40001", Code::Aborted),
            ("40P01", Code::Aborted),
            // SQLite busy past its timeout, and a stale snapshot.
            ("5", Code::Unavailable),
            ("517", Code::Aborted),
            // Bugs stay INTERNAL.
            ("42P01", Code::Internal),
            ("23502", Code::Internal),
            ("57014", Code::Internal),
        ];
        for (sqlstate, want) in cases {
            let got = code_of(sqlx::Error::Database(Box::new(Sqlstate(sqlstate))));
            assert_eq!(got, want, "SQLSTATE {sqlstate}");
        }
    }

    #[test]
    fn a_dead_socket_is_unavailable_with_a_retry_hint() {
        for err in [
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::WorkerCrashed,
            sqlx::Error::PoolTimedOut,
        ] {
            let what = err.to_string();
            let status = Status::from(Error::from(err));
            assert_eq!(status.code(), Code::Unavailable, "{what}");
            assert!(
                status.get_details_retry_info().is_some(),
                "{what}: RetryInfo tells clients when to try again"
            );
        }
        let conflict = Status::from(Error::from(sqlx::Error::Database(Box::new(Sqlstate(
            "40001",
        )))));
        assert_eq!(
            conflict.get_details_error_info().map(|i| i.reason),
            Some("TRANSACTION_CONFLICT".to_string())
        );
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;

    #[test]
    fn a_peers_refusal_keeps_its_code_and_reason() {
        let cases: Vec<(Error, Code, Option<Reason>)> = vec![
            (
                Error::FailedPrecondition {
                    reason: Reason::SiteHasInventory,
                    subject: "accounts/a/sites/s".into(),
                    description: "still has inventory".into(),
                },
                Code::FailedPrecondition,
                Some(Reason::SiteHasInventory),
            ),
            (
                Error::PermissionDenied("no".into()),
                Code::PermissionDenied,
                Some(Reason::PermissionDenied),
            ),
            (
                Error::Unavailable("down".into()),
                Code::Unavailable,
                Some(Reason::Unavailable),
            ),
            (
                Error::Conflict {
                    reason: Reason::RequestInProgress,
                    description: "busy".into(),
                },
                Code::Aborted,
                Some(Reason::RequestInProgress),
            ),
            (
                Error::NotFound {
                    resource_type: "Site",
                    name: "accounts/a/sites/s".into(),
                },
                Code::NotFound,
                Some(Reason::NotFound),
            ),
            // Refusals only the calling service could have caused.
            (
                Error::Unauthenticated("bad signature".into()),
                Code::Internal,
                Some(Reason::Internal),
            ),
            (
                Error::invalid("name", "malformed"),
                Code::Internal,
                Some(Reason::Internal),
            ),
        ];
        for (peer_error, code, reason) in cases {
            let sent = Status::from(peer_error);
            let ours = Status::from(Error::from_peer("customers", &sent));
            assert_eq!(ours.code(), code, "{sent:?}");
            let info = ours.get_error_details().error_info().cloned();
            assert_eq!(info.and_then(|i| reason_from_name(&i.reason)), reason);
        }
    }

    #[test]
    fn every_reason_has_a_name_and_back() {
        let mut seen = 0;
        for n in 1..=200 {
            let Ok(r) = Reason::try_from(n) else { continue };
            let name = reason_name(r);
            assert!(!name.starts_with("ERROR_REASON_") && !name.is_empty());
            assert_eq!(reason_from_name(name), Some(r));
            seen += 1;
        }
        assert!(seen >= 25);
        assert_eq!(reason_from_name("UNSPECIFIED"), None);
        assert_eq!(reason_from_name("NO_SUCH_REASON"), None);
    }
}
