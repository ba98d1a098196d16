//! The checker: collects declarations, resolves names, infers and checks
//! types, validates flows, messages and tests, and runs the domain lints.

mod decls;
mod expr;
mod flows;
mod items;
mod lints;
mod templates;
mod typed;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use nudge_diagnostics::{Code, Diagnostic, Edit, FileId, FileSpan, Span, codes};
use nudge_syntax::{Parsed, ast};

use crate::analysis::{Analysis, Symbol, SymbolId, SymbolKind};
use crate::builtins::Builtins;
use crate::project::Project;
use crate::suggest::did_you_mean;
use crate::types::{EnumId, RecordId, Ty};

/// Checks a whole project: every user file and the stdlib.
pub fn check(project: &Project) -> Analysis {
    check_with_builtins(project, Builtins::stdlib())
}

/// Checks a project against a given builtin table (the stdlib's, or one made for a test).
pub fn check_with_builtins(project: &Project, builtins: Builtins) -> Analysis {
    check_inner(project, builtins, &mut |_, _| None)
}

/// Checks a whole project, taking the syntax tree of a file from `reuse`
/// when it has one for that file id and text (a tree kept from an earlier
/// analysis of the same text), and parsing the file otherwise. Each file
/// is parsed at most once; the trees are kept in the analysis
/// ([`Analysis::tree`]).
pub fn check_reusing(
    project: &Project,
    mut reuse: impl FnMut(FileId, &str) -> Option<Arc<Parsed>>,
) -> Analysis {
    check_inner(project, Builtins::stdlib(), &mut reuse)
}

fn check_inner(
    project: &Project,
    builtins: Builtins,
    reuse: &mut dyn FnMut(FileId, &str) -> Option<Arc<Parsed>>,
) -> Analysis {
    let files: Vec<(FileId, Arc<Parsed>)> = project
        .user_files()
        .chain(project.stdlib_files())
        .map(|id| {
            let text = &project.sources.get(id).text;
            let tree = reuse(id, text).unwrap_or_else(|| Arc::new(nudge_syntax::parse(id, text)));
            (id, tree)
        })
        .collect();
    let mut cx = Checker::new(project, &files, builtins);
    for (_, parsed) in &files {
        cx.diags.extend(parsed.diagnostics.iter().cloned());
    }
    cx.collect();
    cx.check_declarations();
    cx.check_messages();
    cx.check_flows();
    cx.check_policies();
    cx.check_tests();
    cx.unused_lints();
    let templates = std::mem::take(&mut cx.template_vars);
    let mut an = cx.finish();
    // The typed program is what lowering reads; a project with errors has none.
    if !an.has_errors() {
        match typed::build(project, &files, &an, &templates) {
            Ok(program) => {
                let time = lints::time_lints(&program);
                if !time.is_empty() {
                    an.diagnostics.extend(time);
                    an.diagnostics.sort_by_key(|d| {
                        (d.primary.file, d.primary.span.start, d.primary.span.end)
                    });
                }
                an.program = Some(program);
            }
            Err(found) => {
                an.diagnostics.extend(found);
                an.diagnostics
                    .sort_by_key(|d| (d.primary.file, d.primary.span.start, d.primary.span.end));
            }
        }
    }
    an.trees = files;
    an
}

/// A named type: a record (declared type or event) or an enum.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TypeRef {
    Record(RecordId),
    Enum(EnumId),
}

/// Progress of typing a `let` or segment, to find cycles.
#[derive(Clone, Debug)]
pub(crate) enum State {
    Unvisited,
    InProgress,
    Done(Ty),
}

pub(crate) struct LetInfo<'a> {
    decl: &'a ast::LetDecl,
    file: FileId,
    symbol: SymbolId,
    state: State,
}

pub(crate) struct SegmentInfo<'a> {
    decl: &'a ast::SegmentDecl,
    file: FileId,
    symbol: SymbolId,
    state: State,
}

pub(crate) struct ParamInfo {
    name: String,
    ty: Ty,
    has_default: bool,
    symbol: SymbolId,
}

pub(crate) struct MessageInfo<'a> {
    decl: &'a ast::MessageDecl,
    file: FileId,
    symbol: SymbolId,
    params: Vec<ParamInfo>,
    /// The channel as written, when it is a name.
    channel: Option<String>,
    transactional: bool,
}

pub(crate) struct FlowInfo<'a> {
    decl: &'a ast::FlowDecl,
    file: FileId,
    symbol: SymbolId,
}

pub(crate) struct EventInfo {
    record: RecordId,
    symbol: SymbolId,
}

