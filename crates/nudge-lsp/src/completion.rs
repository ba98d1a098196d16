//! Completion: what may be written at the cursor, worked out from the tokens
//! before it, so that it works while the file is half-written and does not
//! parse.

use nudge_compiler::types::Ty;
use nudge_compiler::{Analysis, SymbolKind};
use nudge_diagnostics::{FileId, FileSpan, Span};
use nudge_syntax::{DECLARATION_KEYWORDS, Token};

use crate::lookup;
use crate::world::Snapshot;

/// What a completion item stands for; the server maps it to an LSP kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ItemKind {
    /// A keyword or a word with a meaning in one position.
    Keyword,
    /// An event.
    Event,
    /// A field of a record.
    Field,
    /// A message.
    Message,
    /// A segment.
    Segment,
    /// A top-level constant.
    Constant,
    /// A builtin function.
    Function,
    /// A local variable or parameter.
    Variable,
    /// A type name.
    Type,
    /// A statement template with placeholders.
    Snippet,
}

/// One completion candidate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// The text shown and inserted.
    pub label: String,
    /// What it is.
    pub kind: ItemKind,
    /// A short description: a type, a signature, a wire name.
    pub detail: Option<String>,
    /// Longer documentation, in Markdown.
    pub documentation: Option<String>,
    /// Sort key, so that fields keep their declaration order.
    pub sort: Option<String>,
    /// For a snippet: the text to insert, with `${1:placeholder}` tab stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl Item {
    fn new(label: impl Into<String>, kind: ItemKind) -> Item {
        Item {
            label: label.into(),
            kind,
            detail: None,
            documentation: None,
            sort: None,
            snippet: None,
        }
    }

    fn snippet(label: &str, body: &str, detail: &str) -> Item {
        let mut item = Item::new(label, ItemKind::Snippet).detail(detail);
        item.snippet = Some(body.to_string());
        item
    }

    fn detail(mut self, d: impl Into<String>) -> Item {
        let d = d.into();
        if !d.is_empty() {
            self.detail = Some(d);
        }
        self
    }

    fn doc(mut self, d: Option<String>) -> Item {
        self.documentation = d;
        self
    }
}

/// The kind of block the cursor is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Top,
    Flow,
    Nested,
    Message,
    Policy,
    Test,
    Fields,
    Other,
}

type Tok<'s> = (Token<'s>, Span);

