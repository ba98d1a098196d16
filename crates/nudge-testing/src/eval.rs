//! Constant values and content predicates written in tests.
//!
//! Values in a test are literals, turned into the JSON a Segment call would
//! carry so that the engine decodes them exactly as in a replay. Predicates
//! over a sent message's content are evaluated here against the rendered
//! content, which is all text.

use std::str::FromStr;

use nudge_bytecode::{civil_from_days, format_instant};
use nudge_syntax::ast::{BinaryOp, Expr, ExprKind, StrPart, UnaryOp};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};

/// A literal expression as JSON: money and numbers as numbers, times as
/// RFC 3339 strings, durations as whole seconds.
pub(crate) fn to_json(e: &Expr) -> Result<Json, String> {
    Ok(match &e.kind {
        ExprKind::Int(i) => Json::from(*i),
        ExprKind::Decimal(d) | ExprKind::Money(d) | ExprKind::Percent(d) => number(*d)?,
        ExprKind::Duration(s) => Json::from(*s),
        ExprKind::Instant(t) => Json::String(format_instant(*t)),
        ExprKind::Date(d) => {
            let (y, m, d) = civil_from_days(i64::from(*d));
            Json::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        ExprKind::TimeOfDay(m) => Json::String(format!("{:02}:{:02}", m / 60, m % 60)),
        ExprKind::Str(parts) => Json::String(text(parts)?),
        ExprKind::Bool(b) => Json::Bool(*b),
        ExprKind::None => Json::Null,
        ExprKind::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        ExprKind::Record(fields) => {
            let mut m = Map::new();
            for p in fields {
                m.insert(p.key.name.clone(), to_json(&p.value)?);
            }
            Json::Object(m)
        }
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => match &expr.kind {
            ExprKind::Int(i) => Json::from(-*i),
            ExprKind::Decimal(d) | ExprKind::Money(d) | ExprKind::Percent(d) => number(-*d)?,
            ExprKind::Duration(s) => Json::from(-*s),
            _ => return Err(not_literal()),
        },
        _ => return Err(not_literal()),
    })
}

fn not_literal() -> String {
    "a test can only use literal values here (numbers, money, text, times, lists, records)".into()
}

/// A decimal as a JSON number. A JSON number here is a binary float, so a
/// literal with more digits than one holds is refused rather than rounded.
fn number(d: Decimal) -> Result<Json, String> {
    let text = d.normalize().to_string();
    let json: Json = serde_json::from_str(&text).map_err(|_| format!("{d} is not a number"))?;
    let back = json
        .as_f64()
        .and_then(|f| Decimal::from_str(&Json::from(f).to_string()).ok());
    match (json.is_f64(), back) {
        (false, _) => Ok(json),
        (true, Some(b)) if b == d => Ok(json),
        _ => Err(format!(
            "{d} has more digits than a test event can carry: write at most 15 significant digits"
        )),
    }
}

fn text(parts: &[StrPart]) -> Result<String, String> {
    let mut s = String::new();
    for p in parts {
        match p {
            StrPart::Text(t, _) => s.push_str(t),
            StrPart::Interp(_) => {
                return Err("a test's text cannot interpolate `{...}`; write the value out".into());
            }
        }
    }
    Ok(s)
}

/// A value while evaluating a content predicate.
#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Bool(bool),
    Num(Decimal),
    Str(String),
    List(Vec<V>),
}

impl V {
    fn from_json(j: &Json) -> V {
        match j {
            Json::Null => V::None,
            Json::Bool(b) => V::Bool(*b),
            Json::Number(n) => n
                .to_string()
                .parse()
                .map(V::Num)
                .unwrap_or_else(|_| V::Str(n.to_string())),
            Json::String(s) => V::Str(s.clone()),
            Json::Array(a) => V::List(a.iter().map(V::from_json).collect()),
            Json::Object(_) => V::Str(j.to_string()),
        }
    }
}

/// Whether `pred` holds for a sent message's `content`.
pub(crate) fn holds(pred: &Expr, content: &Map<String, Json>) -> Result<bool, String> {
    match eval(pred, content)? {
        V::Bool(b) => Ok(b),
        _ => Err("the condition is not true or false".into()),
    }
}

fn eval(e: &Expr, content: &Map<String, Json>) -> Result<V, String> {
    Ok(match &e.kind {
        ExprKind::Int(i) => V::Num(Decimal::from(*i)),
        ExprKind::Decimal(d) | ExprKind::Money(d) => V::Num(*d),
        ExprKind::Str(parts) => V::Str(text(parts)?),
        ExprKind::Bool(b) => V::Bool(*b),
        ExprKind::None => V::None,
        ExprKind::List(items) => V::List(
            items
                .iter()
                .map(|i| eval(i, content))
                .collect::<Result<_, _>>()?,
        ),
        ExprKind::Field { base, field, .. } => match &base.kind {
            ExprKind::Name(n) if n == "content" => {
                content.get(&field.name).map_or(V::None, V::from_json)
            }
            _ => return Err("a condition on a send can only read `content.FIELD`".into()),
        },
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => V::Bool(!truth(&eval(expr, content)?)?),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => match eval(expr, content)? {
            V::Num(n) => V::Num(-n),
            _ => return Err("`-` needs a number".into()),
        },
        ExprKind::Binary { op, lhs, rhs } => {
            let l = eval(lhs, content)?;
            match op {
                BinaryOp::And => V::Bool(truth(&l)? && truth(&eval(rhs, content)?)?),
                BinaryOp::Or => V::Bool(truth(&l)? || truth(&eval(rhs, content)?)?),
                BinaryOp::Default => match l {
                    V::None => eval(rhs, content)?,
                    other => other,
                },
                _ => {
                    let r = eval(rhs, content)?;
                    compare(*op, &l, &r)?
                }
            }
        }
        ExprKind::Call { callee, args } => {
            let vals: Vec<V> = args
                .iter()
                .map(|a| eval(&a.value, content))
                .collect::<Result<_, _>>()?;
            call(&callee.name, &vals)?
        }
        _ => return Err("this condition uses something a test cannot evaluate".into()),
    })
}

