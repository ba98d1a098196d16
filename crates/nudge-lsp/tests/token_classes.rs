//! The language server classifies tokens as the syntax crate does: every
//! keyword the lexer knows is coloured as one and offered where it may be
//! written, operators are coloured as operators and followed by expression
//! completions, and statement starters match the parser's.

mod common;

use common::{CART, MESSAGES, file, snapshot};
use nudge_diagnostics::FileId;
use nudge_lsp::completion::{self, Item, ItemKind};
use nudge_lsp::semantic;
use nudge_syntax::{
    DECLARATION_KEYWORDS, FLOW_KEYWORDS, KEYWORDS, POLICY_WORDS, TEST_WORDS, Token, TokenClass,
};

/// Completion items for `text` with the cursor at its `|`.
fn complete_at(text_with_bar: &str) -> Vec<Item> {
    let at = text_with_bar.find('|').expect("a cursor");
    let text = text_with_bar.replacen('|', "", 1);
    let snap = snapshot(&[("a.flow", &text)]);
    completion::complete(&snap, file(&snap, "a.flow"), at as u32)
}

/// The first word of every keyword, snippet and phrase offered.
fn first_words(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::Keyword | ItemKind::Snippet))
        .filter_map(|i| i.label.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every word of every keyword, snippet and phrase offered.
fn all_words(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::Keyword | ItemKind::Snippet))
        .flat_map(|i| i.label.split_whitespace().map(str::to_string))
        .collect()
}

fn sorted(mut words: Vec<String>) -> Vec<String> {
    words.sort();
    words.dedup();
    words
}

fn strings(words: &[&str]) -> Vec<String> {
    sorted(words.iter().map(|w| w.to_string()).collect())
}

/// The name the semantic legend gives the token starting at `offset`, if
/// any token starts there.
fn colour_at(snap: &nudge_lsp::Snapshot, f: FileId, offset: u32) -> Option<&'static str> {
    semantic::semantic_tokens(snap, f)
        .iter()
        .find(|t| t.span.start == offset)
        .map(|t| semantic::TOKEN_TYPES[t.kind as usize])
}

#[test]
fn every_keyword_is_coloured_as_a_keyword() {
    let text: String = KEYWORDS.iter().map(|k| format!("{k}\n")).collect();
    let snap = snapshot(&[("a.flow", &text)]);
    let f = file(&snap, "a.flow");
    let lexed = nudge_syntax::lex(f, &text);
    assert_eq!(lexed.tokens.len(), KEYWORDS.len());
    for (tok, span) in &lexed.tokens {
        assert_eq!(
            colour_at(&snap, f, span.start),
            Some("keyword"),
            "{tok:?} is a keyword"
        );
    }
}

#[test]
fn semantic_tokens_follow_the_token_classes() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let extra = "let t = [1, 2] ?? none\nlet u = (-2 + 3) * 4 / 5 % 6 - 1\n\
                 segment s = profile.orders_count != 1 and not (1 <= 2 or 3 >= 4 or 5 < 6)\n\
                 let v = profile?.orders_count == 1\nlet w = sum([1], x => x > 0)\n";
    let text = format!("{CART}{extra}");
    let snap2 = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let f2 = file(&snap2, "cart.flow");
    let mut seen = std::collections::HashSet::new();
    for (snap, f, text) in [(&snap, f, CART), (&snap2, f2, text.as_str())] {
        for (tok, span) in nudge_syntax::lex(f, text).tokens {
            let colour = colour_at(snap, f, span.start);
            seen.insert(tok.class());
            match tok.class() {
                TokenClass::Operator => assert_eq!(colour, Some("operator"), "{tok:?}"),
                TokenClass::Number => assert_eq!(colour, Some("number"), "{tok:?}"),
                TokenClass::String if tok == Token::StrStart => {
                    assert_eq!(colour, Some("string"), "{tok:?}")
                }
                // Field names may be keywords (`event.type`).
                TokenClass::Keyword => {
                    assert!(matches!(colour, Some("keyword" | "property")), "{tok:?}")
                }
                TokenClass::Punctuation | TokenClass::Invalid => {
                    assert_eq!(colour, None, "{tok:?}")
                }
                TokenClass::Name | TokenClass::String | TokenClass::Comment => {}
            }
        }
    }
    for class in [
        TokenClass::Operator,
        TokenClass::Number,
        TokenClass::String,
        TokenClass::Keyword,
        TokenClass::Punctuation,
    ] {
        assert!(seen.contains(&class), "the fixture has a {class:?} token");
    }
}

