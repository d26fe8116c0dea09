//! The event catalogue as consumers read it: the README's list, the
//! generated enums and the type strings on the bus must be one and the same.

use std::collections::BTreeSet;

use concierge_proto::catalogue::{self, Catalogue, Created, Declared, Deleted, Undeleted, Updated};
use concierge_proto::concierge::cases::v1 as cases;
use concierge_proto::customers;
use concierge_proto::events::Visibility;

/// Every event type of every domain, as (type, payload, audience).
fn declared() -> BTreeSet<(String, String, Visibility)> {
    fn of<E: Catalogue>(
        all: &[Declared<E>],
    ) -> impl Iterator<Item = (String, String, Visibility)> + '_ {
        all.iter()
            .map(|d| (d.event_type.to_string(), d.payload.to_string(), d.audience))
    }
    of(cases::EventType::DECLARED)
        .chain(of(customers::EventType::DECLARED))
        .chain(of(concierge_proto::disputes::EventType::DECLARED))
        .chain(of(concierge_proto::csat::EventType::DECLARED))
        .chain(of(concierge_proto::gateway::EventType::DECLARED))
        .collect()
}

/// The rows of the README's event tables: "| `type` | meaning | `payload` | seen by |".
fn listed() -> BTreeSet<(String, String, Visibility)> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("### Events\n")
        .nth(1)
        .expect("the README has an Events section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `concierge."))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "a catalogue row has four cells: {row}");
            let code = |c: &str| c.trim_matches('`').to_string();
            let audience = if cells[3] == "staff only" {
                Visibility::Internal
            } else if cells[3].starts_with("staff and the account's client") {
                Visibility::Public
            } else {
                panic!(
                    "who sees {} is \"staff only\" or \"staff and the account's client…\"",
                    cells[0]
                )
            };
            (code(cells[0]), code(cells[2]), audience)
        })
        .collect()
}

#[test]
fn the_readme_lists_exactly_the_declared_events() {
    let declared = declared();
    let listed = listed();
    let missing: Vec<_> = declared.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README event catalogue out of step with events.proto\n not listed (or listed differently): {missing:#?}\n listed but not declared: {extra:#?}"
    );
}

/// The type strings consumers already subscribe to, unchanged by their
/// move into the contract.
#[test]
fn type_strings_are_those_on_the_bus() {
    use cases::EventType as K;
    use customers::EventType as C;
    assert_eq!(
        C::AccountCreated.event_type(),
        "concierge.customers.v1.account_created"
    );
    assert_eq!(
        C::FollowUpCompleted.event_type(),
        "concierge.customers.v1.follow_up_completed"
    );
    assert_eq!(
        K::CaseResolved.event_type(),
        "concierge.cases.v1.case_resolved"
    );
    assert_eq!(
        K::CaseStateChanged.event_type(),
        "concierge.cases.v1.case_state_changed"
    );
    assert_eq!(
        K::NoteCreated.event_type(),
        "concierge.cases.v1.note_created"
    );
    assert_eq!(
        K::SlaClockBreached.event_type(),
        "concierge.cases.v1.sla_clock_breached"
    );
    assert_eq!(
        K::SlaClockAtRisk.event_type(),
        "concierge.cases.v1.sla_clock_at_risk"
    );
    assert_eq!(K::Unspecified.event_type(), "");
    assert_eq!(K::Unspecified.declared(), None);
    assert_eq!(K::from_event_type("concierge.cases.v1.case_exploded"), None);
    assert_eq!(
        K::from_event_type("concierge.customers.v1.account_created"),
        None
    );
}

#[test]
fn every_type_parses_back_to_its_value_and_names_a_real_payload() {
    fn check<E: Catalogue + std::fmt::Debug>(all: &[Declared<E>]) {
        for d in all {
            assert_eq!(E::from_event_type(d.event_type), Some(d.event));
            assert_eq!(d.event.event_type(), d.event_type);
            assert_eq!(d.payload_type_url(), format!("/{}", d.payload));
        }
    }
    check(cases::EventType::DECLARED);
    check(customers::EventType::DECLARED);
    check(concierge_proto::disputes::EventType::DECLARED);
    check(concierge_proto::csat::EventType::DECLARED);
}

/// The typed constants and the lifecycle events generic code records agree
/// with the enum, and their payload is the one the enum declares.
#[test]
fn typed_constants_carry_the_declared_payload() {
    fn payload_of<P: prost::Name, E: Catalogue>(e: catalogue::EventOf<P>) -> String {
        let d = E::from_event_type(e.event_type())
            .and_then(|t| t.declared())
            .expect("a declared type");
        assert_eq!(d.payload, P::full_name(), "{e:?}");
        d.payload.to_string()
    }
    payload_of::<_, cases::EventType>(catalogue::cases::CASE_RESOLVED);
    payload_of::<_, cases::EventType>(catalogue::cases::SLA_CLOCK_BREACHED);
    payload_of::<_, cases::EventType>(<cases::Note as Created>::CREATED);
    payload_of::<_, cases::EventType>(<cases::SlaPolicy as Undeleted>::UNDELETED);
    payload_of::<_, cases::EventType>(<cases::CaseLink as Deleted>::DELETED);
    payload_of::<_, customers::EventType>(<customers::Account as Updated>::UPDATED);
    payload_of::<_, customers::EventType>(catalogue::customers::FOLLOW_UP_CANCELLED);
    assert_eq!(
        <customers::Account as Created>::CREATED,
        catalogue::customers::ACCOUNT_CREATED
    );
}

/// Just enough of `descriptor.proto` to read the catalogue's options, which
/// `prost_types` would drop.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Set {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, tag = "2")]
        pub package: String,
        #[prost(message, repeated, tag = "5")]
        pub enum_type: Vec<Enum>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Enum {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub value: Vec<Value>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "3")]
        pub options: Option<Options>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Options {
        #[prost(string, tag = "51001")]
        pub payload: String,
        #[prost(int32, tag = "51002")]
        pub audience: i32,
    }
}

/// The descriptor set served by reflection keeps the catalogue's options,
/// so a consumer without the Rust types reads the same payloads and
/// audiences.
#[test]
fn the_descriptor_set_keeps_the_catalogue_options() {
    use prost::Message;
    let set = raw::Set::decode(concierge_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut reflected = BTreeSet::new();
    for file in &set.file {
        for e in file.enum_type.iter().filter(|e| e.name == "EventType") {
            for v in e
                .value
                .iter()
                .filter(|v| v.name != "EVENT_TYPE_UNSPECIFIED")
            {
                let o = v.options.clone().unwrap_or_default();
                let suffix = v
                    .name
                    .strip_prefix("EVENT_TYPE_")
                    .unwrap()
                    .to_ascii_lowercase();
                reflected.insert((
                    format!("{}.{suffix}", file.package),
                    o.payload,
                    Visibility::try_from(o.audience).unwrap(),
                ));
            }
        }
    }
    assert_eq!(reflected, declared());
}
