//! The combinators of the flow grammar (docs/grammar.md).
//!
//! Recovery follows the one-statement-per-line convention that `nudge fmt`
//! keeps: a broken statement is skipped up to the next line that starts with
//! a token that can begin a statement of the enclosing kind, so one mistake
//! gives one diagnostic and the rest of the file still yields a tree.
//! Bracketed groups are skipped as a whole so that recovery never stops
//! inside them.

use std::collections::HashMap;
use std::rc::Rc;

use chumsky::error::LabelError;
use chumsky::input::{InputRef, MapExtra, MappedInput};
use chumsky::prelude::*;
use chumsky::primitive::select;
use chumsky::util::MaybeRef;

use super::grammar_error::GrammarError;
use super::lit;
use crate::Span;
use crate::ast::*;
use crate::error::ParseErrorKind;
use crate::token::{POLICY_WORDS, TEST_WORDS, Token};

/// The parser's input: the lexer's tokens with chumsky spans.
pub(super) type In<'t, 's> = MappedInput<'t, Token<'s>, SimpleSpan, &'t [(Token<'s>, SimpleSpan)]>;
/// The parser's error type.
pub(super) type Err<'t, 's> = GrammarError<'t, 's>;
type Ext<'t, 's> = extra::Err<Err<'t, 's>>;
type P<'t, 's, O> = Boxed<'t, 't, In<'t, 's>, O, Ext<'t, 's>>;
type Ex<'t, 'p, 's> = MapExtra<'t, 'p, In<'t, 's>, Ext<'t, 's>>;

fn sp(s: SimpleSpan) -> Span {
    Span::new(s.start, s.end)
}

fn espan(e: &mut Ex<'_, '_, '_>) -> Span {
    sp(e.span())
}

/// Whether the token starting at `at` is the first one on its line.
fn line_start(src: &str, at: usize) -> bool {
    let before = src.as_bytes().get(..at).unwrap_or_default();
    for &b in before.iter().rev() {
        match b {
            b' ' | b'\t' | b'\r' | b'\x0c' => continue,
            b'\n' => return true,
            _ => return false,
        }
    }
    true
}

fn is_closer(t: &Token<'_>) -> bool {
    matches!(
        t,
        Token::RBrace | Token::RParen | Token::RBracket | Token::InterpClose | Token::StrEnd
    )
}

fn kw<'t, 's: 't>(k: &'static str) -> impl Parser<'t, In<'t, 's>, Token<'s>, Ext<'t, 's>> + Clone {
    just(Token::Keyword(k))
}

fn word<'t, 's: 't>(
    w: &'static str,
) -> impl Parser<'t, In<'t, 's>, Token<'s>, Ext<'t, 's>> + Clone {
    just(Token::Ident(w))
}

fn t<'t, 's: 't>(tok: Token<'s>) -> impl Parser<'t, In<'t, 's>, Token<'s>, Ext<'t, 's>> + Clone {
    just(tok)
}

/// Token-level parsers every part of the grammar uses, built once per parse.
#[derive(Clone)]
struct Lexical<'t, 's> {
    src: &'s str,
    pairs: Pairs,
    /// A balanced `{…}`, `(…)`, `[…]` group or a string, skipped whole
    /// during recovery.
    group: P<'t, 's, ()>,
    ident: P<'t, 's, Ident>,
    name: P<'t, 's, Ident>,
    field: P<'t, 's, Ident>,
    int: P<'t, 's, IntLit>,
    percent: P<'t, 's, PercentLit>,
    duration: P<'t, 's, DurationLit>,
    time: P<'t, 's, TimeLit>,
    instant: P<'t, 's, InstantLit>,
    date: P<'t, 's, DateLit>,
}

/// The token-level parsers plus expressions and strings.
#[derive(Clone)]
struct Kit<'t, 's> {
    lexical: Lexical<'t, 's>,
    strlit: P<'t, 's, StrLit>,
    expr: P<'t, 's, Expr>,
    /// An expression that, when broken, is skipped to the end of its line.
    line_expr: P<'t, 's, Expr>,
}

impl<'t, 's> std::ops::Deref for Kit<'t, 's> {
    type Target = Lexical<'t, 's>;

    fn deref(&self) -> &Lexical<'t, 's> {
        &self.lexical
    }
}

impl<'t, 's: 't> Lexical<'t, 's> {
    /// Skips a broken statement: one token (or group), then everything up to
    /// a closing bracket or a line that starts with a token `starts` accepts.
    ///
    /// In a braced body (`first_on_new_line`) only `}` ends the skip, so a
    /// stray `)` is skipped with the statement; a broken expression stops at
    /// any closer, which belongs to the construct around it.
    fn skip_stmt(&self, starts: fn(&Token<'s>) -> bool, first_on_new_line: bool) -> P<'t, 's, ()> {
        let src = self.src;
        let closes = move |tok: &Token<'s>| {
            if first_on_new_line {
                *tok == Token::RBrace
            } else {
                is_closer(tok)
            }
        };
        let first = self
            .group
            .clone()
            .or(select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
                let at_start = line_start(src, e.span().start);
                let next_decl = at_start && item_start(&tok) && tok != Token::Keyword("let");
                let refused = closes(&tok) || next_decl || (at_start && !first_on_new_line);
                (!refused).then_some(())
            }));
        let rest = self
            .group
            .clone()
            .or(select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
                let at_start = line_start(src, e.span().start);
                let next_decl = at_start && item_start(&tok) && tok != Token::Keyword("let");
                let refused = closes(&tok) || next_decl || (at_start && starts(&tok));
                (!refused).then_some(())
            }));
        // The empty label keeps the skipped tokens out of "expected ..." lists.
        first.ignore_then(rest.repeated()).labelled("").boxed()
    }
}

