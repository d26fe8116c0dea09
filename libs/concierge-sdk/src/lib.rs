//! The Rust client of Concierge. Talk to a gateway with an API key:
//!
//! ```no_run
//! # async fn run() -> Result<(), concierge_sdk::Error> {
//! let client = concierge_sdk::Client::builder("http://127.0.0.1:50050")
//!     .api_key("ck_…")
//!     .build()?;
//! let accounts = client
//!     .customers()
//!     .list_accounts(concierge_sdk::proto::customers::ListAccountsRequest::default())
//!     .await
//!     .map_err(concierge_sdk::Error::from)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

pub use concierge_proto as proto;
use concierge_proto::concierge::cases::v1::cases_service_client::CasesServiceClient;
use concierge_proto::concierge::testing::v1::test_clock_service_client::TestClockServiceClient;
use concierge_proto::customers::customers_service_client::CustomersServiceClient;

/// A failed call, with the server's `google.rpc` details decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid gateway address {0:?}: {1}")]
    Address(String, String),
    #[error("invalid credentials: {0}")]
    Credentials(String),
    #[error("{}", describe(.0))]
    Status(#[from] tonic::Status),
}

/// A person-readable account of a failed call: the code, the message, and
/// every bad field or failed precondition the server named.
pub fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            out.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    if let Some(pre) = details.precondition_failure() {
        for v in &pre.violations {
            out.push_str(&format!(
                "\n  {} {}: {}",
                v.r#type, v.subject, v.description
            ));
        }
    }
    if let Some(retry) = details.retry_info()
        && let Some(delay) = retry.retry_delay
    {
        out.push_str(&format!("\n  retry after {delay:?}"));
    }
    out
}

/// Adds the caller's credentials to every call.
#[derive(Clone)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Credentials>;

/// Builds a [`Client`].
pub struct Builder {
    url: String,
    token: Option<String>,
    timeout: Duration,
}

impl Builder {
    /// An API key minted with `concierge keys create`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.token = Some(key.into());
        self
    }

    /// An OIDC access token from the company's identity provider.
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        self.api_key(token)
    }

    /// Deadline of each call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects lazily: the first call opens the connection.
    pub fn build(self) -> Result<Client, Error> {
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| Error::Address(self.url.clone(), e.to_string()))?
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let credentials = match self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|e| Error::Credentials(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Client {
            channel: endpoint.connect_lazy(),
            credentials: Credentials(credentials),
        })
    }
}

/// A connection to a Concierge gateway.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    credentials: Credentials,
}

impl Client {
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            token: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Accounts, contacts, sites, inventory, interactions, follow-ups, staff.
    pub fn customers(&self) -> CustomersServiceClient<Authed> {
        CustomersServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            self.credentials.clone(),
        ))
    }

    /// Cases, calendars and business time, hand-off codes.
    pub fn cases(&self) -> CasesServiceClient<Authed> {
        CasesServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            self.credentials.clone(),
        ))
    }

    /// The controllable clock of `concierge dev --test-clock` (admins only).
    pub fn test_clock(&self) -> TestClockServiceClient<Authed> {
        TestClockServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            self.credentials.clone(),
        ))
    }

    /// The raw channel, for clients of services this SDK has no shortcut for.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}
