//! Hover: the type of what is under the cursor, and the documentation of
//! events, fields, messages and builtins.

use nudge_compiler::SymbolKind;
use nudge_diagnostics::{FileId, FileSpan, Span};

use crate::lookup;
use crate::world::Snapshot;

/// What a hover shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hover {
    /// The range the hover is about.
    pub range: Span,
    /// Markdown text.
    pub markdown: String,
}

fn code(text: &str) -> String {
    format!("```nudge\n{text}\n```")
}

/// The hover at a byte offset, if there is anything to say.
pub fn hover(snap: &Snapshot, file: FileId, offset: u32) -> Option<Hover> {
    let an = &snap.analysis;
    let text = snap.text(file);
    let (word_span, word) = lookup::word_at(text, offset)?;
    if let Some(id) = an.symbol_at(file, offset) {
        let sym = an.symbol(id)?;
        let range = an
            .uses
            .iter()
            .find(|(at, s)| *s == id && at.file == file && at.span.contains(offset))
            .map_or(sym.at.span, |(at, _)| at.span);
        let range = if sym.at.file == file && sym.at.span.contains(offset) {
            sym.at.span
        } else {
            range
        };
        let mut parts: Vec<String> = Vec::new();
        match sym.kind {
            SymbolKind::Event => {
                let ty = lookup::event_record(an, &sym.name);
                let wire = ty.as_ref().and_then(|t| lookup::wire_name(an, t));
                let head = match wire {
                    Some(w) => format!("event {} \"{w}\"", sym.name),
                    None => format!("event {}", sym.name),
                };
                parts.push(code(&head));
                parts.extend(sym.doc.clone());
                if let Some(ty) = ty {
                    let fields = lookup::record_fields(an, &ty);
                    if !fields.is_empty() {
                        let list: Vec<String> = fields
                            .iter()
                            .map(|(n, t, _)| format!("- `{n}: {t}`"))
                            .collect();
                        parts.push(format!("Properties:\n{}", list.join("\n")));
                    }
                }
            }
            SymbolKind::Field => {
                let parent = sym.parent.and_then(|p| an.symbol(p));
                let ty = field_display(snap, id).unwrap_or_else(|| sym.detail.clone());
                parts.push(code(&format!("{}: {ty}", sym.name)));
                parts.extend(sym.doc.clone());
                if let Some(p) = parent {
                    parts.push(format!("Field of {} `{}`", p.kind.describe(), p.name));
                } else {
                    parts.push("Profile trait".to_string());
                }
            }
            SymbolKind::Message => {
                if let Some(info) = lookup::message_info(snap, sym) {
                    parts.push(code(&format!("message {}", info.signature)));
                    parts.extend(sym.doc.clone());
                    let mut facts = Vec::new();
                    if let Some(ch) = &info.channel {
                        facts.push(format!("Channel: `{ch}`"));
                    }
                    facts.push(format!("Purpose: `{}`", info.purpose));
                    if info.params.is_empty() {
                        facts.push("Parameters: none".to_string());
                    } else {
                        let ps: Vec<String> = info
                            .params
                            .iter()
                            .map(|(n, t)| format!("`{n}: {t}`"))
                            .collect();
                        facts.push(format!("Parameters: {}", ps.join(", ")));
                    }
                    parts.push(facts.join("  \n"));
                } else {
                    parts.push(code(&format!("message {}", sym.name)));
                }
            }
            SymbolKind::Flow | SymbolKind::Segment => {
                parts.push(code(&sym.detail));
                parts.extend(sym.doc.clone());
            }
            SymbolKind::Type | SymbolKind::Enum => {
                parts.push(code(&sym.detail));
                parts.extend(sym.doc.clone());
            }
            SymbolKind::Let | SymbolKind::Param | SymbolKind::Local => {
                let keyword = match sym.kind {
                    SymbolKind::Let => "let ",
                    _ => "",
                };
                parts.push(code(&format!("{keyword}{}: {}", sym.name, sym.detail)));
                parts.extend(sym.doc.clone());
                if sym.kind != SymbolKind::Let {
                    parts.push(sym.kind.describe().to_string());
                }
            }
        }
        return Some(Hover {
            range,
            markdown: parts.join("\n\n"),
        });
    }
    // A builtin called here.
    if text[word_span.end as usize..].trim_start().starts_with('(')
        && let Some(b) = nudge_stdlib::builtin(word)
    {
        return Some(Hover {
            range: word_span,
            markdown: format!("{}\n\n{}", code(&b.signature.to_string()), b.doc),
        });
    }
    // `trigger`, `event`, `profile` and other expressions: their type.
    let ty = an.expr_type(FileSpan::new(file, word_span))?;
    if ty.is_error() {
        return None;
    }
    let shown = an.types.display(ty);
    let mut md = code(&format!("{word}: {shown}"));
    if let Some(w) = lookup::wire_name(an, ty) {
        md.push_str(&format!("\n\nThe event \"{w}\""));
        if let Some(doc) = lookup::symbols_of_kind(an, SymbolKind::Event)
            .into_iter()
            .find(|s| s.name == shown.trim_end_matches('?'))
            .and_then(|s| s.doc.clone())
        {
            md.push_str(&format!(": {doc}"));
        }
    }
    Some(Hover {
        range: word_span,
        markdown: md,
    })
}

/// A field's type as displayed, from its record's table.
fn field_display(snap: &Snapshot, id: nudge_compiler::SymbolId) -> Option<String> {
    let an = &snap.analysis;
    an.types.records.iter().find_map(|r| {
        r.fields
            .iter()
            .find(|f| f.symbol == Some(id))
            .map(|f| an.types.display(&f.ty))
    })
}
