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
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use nudge_diagnostics::{FileId, Severity, Span};
use serde_json::Value;

use crate::lines::LineIndex;
use crate::world::{ProjectId, Snapshot, World};
use crate::{
    actions, completion, hover, inlay, navigate, outline, semantic, signature, structure, uri,
};

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
            code_action_kinds: Some(vec![
                CodeActionKind::QUICKFIX,
                CodeActionKind::SOURCE_FIX_ALL,
            ]),
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
                range: Some(true),
                work_done_progress_options: Default::default(),
            },
        )),
        inlay_hint_provider: Some(OneOf::Left(true)),
        folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
        signature_help_provider: Some(SignatureHelpOptions {
            trigger_characters: Some(vec!["(".to_string(), ",".to_string()]),
            retrigger_characters: None,
            work_done_progress_options: Default::default(),
        }),
        selection_range_provider: Some(SelectionRangeProviderCapability::Simple(true)),
        document_highlight_provider: Some(OneOf::Left(true)),
        document_link_provider: Some(DocumentLinkOptions {
            resolve_provider: Some(false),
            work_done_progress_options: Default::default(),
        }),
        ..Default::default()
    }
}

/// How the server ended, which decides the process's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `exit` (or the end of the input) after `shutdown`: exit code 0.
    Clean,
    /// `exit` or the end of the input without `shutdown`: exit code 1, as the
    /// protocol says.
    WithoutShutdown,
}

impl Ending {
    /// The process exit code for this ending.
    pub fn code(self) -> i32 {
        match self {
            Ending::Clean => 0,
            Ending::WithoutShutdown => 1,
        }
    }
}

/// The files whose changes on disk the server wants to hear about: flows,
/// manifests, and templates (any file below a `templates` folder, and the
/// usual template extensions elsewhere).
pub const WATCHED: &[&str] = &[
    "**/*.flow",
    "**/nudge.toml",
    "**/templates/**",
    "**/*.{html,htm,txt,json,md,mjml,j2,jinja}",
];

/// The most diagnostics published for one file; the rest are summed up in one more.
pub const MAX_DIAGNOSTICS: usize = 200;

/// At most this many messages are taken from the connection before the
/// pending work is done, so a client that never pauses still gets answers.
const MAX_DRAIN: usize = 10_000;

/// Runs the server over stdin and stdout until the client says `exit`.
///
/// The loop runs on a thread with a large stack: the compiler recurses on
/// nested expressions, and a long generated one must not overflow the
/// stack and abort the server. The memory is reserved, not used.
pub fn run_stdio() -> Result<Ending, Box<dyn Error + Sync + Send>> {
    let (connection, io) = crate::transport::stdio();
    let server = std::thread::Builder::new()
        .name("nudge-lsp".into())
        .stack_size(SERVER_STACK)
        .spawn(move || {
            run(connection, crate::world::default_stdlib_dir()).map_err(|e| e.to_string())
        })?;
    let ending = server
        .join()
        .map_err(|_| "the server thread panicked".to_string())??;
    io.join()?;
    Ok(ending)
}

/// The stack of the thread that analyses.
const SERVER_STACK: usize = 1 << 30;

/// Runs the server on a connection: the handshake, then the message loop.
///
/// Scheduling follows rust-analyzer's main loop: every message waiting on
/// the connection is taken before any analysis, so a burst of edits is
/// applied as a whole and analysed once; requests wait in a queue until the
/// connection is drained, `$/cancelRequest` removes a queued request
/// (answered with `RequestCanceled`), and the queued requests are answered
/// from the analysis of the latest text.
pub fn run(
    connection: Connection,
    stdlib_dir: PathBuf,
) -> Result<Ending, Box<dyn Error + Sync + Send>> {
    let Some((id, params)) = initialize_start(&connection) else {
        return Ok(Ending::WithoutShutdown);
    };
    // A client that sends odd initialize params still gets a working server.
    let init: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let result = serde_json::json!({
        "capabilities": capabilities(),
        "serverInfo": { "name": "nudge", "version": env!("CARGO_PKG_VERSION") },
    });
    // Sent here rather than by `initialize_finish`, which would also take
    // the `initialized` notification that registers the file watchers.
    connection
        .sender
        .send(Response::new_ok(id, result).into())?;

    let mut server = Server::new(connection.sender.clone(), stdlib_dir);
    server.configure(&init);
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
        if server.queue.is_empty() && !server.world.is_dirty() {
            match connection.receiver.recv() {
                Ok(msg) => {
                    if let Some(ending) = server.accept(msg) {
                        return Ok(ending);
                    }
                }
                Err(_) => return Ok(server.ending()),
            }
        }
        for _ in 0..MAX_DRAIN {
            match connection.receiver.try_recv() {
                Ok(msg) => {
                    if let Some(ending) = server.accept(msg) {
                        return Ok(ending);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    server.flush();
                    return Ok(server.ending());
                }
            }
        }
        server.flush();
    }
}

