//! The error type the grammar reports to chumsky while it runs.
//!
//! It keeps what chumsky's `Rich` keeps (the tokens expected and the one
//! found), and the grammar's own errors as a typed [`ParseErrorKind`] rather
//! than as a message string. Merging follows `Rich` exactly (the first
//! custom error wins; expected lists are joined without repeats, the longer
//! one first), so which errors are reported and how their expected lists
//! read does not depend on the error type.

use chumsky::error::{Error, LabelError, RichPattern};
use chumsky::input::Input;
use chumsky::prelude::SimpleSpan;
use chumsky::util::MaybeRef;

use crate::Span;
use crate::error::ParseErrorKind;
use crate::token::Token;

/// An error met while running the grammar, before it becomes a
/// [`crate::ParseError`].
#[derive(Clone, Debug)]
pub(crate) struct GrammarError<'t, 's> {
    span: SimpleSpan,
    reason: Reason<'t, 's>,
}

/// Why the grammar failed.
#[derive(Clone, Debug)]
pub(crate) enum Reason<'t, 's> {
    /// None of the expected patterns matched the token found (`None` at the
    /// end of the input).
    Expected {
        expected: Vec<RichPattern<'t, Token<'s>>>,
        found: Option<MaybeRef<'t, Token<'s>>>,
    },
    /// An error the grammar raised itself, such as a bad literal.
    Custom(ParseErrorKind),
}

impl<'t, 's> GrammarError<'t, 's> {
    /// An error the grammar raises itself.
    pub(crate) fn custom(span: Span, kind: ParseErrorKind) -> Self {
        GrammarError {
            span: SimpleSpan::from(span.range()),
            reason: Reason::Custom(kind),
        }
    }

    /// Where the error is.
    pub(crate) fn span(&self) -> Span {
        Span::new(self.span.start, self.span.end)
    }

    /// Why the grammar failed.
    pub(crate) fn reason(&self) -> &Reason<'t, 's> {
        &self.reason
    }

    /// The token found where the grammar failed to match; `None` at the end
    /// of the input and for custom errors.
    pub(crate) fn found(&self) -> Option<&Token<'s>> {
        match &self.reason {
            Reason::Expected { found, .. } => found.as_deref(),
            Reason::Custom(_) => None,
        }
    }
}

impl<'t, 's: 't, I> Error<'t, I> for GrammarError<'t, 's>
where
    I: Input<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    fn merge(self, other: Self) -> Self {
        let reason = match (self.reason, other.reason) {
            (a @ Reason::Custom(_), _) => a,
            (_, b @ Reason::Custom(_)) => b,
            (
                Reason::Expected {
                    expected: mut this,
                    found,
                },
                Reason::Expected {
                    expected: mut that, ..
                },
            ) => {
                // `Rich` keeps the longer list first; doing the same keeps
                // the order of "expected a, b or c" unchanged.
                if that.len() > this.len() {
                    std::mem::swap(&mut this, &mut that);
                }
                for pattern in that {
                    if !this.contains(&pattern) {
                        this.push(pattern);
                    }
                }
                Reason::Expected {
                    expected: this,
                    found,
                }
            }
        };
        GrammarError {
            span: self.span,
            reason,
        }
    }
}

impl<'t, 's: 't, I, L> LabelError<'t, I, L> for GrammarError<'t, 's>
where
    I: Input<'t, Token = Token<'s>, Span = SimpleSpan>,
    L: Into<RichPattern<'t, Token<'s>>>,
{
    fn expected_found<E: IntoIterator<Item = L>>(
        expected: E,
        found: Option<MaybeRef<'t, Token<'s>>>,
        span: SimpleSpan,
    ) -> Self {
        GrammarError {
            span,
            reason: Reason::Expected {
                expected: expected.into_iter().map(Into::into).collect(),
                found,
            },
        }
    }

    fn merge_expected_found<E: IntoIterator<Item = L>>(
        mut self,
        new_expected: E,
        new_found: Option<MaybeRef<'t, Token<'s>>>,
        _span: SimpleSpan,
    ) -> Self {
        if let Reason::Expected { expected, found } = &mut self.reason {
            for pattern in new_expected {
                let pattern = pattern.into();
                if !expected.contains(&pattern) {
                    expected.push(pattern);
                }
            }
            *found = found.take().or(new_found);
        }
        self
    }

    fn replace_expected_found<E: IntoIterator<Item = L>>(
        mut self,
        new_expected: E,
        new_found: Option<MaybeRef<'t, Token<'s>>>,
        span: SimpleSpan,
    ) -> Self {
        self.span = span;
        self.reason = Reason::Expected {
            expected: new_expected.into_iter().map(Into::into).collect(),
            found: new_found,
        };
        self
    }

    fn label_with(&mut self, label: L) {
        let found = match &mut self.reason {
            Reason::Expected { found, .. } => found.take(),
            Reason::Custom(_) => None,
        };
        self.reason = Reason::Expected {
            expected: vec![label.into()],
            found,
        };
    }

    fn in_context(&mut self, _label: L, _span: SimpleSpan) {
        // Contexts are never shown, so none are kept.
    }
}
