//! Syntax errors as typed values, and the one function that turns them into
//! diagnostics.
//!
//! The lexer and the parser only record what went wrong and where; the code,
//! title, labels and help a person reads are all chosen in
//! [`ParseError::to_diagnostic`], so that the wording of every syntax error
//! lives in one place and can be checked against `docs/diagnostics.md`.

use nudge_diagnostics::{Code, Diagnostic, FileId, FileSpan, Span, codes};

/// A lexical or syntax error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The bytes the error is about.
    pub span: Span,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong, with the data each kind of error shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A character that starts no token.
    InvalidCharacter {
        /// The character.
        ch: char,
    },
    /// A string with no closing quote on its line.
    UnterminatedString,
    /// An interpolation `{` in a string with no `}` on its line.
    UnterminatedInterpolation,
    /// Strings inside interpolations nested deeper than the lexer follows.
    StringsTooDeep {
        /// How deep strings may nest.
        limit: usize,
    },
    /// Brackets and operators nested deeper than the parser allows; the rest
    /// of the file is skipped.
    TooDeep {
        /// How deep the tree may nest.
        limit: usize,
    },
    /// The grammar could not continue with the token found.
    Unexpected {
        /// What could have come instead, each described for people (such as
        /// "a name" or "`}`"), in the order the grammar tried them.
        expected: Vec<String>,
        /// The token found, described for people; `None` at the end of the file.
        found: Option<String>,
        /// A bracket that is never closed and explains the error: its text
        /// and where it is.
        unclosed: Option<(&'static str, Span)>,
    },
    /// A keyword used as a declaration, parameter or variable name.
    ReservedWord {
        /// The keyword.
        word: String,
    },
    /// An integer literal outside the 64-bit range.
    IntegerTooLarge {
        /// The literal as written.
        text: String,
    },
    /// A number with more digits than an exact decimal holds.
    InexactNumber {
        /// The literal as written.
        text: String,
    },
    /// One component of a duration, such as `99999999999999999w`, that does
    /// not fit in 64-bit seconds.
    DurationPartTooLong {
        /// The component as written.
        text: String,
    },
    /// A duration whose components together do not fit in 64-bit seconds.
    DurationTooLong,
    /// A date that exists but lies outside the range of days kept.
    DateOutOfRange {
        /// The literal as written.
        text: String,
    },
    /// A date such as `2026-13-40` that does not exist.
    InvalidDate {
        /// The literal as written.
        text: String,
    },
    /// A time of day such as `25:00` that does not exist.
    InvalidTimeOfDay {
        /// The literal as written.
        text: String,
    },
    /// An instant whose date, time or offset does not exist.
    InvalidInstant {
        /// The literal as written.
        text: String,
    },
    /// A backslash escape the language does not define.
    UnknownEscape {
        /// The escape as written, such as `\q`.
        escape: String,
    },
    /// An interpolation in a string that must be plain text.
    InterpolationNotAllowed,
    /// A second comparison operator in `a < b < c`.
    ChainedComparison,
}

impl ParseError {
    /// An error of `kind` at `span`.
    pub fn new(span: Span, kind: ParseErrorKind) -> Self {
        ParseError { span, kind }
    }

    /// The diagnostic code this error is reported under.
    pub fn code(&self) -> Code {
        use ParseErrorKind::*;
        match &self.kind {
            InvalidCharacter { .. } => codes::E0101,
            Unexpected { .. } | TooDeep { .. } | InterpolationNotAllowed | ChainedComparison => {
                codes::E0102
            }
            UnterminatedString | UnterminatedInterpolation | StringsTooDeep { .. } => codes::E0103,
            IntegerTooLarge { .. }
            | InexactNumber { .. }
            | DurationPartTooLong { .. }
            | DurationTooLong
            | DateOutOfRange { .. }
            | InvalidDate { .. }
            | InvalidTimeOfDay { .. }
            | InvalidInstant { .. }
            | UnknownEscape { .. } => codes::E0104,
            ReservedWord { .. } => codes::E0105,
        }
    }

