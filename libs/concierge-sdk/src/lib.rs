//! The Rust client of Concierge. Talk to a gateway with an API key:
//!
//! Credentials travel over TLS (`https://`, checked against the system's
//! roots or a CA you give) or over plain `http://` to this machine only:
//! plain text to another host needs [`Builder::insecure_plaintext`].
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

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt;

pub use concierge_proto as proto;
use concierge_proto::concierge::cases::v1::cases_service_client::CasesServiceClient;
use concierge_proto::concierge::testing::v1::test_clock_service_client::TestClockServiceClient;
use concierge_proto::customers::customers_service_client::CustomersServiceClient;
use concierge_proto::disputes::disputes_service_client::DisputesServiceClient;

/// A failed call, with the server's `google.rpc` details decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid gateway address {0:?}: {1}")]
    Address(String, String),
    #[error("invalid credentials: {0}")]
    Credentials(String),
    /// Credentials would go in clear to another machine.
    #[error(
        "refusing to send credentials in clear to {host} over plain http://: use https://{authority} (TLS), \
or, only where the network itself is protected (e.g. a service mesh with mutual TLS), opt in to plain text \
explicitly (the CLI's --insecure-plaintext or CONCIERGE_INSECURE_PLAINTEXT=true; Builder::insecure_plaintext in the SDK)"
    )]
    Plaintext { host: String, authority: String },
    #[error("CA certificate file {path}: {1}", path = .0.display())]
    CaFile(PathBuf, String),
    #[error("TLS set-up for {0}: {1}")]
    Tls(String, String),
    #[error("{}", describe(.0))]
    Status(#[from] tonic::Status),
}

/// A person-readable account of a failed call: the code, the message, and
/// every bad field or failed precondition the server named; for a call that
/// never reached the server, the transport's own causes (refused, TLS
/// certificate not trusted, …), which tonic keeps out of the message.
pub fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(&format!(": {text}"));
        }
        cause = c.source();
    }
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

