//! The cases service's pure engines: business time in a calendar
//! ([`calendar`]), the explainable SLA ledger ([`sla`]), the clocks a case's
//! policy gives it ([`clocks`]), the status machine ([`lifecycle`]) and SLA
//! policy matching ([`policy`]). They compute from values and know nothing of
//! gRPC or storage, so they are tested (and property-tested) on their own;
//! the test below keeps it so.

pub mod calendar;
pub mod clocks;
pub mod lifecycle;
pub mod policy;
pub mod sla;

#[cfg(test)]
mod tests {
    /// Every engine file, as the compiler sees it.
    const ENGINES: [(&str, &str); 5] = [
        ("calendar.rs", include_str!("calendar.rs")),
        ("clocks.rs", include_str!("clocks.rs")),
        ("lifecycle.rs", include_str!("lifecycle.rs")),
        ("policy.rs", include_str!("policy.rs")),
        ("sla.rs", include_str!("sla.rs")),
    ];

    #[test]
    fn engines_import_nothing_of_grpc_or_storage() {
        let forbidden = [
            "tonic",
            "sqlx",
            "_service_server",
            "concierge_common::storage",
            "concierge_common::crud",
            "concierge_common::resource",
            "on_conn!",
            "crate::service",
            "crate::store",
            "crate::timers",
            "crate::directory",
        ];
        for (file, source) in ENGINES {
            for word in forbidden {
                assert!(
                    !source.contains(word),
                    "engine/{file} mentions {word}: engines compute from values; storage and gRPC stay outside"
                );
            }
        }
    }
}
