//! Who is calling. The gateway authenticates the caller and passes the
//! verified principal to the services in a header signed with the internal
//! secret; a service accepts no principal it cannot verify, so a caller that
//! reaches a service directly cannot claim to be someone else. The signature
//! also binds the header to the one service it was sent to (its audience) and
//! to a few minutes ([`PRINCIPAL_LIFETIME`]), so a header captured inside the
//! cluster is not a credential for another service, nor for long.

use std::time::{Duration, SystemTime};

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
/// How long a signed principal is good for after it is signed.
pub const PRINCIPAL_LIFETIME: Duration = Duration::from_secs(300);
/// How far the signer's and the verifier's clocks may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Separates the parts of the header; in neither base64url, digits nor
/// service names.
const SEP: char = '~';

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Keyed once: keying HMAC-SHA256 hashes the key's two pads, which is
    /// most of the work of signing a header this short. Each use clones it.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PrincipalCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrincipalCodec(..)")
    }
}

impl PrincipalCodec {
    pub fn new(key: SecretString) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length"),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    /// The header that tells `audience` (the fully-qualified gRPC service
    /// the call goes to) who is calling, good for [`PRINCIPAL_LIFETIME`].
    pub fn encode(&self, principal: &Principal, audience: &str) -> String {
        self.encode_at(principal, audience, SystemTime::now())
    }

    /// [`Self::encode`] as signed at `now`.
    pub fn encode_at(&self, principal: &Principal, audience: &str, now: SystemTime) -> String {
        let expires = unix_seconds(now) + PRINCIPAL_LIFETIME.as_secs();
        let body = URL_SAFE_NO_PAD.encode(principal.to_proto().encode_to_vec());
        let signed = format!("{audience}{SEP}{expires}{SEP}{body}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}{SEP}{sig}")
    }

    /// The principal of a header sent to `audience`.
    pub fn decode(&self, header: &str, audience: &str) -> Result<Principal> {
        self.decode_at(header, audience, SystemTime::now())
    }

    /// [`Self::decode`] as verified at `now`.
    pub fn decode_at(&self, header: &str, audience: &str, now: SystemTime) -> Result<Principal> {
        let bad = || Error::Unauthenticated("the principal header is not valid".into());
        let (signed, sig) = header.rsplit_once(SEP).ok_or_else(bad)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let mut parts = signed.splitn(3, SEP);
        let (Some(meant_for), Some(expires), Some(body)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if meant_for != audience {
            return Err(Error::Unauthenticated(format!(
                "the principal header was signed for {meant_for}, not {audience}"
            )));
        }
        let expires: u64 = expires.parse().map_err(|_| bad())?;
        let now = unix_seconds(now);
        if now > expires.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(Error::Unauthenticated(
                "the principal header has expired".into(),
            ));
        }
        // Signed further ahead than a lifetime: the signer's clock is off.
        if expires > now + PRINCIPAL_LIFETIME.as_secs() + CLOCK_SKEW.as_secs() {
            return Err(Error::Unauthenticated(
                "the principal header was signed in the future; check the clocks".into(),
            ));
        }
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let proto = types::Principal::decode(body.as_slice()).map_err(|_| bad())?;
        Principal::from_proto(proto)
    }

    /// The verified principal of a request to `audience` (the service
    /// answering it); UNAUTHENTICATED without one.
    pub fn from_request<T>(
        &self,
        request: &tonic::Request<T>,
        audience: &str,
    ) -> Result<Principal> {
        let header = request
            .metadata()
            .get(PRINCIPAL_HEADER)
            .ok_or_else(|| {
                Error::Unauthenticated("no credentials: call through the gateway".into())
            })?
            .to_str()
            .map_err(|_| Error::Unauthenticated("the principal header is not valid".into()))?;
        self.decode(header, audience)
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

    const CUSTOMERS: &str = "concierge.customers.v1.CustomersService";
    const CASES: &str = "concierge.cases.v1.CasesService";

    #[test]
    fn signed_principal_round_trips() {
        let codec = PrincipalCodec::new("s3cret".into());
        assert_eq!(
            codec
                .decode(&codec.encode(&client(), CUSTOMERS), CUSTOMERS)
                .unwrap(),
            client()
        );
    }

    #[test]
    fn forged_or_foreign_principal_is_refused() {
        let codec = PrincipalCodec::new("s3cret".into());
        let other = PrincipalCodec::new("another".into());
        assert!(matches!(
            codec.decode(&other.encode(&client(), CUSTOMERS), CUSTOMERS),
            Err(Error::Unauthenticated(_))
        ));
        let mut admin = client();
        admin.role = Role::Admin;
        let genuine = codec.encode(&client(), CUSTOMERS);
        let (signed, sig) = genuine.rsplit_once(SEP).unwrap();
        let (head, _) = signed.rsplit_once(SEP).unwrap();
        let forged = format!(
            "{head}{SEP}{}{SEP}{sig}",
            URL_SAFE_NO_PAD.encode(admin.to_proto().encode_to_vec()),
        );
        assert!(codec.decode(&forged, CUSTOMERS).is_err());
        // Nor can the audience or the expiry be edited under the signature.
        let (_, rest) = genuine.split_once(SEP).unwrap();
        assert!(codec.decode(&format!("{CASES}{SEP}{rest}"), CASES).is_err());
        let expires: u64 = rest.split(SEP).next().unwrap().parse().unwrap();
        let later = genuine.replacen(&expires.to_string(), &(expires + 86_400).to_string(), 1);
        assert!(codec.decode(&later, CUSTOMERS).is_err());
    }

    #[test]
    fn a_principal_is_good_only_for_its_service() {
        let codec = PrincipalCodec::new("s3cret".into());
        let header = codec.encode(&client(), CUSTOMERS);
        let err = codec.decode(&header, CASES).unwrap_err();
        assert!(
            matches!(&err, Error::Unauthenticated(why) if why.contains(CUSTOMERS)),
            "{err:?}"
        );
    }

    #[test]
    fn a_principal_is_good_only_for_a_few_minutes() {
        let codec = PrincipalCodec::new("s3cret".into());
        let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let header = codec.encode_at(&client(), CUSTOMERS, signed_at);
        let at = |secs| signed_at + Duration::from_secs(secs);
        assert!(codec.decode_at(&header, CUSTOMERS, at(0)).is_ok());
        assert!(codec.decode_at(&header, CUSTOMERS, at(299)).is_ok());
        // A verifier whose clock runs a little ahead still accepts it.
        assert!(codec.decode_at(&header, CUSTOMERS, at(320)).is_ok());
        let err = codec.decode_at(&header, CUSTOMERS, at(331)).unwrap_err();
        assert!(
            matches!(&err, Error::Unauthenticated(why) if why.contains("expired")),
            "{err:?}"
        );
        // Nor is a header from a signer whose clock runs far ahead.
        let early = signed_at - Duration::from_secs(60);
        assert!(codec.decode_at(&header, CUSTOMERS, early).is_err());
        let slightly = signed_at - Duration::from_secs(10);
        assert!(codec.decode_at(&header, CUSTOMERS, slightly).is_ok());
    }
}
