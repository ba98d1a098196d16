use serde::Serialize;

use crate::{Code, FileSpan};

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something to know; never fails a check.
    Note,
    /// Probably a mistake; fails `nudge check` only with `--deny-warnings`.
    Warning,
    /// The program is wrong and cannot be built.
    Error,
}

impl Severity {
    /// The lower-case word used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A secondary location that explains the diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Where.
    pub at: FileSpan,
    /// What to say there.
    pub message: String,
}

/// One text replacement of a [`Fix`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edit {
    /// The bytes to replace (empty to insert).
    pub at: FileSpan,
    /// The new text.
    pub replacement: String,
}

/// A machine-applicable repair, offered as a quick fix by the language server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// What the fix does, shown to the user ("replace with `order_completed`").
    pub message: String,
    /// The edits, non-overlapping.
    pub edits: Vec<Edit>,
}

/// A problem found in a project, with everything needed to show and fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code such as `E0201`; documented in `docs/diagnostics.md`.
    pub code: Code,
    /// Error, warning or note.
    pub severity: Severity,
    /// One-line statement of the problem.
    pub title: String,
    /// The location the problem is reported at.
    pub primary: FileSpan,
    /// Short text under the primary span ("unknown event").
    pub primary_label: Option<String>,
    /// Further locations with explanations.
    pub labels: Vec<Label>,
    /// How to fix it, in words.
    pub help: Option<String>,
    /// How to fix it, as edits.
    pub fix: Option<Fix>,
}

impl Diagnostic {
    /// Starts a diagnostic with the code's own severity.
    pub fn new(code: Code, primary: FileSpan, title: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity,
            title: title.into(),
            primary,
            primary_label: None,
            labels: Vec::new(),
            help: None,
            fix: None,
        }
    }

    /// Sets the text shown under the primary span.
    pub fn with_primary_label(mut self, message: impl Into<String>) -> Self {
        self.primary_label = Some(message.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, at: FileSpan, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            at,
            message: message.into(),
        });
        self
    }

    /// Sets the help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attaches a machine-applicable fix.
    pub fn with_fix(mut self, message: impl Into<String>, edits: Vec<crate::Edit>) -> Self {
        self.fix = Some(Fix {
            message: message.into(),
            edits,
        });
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
