//! The credit calculation on its own: hand-computed examples a billing
//! analyst can check on paper, and properties that hold for any input.

use concierge_common::error::Error;
use concierge_disputes::credit::{Calculate, calculate};
use concierge_disputes::resources::{default_settings, sum};
use concierge_proto::disputes::{
    CreditCalculation, CreditInputs, CreditMethod, RoundingMode, SlaCreditTier,
    calculation_step::Value,
};
use concierge_proto::types::Money;
use proptest::prelude::*;

fn money(code: &str, minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: code.into(),
        minor_units: minor,
    })
}

fn at(s: &str) -> prost_types::Timestamp {
    concierge_common::clock::to_proto(s.parse().unwrap())
}

fn secs(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// A 1,200.00 USD/month circuit billed in full and disputed in full, down
/// for `outage` seconds in the month from `start` to `end`.
fn circuit(code: &str, mrc: i64, outage: i64, start: &str, end: &str) -> CreditInputs {
    CreditInputs {
        billed_amount: money(code, mrc),
        disputed_amount: money(code, mrc),
        mrc: money(code, mrc),
        outage_duration: secs(outage),
        period_start_time: Some(at(start)),
        period_end_time: Some(at(end)),
        ..Default::default()
    }
}

fn run(method: CreditMethod, inputs: CreditInputs, rounding: RoundingMode) -> CreditCalculation {
    let tiers = default_settings().sla_credit_tiers;
    calculate(
        "inputs",
        Calculate {
            line_id: "1",
            method,
            inputs,
            rounding,
            default_tiers: &tiers,
            now: "2026-12-01T00:00:00Z".parse().unwrap(),
        },
    )
    .unwrap()
}

fn result(c: &CreditCalculation) -> (String, i64) {
    let m = c.result.clone().unwrap();
    (m.currency_code, m.minor_units)
}

const HALF_DAY: i64 = 7 * 3600 + 1800;

#[test]
fn a_7h30_outage_on_a_1200_usd_circuit_in_a_30_day_month_is_12_50() {
    // 1,200.00 × 7.5 h / 720 h = 12.50 exactly.
    let c = run(
        CreditMethod::ProratedOutage,
        circuit(
            "USD",
            120_000,
            HALF_DAY,
            "2026-11-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ),
        RoundingMode::HalfEven,
    );
    assert_eq!(result(&c), ("USD".into(), 1250));
    assert!(!c.capped);
    assert_eq!(c.rounding_description, "half-even to 0.01 USD");
    let steps: Vec<&str> = c.steps.iter().map(|s| s.description.as_str()).collect();
    assert_eq!(
        steps,
        [
            "Outage duration",
            "Billing period length",
            "Outage share of the period",
            "Credit before rounding",
            "Rounded"
        ]
    );
    assert_eq!(
        c.steps[2].value,
        Some(Value::Decimal("0.0104166666666666666666…".into()))
    );
    assert_eq!(c.steps[3].value, Some(Value::Decimal("12.5".into())));
    assert!(
        c.steps[1].formula.ends_with("= 720h"),
        "{}",
        c.steps[1].formula
    );
}

#[test]
fn the_same_outage_in_a_31_day_month_rounds_half_even_to_12_10() {
    // 1,200.00 × 7.5 / 744 = 12.0967741935… → 12.10.
    let c = run(
        CreditMethod::ProratedOutage,
        circuit(
            "USD",
            120_000,
            HALF_DAY,
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
        RoundingMode::HalfEven,
    );
    assert_eq!(result(&c), ("USD".into(), 1210));
    assert_eq!(
        c.steps[3].value,
        Some(Value::Decimal("12.0967741935483870967741…".into()))
    );
    let down = run(
        CreditMethod::ProratedOutage,
        circuit(
            "USD",
            120_000,
            HALF_DAY,
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
        RoundingMode::Down,
    );
    assert_eq!(result(&down), ("USD".into(), 1209));
}

#[test]
fn jpy_has_no_minor_unit_and_a_half_yen_rounds_to_even() {
    // 150,000 JPY × 7.5 / 720 = 1,562.5 JPY: half-even keeps 1,562,
    // half-up makes 1,563.
    let inputs = circuit(
        "JPY",
        150_000,
        HALF_DAY,
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    );
    let even = run(
        CreditMethod::ProratedOutage,
        inputs.clone(),
        RoundingMode::HalfEven,
    );
    assert_eq!(result(&even), ("JPY".into(), 1562));
    assert_eq!(even.rounding_description, "half-even to 1 JPY");
    let up = run(CreditMethod::ProratedOutage, inputs, RoundingMode::HalfUp);
    assert_eq!(result(&up), ("JPY".into(), 1563));
}

#[test]
fn sla_tiers_apply_at_their_band_edges() {
    // The default bands: [1h, 4h) 5 %, [4h, 8h) 10 %, [8h, 12h) 25 %,
    // [12h, 24h) 50 %, 24h and more 100 %.
    let at_outage = |s: i64| {
        let c = run(
            CreditMethod::SlaTier,
            circuit(
                "USD",
                120_000,
                s,
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            RoundingMode::HalfEven,
        );
        result(&c).1
    };
    assert_eq!(at_outage(3599), 0, "under an hour earns nothing");
    assert_eq!(at_outage(3600), 6_000, "1h exactly is in the 5 % band");
    assert_eq!(at_outage(4 * 3600 - 1), 6_000);
    assert_eq!(
        at_outage(4 * 3600),
        12_000,
        "4h exactly is in the 10 % band"
    );
    assert_eq!(at_outage(HALF_DAY), 12_000);
    assert_eq!(at_outage(8 * 3600), 30_000);
    assert_eq!(at_outage(24 * 3600 - 1), 60_000);
    assert_eq!(at_outage(24 * 3600), 120_000);
    let c = run(
        CreditMethod::SlaTier,
        circuit(
            "USD",
            120_000,
            4 * 3600,
            "2026-11-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ),
        RoundingMode::HalfEven,
    );
    assert_eq!(
        c.steps[1].formula, "band 2: 4h ≤ 4h < 8h earns 10% of the MRC",
        "the band is shown"
    );
    assert_eq!(
        c.inputs.unwrap().sla_credit_tiers.len(),
        5,
        "the configured table used is in the inputs"
    );
}

#[test]
fn a_credit_above_the_disputed_amount_is_capped_and_says_so() {
    let mut inputs = circuit(
        "USD",
        120_000,
        48 * 3600,
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    );
    inputs.disputed_amount = money("USD", 5_000);
    let c = run(CreditMethod::SlaTier, inputs, RoundingMode::HalfEven);
    assert!(c.capped);
    assert_eq!(result(&c), ("USD".into(), 5_000));
    assert_eq!(
        c.steps.last().unwrap().description,
        "Capped at the disputed amount"
    );
}

fn refused(method: CreditMethod, inputs: CreditInputs) -> Vec<String> {
    let tiers = default_settings().sla_credit_tiers;
    let err = calculate(
        "inputs",
        Calculate {
            line_id: "",
            method,
            inputs,
            rounding: RoundingMode::HalfEven,
            default_tiers: &tiers,
            now: "2026-12-01T00:00:00Z".parse().unwrap(),
        },
    )
    .unwrap_err();
    let Error::InvalidArgument(v) = err else {
        panic!("{err:?}")
    };
    let mut fields: Vec<String> = v.into_iter().map(|v| v.field).collect();
    fields.sort();
    fields
}

#[test]
fn bad_inputs_name_their_field() {
    let ok = || {
        circuit(
            "USD",
            120_000,
            HALF_DAY,
            "2026-11-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
        )
    };
    let mut mixed = ok();
    mixed.mrc = money("EUR", 120_000);
    assert_eq!(
        refused(CreditMethod::ProratedOutage, mixed),
        ["inputs.mrc.currency_code"]
    );
    let mut unknown = ok();
    unknown.billed_amount = money("XYZ", 1);
    assert_eq!(
        refused(CreditMethod::Full, unknown),
        ["inputs.billed_amount.currency_code"]
    );
    let mut backwards = ok();
    backwards.period_end_time = Some(at("2026-10-01T00:00:00Z"));
    assert_eq!(
        refused(CreditMethod::ProratedOutage, backwards),
        ["inputs.period_end_time"]
    );
    let mut zero = ok();
    zero.disputed_amount = money("USD", 0);
    assert_eq!(
        refused(CreditMethod::Full, zero),
        ["inputs.disputed_amount.minor_units"]
    );
    let mut more = ok();
    more.disputed_amount = money("USD", 120_001);
    assert_eq!(
        refused(CreditMethod::Full, more),
        ["inputs.disputed_amount"]
    );
    let mut no_reason = ok();
    no_reason.manual_amount = money("USD", 100);
    assert_eq!(
        refused(CreditMethod::Manual, no_reason),
        ["inputs.manual_reason"]
    );
    assert_eq!(refused(CreditMethod::Unspecified, ok()), ["method"]);
    let mut bad_tier = ok();
    bad_tier.sla_credit_tiers = vec![SlaCreditTier {
        min_outage: secs(3600),
        max_outage: secs(60),
        credit_basis_points: 20_000,
    }];
    assert_eq!(
        refused(CreditMethod::SlaTier, bad_tier),
        [
            "inputs.sla_credit_tiers[0].credit_basis_points",
            "inputs.sla_credit_tiers[0].max_outage"
        ]
    );
}

fn method() -> impl Strategy<Value = CreditMethod> {
    prop_oneof![
        Just(CreditMethod::Full),
        Just(CreditMethod::ProratedOutage),
        Just(CreditMethod::SlaTier),
        Just(CreditMethod::Manual),
    ]
}

fn rounding() -> impl Strategy<Value = RoundingMode> {
    prop_oneof![
        Just(RoundingMode::HalfEven),
        Just(RoundingMode::HalfUp),
        Just(RoundingMode::Down),
    ]
}

fn currency() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("USD"), Just("JPY"), Just("KWD"), Just("TRY")]
}

prop_compose! {
    /// A line's inputs: billed ≥ disputed > 0, any MRC, an outage up to a
    /// year, a period of a day to a year, a manual amount up to twice the
    /// disputed one.
    fn line_inputs()(
        code in currency(),
        billed in 1i64..=10_000_000_000,
        disputed_share in 1u32..=1000,
        mrc in 1i64..=1_000_000_000_000,
        outage in 0i64..=366 * 86_400,
        period_days in 1i64..=366,
        start_day in 0i64..=20_000,
        manual_share in 1u32..=2000,
    ) -> CreditInputs {
        let disputed = (i128::from(billed) * i128::from(disputed_share) / 1000).max(1) as i64;
        let manual = (i128::from(disputed) * i128::from(manual_share) / 1000).max(1) as i64;
        let start = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(24 * start_day);
        let end = start + jiff::SignedDuration::from_hours(24 * period_days);
        CreditInputs {
            billed_amount: money(code, billed),
            disputed_amount: money(code, disputed),
            mrc: money(code, mrc),
            outage_duration: secs(outage),
            period_start_time: Some(concierge_common::clock::to_proto(start)),
            period_end_time: Some(concierge_common::clock::to_proto(end)),
            manual_amount: money(code, manual),
            manual_reason: "agreed with the client".into(),
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn a_credit_never_exceeds_the_disputed_amount(
        inputs in line_inputs(), m in method(), r in rounding()
    ) {
        let disputed = inputs.disputed_amount.clone().unwrap();
        let c = run(m, inputs, r);
        let got = c.result.clone().unwrap();
        prop_assert_eq!(&got.currency_code, &disputed.currency_code);
        prop_assert!(got.minor_units >= 0);
        prop_assert!(got.minor_units <= disputed.minor_units);
        prop_assert_eq!(c.capped, c.steps.last().unwrap().description == "Capped at the disputed amount");
    }

    #[test]
    fn rounding_is_stable_when_the_calculation_is_run_again_from_its_own_inputs(
        inputs in line_inputs(), m in method(), r in rounding()
    ) {
        let first = run(m, inputs, r);
        let again = run(
            m,
            first.inputs.clone().unwrap(),
            RoundingMode::try_from(first.rounding_mode).unwrap(),
        );
        prop_assert_eq!(first.result, again.result);
        prop_assert_eq!(first.steps, again.steps);
    }

    #[test]
    fn the_lines_sum_exactly_to_the_total(
        lines in proptest::collection::vec((line_inputs(), method(), rounding()), 1..20)
    ) {
        // One currency per proposal, as the service requires.
        let code = lines[0].0.disputed_amount.clone().unwrap().currency_code;
        let results: Vec<Money> = lines
            .into_iter()
            .map(|(mut i, m, r)| {
                for a in [&mut i.billed_amount, &mut i.disputed_amount, &mut i.mrc, &mut i.manual_amount]
                    .into_iter()
                    .flatten()
                {
                    a.currency_code = code.clone();
                }
                run(m, i, r).result.unwrap()
            })
            .collect();
        let total = sum(results.iter()).unwrap();
        let by_hand: i128 = results.iter().map(|m| i128::from(m.minor_units)).sum();
        prop_assert_eq!(i128::from(total.minor_units), by_hand);
        prop_assert_eq!(total.currency_code, code);
    }
}
