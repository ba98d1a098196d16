//! Who is who: the trace names a customer by their display id at the moment,
//! so an anonymous visitor's records stay under `a9` after `a9` is joined
//! into `u1`. `joined` records say how to put the person back together.

use std::collections::{BTreeMap, BTreeSet};

use nudge_runtime::record::What;

use crate::trace::Trace;

/// The joins a trace records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identities {
    /// Absorbed id to the customer that absorbed it.
    into: BTreeMap<String, String>,
    /// Customer to the ids it absorbed directly.
    absorbed: BTreeMap<String, BTreeSet<String>>,
}

impl Identities {
    /// Collects every `joined` record of a trace.
    pub fn of(trace: &Trace) -> Identities {
        let mut ids = Identities::default();
        for e in &trace.entries {
            if let What::Joined { identities } = &e.record.what {
                for old in identities {
                    if *old == e.record.customer {
                        continue;
                    }
                    ids.into.insert(old.clone(), e.record.customer.clone());
                    ids.absorbed
                        .entry(e.record.customer.clone())
                        .or_default()
                        .insert(old.clone());
                }
            }
        }
        ids
    }

    /// The id the person is finally known by, following joins forward.
    pub fn root<'a>(&'a self, id: &'a str) -> &'a str {
        let mut seen = BTreeSet::new();
        let mut at = id;
        // A cycle cannot come from the engine, but a hand-edited trace must not hang us.
        while let Some(next) = self.into.get(at) {
            if !seen.insert(at) {
                break;
            }
            at = next;
        }
        at
    }

    /// The customer `id` was joined into directly, if any.
    pub fn joined_into(&self, id: &str) -> Option<&str> {
        self.into.get(id).map(String::as_str)
    }

    /// `id` and every id joined into it, directly or through others, sorted.
    pub fn members(&self, id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![id.to_string()];
        while let Some(next) = todo.pop() {
            if out.insert(next.clone())
                && let Some(children) = self.absorbed.get(&next)
            {
                todo.extend(children.iter().cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn trace(lines: &[&str]) -> Trace {
        Trace::parse(&lines.join("\n"), Path::new("t")).unwrap()
    }

    #[test]
    fn joins_are_followed_transitively() {
        let t = trace(&[
            r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"joined","identities":["a9"]}"#,
            r#"{"at":"2026-11-23T11:00:00Z","customer":"a7","kind":"joined","identities":["a8"]}"#,
            r#"{"at":"2026-11-23T12:00:00Z","customer":"u1","kind":"joined","identities":["a7","a8"]}"#,
            r#"{"at":"2026-11-23T13:00:00Z","customer":"u5","kind":"joined","identities":["u1","a9","a7","a8"]}"#,
        ]);
        let ids = Identities::of(&t);
        let all: Vec<String> = ids.members("u5").into_iter().collect();
        assert_eq!(all, ["a7", "a8", "a9", "u1", "u5"]);
        let of_a7: Vec<String> = ids.members("a7").into_iter().collect();
        assert_eq!(of_a7, ["a7", "a8"]);
        assert_eq!(ids.root("a8"), "u5");
        assert_eq!(ids.root("u9"), "u9");
        assert_eq!(ids.joined_into("u1"), Some("u5"));
    }

    #[test]
    fn a_cycle_does_not_hang() {
        let t = trace(&[
            r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"joined","identities":["u2"]}"#,
            r#"{"at":"2026-11-23T11:00:00Z","customer":"u2","kind":"joined","identities":["u1"]}"#,
        ]);
        let ids = Identities::of(&t);
        let _ = ids.root("u1");
        assert_eq!(ids.members("u1").len(), 2);
    }
}
