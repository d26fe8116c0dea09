//! Authentication: who is calling. Credentials come as
//! `authorization: Bearer <token>` (or `x-api-key: <key>`); anything else is
//! UNAUTHENTICATED. Verified API keys are cached briefly so that the database
//! is not asked on every call; a revoked key stops working within [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierge_common::clock::SharedClock;
use concierge_common::error::{Error, Result};
use concierge_common::principal::Principal;
use concierge_common::storage::Db;

use crate::keys;
use crate::oidc::Oidc;

/// How long a verified key is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 100_000;

#[derive(Clone)]
pub struct Authenticator {
    db: Db,
    clock: SharedClock,
    oidc: Option<Arc<Oidc>>,
    cache: Arc<Mutex<HashMap<String, (Instant, Principal)>>>,
}

impl Authenticator {
    pub fn new(db: Db, clock: SharedClock, oidc: Option<Arc<Oidc>>) -> Self {
        Self {
            db,
            clock,
            oidc,
            cache: Arc::default(),
        }
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

    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal> {
        let token = Self::credentials(headers).ok_or_else(|| {
            Error::Unauthenticated(
                "no credentials: send `authorization: Bearer <API key or OIDC token>`".into(),
            )
        })?;
        if keys::is_api_key(&token) {
            return self.api_key(&token).await;
        }
        match &self.oidc {
            Some(oidc) => oidc.verify(&token, self.clock.now()).await,
            None => Err(Error::Unauthenticated(
                "not an API key, and OIDC is not configured on this gateway".into(),
            )),
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal> {
        if let Some((at, p)) = self.cache.lock().expect("auth cache lock").get(key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        let principal = keys::verify(&self.db, key, self.clock.now()).await?;
        let mut cache = self.cache.lock().expect("auth cache lock");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key.to_string(), (Instant::now(), principal.clone()));
        Ok(principal)
    }
}