/// Completion candidates at a byte offset of a file.
pub fn complete(snap: &Snapshot, file: FileId, offset: u32) -> Vec<Item> {
    let text = snap.text(file);
    let offset = (offset as usize).min(text.len()) as u32;
    let lexed = nudge_syntax::lex(file, text);
    if lexed
        .comments
        .iter()
        .any(|c| c.span.start < offset && offset <= c.span.end)
    {
        return Vec::new();
    }
    // The word being typed is replaced by the choice, so look before it.
    let mut before: Vec<Tok> = lexed
        .tokens
        .iter()
        .copied()
        .filter(|(_, s)| s.end <= offset)
        .collect();
    if let Some((Token::Ident(_) | Token::Keyword(_), s)) = before.last()
        && s.end == offset
    {
        before.pop();
    }
    if in_string(&before) {
        return Vec::new();
    }
    let an = &snap.analysis;
    let (block, flow_start, paren_in_message, parens) = context(&before);
    let prev = before.last().map(|t| t.0);
    let prev2 = before.len().checked_sub(2).map(|i| before[i].0);
    let prev3 = before.len().checked_sub(3).map(|i| before[i].0);

    match prev {
        Some(Token::Dot | Token::QuestionDot) => {
            return member_items(snap, file, &lexed.tokens, &before, flow_start);
        }
        Some(Token::Keyword("trigger")) if !after_dot(prev2) => {
            let mut items = event_items(an);
            items.push(Item::new("every", ItemKind::Keyword).detail("a schedule"));
            items.push(Item::new("once", ItemKind::Keyword).detail("a campaign, on one date"));
            items.push(Item::new("entering", ItemKind::Keyword).detail("a segment"));
            items.push(Item::new("on", ItemKind::Keyword).detail("a date in the profile"));
            return items;
        }
        Some(Token::Duration(_)) if prev2 == Some(Token::Keyword("trigger")) => {
            return keywords(&["after", "before"]);
        }
        Some(Token::Ident("every"))
            if prev2.is_some_and(|t| matches!(t, Token::Ident(_))) && prev3 == Some(Token::Dot) =>
        {
            return keywords(&["year"]);
        }
        Some(Token::Keyword("on")) if prev2 == Some(Token::Keyword("exit")) => {
            return event_items(an);
        }
        Some(Token::Keyword("goal")) => return event_items(an),
        Some(Token::Keyword("for")) if prev2 == Some(Token::Keyword("wait")) => {
            return event_items(an);
        }
        Some(Token::Keyword("or")) if in_wait_for(&before) => return event_items(an),
        Some(Token::Ident(_) | Token::StrEnd)
            if prev2 == Some(Token::Ident("track"))
                || (prev2 == Some(Token::Ident("anonymous"))
                    && prev3 == Some(Token::Ident("track"))) =>
        {
            return event_items(an);
        }
        Some(Token::Keyword("send")) => return message_items(snap),
        Some(Token::Ident("entering")) if prev2 == Some(Token::Keyword("trigger")) => {
            return segment_items(an);
        }
        Some(Token::Keyword("for"))
            if matches!(prev2, Some(Token::Ident("local") | Token::TimeOfDay(_))) =>
        {
            return segment_items(an);
        }
        Some(Token::Keyword("entry")) => return keywords(&["once", "always"]),
        Some(Token::Ident("once")) if prev2 == Some(Token::Keyword("entry")) => {
            return keywords(&["per"]);
        }
        Some(Token::Keyword("exit")) if !after_dot(prev2) && block != Block::Test => {
            return keywords(&["on", "if"]);
        }
        Some(Token::Keyword("quiet")) => return keywords(&["hours"]),
        Some(Token::Keyword("audience")) => return keywords(&["add", "remove"]),
        Some(Token::Keyword("split")) => return keywords(&["optimise"]),
        Some(Token::Ident("optimise")) if prev2 == Some(Token::Keyword("split")) => {
            return keywords(&["floor"]);
        }
        Some(Token::Keyword("wait")) if !after_dot(prev2) => return keywords(&["until", "for"]),
        Some(Token::Keyword("cap")) => {
            return keywords(&["email", "sms", "push", "webhook", "marketing"]);
        }
        Some(Token::Ident("then")) => return keywords(&["skip", "defer"]),
        Some(Token::Keyword("set")) => return keywords(&["profile"]),
        Some(Token::Ident("channel")) if block == Block::Message => {
            return keywords(&["email", "sms", "push", "webhook", "audience"]);
        }
        Some(Token::Ident("purpose")) if block == Block::Message => {
            return keywords(&["marketing", "transactional"]);
        }
        Some(Token::Colon) if block == Block::Fields || paren_in_message => {
            return type_items(an);
        }
        // `reminder: ` labels a step; inside parentheses it names an argument.
        Some(Token::Colon) if matches!(block, Block::Flow | Block::Nested) && parens == 0 => {
            return statement_items(Block::Nested, prev);
        }
        Some(Token::Lt) if prev2 == Some(Token::Ident("list")) => return type_items(an),
        _ => {}
    }
    if prev.is_some_and(expects_operand) {
        return expression_items(snap, file, offset, block, flow_start, &before);
    }
    statement_items(block, prev)
}

fn after_dot(t: Option<Token>) -> bool {
    matches!(t, Some(Token::Dot | Token::QuestionDot))
}

