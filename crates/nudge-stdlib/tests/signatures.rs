//! The builtin table: unique names, and signatures in the mini-syntax the
//! type checker parses:
//!
//! ```text
//! signature = NAME '(' (param (',' param)*)? ')' '->' type
//! param     = NAME ':' type
//! type      = ( 'fn' '(' (type (',' type)*)? ')' '->' type
//!             | IDENT ('<' type (',' type)* '>')? ) '?'?
//! ```

mod common;

use std::collections::HashSet;

use nudge_stdlib::{BUILTINS, builtin};

/// A type of the signature mini-syntax.
#[derive(Debug, PartialEq)]
enum Ty {
    Named {
        name: String,
        args: Vec<Ty>,
        optional: bool,
    },
    Fn {
        params: Vec<Ty>,
        ret: Box<Ty>,
        optional: bool,
    },
}

/// A parsed signature.
#[derive(Debug)]
struct Sig {
    name: String,
    params: Vec<(String, Ty)>,
    ret: Ty,
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    end = j + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(text[i..end].to_string());
        } else if c == '-' {
            chars.next();
            match chars.next() {
                Some((_, '>')) => tokens.push("->".into()),
                _ => return Err(format!("`-` without `>` at {i}")),
            }
        } else if "(),:<>?".contains(c) {
            tokens.push(c.to_string());
            chars.next();
        } else {
            return Err(format!("unexpected `{c}` at {i}"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn eat(&mut self, tok: &str) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), String> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(format!("expected `{tok}`, found {:?}", self.peek()))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(t) if t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                let t = t.to_string();
                self.pos += 1;
                Ok(t)
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn signature(&mut self) -> Result<Sig, String> {
        let name = self.ident()?;
        self.expect("(")?;
        let mut params = Vec::new();
        if !self.eat(")") {
            loop {
                let pname = self.ident()?;
                self.expect(":")?;
                params.push((pname, self.ty()?));
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.expect("->")?;
        let ret = self.ty()?;
        if let Some(t) = self.peek() {
            return Err(format!("trailing `{t}`"));
        }
        Ok(Sig { name, params, ret })
    }

    fn ty(&mut self) -> Result<Ty, String> {
        let mut ty = if self.eat("fn") {
            self.expect("(")?;
            let params = self.ty_list(")")?;
            self.expect("->")?;
            let ret = Box::new(self.ty()?);
            Ty::Fn {
                params,
                ret,
                optional: false,
            }
        } else {
            let name = self.ident()?;
            let args = if self.eat("<") {
                let args = self.ty_list(">")?;
                if args.is_empty() {
                    return Err(format!("`{name}<>` has no type arguments"));
                }
                args
            } else {
                Vec::new()
            };
            Ty::Named {
                name,
                args,
                optional: false,
            }
        };
        if self.eat("?") {
            match &mut ty {
                Ty::Named { optional, .. } | Ty::Fn { optional, .. } => *optional = true,
            }
        }
        Ok(ty)
    }

    /// Types separated by commas up to and including `close`.
    fn ty_list(&mut self, close: &str) -> Result<Vec<Ty>, String> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.ty()?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(",")?;
        }
    }
}

fn parse_signature(text: &str) -> Result<Sig, String> {
    Parser {
        tokens: tokenize(text)?,
        pos: 0,
    }
    .signature()
}

const TYPE_VARS: &[&str] = &["T", "U", "N", "E"];

/// How many type arguments a known type name takes.
fn arity(name: &str, records: &HashSet<String>) -> Option<usize> {
    match name {
        "bool" | "int" | "decimal" | "money" | "string" | "duration" | "time" | "date"
        | "time_of_day" | "timezone" => Some(0),
        "list" | "event" => Some(1),
        n if TYPE_VARS.contains(&n) || records.contains(n) => Some(0),
        _ => None,
    }
}

fn records() -> HashSet<String> {
    common::scan(common::stdlib_file("types.flow").source)
        .into_iter()
        .map(|d| d.name)
        .collect()
}

/// Checks names and arities, and collects the type variables used.
fn check_ty(
    ty: &Ty,
    top_level_param: bool,
    records: &HashSet<String>,
    vars: &mut HashSet<String>,
) -> Result<(), String> {
    match ty {
        Ty::Named { name, args, .. } => {
            let want = arity(name, records).ok_or(format!("unknown type `{name}`"))?;
            if args.len() != want {
                return Err(format!("`{name}` takes {want} type arguments"));
            }
            if name == "event" {
                // `event<E>` only makes sense as a whole parameter: the argument is an event name.
                if !top_level_param {
                    return Err("`event<E>` may only be a parameter's type".into());
                }
                if !matches!(&args[0], Ty::Named { name, args, optional: false } if name == "E" && args.is_empty())
                {
                    return Err("`event<...>` takes exactly the variable E".into());
                }
            }
            if TYPE_VARS.contains(&name.as_str()) {
                vars.insert(name.clone());
            }
            for a in args {
                check_ty(a, false, records, vars)?;
            }
        }
        Ty::Fn { params, ret, .. } => {
            for p in params {
                check_ty(p, false, records, vars)?;
            }
            check_ty(ret, false, records, vars)?;
        }
    }
    Ok(())
}

/// Everything a well-formed builtin signature must satisfy.
fn check_signature(text: &str) -> Result<Sig, String> {
    let sig = parse_signature(text)?;
    let records = records();
    let mut names = HashSet::new();
    let mut param_vars = HashSet::new();
    for (pname, ty) in &sig.params {
        if !names.insert(pname) {
            return Err(format!("parameter `{pname}` repeated"));
        }
        check_ty(ty, true, &records, &mut param_vars)?;
    }
    let mut ret_vars = HashSet::new();
    check_ty(&sig.ret, false, &records, &mut ret_vars)?;
    // A variable only in the result could never be inferred from a call.
    if let Some(v) = ret_vars.difference(&param_vars).next() {
        return Err(format!("type variable {v} appears only in the result"));
    }
    Ok(sig)
}

#[test]
fn the_checker_accepts_the_documented_forms() {
    let sig = check_signature("first(items: list<T>, test: fn(T) -> bool) -> T?").unwrap();
    assert_eq!(sig.name, "first");
    assert_eq!(sig.params.len(), 2);
    assert_eq!(
        sig.ret,
        Ty::Named {
            name: "T".into(),
            args: vec![],
            optional: true
        }
    );
    let Ty::Fn { params, ret, .. } = &sig.params[1].1 else {
        panic!("test is a function type");
    };
    assert_eq!(params.len(), 1);
    assert!(matches!(&**ret, Ty::Named { name, .. } if name == "bool"));
    assert!(check_signature("now() -> time").unwrap().params.is_empty());
    assert!(check_signature("last_event(kind: event<E>) -> E?").is_ok());
}

#[test]
fn the_checker_rejects_malformed_signatures() {
    for bad in [
        "len(items: list<T>) int",          // no arrow
        "len(items: list<T>) -> int extra", // trailing text
        "len(items: list<T> -> int",        // unclosed parameters
        "len(items list<T>) -> int",        // no colon
        "len(items: list) -> int",          // missing type argument
        "len(items: list<T, U>) -> int",    // too many type arguments
        "len(items: lst<T>) -> int",        // unknown type
        "pick(a: int, a: int) -> int",      // repeated parameter
        "make() -> T",                      // variable only in the result
        "f(k: list<event<E>>) -> bool",     // event<E> nested
        "f(k: event<T>) -> bool",           // event of a non-event variable
        "f(x: int) -> fn(int -> int",       // unclosed function type
        "f(x: int) => int",                 // wrong arrow
    ] {
        assert!(check_signature(bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn every_builtin_signature_is_well_formed_and_named_after_its_builtin() {
    for b in BUILTINS {
        let sig = check_signature(b.signature)
            .unwrap_or_else(|e| panic!("`{}`: {e}\n  {}", b.name, b.signature));
        assert_eq!(sig.name, b.name, "signature names another function");
    }
}

#[test]
fn builtin_names_are_unique_identifiers_that_are_not_keywords() {
    let mut seen = HashSet::new();
    for b in BUILTINS {
        assert!(seen.insert(b.name), "`{}` listed twice", b.name);
        assert!(
            !nudge_syntax::is_keyword(b.name),
            "`{}` is a keyword",
            b.name
        );
        assert!(
            b.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "`{}` is not snake_case",
            b.name
        );
    }
}

#[test]
fn every_builtin_has_a_short_doc_with_an_example() {
    for b in BUILTINS {
        assert!(b.doc.ends_with('`') || b.doc.ends_with('.'), "{}", b.name);
        assert!(
            b.doc.contains('`'),
            "`{}` has no example in backticks",
            b.name
        );
        assert!(
            b.doc.matches(". ").count() <= 2,
            "`{}` doc is longer than two sentences",
            b.name
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
        assert_eq!(builtin(name).map(|b| b.signature), Some(sig), "{name}");
    }
    for name in ["starts_with", "lower", "upper", "trim"] {
        assert!(builtin(name).is_some(), "{name} is missing");
    }
}
