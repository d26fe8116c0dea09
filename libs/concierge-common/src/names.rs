//! Resource names (AIP-122): `collection/{id}/collection/{id}`.

use crate::error::{Error, Result};

/// Checks a user-chosen id (AIP-133 `*_id`): 1-63 characters of lowercase
/// letters, digits and hyphens, starting with a letter, not ending with a
/// hyphen — safe in URLs, DNS labels and file names alike.
pub fn check_id(field: &str, id: &str) -> Result<()> {
    let ok = (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{id:?} is not a valid id: use 1-63 lowercase letters, digits and hyphens, starting with a letter"
            ),
        ))
    }
}

/// The user's id if given and valid, or a new time-ordered one.
pub fn new_id(field: &str, requested: &str) -> Result<String> {
    if requested.is_empty() {
        Ok(uuid::Uuid::now_v7().to_string())
    } else {
        check_id(field, requested)?;
        Ok(requested.to_string())
    }
}

/// Splits `name` against `collections` (e.g. `["accounts", "sites"]` for
/// `accounts/{a}/sites/{s}`) and returns the ids. `-` is accepted as an id
/// only where `wildcard_last` allows it (AIP-159 reads across parents).
pub fn parse<'a>(field: &str, name: &'a str, collections: &[&str]) -> Result<Vec<&'a str>> {
    let pattern = collections
        .iter()
        .map(|c| format!("{c}/{{id}}"))
        .collect::<Vec<_>>()
        .join("/");
    let bad = || {
        if name.is_empty() {
            Error::invalid(field, format!("required: a resource name like {pattern}"))
        } else {
            Error::invalid(
                field,
                format!("{name:?} is not a resource name like {pattern}"),
            )
        }
    };
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != collections.len() * 2 {
        return Err(bad());
    }
    let mut ids = Vec::with_capacity(collections.len());
    for (pair, collection) in parts.chunks(2).zip(collections) {
        if pair[0] != *collection || pair[1].is_empty() || pair[1].len() > 128 {
            return Err(bad());
        }
        if !pair[1]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(bad());
        }
        ids.push(pair[1]);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_aip_122() {
        for ok in ["acme", "acme-corp-2", "a"] {
            assert!(check_id("account_id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "2acme", "acme-", "ac me", &"a".repeat(64)] {
            assert!(check_id("account_id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_parse_against_their_pattern() {
        assert_eq!(
            parse("name", "accounts/acme/sites/hq", &["accounts", "sites"]).unwrap(),
            vec!["acme", "hq"]
        );
        assert!(parse("name", "accounts/acme/contacts/hq", &["accounts", "sites"]).is_err());
        assert!(parse("name", "accounts/acme", &["accounts", "sites"]).is_err());
        assert!(parse("name", "", &["accounts"]).is_err());
        assert!(parse("name", "accounts/../x", &["accounts"]).is_err());
    }
}
