//! The protocol shell: reads LSP messages, calls the feature functions with
//! byte offsets, and converts their answers to lsp-types. Positions are
//! converted between UTF-16 (the protocol's default) and bytes only here.
//!
//! Scheduling: one thread handles every message in order. After a change the
//! project is marked dirty and analysed as soon as no further message is
//! waiting, so a burst of keystrokes costs one analysis, and a request that
//! arrives while a project is dirty analyses it first, so answers always
//! match the text the editor sent.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::PathBuf;

use crossbeam_channel::{Sender, TryRecvError};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use nudge_diagnostics::{FileId, Severity, SourceFile, Span};
use serde_json::Value;

use crate::world::{ProjectId, Snapshot, World};
use crate::{actions, completion, hover, inlay, navigate, outline, semantic, uri};

/// The capabilities the server announces.
pub fn capabilities() -> lsp::ServerCapabilities {
    use lsp::*;
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..Default::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".to_string()]),
            ..Default::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_symbol_provider: Some(OneOf::Left(true)),
        workspace_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
            ..Default::default()
        })),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: SemanticTokensLegend {
                    token_types: semantic::TOKEN_TYPES
                        .iter()
                        .map(|t| SemanticTokenType::new(t))
                        .collect(),
                    token_modifiers: semantic::TOKEN_MODIFIERS
                        .iter()
                        .map(|t| SemanticTokenModifier::new(t))
                        .collect(),
                },
                full: Some(SemanticTokensFullOptions::Bool(true)),
                range: None,
                work_done_progress_options: Default::default(),
            },
        )),
        inlay_hint_provider: Some(OneOf::Left(true)),
        ..Default::default()
    }
}

/// Runs the server over stdin and stdout until the client says `exit`.
pub fn run_stdio() -> Result<(), Box<dyn Error + Sync + Send>> {
    let (connection, io) = Connection::stdio();
    run(connection, crate::world::default_stdlib_dir())?;
    io.join()?;
    Ok(())
}

/// Runs the server on a connection: the handshake, then the message loop.
pub fn run(
    connection: Connection,
    stdlib_dir: PathBuf,
) -> Result<(), Box<dyn Error + Sync + Send>> {
    let (id, params) = connection.initialize_start()?;
    // A client that sends odd initialize params still gets a working server.
    let init: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let result = serde_json::json!({
        "capabilities": capabilities(),
        "serverInfo": { "name": "nudge", "version": env!("CARGO_PKG_VERSION") },
    });
    connection.initialize_finish(id, result)?;

    let mut server = Server::new(connection.sender.clone(), stdlib_dir);
    if let Err(e) = server.world.write_stdlib() {
        eprintln!(
            "nudge lsp: cannot write the stdlib to {}: {e}",
            server.world.stdlib_dir().display()
        );
    }
    for folder in workspace_folders(&init) {
        server.world.add_folder(folder);
    }
    loop {
        let msg = if server.world.is_dirty() {
            match connection.receiver.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Empty) => {
                    server.refresh();
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match connection.receiver.recv() {
                Ok(msg) => msg,
                Err(_) => break,
            }
        };
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req)? {
                    return Ok(());
                }
                server.handle_request(req);
            }
            Message::Notification(n) => {
                if n.method == "exit" {
                    break;
                }
                server.handle_notification(n);
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

#[allow(deprecated)]
fn workspace_folders(init: &lsp::InitializeParams) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = init
        .workspace_folders
        .iter()
        .flatten()
        .filter_map(|f| uri::to_path(&f.uri))
        .collect();
    if out.is_empty() {
        out.extend(init.root_uri.as_ref().and_then(uri::to_path));
    }
    out
}

/// The server's state and its message handlers.
pub struct Server {
    /// The projects and open documents.
    pub world: World,
    sender: Sender<Message>,
    /// What was last published per file, to send only what changed.
    published: HashMap<PathBuf, (ProjectId, Vec<lsp::Diagnostic>)>,
    /// Files whose diagnostics are published after the next analysis even if unchanged.
    force: HashSet<PathBuf>,
}

