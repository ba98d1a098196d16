//! Small queries over an analysis that several features share: records by
//! name, types from their display text, and the message declarations.

use nudge_compiler::types::{RecordDef, RecordKind, Ty};
use nudge_compiler::{Analysis, Symbol, SymbolKind};
use nudge_diagnostics::{FileId, Span};
use nudge_syntax::ast::{self, ContentValue, ExprKind, Item};

use crate::world::Snapshot;

/// The record of an event, by its flow-level name.
pub fn event_record(an: &Analysis, name: &str) -> Option<Ty> {
    record_by(an, |r| r.kind == RecordKind::Event && r.name == name)
}

/// The profile record.
pub fn profile_record(an: &Analysis) -> Option<Ty> {
    record_by(an, |r| r.kind == RecordKind::Profile)
}

fn record_by(an: &Analysis, pred: impl Fn(&RecordDef) -> bool) -> Option<Ty> {
    an.types
        .records
        .iter()
        .position(pred)
        .map(|i| Ty::Record(nudge_compiler::types::RecordId(i as u32)))
}

/// A type from the text the analysis displays (`list<Product>?`), for
/// symbols whose type is only known as text.
pub fn ty_from_display(an: &Analysis, text: &str) -> Option<Ty> {
    let text = text.trim();
    if let Some(inner) = text.strip_suffix('?') {
        return ty_from_display(an, inner).map(Ty::optional);
    }
    if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
        return ty_from_display(an, inner).map(|t| Ty::List(Box::new(t)));
    }
    if let Some(t) = nudge_compiler::types::scalar(text) {
        return Some(t);
    }
    // Declared types and events share one namespace; prefer what is not synthetic.
    record_by(an, |r| r.name == text && r.kind != RecordKind::Synthetic).or_else(|| {
        an.types
            .enums
            .iter()
            .position(|e| e.name == text)
            .map(|i| Ty::Enum(nudge_compiler::types::EnumId(i as u32)))
    })
}

/// The type of a field of a value of type `ty` (looking through `?`).
pub fn field_type(an: &Analysis, ty: &Ty, field: &str) -> Option<Ty> {
    match ty.strip_optional() {
        Ty::Record(r) => an.types.record(*r).field(field).map(|f| f.ty.clone()),
        _ => None,
    }
}

/// The identifier (or keyword) that covers or ends at `offset`.
pub fn word_at(text: &str, offset: u32) -> Option<(Span, &str)> {
    let offset = (offset as usize).min(text.len());
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut start = offset;
    while start > 0 && is_word(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = offset;
    while end < bytes.len() && is_word(bytes[end]) {
        end += 1;
    }
    if start == end || bytes[start].is_ascii_digit() {
        return None;
    }
    Some((Span::new(start, end), &text[start..end]))
}

/// A message declaration found again in its file's syntax tree.
pub struct MessageInfo {
    /// `cart_reminder(products: list<Product>)`.
    pub signature: String,
    /// The channel as written (`email`), if any.
    pub channel: Option<String>,
    /// `marketing` or `transactional`.
    pub purpose: String,
    /// Parameter names and their types as written.
    pub params: Vec<(String, String)>,
}

/// The signature, channel and purpose of a message symbol.
pub fn message_info(snap: &Snapshot, symbol: &Symbol) -> Option<MessageInfo> {
    if symbol.kind != SymbolKind::Message {
        return None;
    }
    let file = symbol.at.file;
    let parsed = snap.parse(file);
    let text = snap.text(file);
    let decl = parsed.file.items.iter().find_map(|i| match i {
        Item::Message(m) if m.name.span == symbol.at.span => Some(m),
        _ => None,
    })?;
    Some(describe_message(decl, text))
}

/// Describes a parsed message declaration.
pub fn describe_message(decl: &ast::MessageDecl, text: &str) -> MessageInfo {
    let params: Vec<(String, String)> = decl
        .params
        .iter()
        .map(|p| {
            let ty = text.get(p.ty.span.range()).unwrap_or("").to_string();
            (p.name.name.clone(), ty)
        })
        .collect();
    let shown: Vec<String> = decl
        .params
        .iter()
        .map(|p| text.get(p.span.range()).unwrap_or("").to_string())
        .collect();
    let word = |key: &str| {
        decl.content.iter().find_map(|c| match &c.value {
            ContentValue::Expr(e) if c.key.name == key => match &e.kind {
                ExprKind::Name(n) => Some(n.clone()),
                _ => None,
            },
            _ => None,
        })
    };
    MessageInfo {
        signature: format!("{}({})", decl.name.name, shown.join(", ")),
        channel: word("channel"),
        purpose: word("purpose").unwrap_or_else(|| "marketing".to_string()),
        params,
    }
}

/// The symbols of one kind that any file declares, sorted by name, first of each name.
pub fn symbols_of_kind(an: &Analysis, kind: SymbolKind) -> Vec<&Symbol> {
    let mut out: Vec<&Symbol> = an.symbols.iter().filter(|s| s.kind == kind).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The fields of a record, with their types as displayed and their docs.
pub fn record_fields(an: &Analysis, ty: &Ty) -> Vec<(String, String, Option<String>)> {
    let Ty::Record(r) = ty.strip_optional() else {
        return Vec::new();
    };
    an.types
        .record(*r)
        .fields
        .iter()
        .map(|f| {
            let doc = f
                .symbol
                .and_then(|s| an.symbol(s))
                .and_then(|s| s.doc.clone());
            (f.name.clone(), an.types.display(&f.ty), doc)
        })
        .collect()
}

/// The wire name of an event record.
pub fn wire_name(an: &Analysis, ty: &Ty) -> Option<String> {
    match ty.strip_optional() {
        Ty::Record(r) => an.types.record(*r).wire.clone(),
        _ => None,
    }
}

/// Whether a file id is valid in this snapshot.
pub fn valid_file(snap: &Snapshot, file: FileId) -> bool {
    snap.source(file).is_some()
}
