//! API keys: minted by an admin command, stored hashed, each with a role and,
//! for client keys, exactly one account. A key reads
//! `ck_<id>_<secret>`: the id finds the row, the secret is checked against
//! its hash in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use concierge_common::clock::to_micros;
use concierge_common::error::{Error, Result};
use concierge_common::principal::{Principal, Role};
use concierge_common::storage::Db;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store;

const PREFIX: &str = "ck_";

/// What a new key may do.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub role: Role,
    /// Required for client keys: "accounts/{account}".
    pub account: Option<String>,
    /// For staff keys: "staff/{staff_member}".
    pub staff_member: Option<String>,
    pub display_name: String,
    /// Unset: the key does not expire.
    pub expire_time: Option<jiff::Timestamp>,
}

/// A minted key: the only time its secret is visible.
#[derive(Debug, Clone)]
pub struct MintedKey {
    /// "apiKeys/{id}".
    pub name: String,
    /// The whole key to give to the caller.
    pub key: String,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && secret.len() >= 32).then_some((id, secret))
}

/// True when `token` looks like one of our API keys (rather than a JWT).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Mints a key and stores its hash.
pub async fn mint(db: &Db, new: NewKey, now: jiff::Timestamp) -> Result<MintedKey> {
    if new.role == Role::Client {
        match &new.account {
            Some(a) => {
                concierge_common::names::parse("account", a, &["accounts"])?;
            }
            None => {
                return Err(Error::invalid(
                    "account",
                    "a client key is scoped to one account",
                ));
            }
        }
    } else if new.account.is_some() {
        return Err(Error::invalid(
            "account",
            "only client keys are scoped to an account",
        ));
    }
    if let Some(s) = &new.staff_member {
        concierge_common::names::parse("staff_member", s, &["staff"])?;
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = URL_SAFE_NO_PAD.encode(raw).replace('_', "-");
    let name = format!("apiKeys/{id}");
    store::api_keys::insert(
        db,
        &store::api_keys::StoredKey {
            name: name.clone(),
            secret_hash: hash(&secret),
            role: new.role.as_str().to_string(),
            account: new.account.clone().unwrap_or_default(),
            staff_member: new.staff_member.clone().unwrap_or_default(),
            display_name: new.display_name.clone(),
            expire_time: new.expire_time.map(to_micros).unwrap_or(0),
            revoke_time: 0,
        },
        to_micros(now),
    )
    .await?;
    Ok(MintedKey {
        name,
        key: format!("{PREFIX}{id}_{secret}"),
    })
}

/// Revokes a key; it stops working once gateway caches expire.
pub async fn revoke(db: &Db, name: &str, now: jiff::Timestamp) -> Result<bool> {
    store::api_keys::revoke(db, name, to_micros(now)).await
}

/// A stored key, as listed by the admin command.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub name: String,
    pub role: String,
    pub account: String,
    pub staff_member: String,
    pub display_name: String,
    pub revoked: bool,
}

pub async fn list(db: &Db) -> Result<Vec<KeyInfo>> {
    Ok(store::api_keys::all(db)
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            name: k.name,
            role: k.role,
            account: k.account,
            staff_member: k.staff_member,
            display_name: k.display_name,
            revoked: k.revoke_time != 0,
        })
        .collect())
}

/// The principal of `key`, or UNAUTHENTICATED.
pub async fn verify(db: &Db, key: &str, now: jiff::Timestamp) -> Result<Principal> {
    let bad = || Error::Unauthenticated("the API key is not valid".into());
    let (id, secret) = split(key).ok_or_else(bad)?;
    let name = format!("apiKeys/{id}");
    let stored = store::api_keys::get(db, &name).await?.ok_or_else(bad)?;
    let (stored_hash, role, account, staff_member, display_name, expire, revoke) = (
        stored.secret_hash,
        stored.role,
        stored.account,
        stored.staff_member,
        stored.display_name,
        stored.expire_time,
        stored.revoke_time,
    );
    let given = hash(secret);
    let equal = given.len() == stored_hash.len()
        && given
            .bytes()
            .zip(stored_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !equal {
        return Err(bad());
    }
    if revoke != 0 {
        return Err(Error::Unauthenticated("the API key was revoked".into()));
    }
    if expire != 0 && expire <= to_micros(now) {
        return Err(Error::Unauthenticated("the API key has expired".into()));
    }
    Ok(Principal {
        subject: name,
        role: Role::parse(&role).ok_or_else(bad)?,
        account: (!account.is_empty()).then_some(account),
        staff_member: (!staff_member.is_empty()).then_some(staff_member),
        display_name,
    })
}