impl Server {
    /// A server that sends its messages on `sender`.
    pub fn new(sender: Sender<Message>, stdlib_dir: PathBuf) -> Server {
        Server {
            world: World::new(stdlib_dir),
            sender,
            published: HashMap::new(),
            force: HashSet::new(),
        }
    }

    fn send(&self, msg: impl Into<Message>) {
        // The client has gone when this fails; the loop ends on its own.
        let _ = self.sender.send(msg.into());
    }

    /// Analyses every changed project and publishes the diagnostics that changed.
    pub fn refresh(&mut self) {
        let analysed = self.world.analyse_dirty();
        for id in analysed {
            self.publish(id);
        }
        self.force.clear();
    }

    fn publish(&mut self, id: ProjectId) {
        let Some(snap) = self.world.snapshot(id) else {
            return;
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (path, diags) in snap.diagnostics_by_path() {
            let Some(file) = snap.file_id(&path) else {
                continue;
            };
            let Some(src) = snap.source(file) else {
                continue;
            };
            let lsp_diags: Vec<lsp::Diagnostic> = diags
                .iter()
                .map(|d| to_lsp_diagnostic(snap, src, d))
                .collect();
            seen.insert(path.clone());
            let unchanged = self
                .published
                .get(&path)
                .is_some_and(|(_, old)| *old == lsp_diags);
            if unchanged && !self.force.contains(&path) {
                continue;
            }
            out.push((path, lsp_diags));
        }
        // Files that left the project (deleted, moved) are cleared.
        let gone: Vec<PathBuf> = self
            .published
            .iter()
            .filter(|(p, (owner, _))| *owner == id && !seen.contains(*p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            self.published.remove(&p);
            out.push((p, Vec::new()));
        }
        for (path, diags) in out {
            let version = self.world.document(&path).map(|d| d.version);
            self.published.insert(path.clone(), (id, diags.clone()));
            let params = lsp::PublishDiagnosticsParams {
                uri: uri::from_path(&path),
                diagnostics: diags,
                version,
            };
            self.send(Notification::new(
                "textDocument/publishDiagnostics".to_string(),
                params,
            ));
        }
    }

    /// Handles one notification.
    pub fn handle_notification(&mut self, n: Notification) {
        match n.method.as_str() {
            "textDocument/didOpen" => {
                let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params)
                else {
                    return;
                };
                if let Some(path) = uri::to_path(&p.text_document.uri) {
                    self.force.insert(path.clone());
                    self.world
                        .open(path, p.text_document.text, p.text_document.version);
                }
            }
            "textDocument/didChange" => {
                let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params)
                else {
                    return;
                };
                let Some(path) = uri::to_path(&p.text_document.uri) else {
                    return;
                };
                let Some(doc) = self.world.document(&path) else {
                    return;
                };
                let mut text = doc.text.clone();
                for change in p.content_changes {
                    apply_change(&mut text, change);
                }
                self.force.insert(path.clone());
                self.world.change(&path, text, p.text_document.version);
            }
            "textDocument/didClose" => {
                let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params)
                else {
                    return;
                };
                if let Some(path) = uri::to_path(&p.text_document.uri) {
                    self.world.close(&path);
                }
            }
            "workspace/didChangeWatchedFiles" => {
                let Ok(p) = serde_json::from_value::<lsp::DidChangeWatchedFilesParams>(n.params)
                else {
                    return;
                };
                for change in p.changes {
                    if let Some(path) = uri::to_path(&change.uri)
                        && self.world.document(&path).is_none()
                    {
                        self.world.reload(&path);
                    }
                }
            }
            "workspace/didChangeWorkspaceFolders" => {
                let Ok(p) =
                    serde_json::from_value::<lsp::DidChangeWorkspaceFoldersParams>(n.params)
                else {
                    return;
                };
                for f in p.event.added {
                    if let Some(path) = uri::to_path(&f.uri) {
                        self.world.add_folder(path);
                    }
                }
            }
            _ => {}
        }
    }

    /// Handles one request and sends its response.
    pub fn handle_request(&mut self, req: Request) {
        // Answers must match the text the client sent.
        if self.world.is_dirty() {
            self.refresh();
        }
        let id = req.id.clone();
        let response = match self.dispatch(req) {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code as i32, message),
        };
        self.send(response);
    }

    fn dispatch(&mut self, req: Request) -> Result<Value, (ErrorCode, String)> {
        fn params<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (ErrorCode, String)> {
            serde_json::from_value(v).map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
        }
        fn json(v: impl serde::Serialize) -> Result<Value, (ErrorCode, String)> {
            serde_json::to_value(v).map_err(|e| (ErrorCode::InternalError, e.to_string()))
        }
        match req.method.as_str() {
            "textDocument/hover" => {
                let p: lsp::HoverParams = params(req.params)?;
                let pos = &p.text_document_position_params;
                json(self.at(
                    &pos.text_document.uri,
                    pos.position,
                    |snap, file, src, off| {
                        hover::hover(snap, file, off).map(|h| lsp::Hover {
                            contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                                kind: lsp::MarkupKind::Markdown,
                                value: h.markdown,
                            }),
                            range: Some(to_range(src, h.range)),
                        })
                    },
                ))
            }
            "textDocument/completion" => {
                let p: lsp::CompletionParams = params(req.params)?;
                let pos = &p.text_document_position;
                let items = self
                    .at(
                        &pos.text_document.uri,
                        pos.position,
                        |snap, file, _, off| Some(completion::complete(snap, file, off)),
                    )
                    .unwrap_or_default();
                json(lsp::CompletionResponse::Array(
                    items.into_iter().map(to_completion_item).collect(),
                ))
            }
            "textDocument/definition" => {
                let p: lsp::GotoDefinitionParams = params(req.params)?;
                let pos = &p.text_document_position_params;
                let loc = self.at(
                    &pos.text_document.uri,
                    pos.position,
                    |snap, file, _, off| navigate::definition(snap, file, off),
                );
                json(
                    loc.and_then(|l| self.location(&l))
                        .map(lsp::GotoDefinitionResponse::Scalar),
                )
            }
            "textDocument/references" => {
                let p: lsp::ReferenceParams = params(req.params)?;
                let pos = &p.text_document_position;
                let locs = self
                    .at(
                        &pos.text_document.uri,
                        pos.position,
                        |snap, file, _, off| {
                            Some(navigate::references(
                                snap,
                                file,
                                off,
                                p.context.include_declaration,
                            ))
                        },
                    )
                    .unwrap_or_default();
                let out: Vec<lsp::Location> =
                    locs.iter().filter_map(|l| self.location(l)).collect();
                json(out)
            }
            "textDocument/prepareRename" => {
                let p: lsp::TextDocumentPositionParams = params(req.params)?;
                let result = self.at(&p.text_document.uri, p.position, |snap, file, src, off| {
                    Some(navigate::prepare_rename(snap, file, off).map(|s| to_range(src, s)))
                });
                match result {
                    Some(Ok(range)) => json(lsp::PrepareRenameResponse::Range(range)),
                    Some(Err(e)) => Err((ErrorCode::RequestFailed, e.to_string())),
                    None => json(Value::Null),
                }
            }
            "textDocument/rename" => {
                let p: lsp::RenameParams = params(req.params)?;
                let pos = &p.text_document_position;
                let result = self.at(
                    &pos.text_document.uri,
                    pos.position,
                    |snap, file, _, off| Some(navigate::rename(snap, file, off, &p.new_name)),
                );
                match result {
                    Some(Ok(edits)) => json(self.workspace_edit(edits)),
                    Some(Err(e)) => Err((ErrorCode::RequestFailed, e.to_string())),
                    None => Err((ErrorCode::RequestFailed, "no such document".to_string())),
                }
            }
            "textDocument/documentSymbol" => {
                let p: lsp::DocumentSymbolParams = params(req.params)?;
                let syms = self.file(&p.text_document.uri, |snap, file, src| {
                    let items = outline::document_symbols(snap, file);
                    Some(
                        items
                            .into_iter()
                            .map(|i| to_document_symbol(src, i))
                            .collect::<Vec<_>>(),
                    )
                });
                json(syms.map(lsp::DocumentSymbolResponse::Nested))
            }
            "workspace/symbol" => {
                let p: lsp::WorkspaceSymbolParams = params(req.params)?;
                let found = outline::workspace_symbols(self.world.snapshots(), &p.query, 200);
                let out: Vec<lsp::WorkspaceSymbol> = found
                    .into_iter()
                    .filter_map(|s| {
                        let loc = self.location(&navigate::Location {
                            path: s.path,
                            span: s.span,
                        })?;
                        Some(lsp::WorkspaceSymbol {
                            name: s.name,
                            kind: symbol_kind_for(s.kind),
                            tags: None,
                            container_name: s.container,
                            location: lsp::OneOf::Left(loc),
                            data: None,
                        })
                    })
                    .collect();
                json(lsp::WorkspaceSymbolResponse::Nested(out))
            }
            "textDocument/formatting" => {
                let p: lsp::DocumentFormattingParams = params(req.params)?;
                let edits = self.file(&p.text_document.uri, |_, _, src| {
                    let formatted = actions::format(&src.text)?;
                    Some(vec![lsp::TextEdit {
                        range: to_range(src, Span::new(0, src.text.len())),
                        new_text: formatted,
                    }])
                });
                json(edits.unwrap_or_default())
            }
            "textDocument/semanticTokens/full" => {
                let p: lsp::SemanticTokensParams = params(req.params)?;
                let tokens = self.file(&p.text_document.uri, |snap, file, src| {
                    Some(encode_tokens(src, &semantic::semantic_tokens(snap, file)))
                });
                json(tokens.map(|data| {
                    lsp::SemanticTokensResult::Tokens(lsp::SemanticTokens {
                        result_id: None,
                        data,
                    })
                }))
            }
            "textDocument/codeAction" => {
                let p: lsp::CodeActionParams = params(req.params)?;
                let fixes = self
                    .file(&p.text_document.uri, |snap, file, src| {
                        let range = Span {
                            start: to_offset(src, p.range.start),
                            end: to_offset(src, p.range.end),
                        };
                        let fixes = actions::quick_fixes(snap, file, range);
                        Some(
                            fixes
                                .into_iter()
                                .map(|f| {
                                    (
                                        f.title,
                                        to_lsp_diagnostic(snap, src, &f.diagnostic),
                                        f.edits,
                                        f.preferred,
                                    )
                                })
                                .collect::<Vec<_>>(),
                        )
                    })
                    .unwrap_or_default();
                let out: Vec<lsp::CodeActionOrCommand> = fixes
                    .into_iter()
                    .map(|(title, diag, edits, preferred)| {
                        lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
                            title,
                            kind: Some(lsp::CodeActionKind::QUICKFIX),
                            diagnostics: Some(vec![diag]),
                            edit: Some(self.workspace_edit(edits)),
                            is_preferred: Some(preferred),
                            ..Default::default()
                        })
                    })
                    .collect();
                json(out)
            }
            "textDocument/inlayHint" => {
                let p: lsp::InlayHintParams = params(req.params)?;
                let hints = self.file(&p.text_document.uri, |snap, file, src| {
                    let range = Span {
                        start: to_offset(src, p.range.start),
                        end: to_offset(src, p.range.end),
                    };
                    let hints = inlay::inlay_hints(snap, file, range);
                    Some(
                        hints
                            .into_iter()
                            .map(|h| lsp::InlayHint {
                                position: to_position(src, h.offset),
                                label: lsp::InlayHintLabel::String(h.label),
                                kind: None,
                                text_edits: None,
                                tooltip: Some(lsp::InlayHintTooltip::String(
                                    "time since the trigger, counting fixed waits".to_string(),
                                )),
                                padding_left: Some(true),
                                padding_right: None,
                                data: None,
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                json(hints.unwrap_or_default())
            }
            _ => Err((
                ErrorCode::MethodNotFound,
                format!("unsupported method {}", req.method),
            )),
        }
    }

    /// Runs `f` on the analysis of a document at a position, if the document is known.
    fn at<T>(
        &mut self,
        uri: &lsp::Uri,
        pos: lsp::Position,
        f: impl FnOnce(&Snapshot, FileId, &SourceFile, u32) -> Option<T>,
    ) -> Option<T> {
        self.file(uri, |snap, file, src| {
            f(snap, file, src, to_offset(src, pos))
        })
    }

    /// Runs `f` on the analysis of a document; an unknown document is added to its project first.
    fn file<T>(
        &mut self,
        uri: &lsp::Uri,
        f: impl FnOnce(&Snapshot, FileId, &SourceFile) -> Option<T>,
    ) -> Option<T> {
        let path = uri::to_path(uri)?;
        if self.world.locate(&path).is_none() && !self.world.is_stdlib_path(&path) {
            // A request for a file not opened and not yet in a project (an
            // editor that skips didOpen): read it from disk.
            self.world.reload(&path)?;
            self.refresh();
        }
        let (snap, file) = self.world.locate(&path)?;
        let src = snap.source(file)?;
        f(snap, file, src)
    }

    fn location(&self, loc: &navigate::Location) -> Option<lsp::Location> {
        let (snap, file) = self.world.locate(&loc.path)?;
        let src = snap.source(file)?;
        Some(lsp::Location {
            uri: uri::from_path(&loc.path),
            range: to_range(src, loc.span),
        })
    }

    // `WorkspaceEdit::changes` is keyed by `Uri`, whose parsed parts are
    // cached in cells; the keys are never mutated here.
    #[allow(clippy::mutable_key_type)]
    fn workspace_edit(
        &self,
        edits: std::collections::BTreeMap<PathBuf, Vec<(Span, String)>>,
    ) -> lsp::WorkspaceEdit {
        let mut changes: HashMap<lsp::Uri, Vec<lsp::TextEdit>> = HashMap::new();
        for (path, edits) in edits {
            let Some((snap, file)) = self.world.locate(&path) else {
                continue;
            };
            let Some(src) = snap.source(file) else {
                continue;
            };
            changes.insert(
                uri::from_path(&path),
                edits
                    .into_iter()
                    .map(|(span, new_text)| lsp::TextEdit {
                        range: to_range(src, span),
                        new_text,
                    })
                    .collect(),
            );
        }
        lsp::WorkspaceEdit::new(changes)
    }
}

/// Applies one content change (a range edit, or the whole text) to a document.
pub fn apply_change(text: &mut String, change: lsp::TextDocumentContentChangeEvent) {
    match change.range {
        None => *text = change.text,
        Some(range) => {
            let src = SourceFile::new("", std::mem::take(text));
            let a = to_offset(&src, range.start) as usize;
            let b = to_offset(&src, range.end) as usize;
            let (a, b) = (a.min(b), a.max(b));
            let mut out = src.text;
            out.replace_range(a..b, &change.text);
            *text = out;
        }
    }
}

/// Byte offset of an LSP position (UTF-16 columns); past the end clamps.
pub fn to_offset(src: &SourceFile, pos: lsp::Position) -> u32 {
    src.offset_of_utf16(pos.line, pos.character)
}

/// LSP position of a byte offset.
pub fn to_position(src: &SourceFile, offset: u32) -> lsp::Position {
    let (line, character) = src.line_col_utf16(offset);
    lsp::Position { line, character }
}

/// LSP range of a byte span.
pub fn to_range(src: &SourceFile, span: Span) -> lsp::Range {
    lsp::Range {
        start: to_position(src, span.start),
        end: to_position(src, span.end),
    }
}

/// Converts a compiler diagnostic for the file `src`.
pub fn to_lsp_diagnostic(
    snap: &Snapshot,
    src: &SourceFile,
    d: &nudge_diagnostics::Diagnostic,
) -> lsp::Diagnostic {
    let mut message = d.title.clone();
    if let Some(label) = &d.primary_label {
        message.push_str(&format!(": {label}"));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .filter_map(|l| {
            let path = snap.path(l.at.file)?;
            let lsrc = snap.source(l.at.file)?;
            Some(lsp::DiagnosticRelatedInformation {
                location: lsp::Location {
                    uri: uri::from_path(path),
                    range: to_range(lsrc, l.at.span),
                },
                message: l.message.clone(),
            })
        })
        .collect();
    let unused = matches!(d.code.id, "W0005" | "W0006" | "W0007");
    lsp::Diagnostic {
        range: to_range(src, d.primary.span),
        severity: Some(match d.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
            Severity::Note => lsp::DiagnosticSeverity::INFORMATION,
        }),
        code: Some(lsp::NumberOrString::String(d.code.id.to_string())),
        code_description: None,
        source: Some("nudge".to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: unused.then(|| vec![lsp::DiagnosticTag::UNNECESSARY]),
        data: None,
    }
}

fn to_completion_item(i: completion::Item) -> lsp::CompletionItem {
    use completion::ItemKind as K;
    let kind = match i.kind {
        K::Keyword => lsp::CompletionItemKind::KEYWORD,
        K::Event => lsp::CompletionItemKind::EVENT,
        K::Field => lsp::CompletionItemKind::FIELD,
        K::Message => lsp::CompletionItemKind::FUNCTION,
        K::Segment => lsp::CompletionItemKind::VARIABLE,
        K::Constant => lsp::CompletionItemKind::CONSTANT,
        K::Function => lsp::CompletionItemKind::FUNCTION,
        K::Variable => lsp::CompletionItemKind::VARIABLE,
        K::Type => lsp::CompletionItemKind::CLASS,
    };
    lsp::CompletionItem {
        label: i.label,
        kind: Some(kind),
        detail: i.detail,
        documentation: i.documentation.map(|value| {
            lsp::Documentation::MarkupContent(lsp::MarkupContent {
                kind: lsp::MarkupKind::Markdown,
                value,
            })
        }),
        sort_text: i.sort,
        ..Default::default()
    }
}

fn symbol_kind_for(kind: &str) -> lsp::SymbolKind {
    match kind {
        "constant" => lsp::SymbolKind::CONSTANT,
        "event" => lsp::SymbolKind::EVENT,
        "type" => lsp::SymbolKind::STRUCT,
        "enum" => lsp::SymbolKind::ENUM,
        "field" => lsp::SymbolKind::FIELD,
        "segment" => lsp::SymbolKind::VARIABLE,
        "message" => lsp::SymbolKind::FUNCTION,
        "flow" => lsp::SymbolKind::MODULE,
        _ => lsp::SymbolKind::VARIABLE,
    }
}

#[allow(deprecated)]
fn to_document_symbol(src: &SourceFile, i: outline::OutlineItem) -> lsp::DocumentSymbol {
    use outline::OutlineKind as K;
    let kind = match i.kind {
        K::Constant => lsp::SymbolKind::CONSTANT,
        K::Event => lsp::SymbolKind::EVENT,
        K::Type => lsp::SymbolKind::STRUCT,
        K::Profile => lsp::SymbolKind::STRUCT,
        K::Field => lsp::SymbolKind::FIELD,
        K::Segment => lsp::SymbolKind::VARIABLE,
        K::Message => lsp::SymbolKind::FUNCTION,
        K::Flow => lsp::SymbolKind::MODULE,
        K::Clause => lsp::SymbolKind::PROPERTY,
        K::Step => lsp::SymbolKind::METHOD,
        K::Policy => lsp::SymbolKind::NAMESPACE,
        K::Test => lsp::SymbolKind::FUNCTION,
    };
    let children: Vec<lsp::DocumentSymbol> = i
        .children
        .into_iter()
        .map(|c| to_document_symbol(src, c))
        .collect();
    lsp::DocumentSymbol {
        name: if i.name.is_empty() {
            "?".to_string()
        } else {
            i.name
        },
        detail: i.detail,
        kind,
        tags: None,
        deprecated: None,
        range: to_range(src, i.span),
        selection_range: to_range(src, i.selection),
        children: (!children.is_empty()).then_some(children),
    }
}

/// Encodes tokens relative to each other, as the protocol wants.
pub fn encode_tokens(src: &SourceFile, tokens: &[semantic::SemToken]) -> Vec<lsp::SemanticToken> {
    let mut out = Vec::with_capacity(tokens.len());
    let (mut line, mut col) = (0u32, 0u32);
    for t in tokens {
        let start = to_position(src, t.span.start);
        let end = to_position(src, t.span.end);
        let length = end.character.saturating_sub(start.character);
        let delta_line = start.line - line;
        let delta_start = if delta_line == 0 {
            start.character - col
        } else {
            start.character
        };
        out.push(lsp::SemanticToken {
            delta_line,
            delta_start,
            length,
            token_type: t.kind,
            token_modifiers_bitset: t.modifiers,
        });
        line = start.line;
        col = start.character;
    }
    out
}