    /// The diagnostic for this error in `file`: its code, title, labels and
    /// help.
    pub fn to_diagnostic(&self, file: FileId) -> Diagnostic {
        use ParseErrorKind::*;
        let (title, label, help): (String, String, Option<String>) = match &self.kind {
            InvalidCharacter { ch } => (
                format!("invalid character `{}`", ch.escape_debug()),
                "no token starts with this character".into(),
                Some(if *ch == '\'' {
                    "strings are written in double quotes: \"like this\"".into()
                } else {
                    "remove it, or put it inside a string".into()
                }),
            ),
            UnterminatedString => (
                "unterminated string".into(),
                "this string has no closing quote".into(),
                Some("close the string with `\"` on the same line".into()),
            ),
            UnterminatedInterpolation => (
                "unterminated interpolation".into(),
                "this `{` is never closed".into(),
                Some("close the interpolation with `}`, or write `\\{` for a literal brace".into()),
            ),
            StringsTooDeep { limit } => (
                "strings nested too deeply".into(),
                format!("more than {limit} strings inside each other's interpolations"),
                Some("compute the inner parts with `let` first".into()),
            ),
            TooDeep { limit } => (
                "too deeply nested".into(),
                format!("more than {limit} levels of nesting; the rest of the file is skipped"),
                Some("split the expression with `let`, or the block into smaller flows".into()),
            ),
            Unexpected {
                expected, found, ..
            } => {
                let found_text = found.as_deref().unwrap_or("the end of the file");
                let title = if expected.is_empty() {
                    format!("unexpected {found_text}")
                } else {
                    format!("expected {}, found {found_text}", join_or(expected))
                };
                let label = if found.is_some() {
                    "unexpected here"
                } else {
                    "the file ends here"
                };
                (title, label.into(), None)
            }
            ReservedWord { word } => (
                format!("`{word}` is a reserved word"),
                "a keyword cannot be used as a name".into(),
                Some(format!(
                    "choose another name, such as `{word}_`; keywords may only name fields"
                )),
            ),
            IntegerTooLarge { text } => (
                format!("integer `{text}` is too large"),
                "integers must lie between -9223372036854775808 and 9223372036854775807".into(),
                None,
            ),
            InexactNumber { text } => (
                format!("number `{text}` cannot be represented exactly"),
                "too many digits for an exact decimal".into(),
                None,
            ),
            DurationPartTooLong { text } => (
                format!("duration `{text}` is too long"),
                "this duration does not fit in 64-bit seconds".into(),
                None,
            ),
            DurationTooLong => (
                "duration is too long".into(),
                "this duration does not fit in 64-bit seconds".into(),
                None,
            ),
            DateOutOfRange { text } => (
                format!("date `{text}` is out of range"),
                "no such date".into(),
                None,
            ),
            InvalidDate { text } => (
                format!("`{text}` is not a valid date"),
                "no such date".into(),
                None,
            ),
            InvalidTimeOfDay { text } => (
                format!("`{text}` is not a valid time of day"),
                "hours run from 00 to 23 and minutes from 00 to 59".into(),
                None,
            ),
            InvalidInstant { text } => (
                format!("`{text}` is not a valid instant"),
                "no such date, time or offset".into(),
                None,
            ),
            UnknownEscape { escape } => (
                format!("unknown escape `{escape}`"),
                "unknown escape".into(),
                Some("the escapes are \\\" \\\\ \\n \\t \\{ and \\}".into()),
            ),
            InterpolationNotAllowed => (
                "interpolation is not allowed in this string".into(),
                "this string must be plain text".into(),
                Some("write `\\{` for a literal brace".into()),
            ),
            ChainedComparison => (
                "comparison operators cannot be chained".into(),
                "a second comparison".into(),
                Some("compare twice and join with `and`: `a < b and b < c`".into()),
            ),
        };
        let mut d = Diagnostic::new(self.code(), FileSpan::new(file, self.span), title)
            .with_primary_label(label);
        if let Unexpected {
            unclosed: Some((bracket, open)),
            ..
        } = &self.kind
        {
            d = d.with_label(
                FileSpan::new(file, *open),
                format!("this `{bracket}` is never closed"),
            );
        }
        if let Some(help) = help {
            d = d.with_help(help);
        }
        d
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(kind: ParseErrorKind) -> Diagnostic {
        ParseError::new(Span::new(4, 7), kind).to_diagnostic(FileId(2))
    }

    #[test]
    fn unexpected_tokens_list_what_was_expected_and_the_open_bracket() {
        let d = at(ParseErrorKind::Unexpected {
            expected: vec!["a name".into(), "`(`".into(), "`}`".into()],
            found: Some("`=`".into()),
            unclosed: Some(("{", Span::new(0, 1))),
        });
        assert_eq!(d.code, codes::E0102);
        assert_eq!(d.title, "expected a name, `(` or `}`, found `=`");
        assert_eq!(d.primary, FileSpan::new(FileId(2), Span::new(4, 7)));
        assert_eq!(d.primary_label.as_deref(), Some("unexpected here"));
        assert_eq!(d.labels.len(), 1);
        assert_eq!(d.labels[0].at, FileSpan::new(FileId(2), Span::new(0, 1)));
        assert_eq!(d.labels[0].message, "this `{` is never closed");
        assert_eq!(d.help, None);
    }

    #[test]
    fn the_end_of_the_file_is_named_as_such() {
        let d = at(ParseErrorKind::Unexpected {
            expected: Vec::new(),
            found: None,
            unclosed: None,
        });
        assert_eq!(d.title, "unexpected the end of the file");
        assert_eq!(d.primary_label.as_deref(), Some("the file ends here"));
        assert!(d.labels.is_empty());
    }

    #[test]
    fn codes_follow_the_kind_of_error() {
        let d = at(ParseErrorKind::ReservedWord {
            word: "flow".into(),
        });
        assert_eq!(d.code, codes::E0105);
        assert_eq!(d.title, "`flow` is a reserved word");
        assert_eq!(
            d.help.as_deref(),
            Some("choose another name, such as `flow_`; keywords may only name fields")
        );
        let d = at(ParseErrorKind::InvalidTimeOfDay {
            text: "25:00".into(),
        });
        assert_eq!(d.code, codes::E0104);
        assert_eq!(d.help, None);
        assert_eq!(
            at(ParseErrorKind::InvalidCharacter { ch: '\'' }).code,
            codes::E0101
        );
        assert_eq!(at(ParseErrorKind::UnterminatedString).code, codes::E0103);
    }
}
