//! Builtin function signatures, read from the stdlib's builtin table and
//! matched against calls by unification.

use std::collections::HashMap;

pub use nudge_stdlib::{Param, SigTy, Signature, Var};

use crate::types::{Ty, TypeTable};

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
    bound: HashMap<Var, Ty>,
}

impl Subst {
    /// The type bound to a variable.
    pub fn get(&self, v: Var) -> Option<&Ty> {
        self.bound.get(&v)
    }

    /// Binds a variable.
    pub fn bind(&mut self, v: Var, ty: Ty) {
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
            SigTy::List(t) => Ty::List(Box::new(self.instantiate(t, names))),
            SigTy::Named(n) => names.named(n).unwrap_or(Ty::Error),
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
                    Var::N => matches!(actual, Ty::Int | Ty::Decimal | Ty::Money | Ty::Duration),
                    Var::E => names.is_event(actual),
                    Var::D => matches!(actual, Ty::Time | Ty::Date),
                    Var::T | Var::U => !matches!(actual, Ty::Null | Ty::Fn(..)),
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
            SigTy::List(p) => match actual {
                Ty::List(a) => self.unify(p, a, names),
                _ => false,
            },
            SigTy::Named(n) => match names.named(n) {
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
            None => sig.to_string(),
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
        SigTy::List(t) => format!("list<{}>", display_sig(t, subst, types)),
        SigTy::Named(n) => (*n).to_string(),
    }
}

/// The builtin signatures a project is checked against.
#[derive(Debug, Default)]
pub struct Builtins {
    /// Signatures by function name.
    pub by_name: HashMap<&'static str, Signature>,
    /// Names in table order, for suggestions.
    pub names: Vec<&'static str>,
}

impl Builtins {
    /// A table of these signatures (the stdlib's, or one made for a test).
    pub fn from_signatures(sigs: impl IntoIterator<Item = Signature>) -> Self {
        let mut out = Builtins::default();
        for sig in sigs {
            out.names.push(sig.name);
            out.by_name.insert(sig.name, sig);
        }
        out
    }

    /// The stdlib table.
    pub fn stdlib() -> Self {
        Self::from_signatures(nudge_stdlib::BUILTINS.iter().map(|b| b.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stdlib_table_is_read_in_order_with_every_signature() {
        let b = Builtins::stdlib();
        assert_eq!(b.names.len(), nudge_stdlib::BUILTINS.len());
        assert_eq!(b.names.first(), Some(&"any"));
        let first = b.by_name["first"];
        assert_eq!(first.params.len(), 2);
        assert_eq!(first.ret, SigTy::Optional(&SigTy::Var(Var::T)));
        assert!(matches!(
            b.by_name["any_event"].params[0].ty,
            SigTy::EventOf(Var::E)
        ));
        assert!(!b.by_name.contains_key("escape:html"));
    }
}
