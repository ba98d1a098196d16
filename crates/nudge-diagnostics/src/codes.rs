//! The registry of diagnostic codes. Every code the compiler can emit is
//! listed here once, so documentation and tests can enumerate them.

use serde::{Serialize, Serializer};

use crate::Severity;

/// A stable diagnostic code with its default severity and a short summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code {
    /// The code as printed, such as `E0202`.
    pub id: &'static str,
    /// A kebab-case name, such as `unknown-event`.
    pub name: &'static str,
    /// The severity diagnostics with this code get by default.
    pub severity: Severity,
    /// One sentence saying what the code is about.
    pub summary: &'static str,
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

macro_rules! codes {
    ($(#[$list_doc:meta])* $list:ident; $($konst:ident = $id:literal $name:literal $sev:ident $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $konst: Code = Code {
                id: $id,
                name: $name,
                severity: Severity::$sev,
                summary: $summary,
            };
        )*
        $(#[$list_doc])*
        pub const $list: &[Code] = &[$($konst),*];
    };
}

codes! {
    /// Every code of the `.flow` checker, in order.
    CODES;
    // Syntax.
    E0101 = "E0101" "invalid-character" Error "A character that cannot start any token.";
    E0102 = "E0102" "unexpected-token" Error "The parser found a token where the grammar does not allow it.";
    E0103 = "E0103" "unterminated-string" Error "A string literal or interpolation is not closed before the end of the line or file.";
    E0104 = "E0104" "invalid-literal" Error "A literal is malformed: an impossible date or time, an integer that overflows, an unknown escape.";
    E0105 = "E0105" "reserved-word" Error "A keyword is used where a name is expected.";
    // Names.
    E0201 = "E0201" "unknown-name" Error "A name that no declaration, parameter or local variable defines.";
    E0202 = "E0202" "unknown-event" Error "An event name that neither the project nor the stdlib declares.";
    E0203 = "E0203" "unknown-message" Error "A message that is not declared.";
    E0204 = "E0204" "unknown-field" Error "A field that the record, event or profile does not have.";
    E0205 = "E0205" "unknown-type" Error "A type name that is not built in or declared.";
    E0206 = "E0206" "duplicate-definition" Error "Two declarations of the same kind share a name.";
    E0207 = "E0207" "unknown-channel" Error "A channel other than email, sms, push, webhook or audience.";
    E0208 = "E0208" "unknown-flow" Error "A flow name that is not declared.";
    E0209 = "E0209" "unknown-function" Error "A call to a function that is not a stdlib builtin.";
    // Types.
    E0301 = "E0301" "type-mismatch" Error "A value of one type is used where another type is required.";
    E0302 = "E0302" "possibly-missing" Error "An optional value is used as if it were always present.";
    E0303 = "E0303" "wrong-arguments" Error "A message or function is called with missing, extra, misnamed or ill-typed arguments.";
    E0304 = "E0304" "invalid-operands" Error "An operator is applied to types it does not support.";
    E0305 = "E0305" "cyclic-definition" Error "A `let` or segment is defined in terms of itself.";
    E0306 = "E0306" "non-positive-duration" Error "A wait, window or cap period that is zero or negative.";
    E0307 = "E0307" "invalid-timezone" Error "A time zone name that is not in the IANA database.";
    E0308 = "E0308" "invalid-percent" Error "A percentage outside 0–100, split arms that do not add up to 100%, an arm without a share in a plain split or with one in a split that optimises, or a floor that leaves no room for every arm.";
    E0309 = "E0309" "not-compilable" Error "A construct that type-checks but that a bundle cannot hold: a field default that is not a constant, a `let` with no storable type, more than 64 message parameters given, or more than 65,535 locals, steps, waits or splits in one unit.";
    E0310 = "E0310" "non-constant-duration" Error "A wait or window names something that is not a constant duration: a variable, or a `let` whose value is computed.";
    E0311 = "E0311" "invalid-format" Error "A date format or currency code that cannot be read: an unknown style, a pattern specifier that does not exist, or a currency that is not an ISO 4217 code.";
    // Flows, messages and tests.
    E0401 = "E0401" "missing-trigger" Error "A flow without a trigger, or with more than one.";
    E0402 = "E0402" "duplicate-clause" Error "A flow clause that may appear once appears twice.";
    E0403 = "E0403" "unreachable-step" Error "A step after an unconditional `exit` can never run.";
    E0404 = "E0404" "invalid-message-content" Error "A message without a channel, with content its channel does not take, or missing required content.";
    E0405 = "E0405" "template-not-found" Error "A template file that cannot be read.";
    E0406 = "E0406" "template-unknown-variable" Error "A template uses a variable that is not a message parameter or a known root.";
    E0407 = "E0407" "template-syntax" Error "A template file that does not parse.";
    E0408 = "E0408" "invalid-test" Error "A test statement that cannot be satisfied or refers to something that does not exist.";
    E0409 = "E0409" "template-outside-project" Error "A template path that leads outside the project: absolute, a `..` escape or a symlink to elsewhere.";
    E0410 = "E0410" "template-unknown-field" Error "A template reads a field that its parameter, the profile or the record type does not have.";
    E0411 = "E0411" "template-unknown-filter" Error "A template uses a filter that templates do not have.";
    E0412 = "E0412" "optimise-without-goal" Error "A split optimises the flow's goal, and the flow has no goal.";
    // Domain lints.
    W0001 = "W0001" "abandonment-without-purchase-exit" Warning "An abandonment flow (triggered by a cart, checkout or browse event) does not exit on a purchase.";
    W0002 = "W0002" "sms-without-quiet-hours" Warning "A marketing SMS can be sent with no quiet hours in force.";
    W0003 = "W0003" "wait-beyond-goal" Warning "The flow waits longer than its goal window, so later sends cannot convert.";
    W0004 = "W0004" "exit-never-matches" Warning "An `exit on` rule whose condition can never hold.";
    W0005 = "W0005" "unused-segment" Warning "A segment that nothing uses.";
    W0006 = "W0006" "unused-message" Warning "A message that no flow sends.";
    W0007 = "W0007" "unused-let" Warning "A top-level `let` that nothing uses.";
    W0008 = "W0008" "segment-changes-with-time" Warning "A flow starts on entering a segment whose membership can change with time alone.";
}