impl<'t, 's: 't> Kit<'t, 's> {
    /// A `}` that, when missing before the next declaration or the end of the
    /// file, is reported and taken as written so the block is kept.
    fn close_brace(&self) -> P<'t, 's, ()> {
        let src = self.src;
        let next_item = select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
            Token::Keyword(k)
                if tok.starts_declaration() && k != "let" && line_start(src, e.span().start) =>
            {
                Some(())
            }
            _ => None,
        });
        t(Token::RBrace)
            .ignored()
            .recover_with(via_parser(next_item.rewind().or(end())))
            .boxed()
    }

    /// `{ ITEM* }` where broken items are skipped line by line.
    fn braced<O: 't>(
        &self,
        item: P<'t, 's, O>,
        starts: fn(&Token<'s>) -> bool,
        on_error: fn(Span) -> Option<O>,
    ) -> P<'t, 's, (Vec<O>, Span)> {
        let recovered = item
            .map(Some)
            .recover_with(via_parser(
                self.skip_stmt(starts, true)
                    .map_with(move |_, e| on_error(espan(e))),
            ))
            .boxed();
        t(Token::LBrace)
            .ignore_then(
                recovered
                    .repeated()
                    .collect::<Vec<Option<O>>>()
                    .map(|v| v.into_iter().flatten().collect::<Vec<O>>()),
            )
            .then_ignore(self.close_brace())
            .map_with(|items, e| (items, espan(e)))
            .boxed()
    }
}

/// For every opening bracket, string quote or interpolation brace that is
/// closed, the start offset of its closer.
pub(super) type Pairs = Rc<HashMap<u32, u32>>;

fn is_opener(t: &Token<'_>) -> bool {
    matches!(
        t,
        Token::LBrace | Token::LParen | Token::LBracket | Token::StrStart | Token::InterpOpen
    )
}

/// Skips a whole bracketed group (or string) whose closer is known to exist,
/// so recovery never scans ahead for a closer that is not there. `only`
/// restricts the kind of opener.
fn bracket_group<'t, 's: 't>(pairs: Pairs, only: Option<Token<'static>>) -> P<'t, 's, ()> {
    custom(move |inp: &mut InputRef<'t, '_, In<'t, 's>, Ext<'t, 's>>| {
        let before = inp.cursor();
        let tok = inp.next();
        let span = inp.span_since(&before);
        let close = match tok {
            Some(t) if is_opener(&t) && only.is_none_or(|o| o == t) => {
                pairs.get(&(span.start as u32)).copied()
            }
            _ => None,
        };
        let fail = |found: Option<Token<'s>>| {
            <Err<'t, 's> as LabelError<'t, In<'t, 's>, &'static str>>::expected_found(
                [""],
                found.map(MaybeRef::Val),
                span,
            )
        };
        let Some(close) = close else {
            return Err(fail(tok));
        };
        loop {
            let c = inp.cursor();
            if inp.next().is_none() {
                return Err(fail(None));
            }
            if inp.span_since(&c).start as u32 == close {
                return Ok(());
            }
        }
    })
    .labelled("")
    .boxed()
}

fn any_start(_: &Token<'_>) -> bool {
    true
}

fn flow_start(tok: &Token<'_>) -> bool {
    match tok {
        Token::Keyword(_) => tok.starts_flow_statement(),
        Token::Ident(_) => true, // a label
        _ => false,
    }
}

fn policy_start(tok: &Token<'_>) -> bool {
    matches!(tok, Token::Keyword(w) | Token::Ident(w) if POLICY_WORDS.contains(w))
}

fn test_start(tok: &Token<'_>) -> bool {
    matches!(tok, Token::Ident(w) if TEST_WORDS.contains(w))
}

fn item_start(tok: &Token<'_>) -> bool {
    tok.starts_declaration()
}

fn reserved<'t, 's>(id: &Ident) -> Err<'t, 's> {
    GrammarError::custom(
        id.span,
        ParseErrorKind::ReservedWord {
            word: id.name.clone(),
        },
    )
}

/// Builds the parser of a whole file. `src` is the text the tokens came from.
pub(super) fn file<'t, 's: 't>(src: &'s str, pairs: Pairs) -> P<'t, 's, File> {
    let kit = kit(src, pairs);
    let items = item_parsers(&kit);

    // A broken declaration ends at the next line once its brackets are
    // balanced; after a bracket that is never closed, only at the next line
    // that starts with a declaration keyword.
    let same_line = kit
        .group
        .clone()
        .or(select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
            let opener = matches!(tok, Token::LBrace | Token::LParen | Token::LBracket);
            (!opener && !line_start(src, e.span().start)).then_some(())
        }));
    let until_decl = kit
        .group
        .clone()
        .or(select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
            (!(item_start(&tok) && line_start(src, e.span().start))).then_some(())
        }));
    let lone_opener = select(|tok: Token<'s>, _e: &mut Ex<'t, '_, 's>| {
        matches!(tok, Token::LBrace | Token::LParen | Token::LBracket).then_some(())
    });
    let error_item = kit
        .group
        .clone()
        .or(any().ignored())
        .then(same_line.repeated())
        .then(lone_opener.then(until_decl.repeated()).or_not())
        .labelled("")
        .map_with(|_, e| Item::Error(espan(e)));

    items
        .recover_with(via_parser(error_item))
        .repeated()
        .collect::<Vec<_>>()
        .then_ignore(end())
        .map_with(|items, e| File {
            items,
            span: espan(e),
        })
        .boxed()
}

