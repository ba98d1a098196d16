//! Signature help: inside the parentheses of `send MESSAGE(...)` or a
//! builtin call, the signature with the parameter being written.
//!
//! Worked out from the tokens before the cursor, so it works while the call
//! is half-written and the file does not parse.

use nudge_compiler::SymbolKind;
use nudge_diagnostics::FileId;
use nudge_syntax::Token;

use crate::lookup;
use crate::world::Snapshot;

/// The signature of the call around the cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// `cart_reminder(product: string, url: string)`.
    pub label: String,
    /// The declaration's documentation, in Markdown.
    pub documentation: Option<String>,
    /// Each parameter's byte range in `label`.
    pub params: Vec<(u32, u32)>,
    /// The parameter being written, when the cursor is at one.
    pub active: Option<u32>,
}

/// The signature help at a byte offset, if it is inside a call's parentheses.
pub fn signature_help(snap: &Snapshot, file: FileId, offset: u32) -> Option<Signature> {
    let text = snap.text(file);
    let offset = (offset as usize).min(text.len()) as u32;
    let lexed = nudge_syntax::lex(file, text);
    let before: Vec<Token> = lexed
        .tokens
        .iter()
        .filter(|(_, s)| s.end <= offset)
        .map(|(t, _)| *t)
        .collect();
    // Back to the unclosed `(`, counting the commas at its level.
    let mut depth = 0usize;
    let mut commas = 0u32;
    let mut arg_start = before.len();
    let mut open = None;
    for (i, tok) in before.iter().enumerate().rev() {
        match tok {
            Token::RParen | Token::RBracket | Token::RBrace => depth += 1,
            Token::LParen if depth == 0 => {
                open = Some(i);
                break;
            }
            // Inside a list or a block, not directly in a call.
            Token::LBracket | Token::LBrace if depth == 0 => return None,
            Token::LParen | Token::LBracket | Token::LBrace => depth -= 1,
            Token::Comma if depth == 0 => {
                if commas == 0 {
                    arg_start = i + 1;
                }
                commas += 1;
            }
            _ => {}
        }
    }
    let open = open?;
    if commas == 0 {
        arg_start = open + 1;
    }
    let Some(Token::Ident(name)) = open.checked_sub(1).map(|i| before[i]) else {
        return None;
    };
    let sent = open >= 2 && before[open - 2] == Token::Keyword("send");
    let (label, documentation) = if sent {
        message_signature(snap, name)?
    } else if let Some(b) = nudge_stdlib::builtin(name) {
        (b.signature.to_string(), Some(b.doc.to_string()))
    } else {
        return None;
    };
    let params = param_ranges(&label);
    // `name: value` picks the parameter by name.
    let named = match (before.get(arg_start), before.get(arg_start + 1)) {
        (Some(Token::Ident(arg)), Some(Token::Colon)) => params
            .iter()
            .position(|&(a, b)| {
                let p = &label[a as usize..b as usize];
                p.split(':').next().is_some_and(|n| n.trim() == *arg)
            })
            .map(|i| i as u32),
        _ => None,
    };
    let active = named.or_else(|| (commas < params.len() as u32).then_some(commas));
    Some(Signature {
        label,
        documentation,
        params,
        active,
    })
}

fn message_signature(snap: &Snapshot, name: &str) -> Option<(String, Option<String>)> {
    let symbol = lookup::symbols_of_kind(&snap.analysis, SymbolKind::Message)
        .into_iter()
        .find(|s| s.name == name)?;
    let info = lookup::message_info(snap, symbol);
    let label = info.map_or_else(|| symbol.detail.clone(), |i| i.signature);
    Some((label, symbol.doc.clone()))
}

/// The byte ranges of the parameters in `name(a: T, b: fn(U) -> V) -> R`.
fn param_ranges(label: &str) -> Vec<(u32, u32)> {
    let Some(open) = label.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    let bytes = label.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(open + 1) {
        match b {
            b'(' | b'<' | b'[' => depth += 1,
            // `->` is an arrow, not a closing angle bracket.
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b')' | b'>' | b']' if depth > 0 => depth -= 1,
            b',' if depth == 0 => {
                push_trimmed(label, start, i, &mut out);
                start = i + 1;
            }
            b')' => {
                push_trimmed(label, start, i, &mut out);
                break;
            }
            _ => {}
        }
    }
    out
}

fn push_trimmed(label: &str, start: usize, end: usize, out: &mut Vec<(u32, u32)>) {
    let part = &label[start..end];
    let lead = part.len() - part.trim_start().len();
    let trimmed = part.trim();
    if !trimmed.is_empty() {
        let a = start + lead;
        out.push((a as u32, (a + trimmed.len()) as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_of_nested_types_and_function_types() {
        let label = "any(items: list<T>, test: fn(T) -> bool) -> bool";
        let parts: Vec<&str> = param_ranges(label)
            .iter()
            .map(|&(a, b)| &label[a as usize..b as usize])
            .collect();
        assert_eq!(parts, ["items: list<T>", "test: fn(T) -> bool"]);
        assert!(param_ranges("now()").is_empty());
    }
}