/// Waits for `initialize`, answering other requests with `ServerNotInitialized`;
/// `None` when the client exits or goes away first.
fn initialize_start(connection: &Connection) -> Option<(RequestId, Value)> {
    loop {
        match connection.receiver.recv().ok()? {
            Message::Request(req) if req.method == "initialize" => {
                return Some((req.id, req.params));
            }
            Message::Request(req) => {
                let _ = connection.sender.send(
                    Response::new_err(
                        req.id,
                        ErrorCode::ServerNotInitialized as i32,
                        "the server is not initialized yet".to_string(),
                    )
                    .into(),
                );
            }
            Message::Notification(n) if n.method == "exit" => return None,
            Message::Notification(_) | Message::Response(_) => {}
        }
    }
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
    /// Requests received and not yet answered, in order of arrival.
    queue: Vec<Request>,
    /// Whether `shutdown` was answered: requests are refused from then on.
    shut_down: bool,
    /// How much the client wants to read in `$/logTrace` notifications.
    trace: lsp::TraceValue,
    /// Whether the client lets the server register file watchers itself.
    dynamic_watchers: bool,
    /// How many project analyses the server has run.
    analyses: u64,
    /// Whether the client's completion inserts snippets (tab stops).
    snippets: bool,
}

impl Server {
    /// A server that sends its messages on `sender`.
    pub fn new(sender: Sender<Message>, stdlib_dir: PathBuf) -> Server {
        Server {
            world: World::new(stdlib_dir),
            sender,
            published: HashMap::new(),
            force: HashSet::new(),
            queue: Vec::new(),
            shut_down: false,
            trace: lsp::TraceValue::Off,
            dynamic_watchers: false,
            analyses: 0,
            snippets: false,
        }
    }

