//! The one error type services return, and its one exhaustive mapping to
//! `tonic::Status` with `google.rpc` details (AIP-193): exactly one
//! `ErrorInfo`, plus `BadRequest`, `PreconditionFailure`, `ResourceInfo` or
//! `RetryInfo` where they help the caller. Internal causes are logged, never
//! sent.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Concierge error.
pub const ERROR_DOMAIN: &str = "concierge.dev";

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
    #[error("failed precondition {reason}: {description}")]
    FailedPrecondition {
        /// UPPER_SNAKE reason for `ErrorInfo`.
        reason: &'static str,
        /// The subject the precondition is about (a resource name).
        subject: String,
        description: String,
    },
    /// A concurrent request got there first; retrying is safe and will see
    /// its outcome.
    #[error("conflict {reason}: {description}")]
    Conflict {
        reason: &'static str,
        description: String,
    },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
    #[error("unavailable: {0}")]
    Unavailable(String),
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
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable("database unavailable".into())
            }
            _ => Self::Internal(err.into()),
        }
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
                (Code::InvalidArgument, err.to_string(), "INVALID_ARGUMENT")
            }
            Error::NotFound {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "not found");
                (Code::NotFound, err.to_string(), "NOT_FOUND")
            }
            Error::AlreadyExists {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "already exists");
                (Code::AlreadyExists, err.to_string(), "ALREADY_EXISTS")
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
                    "ETAG_MISMATCH",
                )
            }
            Error::RequestIdReused { request_id } => {
                details.add_bad_request_violation(
                    "request_id",
                    format!("{request_id} was already used for a request with other parameters"),
                );
                (Code::InvalidArgument, err.to_string(), "REQUEST_ID_REUSED")
            }
            Error::FailedPrecondition {
                reason,
                subject,
                description,
            } => {
                details.add_precondition_failure_violation(
                    *reason,
                    subject.clone(),
                    description.clone(),
                );
                (Code::FailedPrecondition, description.clone(), *reason)
            }
            Error::Conflict {
                reason,
                description,
            } => (Code::Aborted, description.clone(), *reason),
            Error::PermissionDenied(why) => {
                (Code::PermissionDenied, why.clone(), "PERMISSION_DENIED")
            }
            Error::Unauthenticated(why) => (Code::Unauthenticated, why.clone(), "UNAUTHENTICATED"),
            Error::RateLimited { retry_after } => {
                details.set_retry_info(Some(*retry_after));
                (Code::ResourceExhausted, err.to_string(), "RATE_LIMITED")
            }
            Error::Unavailable(why) => {
                details.set_retry_info(Some(Duration::from_secs(1)));
                (Code::Unavailable, why.clone(), "UNAVAILABLE")
            }
            Error::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                (Code::Internal, "internal error".to_string(), "INTERNAL")
            }
        };
        details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
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