#[test]
fn declarations_offered_at_the_top_are_those_the_parser_starts_on() {
    let offered = sorted(first_words(&complete_at("|")));
    assert_eq!(offered, strings(DECLARATION_KEYWORDS));
    for word in &offered {
        assert!(Token::Keyword(word).starts_declaration(), "{word}");
    }
}

#[test]
fn statements_offered_in_blocks_are_those_the_parser_starts_on() {
    let in_flow = sorted(first_words(&complete_at("flow f {\n  trigger a\n  |\n}\n")));
    for word in FLOW_KEYWORDS {
        assert!(
            in_flow.contains(&word.to_string()),
            "`{word}` is not offered"
        );
    }
    for word in &in_flow {
        let tok = Token::Keyword(word);
        assert!(
            tok.starts_flow_statement(),
            "`{word}` does not start a statement"
        );
    }
    let in_policy = sorted(first_words(&complete_at("policy {\n  |\n}\n")));
    assert_eq!(in_policy, strings(POLICY_WORDS));
    let in_test = sorted(first_words(&complete_at("test t {\n  |\n}\n")));
    assert_eq!(in_test, strings(TEST_WORDS));
}

#[test]
fn an_expression_is_offered_after_every_operator() {
    let operators: Vec<Token<'static>> = [
        "or", "and", "not", "in", "==", "!=", "<", "<=", ">", ">=", "??", "+", "-", "*", "/", "%",
        "=>", ".", "?.", "=", ",", "(",
    ]
    .iter()
    .map(|t| nudge_syntax::lex(FileId(0), t).tokens[0].0)
    .collect();
    let mut checked = 0;
    for tok in operators.iter().filter(|t| t.is_operator()) {
        let text = tok_text(tok);
        let items = complete_at(&format!("segment s = profile.orders_count {text} |\n"));
        let words = first_words(&items);
        if tok.is_member_access() {
            // A field is expected, not an expression.
            assert!(!words.contains(&"not".to_string()), "after `{text}`");
        } else {
            assert!(words.contains(&"not".to_string()), "after `{text}`");
            assert!(words.contains(&"true".to_string()), "after `{text}`");
            checked += 1;
        }
    }
    assert_eq!(checked, 17);
}

fn tok_text(tok: &Token<'_>) -> String {
    match tok {
        Token::Keyword(k) => k.to_string(),
        other => other.punct().to_string(),
    }
}

/// Every reserved word is offered by completion somewhere, except those
/// that can only follow a complete operand or an event name, which the
/// token-based completion cannot tell apart from a name being typed.
#[test]
fn every_keyword_is_offered_where_it_may_be_written() {
    const AFTER_AN_OPERAND: &[&str] = &["and", "or", "in", "where"];
    let probes = [
        "|",
        "flow f {\n  trigger a\n  |\n}\n",
        "flow f {\n  trigger a\n  if x {\n    wait 1d\n  }\n  |\n}\n",
        "flow f {\n  trigger a\n  wait |\n}\n",
        "flow f {\n  trigger a\n  exit |\n}\n",
        "flow f {\n  trigger a\n  set |\n}\n",
        "flow f {\n  trigger a where |\n}\n",
    ];
    let mut offered: Vec<String> = Vec::new();
    for probe in probes {
        offered.extend(all_words(&complete_at(probe)));
    }
    for word in KEYWORDS {
        let reachable = offered.contains(&word.to_string()) || AFTER_AN_OPERAND.contains(word);
        assert!(reachable, "`{word}` is never offered by completion");
    }
    for word in AFTER_AN_OPERAND {
        let tok = Token::Keyword(word);
        assert!(tok.continues_expression() || *word == "where");
    }
}
