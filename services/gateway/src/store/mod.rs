//! Every SQL statement of the gateway: it owns one table, its API keys.

pub(crate) mod api_keys;
