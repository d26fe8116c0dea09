//! Authentication: who is calling. Credentials come as
//! `authorization: Bearer <token>` (or `x-api-key: <key>`); anything else is
//! UNAUTHENTICATED. Verified API keys are cached briefly so that the database
//! is not asked on every call; a revoked key stops working within [`CACHE_TTL`].
//! Verified OIDC tokens are cached for [`TOKEN_CACHE_TTL`], never past their
//! `exp`, so a signature is checked once rather than on every call.
//! Refused keys are cached too, for [`REFUSED_TTL`], so repeating a bad key
//! costs no lookup, and each peer (IP address) has an allowance of
//! authentications the cache cannot answer: past it, RESOURCE_EXHAUSTED with
//! the time to wait, so no one can make the gateway query its key store (or
//! guess keys) at the rate it can send.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use concierge_common::clock::SharedClock;
use concierge_common::error::{Error, Result};
use concierge_common::principal::Principal;
use concierge_common::storage::Db;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::keys;
use crate::oidc::Oidc;

/// How long a verified key is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a verified OIDC token is trusted without checking its
/// signature again (never past its `exp`).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Tokens run to kilobytes; fewer of them are kept than of keys.
const TOKEN_CACHE_MAX: u64 = 10_000;
/// How long a refused key is refused without asking the database again.
pub const REFUSED_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: u64 = 100_000;

/// How many failed authentications a peer may make.
#[derive(Debug, Clone, Copy)]
pub struct FailureAllowance {
    /// Sustained authentications per second that the cache cannot answer.
    pub per_second: u32,
    /// How many of them a peer may make at once.
    pub burst: u32,
}

#[derive(Clone)]
pub struct Authenticator {
    db: Db,
    clock: SharedClock,
    oidc: Option<Arc<Oidc>>,
    verified: moka::sync::Cache<String, Principal>,
    /// Keyed by the key's digest: refused keys are the attacker's choice,
    /// and so is their length.
    refused: moka::sync::Cache<[u8; 32], String>,
    /// Verified OIDC tokens with their `exp`: checking an RS256 signature
    /// costs more than the rest of the hop.
    tokens: moka::sync::Cache<String, (Principal, jiff::Timestamp)>,
    failures: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Authenticator {
    pub fn new(
        db: Db,
        clock: SharedClock,
        oidc: Option<Arc<Oidc>>,
        allowance: FailureAllowance,
    ) -> Result<Self> {
        let rate = NonZeroU32::new(allowance.per_second).ok_or_else(|| {
            Error::invalid(
                "limits.failed_authentications_per_second",
                "must be positive",
            )
        })?;
        let burst =
            NonZeroU32::new(allowance.burst.max(allowance.per_second)).ok_or_else(|| {
                Error::invalid("limits.failed_authentications_burst", "must be positive")
            })?;
        Ok(Self {
            db,
            clock,
            oidc,
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_live(CACHE_TTL)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_live(REFUSED_TTL)
                .build(),
            tokens: moka::sync::Cache::builder()
                .max_capacity(TOKEN_CACHE_MAX)
                .time_to_live(TOKEN_CACHE_TTL)
                .build(),
            failures: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        })
    }

    /// Forgets the allowance of peers that have not failed lately.
    pub fn forget_idle_peers(&self) {
        self.failures.retain_recent();
    }

    /// The credentials of a request's headers.
    pub fn credentials(headers: &http::HeaderMap) -> Option<String> {
        if let Some(v) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let v = v.trim();
            if let Some(token) = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            {
                return Some(token.trim().to_string());
            }
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    }

    /// The principal of a request's credentials. `peer` is where the call
    /// came from; calls with no peer (in-process) have no failure allowance.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        let Some(token) = Self::credentials(headers) else {
            return Err(self.refuse(
                peer,
                Error::Unauthenticated(
                    "no credentials: send `authorization: Bearer <API key or OIDC token>`".into(),
                ),
            ));
        };
        if keys::is_api_key(&token) {
            return self.api_key(&token, peer).await;
        }
        let Some(oidc) = &self.oidc else {
            return Err(self.refuse(
                peer,
                Error::Unauthenticated(
                    "not an API key, and OIDC is not configured on this gateway".into(),
                ),
            ));
        };
        let now = self.clock.now();
        if let Some((principal, expires)) = self.tokens.get(&token) {
            if now < expires {
                return Ok(principal);
            }
            // Past `exp`: the full check decides, leeway and all.
            self.tokens.invalidate(&token);
        }
        match oidc.verify(&token, now).await {
            Ok((principal, expires)) => {
                self.tokens.insert(token, (principal.clone(), expires));
                Ok(principal)
            }
            Err(e) => Err(self.refuse(peer, e)),
        }
    }

    async fn api_key(&self, key: &str, peer: Option<IpAddr>) -> Result<Principal> {
        if let Some(p) = self.verified.get(key) {
            return Ok(p);
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(why) = self.refused.get(&digest) {
            return Err(self.refuse(peer, Error::Unauthenticated(why)));
        }
        // Charged before the lookup, so the allowance bounds the lookups.
        self.spend(peer)?;
        metrics::counter!("concierge_gateway_key_lookups_total").increment(1);
        match keys::verify(&self.db, key, self.clock.now()).await {
            Ok(principal) => {
                self.verified.insert(key.to_string(), principal.clone());
                Ok(principal)
            }
            Err(Error::Unauthenticated(why)) => {
                self.refused.insert(digest, why.clone());
                Err(Error::Unauthenticated(why))
            }
            // An outage is not a verdict on the key: ask again next time.
            Err(e) => Err(e),
        }
    }

    /// Spends one of `peer`'s allowance; RESOURCE_EXHAUSTED once it is gone.
    fn spend(&self, peer: Option<IpAddr>) -> Result<()> {
        let Some(peer) = peer else { return Ok(()) };
        self.failures.check_key(&peer).map_err(|not_until| {
            metrics::counter!("concierge_gateway_auth_rate_limited_total").increment(1);
            Error::RateLimited {
                retry_after: not_until
                    .wait_time_from(governor::clock::DefaultClock::default().now())
                    .max(Duration::from_millis(1)),
            }
        })
    }

    /// A failed authentication: `why`, or RESOURCE_EXHAUSTED once the peer
    /// has failed too often.
    fn refuse(&self, peer: Option<IpAddr>, why: Error) -> Error {
        match self.spend(peer) {
            Ok(()) => why,
            Err(limited) => limited,
        }
    }
}
