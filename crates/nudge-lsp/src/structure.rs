//! Answers about a file's shape: folding ranges, selection ranges, the
//! highlights of the symbol under the cursor and links to template files.

use std::path::PathBuf;

use nudge_diagnostics::{FileId, Span};
use nudge_syntax::Token;

use crate::lookup::word_at;
use crate::outline::{self, OutlineItem};
use crate::world::Snapshot;

/// A region an editor may fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    /// From the start of the first line to the end of the last.
    pub span: Span,
    /// Whether it is a run of comment lines rather than a declaration.
    pub comment: bool,
}

/// Every declaration, flow step and run of comment lines that spans more
/// than one line, outermost first.
pub fn folding_ranges(snap: &Snapshot, file: FileId) -> Vec<Fold> {
    let text = snap.text(file);
    let mut out = Vec::new();
    fn walk(items: &[OutlineItem], text: &str, out: &mut Vec<Fold>) {
        for item in items {
            if spans_lines(text, item.span) {
                out.push(Fold {
                    span: item.span,
                    comment: false,
                });
            }
            walk(&item.children, text, out);
        }
    }
    walk(&outline::document_symbols(snap, file), text, &mut out);
    // Comments on consecutive lines fold together.
    let comments = nudge_syntax::lex(file, text).comments;
    let mut run: Option<(Span, usize)> = None;
    for c in comments {
        let consecutive = run.is_some_and(|(span, _)| {
            text.get(span.end as usize..c.span.start as usize)
                .is_some_and(|between| between.trim().is_empty() && line_breaks(between) == 1)
        });
        run = match run {
            Some((span, n)) if consecutive => Some((span.to(c.span), n + 1)),
            done => {
                push_comment_run(done, &mut out);
                Some((c.span, 1))
            }
        };
    }
    push_comment_run(run, &mut out);
    out
}

fn push_comment_run(run: Option<(Span, usize)>, out: &mut Vec<Fold>) {
    if let Some((span, n)) = run
        && n > 1
    {
        out.push(Fold {
            span,
            comment: true,
        });
    }
}

fn line_breaks(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\n').count()
}

fn spans_lines(text: &str, span: Span) -> bool {
    text.get(span.range()).is_some_and(|t| t.contains('\n'))
}

/// The spans an editor's "expand selection" steps through at an offset:
/// the word, then each enclosing outline entry (a step, a flow), then the
/// whole file; innermost first, each strictly larger than the one before.
pub fn selection_ranges(snap: &Snapshot, file: FileId, offset: u32) -> Vec<Span> {
    let text = snap.text(file);
    let mut chain: Vec<Span> = Vec::new();
    if let Some((word, _)) = word_at(text, offset) {
        chain.push(word);
    }
    let mut enclosing = Vec::new();
    let mut items = outline::document_symbols(snap, file);
    while let Some(item) = items
        .into_iter()
        .find(|i| i.span.start <= offset && offset <= i.span.end)
    {
        enclosing.push(item.span);
        items = item.children;
    }
    chain.extend(enclosing.into_iter().rev());
    chain.push(Span::new(0, text.len()));
    let mut out: Vec<Span> = Vec::new();
    for span in chain {
        let grows = out
            .last()
            .is_none_or(|l| span.start <= l.start && span.end >= l.end && span != *l);
        if grows {
            out.push(span);
        }
    }
    out
}

/// One occurrence of the symbol under the cursor in the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Highlight {
    /// The name's bytes.
    pub span: Span,
    /// Whether this is the declaration (written) rather than a use (read).
    pub declaration: bool,
}

/// The declaration and uses, in this file, of the symbol at an offset.
pub fn document_highlights(snap: &Snapshot, file: FileId, offset: u32) -> Vec<Highlight> {
    let an = &snap.analysis;
    let Some(id) = an.symbol_at(file, offset) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(at) = an.definition(id)
        && at.file == file
    {
        out.push(Highlight {
            span: at.span,
            declaration: true,
        });
    }
    for at in an.references(id) {
        if at.file == file && !out.iter().any(|h| h.span == at.span) {
            out.push(Highlight {
                span: at.span,
                declaration: false,
            });
        }
    }
    out.sort_by_key(|h| h.span.start);
    out
}

/// A `template "PATH"` reference and the file it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateLink {
    /// The path's text between the quotes.
    pub span: Span,
    /// The template file, relative to the `.flow` file's folder.
    pub target: PathBuf,
}

/// Links for every `template "PATH"` whose file exists.
pub fn template_links(snap: &Snapshot, file: FileId) -> Vec<TemplateLink> {
    let text = snap.text(file);
    let Some(dir) = snap.path(file).and_then(|p| p.parent()) else {
        return Vec::new();
    };
    let lexed = nudge_syntax::lex(file, text);
    let toks = &lexed.tokens;
    let mut out = Vec::new();
    for w in toks.windows(4) {
        if let [
            (Token::Ident("template"), _),
            (Token::StrStart, _),
            (Token::StrText(path), span),
            (Token::StrEnd, _),
        ] = w
        {
            // Escapes and interpolations are not plain paths.
            if path.contains(['\\', '{']) {
                continue;
            }
            let target = dir.join(path);
            if target.is_file() {
                out.push(TemplateLink {
                    span: *span,
                    target,
                });
            }
        }
    }
    out
}
