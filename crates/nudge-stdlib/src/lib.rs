//! The Nudge standard library: standard events, profile traits and types as
//! `.flow` source, plus the one table of builtin functions that the type
//! checker reads and the runtime executes.

mod builtins;
pub mod format;

pub use builtins::{BUILTINS, Builtin, BuiltinDef, Param, SigTy, Signature, Var, builtin};

/// One `.flow` file of the standard library.
#[derive(Clone, Copy, Debug)]
pub struct StdlibFile {
    /// The file name shown in diagnostics, such as `events.flow`.
    pub name: &'static str,
    /// The file's source text.
    pub source: &'static str,
}

/// Every standard library file; all are in scope in every project.
///
/// Types come first so that a reader of the list meets `Product` and
/// `Consent` before the events and traits that use them; resolution itself
/// does not depend on the order.
pub const FILES: &[StdlibFile] = &[
    StdlibFile {
        name: "types.flow",
        source: include_str!("../flow/types.flow"),
    },
    StdlibFile {
        name: "events.flow",
        source: include_str!("../flow/events.flow"),
    },
    StdlibFile {
        name: "profile.flow",
        source: include_str!("../flow/profile.flow"),
    },
];

/// Finds a standard library file by name, such as `events.flow`.
pub fn file(name: &str) -> Option<&'static StdlibFile> {
    FILES.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_unique_flow_names_and_are_found_by_name() {
        for (i, f) in FILES.iter().enumerate() {
            assert!(f.name.ends_with(".flow"), "{}", f.name);
            assert!(FILES[..i].iter().all(|g| g.name != f.name), "{}", f.name);
            assert!(!f.source.trim().is_empty(), "{} is empty", f.name);
        }
        let events = file("events.flow").expect("events.flow is listed");
        assert!(
            events
                .source
                .contains(r#"event order_completed "Order Completed" {"#)
        );
        assert!(file("missing.flow").is_none());
    }
}