/// Whether `host` (as in a URI, IPv6 in brackets) names this machine:
/// a loopback address or `localhost` (RFC 6761 keeps it on loopback).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// The gateway URL to connect to: `http://` or `https://` as given, and a
/// bare `host:port` on this machine read as `http://` (what `concierge dev`
/// prints, without its scheme).
fn gateway_uri(url: &str) -> Result<(tonic::codegen::http::Uri, String), Error> {
    let bad = |why: String| Error::Address(url.to_string(), why);
    let full = if url.contains("://") {
        url.to_string()
    } else {
        let guess: tonic::codegen::http::Uri = format!("http://{url}")
            .parse()
            .map_err(|e| bad(format!("{e}; write it as https://host:port")))?;
        let host = guess.host().unwrap_or_default();
        if !is_loopback(host) {
            return Err(bad(format!(
                "no scheme: write https://{url} (TLS), or http://{url} with --insecure-plaintext if the network is protected"
            )));
        }
        format!("http://{url}")
    };
    let uri: tonic::codegen::http::Uri = full.parse().map_err(|e| bad(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("the scheme must be http:// or https://".into())),
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?
        .to_string();
    Ok((uri, host))
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
    ca: Option<CaSource>,
    insecure_plaintext: bool,
}

enum CaSource {
    File(PathBuf),
    Pem(Vec<u8>),
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

    /// Trust the CA certificates (PEM) in this file for `https://` instead
    /// of the system's roots: a company CA, or a test one. Ignored for
    /// `http://`, where there is no certificate to check.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca = Some(CaSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Like [`Builder::ca_file`], with the PEM in hand.
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(CaSource::Pem(pem.into()));
        self
    }

    /// Allow credentials over plain `http://` to another machine. Anyone on
    /// the path can read them then: only for networks that are protected
    /// some other way (a service mesh with mutual TLS).
    pub fn insecure_plaintext(mut self, allow: bool) -> Self {
        self.insecure_plaintext = allow;
        self
    }

    /// Connects lazily: the first call opens the connection. Everything
    /// that can be refused (the address, plain text to another host, the CA
    /// file) is refused here, before any byte is sent.
    pub fn build(self) -> Result<Client, Error> {
        let (uri, host) = gateway_uri(&self.url)?;
        let mut endpoint = Endpoint::from(uri.clone())
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if uri.scheme_str() == Some("https") {
            let tls = match &self.ca {
                Some(ca) => {
                    let pem = match ca {
                        CaSource::File(path) => std::fs::read(path)
                            .map_err(|e| Error::CaFile(path.clone(), e.to_string()))?,
                        CaSource::Pem(pem) => pem.clone(),
                    };
                    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                        let path = match ca {
                            CaSource::File(p) => p.clone(),
                            CaSource::Pem(_) => PathBuf::from("(PEM given)"),
                        };
                        return Err(Error::CaFile(
                            path,
                            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                        ));
                    }
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Error::Tls(self.url.clone(), e.to_string()))?;
        } else if self.token.is_some() && !self.insecure_plaintext && !is_loopback(&host) {
            return Err(Error::Plaintext {
                authority: uri
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| host.clone()),
                host,
            });
        }
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
            ca: None,
            insecure_plaintext: false,
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

    /// Billing disputes: claims, their credits with the working, approvals,
    /// the client's confirmation.
    pub fn disputes(&self) -> DisputesServiceClient<Authed> {
        DisputesServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            self.credentials.clone(),
        ))
    }

    /// CSAT: survey templates and triggers, surveys and their answers. A
    /// response link's methods (`get_survey_invitation`,
    /// `submit_survey_response`) need no API key: the token is theirs.
    pub fn csat(&self) -> concierge_proto::csat::csat_service_client::CsatServiceClient<Authed> {
        concierge_proto::csat::csat_service_client::CsatServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            self.credentials.clone(),
        ))
    }

    /// The gateway's own service: who the caller is, the portfolio review.
    pub fn gateway(
        &self,
    ) -> concierge_proto::concierge::gateway::v1::gateway_service_client::GatewayServiceClient<Authed>
    {
        concierge_proto::concierge::gateway::v1::gateway_service_client::GatewayServiceClient::new(
            InterceptedService::new(self.channel.clone(), self.credentials.clone()),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_this_machine_only() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "localhost",
            "LOCALHOST.",
            "a.localhost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "192.0.2.1",
            "[2001:db8::1]",
            "example.com",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn credentials_in_clear_to_another_host_are_refused_before_connecting() {
        let refused = Client::builder("http://192.0.2.1:50050")
            .api_key("ck_x")
            .build()
            .err()
            .expect("refused");
        assert!(matches!(refused, Error::Plaintext { .. }), "{refused}");
        let text = refused.to_string();
        assert!(text.contains("https://192.0.2.1:50050"), "{text}");
        assert!(text.contains("--insecure-plaintext"), "{text}");
    }

    #[test]
    fn a_bare_address_of_another_host_says_what_to_write() {
        let err = Client::builder("192.0.2.1:50050")
            .build()
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(text.contains("write https://192.0.2.1:50050"), "{text}");
    }

    #[test]
    fn only_http_and_https() {
        let err = Client::builder("ftp://127.0.0.1:50050")
            .build()
            .err()
            .expect("refused");
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }

    #[tokio::test]
    async fn loopback_and_explicit_opt_in_build() {
        for url in ["127.0.0.1:50050", "localhost:50050", "http://[::1]:50050"] {
            Client::builder(url).api_key("ck_x").build().expect(url);
        }
        Client::builder("http://192.0.2.1:50050")
            .api_key("ck_x")
            .insecure_plaintext(true)
            .build()
            .expect("opted in");
        // No credentials, nothing to leak.
        Client::builder("http://192.0.2.1:50050")
            .build()
            .expect("no key");
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused() {
        let err = Client::builder("https://localhost:1")
            .ca_certificate_pem(b"not a certificate".to_vec())
            .build()
            .err()
            .expect("refused");
        assert!(matches!(err, Error::CaFile(..)), "{err}");
    }
}
