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

pub use generated::concierge::csat::v1 as csat;
pub use generated::concierge::customers::v1 as customers;
pub use generated::concierge::disputes::v1 as disputes;
pub use generated::concierge::events::v1 as events;
pub use generated::concierge::gateway::v1 as gateway;
pub use generated::concierge::types::v1 as types;

/// Each domain's events as its contract declares them
/// (`proto/concierge/<domain>/v1/events.proto`): the type strings a
/// consumer matches `Event.type` against, with each type's payload message
/// and audience, and, for producers, one typed constant per event type
/// ([`catalogue::cases::CASE_RESOLVED`] is an [`EventOf`]`<Case>`), so that
/// an event is recorded with the payload its type declares or does not
/// compile. Generated from the protos by `build.rs`.
pub mod catalogue {
    use std::marker::PhantomData;

    use crate::events::Visibility;

    /// An event type of a domain's catalogue whose payload is a `P`. Only
    /// the generated constants make one: a service cannot invent a type.
    pub struct EventOf<P> {
        event_type: &'static str,
        audience: Visibility,
        payload: PhantomData<fn(&P)>,
    }

    impl<P> EventOf<P> {
        const fn declared(event_type: &'static str, audience: Visibility) -> Self {
            Self {
                event_type,
                audience,
                payload: PhantomData,
            }
        }

        /// The widest audience the catalogue allows events of this type: a
        /// staff-only type's events are internal whatever their payload.
        pub const fn audience(&self) -> Visibility {
            self.audience
        }

        /// The dotted type, e.g. "concierge.cases.v1.case_resolved": the
        /// event's `type` and the subject it is published on.
        pub const fn event_type(&self) -> &'static str {
            self.event_type
        }
    }

    // Not derived: a derive would ask the same of `P`.
    impl<P> Clone for EventOf<P> {
        fn clone(&self) -> Self {
            *self
        }
    }
    impl<P> Copy for EventOf<P> {}
    impl<P> PartialEq for EventOf<P> {
        fn eq(&self, other: &Self) -> bool {
            self.event_type == other.event_type
        }
    }
    impl<P> Eq for EventOf<P> {}
    impl<P> std::fmt::Debug for EventOf<P> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.event_type)
        }
    }

    /// What one value of a domain's `EventType` enum declares.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Declared<E: 'static> {
        pub event: E,
        /// e.g. "concierge.cases.v1.case_resolved".
        pub event_type: &'static str,
        /// The payload message's full name, e.g. "concierge.cases.v1.Case".
        pub payload: &'static str,
        /// The widest audience an event of the type may have; each event's
        /// own `visibility` may be narrower (an internal note).
        pub audience: Visibility,
    }

    impl<E> Declared<E> {
        /// The `type_url` of the payload's `Any`: "/" and the message's full
        /// name (an empty authority; what follows the last "/" is what names
        /// the message, as in any `Any`).
        pub fn payload_type_url(&self) -> String {
            format!("/{}", self.payload)
        }
    }

    /// A domain's `EventType` enum: every event type it publishes, the
    /// unspecified zero value aside.
    pub trait Catalogue: Copy + PartialEq + Sized + 'static {
        /// Every event type, in the enum's order.
        const DECLARED: &'static [Declared<Self>];

        /// What `self` declares; None for the unspecified value.
        fn declared(self) -> Option<&'static Declared<Self>> {
            Self::DECLARED.iter().find(|d| d.event == self)
        }

        /// The dotted type of `self`'s events; empty for the unspecified value.
        fn event_type(self) -> &'static str {
            self.declared().map_or("", |d| d.event_type)
        }

        /// The event type an `Event.type` names, if it is of this catalogue.
        fn from_event_type(event_type: &str) -> Option<Self> {
            Self::DECLARED
                .iter()
                .find(|d| d.event_type == event_type)
                .map(|d| d.event)
        }
    }

    /// A resource kind whose creation is announced: what a generic create
    /// records. Generated for a payload `X` with an event `X_CREATED`.
    pub trait Created: Sized {
        const CREATED: EventOf<Self>;
    }

    /// A resource kind whose updates are announced (`X_UPDATED`).
    pub trait Updated: Sized {
        const UPDATED: EventOf<Self>;
    }

    /// A resource kind whose (soft or hard) deletes are announced (`X_DELETED`).
    pub trait Deleted: Sized {
        const DELETED: EventOf<Self>;
    }

    /// A soft-deletable resource kind whose undeletes are announced
    /// (`X_UNDELETED`).
    pub trait Undeleted: Sized {
        const UNDELETED: EventOf<Self>;
    }

    include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));
}
