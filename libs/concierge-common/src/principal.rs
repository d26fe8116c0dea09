//! Who is calling. The gateway authenticates the caller and passes the
//! verified principal to the services in a header signed with the internal
//! secret; a service accepts no principal it cannot verify, so a caller that
//! reaches a service directly cannot claim to be someone else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use prost::Message;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::error::{Error, Result};
use concierge_proto::types;

/// Metadata key carrying the signed principal from the gateway.
pub const PRINCIPAL_HEADER: &str = "x-concierge-principal";
/// Metadata key carrying the request id the gateway assigned or accepted.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A role, as the services reason about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    AccountManager,
    Manager,
    Admin,
    Client,
}

impl Role {
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Client)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::AccountManager => "account_manager",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "agent" => Role::Agent,
            "account_manager" | "account-manager" => Role::AccountManager,
            "manager" => Role::Manager,
            "admin" => Role::Admin,
            "client" => Role::Client,
            _ => return None,
        })
    }

    fn to_proto(self) -> types::Role {
        match self {
            Role::Agent => types::Role::Agent,
            Role::AccountManager => types::Role::AccountManager,
            Role::Manager => types::Role::Manager,
            Role::Admin => types::Role::Admin,
            Role::Client => types::Role::Client,
        }
    }

    fn from_proto(role: types::Role) -> Option<Self> {
        Some(match role {
            types::Role::Unspecified => return None,
            types::Role::Agent => Role::Agent,
            types::Role::AccountManager => Role::AccountManager,
            types::Role::Manager => Role::Manager,
            types::Role::Admin => Role::Admin,
            types::Role::Client => Role::Client,
        })
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// "apiKeys/{key}", an OIDC subject, or "system/{component}".
    pub subject: String,
    pub role: Role,
    /// For clients: the one account, "accounts/{account}".
    pub account: Option<String>,
    /// For staff: "staff/{staff_member}".
    pub staff_member: Option<String>,
    pub display_name: String,
}

impl Principal {
    /// The principal background work (timers, rules, relays) acts as.
    pub fn system(component: &str) -> Self {
        Self {
            subject: format!("system/{component}"),
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: component.to_string(),
        }
    }

    pub fn to_proto(&self) -> types::Principal {
        types::Principal {
            subject: self.subject.clone(),
            role: self.role.to_proto() as i32,
            account: self.account.clone().unwrap_or_default(),
            staff_member: self.staff_member.clone().unwrap_or_default(),
            display_name: self.display_name.clone(),
        }
    }

    pub fn from_proto(p: types::Principal) -> Result<Self> {
        let role = types::Role::try_from(p.role)
            .ok()
            .and_then(Role::from_proto)
            .ok_or_else(|| Error::Unauthenticated("principal has no role".into()))?;
        if role == Role::Client && p.account.is_empty() {
            return Err(Error::Unauthenticated(
                "a client principal must be scoped to an account".into(),
            ));
        }
        Ok(Self {
            subject: p.subject,
            role,
            account: (!p.account.is_empty()).then_some(p.account),
            staff_member: (!p.staff_member.is_empty()).then_some(p.staff_member),
            display_name: p.display_name,
        })
    }
}

/// Signs and verifies the principal header with the secret shared by the
/// gateway and the services.
#[derive(Clone)]
pub struct PrincipalCodec {
    key: SecretString,
}

impl std::fmt::Debug for PrincipalCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrincipalCodec(..)")
    }
}

impl PrincipalCodec {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length")
    }

    pub fn encode(&self, principal: &Principal) -> String {
        let body = principal.to_proto().encode_to_vec();
        let mut mac = self.mac();
        mac.update(&body);
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    pub fn decode(&self, header: &str) -> Result<Principal> {
        let bad = || Error::Unauthenticated("the principal header is not valid".into());
        let (body, sig) = header.split_once('.').ok_or_else(bad)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        let mut mac = self.mac();
        mac.update(&body);
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let proto = types::Principal::decode(body.as_slice()).map_err(|_| bad())?;
        Principal::from_proto(proto)
    }

    /// The verified principal of a request; UNAUTHENTICATED without one.
    pub fn from_request<T>(&self, request: &tonic::Request<T>) -> Result<Principal> {
        let header = request
            .metadata()
            .get(PRINCIPAL_HEADER)
            .ok_or_else(|| {
                Error::Unauthenticated("no credentials: call through the gateway".into())
            })?
            .to_str()
            .map_err(|_| Error::Unauthenticated("the principal header is not valid".into()))?;
        self.decode(header)
    }
}

/// The request id of a call, for logs and events.
pub fn request_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Principal {
        Principal {
            subject: "apiKeys/k1".into(),
            role: Role::Client,
            account: Some("accounts/acme".into()),
            staff_member: None,
            display_name: "Acme integration".into(),
        }
    }

    #[test]
    fn signed_principal_round_trips() {
        let codec = PrincipalCodec::new("s3cret".into());
        assert_eq!(codec.decode(&codec.encode(&client())).unwrap(), client());
    }

    #[test]
    fn forged_or_foreign_principal_is_refused() {
        let codec = PrincipalCodec::new("s3cret".into());
        let other = PrincipalCodec::new("another".into());
        assert!(matches!(
            codec.decode(&other.encode(&client())),
            Err(Error::Unauthenticated(_))
        ));
        let mut admin = client();
        admin.role = Role::Admin;
        let (_, sig) = codec
            .encode(&client())
            .split_once('.')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(admin.to_proto().encode_to_vec()),
            sig
        );
        assert!(codec.decode(&forged).is_err());
    }
}
