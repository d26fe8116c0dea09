//! Money on the wire is `concierge.types.v1.Money`: integer minor units of an
//! ISO 4217 currency. This module checks it and prints it for people.

use concierge_proto::types::Money;
use iso_currency::Currency;

use crate::error::{Error, Result};

/// Checks a money field: a known ISO 4217 currency; `allow_negative` for
/// adjustments only.
pub fn check(field: &str, money: &Money, allow_negative: bool) -> Result<()> {
    let mut v = crate::error::Violations::new();
    if Currency::from_code(&money.currency_code).is_none() {
        v.add(
            format!("{field}.currency_code"),
            format!("{:?} is not an ISO 4217 currency code", money.currency_code),
        );
    }
    if !allow_negative && money.minor_units < 0 {
        v.add(format!("{field}.minor_units"), "must not be negative");
    }
    v.into_result()
}

/// Decimal places of a currency's minor unit (USD 2, JPY 0, KWD 3).
pub fn exponent(currency_code: &str) -> u32 {
    Currency::from_code(currency_code)
        .and_then(|c| c.exponent())
        .map(u32::from)
        .unwrap_or(2)
}

/// "30,000.00 USD", "1,500 JPY", "-0.500 KWD".
pub fn format(money: &Money) -> String {
    let exp = exponent(&money.currency_code);
    let scale = 10i128.pow(exp);
    let units = i128::from(money.minor_units);
    let (sign, abs) = if units < 0 {
        ("-", -units)
    } else {
        ("", units)
    };
    let whole = (abs / scale).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if exp == 0 {
        format!("{sign}{grouped} {}", money.currency_code)
    } else {
        format!(
            "{sign}{grouped}.{:0width$} {}",
            abs % scale,
            money.currency_code,
            width = exp as usize
        )
    }
}

/// Parses "30000.00 USD" or "30000 USD" into exact minor units, refusing more
/// decimals than the currency has.
pub fn parse(text: &str) -> Result<Money> {
    let bad = |why: &str| Error::invalid("money", format!("{text:?}: {why}"));
    let (amount, code) = text
        .trim()
        .rsplit_once(' ')
        .ok_or_else(|| bad("write an amount and a currency, e.g. \"30000.00 USD\""))?;
    let code = code.to_ascii_uppercase();
    if Currency::from_code(&code).is_none() {
        return Err(bad("unknown ISO 4217 currency"));
    }
    let exp = exponent(&code) as usize;
    let amount = amount.replace(',', "");
    let (neg, amount) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, amount),
    };
    let (whole, frac) = amount.split_once('.').unwrap_or((&amount, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad("not a decimal amount"));
    }
    if frac.len() > exp {
        return Err(bad("more decimals than the currency has"));
    }
    let digits = format!("{whole}{frac:0<exp$}");
    let minor: i64 = digits.parse().map_err(|_| bad("amount too large"))?;
    Ok(Money {
        currency_code: code,
        minor_units: if neg { -minor } else { minor },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(code: &str, minor: i64) -> Money {
        Money {
            currency_code: code.into(),
            minor_units: minor,
        }
    }

    #[test]
    fn formats_by_currency_exponent() {
        assert_eq!(format(&m("USD", 3_000_000)), "30,000.00 USD");
        assert_eq!(format(&m("JPY", 1500)), "1,500 JPY");
        assert_eq!(format(&m("KWD", -500)), "-0.500 KWD");
    }

    #[test]
    fn parses_exactly_and_refuses_extra_precision() {
        assert_eq!(parse("30000.00 USD").unwrap(), m("USD", 3_000_000));
        assert_eq!(parse("12.5 usd").unwrap(), m("USD", 1250));
        assert_eq!(parse("1500 JPY").unwrap(), m("JPY", 1500));
        assert!(parse("1.5 JPY").is_err());
        assert!(parse("10 XYZ").is_err());
        assert!(parse("ten USD").is_err());
    }

    #[test]
    fn unknown_currency_names_the_field() {
        let err = check("account.mrc", &m("XYZ", 1), false).unwrap_err();
        let Error::InvalidArgument(v) = err else {
            panic!()
        };
        assert_eq!(v[0].field, "account.mrc.currency_code");
    }
}