fn truth(v: &V) -> Result<bool, String> {
    match v {
        V::Bool(b) => Ok(*b),
        _ => Err("`and`, `or` and `not` need true or false".into()),
    }
}

fn compare(op: BinaryOp, l: &V, r: &V) -> Result<V, String> {
    let ord = match (l, r) {
        (V::Num(a), V::Num(b)) => Some(a.cmp(b)),
        (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
        _ => None,
    };
    Ok(V::Bool(match op {
        BinaryOp::Eq => l == r,
        BinaryOp::Ne => l != r,
        BinaryOp::Lt => ord.ok_or("`<` needs two numbers or two texts")?.is_lt(),
        BinaryOp::Le => ord.ok_or("`<=` needs two numbers or two texts")?.is_le(),
        BinaryOp::Gt => ord.ok_or("`>` needs two numbers or two texts")?.is_gt(),
        BinaryOp::Ge => ord.ok_or("`>=` needs two numbers or two texts")?.is_ge(),
        BinaryOp::In => match r {
            V::List(items) => items.contains(l),
            V::Str(s) => matches!(l, V::Str(part) if s.contains(part.as_str())),
            _ => return Err("`in` needs a list or a text on the right".into()),
        },
        _ => return Err(format!("`{}` is not supported in a test", op.as_str())),
    }))
}

fn call(name: &str, args: &[V]) -> Result<V, String> {
    let s = |i: usize| match args.get(i) {
        Some(V::Str(s)) => Ok(s.as_str()),
        Some(V::None) => Ok(""),
        _ => Err(format!("`{name}` needs text")),
    };
    Ok(match name {
        "contains" => V::Bool(s(0)?.contains(s(1)?)),
        "starts_with" => V::Bool(s(0)?.starts_with(s(1)?)),
        "ends_with" => V::Bool(s(0)?.ends_with(s(1)?)),
        "lower" => V::Str(s(0)?.to_lowercase()),
        "upper" => V::Str(s(0)?.to_uppercase()),
        "trim" => V::Str(s(0)?.trim().to_string()),
        "len" => match args.first() {
            Some(V::List(l)) => V::Num(Decimal::from(l.len())),
            _ => V::Num(Decimal::from(s(0)?.chars().count())),
        },
        _ => return Err(format!("`{name}` cannot be used in a condition on a send")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_syntax::ast::Item;

    /// The first prop value of `given profile u { x: VALUE }`.
    fn value(src: &str) -> Expr {
        let text = format!("test \"t\" {{\n  given profile u {{ x: {src} }}\n}}\n");
        let parsed = nudge_syntax::parse(nudge_syntax::FileId(0), &text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let Item::Test(t) = &parsed.file.items[0] else {
            panic!("not a test")
        };
        match &t.stmts[0].kind {
            nudge_syntax::ast::TestStmtKind::Given { props, .. } => props[0].value.clone(),
            _ => panic!("not a given"),
        }
    }

    #[test]
    fn literals_become_segment_json() {
        assert_eq!(to_json(&value("$12.50")), Ok(serde_json::json!(12.5)));
        assert_eq!(to_json(&value("-3")), Ok(serde_json::json!(-3)));
        assert_eq!(
            to_json(&value("$1234567890123.45")),
            Ok(serde_json::json!(1234567890123.45))
        );
        assert_eq!(
            to_json(&value("$12345678901234567.89")),
            Err(
                "12345678901234567.89 has more digits than a test event can carry: \
                 write at most 15 significant digits"
                    .into()
            )
        );
        assert_eq!(to_json(&value("2h")), Ok(serde_json::json!(7200)));
        assert_eq!(
            to_json(&value("2026-01-05T10:00:00Z")),
            Ok(serde_json::json!("2026-01-05T10:00:00Z"))
        );
        assert_eq!(
            to_json(&value("[\"a\", \"b\"]")),
            Ok(serde_json::json!(["a", "b"]))
        );
        assert_eq!(
            to_json(&value("{ email: true, sms: false }")),
            Ok(serde_json::json!({ "email": true, "sms": false }))
        );
    }

    #[test]
    fn names_are_not_literals() {
        assert!(to_json(&value("other")).is_err());
    }

    #[test]
    fn predicates_read_content() {
        let mut content = Map::new();
        content.insert("subject".into(), Json::String("Hi Ana".into()));
        let p = value("contains(content.subject, \"Ana\") and not (content.subject == \"x\")");
        assert_eq!(holds(&p, &content), Ok(true));
        let p = value("content.body == none");
        assert_eq!(holds(&p, &content), Ok(true));
        let p = value("content.subject");
        assert!(holds(&p, &content).is_err());
    }
}
