use logos::Logos;

/// Words reserved by the language: they cannot name a declaration, parameter
/// or variable (they may still name a field).
pub const KEYWORDS: &[&str] = &[
    "let", "event", "type", "profile", "segment", "message", "flow", "policy", "test", "trigger",
    "entry", "exit", "on", "where", "suppress", "quiet", "cap", "goal", "within", "holdout",
    "priority", "wait", "for", "until", "send", "if", "else", "split", "set", "audience", "and",
    "or", "not", "in", "true", "false", "none",
];

/// Whether `word` is a reserved keyword.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
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