/// Whether the cursor is in a string's text (not in an interpolation).
fn in_string(before: &[Tok]) -> bool {
    let mut stack: Vec<bool> = Vec::new();
    for (t, _) in before {
        match t {
            Token::StrStart => stack.push(true),
            Token::StrEnd => {
                stack.pop();
            }
            Token::InterpOpen => stack.push(false),
            Token::InterpClose => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.last().copied().unwrap_or(false)
}

/// The block kind around the cursor, the index of the enclosing flow's
/// `flow` token, whether the cursor is in a message's parameter list, and
/// how many parentheses are open since the innermost brace.
fn context(before: &[Tok]) -> (Block, Option<usize>, bool, i32) {
    let mut stack: Vec<Block> = Vec::new();
    let mut item: Option<&str> = None;
    let mut item_at = 0usize;
    let mut parens = 0i32;
    for (i, (t, _)) in before.iter().enumerate() {
        match t {
            Token::Keyword(k) if t.starts_declaration() && stack.is_empty() && parens == 0 => {
                // `profile` and `event` are also expressions; only a word at
                // the start of a top-level item opens one.
                let starts_item = i == 0
                    || !(operand_follows(before[i - 1].0)
                        || matches!(before[i - 1].0, Token::Eq | Token::LParen | Token::Comma));
                if starts_item {
                    item = Some(k);
                    item_at = i;
                }
            }
            Token::LParen => parens += 1,
            Token::RParen => parens = (parens - 1).max(0),
            Token::LBrace => {
                let kind = match stack.last() {
                    None => match item {
                        Some("flow") => Block::Flow,
                        Some("message") => Block::Message,
                        Some("policy") => Block::Policy,
                        Some("test") => Block::Test,
                        Some("event" | "type" | "profile") => Block::Fields,
                        _ => Block::Other,
                    },
                    Some(Block::Flow | Block::Nested) => Block::Nested,
                    Some(_) => Block::Other,
                };
                stack.push(kind);
                parens = 0;
            }
            Token::RBrace => {
                stack.pop();
                parens = 0;
                if stack.is_empty() {
                    item = None;
                }
            }
            _ => {}
        }
    }
    let block = stack.last().copied().unwrap_or(Block::Top);
    let flow_start = (item == Some("flow") && !stack.is_empty()).then_some(item_at);
    let in_params = item == Some("message") && stack.is_empty() && parens > 0;
    (block, flow_start, in_params, parens)
}

/// Whether an expression follows this token wherever it stands: after an
/// operator, and after the clause keywords that take a condition or a time.
fn operand_follows(t: Token) -> bool {
    t.is_operator() || matches!(t, Token::Keyword("where" | "if" | "until"))
}

/// Whether an expression (not a statement) comes after this token.
fn expects_operand(t: Token) -> bool {
    operand_follows(t)
        || matches!(
            t,
            Token::LParen
                | Token::Comma
                | Token::LBracket
                | Token::Eq
                | Token::InterpOpen
                | Token::Colon
        )
}

/// Whether the cursor follows `wait for A or B or`.
fn in_wait_for(before: &[Tok]) -> bool {
    let mut i = before.len();
    while i >= 2 {
        match (before[i - 2].0, before[i - 1].0) {
            (Token::Ident(_), Token::Keyword("or")) => i -= 2,
            (Token::Keyword("for"), Token::Ident(_)) => {
                return i >= 3 && before[i - 3].0 == Token::Keyword("wait");
            }
            (Token::Keyword("or"), Token::Ident(_)) => i -= 1,
            _ => return false,
        }
    }
    false
}

fn keywords(words: &[&str]) -> Vec<Item> {
    words
        .iter()
        .map(|w| Item::new(*w, ItemKind::Keyword))
        .collect()
}

fn event_items(an: &Analysis) -> Vec<Item> {
    lookup::symbols_of_kind(an, SymbolKind::Event)
        .into_iter()
        .map(|s| {
            let ty = lookup::event_record(an, &s.name);
            let wire = ty.as_ref().and_then(|t| lookup::wire_name(an, t));
            let mut doc = s.doc.clone().unwrap_or_default();
            if let Some(ty) = &ty {
                let fields = lookup::record_fields(an, ty);
                if !fields.is_empty() {
                    if !doc.is_empty() {
                        doc.push_str("\n\n");
                    }
                    for (name, ty, _) in fields {
                        doc.push_str(&format!("- `{name}: {ty}`\n"));
                    }
                }
            }
            Item::new(&s.name, ItemKind::Event)
                .detail(wire.map(|w| format!("\"{w}\"")).unwrap_or_default())
                .doc((!doc.is_empty()).then_some(doc))
        })
        .collect()
}

fn message_items(snap: &Snapshot) -> Vec<Item> {
    lookup::symbols_of_kind(&snap.analysis, SymbolKind::Message)
        .into_iter()
        .map(|s| {
            let info = lookup::message_info(snap, s);
            let detail = info.as_ref().map_or(String::new(), |i| i.signature.clone());
            let mut doc = s.doc.clone().unwrap_or_default();
            if let Some(i) = &info
                && let Some(ch) = &i.channel
            {
                if !doc.is_empty() {
                    doc.push_str("\n\n");
                }
                doc.push_str(&format!("{} {ch} message", i.purpose));
            }
            Item::new(&s.name, ItemKind::Message)
                .detail(detail)
                .doc((!doc.is_empty()).then_some(doc))
        })
        .collect()
}

fn segment_items(an: &Analysis) -> Vec<Item> {
    lookup::symbols_of_kind(an, SymbolKind::Segment)
        .into_iter()
        .map(|s| {
            Item::new(&s.name, ItemKind::Segment)
                .detail("segment")
                .doc(s.doc.clone())
        })
        .collect()
}

fn type_items(an: &Analysis) -> Vec<Item> {
    let mut items: Vec<Item> = [
        "bool",
        "int",
        "decimal",
        "money",
        "percent",
        "string",
        "duration",
        "time",
        "date",
        "time_of_day",
        "timezone",
        "list",
    ]
    .iter()
    .map(|t| Item::new(*t, ItemKind::Type).detail("built-in type"))
    .collect();
    for kind in [SymbolKind::Type, SymbolKind::Enum, SymbolKind::Event] {
        for s in lookup::symbols_of_kind(an, kind) {
            items.push(
                Item::new(&s.name, ItemKind::Type)
                    .detail(kind.describe())
                    .doc(s.doc.clone()),
            );
        }
    }
    items
}

/// Fields after `x.`: the type of `x` from the analysis when the statement
/// parsed, else from the flow's trigger, the `where` clause's event, the
/// profile, or the declared type of a variable.
fn member_items(
    snap: &Snapshot,
    file: FileId,
    all: &[Tok],
    before: &[Tok],
    flow_start: Option<usize>,
) -> Vec<Item> {
    let an = &snap.analysis;
    // Walk back over `a.b.c` to the chain's root.
    let mut chain: Vec<(&str, Span)> = Vec::new();
    let mut i = before.len() - 1; // the dot
    loop {
        if i == 0 {
            break;
        }
        match before[i - 1] {
            (Token::Ident(n) | Token::Keyword(n), s) => chain.push((n, s)),
            _ => break,
        }
        i -= 1;
        if i >= 1 && matches!(before[i - 1].0, Token::Dot | Token::QuestionDot) {
            i -= 1;
            continue;
        }
        break;
    }
    chain.reverse();
    let Some(&(root, root_span)) = chain.first() else {
        return Vec::new();
    };
    let whole = Span::new(
        root_span.start as usize,
        chain.last().map_or(0, |c| c.1.end as usize),
    );
    let ty = an
        .expr_type(FileSpan::new(file, whole))
        .filter(|t| !t.is_error())
        .cloned()
        .or_else(|| {
            let mut ty = root_type(snap, file, root, root_span, all, before, flow_start)?;
            for (field, _) in &chain[1..] {
                ty = lookup::field_type(an, &ty, field)?;
            }
            Some(ty)
        });
    let Some(ty) = ty else {
        if root == "event" && chain.len() == 1 {
            return shared_event_fields(an, &where_events(before));
        }
        return Vec::new();
    };
    let ty = match ty.strip_optional() {
        Ty::List(_) => return Vec::new(),
        t => t.clone(),
    };
    lookup::record_fields(an, &ty)
        .into_iter()
        .enumerate()
        .map(|(i, (name, ty, doc))| {
            let mut item = Item::new(name, ItemKind::Field).detail(ty).doc(doc);
            item.sort = Some(format!("{i:04}"));
            item
        })
        .collect()
}

fn root_type(
    snap: &Snapshot,
    file: FileId,
    root: &str,
    root_span: Span,
    all: &[Tok],
    before: &[Tok],
    flow_start: Option<usize>,
) -> Option<Ty> {
    let an = &snap.analysis;
    if let Some(t) = an
        .expr_type(FileSpan::new(file, root_span))
        .filter(|t| !t.is_error())
    {
        return Some(t.clone());
    }
    match root {
        "trigger" => {
            let name = trigger_event(all, flow_start?)?;
            lookup::event_record(an, name)
        }
        "event" => {
            let names = where_events(before);
            let first = lookup::event_record(an, names.first()?)?;
            if names.len() == 1 {
                return Some(first);
            }
            // Several awaited events: offer what they all have.
            None
        }
        "profile" => lookup::profile_record(an),
        _ => {
            // The nearest declaration of that name before the cursor in
            // this file (a local, a parameter), else a top-level constant.
            let local = an
                .symbols
                .iter()
                .filter(|s| {
                    s.name == root
                        && s.at.file == file
                        && s.at.span.end <= root_span.start
                        && matches!(s.kind, SymbolKind::Local | SymbolKind::Param)
                })
                .max_by_key(|s| s.at.span.start);
            let sym = local.or_else(|| {
                an.symbols
                    .iter()
                    .find(|s| s.name == root && s.kind == SymbolKind::Let)
            })?;
            lookup::ty_from_display(an, &sym.detail)
        }
    }
}

/// The fields every one of several awaited events has, with the same type
/// (what `event.` may read in `wait for a or b where`).
fn shared_event_fields(an: &Analysis, names: &[&str]) -> Vec<Item> {
    let records: Vec<Vec<(String, String, Option<String>)>> = names
        .iter()
        .filter_map(|n| lookup::event_record(an, n))
        .map(|t| lookup::record_fields(an, &t))
        .collect();
    let Some((first, rest)) = records.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|(n, t, _)| {
            rest.iter()
                .all(|r| r.iter().any(|(m, u, _)| m == n && u == t))
        })
        .enumerate()
        .map(|(i, (name, ty, doc))| {
            let mut item = Item::new(name, ItemKind::Field).detail(ty).doc(doc.clone());
            item.sort = Some(format!("{i:04}"));
            item
        })
        .collect()
}

/// The event that triggers the flow whose `flow` token is at `start`.
fn trigger_event<'s>(all: &[Tok<'s>], start: usize) -> Option<&'s str> {
    let mut depth = 0i32;
    for i in start..all.len() {
        match all[i].0 {
            Token::LBrace => depth += 1,
            Token::RBrace => {
                depth -= 1;
                if depth <= 0 {
                    return None;
                }
            }
            Token::Keyword("trigger")
                if depth == 1 && (i == 0 || !after_dot(Some(all[i - 1].0))) =>
            {
                if let Some((Token::Ident(n), _)) = all.get(i + 1)
                    && !matches!(*n, "every" | "entering" | "once")
                {
                    return Some(n);
                }
            }
            _ => {}
        }
    }
    None
}

