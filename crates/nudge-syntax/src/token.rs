//! Tokens and their classes.
//!
//! Which tokens are keywords, operators of each kind and statement starters
//! is decided here, once, for the parser, the formatter and the language
//! server's completion and semantic tokens.

use logos::Logos;

use crate::ast::{BinaryOp, Precedence};

/// Words reserved by the language: they cannot name a declaration, parameter
/// or variable (they may still name a field).
pub const KEYWORDS: &[&str] = &[
    "let", "event", "type", "profile", "segment", "message", "flow", "policy", "test", "trigger",
    "entry", "exit", "on", "where", "suppress", "quiet", "cap", "goal", "within", "holdout",
    "priority", "wait", "for", "until", "send", "if", "else", "split", "set", "audience", "and",
    "or", "not", "in", "true", "false", "none",
];

/// Keywords that start a top-level declaration.
pub const DECLARATION_KEYWORDS: &[&str] = &[
    "let", "event", "type", "profile", "segment", "message", "flow", "policy", "test",
];

/// Keywords that start a statement in a flow's body: its clauses and its steps.
pub const FLOW_KEYWORDS: &[&str] = &[
    "trigger", "entry", "exit", "suppress", "quiet", "cap", "goal", "holdout", "priority", "on",
    "wait", "send", "if", "split", "set", "audience", "let",
];

/// Keywords that may stand inside an expression: the word operators, the
/// literals and the names of the values a flow reads.
pub const EXPRESSION_KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "true", "false", "none", "event", "trigger", "profile",
];

/// Words (keywords or not) that start a statement in a policy block.
pub const POLICY_WORDS: &[&str] = &["timezone", "quiet", "cap", "suppress", "currency"];

/// Words that start a statement in a test block; they are not reserved.
pub const TEST_WORDS: &[&str] = &["given", "at", "run", "expect"];

/// Whether `word` is a reserved keyword.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// What a token is, as an editor colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenClass {
    /// A reserved word, word operators included.
    Keyword,
    /// A name; what it names is known only after analysis.
    Name,
    /// A piece of a string literal: its quotes and its text.
    String,
    /// A number, amount, percentage, duration, date or time.
    Number,
    /// A `//` comment.
    Comment,
    /// A symbolic operator other than plain `.`.
    Operator,
    /// Brackets, separators, `=`, `.`, and the braces of an interpolation.
    Punctuation,
    /// A character that starts no token.
    Invalid,
}

