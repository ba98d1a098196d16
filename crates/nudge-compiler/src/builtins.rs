//! Builtin function signatures: parsed once from the stdlib table's text and
//! matched against calls by unification.

use std::collections::HashMap;

use crate::types::{Ty, TypeTable};

/// A type in a builtin signature, possibly mentioning type variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigTy {
    /// A named type with arguments (`int`, `list<T>`, `Product`).
    Named(String, Vec<SigTy>),
    /// A type variable: a single capital letter.
    Var(char),
    /// `T?`
    Optional(Box<SigTy>),
    /// `fn(A, B) -> R`
    Fn(Vec<SigTy>, Box<SigTy>),
    /// `event<E>`: the argument is an event name, binding `E` to its record.
    EventOf(char),
}

/// A parsed builtin signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The function's name.
    pub name: String,
    /// Parameter names and types, in order.
    pub params: Vec<(String, SigTy)>,
    /// The result type.
    pub ret: SigTy,
}

/// Parses `NAME(pname: TYPE, ...) -> TYPE`.
pub fn parse_signature(text: &str) -> Result<Signature, String> {
    let mut p = SigParser {
        s: text.as_bytes(),
        i: 0,
    };
    let name = p.ident().ok_or("expected the function name")?;
    p.expect(b'(')?;
    let mut params = Vec::new();
    p.ws();
    if !p.eat(b')') {
        loop {
            let pname = p.ident().ok_or("expected a parameter name")?;
            p.expect(b':')?;
            let ty = p.ty()?;
            params.push((pname, ty));
            if p.eat(b',') {
                continue;
            }
            p.expect(b')')?;
            break;
        }
    }
    p.expect_str("->")?;
    let ret = p.ty()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(Signature { name, params, ret })
}

struct SigParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl SigParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", c as char, self.i))
        }
    }

    fn expect_str(&mut self, t: &str) -> Result<(), String> {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            Ok(())
        } else {
            Err(format!("expected `{t}` at byte {}", self.i))
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn ty(&mut self) -> Result<SigTy, String> {
        let name = self
            .ident()
            .ok_or_else(|| format!("expected a type at byte {}", self.i))?;
        let mut ty = if name == "fn" {
            self.expect(b'(')?;
            let mut params = Vec::new();
            if !self.eat(b')') {
                loop {
                    params.push(self.ty()?);
                    if self.eat(b',') {
                        continue;
                    }
                    self.expect(b')')?;
                    break;
                }
            }
            self.expect_str("->")?;
            SigTy::Fn(params, Box::new(self.ty()?))
        } else {
            let mut args = Vec::new();
            if self.eat(b'<') {
                loop {
                    args.push(self.ty()?);
                    if self.eat(b',') {
                        continue;
                    }
                    self.expect(b'>')?;
                    break;
                }
            }
            match (name.as_str(), args.as_slice()) {
                ("event", [SigTy::Var(v)]) => SigTy::EventOf(*v),
                (n, []) if is_var(n) => SigTy::Var(n.chars().next().unwrap_or('T')),
                _ => SigTy::Named(name, args),
            }
        };
        while self.eat(b'?') {
            ty = SigTy::Optional(Box::new(ty));
        }
        Ok(ty)
    }
}

fn is_var(name: &str) -> bool {
    name.len() == 1 && name.as_bytes()[0].is_ascii_uppercase()
}

/// Resolves a named type of a signature (`Product`) to a type, given the project's names.
pub trait NamedTypes {
    /// The type a name denotes, if any.
    fn named(&self, name: &str) -> Option<Ty>;
    /// Whether a record is an event.
    fn is_event(&self, ty: &Ty) -> bool;
}

/// Type-variable bindings made while checking one call.
#[derive(Debug, Default)]
pub struct Subst {
    bound: HashMap<char, Ty>,
}

impl Subst {
    /// The type bound to a variable.
    pub fn get(&self, v: char) -> Option<&Ty> {
        self.bound.get(&v)
    }

    /// Binds a variable.
    pub fn bind(&mut self, v: char, ty: Ty) {
        self.bound.insert(v, ty);
    }

    /// The concrete type of a signature type; unbound variables become [`Ty::Error`].
    pub fn instantiate(&self, sig: &SigTy, names: &dyn NamedTypes) -> Ty {
        match sig {
            SigTy::Var(v) | SigTy::EventOf(v) => self.bound.get(v).cloned().unwrap_or(Ty::Error),
            SigTy::Optional(t) => self.instantiate(t, names).optional(),
            SigTy::Fn(ps, r) => Ty::Fn(
                ps.iter().map(|p| self.instantiate(p, names)).collect(),
                Box::new(self.instantiate(r, names)),
            ),
            SigTy::Named(n, args) => {
                if n == "list" {
                    let inner = args
                        .first()
                        .map(|a| self.instantiate(a, names))
                        .unwrap_or(Ty::Error);
                    Ty::List(Box::new(inner))
                } else {
                    names.named(n).unwrap_or(Ty::Error)
                }
            }
        }
    }

