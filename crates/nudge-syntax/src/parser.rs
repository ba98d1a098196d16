//! The error-recovering parser: tokens in, a syntax tree and diagnostics out.
//!
//! The grammar lives in [`grammar`]; this module runs it and turns the
//! grammar's errors into [`ParseError`]s, which become [`Diagnostic`]s with
//! stable codes.

mod grammar;
mod grammar_error;
mod lit;

use std::collections::HashMap;
use std::rc::Rc;

use chumsky::error::RichPattern;
use chumsky::prelude::{Input, Parser, SimpleSpan};
use nudge_diagnostics::{Diagnostic, FileId, Span};

use crate::Comment;
use crate::ast::File;
use crate::error::{ParseError, ParseErrorKind};
use crate::token::{TEST_WORDS, Token};
use grammar_error::{GrammarError, Reason};

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
    let tokens: Vec<(Token<'_>, SimpleSpan)> = lexed
        .tokens
        .iter()
        .map(|&(tok, span)| (tok, SimpleSpan::from(span.range())))
        .collect();
    let eoi = SimpleSpan::from(src.len()..src.len());
    let mut tokens = tokens;
    let mut diagnostics = lexed.diagnostics;
    let cut = too_deep(src, &lexed.tokens);
    if let Some(at) = cut {
        let span = lexed.tokens[at].1;
        tokens.truncate(at);
        diagnostics.push(
            ParseError::new(span, ParseErrorKind::TooDeep { limit: MAX_NESTING })
                .to_diagnostic(file),
        );
    }
    let cut_at = cut.map_or(u32::MAX, |at| lexed.tokens[at].1.start);
    let (pairs, unclosed) = pair_brackets(&lexed.tokens[..cut.unwrap_or(lexed.tokens.len())]);
    let (tree, errors) = grammar::file(src, Rc::new(pairs))
        .parse(tokens.as_slice().split_token_span(eoi))
        .into_output_errors();

    let mut reported: Vec<u32> = Vec::new();
    for err in errors {
        // What follows a cut is not worth reporting.
        if err.span().start >= cut_at {
            continue;
        }
        // An invalid character was already reported by the lexer.
        if matches!(err.found(), Some(Token::Error)) {
            continue;
        }
        let error = to_parse_error(&err, &unclosed);
        // One syntax error per position: recovery can fail at the same
        // token more than once.
        let syntax = error.code() == nudge_diagnostics::codes::E0102;
        if syntax && reported.contains(&error.span.start) {
            continue;
        }
        if syntax {
            reported.push(error.span.start);
        }
        diagnostics.push(error.to_diagnostic(file));
    }
    diagnostics.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));

    let file_span = Span::new(0, src.len());
    Parsed {
        file: tree.unwrap_or(File {
            items: Vec::new(),
            span: file_span,
        }),
        comments: lexed.comments,
        diagnostics,
    }
}

/// How deep a syntax tree may nest. Every later stage walks the tree
/// recursively (dropping it does too), so nesting is bounded before parsing.
const MAX_NESTING: usize = 256;

