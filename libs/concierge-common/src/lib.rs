//! What every Concierge service shares: configuration, telemetry, the server
//! bootstrap, errors, storage, filters, paging, idempotency, principals, the
//! outbox, calls to peer services and the clock.

pub mod bounded;
pub mod channel;
pub mod clock;
pub mod config;
pub mod crud;
pub mod error;
pub mod files;
pub mod filter;
pub mod follow;
pub mod idempotency;
pub mod inbox;
pub mod kit;
pub mod local_bus;
pub mod mail;
pub mod money;
pub mod names;
pub mod outbox;
pub mod paging;
pub mod peer;
pub mod principal;
pub mod relay;
pub mod resource;
pub mod rpc;
pub mod server;
pub mod storage;
pub mod supervise;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timers;

pub use error::{Error, FieldViolation, Result, Violations};
