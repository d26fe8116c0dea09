//! The credit calculation: a pure function from a method and its inputs to
//! an exact credit with every step shown. Amounts are integer minor units;
//! ratios are kept as exact fractions of integers and rounded once, at the
//! end, by the stated rule, so a calculation re-run from its own inputs
//! gives the same minor unit.

use concierge_common::bounded;
use concierge_common::error::{Error, Result, Violations};
use concierge_common::money;
use concierge_proto::disputes::{
    CalculationStep, CreditCalculation, CreditInputs, CreditMethod, RoundingMode, SlaCreditTier,
    calculation_step,
};
use concierge_proto::types::Money;
use jiff::{SignedDuration, Timestamp};

/// Decimal places shown for an inexact ratio before "…".
const SHOWN_PLACES: usize = 22;

/// The most SLA credit bands one table may hold.
pub const MAX_TIERS: usize = 50;

/// One calculation to make: everything already resolved (the dispute's line,
/// the linked case and the settings filled in), the rounding chosen.
#[derive(Debug, Clone)]
pub struct Calculate<'a> {
    pub line_id: &'a str,
    pub method: CreditMethod,
    pub inputs: CreditInputs,
    pub rounding: RoundingMode,
    /// The configured SLA credit table, used when `inputs` carries none.
    pub default_tiers: &'a [SlaCreditTier],
    pub now: Timestamp,
}

/// An exact non-negative fraction of minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    num: i128,
    den: i128,
}

impl Exact {
    fn whole(minor: i64) -> Self {
        Self {
            num: i128::from(minor),
            den: 1,
        }
    }

    /// Rounds to whole minor units; `num` ≥ 0 and `den` > 0 always hold.
    fn round(self, mode: RoundingMode) -> i128 {
        let q = self.num / self.den;
        let r = self.num % self.den;
        let twice = 2 * r;
        match mode {
            RoundingMode::Down => q,
            RoundingMode::HalfUp => q + i128::from(twice >= self.den && r != 0),
            RoundingMode::HalfEven | RoundingMode::Unspecified => {
                if twice > self.den || (twice == self.den && q % 2 == 1) {
                    q + 1
                } else {
                    q
                }
            }
        }
    }
}

/// `num / den` as a decimal: exact when it ends within [`SHOWN_PLACES`],
/// else cut there and marked "…".
pub fn decimal(num: i128, den: i128, scale_places: u32) -> String {
    // The value is num / (den × 10^scale_places).
    let den = den * 10i128.pow(scale_places);
    let whole = num / den;
    let mut rest = num % den;
    if rest == 0 {
        return whole.to_string();
    }
    let mut out = format!("{whole}.");
    for _ in 0..SHOWN_PLACES {
        rest *= 10;
        out.push(char::from(b'0' + (rest / den) as u8));
        rest %= den;
        if rest == 0 {
            return out;
        }
    }
    out.push('…');
    out
}

/// "7h 30m", "720h", "0s".
pub fn friendly(d: SignedDuration) -> String {
    format!("{d:#}")
}

fn money_of(currency: &str, minor: i128) -> Money {
    Money {
        currency_code: currency.to_string(),
        minor_units: i64::try_from(minor).unwrap_or(i64::MAX),
    }
}

fn step(description: &str, formula: String, value: calculation_step::Value) -> CalculationStep {
    CalculationStep {
        description: description.to_string(),
        formula,
        value: Some(value),
    }
}

/// "half-even to 0.01 USD", "down to 1 JPY".
pub fn rounding_description(mode: RoundingMode, currency: &str) -> String {
    let exp = money::exponent(currency);
    let unit = if exp == 0 {
        "1".to_string()
    } else {
        format!("0.{}1", "0".repeat(exp as usize - 1))
    };
    let rule = match mode {
        RoundingMode::HalfUp => "half away from zero",
        RoundingMode::Down => "down (toward zero)",
        RoundingMode::HalfEven | RoundingMode::Unspecified => "half-even",
    };
    format!("{rule} to {unit} {currency}")
}