/// Finds the first token at which the tree could nest deeper than
/// [`MAX_NESTING`]. The count is an upper bound on the depth of the node
/// being built: every operator, `=>` and bracket adds a level; a closing
/// bracket, a `,` or a keyword that starts a statement goes back to the
/// level of the enclosing bracket, since what follows is a sibling.
fn too_deep(src: &str, tokens: &[(Token<'_>, Span)]) -> Option<usize> {
    let mut saved: Vec<usize> = Vec::new();
    let mut level = 0usize;
    let mut prev: Option<Token<'_>> = None;
    for (i, &(tok, span)) in tokens.iter().enumerate() {
        let sibling = |saved: &[usize]| saved.last().map_or(0, |l| l + 1);
        let after_dot = matches!(prev, Some(Token::Dot | Token::QuestionDot));
        match tok {
            Token::LBrace | Token::LParen | Token::LBracket | Token::InterpOpen => {
                saved.push(level);
                level += 1;
            }
            Token::RBrace | Token::RParen | Token::RBracket | Token::InterpClose => {
                level = saved.pop().unwrap_or(0);
            }
            Token::Comma => level = sibling(&saved),
            t if t.is_expression_keyword() => {}
            Token::Keyword(_) if !after_dot => level = sibling(&saved),
            // Test statements start with plain words; `at +1h` is no sum.
            Token::Ident(w) if TEST_WORDS.contains(&w) && line_start(src, span.start) => {
                level = sibling(&saved)
            }
            _ => {}
        }
        if tok.is_operator() {
            level += 1;
        }
        if level > MAX_NESTING || saved.len() > MAX_NESTING {
            return Some(i);
        }
        prev = Some(tok);
    }
    None
}

/// Whether the token starting at `at` is the first one on its line.
fn line_start(src: &str, at: u32) -> bool {
    let before = src.as_bytes().get(..at as usize).unwrap_or_default();
    before
        .iter()
        .rev()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\x0c'))
        .is_none_or(|&b| b == b'\n')
}

/// Pairs brackets, string quotes and interpolation braces over the whole
/// token stream. Returns, for every opener that is closed, the start of its
/// closer, and the openers that are never closed. A closer pops back to the
/// nearest opener of its own kind; a closer with no such opener is stray.
fn pair_brackets(tokens: &[(Token<'_>, Span)]) -> (HashMap<u32, u32>, Vec<(Token<'static>, Span)>) {
    let mut pairs = HashMap::new();
    let mut stack: Vec<(Token<'static>, Span)> = Vec::new();
    let mut unclosed = Vec::new();
    for &(tok, span) in tokens {
        let (opener, want) = match tok {
            Token::LBrace => (Some(Token::LBrace), None),
            Token::LParen => (Some(Token::LParen), None),
            Token::LBracket => (Some(Token::LBracket), None),
            Token::StrStart => (Some(Token::StrStart), None),
            Token::InterpOpen => (Some(Token::InterpOpen), None),
            Token::RBrace => (None, Some(Token::LBrace)),
            Token::RParen => (None, Some(Token::LParen)),
            Token::RBracket => (None, Some(Token::LBracket)),
            Token::StrEnd => (None, Some(Token::StrStart)),
            Token::InterpClose => (None, Some(Token::InterpOpen)),
            _ => continue,
        };
        if let Some(open) = opener {
            stack.push((open, span));
        } else if let Some(pos) = want.and_then(|w| stack.iter().rposition(|(t, _)| *t == w)) {
            let mut popped = stack.drain(pos..);
            if let Some((_, open)) = popped.next() {
                pairs.insert(open.start, span.start);
            }
            unclosed.extend(popped);
        }
    }
    unclosed.extend(stack);
    unclosed.retain(|(t, _)| matches!(t, Token::LBrace | Token::LParen | Token::LBracket));
    unclosed.sort_by_key(|(_, s)| s.start);
    (pairs, unclosed)
}

/// What a grammar error means: its own typed error, or the tokens that
/// were expected and the one found, with the bracket left open that explains
/// it when there is one.
fn to_parse_error(err: &GrammarError<'_, '_>, unclosed: &[(Token<'static>, Span)]) -> ParseError {
    let span = err.span();
    let expected_patterns = match err.reason() {
        Reason::Custom(kind) => return ParseError::new(span, kind.clone()),
        Reason::Expected { expected, .. } => expected,
    };

    let mut expected: Vec<String> = Vec::new();
    let mut wants_closer = false;
    for pattern in expected_patterns {
        let text = match pattern {
            RichPattern::Token(tok) => {
                let tok: &Token<'_> = tok;
                wants_closer |= matches!(tok, Token::RBrace | Token::RParen | Token::RBracket);
                match tok {
                    t if t.continues_expression() => "an operator".to_string(),
                    Token::Keyword(w) | Token::Ident(w) => format!("`{w}`"),
                    other => other.describe(),
                }
            }
            RichPattern::Label(l) if l.is_empty() => continue,
            RichPattern::Label(l) => l.to_string(),
            RichPattern::Identifier(i) => format!("`{i}`"),
            RichPattern::EndOfInput => "the end of the file".to_string(),
            RichPattern::Any => "something".to_string(),
            _ => continue,
        };
        if !expected.contains(&text) {
            expected.push(text);
        }
    }

    let at_closer = matches!(
        err.found(),
        None | Some(Token::RBrace | Token::RParen | Token::RBracket)
    );
    let open = unclosed
        .iter()
        .rev()
        .find(|(_, s)| s.start < span.start.max(1));
    let unclosed = match (wants_closer || at_closer, open) {
        (true, Some((tok, open))) => Some((tok.punct(), *open)),
        _ => None,
    };
    ParseError::new(
        span,
        ParseErrorKind::Unexpected {
            expected,
            found: err.found().map(Token::describe),
            unclosed,
        },
    )
}