fn kit<'t, 's: 't>(src: &'s str, pairs: Pairs) -> Kit<'t, 's> {
    let group = bracket_group(pairs.clone(), None);

    let ident = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Ident(s) => Some(Ident {
            name: s.to_string(),
            span: espan(e),
        }),
        _ => None,
    })
    .labelled("a name")
    .boxed();

    let keyword_as_name = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Keyword(s) => Some(Ident {
            name: s.to_string(),
            span: espan(e),
        }),
        _ => None,
    });

    let name = ident
        .clone()
        .or(keyword_as_name.validate(|id, _, emitter| {
            emitter.emit(reserved(&id));
            id
        }))
        .labelled("a name")
        .boxed();

    let field = ident
        .clone()
        .or(keyword_as_name)
        .labelled("a field name")
        .boxed();

    let int = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Int(s) => Some((s, espan(e))),
        _ => None,
    })
    .validate(|(text, span), _, emitter| IntLit {
        value: lit::int(text).unwrap_or_else(|err| {
            emitter.emit(lit_error(err, span));
            0
        }),
        span,
    })
    .labelled("an integer")
    .boxed();

    let percent = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Percent(s) => Some((s, espan(e))),
        _ => None,
    })
    .validate(|(text, span), _, emitter| PercentLit {
        value: lit::decimal(text).unwrap_or_else(|err| {
            emitter.emit(lit_error(err, span));
            Default::default()
        }),
        span,
    })
    .labelled("a percentage")
    .boxed();

    let duration = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Duration(s) => Some((s, espan(e))),
        _ => None,
    })
    .repeated()
    .at_least(1)
    .collect::<Vec<_>>()
    .validate(|parts, e, emitter| {
        let span = espan(e);
        let mut total: Option<i64> = Some(0);
        for (text, part_span) in parts {
            match lit::duration_part(text) {
                Ok(s) => total = total.and_then(|t| t.checked_add(s)),
                Err(err) => {
                    emitter.emit(lit_error(err, part_span));
                    return DurationLit { seconds: 0, span };
                }
            }
        }
        let seconds = total.unwrap_or_else(|| {
            emitter.emit(GrammarError::custom(span, ParseErrorKind::DurationTooLong));
            0
        });
        DurationLit { seconds, span }
    })
    .labelled("a duration")
    .boxed();

    let time = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::TimeOfDay(s) => Some((s, espan(e))),
        _ => None,
    })
    .validate(|(text, span), _, emitter| {
        let (hour, minute) = lit::time_of_day(text).unwrap_or_else(|err| {
            emitter.emit(lit_error(err, span));
            (0, 0)
        });
        TimeLit { hour, minute, span }
    })
    .labelled("a time of day")
    .boxed();

    let instant = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Instant(s) => Some((s, espan(e))),
        _ => None,
    })
    .validate(|(text, span), _, emitter| InstantLit {
        unix_seconds: lit::instant(text).unwrap_or_else(|err| {
            emitter.emit(lit_error(err, span));
            0
        }),
        span,
    })
    .labelled("an instant")
    .boxed();

    let date = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
        Token::Date(s) => Some((s, espan(e))),
        _ => None,
    })
    .validate(|(text, span), _, emitter| DateLit {
        days: lit::date(text).unwrap_or_else(|err| {
            emitter.emit(lit_error(err, span));
            0
        }),
        span,
    })
    .labelled("a date")
    .boxed();

    let lexical = Lexical {
        src,
        pairs,
        group,
        ident,
        name,
        field,
        int,
        percent,
        duration,
        time,
        instant,
        date,
    };
    let (expr, string) = expr_parser(&lexical);
    let strlit = string
        .validate(|parts, e, emitter| {
            let span = espan(e);
            let mut value = String::new();
            for part in parts {
                match part {
                    StrPart::Text(s, _) => value.push_str(&s),
                    StrPart::Interp(x) => emitter.emit(GrammarError::custom(
                        x.span,
                        ParseErrorKind::InterpolationNotAllowed,
                    )),
                }
            }
            StrLit { value, span }
        })
        .labelled("a string")
        .boxed();
    let skip_line = lexical.skip_stmt(any_start, false);
    let line_expr = expr
        .clone()
        .recover_with(via_parser(skip_line.map_with(|_, e| Expr {
            kind: ExprKind::Error,
            span: espan(e),
        })))
        .boxed();
    Kit {
        lexical,
        strlit,
        expr,
        line_expr,
    }
}

fn error_expr() -> Expr {
    Expr {
        kind: ExprKind::Error,
        span: Span::default(),
    }
}

fn lit_error<'t, 's>(err: ParseErrorKind, span: Span) -> Err<'t, 's> {
    GrammarError::custom(span, err)
}

