//! Printing expressions on one line with the fewest parentheses that reparse to the same tree.

use nudge_syntax::ast::{Arg, BinaryOp, Expr, ExprKind, Precedence, StrPart, TypeExpr, UnaryOp};

use crate::source::{Source, date_from_days, instant_from_unix, quote};

/// Binding strength of the grammar's precedence levels, loosest first.
mod level {
    pub const LAMBDA: u8 = 0;
    pub const OR: u8 = 1;
    pub const AND: u8 = 2;
    pub const NOT: u8 = 3;
    pub const COMPARE: u8 = 4;
    pub const DEFAULT: u8 = 5;
    pub const ADD: u8 = 6;
    pub const MUL: u8 = 7;
    pub const NEG: u8 = 8;
    pub const POSTFIX: u8 = 9;
    pub const ATOM: u8 = 10;
}

/// The precedence level an expression is printed at, without parentheses.
fn level_of(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Lambda { .. } => level::LAMBDA,
        ExprKind::Binary { op, .. } => binary_level(*op),
        ExprKind::Unary {
            op: UnaryOp::Not, ..
        } => level::NOT,
        ExprKind::Unary {
            op: UnaryOp::Neg, ..
        } => level::NEG,
        ExprKind::Field { .. } | ExprKind::Call { .. } => level::POSTFIX,
        _ => level::ATOM,
    }
}

/// The printing level of a binary operator, from the syntax crate's
/// precedence table so that the two cannot drift apart.
fn binary_level(op: BinaryOp) -> u8 {
    match op.precedence() {
        Precedence::Or => level::OR,
        Precedence::And => level::AND,
        Precedence::Compare => level::COMPARE,
        Precedence::Default => level::DEFAULT,
        Precedence::Sum => level::ADD,
        Precedence::Product => level::MUL,
    }
}

/// Prints a full expression (any precedence).
pub(crate) fn expr(src: &Source, e: &Expr) -> String {
    at_least(src, e, level::LAMBDA)
}

/// Prints an expression that must bind more tightly than a comparison,
/// for positions such as the right side of `expect profile ID.FIELD ==`.
pub(crate) fn above_comparison(src: &Source, e: &Expr) -> String {
    at_least(src, e, level::DEFAULT)
}

/// Prints `e`, parenthesised when it binds more loosely than `min`.
fn at_least(src: &Source, e: &Expr, min: u8) -> String {
    let text = bare(src, e);
    // A literal written with a sign (`-5`) binds like a negation.
    let level = if text.starts_with('-') {
        level_of(e).min(level::NEG)
    } else {
        level_of(e)
    };
    if level < min {
        format!("({text})")
    } else {
        text
    }
}

