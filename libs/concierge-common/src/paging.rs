//! Opaque, tamper-evident page tokens for keyset pagination (AIP-158). A token
//! carries the last item's sort key and name, is bound to the list it came
//! from (collection, filter, order, scope, caller) and is signed with the
//! service's own key: a forged, altered or foreign token is INVALID_ARGUMENT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::filter::Value;

/// Page size when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Larger page sizes are read as this (AIP-158: coerce, don't fail).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest page token accepted, in bytes.
pub const MAX_PAGE_TOKEN_LEN: usize = 4096;

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub name: String,
    pub sort: Option<Value>,
}

/// The raw paging parameters of a list request.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery<'a> {
    pub parent: &'a str,
    pub page_size: i32,
    pub page_token: &'a str,
    pub filter: &'a str,
    pub order_by: &'a str,
    pub show_deleted: bool,
}

impl PageQuery<'_> {
    pub fn limit(&self) -> Result<usize> {
        match self.page_size {
            n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
            0 => Ok(DEFAULT_PAGE_SIZE),
            n => Ok((n as usize).min(MAX_PAGE_SIZE)),
        }
    }

    /// What a token is bound to: everything that decides the result set
    /// except the page size, which may change between pages.
    fn fingerprint(&self, collection: &str, caller: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            collection,
            self.parent,
            self.filter,
            self.order_by,
            if self.show_deleted { "1" } else { "0" },
            caller,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..12])
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// Fingerprint of the query.
    q: String,
    /// Last name.
    n: String,
    /// Last sort key, text or integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<i64>,
    /// The list's `total_size`, counted on its first page: later pages carry
    /// it rather than count again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<i64>,
}

/// Mints and checks page tokens with a service's key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

impl PageTokens {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn sign(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn encode(
        &self,
        collection: &str,
        caller: &str,
        query: &PageQuery<'_>,
        cursor: &Cursor,
    ) -> String {
        self.encode_counted(collection, caller, query, cursor, None)
    }

    /// [`Self::encode`], carrying the list's total for the pages after.
    pub fn encode_counted(
        &self,
        collection: &str,
        caller: &str,
        query: &PageQuery<'_>,
        cursor: &Cursor,
        total: Option<i64>,
    ) -> String {
        let token = Token {
            q: query.fingerprint(collection, caller),
            n: cursor.name.clone(),
            t: match &cursor.sort {
                Some(Value::Text(s)) => Some(s.clone()),
                _ => None,
            },
            i: match &cursor.sort {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            },
            c: total,
        };
        let body = serde_json::to_vec(&token).expect("a token serialises");
        let sig = self.sign(&body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(&sig[..16])
        )
    }

    /// The cursor of `query.page_token`, or `None` on the first page.
    pub fn decode(
        &self,
        collection: &str,
        caller: &str,
        query: &PageQuery<'_>,
    ) -> Result<Option<Cursor>> {
        Ok(self
            .decode_counted(collection, caller, query)?
            .map(|(cursor, _)| cursor))
    }

    /// [`Self::decode`], with the total an earlier page counted, if any.
    pub fn decode_counted(
        &self,
        collection: &str,
        caller: &str,
        query: &PageQuery<'_>,
    ) -> Result<Option<(Cursor, Option<i64>)>> {
        if query.page_token.is_empty() {
            return Ok(None);
        }
        let invalid = |why: &str| Error::invalid("page_token", why);
        // Tokens we mint hold one name and one sort key; anything longer is
        // not ours, and is refused before it is decoded.
        if query.page_token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(invalid("not a page token of this list"));
        }
        let (body, sig) = query
            .page_token
            .split_once('.')
            .ok_or_else(|| invalid("not a page token of this list"))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| invalid("not a page token of this list"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| invalid("not a page token of this list"))?;
        let expected = self.sign(&body);
        if sig.len() != 16 || !constant_time_eq(&sig, &expected[..16]) {
            return Err(invalid("not a page token of this list"));
        }
        let token: Token =
            serde_json::from_slice(&body).map_err(|_| invalid("not a page token of this list"))?;
        if token.q != query.fingerprint(collection, caller) {
            return Err(invalid(
                "the page token belongs to a list with other parameters (parent, filter, order_by or show_deleted changed)",
            ));
        }
        Ok(Some((
            Cursor {
                name: token.n,
                sort: token.t.map(Value::Text).or(token.i.map(Value::Int)),
            },
            token.c,
        )))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<'a>(filter: &'a str, token: &'a str) -> PageQuery<'a> {
        PageQuery {
            parent: "",
            page_size: 10,
            page_token: token,
            filter,
            order_by: "update_time desc",
            show_deleted: false,
        }
    }

    #[test]
    fn token_round_trips_for_the_same_list() {
        let tokens = PageTokens::new(b"k".to_vec());
        let cursor = Cursor {
            name: "accounts/acme".into(),
            sort: Some(Value::Int(42)),
        };
        let t = tokens.encode("accounts", "u1", &query("tier = GOLD", ""), &cursor);
        assert_eq!(
            tokens
                .decode("accounts", "u1", &query("tier = GOLD", &t))
                .unwrap(),
            Some(cursor)
        );
    }

    #[test]
    fn forged_foreign_or_rebound_tokens_are_invalid_argument() {
        let tokens = PageTokens::new(b"k".to_vec());
        let cursor = Cursor {
            name: "accounts/acme".into(),
            sort: None,
        };
        let t = tokens.encode("accounts", "u1", &query("", ""), &cursor);
        let other_key = PageTokens::new(b"other".to_vec());
        let mut tampered = t.clone().into_bytes();
        tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for (who, coll, caller, filter, token) in [
            (&other_key, "accounts", "u1", "", t.as_str()),
            (&tokens, "sites", "u1", "", t.as_str()),
            (&tokens, "accounts", "u2", "", t.as_str()),
            (&tokens, "accounts", "u1", "tier = GOLD", t.as_str()),
            (&tokens, "accounts", "u1", "", "garbage"),
            (&tokens, "accounts", "u1", "", tampered.as_str()),
        ] {
            let err = who.decode(coll, caller, &query(filter, token)).unwrap_err();
            let Error::InvalidArgument(v) = err else {
                panic!("{coll} {caller} {filter}")
            };
            assert_eq!(v[0].field, "page_token");
        }
    }

    #[test]
    fn page_size_is_coerced_and_negative_refused() {
        let mut q = query("", "");
        q.page_size = 0;
        assert_eq!(q.limit().unwrap(), DEFAULT_PAGE_SIZE);
        q.page_size = 5000;
        assert_eq!(q.limit().unwrap(), MAX_PAGE_SIZE);
        q.page_size = -1;
        assert!(q.limit().is_err());
    }
}