/// The events a `where` before the cursor filters: `trigger E where`,
/// `exit on E where`, `goal E where`, `wait for A or B where`.
fn where_events<'s>(before: &[Tok<'s>]) -> Vec<&'s str> {
    let Some(w) = before
        .iter()
        .rposition(|(t, _)| *t == Token::Keyword("where"))
    else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut i = w;
    while i > 0 {
        match before[i - 1].0 {
            Token::Ident(n) => names.push(n),
            Token::Keyword("or") => {}
            _ => break,
        }
        i -= 1;
    }
    names.reverse();
    names
}

fn expression_items(
    snap: &Snapshot,
    file: FileId,
    offset: u32,
    block: Block,
    flow_start: Option<usize>,
    before: &[Tok],
) -> Vec<Item> {
    let an = &snap.analysis;
    let mut items = Vec::new();
    let flow_from = flow_start.map_or(u32::MAX, |i| before[i].1.start);
    let mut seen = std::collections::HashSet::new();
    let mut locals: Vec<_> = an
        .symbols
        .iter()
        .filter(|s| s.at.file == file && s.at.span.end <= offset)
        .filter(|s| match s.kind {
            SymbolKind::Local => s.at.span.start >= flow_from,
            _ => false,
        })
        .collect();
    // A message's parameters are in scope in its own body.
    if block == Block::Message {
        let msg = an
            .symbols
            .iter()
            .filter(|s| {
                s.kind == SymbolKind::Message && s.at.file == file && s.at.span.end <= offset
            })
            .max_by_key(|s| s.at.span.start);
        if let Some(m) = msg {
            locals.extend(an.symbols.iter().filter(|s| {
                s.kind == SymbolKind::Param
                    && s.parent
                        .and_then(|p| an.symbol(p))
                        .is_some_and(|p| std::ptr::eq(p, m))
            }));
        }
    }
    locals.sort_by_key(|s| std::cmp::Reverse(s.at.span.start));
    for s in locals {
        if seen.insert(s.name.clone()) {
            items.push(Item::new(&s.name, ItemKind::Variable).detail(&s.detail));
        }
    }
    for s in lookup::symbols_of_kind(an, SymbolKind::Let) {
        if seen.insert(s.name.clone()) {
            items.push(
                Item::new(&s.name, ItemKind::Constant)
                    .detail(&s.detail)
                    .doc(s.doc.clone()),
            );
        }
    }
    for s in lookup::symbols_of_kind(an, SymbolKind::Segment) {
        if seen.insert(s.name.clone()) {
            items.push(
                Item::new(&s.name, ItemKind::Segment)
                    .detail("segment")
                    .doc(s.doc.clone()),
            );
        }
    }
    for b in nudge_stdlib::BUILTINS {
        items.push(
            Item::new(b.name(), ItemKind::Function)
                .detail(b.signature.to_string())
                .doc(Some(b.doc.to_string())),
        );
    }
    let in_flow = matches!(block, Block::Flow | Block::Nested);
    if in_flow {
        items.push(
            Item::new("trigger", ItemKind::Keyword).detail("the event that started the flow"),
        );
    }
    if in_flow && before.iter().any(|(t, _)| *t == Token::Keyword("where")) {
        items.push(Item::new("event", ItemKind::Keyword).detail("the event being matched"));
    }
    items.push(Item::new("profile", ItemKind::Keyword).detail("the customer's profile"));
    items.extend(keywords(&["true", "false", "none", "not"]));
    items
}

