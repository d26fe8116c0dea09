//! Everything a caller can send as text or as a wire number, thrown at the
//! parsers that read it: no input may panic, overflow the stack or run
//! unbounded, and every refusal is INVALID_ARGUMENT naming the field.
//!
//! CI runs 500 to 2,000 cases per target; a long run is
//! `PROPTEST_CASES=2000000 cargo test -p concierge-common --test fuzz --release`.

use concierge_common::bounded;
use concierge_common::error::Error;
use concierge_common::filter::{self, Field, FieldType};
use concierge_common::paging::{Cursor, PageQuery, PageTokens};
use concierge_common::{money, names, resource};
use proptest::prelude::*;

fn tier(s: &str) -> Option<i32> {
    match s {
        "TIER_STANDARD" => Some(1),
        "TIER_ENTERPRISE" => Some(3),
        _ => None,
    }
}

const FIELDS: &[Field] = &[
    Field {
        name: "display_name",
        column: "display_name",
        ty: FieldType::Text,
    },
    Field {
        name: "tier",
        column: "tier",
        ty: FieldType::Enum {
            parse: tier,
            prefix: "TIER_",
        },
    },
    Field {
        name: "mrc.minor_units",
        column: "mrc_minor_units",
        ty: FieldType::Int,
    },
    Field {
        name: "update_time",
        column: "update_time",
        ty: FieldType::Timestamp,
    },
    Field {
        name: "monitored",
        column: "monitored",
        ty: FieldType::Bool,
    },
];

/// A refusal is a field violation on `field`, never another kind of error.
fn refused_on(
    result: Result<impl std::fmt::Debug, Error>,
    field: &str,
) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        match e {
            Error::InvalidArgument(v) => prop_assert_eq!(&v[0].field, field),
            other => prop_assert!(false, "{field}: not INVALID_ARGUMENT: {other:?}"),
        }
    }
    Ok(())
}

/// Filter-shaped text: the grammar's own tokens in any order and nesting,
/// so the parser is driven deep and wide, not only into the tokenizer.
fn filter_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" AND ".to_string()),
        Just(" OR ".to_string()),
        Just("NOT ".to_string()),
        Just("-".to_string()),
        Just("tier = ENTERPRISE".to_string()),
        Just("display_name:\"%_\\\"".to_string()),
        Just("mrc.minor_units >= 9223372036854775807".to_string()),
        Just("update_time < \"9999-12-31T23:59:59Z\"".to_string()),
        Just("monitored != true".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("mrc.minor_units".to_string()),
        Just("colour".to_string()),
        Just("'\\".to_string()),
        Just("ü\u{0}".to_string()),
        any::<char>().prop_map(String::from),
    ];
    // Long enough to cross every bound (length, depth, terms) often.
    prop::collection::vec(token, 0..160).prop_map(|t| t.concat())
}

proptest! {
    // Each case is a whole parse of up to 4 KB; 500 keep CI's share small.
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn filters_never_panic(text in filter_text()) {
        let parsed = filter::parse(&text, FIELDS);
        if let Ok(Some(expr)) = &parsed {
            let mut sql = String::new();
            let mut params = Vec::new();
            expr.to_sql(&mut sql, &mut params);
            prop_assert!(params.len() <= filter::MAX_TERMS);
        }
        refused_on(parsed, "filter")?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn deep_filters_are_refused_whatever_the_nesting(depth in 0usize..5000, not in any::<bool>()) {
        let text = if not {
            format!("{}tier = STANDARD", "NOT ".repeat(depth))
        } else {
            format!("{}tier = STANDARD{}", "(".repeat(depth), ")".repeat(depth))
        };
        let parsed = filter::parse(&text, FIELDS);
        prop_assert_eq!(parsed.is_ok(), depth <= filter::MAX_DEPTH);
        refused_on(parsed, "filter")?;
    }

    #[test]
    fn order_by_never_panics(text in "\\PC{0,300}") {
        refused_on(resource::parse_order_by(&text, FIELDS), "order_by")?;
    }

    #[test]
    fn page_tokens_never_panic(token in "\\PC{0,200}|[A-Za-z0-9_-]{0,100}\\.[A-Za-z0-9_-]{0,40}") {
        let tokens = PageTokens::new(b"fuzz key".to_vec());
        let query = PageQuery {
            parent: "accounts/acme",
            page_size: 10,
            page_token: &token,
            filter: "",
            order_by: "",
            show_deleted: false,
        };
        refused_on(tokens.decode("sites", "apiKeys/x", &query), "page_token")?;
    }

    #[test]
    fn a_minted_token_round_trips_and_a_flipped_byte_is_refused(
        name in "[a-z0-9/-]{1,100}",
        flip in any::<prop::sample::Index>(),
    ) {
        let tokens = PageTokens::new(b"fuzz key".to_vec());
        let first = PageQuery {
            parent: "",
            page_size: 10,
            page_token: "",
            filter: "",
            order_by: "",
            show_deleted: false,
        };
        let cursor = Cursor { name: name.clone(), sort: None };
        let token = tokens.encode("sites", "apiKeys/x", &first, &cursor);
        let next = PageQuery { page_token: &token, ..first };
        prop_assert_eq!(tokens.decode("sites", "apiKeys/x", &next).unwrap(), Some(cursor));
        let mut bytes = token.into_bytes();
        let i = flip.index(bytes.len());
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let next = PageQuery { page_token: &tampered, ..first };
        refused_on(tokens.decode("sites", "apiKeys/x", &next), "page_token")?;
    }

    #[test]
    fn resource_names_never_panic(name in "\\PC{0,200}|(accounts|sites|-|/|[a-z0-9-]{1,70}){0,12}") {
        refused_on(names::parse("name", &name, &["accounts", "sites"]), "name")?;
        refused_on(names::check_id("account_id", &name), "account_id")?;
    }

    #[test]
    fn money_never_panics(text in "\\PC{0,60}|-?[0-9]{0,25}(\\.[0-9]{0,6})? [A-Z]{3}") {
        if let Ok(m) = money::parse(&text) {
            // What parses is exact and formats back to the same amount.
            let again = money::parse(&money::format(&m)).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    #[test]
    fn wire_durations_and_instants_never_panic(seconds in any::<i64>(), nanos in any::<i32>()) {
        let d = prost_types::Duration { seconds, nanos };
        if let Ok(d) = bounded::Duration::try_from(&d) {
            prop_assert!(d.get().unsigned_abs() <= bounded::MAX_DURATION.unsigned_abs());
        }
        let t = prost_types::Timestamp { seconds, nanos };
        if let Ok(t) = bounded::Instant::try_from(&t) {
            prop_assert!(t.get() >= bounded::EARLIEST && t.get() < bounded::LATEST);
            // The engines' widest step from a bounded instant stays in range.
            prop_assert!(t.get().checked_add(bounded::MAX_DURATION).is_ok());
        }
    }
}
