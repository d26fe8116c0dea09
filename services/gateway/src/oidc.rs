//! OIDC bearer tokens: JWTs signed by the configured identity provider,
//! checked for signature (keys from its JWKS, cached by `kid`), issuer,
//! audience and expiry. The role, and for clients the account, come from
//! configurable claims.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// OIDC settings of the gateway.
#[derive(Debug, Clone, Deserialize)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Where the provider publishes its signing keys.
    pub jwks_url: String,
    /// Claim holding the Concierge role (agent, account_manager, manager, admin, client).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Claim holding the account of a client principal ("accounts/{account}").
    #[serde(default = "default_account_claim")]
    pub account_claim: String,
    /// Claim holding the staff member of a staff principal ("staff/{staff_member}").
    #[serde(default = "default_staff_claim")]
    pub staff_member_claim: String,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(default = "default_jwks_ttl", with = "concierge_common::config::secs")]
    pub jwks_ttl: Duration,
}

fn default_role_claim() -> String {
    "concierge_role".into()
}
fn default_account_claim() -> String {
    "concierge_account".into()
}
fn default_staff_claim() -> String {
    "concierge_staff_member".into()
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(600)
}

/// A kid-keyed cache of the provider's keys. An unknown `kid` triggers one
/// refetch (keys rotate), but at most every [`MIN_REFETCH`], so that tokens
/// with made-up kids cannot make the gateway hammer the provider.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

const MIN_REFETCH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, jsonwebtoken::Algorithm)>,
    fetched: Option<Instant>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Arc<Self>> {
        // One process-wide rustls provider for every TLS client we make.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::invalid("oidc.jwks_url", e.to_string()))?;
        Ok(Arc::new(Self {
            config,
            http,
            keys: RwLock::default(),
        }))
    }

    async fn fetch(&self) -> Result<()> {
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                Error::Unavailable(format!("fetching the identity provider's keys failed: {e}"))
            })?
            .json()
            .await
            .map_err(|e| {
                Error::Unavailable(format!("the identity provider's keys are not a JWKS: {e}"))
            })?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            let alg = match jwk
                .common
                .key_algorithm
                .map(|a| a.to_string())
                .and_then(|a| a.parse().ok())
            {
                Some(alg) => alg,
                None => match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                        jsonwebtoken::Algorithm::ES256
                    }
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => {
                        jsonwebtoken::Algorithm::RS256
                    }
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                        jsonwebtoken::Algorithm::EdDSA
                    }
                    // Shared-secret keys have no place in a public JWKS.
                    _ => continue,
                },
            };
            by_kid.insert(kid, (key, alg));
        }
        let mut keys = self.keys.write().await;
        keys.by_kid = by_kid;
        keys.fetched = Some(Instant::now());
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, jsonwebtoken::Algorithm)> {
        {
            let keys = self.keys.read().await;
            let fresh = keys
                .fetched
                .is_some_and(|t| t.elapsed() < self.config.jwks_ttl);
            if fresh && let Some(k) = keys.by_kid.get(kid) {
                return Ok(k.clone());
            }
            if keys.fetched.is_some_and(|t| t.elapsed() < MIN_REFETCH)
                && !keys.by_kid.contains_key(kid)
            {
                return Err(Error::Unauthenticated(format!(
                    "unknown signing key {kid:?}"
                )));
            }
        }
        self.fetch().await?;
        self.keys
            .read()
            .await
            .by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| Error::Unauthenticated(format!("unknown signing key {kid:?}")))
    }

    /// The principal of a valid token and when the token expires (its
    /// `exp`), or UNAUTHENTICATED saying why not.
    pub async fn verify(
        &self,
        token: &str,
        _now: jiff::Timestamp,
    ) -> Result<(Principal, jiff::Timestamp)> {
        let bad =
            |why: String| Error::Unauthenticated(format!("the bearer token is not valid: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| bad("no kid in its header".into()))?;
        let (key, alg) = self.key(&kid).await?;
        if header.alg != alg {
            return Err(bad(format!(
                "signed with {:?}, but the key is for {alg:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data =
            jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, &key, &validation)
                .map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let role = text(&self.config.role_claim)
            .and_then(|r| Role::parse(&r))
            .ok_or_else(|| bad(format!("no valid `{}` claim", self.config.role_claim)))?;
        let account = text(&self.config.account_claim).filter(|a| !a.is_empty());
        if role == Role::Client && account.is_none() {
            return Err(bad(format!(
                "a client token needs a `{}` claim",
                self.config.account_claim
            )));
        }
        let expires = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|exp| jiff::Timestamp::from_second(exp).ok())
            .ok_or_else(|| bad("`exp` is not a time".into()))?;
        let principal = Principal {
            subject: format!("oidc/{}", text("sub").unwrap_or_default()),
            role,
            account: if role == Role::Client { account } else { None },
            staff_member: text(&self.config.staff_member_claim).filter(|s| !s.is_empty()),
            display_name: text("name").or_else(|| text("email")).unwrap_or_default(),
        };
        Ok((principal, expires))
    }
}