/// A positive amount in `currency` (when one is set already), named
/// `field`.
fn positive(v: &mut Violations, field: &str, m: &Option<Money>, currency: &mut Option<String>) {
    let Some(m) = m else {
        v.add(field, "required");
        return;
    };
    if let Err(Error::InvalidArgument(bad)) = money::check(field, m, false) {
        for b in bad {
            v.add(b.field, b.description);
        }
        return;
    }
    if m.minor_units <= 0 {
        v.add(
            format!("{field}.minor_units"),
            "must be positive: a credit is calculated on an amount greater than zero",
        );
    }
    match currency {
        Some(c) if *c != m.currency_code => v.add(
            format!("{field}.currency_code"),
            format!(
                "{} differs from {c}: every amount of a calculation is in one currency",
                m.currency_code
            ),
        ),
        Some(_) => {}
        None => *currency = Some(m.currency_code.clone()),
    }
}

fn duration(v: &mut Violations, field: &str, d: &Option<prost_types::Duration>) -> SignedDuration {
    match bounded::Duration::required(field, d) {
        Ok(d) if d.is_negative() => {
            v.add(field, "must not be negative");
            SignedDuration::ZERO
        }
        Ok(d) => d,
        Err(Error::InvalidArgument(bad)) => {
            for b in bad {
                v.add(b.field, b.description);
            }
            SignedDuration::ZERO
        }
        Err(e) => {
            v.add(field, e.to_string());
            SignedDuration::ZERO
        }
    }
}

fn instant(v: &mut Violations, field: &str, t: &Option<prost_types::Timestamp>) -> Timestamp {
    match bounded::Instant::required(field, t) {
        Ok(t) => t,
        Err(Error::InvalidArgument(bad)) => {
            for b in bad {
                v.add(b.field, b.description);
            }
            Timestamp::UNIX_EPOCH
        }
        Err(e) => {
            v.add(field, e.to_string());
            Timestamp::UNIX_EPOCH
        }
    }
}

/// The SLA credit table, checked: bands with a lower bound, an upper bound
/// above it when set, and a share of at most 100 %.
pub fn check_tiers(v: &mut Violations, field: &str, tiers: &[SlaCreditTier]) {
    if tiers.len() > MAX_TIERS {
        v.add(field, format!("at most {MAX_TIERS} bands"));
        return;
    }
    for (i, t) in tiers.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let min = duration(v, &format!("{f}.min_outage"), &t.min_outage);
        if t.max_outage.is_some() {
            let max = duration(v, &format!("{f}.max_outage"), &t.max_outage);
            if max <= min {
                v.add(
                    format!("{f}.max_outage"),
                    "must be above min_outage (or unset: no upper bound)",
                );
            }
        }
        if !(0..=10_000).contains(&t.credit_basis_points) {
            v.add(
                format!("{f}.credit_basis_points"),
                "must be between 0 and 10000 (100%)",
            );
        }
    }
}

/// The band of `tiers` an outage falls in: at least its lower bound and
/// below its upper bound; the highest lower bound wins where bands overlap.
/// A checked bound of a band (unset or unreadable reads as zero).
fn bound(d: &Option<prost_types::Duration>) -> SignedDuration {
    d.as_ref()
        .and_then(|d| bounded::Duration::try_from(d).ok())
        .map(bounded::Duration::get)
        .unwrap_or(SignedDuration::ZERO)
}

fn band(tiers: &[SlaCreditTier], outage: SignedDuration) -> Option<(usize, &SlaCreditTier)> {
    tiers
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            bound(&t.min_outage) <= outage
                && (t.max_outage.is_none() || outage < bound(&t.max_outage))
        })
        .max_by_key(|(_, t)| bound(&t.min_outage))
}

