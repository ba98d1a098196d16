/// A builtin function: its name, its signature and what it does.
///
/// The signature is written in the flow type syntax (see `docs/stdlib.md`),
/// so that the type checker and the documentation read the same text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    /// The name used in calls.
    pub name: &'static str,
    /// The signature, such as `any(items: list<T>, test: fn(T) -> bool) -> bool`.
    pub signature: &'static str,
    /// One or two sentences for hover and completion.
    pub doc: &'static str,
}

/// Every builtin function.
pub const BUILTINS: &[Builtin] = &[];

/// Finds a builtin by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