fn statement_items(block: Block, prev: Option<Token>) -> Vec<Item> {
    const STEPS: &[&str] = &[
        "wait",
        "wait until",
        "wait for",
        "send",
        "if",
        "split",
        "set profile.",
        "audience add",
        "audience remove",
        "let",
        "exit",
        "exit if",
    ];
    match block {
        Block::Top => keywords(DECLARATION_KEYWORDS),
        Block::Flow => {
            let mut words: Vec<&str> = vec![
                "trigger",
                "entry",
                "exit on",
                "exit if",
                "suppress if",
                "quiet hours",
                "cap",
                "goal",
                "holdout",
                "priority",
                "on exit",
            ];
            // `exit if` is both a standing rule and a step: offered once.
            words.extend(STEPS.iter().filter(|w| **w != "exit if"));
            if prev == Some(Token::RBrace) {
                words.push("else");
            }
            let mut items = keywords(&words);
            items.push(Item::snippet(
                "goal … within",
                "goal ${1:order_completed} within ${2:7d}",
                "a conversion goal",
            ));
            items.extend(step_snippets());
            items
        }
        Block::Nested => {
            let mut words: Vec<&str> = STEPS.to_vec();
            if prev == Some(Token::RBrace) {
                words.push("else");
            }
            let mut items = keywords(&words);
            items.extend(step_snippets());
            items
        }
        Block::Message => keywords(&[
            "channel",
            "purpose",
            "subject",
            "preheader",
            "body",
            "text",
            "title",
            "url",
            "payload",
        ]),
        Block::Policy => keywords(&[
            "timezone",
            "quiet hours",
            "cap",
            "suppress list",
            "currency",
        ]),
        Block::Test => keywords(&["given profile", "at", "run", "expect"]),
        Block::Fields | Block::Other => Vec::new(),
    }
}