/// The expression parser and the parser of string literals (which contain
/// expressions).
fn expr_parser<'t, 's: 't>(kit: &Lexical<'t, 's>) -> (P<'t, 's, Expr>, P<'t, 's, Vec<StrPart>>) {
    let mut string_out: Option<P<'t, 's, Vec<StrPart>>> = None;
    let expr = recursive(|expr| {
        let expr = expr.boxed();
        let text = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
            Token::StrText(s) => Some((s, espan(e))),
            _ => None,
        })
        .validate(|(raw, span), _, emitter| {
            let (text, bad) = lit::unescape(raw, span.start);
            for (at, esc) in bad {
                emitter.emit(GrammarError::custom(
                    at,
                    ParseErrorKind::UnknownEscape { escape: esc },
                ));
            }
            StrPart::Text(text, span)
        });
        let interp = expr
            .clone()
            .delimited_by(t(Token::InterpOpen), t(Token::InterpClose))
            .map(StrPart::Interp)
            .recover_with(via_parser(
                bracket_group(kit.pairs.clone(), Some(Token::InterpOpen)).map_with(|_, e| {
                    StrPart::Interp(Expr {
                        kind: ExprKind::Error,
                        span: espan(e),
                    })
                }),
            ));
        let string = text
            .or(interp)
            .repeated()
            .collect::<Vec<_>>()
            .delimited_by(t(Token::StrStart), t(Token::StrEnd))
            .boxed();
        string_out = Some(string.clone());

        let literal = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
            let kind = match tok {
                Token::Int(s) => lit::int(s).map(ExprKind::Int),
                Token::Decimal(s) => lit::decimal(s).map(ExprKind::Decimal),
                Token::Money(s) => lit::decimal(s).map(ExprKind::Money),
                Token::Percent(s) => lit::decimal(s).map(ExprKind::Percent),
                Token::Instant(s) => lit::instant(s).map(ExprKind::Instant),
                Token::Date(s) => lit::date(s).map(ExprKind::Date),
                Token::TimeOfDay(s) => {
                    lit::time_of_day(s).map(|(h, m)| ExprKind::TimeOfDay(h as u16 * 60 + m as u16))
                }
                Token::Keyword("true") => Ok(ExprKind::Bool(true)),
                Token::Keyword("false") => Ok(ExprKind::Bool(false)),
                Token::Keyword("none") => Ok(ExprKind::None),
                _ => return None,
            };
            Some((kind, espan(e)))
        })
        .validate(|(kind, span), _, emitter| match kind {
            Ok(kind) => Expr { kind, span },
            Err(err) => {
                emitter.emit(lit_error(err, span));
                Expr {
                    kind: ExprKind::Error,
                    span,
                }
            }
        });

        let duration = kit.duration.clone().map(|d| Expr {
            kind: ExprKind::Duration(d.seconds),
            span: d.span,
        });

        let args = args_parser(kit, expr.clone());

        let root = select(|tok: Token<'s>, e: &mut Ex<'t, '_, 's>| match tok {
            Token::Keyword(k @ ("event" | "trigger" | "profile")) => Some(Ident {
                name: k.to_string(),
                span: espan(e),
            }),
            _ => None,
        });
        let name_or_call = kit
            .ident
            .clone()
            .then(args.or_not())
            .map_with(|(callee, args), e| Expr {
                kind: match args {
                    Some(args) => ExprKind::Call { callee, args },
                    None => ExprKind::Name(callee.name),
                },
                span: espan(e),
            })
            .or(root.map(|id| Expr {
                kind: ExprKind::Name(id.name),
                span: id.span,
            }));

        let list = expr
            .clone()
            .separated_by(t(Token::Comma))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(t(Token::LBracket), t(Token::RBracket))
            .map_with(|items, e| Expr {
                kind: ExprKind::List(items),
                span: espan(e),
            })
            .recover_with(via_parser(
                bracket_group(kit.pairs.clone(), Some(Token::LBracket)).map_with(|_, e| {
                    let s = e.span();
                    Expr {
                        kind: ExprKind::Error,
                        span: sp(s),
                    }
                }),
            ));

        let paren = expr
            .clone()
            .delimited_by(t(Token::LParen), t(Token::RParen))
            .map_with(|inner, e| Expr {
                span: espan(e),
                ..inner
            })
            .recover_with(via_parser(
                bracket_group(kit.pairs.clone(), Some(Token::LParen)).map_with(|_, e| {
                    let s = e.span();
                    Expr {
                        kind: ExprKind::Error,
                        span: sp(s),
                    }
                }),
            ));

        let str_expr = string.map_with(|parts, e| Expr {
            kind: ExprKind::Str(parts),
            span: espan(e),
        });

        let atom = choice((literal, duration, str_expr, name_or_call, list, paren))
            .labelled("an expression")
            .boxed();

        let postfix = atom
            .foldl_with(
                t(Token::Dot)
                    .to(false)
                    .or(t(Token::QuestionDot).to(true))
                    .then(kit.field.clone())
                    .repeated(),
                |base, (optional, field), e| Expr {
                    kind: ExprKind::Field {
                        base: Box::new(base),
                        field,
                        optional,
                    },
                    span: espan(e),
                },
            )
            .boxed();

        let unary = t(Token::Minus)
            .map_with(|_, e| espan(e))
            .repeated()
            .foldr_with(postfix, |op_span, operand, _| Expr {
                span: op_span.to(operand.span),
                kind: ExprKind::Unary {
                    op: UnaryOp::Neg,
                    expr: Box::new(operand),
                },
            })
            .labelled("an expression")
            .boxed();

        let binary = |op: Expr, rhs: Expr, o: BinaryOp| Expr {
            span: op.span.to(rhs.span),
            kind: ExprKind::Binary {
                op: o,
                lhs: Box::new(op),
                rhs: Box::new(rhs),
            },
        };

        // The infix operators of one precedence level, from the token table.
        let op_at = |level: Precedence| {
            select(move |tok: Token<'s>, e: &mut Ex<'t, '_, 's>| {
                let op = tok.binary_op().filter(|op| op.precedence() == level)?;
                Some((op, espan(e)))
            })
        };
        let mul_op = op_at(Precedence::Product).map(|(op, _)| op);
        let mul = unary
            .clone()
            .foldl(mul_op.then(unary).repeated(), move |a, (o, b)| {
                binary(a, b, o)
            })
            .boxed();

        let add_op = op_at(Precedence::Sum).map(|(op, _)| op);
        let add = mul
            .clone()
            .foldl(add_op.then(mul).repeated(), move |a, (o, b)| {
                binary(a, b, o)
            })
            .boxed();

        let default = add
            .separated_by(t(Token::QuestionQuestion))
            .at_least(1)
            .collect::<Vec<_>>()
            .map(move |mut parts| {
                let mut acc = parts.pop().unwrap_or_else(error_expr);
                while let Some(lhs) = parts.pop() {
                    acc = binary(lhs, acc, BinaryOp::Default);
                }
                acc
            })
            .boxed();

        let cmp_op = op_at(Precedence::Compare);
        let cmp = default
            .clone()
            .then(cmp_op.then(default).repeated().collect::<Vec<_>>())
            .validate(move |(first, rest), _, emitter| {
                let mut acc = first;
                for (i, ((o, op_span), rhs)) in rest.into_iter().enumerate() {
                    if i == 1 {
                        emitter.emit(GrammarError::custom(
                            op_span,
                            ParseErrorKind::ChainedComparison,
                        ));
                    }
                    acc = binary(acc, rhs, o);
                }
                acc
            })
            .boxed();

        let not = kw("not")
            .map_with(|_, e| espan(e))
            .repeated()
            .foldr_with(cmp, |op_span, operand, _| Expr {
                span: op_span.to(operand.span),
                kind: ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(operand),
                },
            })
            .labelled("an expression")
            .boxed();

        let and = not
            .clone()
            .foldl(kw("and").ignore_then(not).repeated(), move |a, b| {
                binary(a, b, BinaryOp::And)
            })
            .boxed();
        let or = and
            .clone()
            .foldl(kw("or").ignore_then(and).repeated(), move |a, b| {
                binary(a, b, BinaryOp::Or)
            })
            .boxed();

        let lambda_one = kit
            .ident
            .clone()
            .map(|p| vec![p])
            .then_ignore(t(Token::Arrow));
        let lambda_many = kit
            .ident
            .clone()
            .separated_by(t(Token::Comma))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(t(Token::LParen), t(Token::RParen))
            .then_ignore(t(Token::Arrow));
        let lambda = lambda_one
            .or(lambda_many)
            .then(expr)
            .map_with(|(params, body), e| Expr {
                kind: ExprKind::Lambda {
                    params,
                    body: Box::new(body),
                },
                span: espan(e),
            });

        lambda.or(or).labelled("an expression")
    })
    .boxed();
    let string = string_out.unwrap_or_else(|| empty().map(|_| Vec::new()).boxed());
    (expr, string)
}

