use logos::Logos;
use nudge_diagnostics::{Diagnostic, FileId, Span};

use crate::error::{ParseError, ParseErrorKind};
use crate::token::{Token, is_keyword};

/// A `//` comment, kept for the formatter and the language server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Where the comment is, from `//` to the end of its line.
    pub span: Span,
    /// The comment text including the leading `//`.
    pub text: String,
}

/// The result of lexing one file.
#[derive(Clone, Debug, Default)]
pub struct Lexed<'s> {
    /// Every token but comments, in order, with its span.
    pub tokens: Vec<(Token<'s>, Span)>,
    /// Every comment, in order.
    pub comments: Vec<Comment>,
    /// Invalid characters and unterminated strings.
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits `src` into tokens. Never fails: bad input becomes [`Token::Error`]
/// tokens plus diagnostics, so the parser can still recover around it.
pub fn lex(file: FileId, src: &str) -> Lexed<'_> {
    let mut out = Lexed::default();
    lex_range(file, src, 0, 0, &mut out);
    out
}

/// How deeply strings may nest inside interpolations. Real templates use one
/// or two levels; the limit keeps the recursive scan off the stack's edge.
const MAX_STRING_NESTING: usize = 16;

/// Lexes `src[start..]` until its end or, when `in_interp` is set, until the
/// `}` that closes the current interpolation. Returns the offset just past
/// what was consumed and whether the interpolation was closed. An
/// interpolation ends at a line break too, since strings stay on one line.
fn lex_range<'s>(
    file: FileId,
    src: &'s str,
    start: usize,
    nesting: usize,
    out: &mut Lexed<'s>,
) -> (usize, bool) {
    let in_interp = nesting > 0;
    let mut lexer = Token::lexer(&src[start..]);
    let mut depth = 0usize;
    let mut last_end = start;
    while let Some(result) = lexer.next() {
        let r = lexer.span();
        let span = Span::new(start + r.start, start + r.end);
        if in_interp && src[last_end..span.start as usize].contains('\n') {
            return (last_end, false);
        }
        match result {
            Ok(Token::Comment(text)) => out.comments.push(Comment {
                span,
                text: text.trim_end().to_string(),
            }),
            Ok(Token::Ident(word)) if is_keyword(word) => {
                out.tokens.push((Token::Keyword(word), span))
            }
            Ok(Token::StrStart) => {
                out.tokens.push((Token::StrStart, span));
                let end = lex_string(file, src, span.end as usize, nesting, out);
                lexer.bump(end - span.end as usize);
                last_end = end;
                continue;
            }
            Ok(Token::LBrace) => {
                depth += 1;
                out.tokens.push((Token::LBrace, span));
            }
            Ok(Token::RBrace) if in_interp && depth == 0 => {
                out.tokens.push((Token::InterpClose, span));
                return (span.end as usize, true);
            }
            Ok(Token::RBrace) => {
                depth = depth.saturating_sub(1);
                out.tokens.push((Token::RBrace, span));
            }
            Ok(tok) => out.tokens.push((tok, span)),
            Err(()) => {
                let ch = src[span.range()].chars().next().unwrap_or('?');
                out.diagnostics.push(
                    ParseError::new(span, ParseErrorKind::InvalidCharacter { ch })
                        .to_diagnostic(file),
                );
                out.tokens.push((Token::Error, span));
            }
        }
        last_end = span.end as usize;
    }
    (src.len(), !in_interp)
}

/// Lexes the inside of a string whose opening quote ends at `pos`, up to and
/// including the closing quote. Returns the offset just past the string.
fn lex_string<'s>(
    file: FileId,
    src: &'s str,
    pos: usize,
    nesting: usize,
    out: &mut Lexed<'s>,
) -> usize {
    let bytes = src.as_bytes();
    if nesting >= MAX_STRING_NESTING {
        // Too deep to follow: take the rest of the line as text.
        let end = src[pos..].find('\n').map_or(src.len(), |i| pos + i);
        out.tokens
            .push((Token::StrText(&src[pos..end]), Span::new(pos, end)));
        out.tokens.push((Token::StrEnd, Span::new(end, end)));
        out.diagnostics.push(
            ParseError::new(
                Span::new(pos - 1, end),
                ParseErrorKind::StringsTooDeep {
                    limit: MAX_STRING_NESTING,
                },
            )
            .to_diagnostic(file),
        );
        return end;
    }
    let mut i = pos;
    let mut text_start = pos;
    let flush = |out: &mut Lexed<'s>, from: usize, to: usize| {
        if to > from {
            out.tokens
                .push((Token::StrText(&src[from..to]), Span::new(from, to)));
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                flush(out, text_start, i);
                out.tokens.push((Token::StrEnd, Span::new(i, i + 1)));
                return i + 1;
            }
            b'\n' => break,
            b'{' => {
                flush(out, text_start, i);
                out.tokens.push((Token::InterpOpen, Span::new(i, i + 1)));
                let (end, closed) = lex_range(file, src, i + 1, nesting + 1, out);
                if !closed {
                    out.diagnostics
                        .push(unterminated(file, Span::new(i, end), true));
                    out.tokens.push((Token::InterpClose, Span::new(end, end)));
                    out.tokens.push((Token::StrEnd, Span::new(end, end)));
                    return end;
                }
                i = end;
                text_start = i;
            }
            _ => i += 1,
        }
    }
    let end = i.min(bytes.len());
    flush(out, text_start, end);
    out.diagnostics
        .push(unterminated(file, Span::new(pos - 1, end), false));
    out.tokens.push((Token::StrEnd, Span::new(end, end)));
    end
}