/// Whole statements with placeholders for the steps that take several words.
fn step_snippets() -> Vec<Item> {
    vec![
        Item::snippet(
            "wait for … within",
            "wait for ${1:order_completed} within ${2:1d}",
            "wait for an event, with a time limit",
        ),
        Item::snippet(
            "let … = wait for … within",
            "let ${1:name} = wait for ${2:order_completed} within ${3:1d}",
            "wait for an event and keep it (none on timeout)",
        ),
        Item::snippet("if { … }", "if ${1:condition} {\n\t$0\n}", "a branch"),
        Item::snippet(
            "if { … } else { … }",
            "if ${1:condition} {\n\t$2\n} else {\n\t$0\n}",
            "a branch with an alternative",
        ),
        Item::snippet(
            "split { … }",
            "split {\n\t${1:50}% ${2:first} {\n\t\t$3\n\t}\n\t${4:50}% ${5:second} {\n\t\t$0\n\t}\n}",
            "an A/B split; the percentages add up to 100%",
        ),
        Item::snippet(
            "split optimise { … }",
            "split optimise floor ${1:10}% {\n\t${2:first} {\n\t\t$3\n\t}\n\t${4:second} {\n\t\t$0\n\t}\n}",
            "a split that moves customers to the arm that reaches the flow's goal most often",
        ),
    ]
}
