//! The builtin table: unique names, and typed signatures that only mention
//! known types, in forms the type checker can bind at a call.

mod common;

use std::collections::HashSet;

use nudge_stdlib::{BUILTINS, Builtin, Param, SigTy, Signature, Var, builtin};

/// The scalar type names of the language (see `docs/language.md`).
const SCALARS: &[&str] = &[
    "bool",
    "int",
    "decimal",
    "money",
    "string",
    "duration",
    "time",
    "date",
    "time_of_day",
    "timezone",
];

fn records() -> HashSet<String> {
    common::scan(common::stdlib_file("types.flow").source)
        .into_iter()
        .map(|d| d.name)
        .collect()
}

/// Checks the names in a type, and collects the type variables it uses.
fn check_ty(
    ty: &SigTy,
    top_level_param: bool,
    records: &HashSet<String>,
    vars: &mut HashSet<Var>,
) -> Result<(), String> {
    match ty {
        SigTy::Named(name) => {
            if !SCALARS.contains(name) && !records.contains(*name) {
                return Err(format!("unknown type `{name}`"));
            }
        }
        SigTy::Var(v) => {
            vars.insert(*v);
        }
        SigTy::EventOf(v) => {
            // `event<E>` only makes sense as a whole parameter: the argument is an event name.
            if !top_level_param {
                return Err("`event<E>` may only be a parameter's type".into());
            }
            if *v != Var::E {
                return Err("`event<...>` takes exactly the variable E".into());
            }
            vars.insert(*v);
        }
        SigTy::List(t) | SigTy::Optional(t) => check_ty(t, false, records, vars)?,
        SigTy::Fn(params, ret) => {
            for p in *params {
                check_ty(p, false, records, vars)?;
            }
            check_ty(ret, false, records, vars)?;
        }
    }
    Ok(())
}

/// Everything a well-formed builtin signature must satisfy.
fn check_signature(sig: &Signature) -> Result<(), String> {
    let records = records();
    let mut names = HashSet::new();
    let mut param_vars = HashSet::new();
    for p in sig.params {
        if !names.insert(p.name) {
            return Err(format!("parameter `{}` repeated", p.name));
        }
        check_ty(&p.ty, true, &records, &mut param_vars)?;
    }
    let mut ret_vars = HashSet::new();
    check_ty(&sig.ret, false, &records, &mut ret_vars)?;
    // A variable only in the result could never be inferred from a call.
    if let Some(v) = ret_vars.difference(&param_vars).next() {
        return Err(format!(
            "type variable {} appears only in the result",
            v.letter()
        ));
    }
    Ok(())
}

const INT: SigTy = SigTy::Named("int");
const T: SigTy = SigTy::Var(Var::T);

fn sig(params: &'static [Param], ret: SigTy) -> Signature {
    Signature {
        name: "f",
        params,
        ret,
    }
}

#[test]
fn the_checker_accepts_the_documented_forms() {
    for b in [
        Builtin::First,
        Builtin::Now,
        Builtin::LastEvent,
        Builtin::Map,
    ] {
        assert_eq!(check_signature(b.signature()), Ok(()), "{b}");
    }
    let product = sig(
        &[Param {
            name: "p",
            ty: SigTy::Named("Product"),
        }],
        SigTy::Optional(&SigTy::Named("money")),
    );
    assert_eq!(check_signature(&product), Ok(()));
}

#[test]
fn the_checker_rejects_malformed_signatures() {
    for (bad, why) in [
        (
            sig(
                &[Param {
                    name: "items",
                    ty: SigTy::List(&SigTy::Named("lst")),
                }],
                INT,
            ),
            "unknown type",
        ),
        (
            sig(
                &[Param { name: "a", ty: INT }, Param { name: "a", ty: INT }],
                INT,
            ),
            "repeated",
        ),
        (sig(&[], T), "only in the result"),
        (
            sig(
                &[Param {
                    name: "k",
                    ty: SigTy::List(&SigTy::EventOf(Var::E)),
                }],
                INT,
            ),
            "may only be a parameter",
        ),
        (
            sig(
                &[Param {
                    name: "k",
                    ty: SigTy::EventOf(Var::T),
                }],
                INT,
            ),
            "exactly the variable E",
        ),
        (
            sig(
                &[Param {
                    name: "f",
                    ty: SigTy::Fn(&[INT], &SigTy::Named("nope")),
                }],
                INT,
            ),
            "unknown type",
        ),
    ] {
        let err = check_signature(&bad).expect_err(&format!("accepted: {bad}"));
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert!(
        check_signature(&sig(
            &[Param {
                name: "k",
                ty: SigTy::EventOf(Var::E)
            }],
            INT
        ))
        .is_ok()
    );
}

#[test]
fn every_builtin_signature_is_well_formed() {
    for b in BUILTINS {
        check_signature(&b.signature).unwrap_or_else(|e| panic!("`{}`: {e}", b.signature));
    }
}

#[test]
fn builtin_names_are_unique_identifiers_that_are_not_keywords() {
    let mut seen = HashSet::new();
    for b in BUILTINS {
        let name = b.name();
        assert!(seen.insert(name), "`{name}` listed twice");
        assert!(!nudge_syntax::is_keyword(name), "`{name}` is a keyword");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "`{name}` is not snake_case"
        );
    }
}

#[test]
fn every_builtin_has_a_short_doc_with_an_example() {
    for b in BUILTINS {
        let name = b.name();
        assert!(b.doc.ends_with('`') || b.doc.ends_with('.'), "{name}");
        assert!(b.doc.contains('`'), "`{name}` has no example in backticks");
        assert!(
            b.doc.matches(". ").count() <= 2,
            "`{name}` doc is longer than two sentences"
        );
    }
}

#[test]
fn the_required_builtins_exist_with_their_agreed_signatures() {
    for (name, sig) in [
        ("any", "any(items: list<T>, test: fn(T) -> bool) -> bool"),
        ("all", "all(items: list<T>, test: fn(T) -> bool) -> bool"),
        ("count", "count(items: list<T>, test: fn(T) -> bool) -> int"),
        ("first", "first(items: list<T>, test: fn(T) -> bool) -> T?"),
        (
            "filter",
            "filter(items: list<T>, test: fn(T) -> bool) -> list<T>",
        ),
        ("map", "map(items: list<T>, f: fn(T) -> U) -> list<U>"),
        ("sum", "sum(items: list<T>, f: fn(T) -> N) -> N"),
        ("len", "len(items: list<T>) -> int"),
        ("min", "min(a: N, b: N) -> N"),
        ("max", "max(a: N, b: N) -> N"),
        ("round", "round(value: N, places: int) -> N"),
        ("contains", "contains(text: string, part: string) -> bool"),
        ("now", "now() -> time"),
        ("date_of", "date_of(t: time) -> date"),
        ("days_between", "days_between(a: time, b: time) -> int"),
        (
            "any_event",
            "any_event(kind: event<E>, test: fn(E) -> bool) -> bool",
        ),
        (
            "count_events",
            "count_events(kind: event<E>, test: fn(E) -> bool) -> int",
        ),
        ("last_event", "last_event(kind: event<E>) -> E?"),
        ("format_money", "format_money(amount: money) -> string"),
        ("url_encode", "url_encode(text: string) -> string"),
    ] {
        assert_eq!(
            builtin(name).map(|b| b.signature.to_string()).as_deref(),
            Some(sig),
            "{name}"
        );
    }
    for name in ["starts_with", "lower", "upper", "trim"] {
        assert!(builtin(name).is_some(), "{name} is missing");
    }
}