    /// Matches an argument's type against a parameter's, binding variables.
    /// Returns whether they fit.
    pub fn unify(&mut self, sig: &SigTy, actual: &Ty, names: &dyn NamedTypes) -> bool {
        use crate::types::{Assign, assignable};
        if actual.is_error() {
            return true;
        }
        match sig {
            SigTy::Var(v) => {
                if let Some(bound) = self.bound.get(v).cloned() {
                    if assignable(actual, &bound) == Assign::Yes {
                        return true;
                    }
                    if assignable(&bound, actual) == Assign::Yes {
                        // int then decimal: the variable widens to decimal.
                        self.bound.insert(*v, actual.clone());
                        return true;
                    }
                    return false;
                }
                let ok = match v {
                    'N' => matches!(actual, Ty::Int | Ty::Decimal | Ty::Money | Ty::Duration),
                    'E' => names.is_event(actual),
                    _ => !matches!(actual, Ty::Null | Ty::Fn(..)),
                };
                if ok {
                    self.bound.insert(*v, actual.clone());
                }
                ok
            }
            SigTy::EventOf(_) => false,
            SigTy::Optional(inner) => match actual {
                Ty::Null => true,
                Ty::Optional(a) => self.unify(inner, a, names),
                a => self.unify(inner, a, names),
            },
            SigTy::Fn(ps, r) => match actual {
                Ty::Fn(aps, ar) if aps.len() == ps.len() => {
                    ps.iter().zip(aps).all(|(p, a)| self.unify(p, a, names))
                        && self.unify(r, ar, names)
                }
                _ => false,
            },
            SigTy::Named(n, args) if n == "list" => match (actual, args.first()) {
                (Ty::List(a), Some(p)) => self.unify(p, a, names),
                (Ty::List(_), None) => true,
                _ => false,
            },
            SigTy::Named(n, _) => match names.named(n) {
                Some(expected) => assignable(actual, &expected) == Assign::Yes,
                None => true,
            },
        }
    }
}

/// Shows a signature type the way it was written, with bound variables filled in.
pub fn display_sig(sig: &SigTy, subst: &Subst, types: &TypeTable) -> String {
    match sig {
        SigTy::Var(v) | SigTy::EventOf(v) => match subst.get(*v) {
            Some(t) => types.display(t),
            None if matches!(sig, SigTy::EventOf(_)) => format!("event<{v}>"),
            None => v.to_string(),
        },
        SigTy::Optional(t) => format!("{}?", display_sig(t, subst, types)),
        SigTy::Fn(ps, r) => format!(
            "fn({}) -> {}",
            ps.iter()
                .map(|p| display_sig(p, subst, types))
                .collect::<Vec<_>>()
                .join(", "),
            display_sig(r, subst, types)
        ),
        SigTy::Named(n, args) if args.is_empty() => n.clone(),
        SigTy::Named(n, args) => format!(
            "{n}<{}>",
            args.iter()
                .map(|p| display_sig(p, subst, types))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The builtin table, parsed.
#[derive(Debug, Default)]
pub struct Builtins {
    /// Signatures by function name.
    pub by_name: HashMap<String, Signature>,
    /// Names in table order, for suggestions.
    pub names: Vec<String>,
}

impl Builtins {
    /// Parses signature strings; malformed ones are skipped and returned as errors.
    pub fn from_signatures<'a>(sigs: impl IntoIterator<Item = &'a str>) -> (Self, Vec<String>) {
        let mut out = Builtins::default();
        let mut errors = Vec::new();
        for s in sigs {
            match parse_signature(s) {
                Ok(sig) => {
                    out.names.push(sig.name.clone());
                    out.by_name.insert(sig.name.clone(), sig);
                }
                Err(e) => errors.push(format!("`{s}`: {e}")),
            }
        }
        (out, errors)
    }

    /// The stdlib table.
    pub fn stdlib() -> Self {
        Self::from_signatures(nudge_stdlib::BUILTINS.iter().map(|b| b.signature)).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generic_and_function_types() {
        let s = parse_signature("any(items: list<T>, test: fn(T) -> bool) -> bool").unwrap();
        assert_eq!(s.name, "any");
        assert_eq!(
            s.params[0].1,
            SigTy::Named("list".into(), vec![SigTy::Var('T')])
        );
        assert_eq!(
            s.params[1].1,
            SigTy::Fn(
                vec![SigTy::Var('T')],
                Box::new(SigTy::Named("bool".into(), vec![]))
            )
        );
        let s = parse_signature("any_event(name: event<E>, test: fn(E) -> bool) -> bool").unwrap();
        assert_eq!(s.params[0].1, SigTy::EventOf('E'));
        let s = parse_signature("first(items: list<T>) -> T?").unwrap();
        assert_eq!(s.ret, SigTy::Optional(Box::new(SigTy::Var('T'))));
        let s = parse_signature("now() -> time").unwrap();
        assert!(s.params.is_empty());
    }

    #[test]
    fn rejects_malformed_signatures() {
        assert!(parse_signature("any(items list<T>) -> bool").is_err());
        assert!(parse_signature("any(items: list<T>").is_err());
        assert!(parse_signature("").is_err());
        assert!(parse_signature("f() -> int extra").is_err());
    }
}