/// A token of the flow language. Text-carrying variants borrow from the source.
///
/// Strings are not single tokens: the lexer splits `"a {x} b"` into
/// `StrStart`, `StrText("a ")`, `InterpOpen`, the tokens of `x`, `InterpClose`,
/// `StrText(" b")`, `StrEnd`, so that interpolated expressions are parsed by
/// the ordinary expression grammar with exact spans.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[logos(skip r"[ \t\r\n\f]+")]
pub enum Token<'s> {
    /// A `//` comment; kept out of the parser's token stream.
    #[regex(r"//[^\n]*", allow_greedy = true)]
    Comment(&'s str),
    /// A reserved word from [`KEYWORDS`].
    Keyword(&'s str),
    /// A name that is not a keyword.
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident(&'s str),
    /// An integer, such as `42` or `10_000`.
    #[regex(r"[0-9][0-9_]*")]
    Int(&'s str),
    /// A decimal number, such as `12.50`.
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*")]
    Decimal(&'s str),
    /// A money amount, such as `$50.00`.
    #[regex(r"\$[0-9][0-9_]*(\.[0-9][0-9_]*)?")]
    Money(&'s str),
    /// A percentage, such as `50%`.
    #[regex(r"[0-9]+(\.[0-9]+)?%")]
    Percent(&'s str),
    /// One duration component, such as `90d` or `30m`.
    #[regex(r"[0-9]+[wdhms]")]
    Duration(&'s str),
    /// An instant, such as `2026-12-18T17:00:00Z`.
    #[regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})")]
    Instant(&'s str),
    /// A calendar date, such as `2026-12-24`.
    #[regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")]
    Date(&'s str),
    /// A time of day, such as `21:00`.
    #[regex(r"[0-9]{1,2}:[0-9]{2}")]
    TimeOfDay(&'s str),
    /// The opening quote of a string.
    #[token("\"")]
    StrStart,
    /// Literal text inside a string, escapes not yet decoded.
    StrText(&'s str),
    /// The `{` that opens an interpolation inside a string.
    InterpOpen,
    /// The `}` that closes an interpolation inside a string.
    InterpClose,
    /// The closing quote of a string.
    StrEnd,
    /// `(`
    #[token("(")]
    LParen,
    /// `)`
    #[token(")")]
    RParen,
    /// `{`
    #[token("{")]
    LBrace,
    /// `}`
    #[token("}")]
    RBrace,
    /// `[`
    #[token("[")]
    LBracket,
    /// `]`
    #[token("]")]
    RBracket,
    /// `,`
    #[token(",")]
    Comma,
    /// `:`
    #[token(":")]
    Colon,
    /// `.`
    #[token(".")]
    Dot,
    /// `?.`
    #[token("?.")]
    QuestionDot,
    /// `??`
    #[token("??")]
    QuestionQuestion,
    /// `?`
    #[token("?")]
    Question,
    /// `=`
    #[token("=")]
    Eq,
    /// `==`
    #[token("==")]
    EqEq,
    /// `!=`
    #[token("!=")]
    NotEq,
    /// `<`
    #[token("<")]
    Lt,
    /// `<=`
    #[token("<=")]
    LtEq,
    /// `>`
    #[token(">")]
    Gt,
    /// `>=`
    #[token(">=")]
    GtEq,
    /// `+`
    #[token("+")]
    Plus,
    /// `-`
    #[token("-")]
    Minus,
    /// `*`
    #[token("*")]
    Star,
    /// `/`
    #[token("/")]
    Slash,
    /// `%`
    #[token("%")]
    PercentSign,
    /// `|`
    #[token("|")]
    Pipe,
    /// `=>`
    #[token("=>")]
    Arrow,
    /// A character that starts no token; reported by the lexer.
    Error,
}

impl Token<'_> {
    /// Whether the token is a reserved word.
    pub fn is_keyword(&self) -> bool {
        matches!(self, Token::Keyword(_))
    }

    /// The infix operator this token writes, if any. `-` is also a prefix
    /// operator (see [`Token::is_prefix_operator`]).
    pub fn binary_op(&self) -> Option<BinaryOp> {
        Some(match self {
            Token::Keyword("or") => BinaryOp::Or,
            Token::Keyword("and") => BinaryOp::And,
            Token::EqEq => BinaryOp::Eq,
            Token::NotEq => BinaryOp::Ne,
            Token::Lt => BinaryOp::Lt,
            Token::LtEq => BinaryOp::Le,
            Token::Gt => BinaryOp::Gt,
            Token::GtEq => BinaryOp::Ge,
            Token::Keyword("in") => BinaryOp::In,
            Token::QuestionQuestion => BinaryOp::Default,
            Token::Plus => BinaryOp::Add,
            Token::Minus => BinaryOp::Sub,
            Token::Star => BinaryOp::Mul,
            Token::Slash => BinaryOp::Div,
            Token::PercentSign => BinaryOp::Rem,
            _ => return None,
        })
    }

    /// How tightly the token binds as an infix operator; `None` when it is
    /// not one.
    pub fn binary_precedence(&self) -> Option<Precedence> {
        self.binary_op().map(BinaryOp::precedence)
    }

    /// Whether the token is a prefix operator: `-` or `not`.
    pub fn is_prefix_operator(&self) -> bool {
        matches!(self, Token::Minus | Token::Keyword("not"))
    }

    /// Whether the token reads a field: `.` or `?.`.
    pub fn is_member_access(&self) -> bool {
        matches!(self, Token::Dot | Token::QuestionDot)
    }

    /// Whether the token continues an expression after a complete operand:
    /// an infix operator or a field access. Such tokens are named together as
    /// "an operator" in "expected …" messages.
    pub fn continues_expression(&self) -> bool {
        self.binary_op().is_some() || self.is_member_access()
    }

    /// Whether the token is an operator of any kind: infix, prefix, field
    /// access or the `=>` of a lambda. Each one nests the expression it
    /// builds one level deeper.
    pub fn is_operator(&self) -> bool {
        self.continues_expression() || self.is_prefix_operator() || *self == Token::Arrow
    }

    /// Whether the token is a keyword that may stand inside an expression
    /// (see [`EXPRESSION_KEYWORDS`]).
    pub fn is_expression_keyword(&self) -> bool {
        matches!(self, Token::Keyword(k) if EXPRESSION_KEYWORDS.contains(k))
    }

    /// Whether the token is a keyword that starts a top-level declaration.
    pub fn starts_declaration(&self) -> bool {
        matches!(self, Token::Keyword(k) if DECLARATION_KEYWORDS.contains(k))
    }

    /// Whether the token is a keyword that starts a statement in a flow.
    pub fn starts_flow_statement(&self) -> bool {
        matches!(self, Token::Keyword(k) if FLOW_KEYWORDS.contains(k))
    }

    /// What the token is, as an editor colours it.
    ///
    /// Plain `.` is punctuation, as in the editor grammar, so that paths
    /// such as `event.total` are not striped with operator colour; `?.`
    /// and `??` are operators because they change what a value may be.
    pub fn class(&self) -> TokenClass {
        match self {
            Token::Comment(_) => TokenClass::Comment,
            Token::Keyword(_) => TokenClass::Keyword,
            Token::Ident(_) => TokenClass::Name,
            Token::Int(_)
            | Token::Decimal(_)
            | Token::Money(_)
            | Token::Percent(_)
            | Token::Duration(_)
            | Token::Instant(_)
            | Token::Date(_)
            | Token::TimeOfDay(_) => TokenClass::Number,
            Token::StrStart | Token::StrText(_) | Token::StrEnd => TokenClass::String,
            Token::Error => TokenClass::Invalid,
            Token::Dot => TokenClass::Punctuation,
            t if t.is_operator() => TokenClass::Operator,
            _ => TokenClass::Punctuation,
        }
    }

    /// How the token is named in "expected …, found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Token::Comment(_) => "a comment".into(),
            Token::Keyword(k) => format!("keyword `{k}`"),
            Token::Ident(s) => format!("`{s}`"),
            Token::Int(s) | Token::Decimal(s) => format!("number `{s}`"),
            Token::Money(s) => format!("amount `{s}`"),
            Token::Percent(s) => format!("percentage `{s}`"),
            Token::Duration(s) => format!("duration `{s}`"),
            Token::Instant(s) => format!("instant `{s}`"),
            Token::Date(s) => format!("date `{s}`"),
            Token::TimeOfDay(s) => format!("time `{s}`"),
            Token::StrStart => "a string".into(),
            Token::StrText(_) => "string text".into(),
            Token::InterpOpen => "`{` in a string".into(),
            Token::InterpClose => "`}` in a string".into(),
            Token::StrEnd => "the end of a string".into(),
            Token::Error => "an invalid character".into(),
            other => format!("`{}`", other.punct()),
        }
    }

    /// The source text of a punctuation token.
    pub fn punct(&self) -> &'static str {
        match self {
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Dot => ".",
            Token::QuestionDot => "?.",
            Token::QuestionQuestion => "??",
            Token::Question => "?",
            Token::Eq => "=",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::LtEq => "<=",
            Token::Gt => ">",
            Token::GtEq => ">=",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::PercentSign => "%",
            Token::Pipe => "|",
            Token::Arrow => "=>",
            _ => "",
        }
    }
}

impl std::fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileId;

    fn one_token(text: &str) -> Token<'_> {
        let lexed = crate::lex(FileId(0), text);
        assert_eq!(lexed.tokens.len(), 1, "{text:?} is one token");
        lexed.tokens[0].0
    }

    #[test]
    fn every_reserved_word_lexes_as_a_keyword_and_is_classed_as_one() {
        for word in KEYWORDS {
            let tok = one_token(word);
            assert_eq!(tok, Token::Keyword(word));
            assert!(tok.is_keyword());
            assert_eq!(tok.class(), TokenClass::Keyword, "{word}");
        }
        assert_eq!(one_token("given").class(), TokenClass::Name);
    }

    #[test]
    fn keyword_groups_hold_only_reserved_words() {
        for word in DECLARATION_KEYWORDS
            .iter()
            .chain(FLOW_KEYWORDS)
            .chain(EXPRESSION_KEYWORDS)
        {
            assert!(is_keyword(word), "`{word}` is in a group but not reserved");
        }
        for word in TEST_WORDS {
            assert!(!is_keyword(word), "test words stay usable as names");
        }
        assert!(Token::Keyword("flow").starts_declaration());
        assert!(!Token::Keyword("wait").starts_declaration());
        assert!(Token::Keyword("wait").starts_flow_statement());
        assert!(!Token::Ident("wait").starts_flow_statement());
    }

    #[test]
    fn operator_kinds() {
        for tok in [Token::Minus, Token::Keyword("not")] {
            assert!(tok.is_prefix_operator() && tok.is_operator());
        }
        assert!(!Token::Keyword("not").continues_expression());
        assert!(Token::Arrow.is_operator() && !Token::Arrow.continues_expression());
        for tok in [Token::Dot, Token::QuestionDot] {
            assert!(tok.is_member_access() && tok.continues_expression());
            assert_eq!(tok.binary_op(), None);
        }
        for tok in [
            Token::Eq,
            Token::Comma,
            Token::LParen,
            Token::Keyword("where"),
        ] {
            assert!(!tok.is_operator(), "{tok:?}");
        }
    }

    #[test]
    fn editors_colour_symbolic_operators_but_not_plain_dots() {
        for text in [
            "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "??", "?.", "=>",
        ] {
            assert_eq!(one_token(text).class(), TokenClass::Operator, "{text}");
        }
        for text in [".", "=", ",", ":", "(", "]", "|", "?"] {
            assert_eq!(one_token(text).class(), TokenClass::Punctuation, "{text}");
        }
        assert_eq!(one_token("$5").class(), TokenClass::Number);
        assert_eq!(one_token("2026-12-24").class(), TokenClass::Number);
        assert_eq!(one_token("`").class(), TokenClass::Invalid);
    }
}
