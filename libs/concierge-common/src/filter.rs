//! AIP-160 filters, parsed once and turned into parameterised SQL over the
//! fields a list method documents. Supported: comparisons `= != < <= > >=`
//! and `:` (has / substring), `AND`, `OR`, `NOT` / `-`, parentheses and
//! implicit AND between terms. As AIP-160 says, OR binds tighter than AND.
//! A field the list method does not document is INVALID_ARGUMENT naming it.
//!
//! A filter is bounded before any of it is parsed or turned into SQL: its
//! length, how deep parentheses and negations nest (the parser recurses once
//! per level, and a tokio worker's stack holds about 1,500), how many
//! comparisons it holds (SQLite refuses expression trees deeper than 1,000)
//! and how long one value is (SQLite refuses long LIKE patterns). Past a bound
//! the caller gets INVALID_ARGUMENT on `filter`, never a crash or INTERNAL.

use crate::error::{Error, Result};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses and negations accepted.
pub const MAX_DEPTH: usize = 32;
/// Most comparisons one filter may hold.
pub const MAX_TERMS: usize = 100;
/// Longest value one comparison may hold, in characters.
pub const MAX_VALUE_CHARS: usize = 512;

/// How a filterable field is stored and compared.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    Text,
    Int,
    Bool,
    /// RFC 3339 in the filter, microseconds since the epoch in the column.
    Timestamp,
    /// A protobuf enum: value names, full (`TIER_ENTERPRISE`) or without the
    /// prefix (`ENTERPRISE`), parsed by the generated `from_str_name`.
    Enum {
        parse: fn(&str) -> Option<i32>,
        prefix: &'static str,
    },
}

/// A field a list method lets callers filter and order on.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The name in the API, e.g. `account_manager`, `mrc.minor_units`.
    pub name: &'static str,
    /// The column that holds it.
    pub column: &'static str,
    pub ty: FieldType,
}

/// A value bound into SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    Op(&'static str),
    Str(String),
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>> {
    let bad = |why: String| Error::invalid("filter", why);
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::LParen);
                i += 1
            }
            ')' => {
                out.push(Token::RParen);
                i += 1
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(bad("unterminated string".into())),
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                s.push(*n);
                            }
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            '=' => {
                out.push(Token::Op("="));
                i += 1
            }
            ':' => {
                out.push(Token::Op(":"));
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Op("!="));
                i += 2
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                out.push(Token::Op(match (c, eq) {
                    ('<', true) => "<=",
                    ('<', false) => "<",
                    (_, true) => ">=",
                    _ => ">",
                }));
                i += if eq { 2 } else { 1 };
            }
            '-' if out.last().is_none_or(|t| {
                matches!(
                    t,
                    Token::LParen
                        | Token::And
                        | Token::Or
                        | Token::Not
                        | Token::Word(_)
                        | Token::Str(_)
                        | Token::RParen
                )
            }) && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphabetic() || *n == '(') =>
            {
                out.push(Token::Minus);
                i += 1
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(
                        chars[i],
                        '(' | ')' | '=' | ':' | '<' | '>' | '!' | '"' | '\''
                    )
                {
                    i += 1;
                }
                if start == i {
                    return Err(bad(format!("unexpected character {c:?}")));
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Word(word),
                });
            }
        }
    }
    Ok(out)
}

/// A parsed filter, already checked against the documented fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        column: &'static str,
        op: &'static str,
        value: Value,
    },
    /// `field:"text"` on a text field: substring match.
    Contains {
        column: &'static str,
        needle: String,
    },
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    fields: &'a [Field],
    depth: usize,
    terms: usize,
}

