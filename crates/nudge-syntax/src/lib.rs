//! The syntax of the Nudge flow language: tokens, the syntax tree and the parser.
//!
//! Data flows one way: [`lex`] turns text into tokens (comments kept aside for
//! the formatter), [`parse`] turns tokens into an [`ast::File`] with byte spans,
//! recovering from errors so that a broken file still yields a tree for the rest.

pub mod ast;
mod error;
mod lexer;
mod parser;
mod token;

pub use error::{ParseError, ParseErrorKind};
pub use lexer::{Comment, Lexed, lex};
pub use parser::{Parsed, parse};
pub use token::{
    DECLARATION_KEYWORDS, EXPRESSION_KEYWORDS, FLOW_KEYWORDS, KEYWORDS, POLICY_WORDS, TEST_WORDS,
    Token, TokenClass, is_keyword,
};

pub use nudge_diagnostics::{FileId, Span};