codes! {
    /// Codes about a project's files other than what its `.flow` sources
    /// say: its `nudge.toml` and reading its files. The `.flow` checker
    /// never emits them, so they are kept apart from [`CODES`].
    PROJECT_CODES;
    // nudge.toml.
    E0501 = "E0501" "invalid-manifest" Error "The project's `nudge.toml` cannot be read or holds an invalid setting.";
    E0502 = "E0502" "manifest-syntax" Error "The project's `nudge.toml` is not valid TOML.";
    E0503 = "E0503" "unknown-manifest-key" Error "A section or key that `nudge.toml` does not have.";
    E0504 = "E0504" "manifest-type-mismatch" Error "A `nudge.toml` setting whose value has the wrong type, or a required setting left out.";
    // Reading the project's files.
    E0601 = "E0601" "path-not-found" Error "A path given to a command does not exist.";
    E0602 = "E0602" "unreadable-source" Error "A `.flow` file or folder that cannot be read, or a file that is not UTF-8 text.";
    E0603 = "E0603" "no-flow-files" Error "A folder with no `.flow` file below it.";
}

codes! {
    /// The code of a fault in the compiler itself: the checker accepted a
    /// program it could not describe for lowering. No source is meant to
    /// produce it, so it has no fixture; it is kept apart from [`CODES`].
    INTERNAL_CODES;
    E0901 = "E0901" "internal-error" Error "The checker accepted a construct it did not describe for lowering: a bug in the compiler, to be reported.";
}

/// Every code: the `.flow` checker's, then the project's, then the internal one.
pub fn all() -> impl Iterator<Item = Code> {
    CODES
        .iter()
        .chain(PROJECT_CODES)
        .chain(INTERNAL_CODES)
        .copied()
}

/// Finds a code by its id (`E0202`) or name (`unknown-event`).
pub fn lookup(id_or_name: &str) -> Option<Code> {
    all().find(|c| c.id.eq_ignore_ascii_case(id_or_name) || c.name == id_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique_and_prefixed_by_severity() {
        let count = all().count();
        let mut ids: Vec<_> = all().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
        let mut names: Vec<_> = all().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        for c in all() {
            let prefix = match c.severity {
                Severity::Error => 'E',
                _ => 'W',
            };
            assert!(c.id.starts_with(prefix), "{} has the wrong prefix", c.id);
        }
    }

    #[test]
    fn lookup_by_id_or_name() {
        assert_eq!(lookup("e0202"), Some(E0202));
        assert_eq!(lookup("unknown-event"), Some(E0202));
        assert_eq!(lookup("nope"), None);
        assert_eq!(lookup("invalid-manifest"), Some(E0501));
    }
}
