//! Every Concierge v1 contract as Rust types, generated from `proto/`.
//!
//! Services and clients depend on this crate alone for `tonic` and `prost`,
//! so the whole workspace speaks one version of each.

pub use prost;
pub use prost_types;
pub use tonic;

/// The encoded `FileDescriptorSet` of every contract, for gRPC reflection
/// and for tools that need the schema at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/concierge_descriptor.bin"));

#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/concierge.rs"));
}

pub use generated::*;

pub use generated::concierge::customers::v1 as customers;
pub use generated::concierge::events::v1 as events;
pub use generated::concierge::types::v1 as types;