/// `( (NAME ':')? expr, ... )`; a broken list becomes one error argument so
/// that later stages do not report an arity mismatch as well.
fn args_parser<'t, 's: 't>(kit: &Lexical<'t, 's>, expr: P<'t, 's, Expr>) -> P<'t, 's, Vec<Arg>> {
    kit.ident
        .clone()
        .then_ignore(t(Token::Colon))
        .or_not()
        .then(expr)
        .map(|(name, value)| Arg { name, value })
        .separated_by(t(Token::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(t(Token::LParen), t(Token::RParen))
        .recover_with(via_parser(
            bracket_group(kit.pairs.clone(), Some(Token::LParen)).map_with(|_, e| {
                let s = e.span();
                {
                    vec![Arg {
                        name: None,
                        value: Expr {
                            kind: ExprKind::Error,
                            span: sp(s),
                        },
                    }]
                }
            }),
        ))
        .boxed()
}

fn type_parser<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, TypeExpr> {
    recursive(|ty| {
        kit.ident
            .clone()
            .then(
                ty.separated_by(t(Token::Comma))
                    .at_least(1)
                    .collect::<Vec<_>>()
                    .delimited_by(t(Token::Lt), t(Token::Gt))
                    .or_not(),
            )
            .then(t(Token::Question).or_not())
            .map_with(|((name, args), q), e| TypeExpr {
                name,
                args: args.unwrap_or_default(),
                optional: q.is_some(),
                span: espan(e),
            })
            .labelled("a type")
    })
    .boxed()
}

fn field_decl<'t, 's: 't>(kit: &Kit<'t, 's>, ty: P<'t, 's, TypeExpr>) -> P<'t, 's, FieldDecl> {
    kit.field
        .clone()
        .then_ignore(t(Token::Colon))
        .then(ty)
        .then(t(Token::Eq).ignore_then(kit.line_expr.clone()).or_not())
        .then_ignore(t(Token::Comma).or_not())
        .map_with(|((name, ty), default), e| FieldDecl {
            name,
            ty,
            default,
            span: espan(e),
        })
        .labelled("a field")
        .boxed()
}

