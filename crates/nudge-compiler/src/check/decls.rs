//! Collecting declarations into the global tables and resolving type annotations.

use nudge_diagnostics::{Diagnostic, FileId, FileSpan, codes};
use nudge_syntax::ast::{self, ContentValue, ExprKind, Item, TypeDeclKind};

use super::{
    Checker, Ctx, EventInfo, FlowInfo, LetInfo, MessageInfo, ParamInfo, SegmentInfo, State,
    TypeRef, Value,
};
use crate::analysis::{SymbolId, SymbolKind};
use crate::types::{BUILTIN_TYPE_NAMES, EnumDef, FieldDef, RecordDef, RecordKind, Ty, scalar};

impl<'a> Checker<'a> {
    fn duplicate(&mut self, what: &str, name: &ast::Ident, first: FileSpan) {
        let at = self.at(name.span);
        let d = Diagnostic::new(
            codes::E0206,
            at,
            format!("{what} `{}` is declared more than once", name.name),
        )
        .with_primary_label("declared again here")
        .with_label(first, format!("`{}` is first declared here", name.name))
        .with_help("rename or remove one of the declarations");
        self.report(d);
    }

    /// Pass 1: every declaration's name, so that order across files does not matter.
    pub(crate) fn collect(&mut self) {
        let files = self.files;
        let mut record_fields: Vec<(
            FileId,
            &'a [ast::FieldDecl],
            crate::types::RecordId,
            SymbolId,
        )> = Vec::new();
        // Project events that extend a standard event: added to its record
        // once the standard fields are in.
        let mut extensions: Vec<(FileId, &'a ast::EventDecl, SymbolId)> = Vec::new();
        for (file, parsed) in files {
            self.file = *file;
            for item in &parsed.file.items {
                match item {
                    Item::Event(d) if self.extends_standard(*file, d) => {
                        let at = self.at(d.name.span);
                        let detail = format!("event {} {:?} (extended)", d.name.name, d.wire.value);
                        let sym =
                            self.add_symbol(SymbolKind::Event, &d.name.name, at, detail, None);
                        extensions.push((*file, d, sym));
                    }
                    Item::Event(d) => {
                        let at = self.at(d.name.span);
                        let detail = format!("event {} {:?}", d.name.name, d.wire.value);
                        let sym =
                            self.add_symbol(SymbolKind::Event, &d.name.name, at, detail, None);
                        let mut rec =
                            RecordDef::new(d.name.name.clone(), RecordKind::Event, Some(at));
                        rec.wire = Some(d.wire.value.clone());
                        let rid = self.an.types.add_record(rec);
                        record_fields.push((*file, &d.fields, rid, sym));
                        if let Some(first) = self.type_or_event_decl(&d.name.name) {
                            self.duplicate("event", &d.name, first);
                            continue;
                        }
                        self.events.insert(
                            &d.name.name,
                            EventInfo {
                                record: rid,
                                symbol: sym,
                            },
                        );
                        if let Some(&other) = self.wire.get(d.wire.value.as_str()) {
                            let first = self.an.types.record(other).at;
                            if let Some(first) = first {
                                let d2 = Diagnostic::new(
                                    codes::E0206,
                                    self.at(d.wire.span),
                                    format!(
                                        "wire name {:?} is declared by two events",
                                        d.wire.value
                                    ),
                                )
                                .with_primary_label("declared again here")
                                .with_label(first, "first declared here")
                                .with_help("each wire name must belong to one event");
                                self.report(d2);
                            }
                        } else {
                            self.wire.insert(&d.wire.value, rid);
                        }
                    }
                    Item::Type(d) => {
                        let at = self.at(d.name.span);
                        let (kind, tref, fields) = match &d.kind {
                            TypeDeclKind::Record(fields) => {
                                let rid = self.an.types.add_record(RecordDef::new(
                                    d.name.name.clone(),
                                    RecordKind::Type,
                                    Some(at),
                                ));
                                (SymbolKind::Type, TypeRef::Record(rid), Some((fields, rid)))
                            }
                            TypeDeclKind::Enum(members) => {
                                let eid = self.an.types.add_enum(EnumDef {
                                    name: d.name.name.clone(),
                                    members: members.iter().map(|m| m.value.clone()).collect(),
                                });
                                (SymbolKind::Enum, TypeRef::Enum(eid), None)
                            }
                        };
                        let detail = match &d.kind {
                            TypeDeclKind::Record(_) => format!("type {}", d.name.name),
                            TypeDeclKind::Enum(m) => format!(
                                "type {} = {}",
                                d.name.name,
                                m.iter()
                                    .map(|s| format!("{:?}", s.value))
                                    .collect::<Vec<_>>()
                                    .join(" | ")
                            ),
                        };
                        let sym = self.add_symbol(kind, &d.name.name, at, detail, None);
                        if let Some((fields, rid)) = fields {
                            record_fields.push((*file, fields, rid, sym));
                        }
                        if let Some(first) = self.type_or_event_decl(&d.name.name) {
                            self.duplicate("type", &d.name, first);
                            continue;
                        }
                        if scalar(&d.name.name).is_some() || d.name.name == "list" {
                            let d2 = Diagnostic::new(
                                codes::E0206,
                                at,
                                format!("type `{}` redeclares a built-in type", d.name.name),
                            )
                            .with_primary_label("built-in type name")
                            .with_help("choose another name");
                            self.report(d2);
                            continue;
                        }
                        self.types.insert(&d.name.name, (tref, sym));
                    }
                    Item::Let(d) => {
                        let at = self.at(d.name.span);
                        let sym =
                            self.add_symbol(SymbolKind::Let, &d.name.name, at, String::new(), None);
                        let idx = self.lets.len();
                        self.lets.push(LetInfo {
                            decl: d,
                            file: *file,
                            symbol: sym,
                            state: State::Unvisited,
                        });
                        self.add_value(&d.name, Value::Let(idx));
                    }
                    Item::Segment(d) => {
                        let at = self.at(d.name.span);
                        let sym = self.add_symbol(
                            SymbolKind::Segment,
                            &d.name.name,
                            at,
                            format!("segment {}", d.name.name),
                            None,
                        );
                        let idx = self.segments.len();
                        self.segments.push(SegmentInfo {
                            decl: d,
                            file: *file,
                            symbol: sym,
                            state: State::Unvisited,
                        });
                        self.add_value(&d.name, Value::Segment(idx));
                    }
                    Item::Message(d) => {
                        let at = self.at(d.name.span);
                        let sym = self.add_symbol(
                            SymbolKind::Message,
                            &d.name.name,
                            at,
                            String::new(),
                            None,
                        );
                        let (channel, transactional) = prescan_content(d);
                        let idx = self.messages.len();
                        self.messages.push(MessageInfo {
                            decl: d,
                            file: *file,
                            symbol: sym,
                            params: Vec::new(),
                            channel,
                            transactional,
                        });
                        if let Some(&first) = self.message_names.get(d.name.name.as_str()) {
                            let first = self.symbol_at_decl(self.messages[first].symbol);
                            self.duplicate("message", &d.name, first);
                        } else {
                            self.message_names.insert(&d.name.name, idx);
                        }
                    }
                    Item::Flow(d) => {
                        let at = self.at(d.name.span);
                        let symbol = self.add_symbol(
                            SymbolKind::Flow,
                            &d.name.name,
                            at,
                            format!("flow {}", d.name.name),
                            None,
                        );
                        let idx = self.flows.len();
                        self.flows.push(FlowInfo {
                            decl: d,
                            file: *file,
                            symbol,
                        });
                        if let Some(&first) = self.flow_names.get(d.name.name.as_str()) {
                            let first_decl = self.flows[first].decl;
                            let first = FileSpan::new(self.flows[first].file, first_decl.name.span);
                            self.duplicate("flow", &d.name, first);
                        } else {
                            self.flow_names.insert(&d.name.name, idx);
                        }
                    }
                    Item::Profile(_) | Item::Policy(_) | Item::Test(_) | Item::Error(_) => {}
                }
            }
        }

        // Field types, now that every type name is known.
        for (file, fields, rid, parent) in record_fields {
            self.file = file;
            for f in fields {
                self.add_record_field(rid, f, Some(parent), None);
            }
        }

        // A project's own properties of standard events, after the standard ones.
        for (file, d, parent) in extensions {
            self.file = file;
            let Some(info) = self.events.get(d.name.name.as_str()) else {
                continue;
            };
            let rid = info.record;
            for f in &d.fields {
                if let Some(first) = self.an.types.record(rid).field(&f.name.name)
                    && let Some(first_at) = first.at
                {
                    let diag = Diagnostic::new(
                        codes::E0206,
                        self.at(f.name.span),
                        format!(
                            "property `{}` is already a standard property of `{}`",
                            f.name.name, d.name.name
                        ),
                    )
                    .with_primary_label("declared again here")
                    .with_label(first_at, "the standard library declares it here")
                    .with_help("use the standard property as it is, or choose another name");
                    self.report(diag);
                    continue;
                }
                self.add_record_field(rid, f, Some(parent), None);
            }
        }

        // Profile traits: the stdlib's first, so a project trait that repeats one is the duplicate.
        let project = self.project;
        let stdlib_first = files
            .iter()
            .filter(|(id, _)| project.is_stdlib(*id))
            .chain(files.iter().filter(|(id, _)| !project.is_stdlib(*id)));
        let profile = self.profile;
        for (file, parsed) in stdlib_first {
            self.file = *file;
            for item in &parsed.file.items {
                if let Item::Profile(p) = item {
                    for f in &p.fields {
                        let stdlib_note = if self.is_stdlib(*file) {
                            None
                        } else {
                            Some(())
                        };
                        self.add_record_field(profile, f, None, stdlib_note);
                    }
                }
            }
        }

        // Message parameters.
        for idx in 0..self.messages.len() {
            let decl = self.messages[idx].decl;
            self.file = self.messages[idx].file;
            let parent = self.messages[idx].symbol;
            let mut params: Vec<ParamInfo> = Vec::new();
            for p in &decl.params {
                let ty = self.resolve_type(&p.ty);
                let at = self.at(p.name.span);
                if let Some(first) = params.iter().find(|q| q.name == p.name.name) {
                    let first = self.symbol_at_decl(first.symbol);
                    self.duplicate("parameter", &p.name, first);
                    continue;
                }
                let sym = self.add_symbol(
                    SymbolKind::Param,
                    &p.name.name,
                    at,
                    String::new(),
                    Some(parent),
                );
                self.symbol_types.insert(sym, ty.clone());
                params.push(ParamInfo {
                    name: p.name.name.clone(),
                    ty,
                    has_default: p.default.is_some(),
                    symbol: sym,
                });
            }
            let sig = format!(
                "message {}({})",
                decl.name.name,
                params
                    .iter()
                    .map(|p| format!(
                        "{}: {}{}",
                        p.name,
                        self.an.types.display(&p.ty),
                        if p.has_default { " = …" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.an.symbols[parent.0 as usize].detail = sig;
            self.messages[idx].params = params;
        }
    }

    fn add_record_field(
        &mut self,
        rid: crate::types::RecordId,
        f: &ast::FieldDecl,
        parent: Option<SymbolId>,
        project_profile: Option<()>,
    ) {
        let ty = self.resolve_type(&f.ty);
        let at = self.at(f.name.span);
        if let Some(first) = self.an.types.record(rid).field(&f.name.name) {
            let first_at = first.at;
            let first_std = first_at.is_some_and(|a| self.is_stdlib(a.file));
            if let Some(first_at) = first_at {
                if project_profile.is_some() && first_std {
                    let d = Diagnostic::new(
                        codes::E0206,
                        at,
                        format!(
                            "profile trait `{}` is already a standard trait",
                            f.name.name
                        ),
                    )
                    .with_primary_label("redeclared here")
                    .with_label(first_at, "the standard library declares it here")
                    .with_help("use the standard trait as it is, or choose another name");
                    self.report(d);
                } else {
                    self.duplicate("field", &f.name, first_at);
                }
            }
            return;
        }
        let sym = self.add_symbol(SymbolKind::Field, &f.name.name, at, String::new(), parent);
        self.symbol_types.insert(sym, ty.clone());
        let _ = self.an.types.records[rid.0 as usize].add_field(FieldDef {
            name: f.name.name.clone(),
            ty,
            at: Some(at),
            symbol: Some(sym),
        });
    }

    /// Whether `d`, in a project file, extends a standard event: it has
    /// the flow name and the wire name of one, and adds properties to it.
    fn extends_standard(&self, file: FileId, d: &ast::EventDecl) -> bool {
        !self.is_stdlib(file)
            && self
                .files
                .iter()
                .filter(|(id, _)| self.is_stdlib(*id))
                .flat_map(|(_, parsed)| &parsed.file.items)
                .any(|item| {
                    matches!(item, Item::Event(e)
                        if e.name.name == d.name.name && e.wire.value == d.wire.value)
                })
    }

    fn type_or_event_decl(&self, name: &str) -> Option<FileSpan> {
        if let Some(e) = self.events.get(name) {
            return Some(self.symbol_at_decl(e.symbol));
        }
        self.types.get(name).map(|(_, s)| self.symbol_at_decl(*s))
    }

    fn add_value(&mut self, name: &'a ast::Ident, v: Value) {
        if let Some(&first) = self.values.get(name.name.as_str()) {
            let sym = match first {
                Value::Let(i) => self.lets[i].symbol,
                Value::Segment(i) => self.segments[i].symbol,
            };
            let first = self.symbol_at_decl(sym);
            self.duplicate("name", name, first);
        } else {
            self.values.insert(&name.name, v);
        }
    }

    /// The type an annotation denotes; E0205 when a name is unknown.
    pub(crate) fn resolve_type(&mut self, t: &ast::TypeExpr) -> Ty {
        let name = t.name.name.as_str();
        let base = if name == "list" {
            match t.args.as_slice() {
                [inner] => Ty::List(Box::new(self.resolve_type(inner))),
                _ => {
                    let d = Diagnostic::new(
                        codes::E0205,
                        self.at(t.span),
                        "`list` takes exactly one type argument",
                    )
                    .with_primary_label("write the element type here")
                    .with_help("for example `list<string>`");
                    self.report(d);
                    Ty::Error
                }
            }
        } else if let Some(s) = scalar(name) {
            s
        } else if let Some(&(tref, sym)) = self.types.get(name) {
            self.use_symbol(self.at(t.name.span), sym);
            match tref {
                TypeRef::Record(r) => Ty::Record(r),
                TypeRef::Enum(e) => Ty::Enum(e),
            }
        } else if let Some(e) = self.events.get(name) {
            let (record, symbol) = (e.record, e.symbol);
            self.use_symbol(self.at(t.name.span), symbol);
            Ty::Record(record)
        } else {
            let mut candidates: Vec<&str> = BUILTIN_TYPE_NAMES.to_vec();
            candidates.extend(self.types.keys().copied());
            candidates.extend(self.events.keys().copied());
            candidates.sort_unstable();
            let d = self
                .unknown(codes::E0205, "type", name, self.at(t.name.span), candidates)
                .with_primary_label("not a built-in or declared type");
            self.report(d);
            return Ty::Error;
        };
        if name != "list" && !t.args.is_empty() {
            let d = Diagnostic::new(
                codes::E0205,
                self.at(t.span),
                format!("type `{name}` takes no type arguments"),
            )
            .with_primary_label("unexpected type arguments")
            .with_help("only `list` takes a type argument");
            self.report(d);
        }
        if t.optional { base.optional() } else { base }
    }

    /// Types every `let` and segment and checks field defaults.
    pub(crate) fn check_declarations(&mut self) {
        for i in 0..self.lets.len() {
            self.let_type(i, None);
        }
        for i in 0..self.segments.len() {
            self.segment_type(i, None);
        }
        let files = self.files;
        for (file, parsed) in files {
            for item in &parsed.file.items {
                let (fields, record): (&[ast::FieldDecl], _) = match item {
                    Item::Event(d) => (
                        &d.fields,
                        self.events.get(d.name.name.as_str()).map(|e| e.record),
                    ),
                    Item::Type(ast::TypeDecl {
                        kind: TypeDeclKind::Record(fields),
                        name,
                        ..
                    }) => (
                        fields,
                        match self.types.get(name.name.as_str()) {
                            Some((TypeRef::Record(r), _)) => Some(*r),
                            _ => None,
                        },
                    ),
                    Item::Profile(p) => (&p.fields, Some(self.profile)),
                    _ => continue,
                };
                let Some(record) = record else { continue };
                for f in fields {
                    let Some(default) = &f.default else { continue };
                    let ty = self
                        .an
                        .types
                        .record(record)
                        .field(&f.name.name)
                        .map(|fd| fd.ty.clone())
                        .unwrap_or(Ty::Error);
                    let saved = self.save(*file, Ctx::top("a default value"));
                    self.expect(default, &ty);
                    self.restore(saved);
                }
            }
        }
    }

    /// The type of a `let`, computing it on first use; E0305 on a cycle.
    pub(crate) fn let_type(&mut self, idx: usize, used_at: Option<FileSpan>) -> Ty {
        match &self.lets[idx].state {
            State::Done(t) => return t.clone(),
            State::InProgress => {
                self.cycle(self.lets[idx].symbol, used_at);
                return Ty::Error;
            }
            State::Unvisited => {}
        }
        self.lets[idx].state = State::InProgress;
        let decl = self.lets[idx].decl;
        let saved = self.save(self.lets[idx].file, Ctx::top("a top-level `let`"));
        let ty = match &decl.ty {
            Some(t) => {
                let t = self.resolve_type(t);
                self.expect(&decl.value, &t);
                t
            }
            None => self.infer(&decl.value),
        };
        self.restore(saved);
        let sym = self.lets[idx].symbol;
        self.symbol_types.insert(sym, ty.clone());
        self.lets[idx].state = State::Done(ty.clone());
        ty
    }

    /// Checks a segment's predicate on first use; E0305 on a cycle.
    pub(crate) fn segment_type(&mut self, idx: usize, used_at: Option<FileSpan>) -> Ty {
        match &self.segments[idx].state {
            State::Done(t) => return t.clone(),
            State::InProgress => {
                self.cycle(self.segments[idx].symbol, used_at);
                return Ty::Error;
            }
            State::Unvisited => {}
        }
        self.segments[idx].state = State::InProgress;
        let decl = self.segments[idx].decl;
        let saved = self.save(self.segments[idx].file, Ctx::top("a segment"));
        self.expect(&decl.predicate, &Ty::Bool);
        self.restore(saved);
        self.segments[idx].state = State::Done(Ty::Bool);
        Ty::Bool
    }

    fn cycle(&mut self, sym: SymbolId, used_at: Option<FileSpan>) {
        let Some(at) = used_at else { return };
        let name = self.an.symbols[sym.0 as usize].name.clone();
        let decl = self.symbol_at_decl(sym);
        let d = Diagnostic::new(
            codes::E0305,
            at,
            format!("`{name}` is defined in terms of itself"),
        )
        .with_primary_label(format!("this use of `{name}` needs `{name}`'s own value"))
        .with_label(decl, format!("`{name}` is declared here"))
        .with_help("break the cycle by writing one of the values out");
        self.report(d);
    }
}

/// The channel and purpose of a message, read before any checking so that
/// flows can be linted regardless of declaration order.
fn prescan_content(d: &ast::MessageDecl) -> (Option<String>, bool) {
    let mut channel = None;
    let mut transactional = false;
    for c in &d.content {
        if let ContentValue::Expr(e) = &c.value
            && let ExprKind::Name(n) = &e.kind
        {
            match c.key.name.as_str() {
                "channel" if channel.is_none() => channel = Some(n.clone()),
                "purpose" => transactional = n == "transactional",
                _ => {}
            }
        }
    }
    (channel, transactional)
}