/// What `trigger` means where an expression is checked.
#[derive(Clone, Debug)]
pub(crate) enum TriggerCtx {
    /// Outside flows.
    Unavailable(&'static str),
    /// In a flow that is not started by an event.
    NotEvent(&'static str),
    /// In a flow started by this event.
    Event(Ty),
}

/// Where an expression is being checked.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    trigger: TriggerCtx,
    /// The matching event's record inside a `where`.
    event: Option<Ty>,
    /// Inside the predicate of an `exit on` (for W0004).
    exit_on: bool,
    /// In a test: literals may stand for money and times.
    lenient: bool,
    /// In a flow or a message, about one customer at one moment:
    /// `recommend` may be called.
    customer: bool,
    /// In an email message's content: `unsubscribe_url` and
    /// `preferences_url` are in scope.
    links: bool,
}

impl Ctx {
    fn top(what: &'static str) -> Self {
        Ctx {
            trigger: TriggerCtx::Unavailable(what),
            event: None,
            exit_on: false,
            lenient: false,
            customer: false,
            links: false,
        }
    }
}

pub(crate) struct Local {
    name: String,
    ty: Ty,
    symbol: SymbolId,
}

struct Saved {
    file: FileId,
    locals: Vec<Local>,
    narrowed: Vec<String>,
    ctx: Ctx,
}

pub(crate) struct Checker<'a> {
    project: &'a Project,
    files: &'a [(FileId, Arc<Parsed>)],
    an: Analysis,
    diags: Vec<Diagnostic>,
    builtins: Builtins,
    symbol_types: HashMap<SymbolId, Ty>,

    types: HashMap<&'a str, (TypeRef, SymbolId)>,
    events: HashMap<&'a str, EventInfo>,
    wire: HashMap<&'a str, RecordId>,
    profile: RecordId,
    lets: Vec<LetInfo<'a>>,
    segments: Vec<SegmentInfo<'a>>,
    messages: Vec<MessageInfo<'a>>,
    flows: Vec<FlowInfo<'a>>,
    /// Lets and segments share the value namespace.
    values: HashMap<&'a str, Value>,
    message_names: HashMap<&'a str, usize>,
    flow_names: HashMap<&'a str, usize>,
    /// Messages some flow sends.
    sent: HashSet<String>,
    /// Audiences some flow adds customers to.
    audiences_added: HashSet<String>,
    /// Channels covered by the policy's quiet hours (`None`: all channels).
    policy_quiet: Vec<Option<String>>,

    file: FileId,
    locals: Vec<Local>,
    narrowed: Vec<String>,
    ctx: Ctx,
    /// Sends of the flow being checked.
    flow_sends: Vec<&'a ast::Ident>,
    /// The variables of each template read, for the typed program.
    template_vars: typed::TemplateVars,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Value {
    Let(usize),
    Segment(usize),
}

impl<'a> Checker<'a> {
    fn new(project: &'a Project, files: &'a [(FileId, Arc<Parsed>)], builtins: Builtins) -> Self {
        let mut an = Analysis::default();
        let profile = an.types.add_record(crate::types::RecordDef::new(
            "profile",
            crate::types::RecordKind::Profile,
            None,
        ));
        Checker {
            project,
            files,
            an,
            diags: Vec::new(),
            builtins,
            symbol_types: HashMap::new(),
            types: HashMap::new(),
            events: HashMap::new(),
            wire: HashMap::new(),
            profile,
            lets: Vec::new(),
            segments: Vec::new(),
            messages: Vec::new(),
            flows: Vec::new(),
            values: HashMap::new(),
            message_names: HashMap::new(),
            flow_names: HashMap::new(),
            sent: HashSet::new(),
            audiences_added: HashSet::new(),
            policy_quiet: Vec::new(),
            file: FileId(0),
            locals: Vec::new(),
            narrowed: Vec::new(),
            ctx: Ctx::top("here"),
            flow_sends: Vec::new(),
            template_vars: HashMap::new(),
        }
    }

    fn finish(mut self) -> Analysis {
        for (id, ty) in std::mem::take(&mut self.symbol_types) {
            let display = self.an.types.display(&ty);
            if let Some(s) = self.an.symbols.get_mut(id.0 as usize)
                && s.detail.is_empty()
            {
                s.detail = display;
            }
        }
        let mut diags = std::mem::take(&mut self.diags);
        diags.sort_by_key(|d| (d.primary.file, d.primary.span.start, d.primary.span.end));
        diags.dedup();
        self.an.diagnostics = diags;
        self.an
    }

    // ---- small helpers ----

    fn at(&self, span: Span) -> FileSpan {
        FileSpan::new(self.file, span)
    }

    fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn text(&self, span: Span) -> &'a str {
        let text: &'a str = &self.project.sources.get(self.file).text;
        text.get(span.range()).unwrap_or("")
    }

    /// Source text of an expression for messages, or a generic phrase when long.
    fn snippet(&self, span: Span) -> String {
        let t = self.text(span);
        if t.is_empty() || t.len() > 40 || t.contains('\n') {
            "this value".to_string()
        } else {
            format!("`{t}`")
        }
    }

    fn is_stdlib(&self, file: FileId) -> bool {
        self.project.is_stdlib(file)
    }