/// Prints `e` without outer parentheses.
fn bare(src: &Source, e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => src.lit(e.span, || v.to_string()),
        ExprKind::Decimal(v) => src.lit(e.span, || {
            let s = v.to_string();
            if s.contains('.') { s } else { format!("{s}.0") }
        }),
        ExprKind::Money(v) => src.lit(e.span, || format!("${v}")),
        ExprKind::Percent(v) => src.lit(e.span, || format!("{v}%")),
        ExprKind::Duration(secs) => src.duration(e.span, *secs),
        ExprKind::Instant(secs) => src.lit(e.span, || instant_from_unix(*secs)),
        ExprKind::Date(days) => src.lit(e.span, || date_from_days(i64::from(*days))),
        ExprKind::TimeOfDay(mins) => {
            src.lit(e.span, || format!("{:02}:{:02}", mins / 60, mins % 60))
        }
        ExprKind::Str(parts) => src.lit(e.span, || string_from_parts(src, parts)),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::None => "none".to_string(),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Field {
            base,
            field,
            optional,
        } => format!(
            "{}{}{}",
            at_least(src, base, level::POSTFIX),
            if *optional { "?." } else { "." },
            field.name
        ),
        ExprKind::Call { callee, args: a } => format!("{}({})", callee.name, args(src, a)),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => format!("-{}", at_least(src, expr, level::POSTFIX)),
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => format!("not {}", at_least(src, expr, level::COMPARE)),
        ExprKind::Binary { op, lhs, rhs } => {
            let level = binary_level(*op);
            let (left, right) = match level {
                level::DEFAULT => (level + 1, level),
                level::COMPARE => (level + 1, level + 1),
                _ => (level, level + 1),
            };
            format!(
                "{} {} {}",
                at_least(src, lhs, left),
                op.as_str(),
                at_least(src, rhs, right)
            )
        }
        ExprKind::Lambda { params, body } => {
            let head = match params.as_slice() {
                [one] => one.name.clone(),
                many => format!(
                    "({})",
                    many.iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            format!("{head} => {}", at_least(src, body, level::LAMBDA))
        }
        ExprKind::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| expr(src, i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExprKind::Record(fields) if fields.is_empty() => "{}".to_string(),
        ExprKind::Record(fields) => format!(
            "{{ {} }}",
            fields
                .iter()
                .map(|p| format!("{}: {}", p.key.name, expr(src, &p.value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExprKind::Error => src.lit(e.span, String::new),
    }
}

/// Rebuilds a string literal from its parts, for a span that does not cover it.
fn string_from_parts(src: &Source, parts: &[StrPart]) -> String {
    let mut out = String::from("\"");
    for part in parts {
        match part {
            StrPart::Text(text, _) => {
                let q = quote(text);
                out.push_str(&q[1..q.len() - 1]);
            }
            StrPart::Interp(e) => {
                out.push('{');
                out.push_str(&expr(src, e));
                out.push('}');
            }
        }
    }
    out.push('"');
    out
}

/// Prints call arguments: `a, name: b`.
pub(crate) fn args(src: &Source, args: &[Arg]) -> String {
    args.iter()
        .map(|a| match &a.name {
            Some(n) => format!("{}: {}", n.name, expr(src, &a.value)),
            None => expr(src, &a.value),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a type: `string`, `time?`, `list<Product>`.
pub(crate) fn type_expr(t: &TypeExpr) -> String {
    let mut out = t.name.name.clone();
    if !t.args.is_empty() {
        out.push('<');
        out.push_str(&t.args.iter().map(type_expr).collect::<Vec<_>>().join(", "));
        out.push('>');
    }
    if t.optional {
        out.push('?');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_diagnostics::FileId;
    use nudge_syntax::Span;
    use nudge_syntax::ast::Ident;

    fn name(n: &str) -> Expr {
        Expr {
            kind: ExprKind::Name(n.to_string()),
            span: Span::default(),
        }
    }

    fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r),
            },
            span: Span::default(),
        }
    }

    fn un(op: UnaryOp, e: Expr) -> Expr {
        Expr {
            kind: ExprKind::Unary {
                op,
                expr: Box::new(e),
            },
            span: Span::default(),
        }
    }

    fn field(base: Expr, f: &str, optional: bool) -> Expr {
        Expr {
            kind: ExprKind::Field {
                base: Box::new(base),
                field: Ident {
                    name: f.to_string(),
                    span: Span::default(),
                },
                optional,
            },
            span: Span::default(),
        }
    }

    fn lambda(params: &[&str], body: Expr) -> Expr {
        Expr {
            kind: ExprKind::Lambda {
                params: params
                    .iter()
                    .map(|p| Ident {
                        name: p.to_string(),
                        span: Span::default(),
                    })
                    .collect(),
                body: Box::new(body),
            },
            span: Span::default(),
        }
    }

    fn show(e: &Expr) -> String {
        expr(&Source::new(FileId(0), ""), e)
    }

    use BinaryOp::*;

    #[test]
    fn left_associative_operators_parenthesise_the_right() {
        let a_minus_b_minus_c = bin(Sub, bin(Sub, name("a"), name("b")), name("c"));
        assert_eq!(show(&a_minus_b_minus_c), "a - b - c");
        let a_minus_b_c = bin(Sub, name("a"), bin(Sub, name("b"), name("c")));
        assert_eq!(show(&a_minus_b_c), "a - (b - c)");
        let mixed = bin(Mul, bin(Add, name("a"), name("b")), name("c"));
        assert_eq!(show(&mixed), "(a + b) * c");
        let loose = bin(Add, name("a"), bin(Mul, name("b"), name("c")));
        assert_eq!(show(&loose), "a + b * c");
    }

    #[test]
    fn default_is_right_associative() {
        let right = bin(Default, name("a"), bin(Default, name("b"), name("c")));
        assert_eq!(show(&right), "a ?? b ?? c");
        let left = bin(Default, bin(Default, name("a"), name("b")), name("c"));
        assert_eq!(show(&left), "(a ?? b) ?? c");
    }

    #[test]
    fn comparisons_do_not_chain() {
        let chained = bin(Lt, bin(Lt, name("a"), name("b")), name("c"));
        assert_eq!(show(&chained), "(a < b) < c");
        let with_default = bin(Eq, bin(Default, name("a"), name("b")), name("c"));
        assert_eq!(show(&with_default), "a ?? b == c");
    }

    #[test]
    fn logical_operators_and_not() {
        let e = bin(Or, name("a"), bin(And, name("b"), name("c")));
        assert_eq!(show(&e), "a or b and c");
        let e = bin(And, bin(Or, name("a"), name("b")), name("c"));
        assert_eq!(show(&e), "(a or b) and c");
        let e = un(UnaryOp::Not, bin(Eq, name("a"), name("b")));
        assert_eq!(show(&e), "not a == b");
        let e = un(UnaryOp::Not, bin(And, name("a"), name("b")));
        assert_eq!(show(&e), "not (a and b)");
        let e = bin(Eq, name("a"), un(UnaryOp::Not, name("b")));
        assert_eq!(show(&e), "a == (not b)");
        let e = un(UnaryOp::Not, un(UnaryOp::Not, name("a")));
        assert_eq!(show(&e), "not (not a)");
    }

    #[test]
    fn negation_and_postfix() {
        let e = un(UnaryOp::Neg, bin(Add, name("a"), name("b")));
        assert_eq!(show(&e), "-(a + b)");
        let e = un(UnaryOp::Neg, field(name("a"), "b", false));
        assert_eq!(show(&e), "-a.b");
        let e = field(bin(Default, name("a"), name("b")), "c", true);
        assert_eq!(show(&e), "(a ?? b)?.c");
        let e = bin(Sub, name("a"), un(UnaryOp::Neg, name("b")));
        assert_eq!(show(&e), "a - -b");
    }

    #[test]
    fn lambdas_are_parenthesised_inside_operators() {
        let l = lambda(&["x"], bin(Gt, field(name("x"), "v", false), name("y")));
        assert_eq!(show(&l), "x => x.v > y");
        let two = lambda(&["x", "y"], bin(Add, name("x"), name("y")));
        assert_eq!(show(&two), "(x, y) => x + y");
        let inside = bin(Or, name("a"), l);
        assert_eq!(show(&inside), "a or (x => x.v > y)");
    }
}