    /// Takes what the server needs from the client's `initialize` params.
    pub fn configure(&mut self, init: &lsp::InitializeParams) {
        self.trace = init.trace.unwrap_or(lsp::TraceValue::Off);
        self.dynamic_watchers = init
            .capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.did_change_watched_files.as_ref())
            .and_then(|w| w.dynamic_registration)
            .unwrap_or(false);
        self.snippets = init
            .capabilities
            .text_document
            .as_ref()
            .and_then(|t| t.completion.as_ref())
            .and_then(|c| c.completion_item.as_ref())
            .and_then(|i| i.snippet_support)
            .unwrap_or(false);
    }

    /// How many project analyses have run since the server started.
    pub fn analyses(&self) -> u64 {
        self.analyses
    }

    /// How the server ends if the client goes away now.
    pub fn ending(&self) -> Ending {
        if self.shut_down {
            Ending::Clean
        } else {
            Ending::WithoutShutdown
        }
    }

    /// Takes one message from the connection: notifications are applied at
    /// once, requests are queued until [`Server::flush`]. Returns how the
    /// server ends when the message was `exit`.
    pub fn accept(&mut self, msg: Message) -> Option<Ending> {
        match msg {
            Message::Request(req) => {
                if self.shut_down {
                    self.send(Response::new_err(
                        req.id,
                        ErrorCode::InvalidRequest as i32,
                        "the server is shutting down".to_string(),
                    ));
                } else if req.method == "shutdown" {
                    // Everything asked before `shutdown` is answered first.
                    self.flush();
                    self.shut_down = true;
                    self.send(Response::new_ok(req.id, Value::Null));
                } else {
                    self.queue.push(req);
                }
            }
            Message::Notification(n) => match n.method.as_str() {
                "exit" => return Some(self.ending()),
                "$/cancelRequest" => self.cancel(n.params),
                _ if self.shut_down => {}
                _ => self.handle_notification(n),
            },
            // Answers to the server's own requests (watcher registration).
            Message::Response(_) => {}
        }
        None
    }

    /// Removes a queued request and answers it with `RequestCanceled`; a
    /// request already answered (or unknown) is left alone.
    fn cancel(&mut self, params: Value) {
        let Ok(p) = serde_json::from_value::<lsp::CancelParams>(params) else {
            return;
        };
        let id = match p.id {
            lsp::NumberOrString::Number(n) => RequestId::from(n),
            lsp::NumberOrString::String(s) => RequestId::from(s),
        };
        if let Some(i) = self.queue.iter().position(|r| r.id == id) {
            let req = self.queue.remove(i);
            self.send(Response::new_err(
                req.id,
                ErrorCode::RequestCanceled as i32,
                "canceled by the client".to_string(),
            ));
        }
    }

    /// Analyses what changed, then answers every queued request from that analysis.
    pub fn flush(&mut self) {
        if self.world.is_dirty() {
            self.refresh();
        }
        for req in std::mem::take(&mut self.queue) {
            self.handle_request(req);
        }
    }

    /// Sends a `$/logTrace` notification when the client asked for traces.
    fn log_trace(&self, message: String) {
        if self.trace == lsp::TraceValue::Off {
            return;
        }
        self.send(Notification::new(
            "$/logTrace".to_string(),
            lsp::LogTraceParams {
                message,
                verbose: None,
            },
        ));
    }

    /// Asks the client to report changes to `.flow` files, manifests and
    /// templates, when it lets the server register watchers.
    fn register_watchers(&self) {
        if !self.dynamic_watchers {
            return;
        }
        let watchers = WATCHED
            .iter()
            .map(|glob| lsp::FileSystemWatcher {
                glob_pattern: lsp::GlobPattern::String(glob.to_string()),
                kind: None,
            })
            .collect();
        let options = lsp::DidChangeWatchedFilesRegistrationOptions { watchers };
        let params = lsp::RegistrationParams {
            registrations: vec![lsp::Registration {
                id: "nudge-watched-files".to_string(),
                method: "workspace/didChangeWatchedFiles".to_string(),
                register_options: serde_json::to_value(options).ok(),
            }],
        };
        self.send(Request::new(
            RequestId::from("nudge/register-watchers".to_string()),
            "client/registerCapability".to_string(),
            params,
        ));
    }

    fn send(&self, msg: impl Into<Message>) {
        // The client has gone when this fails; the loop ends on its own.
        let _ = self.sender.send(msg.into());
    }

    /// Analyses every changed project and publishes the diagnostics that changed.
    pub fn refresh(&mut self) {
        for id in self.world.dirty_projects() {
            let started = std::time::Instant::now();
            self.world.analyse(id);
            self.analyses += 1;
            if let Some(p) = self.world.project(id) {
                self.log_trace(format!(
                    "analysed {} in {} ms",
                    p.root.display(),
                    started.elapsed().as_millis()
                ));
            }
            self.publish(id);
        }
        self.clear_orphans();
        self.force.clear();
    }

    /// Clears the diagnostics of files that no project holds any more (a
    /// project that was rebuilt after a manifest changed).
    fn clear_orphans(&mut self) {
        let orphans: Vec<PathBuf> = self
            .published
            .iter()
            .filter(|(path, (owner, _))| {
                self.world
                    .snapshot(*owner)
                    .is_none_or(|s| s.file_id(path).is_none())
                    && self.world.locate(path).is_none()
            })
            .map(|(p, _)| p.clone())
            .collect();
        for path in orphans {
            self.published.remove(&path);
            self.send(Notification::new(
                "textDocument/publishDiagnostics".to_string(),
                lsp::PublishDiagnosticsParams {
                    uri: uri::from_path(&path),
                    diagnostics: Vec::new(),
                    version: None,
                },
            ));
        }
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
            if snap.source(file).is_none() {
                continue;
            }
            let src = snap.lines(file);
            let lsp_diags = capped_diagnostics(snap, src, diags);
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
                let mut manifest_changed = false;
                for change in p.changes {
                    let Some(path) = uri::to_path(&change.uri) else {
                        continue;
                    };
                    if path
                        .file_name()
                        .is_some_and(|n| n == crate::world::MANIFEST)
                    {
                        manifest_changed = true;
                    } else if path.extension().is_some_and(|e| e == "flow") {
                        // An open document's text is the editor's, not the disk's.
                        if self.world.document(&path).is_none() {
                            self.world.reload(&path);
                        }
                    } else {
                        // A template: read again by the next analysis.
                        self.world.touch(&path);
                    }
                }
                if manifest_changed {
                    // Project roots may have moved: find them again.
                    self.world.rebuild();
                    self.force.extend(self.published.keys().cloned());
                }
            }
            "textDocument/didSave" => {
                // Templates are read again when their flow is saved.
                let Ok(p) = serde_json::from_value::<lsp::DidSaveTextDocumentParams>(n.params)
                else {
                    return;
                };
                if let Some(path) = uri::to_path(&p.text_document.uri) {
                    self.world.touch(&path);
                }
            }
            "initialized" => self.register_watchers(),
            "$/setTrace" => {
                if let Ok(p) = serde_json::from_value::<lsp::SetTraceParams>(n.params) {
                    self.trace = p.value;
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
                let snippets = self.snippets;
                json(lsp::CompletionResponse::Array(
                    items
                        .into_iter()
                        .filter(|i| snippets || i.snippet.is_none())
                        .map(to_completion_item)
                        .collect(),
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
                let edits = self.file(&p.text_document.uri, |snap, file, src| {
                    let text = snap.text(file);
                    let formatted = actions::format(text)?;
                    Some(vec![lsp::TextEdit {
                        range: to_range(src, Span::new(0, text.len())),
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
            "textDocument/semanticTokens/range" => {
                // The visible part of a long file, so the editor colours it first.
                let p: lsp::SemanticTokensRangeParams = params(req.params)?;
                let tokens = self.file(&p.text_document.uri, |snap, file, src| {
                    let range = Span {
                        start: to_offset(src, p.range.start),
                        end: to_offset(src, p.range.end),
                    };
                    let tokens: Vec<semantic::SemToken> = semantic::semantic_tokens(snap, file)
                        .into_iter()
                        .filter(|t| t.span.end > range.start && t.span.start < range.end)
                        .collect();
                    Some(encode_tokens(src, &tokens))
                });
                json(tokens.map(|data| {
                    lsp::SemanticTokensRangeResult::Tokens(lsp::SemanticTokens {
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
                // Kinds are hierarchical: asking for `source` includes `source.fixAll`.
                let wants = |kind: &lsp::CodeActionKind| {
                    p.context.only.as_ref().is_none_or(|only| {
                        only.iter().any(|o| {
                            kind.as_str() == o.as_str()
                                || kind.as_str().starts_with(&format!("{}.", o.as_str()))
                        })
                    })
                };
                let mut out: Vec<lsp::CodeActionOrCommand> =
                    if wants(&lsp::CodeActionKind::QUICKFIX) {
                        out
                    } else {
                        Vec::new()
                    };
                if wants(&lsp::CodeActionKind::SOURCE_FIX_ALL)
                    && let Some(path) = uri::to_path(&p.text_document.uri)
                    && let Some((snap, file)) = self.world.locate(&path)
                {
                    let (count, edits) = actions::fix_all(snap, file);
                    if count > 0 {
                        out.push(lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
                            title: format!(
                                "Fix all problems in this file ({count} fix{})",
                                if count == 1 { "" } else { "es" }
                            ),
                            kind: Some(lsp::CodeActionKind::SOURCE_FIX_ALL),
                            edit: Some(self.workspace_edit(edits)),
                            ..Default::default()
                        }));
                    }
                }
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
            "textDocument/signatureHelp" => {
                let p: lsp::SignatureHelpParams = params(req.params)?;
                let pos = &p.text_document_position_params;
                let help = self.at(
                    &pos.text_document.uri,
                    pos.position,
                    |snap, file, _, off| signature::signature_help(snap, file, off),
                );
                json(help.map(to_signature_help))
            }
            "textDocument/foldingRange" => {
                let p: lsp::FoldingRangeParams = params(req.params)?;
                let folds = self.file(&p.text_document.uri, |snap, file, src| {
                    let folds = structure::folding_ranges(snap, file);
                    Some(
                        folds
                            .into_iter()
                            .filter_map(|f| {
                                let start = to_position(src, f.span.start).line;
                                let end = to_position(src, f.span.end).line;
                                (end > start).then(|| lsp::FoldingRange {
                                    start_line: start,
                                    end_line: end,
                                    kind: Some(if f.comment {
                                        lsp::FoldingRangeKind::Comment
                                    } else {
                                        lsp::FoldingRangeKind::Region
                                    }),
                                    ..Default::default()
                                })
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                json(folds.unwrap_or_default())
            }
            "textDocument/selectionRange" => {
                let p: lsp::SelectionRangeParams = params(req.params)?;
                let ranges = self.file(&p.text_document.uri, |snap, file, src| {
                    let out: Vec<lsp::SelectionRange> = p
                        .positions
                        .iter()
                        .map(|pos| {
                            let chain =
                                structure::selection_ranges(snap, file, to_offset(src, *pos));
                            // Outermost first, each becoming the parent of the next.
                            let mut range: Option<lsp::SelectionRange> = None;
                            for span in chain.into_iter().rev() {
                                range = Some(lsp::SelectionRange {
                                    range: to_range(src, span),
                                    parent: range.map(Box::new),
                                });
                            }
                            range.unwrap_or(lsp::SelectionRange {
                                range: lsp::Range::new(*pos, *pos),
                                parent: None,
                            })
                        })
                        .collect();
                    Some(out)
                });
                json(ranges.unwrap_or_default())
            }
            "textDocument/documentHighlight" => {
                let p: lsp::DocumentHighlightParams = params(req.params)?;
                let pos = &p.text_document_position_params;
                let found = self.at(
                    &pos.text_document.uri,
                    pos.position,
                    |snap, file, src, off| {
                        let hs = structure::document_highlights(snap, file, off);
                        Some(
                            hs.into_iter()
                                .map(|h| lsp::DocumentHighlight {
                                    range: to_range(src, h.span),
                                    kind: Some(if h.declaration {
                                        lsp::DocumentHighlightKind::WRITE
                                    } else {
                                        lsp::DocumentHighlightKind::READ
                                    }),
                                })
                                .collect::<Vec<_>>(),
                        )
                    },
                );
                json(found.unwrap_or_default())
            }
            "textDocument/documentLink" => {
                let p: lsp::DocumentLinkParams = params(req.params)?;
                let links = self.file(&p.text_document.uri, |snap, file, src| {
                    let links = structure::template_links(snap, file);
                    Some(
                        links
                            .into_iter()
                            .map(|l| lsp::DocumentLink {
                                range: to_range(src, l.span),
                                target: Some(uri::from_path(&l.target)),
                                tooltip: Some("open the template".to_string()),
                                data: None,
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                json(links.unwrap_or_default())
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
        f: impl FnOnce(&Snapshot, FileId, &LineIndex, u32) -> Option<T>,
    ) -> Option<T> {
        self.file(uri, |snap, file, src| {
            f(snap, file, src, to_offset(src, pos))
        })
    }

    /// Runs `f` on the analysis of a document; an unknown document is added to its project first.
    fn file<T>(
        &mut self,
        uri: &lsp::Uri,
        f: impl FnOnce(&Snapshot, FileId, &LineIndex) -> Option<T>,
    ) -> Option<T> {
        let path = uri::to_path(uri)?;
        if self.world.locate(&path).is_none() && !self.world.is_stdlib_path(&path) {
            // A request for a file not opened and not yet in a project (an
            // editor that skips didOpen): read it from disk.
            self.world.reload(&path)?;
            self.refresh();
        }
        let (snap, file) = self.world.locate(&path)?;
        snap.source(file)?;
        f(snap, file, snap.lines(file))
    }

    fn location(&self, loc: &navigate::Location) -> Option<lsp::Location> {
        let (snap, file) = self.world.locate(&loc.path)?;
        snap.source(file)?;
        let src = snap.lines(file);
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
            if snap.source(file).is_none() {
                continue;
            }
            let src = snap.lines(file);
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
            let lines = LineIndex::new(text);
            let a = to_offset(&lines, range.start) as usize;
            let b = to_offset(&lines, range.end) as usize;
            let (a, b) = (a.min(b), a.max(b));
            text.replace_range(a..b, &change.text);
        }
    }
}

/// Byte offset of an LSP position (UTF-16 columns); past the end clamps.
pub fn to_offset(src: &LineIndex, pos: lsp::Position) -> u32 {
    src.offset(pos.line, pos.character)
}

/// LSP position of a byte offset.
pub fn to_position(src: &LineIndex, offset: u32) -> lsp::Position {
    let (line, character) = src.position(offset);
    lsp::Position { line, character }
}

/// LSP range of a byte span.
pub fn to_range(src: &LineIndex, span: Span) -> lsp::Range {
    lsp::Range {
        start: to_position(src, span.start),
        end: to_position(src, span.end),
    }
}

/// A file's diagnostics for the protocol: errors first, at most
/// [`MAX_DIAGNOSTICS`] of them, and one more that says how many were left out.
pub fn capped_diagnostics(
    snap: &Snapshot,
    src: &LineIndex,
    diags: Vec<&nudge_diagnostics::Diagnostic>,
) -> Vec<lsp::Diagnostic> {
    let mut diags = diags;
    if diags.len() > MAX_DIAGNOSTICS {
        // Stable, so the compiler's order holds within each severity.
        diags.sort_by_key(|d| match d.severity {
            Severity::Error => 0,
            Severity::Warning => 1,
            Severity::Note => 2,
        });
    }
    let mut out: Vec<lsp::Diagnostic> = diags
        .iter()
        .take(MAX_DIAGNOSTICS)
        .map(|d| to_lsp_diagnostic(snap, src, d))
        .collect();
    if let Some(first_left) = diags.get(MAX_DIAGNOSTICS) {
        let left = diags.len() - MAX_DIAGNOSTICS;
        out.push(lsp::Diagnostic {
            range: to_range(src, first_left.primary.span),
            severity: Some(lsp::DiagnosticSeverity::INFORMATION),
            source: Some("nudge".to_string()),
            message: format!(
                "{left} more problems in this file are not shown; `nudge check` lists them all"
            ),
            ..Default::default()
        });
    }
    out
}

/// Converts a compiler diagnostic for the file `src`.
pub fn to_lsp_diagnostic(
    snap: &Snapshot,
    src: &LineIndex,
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
            snap.source(l.at.file)?;
            let lsrc = snap.lines(l.at.file);
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
        K::Snippet => lsp::CompletionItemKind::SNIPPET,
    };
    let snippet = i.snippet.is_some();
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
        insert_text: i.snippet,
        insert_text_format: snippet.then_some(lsp::InsertTextFormat::SNIPPET),
        ..Default::default()
    }
}

fn to_signature_help(sig: signature::Signature) -> lsp::SignatureHelp {
    // Offsets into the label count UTF-16 units, like positions.
    let units = |byte: u32| sig.label[..byte as usize].encode_utf16().count() as u32;
    let parameters = sig
        .params
        .iter()
        .map(|&(a, b)| lsp::ParameterInformation {
            label: lsp::ParameterLabel::LabelOffsets([units(a), units(b)]),
            documentation: None,
        })
        .collect();
    lsp::SignatureHelp {
        signatures: vec![lsp::SignatureInformation {
            label: sig.label.clone(),
            documentation: sig.documentation.map(|value| {
                lsp::Documentation::MarkupContent(lsp::MarkupContent {
                    kind: lsp::MarkupKind::Markdown,
                    value,
                })
            }),
            parameters: Some(parameters),
            active_parameter: sig.active,
        }],
        active_signature: Some(0),
        active_parameter: sig.active,
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
fn to_document_symbol(src: &LineIndex, i: outline::OutlineItem) -> lsp::DocumentSymbol {
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
pub fn encode_tokens(src: &LineIndex, tokens: &[semantic::SemToken]) -> Vec<lsp::SemanticToken> {
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