fn item_parsers<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, Item> {
    let ty = type_parser(kit);
    let fields = kit.braced(field_decl(kit, ty.clone()), any_start, |_| None);

    let let_item = kw("let")
        .ignore_then(kit.name.clone())
        .then(t(Token::Colon).ignore_then(ty.clone()).or_not())
        .then_ignore(t(Token::Eq))
        .then(kit.line_expr.clone())
        .map_with(|((name, ty), value), e| {
            Item::Let(LetDecl {
                name,
                ty,
                value,
                span: espan(e),
            })
        });

    let event_item = kw("event")
        .ignore_then(kit.name.clone())
        .then(kit.strlit.clone())
        .then(fields.clone())
        .map_with(|((name, wire), (fields, _)), e| {
            Item::Event(EventDecl {
                name,
                wire,
                fields,
                span: espan(e),
            })
        });

    let type_item = kw("type")
        .ignore_then(kit.name.clone())
        .then(choice((
            fields.clone().map(|(f, _)| TypeDeclKind::Record(f)),
            t(Token::Eq)
                .ignore_then(
                    kit.strlit
                        .clone()
                        .separated_by(t(Token::Pipe))
                        .at_least(1)
                        .collect::<Vec<_>>(),
                )
                .map(TypeDeclKind::Enum),
        )))
        .map_with(|(name, kind), e| {
            Item::Type(TypeDecl {
                name,
                kind,
                span: espan(e),
            })
        });

    let profile_item = kw("profile")
        .ignore_then(fields)
        .map_with(|(fields, _), e| {
            Item::Profile(ProfileDecl {
                fields,
                span: espan(e),
            })
        });

    let segment_item = kw("segment")
        .ignore_then(kit.name.clone())
        .then_ignore(t(Token::Eq))
        .then(kit.line_expr.clone())
        .map_with(|(name, predicate), e| {
            Item::Segment(SegmentDecl {
                name,
                predicate,
                span: espan(e),
            })
        });

    let param = kit
        .name
        .clone()
        .then_ignore(t(Token::Colon))
        .then(ty.clone())
        .then(t(Token::Eq).ignore_then(kit.expr.clone()).or_not())
        .map_with(|((name, ty), default), e| Param {
            name,
            ty,
            default,
            span: espan(e),
        })
        .labelled("a parameter");
    let params = param
        .separated_by(t(Token::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(t(Token::LParen), t(Token::RParen))
        .recover_with(via_parser(
            bracket_group(kit.pairs.clone(), Some(Token::LParen)).map_with(|_, _| Vec::new()),
        ));
    let content = kit
        .ident
        .clone()
        .then(choice((
            word("template")
                .ignore_then(kit.strlit.clone())
                .map(ContentValue::Template),
            kit.line_expr.clone().map(ContentValue::Expr),
        )))
        .map_with(|(key, value), e| ContentField {
            key,
            value,
            span: espan(e),
        })
        .labelled("message content")
        .boxed();
    let message_item = kw("message")
        .ignore_then(kit.name.clone())
        .then(params)
        .then(kit.braced(content, any_start, |_| None))
        .map_with(|((name, params), (content, _)), e| {
            Item::Message(MessageDecl {
                name,
                params,
                content,
                span: espan(e),
            })
        });

    let flow_item = flow_parser(kit);
    let policy_item = policy_parser(kit);
    let test_item = test_parser(kit);

    choice((
        let_item.boxed(),
        event_item.boxed(),
        type_item.boxed(),
        profile_item.boxed(),
        segment_item.boxed(),
        message_item.boxed(),
        flow_item,
        policy_item,
        test_item,
    ))
    .labelled("a declaration")
    .boxed()
}

/// `quiet hours CHANNEL? T to T`, shared by flows and the policy.
fn quiet_hours<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, QuietHours> {
    kw("quiet")
        .ignore_then(word("hours"))
        .ignore_then(kit.ident.clone().or_not())
        .then(kit.time.clone())
        .then_ignore(word("to"))
        .then(kit.time.clone())
        .map(|((channel, from), to)| QuietHours { channel, from, to })
        .boxed()
}

/// `cap SCOPE N per D (then skip|defer)?`, shared by flows and the policy.
fn cap<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, Cap> {
    kw("cap")
        .ignore_then(kit.ident.clone().labelled("a channel or `marketing`"))
        .then(kit.int.clone())
        .then_ignore(word("per"))
        .then(kit.duration.clone())
        .then(
            word("then")
                .ignore_then(choice((
                    word("skip").to(CapAction::Skip),
                    word("defer").to(CapAction::Defer),
                )))
                .or_not(),
        )
        .map(|(((scope, count), per), then)| Cap {
            scope,
            count,
            per,
            then,
        })
        .boxed()
}

/// A duration where a flow needs a constant: a literal or a constant's name.
fn duration_arg<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, DurationArg> {
    kit.duration
        .clone()
        .map(DurationArg::Lit)
        .or(kit.ident.clone().map(DurationArg::Name))
        .labelled("a duration")
        .boxed()
}

fn block_parser<'t, 's: 't>(kit: &Kit<'t, 's>, step: P<'t, 's, Step>) -> P<'t, 's, Block> {
    kit.braced(step, flow_start, |span| {
        Some(Step {
            label: None,
            kind: StepKind::Error,
            span,
        })
    })
    .map(|(steps, span)| Block { steps, span })
    .boxed()
}

fn flow_parser<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, Item> {
    let expr = kit.expr.clone();
    let line_expr = kit.line_expr.clone();
    let where_ = kw("where").ignore_then(line_expr.clone()).or_not().boxed();

    let step = recursive(|step| {
        let block = block_parser(kit, step.boxed());

        let wait_for_tail = kw("for")
            .ignore_then(
                kit.ident
                    .clone()
                    .separated_by(kw("or"))
                    .at_least(1)
                    .collect::<Vec<_>>(),
            )
            .then(kw("where").ignore_then(expr.clone()).or_not())
            .then_ignore(kw("within"))
            .then(duration_arg(kit))
            .map(|((events, predicate), within)| (events, predicate, within))
            .boxed();

        let wait = kw("wait")
            .ignore_then(choice((
                duration_arg(kit).map(StepKind::Wait),
                kw("until")
                    .ignore_then(line_expr.clone())
                    .map(StepKind::WaitUntil),
                wait_for_tail.clone().map(|(events, predicate, within)| {
                    StepKind::WaitFor(WaitFor {
                        binding: None,
                        events,
                        predicate,
                        within,
                    })
                }),
            )))
            .boxed();

        let let_step = kw("let")
            .ignore_then(kit.name.clone())
            .then_ignore(t(Token::Eq))
            .then(choice((
                kw("wait").ignore_then(wait_for_tail).map(Ok),
                line_expr.clone().map(Err),
            )))
            .map(|(name, rhs)| match rhs {
                Ok((events, predicate, within)) => StepKind::WaitFor(WaitFor {
                    binding: Some(name),
                    events,
                    predicate,
                    within,
                }),
                Err(value) => StepKind::Let { name, value },
            })
            .boxed();

        let send = kw("send")
            .ignore_then(kit.ident.clone())
            .then(args_parser(kit, expr.clone()))
            .map_with(|(callee, args), e| {
                StepKind::Send(Call {
                    callee,
                    args,
                    span: espan(e),
                })
            })
            .boxed();

        let if_step = kw("if")
            .ignore_then(expr.clone())
            .then(block.clone())
            .then(
                kw("else")
                    .ignore_then(kw("if"))
                    .ignore_then(expr.clone())
                    .then(block.clone())
                    .repeated()
                    .collect::<Vec<_>>(),
            )
            .then(kw("else").ignore_then(block.clone()).or_not())
            .map(|((first, mut rest), otherwise)| {
                rest.insert(0, first);
                StepKind::If(If {
                    branches: rest,
                    otherwise,
                })
            })
            .boxed();

        let arm = kit
            .percent
            .clone()
            .or_not()
            .then(kit.name.clone())
            .then(block.clone())
            .map_with(|((percent, name), body), e| SplitArm {
                percent,
                name,
                body,
                span: espan(e),
            })
            .labelled("a split arm");
        let optimise = word("optimise")
            .ignore_then(word("floor").ignore_then(kit.percent.clone()).or_not())
            .map_with(|floor, e| Optimise {
                floor,
                span: espan(e),
            });
        let split = kw("split")
            .ignore_then(optimise.or_not())
            .then(
                arm.repeated()
                    .at_least(1)
                    .collect::<Vec<_>>()
                    .delimited_by(t(Token::LBrace), kit.close_brace()),
            )
            .map(|(optimise, arms)| StepKind::Split(Split { optimise, arms }))
            .boxed();

        let set = kw("set")
            .ignore_then(kw("profile"))
            .ignore_then(t(Token::Dot))
            .ignore_then(kit.field.clone())
            .then_ignore(t(Token::Eq))
            .then(line_expr.clone())
            .map(|(field, value)| StepKind::SetProfile { field, value })
            .boxed();

        let audience = kw("audience")
            .ignore_then(choice((
                word("add").to(AudienceOp::Add),
                word("remove").to(AudienceOp::Remove),
            )))
            .then(kit.strlit.clone())
            .map(|(op, name)| StepKind::Audience { op, name })
            .boxed();

        // `exit if C {` is an `exit` followed by an `if` step.
        let exit = kw("exit")
            .ignore_then(
                kw("if")
                    .ignore_then(line_expr.clone())
                    .then_ignore(t(Token::LBrace).not())
                    .or_not(),
            )
            .map(|cond| match cond {
                Some(c) => StepKind::ExitIf(c),
                None => StepKind::Exit,
            })
            .boxed();

        let label = kit.ident.clone().then_ignore(t(Token::Colon)).or_not();
        label
            .then(choice((
                wait, let_step, send, if_step, split, set, audience, exit,
            )))
            .map_with(|(label, kind), e| Step {
                label,
                kind,
                span: espan(e),
            })
            .labelled("a step")
    })
    .boxed();

    let block = block_parser(kit, step.clone());

    let event_filter = kit
        .ident
        .clone()
        .then(where_.clone())
        .map(|(event, predicate)| EventFilter { event, predicate })
        .boxed();

    let cadence = choice((
        word("day").map_with(|_, e| Cadence::Day(espan(e))),
        word("month")
            .ignore_then(kw("on"))
            .ignore_then(kit.int.clone())
            .map(Cadence::Month),
        kit.ident
            .clone()
            .filter(|id| {
                matches!(
                    id.name.as_str(),
                    "monday"
                        | "tuesday"
                        | "wednesday"
                        | "thursday"
                        | "friday"
                        | "saturday"
                        | "sunday"
                )
            })
            .map(Cadence::Weekday),
    ))
    .labelled("`day`, a weekday or `month`");
    let once = word("once")
        .ignore_then(kw("on"))
        .ignore_then(kit.date.clone())
        .map(Cadence::Once);
    let schedule = choice((word("every").ignore_then(cadence), once))
        .then_ignore(word("at"))
        .then(kit.time.clone())
        .then(word("local").or_not())
        .then(kw("for").ignore_then(kit.ident.clone()).or_not())
        .map(|(((cadence, at), local), segment)| Trigger::Schedule {
            cadence,
            at,
            local: local.is_some(),
            segment,
        });
    let date_offset = choice((
        kit.duration
            .clone()
            .then(choice((word("after").to(false), word("before").to(true))))
            .map(|(d, before)| (Some(d), before)),
        kw("on").to((None, false)),
    ));
    let date_prop = date_offset
        .then_ignore(kw("profile"))
        .then_ignore(t(Token::Dot))
        .then(kit.field.clone())
        .then(
            word("every")
                .ignore_then(word("year"))
                .map_with(|_, e| espan(e))
                .or_not(),
        )
        .then(word("at").ignore_then(kit.time.clone()).or_not())
        .then(word("grace").ignore_then(kit.duration.clone()).or_not())
        .map(
            |(((((offset, before), field), yearly), at), grace)| Trigger::DateProperty {
                offset,
                before,
                field,
                yearly,
                at,
                grace,
            },
        );
    let entering = word("entering")
        .ignore_then(kit.ident.clone())
        .map(Trigger::Entering);
    let trigger = kw("trigger")
        .ignore_then(choice((
            schedule,
            entering,
            date_prop,
            event_filter.clone().map(Trigger::Event),
        )))
        .map(ClauseKind::Trigger);

    let entry = kw("entry")
        .ignore_then(choice((
            word("once")
                .ignore_then(word("per").ignore_then(kit.duration.clone()).or_not())
                .map(|per| match per {
                    Some(d) => EntryRule::OncePer(d),
                    None => EntryRule::Once,
                }),
            word("always").to(EntryRule::Always),
        )))
        .map(ClauseKind::Entry);

    let exit_on = kw("exit")
        .ignore_then(kw("on"))
        .ignore_then(event_filter.clone())
        .map(ClauseKind::ExitOn);
    let suppress = kw("suppress")
        .ignore_then(kw("if"))
        .ignore_then(line_expr.clone())
        .map(ClauseKind::Suppress);
    let goal = kw("goal")
        .ignore_then(kit.ident.clone())
        .then(kw("where").ignore_then(expr.clone()).or_not())
        .then_ignore(kw("within"))
        .then(duration_arg(kit))
        .map(|((event, predicate), within)| {
            ClauseKind::Goal(Goal {
                filter: EventFilter { event, predicate },
                within,
            })
        });
    let holdout = kw("holdout")
        .ignore_then(kit.percent.clone())
        .map(ClauseKind::Holdout);
    let priority = kw("priority")
        .ignore_then(kit.int.clone())
        .map(ClauseKind::Priority);
    let on_exit = kw("on")
        .ignore_then(kw("exit"))
        .ignore_then(block)
        .map(ClauseKind::OnExit);

    let clause = choice((
        trigger.boxed(),
        entry.boxed(),
        exit_on.boxed(),
        suppress.boxed(),
        quiet_hours(kit).map(ClauseKind::QuietHours).boxed(),
        cap(kit).map(ClauseKind::Cap).boxed(),
        goal.boxed(),
        holdout.boxed(),
        priority.boxed(),
        on_exit.boxed(),
    ))
    .map_with(|kind, e| Clause {
        kind,
        span: espan(e),
    });

    let flow_item = clause
        .map(FlowItem::Clause)
        .or(step.map(FlowItem::Step))
        .labelled("a clause or step")
        .boxed();

    kw("flow")
        .ignore_then(kit.ident.clone())
        .then(kit.braced(flow_item, flow_start, |span| {
            Some(FlowItem::Step(Step {
                label: None,
                kind: StepKind::Error,
                span,
            }))
        }))
        .map_with(|(name, (items, _)), e| {
            Item::Flow(FlowDecl {
                name,
                items: standing_exits(items),
                span: espan(e),
            })
        })
        .boxed()
}

/// Turns every unlabelled `exit if` written before the first step into the
/// standing-rule clause. Broken items do not count as steps, since they are
/// as likely to be broken clauses.
fn standing_exits(items: Vec<FlowItem>) -> Vec<FlowItem> {
    let mut seen_step = false;
    items
        .into_iter()
        .map(|item| match item {
            FlowItem::Step(Step {
                label: None,
                kind: StepKind::ExitIf(cond),
                span,
            }) if !seen_step => FlowItem::Clause(Clause {
                kind: ClauseKind::ExitIf(cond),
                span,
            }),
            FlowItem::Step(step) => {
                seen_step |= !matches!(step.kind, StepKind::Error);
                FlowItem::Step(step)
            }
            clause => clause,
        })
        .collect()
}

fn policy_parser<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, Item> {
    let item = choice((
        word("timezone")
            .ignore_then(kit.strlit.clone())
            .map(PolicyItemKind::Timezone)
            .boxed(),
        quiet_hours(kit).map(PolicyItemKind::QuietHours).boxed(),
        cap(kit).map(PolicyItemKind::Cap).boxed(),
        kw("suppress")
            .ignore_then(word("list"))
            .ignore_then(kit.strlit.clone())
            .map(PolicyItemKind::SuppressList)
            .boxed(),
        word("currency")
            .ignore_then(kit.strlit.clone())
            .map(PolicyItemKind::Currency)
            .boxed(),
    ))
    .map_with(|kind, e| PolicyItem {
        kind,
        span: espan(e),
    })
    .labelled("a policy rule")
    .boxed();
    kw("policy")
        .ignore_then(kit.braced(item, policy_start, |_| None))
        .map_with(|(items, _), e| {
            Item::Policy(PolicyDecl {
                items,
                span: espan(e),
            })
        })
        .boxed()
}

fn test_parser<'t, 's: 't>(kit: &Kit<'t, 's>) -> P<'t, 's, Item> {
    let id = kit
        .ident
        .clone()
        .map(|id| StrLit {
            value: id.name,
            span: id.span,
        })
        .or(kit.strlit.clone())
        .labelled("a customer id")
        .boxed();

    // A prop's value may be a record literal (`consent: { email: true }`);
    // only here, so that a `{` after an expression elsewhere still opens a block.
    let value = recursive(|value| {
        let record = kit
            .field
            .clone()
            .then_ignore(t(Token::Colon))
            .then(value)
            .then_ignore(t(Token::Comma).or_not())
            .map(|(key, value)| Prop { key, value })
            .repeated()
            .collect::<Vec<_>>()
            .delimited_by(t(Token::LBrace), t(Token::RBrace))
            .map_with(|fields, e| Expr {
                kind: ExprKind::Record(fields),
                span: espan(e),
            });
        // A list of records (`products: [{ ... }]`) needs the same leniency.
        let records = record
            .clone()
            .separated_by(t(Token::Comma))
            .allow_trailing()
            .at_least(1)
            .collect::<Vec<_>>()
            .delimited_by(t(Token::LBracket), t(Token::RBracket))
            .map_with(|items, e| Expr {
                kind: ExprKind::List(items),
                span: espan(e),
            });
        record.or(records).or(kit.expr.clone())
    })
    .boxed();
    let prop = kit
        .field
        .clone()
        .then_ignore(t(Token::Colon))
        .then(value)
        .then_ignore(t(Token::Comma).or_not())
        .map(|(key, value)| Prop { key, value });
    let props = prop
        .repeated()
        .collect::<Vec<_>>()
        .delimited_by(t(Token::LBrace), t(Token::RBrace))
        .recover_with(via_parser(
            bracket_group(kit.pairs.clone(), Some(Token::LBrace)).map_with(|_, _| Vec::new()),
        ))
        .boxed();

    let at_time = choice((
        kit.time.clone().map(TestTime::TimeOfDay),
        kit.instant.clone().map(TestTime::Instant),
        t(Token::Plus)
            .ignore_then(kit.duration.clone())
            .map(TestTime::Offset),
    ))
    .labelled("a time")
    .boxed();

    let anon_id = word("anonymous")
        .ignore_then(id.clone())
        .map(|c| (true, c))
        .or(id.clone().map(|c| (false, c)))
        .boxed();

    let call_word = choice((word("track"), word("identify"), word("alias"), word("page")));

    let track = word("track")
        .ignore_then(anon_id.clone())
        .then(choice((
            kit.strlit.clone().map(EventRef::Wire),
            kit.ident.clone().map(EventRef::Name),
        )))
        .then(props.clone().or_not())
        .map(|(((anonymous, customer), event), props)| TestCall::Track {
            anonymous,
            customer,
            event,
            props: props.unwrap_or_default(),
        });
    let identify = word("identify")
        .ignore_then(anon_id.clone())
        .then(props.clone())
        .map(|((anonymous, customer), props)| TestCall::Identify {
            anonymous,
            customer,
            props,
        });
    let alias = word("alias")
        .ignore_then(id.clone())
        .then_ignore(word("to"))
        .then(id.clone())
        .map(|(from, to)| TestCall::Alias { from, to });
    let page = word("page")
        .ignore_then(anon_id)
        .then(kit.strlit.clone().or_not())
        .then(props.clone().or_not())
        .map(|(((anonymous, customer), name), props)| TestCall::Page {
            anonymous,
            customer,
            name,
            props: props.unwrap_or_default(),
        });
    let call = choice((track.boxed(), identify.boxed(), alias.boxed(), page.boxed()))
        .labelled("`track`, `identify`, `alias` or `page`");

    let reason = word("reason").ignore_then(kit.strlit.clone()).or_not();
    let send = kw("send")
        .ignore_then(kit.ident.clone())
        .then(word("to").ignore_then(id.clone()).or_not())
        .then(kw("where").ignore_then(kit.expr.clone()).or_not())
        .then(
            word("at")
                .ignore_then(at_time.clone())
                .then_ignore(call_word.not())
                .map(|t| (Some(t), None))
                .or(word("between")
                    .ignore_then(at_time.clone())
                    .then_ignore(kw("and"))
                    .then(at_time.clone())
                    .map(|w| (None, Some(w))))
                .or_not(),
        )
        .map(|(((message, to), predicate), when)| {
            let (at, window) = when.unwrap_or((None, None));
            ExpectKind::Send {
                message,
                to,
                predicate,
                at,
                window,
            }
        });
    let audience = kw("audience")
        .ignore_then(kit.strlit.clone())
        .then_ignore(word("has"))
        .then(id.clone())
        .map(|(name, customer)| ExpectKind::Audience { name, customer });
    let conversion = word("conversion")
        .ignore_then(kit.ident.clone())
        .map(|flow| ExpectKind::Conversion { flow });
    let negatable = word("no")
        .or_not()
        .then(choice((send.boxed(), audience.boxed(), conversion.boxed())))
        .map(|(no, kind)| Expectation {
            negated: no.is_some(),
            kind,
        });
    let exit = kw("exit")
        .ignore_then(kit.ident.clone())
        .then(reason.clone())
        .map(|(flow, reason)| ExpectKind::Exit { flow, reason });
    let profile = kw("profile")
        .ignore_then(id.clone())
        .then_ignore(t(Token::Dot))
        .then(kit.field.clone())
        .then_ignore(t(Token::EqEq))
        .then(kit.line_expr.clone())
        .map(|((customer, field), value)| ExpectKind::Profile {
            customer,
            field,
            value,
        });
    let decision = word("decision")
        .ignore_then(kit.ident.clone())
        .then(kit.ident.clone().labelled("an outcome"))
        .then(reason)
        .map(|((message, outcome), reason)| ExpectKind::Decision {
            message,
            outcome,
            reason,
        });
    let expectation = negatable
        .or(
            choice((exit.boxed(), profile.boxed(), decision.boxed())).map(|kind| Expectation {
                negated: false,
                kind,
            }),
        )
        .labelled("an expectation");

    let stmt = choice((
        word("given")
            .ignore_then(kw("profile"))
            .ignore_then(id.clone())
            .then(props)
            .map(|(customer, props)| TestStmtKind::Given { customer, props })
            .boxed(),
        word("at")
            .ignore_then(at_time.clone())
            .then(call)
            .then(word("arrives").ignore_then(at_time).or_not())
            .map(|((at, call), arrives)| TestStmtKind::At { at, call, arrives })
            .boxed(),
        word("run")
            .ignore_then(kit.duration.clone())
            .map(TestStmtKind::Run)
            .boxed(),
        word("expect")
            .ignore_then(expectation)
            .map(TestStmtKind::Expect)
            .boxed(),
    ))
    .map_with(|kind, e| TestStmt {
        kind,
        span: espan(e),
    })
    .labelled("a test statement")
    .boxed();

    kw("test")
        .ignore_then(kit.strlit.clone())
        .then(kit.braced(stmt, test_start, |span| {
            Some(TestStmt {
                kind: TestStmtKind::Error,
                span,
            })
        }))
        .map_with(|(name, (stmts, _)), e| {
            Item::Test(TestDecl {
                name,
                stmts,
                span: espan(e),
            })
        })
        .boxed()
}