fn unterminated(file: FileId, span: Span, interp: bool) -> Diagnostic {
    let kind = if interp {
        ParseErrorKind::UnterminatedInterpolation
    } else {
        ParseErrorKind::UnterminatedString
    };
    ParseError::new(span, kind).to_diagnostic(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_diagnostics::codes;

    fn kinds(src: &str) -> Vec<String> {
        lex(FileId(0), src)
            .tokens
            .iter()
            .map(|(t, s)| format!("{t:?}@{}..{}", s.start, s.end))
            .collect()
    }

    #[test]
    fn literals_and_keywords() {
        let l = lex(
            FileId(0),
            "let x = $50.00 // price\nwait 1h 30m until 2026-12-18T17:00:00Z 21:00 50% 12.5 2026-12-24",
        );
        let toks: Vec<_> = l.tokens.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            toks,
            vec![
                Token::Keyword("let"),
                Token::Ident("x"),
                Token::Eq,
                Token::Money("$50.00"),
                Token::Keyword("wait"),
                Token::Duration("1h"),
                Token::Duration("30m"),
                Token::Keyword("until"),
                Token::Instant("2026-12-18T17:00:00Z"),
                Token::TimeOfDay("21:00"),
                Token::Percent("50%"),
                Token::Decimal("12.5"),
                Token::Date("2026-12-24"),
            ]
        );
        assert_eq!(l.comments.len(), 1);
        assert_eq!(l.comments[0].text, "// price");
        assert!(l.diagnostics.is_empty());
    }

    #[test]
    fn nested_string_in_interpolation() {
        let src = r#""{a ?? "Hi"}, x""#;
        assert_eq!(
            kinds(src),
            vec![
                "StrStart@0..1",
                "InterpOpen@1..2",
                "Ident(\"a\")@2..3",
                "QuestionQuestion@4..6",
                "StrStart@7..8",
                "StrText(\"Hi\")@8..10",
                "StrEnd@10..11",
                "InterpClose@11..12",
                "StrText(\", x\")@12..15",
                "StrEnd@15..16",
            ]
        );
    }

    #[test]
    fn escaped_quote_and_brace_stay_in_text() {
        let l = lex(FileId(0), r#""say \"hi\" \{x\}""#);
        assert_eq!(l.tokens[1].0, Token::StrText(r#"say \"hi\" \{x\}"#));
        assert!(l.diagnostics.is_empty());
    }

    #[test]
    fn unterminated_string_reports_and_recovers() {
        let l = lex(FileId(0), "let a = \"oops\nlet b = 1");
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!(l.diagnostics[0].code, codes::E0103);
        assert!(l.tokens.iter().any(|(t, _)| *t == Token::Ident("b")));
    }

    #[test]
    fn unterminated_interpolation_reports() {
        let l = lex(FileId(0), "\"a {b");
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!(l.diagnostics[0].title, "unterminated interpolation");
    }

    #[test]
    fn invalid_character_becomes_error_token() {
        let l = lex(FileId(0), "let a = 'x'");
        assert_eq!(l.diagnostics.len(), 2);
        assert_eq!(l.diagnostics[0].code, codes::E0101);
        assert!(l.tokens.iter().any(|(t, _)| *t == Token::Error));
    }

    #[test]
    fn deeply_nested_strings_are_cut_off_not_overflowed() {
        let src = "\"{".repeat(5000);
        let l = lex(FileId(0), &src);
        assert!(
            l.diagnostics
                .iter()
                .any(|d| d.title == "strings nested too deeply")
        );
    }

    #[test]
    fn braces_inside_interpolation_nest() {
        // A `}` closes the interpolation only at depth zero.
        let l = lex(FileId(0), r#""{f({})} end""#);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.tokens.last().unwrap().0, Token::StrEnd);
    }
}