/// Parses `filter` against `fields`; `None` for an empty filter.
pub fn parse(filter: &str, fields: &[Field]) -> Result<Option<Expr>> {
    if filter.trim().is_empty() {
        return Ok(None);
    }
    if filter.len() > MAX_FILTER_LEN {
        return Err(Error::invalid(
            "filter",
            format!(
                "is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                filter.len()
            ),
        ));
    }
    let mut p = Parser {
        tokens: tokenize(filter)?,
        pos: 0,
        fields,
        depth: 0,
        terms: 0,
    };
    let expr = p.and_expr()?;
    if p.pos != p.tokens.len() {
        return Err(Error::invalid(
            "filter",
            format!("unexpected {:?} at token {}", p.tokens[p.pos], p.pos + 1),
        ));
    }
    Ok(Some(expr))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut terms = vec![self.or_expr()?];
        loop {
            match self.peek() {
                Some(Token::And) => {
                    self.pos += 1;
                    terms.push(self.or_expr()?);
                }
                Some(Token::RParen) | None => break,
                // Juxtaposed terms are an implicit AND.
                Some(_) => terms.push(self.or_expr()?),
            }
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    fn or_expr(&mut self) -> Result<Expr> {
        let mut terms = vec![self.unary()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    /// Enters one more level of nesting, refusing past [`MAX_DEPTH`].
    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::invalid(
                "filter",
                format!("nests parentheses and negations more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr> {
        if matches!(self.peek(), Some(Token::Not) | Some(Token::Minus)) {
            self.pos += 1;
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        match self.next() {
            Some(Token::LParen) => {
                self.deeper()?;
                let e = self.and_expr()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token::RParen) => Ok(e),
                    _ => Err(Error::invalid("filter", "missing closing parenthesis")),
                }
            }
            Some(Token::Word(name)) => {
                let field = *self.fields.iter().find(|f| f.name == name).ok_or_else(|| {
                    let known: Vec<_> = self.fields.iter().map(|f| f.name).collect();
                    Error::invalid(
                        "filter",
                        format!(
                            "unknown field `{name}`; filterable fields: {}",
                            known.join(", ")
                        ),
                    )
                })?;
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    _ => {
                        return Err(Error::invalid(
                            "filter",
                            format!("expected a comparison after `{name}`"),
                        ));
                    }
                };
                let raw = match self.next() {
                    Some(Token::Str(s)) => s,
                    Some(Token::Word(w)) => w,
                    _ => {
                        return Err(Error::invalid(
                            "filter",
                            format!("expected a value after `{name} {op}`"),
                        ));
                    }
                };
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(Error::invalid(
                        "filter",
                        format!("holds more than {MAX_TERMS} comparisons"),
                    ));
                }
                if raw.chars().count() > MAX_VALUE_CHARS {
                    return Err(Error::invalid(
                        "filter",
                        format!(
                            "the value compared with `{name}` is longer than {MAX_VALUE_CHARS} characters"
                        ),
                    ));
                }
                comparison(field, op, raw)
            }
            other => Err(Error::invalid(
                "filter",
                format!("expected a field or `(`, found {other:?}"),
            )),
        }
    }
}

fn comparison(field: Field, op: &'static str, raw: String) -> Result<Expr> {
    let bad = |why: String| Error::invalid("filter", format!("`{}`: {why}", field.name));
    if op == ":" {
        return match field.ty {
            FieldType::Text => Ok(Expr::Contains {
                column: field.column,
                needle: raw,
            }),
            // `has` on a scalar is equality.
            _ => comparison(field, "=", raw),
        };
    }
    let value = match field.ty {
        FieldType::Text => Value::Text(raw),
        FieldType::Int => Value::Int(
            raw.parse()
                .map_err(|_| bad(format!("{raw:?} is not an integer")))?,
        ),
        FieldType::Bool => Value::Int(match raw.as_str() {
            "true" => 1,
            "false" => 0,
            _ => return Err(bad(format!("{raw:?} is not true or false"))),
        }),
        FieldType::Timestamp => {
            let t: jiff::Timestamp = raw
                .parse()
                .map_err(|_| bad(format!("{raw:?} is not an RFC 3339 timestamp")))?;
            Value::Int(t.as_microsecond())
        }
        FieldType::Enum { parse, prefix } => {
            let upper = raw.to_ascii_uppercase();
            match parse(&upper).or_else(|| parse(&format!("{prefix}{upper}"))) {
                Some(n) if n != 0 => Value::Int(i64::from(n)),
                _ => return Err(bad(format!("{raw:?} is not a value of {prefix}*"))),
            }
        }
    };
    if matches!(field.ty, FieldType::Bool | FieldType::Enum { .. }) && !matches!(op, "=" | "!=") {
        return Err(bad(format!("only = and != apply, not {op}")));
    }
    Ok(Expr::Compare {
        column: field.column,
        op,
        value,
    })
}

impl Expr {
    /// Appends this expression as SQL to `sql`, pushing bound values to
    /// `params`; placeholders are `$n`, which SQLite and PostgreSQL both take.
    pub fn to_sql(&self, sql: &mut String, params: &mut Vec<Value>) {
        match self {
            Expr::And(terms) | Expr::Or(terms) => {
                let joiner = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                sql.push('(');
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(joiner);
                    }
                    t.to_sql(sql, params);
                }
                sql.push(')');
            }
            Expr::Not(inner) => {
                sql.push_str("NOT (");
                inner.to_sql(sql, params);
                sql.push(')');
            }
            Expr::Compare { column, op, value } => {
                params.push(value.clone());
                let op = if *op == "!=" { "<>" } else { op };
                // A trailing `*` on a text equality is a prefix match (AIP-160 wildcard).
                if let (Value::Text(s), "=") = (value, op)
                    && let Some(prefix) = s.strip_suffix('*')
                {
                    params.pop();
                    params.push(Value::Text(format!("{}%", escape_like(prefix))));
                    sql.push_str(&format!("{column} LIKE ${} ESCAPE '\\'", params.len()));
                    return;
                }
                sql.push_str(&format!("{column} {op} ${}", params.len()));
            }
            Expr::Contains { column, needle } => {
                params.push(Value::Text(format!("%{}%", escape_like(needle))));
                sql.push_str(&format!("{column} LIKE ${} ESCAPE '\\'", params.len()));
            }
        }
    }
}