    fn add_symbol(
        &mut self,
        kind: SymbolKind,
        name: &str,
        at: FileSpan,
        detail: String,
        parent: Option<SymbolId>,
    ) -> SymbolId {
        let doc = match kind {
            SymbolKind::Local => None,
            _ => self.doc_comment(at),
        };
        self.an.symbols.push(Symbol {
            kind,
            name: name.to_string(),
            at,
            detail,
            doc,
            parent,
        });
        SymbolId(self.an.symbols.len() as u32 - 1)
    }

    fn use_symbol(&mut self, at: FileSpan, id: SymbolId) {
        self.an.uses.push((at, id));
        self.an.resolved.insert(at, id);
        self.an.refs.entry(id).or_default().push(at);
    }

    fn symbol_at_decl(&self, id: SymbolId) -> FileSpan {
        self.an.symbols[id.0 as usize].at
    }

    /// The `//` lines directly above the line where `at` starts.
    fn doc_comment(&self, at: FileSpan) -> Option<String> {
        let (_, parsed) = self.files.iter().find(|(id, _)| *id == at.file)?;
        if parsed.comments.is_empty() {
            return None;
        }
        let src = self.project.sources.get(at.file);
        let mut line = src.line_index(at.span.start);
        let mut lines = Vec::new();
        // Comments are sorted; walk backwards from the declaration's line.
        let idx = parsed
            .comments
            .partition_point(|c| c.span.start < src.line_start(line));
        let mut i = idx;
        while i > 0 && line > 0 {
            let c = &parsed.comments[i - 1];
            let cline = src.line_index(c.span.start);
            if cline + 1 != line {
                break;
            }
            let start = src.line_start(cline) as usize;
            let before = src.text.get(start..c.span.start as usize).unwrap_or("x");
            if !before.trim().is_empty() {
                break;
            }
            lines.push(c.text.trim_start_matches('/').trim().to_string());
            line = cline;
            i -= 1;
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    /// An "unknown X" diagnostic with a did-you-mean help and fix when a close name exists.
    fn unknown<'c>(
        &self,
        code: Code,
        what: &str,
        name: &str,
        at: FileSpan,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Diagnostic {
        let d = Diagnostic::new(code, at, format!("unknown {what} `{name}`"))
            .with_primary_label(format!("not a known {what}"));
        match did_you_mean(name, candidates) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_fix(
                format!("replace with `{s}`"),
                vec![Edit {
                    at,
                    replacement: s.to_string(),
                }],
            ),
            None => d,
        }
    }

    /// Resolves `profile.NAME` where a field is named on its own (date
    /// triggers, `set profile`, test expectations): records the use and
    /// returns the field's type, or reports the unknown field.
    fn profile_field(&mut self, field: &ast::Ident) -> Option<Ty> {
        let rec = self.an.types.record(self.profile);
        if let Some(f) = rec.field(&field.name) {
            let (ty, sym) = (f.ty.clone(), f.symbol);
            if let Some(sym) = sym {
                self.use_symbol(self.at(field.span), sym);
            }
            return Some(ty);
        }
        let names: Vec<&str> = rec.fields.iter().map(|f| f.name.as_str()).collect();
        let mut d = self.unknown(
            codes::E0204,
            "profile field",
            &field.name,
            self.at(field.span),
            names,
        );
        if d.help.is_none() {
            d = d.with_help(format!(
                "declare it in a `profile {{ }}` block, such as `{}: string?`",
                field.name
            ));
        }
        self.report(d);
        None
    }

    fn save(&mut self, file: FileId, ctx: Ctx) -> Saved {
        let saved = Saved {
            file: self.file,
            locals: std::mem::take(&mut self.locals),
            narrowed: std::mem::take(&mut self.narrowed),
            ctx: std::mem::replace(&mut self.ctx, ctx),
        };
        self.file = file;
        saved
    }

    fn restore(&mut self, saved: Saved) {
        self.file = saved.file;
        self.locals = saved.locals;
        self.narrowed = saved.narrowed;
        self.ctx = saved.ctx;
    }

    fn push_local(&mut self, name: &ast::Ident, ty: Ty, kind: SymbolKind) -> SymbolId {
        let at = self.at(name.span);
        let id = self.add_symbol(kind, &name.name, at, String::new(), None);
        self.symbol_types.insert(id, ty.clone());
        self.locals.push(Local {
            name: name.name.clone(),
            ty,
            symbol: id,
        });
        id
    }

    fn event_names(&self) -> Vec<&'a str> {
        let mut v: Vec<&'a str> = self.events.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Resolves an event name, reporting E0202 when unknown.
    fn resolve_event(&mut self, name: &ast::Ident) -> Option<RecordId> {
        let at = self.at(name.span);
        if let Some(info) = self.events.get(name.name.as_str()) {
            let (record, symbol) = (info.record, info.symbol);
            self.use_symbol(at, symbol);
            return Some(record);
        }
        let names = self.event_names();
        let d = self.unknown(codes::E0202, "event", &name.name, at, names);
        self.report(d);
        None
    }
}