/// Calculates one credit, checking every input it uses; bad inputs are
/// INVALID_ARGUMENT naming the field under `field` (e.g. "inputs" or
/// "lines[0].inputs").
pub fn calculate(field: &str, c: Calculate<'_>) -> Result<CreditCalculation> {
    use calculation_step::Value;
    let f = |name: &str| format!("{field}.{name}");
    let mut v = Violations::new();
    let method = CreditMethod::try_from(c.method as i32).unwrap_or(CreditMethod::Unspecified);
    if method == CreditMethod::Unspecified {
        v.add(
            "method",
            "required: FULL, PRORATED_OUTAGE, SLA_TIER or MANUAL",
        );
    }
    let rounding = match c.rounding {
        RoundingMode::Unspecified => RoundingMode::HalfEven,
        r => r,
    };
    let i = &c.inputs;
    let mut currency = None;
    positive(
        &mut v,
        &f("disputed_amount"),
        &i.disputed_amount,
        &mut currency,
    );
    positive(&mut v, &f("billed_amount"), &i.billed_amount, &mut currency);
    if let (Some(b), Some(d)) = (&i.billed_amount, &i.disputed_amount)
        && b.currency_code == d.currency_code
        && b.minor_units > 0
        && d.minor_units > b.minor_units
    {
        v.add(
            f("disputed_amount"),
            format!(
                "{} is more than the {} billed",
                money::format(d),
                money::format(b)
            ),
        );
    }
    let needs_outage = matches!(method, CreditMethod::ProratedOutage | CreditMethod::SlaTier);
    let mut outage = SignedDuration::ZERO;
    if needs_outage {
        positive(&mut v, &f("mrc"), &i.mrc, &mut currency);
        outage = duration(&mut v, &f("outage_duration"), &i.outage_duration);
    }
    let (mut start, mut end) = (Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH);
    if method == CreditMethod::ProratedOutage {
        start = instant(&mut v, &f("period_start_time"), &i.period_start_time);
        end = instant(&mut v, &f("period_end_time"), &i.period_end_time);
        if i.period_start_time.is_some() && i.period_end_time.is_some() && end <= start {
            v.add(
                f("period_end_time"),
                "must be after period_start_time: the period cannot end before it starts",
            );
        }
    }
    let tiers: &[SlaCreditTier] = if i.sla_credit_tiers.is_empty() {
        c.default_tiers
    } else {
        &i.sla_credit_tiers
    };
    if method == CreditMethod::SlaTier {
        if tiers.is_empty() {
            v.add(
                f("sla_credit_tiers"),
                "required: no SLA credit table is configured (DisputeSettings.sla_credit_tiers)",
            );
        }
        check_tiers(&mut v, &f("sla_credit_tiers"), tiers);
    }
    if method == CreditMethod::Manual {
        positive(&mut v, &f("manual_amount"), &i.manual_amount, &mut currency);
        if i.manual_reason.trim().is_empty() {
            v.add(
                f("manual_reason"),
                "required: say why this amount is credited",
            );
        } else if i.manual_reason.len() > 4000 {
            v.add(f("manual_reason"), "at most 4000 bytes");
        }
    }
    v.into_result()?;

    let disputed = i.disputed_amount.clone().unwrap_or_default();
    let code = disputed.currency_code.clone();
    let show = |m: i128| money::format(&money_of(&code, m));
    let exp = money::exponent(&code);
    let mut steps = Vec::new();
    let outage_step = |steps: &mut Vec<CalculationStep>| {
        let source = if i.outage_case.is_empty() {
            "as given".to_string()
        } else {
            format!(
                "down time of {}, time waiting on the client left out",
                i.outage_case
            )
        };
        steps.push(step(
            "Outage duration",
            format!("{} ({source})", friendly(outage)),
            Value::Duration(bounded::Duration::to_proto(outage)),
        ));
    };
    let overflow = || Error::invalid(f("mrc"), "the amounts are too large to calculate with");
    let exact = match method {
        CreditMethod::Full => {
            steps.push(step(
                "Whole disputed amount",
                show(disputed.minor_units.into()),
                Value::Amount(disputed.clone()),
            ));
            Exact::whole(disputed.minor_units)
        }
        CreditMethod::ProratedOutage => {
            let mrc = i.mrc.as_ref().map(|m| m.minor_units).unwrap_or_default();
            outage_step(&mut steps);
            let period = end.duration_since(start);
            steps.push(step(
                "Billing period length",
                format!("{start} to {end} = {}", friendly(period)),
                Value::Duration(bounded::Duration::to_proto(period)),
            ));
            let (o, p) = (outage.as_nanos(), period.as_nanos());
            steps.push(step(
                "Outage share of the period",
                format!(
                    "{} / {} = {}",
                    friendly(outage),
                    friendly(period),
                    decimal(o, p, 0)
                ),
                Value::Decimal(decimal(o, p, 0)),
            ));
            let num = i128::from(mrc).checked_mul(o).ok_or_else(overflow)?;
            let before = decimal(num, p, exp);
            steps.push(step(
                "Credit before rounding",
                format!(
                    "{} × {} = {before} {code}",
                    show(mrc.into()),
                    decimal(o, p, 0)
                ),
                Value::Decimal(before),
            ));
            Exact { num, den: p }
        }
        CreditMethod::SlaTier => {
            let mrc = i.mrc.as_ref().map(|m| m.minor_units).unwrap_or_default();
            outage_step(&mut steps);
            let (bp, band_text) = match band(tiers, outage) {
                Some((n, t)) => {
                    let lo = bound(&t.min_outage);
                    let hi = t
                        .max_outage
                        .map(|d| format!(" < {}", friendly(bound(&Some(d)))))
                        .unwrap_or_default();
                    (
                        t.credit_basis_points,
                        format!(
                            "band {}: {} ≤ {}{hi} earns {}% of the MRC",
                            n + 1,
                            friendly(lo),
                            friendly(outage),
                            decimal(t.credit_basis_points.into(), 100, 0)
                        ),
                    )
                }
                None => (
                    0,
                    format!("no band covers {}: no SLA credit", friendly(outage)),
                ),
            };
            let share = decimal(bp.into(), 10_000, 0);
            steps.push(step(
                "SLA credit band",
                band_text,
                Value::Decimal(share.clone()),
            ));
            let num = i128::from(mrc) * i128::from(bp);
            let before = decimal(num, 10_000, exp);
            steps.push(step(
                "Credit before rounding",
                format!("{} × {share} = {before} {code}", show(mrc.into())),
                Value::Decimal(before),
            ));
            Exact { num, den: 10_000 }
        }
        CreditMethod::Manual | CreditMethod::Unspecified => {
            let m = i.manual_amount.clone().unwrap_or_default();
            steps.push(step(
                "Amount set by hand",
                format!("{}: {}", show(m.minor_units.into()), i.manual_reason),
                Value::Amount(m.clone()),
            ));
            Exact::whole(m.minor_units)
        }
    };
    let rounded = exact.round(rounding);
    let description = rounding_description(rounding, &code);
    if exact.den != 1 {
        steps.push(step(
            "Rounded",
            format!(
                "{} {code} rounded {description}",
                decimal(exact.num, exact.den, exp)
            ),
            Value::Amount(money_of(&code, rounded)),
        ));
    }
    let capped = rounded > i128::from(disputed.minor_units);
    let result = if capped {
        steps.push(step(
            "Capped at the disputed amount",
            format!("min({}, {})", show(rounded), money::format(&disputed)),
            Value::Amount(disputed.clone()),
        ));
        i128::from(disputed.minor_units)
    } else {
        rounded
    };
    let mut used = c.inputs.clone();
    if method == CreditMethod::SlaTier && used.sla_credit_tiers.is_empty() {
        used.sla_credit_tiers = tiers.to_vec();
    }
    Ok(CreditCalculation {
        line_id: c.line_id.to_string(),
        method: method as i32,
        inputs: Some(used),
        steps,
        rounding_mode: rounding as i32,
        rounding_description: description,
        result: Some(money_of(&code, result)),
        capped,
        calculate_time: Some(concierge_common::clock::to_proto(c.now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_modes_at_the_half() {
        let half = |n: i128| Exact {
            num: 2 * n + 1,
            den: 2,
        };
        assert_eq!(half(0).round(RoundingMode::HalfEven), 0);
        assert_eq!(half(1).round(RoundingMode::HalfEven), 2);
        assert_eq!(half(0).round(RoundingMode::HalfUp), 1);
        assert_eq!(half(0).round(RoundingMode::Down), 0);
        let third = Exact { num: 2, den: 3 };
        assert_eq!(third.round(RoundingMode::HalfEven), 1);
        assert_eq!(third.round(RoundingMode::Down), 0);
    }

    #[test]
    fn decimals_are_exact_or_marked() {
        assert_eq!(decimal(1250, 1, 2), "12.5");
        assert_eq!(decimal(1, 3, 0), "0.3333333333333333333333…");
        assert_eq!(decimal(7, 1, 0), "7");
    }
}