impl Expr {
    /// Whether a row whose columns `value` reads matches, with the meaning
    /// [`Expr::to_sql`] gives the same filter (a column it cannot read
    /// matches nothing): how a filter is checked against one resource in
    /// memory, e.g. a chase rule's expression against the case a change
    /// just wrote.
    pub fn matches(&self, value: &impl Fn(&str) -> Option<Value>) -> bool {
        match self {
            Expr::And(terms) => terms.iter().all(|t| t.matches(value)),
            Expr::Or(terms) => terms.iter().any(|t| t.matches(value)),
            Expr::Not(inner) => !inner.matches(value),
            Expr::Compare {
                column,
                op,
                value: wanted,
            } => {
                let Some(have) = value(column) else {
                    return false;
                };
                let ordering = match (&have, wanted) {
                    (Value::Text(h), Value::Text(w)) => {
                        if *op == "="
                            && let Some(prefix) = w.strip_suffix('*')
                        {
                            return h.starts_with(prefix);
                        }
                        h.cmp(w)
                    }
                    (Value::Int(h), Value::Int(w)) => h.cmp(w),
                    _ => return false,
                };
                use std::cmp::Ordering::*;
                match *op {
                    "=" => ordering == Equal,
                    "!=" => ordering != Equal,
                    "<" => ordering == Less,
                    "<=" => ordering != Greater,
                    ">" => ordering == Greater,
                    ">=" => ordering != Less,
                    _ => false,
                }
            }
            Expr::Contains { column, needle } => match value(column) {
                Some(Value::Text(h)) => h.contains(needle.as_str()),
                _ => false,
            },
        }
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_filter_matches_in_memory_as_it_does_in_sql() {
        let row = |c: &str| match c {
            "display_name" => Some(Value::Text("Acme HQ".into())),
            "tier" => Some(Value::Int(3)),
            "mrc_minor_units" => Some(Value::Int(3_000_000)),
            "monitored" => Some(Value::Int(1)),
            _ => None,
        };
        let m = |f: &str| parse(f, FIELDS).unwrap().unwrap().matches(&row);
        assert!(m("tier = ENTERPRISE AND mrc.minor_units >= 3000000"));
        assert!(!m("tier = STANDARD OR mrc.minor_units > 3000000"));
        assert!(m("display_name = \"Acme*\" AND NOT monitored = false"));
        assert!(m("display_name:\"HQ\""));
        assert!(!m("display_name:\"hq\""));
        assert!(m("mrc.minor_units != 1 AND mrc.minor_units < 3000001"));
        // A column the row does not have matches nothing, negated or not.
        assert!(!m("update_time > \"2026-01-01T00:00:00Z\""));
        assert!(m("NOT update_time > \"2026-01-01T00:00:00Z\""));
    }

    fn sql(filter: &str) -> (String, Vec<Value>) {
        let mut s = String::new();
        let mut p = Vec::new();
        parse(filter, FIELDS)
            .unwrap()
            .unwrap()
            .to_sql(&mut s, &mut p);
        (s, p)
    }

    #[test]
    fn or_binds_tighter_than_and() {
        let (s, p) = sql("tier = ENTERPRISE AND mrc.minor_units >= 3000000 OR monitored = true");
        assert_eq!(
            s,
            "(tier = $1 AND (mrc_minor_units >= $2 OR monitored = $3))"
        );
        assert_eq!(p, vec![Value::Int(3), Value::Int(3_000_000), Value::Int(1)]);
    }

    #[test]
    fn not_parentheses_and_text_matches() {
        let (s, p) = sql(
            r#"NOT (display_name:"acme" OR display_name = "Glo*") update_time > "2026-01-01T00:00:00Z""#,
        );
        assert_eq!(
            s,
            "(NOT ((display_name LIKE $1 ESCAPE '\\' OR display_name LIKE $2 ESCAPE '\\')) AND update_time > $3)"
        );
        assert_eq!(p[0], Value::Text("%acme%".into()));
        assert_eq!(p[1], Value::Text("Glo%".into()));
        assert_eq!(p[2], Value::Int(1_767_225_600_000_000));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse("colour = red", FIELDS).unwrap_err();
        let Error::InvalidArgument(v) = err else {
            panic!()
        };
        assert_eq!(v[0].field, "filter");
        assert!(
            v[0].description.contains("unknown field `colour`"),
            "{}",
            v[0].description
        );
    }

    #[test]
    fn bad_values_and_syntax_are_refused() {
        for f in [
            "tier = GOLDISH",
            "mrc.minor_units = lots",
            "update_time > yesterday",
            "(tier = ENTERPRISE",
            "tier =",
            "tier < ENTERPRISE",
        ] {
            assert!(parse(f, FIELDS).is_err(), "{f} should be refused");
        }
    }

    fn refusal(filter: &str) -> String {
        match parse(filter, FIELDS) {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v[0].field, "filter");
                v[0].description.clone()
            }
            other => panic!(
                "{} bytes: expected INVALID_ARGUMENT, got {other:?}",
                filter.len()
            ),
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // 1,800 levels overflowed a worker's stack and aborted the process.
        let deep = format!("{}tier = ENTERPRISE{}", "(".repeat(1800), ")".repeat(1800));
        assert!(refusal(&deep).contains("deep"));
        let nots = format!("{}tier = ENTERPRISE", "NOT ".repeat(999));
        assert!(refusal(&nots).contains("deep"));
        let minus = format!("{}display_name = x", "-".repeat(999));
        assert!(!refusal(&minus).is_empty());
        // At the bound it still parses.
        let ok = format!(
            "{}tier = ENTERPRISE{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&ok, FIELDS).is_ok());
    }

    #[test]
    fn wide_and_long_filters_are_refused() {
        let wide = vec!["tier = ENTERPRISE"; 1000].join(" OR ");
        assert!(refusal(&wide).contains("bytes"));
        let wide = vec!["monitored=true"; MAX_TERMS + 1].join(" OR ");
        assert!(wide.len() < MAX_FILTER_LEN);
        assert!(refusal(&wide).contains("comparisons"));
        let ok = vec!["monitored=true"; MAX_TERMS].join(" OR ");
        assert!(parse(&ok, FIELDS).is_ok());
        let pattern = format!("display_name:\"{}\"", "%_".repeat(MAX_VALUE_CHARS));
        assert!(refusal(&pattern).contains("longer than"));
        let huge = format!("display_name:\"{}\"", "%_".repeat(20_000));
        assert!(refusal(&huge).contains("bytes"));
    }
}
