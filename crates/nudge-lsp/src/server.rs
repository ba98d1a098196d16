//! The protocol shell: reads LSP messages, calls the feature functions with
//! byte offsets, and converts their answers to lsp-types. Positions are
//! converted between UTF-16 (the protocol's default) and bytes only here.
//!
//! Scheduling: one thread takes every message in order, applies edits and
//! analyses; after a change the project is marked dirty and analysed as
//! soon as no further message is waiting, so a burst of keystrokes costs
//! one analysis. Requests are answered on worker threads from a shared,
//! immutable analysis (see [`crate::answer`]), so a long one never holds up
//! the edits behind it.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use nudge_diagnostics::{Severity, Span};
use serde_json::Value;

use crate::answer::{TestFailures, TestRun, TokenCache, View};
use crate::cancel::{Cancel, Stop};
use crate::lines::LineIndex;
use crate::world::{ProjectId, Snapshot, World};
use crate::{completion, outline, runner, semantic, signature, uri};

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
        document_range_formatting_provider: Some(OneOf::Left(true)),
        code_lens_provider: Some(CodeLensOptions {
            resolve_provider: Some(false),
        }),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: vec![crate::runner::RUN_TEST.to_string()],
            work_done_progress_options: Default::default(),
        }),
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
                full: Some(SemanticTokensFullOptions::Delta { delta: Some(true) }),
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

/// The capabilities announced to a client: [`capabilities`], plus pull
/// diagnostics when the client can pull them (it then gets no pushed ones).
pub fn capabilities_for(init: &lsp::InitializeParams) -> lsp::ServerCapabilities {
    let mut caps = capabilities();
    if pulls_diagnostics(init) {
        caps.diagnostic_provider = Some(lsp::DiagnosticServerCapabilities::Options(
            lsp::DiagnosticOptions {
                identifier: Some("nudge".to_string()),
                // An edit in one file changes the diagnostics of others.
                inter_file_dependencies: true,
                workspace_diagnostics: true,
                work_done_progress_options: Default::default(),
            },
        ));
    }
    caps
}

/// Whether a client asks for diagnostics (`textDocument/diagnostic`)
/// rather than waiting for `textDocument/publishDiagnostics`.
fn pulls_diagnostics(init: &lsp::InitializeParams) -> bool {
    init.capabilities
        .text_document
        .as_ref()
        .is_some_and(|t| t.diagnostic.is_some())
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
/// connection is drained and are then handed to workers with the analysis
/// of the latest text. `$/cancelRequest` removes a queued request or stops
/// a running one (answered with `RequestCanceled`); an edit stops the
/// running requests that read the edited file (`ContentModified`).
pub fn run(
    connection: Connection,
    stdlib_dir: PathBuf,
) -> Result<Ending, Box<dyn Error + Sync + Send>> {
    let Some((id, params)) = initialize_start(&connection) else {
        return Ok(Ending::WithoutShutdown);
    };
    // A client that sends odd initialize params still gets a working server.
    let init: lsp::InitializeParams = serde_json::from_value(params.clone()).unwrap_or_default();
    let result = serde_json::json!({
        "capabilities": capabilities_for(&init),
        "serverInfo": { "name": "nudge", "version": env!("CARGO_PKG_VERSION") },
    });
    // Sent here rather than by `initialize_finish`, which would also take
    // the `initialized` notification that registers the file watchers.
    connection
        .sender
        .send(Response::new_ok(id, result).into())?;

    let mut server = Server::new(connection.sender.clone(), stdlib_dir);
    server.configure(&init);
    server.configure_raw(&params);
    if let Err(e) = server.world.write_stdlib() {
        eprintln!(
            "nudge lsp: cannot write the stdlib to {}: {e}",
            server.world.stdlib_dir().display()
        );
    }
    for folder in workspace_folders(&init) {
        server.world.add_folder(folder);
    }
    server.start_progress();
    let test_runs = server.test_runs.1.clone();
    loop {
        if server.queue.is_empty() && !server.world.is_dirty() {
            // Idle: the next message, or the result of a test a worker ran.
            crossbeam_channel::select! {
                recv(connection.receiver) -> msg => match msg {
                    Ok(msg) => {
                        if let Some(ending) = server.accept(msg) {
                            return Ok(ending);
                        }
                    }
                    Err(_) => return Ok(server.ending()),
                },
                recv(test_runs) -> run => {
                    if let Ok(run) = run {
                        server.record_test(run);
                    }
                }
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

/// A request received and not yet handed to a worker.
struct Queued {
    req: Request,
    /// The document the request is about, and its version when the request
    /// arrived (`None` when it was not open).
    doc: Option<(PathBuf, Option<i32>)>,
}

/// A request a worker is answering.
struct Running {
    cancel: Cancel,
    /// The document the request is about.
    doc: Option<PathBuf>,
    /// Whether the answer reads other files than the request's document,
    /// so that any edit makes it stale.
    project_wide: bool,
}

/// Requests whose answers hold positions in every file of a project.
fn reads_every_file(method: &str) -> bool {
    matches!(
        method,
        "textDocument/references"
            | "textDocument/rename"
            | "workspace/symbol"
            | "workspace/diagnostic"
    )
}

/// The path of the document a request is about: `params.textDocument.uri`,
/// or the first argument of a command.
fn request_document(params: &Value) -> Option<PathBuf> {
    let text = match params.get("textDocument") {
        Some(doc) => doc.get("uri")?.as_str()?,
        None => params.get("arguments")?.get(0)?.as_str()?,
    };
    let uri: lsp::Uri = text.parse().ok()?;
    uri::to_path(&uri)
}

/// A job for a worker thread.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that answer requests, so that the message loop can apply
/// edits and analyse while a long request is computed, as rust-analyzer
/// does. They end when the server is dropped.
struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    fn new() -> Pool {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        for i in 0..workers {
            let rx = rx.clone();
            // Features parse files again on first use; like the analysis,
            // they recurse on nested expressions and need a deep stack.
            let spawned = std::thread::Builder::new()
                .name(format!("nudge-lsp-worker-{i}"))
                .stack_size(SERVER_STACK)
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                });
            if let Err(e) = spawned {
                eprintln!("nudge lsp: cannot start a worker thread: {e}");
            }
        }
        Pool { jobs }
    }

    fn run(&self, job: Job) {
        if let Err(e) = self.jobs.send(job) {
            // No worker could be started: answer on this thread.
            (e.into_inner())();
        }
    }
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
    /// Requests received and not yet handed to a worker, in order of arrival.
    queue: Vec<Queued>,
    /// Requests being answered by a worker.
    running: HashMap<RequestId, Running>,
    /// Workers report the requests they answered here.
    done: (Sender<RequestId>, Receiver<RequestId>),
    /// The threads that answer requests.
    pool: Pool,
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
    /// Whether the client pulls diagnostics, so none are pushed.
    pull: bool,
    /// Whether the client can be asked to pull diagnostics again.
    pull_refresh: bool,
    /// Numbers the server's own requests.
    next_request: u64,
    /// The semantic tokens last sent per document, for deltas.
    tokens: TokenCache,
    /// Whether the client shows progress the server reports.
    work_done_progress: bool,
    /// The token for the progress of the first analysis, until it runs.
    progress_token: Option<String>,
    /// The failed expectations of tests run from the code lens, shown as
    /// diagnostics of their files until the text changes.
    failures: Arc<TestFailures>,
    /// Workers send the results of the tests they run here.
    test_runs: (Sender<TestRun>, Receiver<TestRun>),
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
            running: HashMap::new(),
            done: crossbeam_channel::unbounded(),
            pool: Pool::new(),
            shut_down: false,
            trace: lsp::TraceValue::Off,
            dynamic_watchers: false,
            analyses: 0,
            snippets: false,
            pull: false,
            pull_refresh: false,
            next_request: 0,
            tokens: TokenCache::default(),
            work_done_progress: false,
            progress_token: None,
            failures: Arc::default(),
            test_runs: crossbeam_channel::unbounded(),
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
        self.pull = pulls_diagnostics(init);
        self.work_done_progress = init
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
    }

    /// Takes from the raw `initialize` params what lsp-types does not read:
    /// the specification names `workspace.diagnostics` (plural), lsp-types
    /// reads `workspace.diagnostic`; both are accepted.
    pub fn configure_raw(&mut self, params: &Value) {
        let workspace = &params["capabilities"]["workspace"];
        self.pull_refresh = ["diagnostics", "diagnostic"]
            .iter()
            .any(|k| workspace[k]["refreshSupport"] == Value::Bool(true));
    }

    /// A fresh id for a request the server sends.
    fn request_id(&mut self, what: &str) -> RequestId {
        self.next_request += 1;
        RequestId::from(format!("nudge/{what}/{}", self.next_request))
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
    /// once, requests are queued until [`Server::flush`] (or handed to a
    /// worker at once when nothing is waiting to be analysed). Returns how
    /// the server ends when the message was `exit`.
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
                    self.wait_for_workers();
                    self.shut_down = true;
                    self.send(Response::new_ok(req.id, Value::Null));
                } else {
                    self.enqueue(req);
                    // Nothing to analyse first: answered from the analysis of
                    // the text the request was sent for, before later edits
                    // are applied.
                    if self.queue.len() == 1 && !self.world.is_dirty() {
                        self.flush();
                    }
                }
            }
            Message::Notification(n) => match n.method.as_str() {
                "exit" => {
                    for r in self.running.values() {
                        r.cancel.stop(Stop::Cancelled);
                    }
                    return Some(self.ending());
                }
                "$/cancelRequest" => self.cancel(n.params),
                _ if self.shut_down => {}
                _ => self.handle_notification(n),
            },
            // Answers to the server's own requests (watcher registration).
            Message::Response(_) => {}
        }
        None
    }

    /// Queues a request with the version its document had when it arrived.
    fn enqueue(&mut self, req: Request) {
        let doc = request_document(&req.params).map(|path| {
            let version = self.world.document(&path).map(|d| d.version);
            (path, version)
        });
        self.queue.push(Queued { req, doc });
    }

    /// Cancels a request: a queued one is removed and answered with
    /// `RequestCanceled`, a running one is told to stop and answers so; a
    /// request already answered (or unknown) is left alone.
    fn cancel(&mut self, params: Value) {
        let Ok(p) = serde_json::from_value::<lsp::CancelParams>(params) else {
            return;
        };
        let id = match p.id {
            lsp::NumberOrString::Number(n) => RequestId::from(n),
            lsp::NumberOrString::String(s) => RequestId::from(s),
        };
        if let Some(i) = self.queue.iter().position(|q| q.req.id == id) {
            let q = self.queue.remove(i);
            self.send(Response::new_err(
                q.req.id,
                ErrorCode::RequestCanceled as i32,
                Stop::Cancelled.message().to_string(),
            ));
        } else if let Some(r) = self.running.get(&id) {
            r.cancel.stop(Stop::Cancelled);
        }
    }

    /// Tells the running requests that read `path` (every running request
    /// for `None`) that their answer would be stale.
    fn invalidate(&mut self, path: Option<&Path>) {
        self.forget_finished();
        for r in self.running.values() {
            if path.is_none() || r.project_wide || r.doc.as_deref() == path {
                r.cancel.stop(Stop::Modified);
            }
        }
    }

    /// Drops the records of requests the workers have answered.
    fn forget_finished(&mut self) {
        while let Ok(id) = self.done.1.try_recv() {
            self.running.remove(&id);
        }
    }

    /// Waits until every request handed to a worker is answered.
    fn wait_for_workers(&mut self) {
        self.forget_finished();
        while !self.running.is_empty() {
            match self.done.1.recv() {
                Ok(id) => {
                    self.running.remove(&id);
                }
                Err(_) => break,
            }
        }
    }

    /// Analyses what changed, then hands every queued request to a worker
    /// with that analysis.
    pub fn flush(&mut self) {
        if self.world.is_dirty() {
            self.refresh();
        }
        while let Ok(run) = self.test_runs.1.try_recv() {
            self.record_test(run);
        }
        self.forget_finished();
        for q in std::mem::take(&mut self.queue) {
            self.dispatch(q);
        }
    }

    /// Queues a request and answers it (with the queue before it) from the
    /// latest analysis.
    pub fn handle_request(&mut self, req: Request) {
        self.enqueue(req);
        self.flush();
    }

    /// Hands one request to a worker, or answers `ContentModified` when its
    /// document changed after it was sent: its positions refer to a text
    /// that was never analysed, since edits that arrive together are
    /// analysed once, as a whole.
    fn dispatch(&mut self, q: Queued) {
        let Queued { req, doc } = q;
        if let Some((path, Some(sent))) = &doc
            && self.world.document(path).map(|d| d.version) != Some(*sent)
        {
            let stop = Stop::Modified;
            self.send(Response::new_err(
                req.id,
                stop.code(),
                stop.message().to_string(),
            ));
            return;
        }
        let path = doc.map(|(p, _)| p);
        if let Some(path) = &path
            && self.world.locate(path).is_none()
            && !self.world.is_stdlib_path(path)
            && self.world.reload(path).is_some()
        {
            // A request for a file not opened and not yet in a project (an
            // editor that skips didOpen): read from disk and analysed first.
            self.refresh();
        }
        let view = View {
            doc: path.as_ref().and_then(|p| self.world.shared_locate(p)),
            all: self.world.shared_snapshots(),
            snippets: self.snippets,
            messages: Some(self.sender.clone()),
            tokens: self.tokens.clone(),
            test_runs: Some(self.test_runs.0.clone()),
            failures: self.failures.clone(),
        };
        let cancel = Cancel::new();
        let id = req.id.clone();
        self.running.insert(
            id.clone(),
            Running {
                cancel: cancel.clone(),
                doc: path,
                project_wide: reads_every_file(&req.method),
            },
        );
        let sender = self.sender.clone();
        let done = self.done.0.clone();
        self.pool.run(Box::new(move || {
            // A bug in one feature answers its request with an error; the
            // worker, the server and `shutdown` (which waits for every
            // answer) carry on.
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                view.answer(req, &cancel)
            }));
            let result = answered.unwrap_or_else(|_| {
                Err((
                    ErrorCode::InternalError,
                    "the server failed on this request".to_string(),
                ))
            });
            // Stopped while computing: the answer is stale even if finished.
            let response = match (cancel.stopped(), result) {
                (Some(stop), _) => {
                    Response::new_err(id.clone(), stop.code(), stop.message().into())
                }
                (None, Ok(value)) => Response::new_ok(id.clone(), value),
                (None, Err((code, message))) => Response::new_err(id.clone(), code as i32, message),
            };
            let _ = sender.send(response.into());
            let _ = done.send(id);
        }));
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

    /// Keeps the failed expectations of a test run and shows them: pushed
    /// with the file's other diagnostics, or pulled after a refresh request.
    /// A run on a text the file no longer has is dropped.
    pub fn record_test(&mut self, run: TestRun) {
        let Some((snap, file)) = self.world.locate(&run.path) else {
            return;
        };
        if runner::text_hash(snap.text(file)) != run.text_hash {
            return;
        }
        let Some(id) = self.world.find_project(&run.path) else {
            return;
        };
        Arc::make_mut(&mut self.failures).record(run);
        if !self.pull {
            self.publish(id);
        } else if self.pull_refresh {
            let id = self.request_id("diagnostic-refresh");
            self.send(Request::new(
                id,
                "workspace/diagnostic/refresh".to_string(),
                Value::Null,
            ));
        }
    }

    /// Analyses every changed project and publishes the diagnostics that changed.
    pub fn refresh(&mut self) {
        let dirty = self.world.dirty_projects();
        let progress = self.progress_token.take().filter(|_| !dirty.is_empty());
        let total = dirty.len();
        if let Some(token) = &progress {
            self.progress(
                token,
                lsp::WorkDoneProgress::Begin(lsp::WorkDoneProgressBegin {
                    title: "Analysing".to_string(),
                    cancellable: Some(false),
                    message: Some(format!("0/{total} projects")),
                    percentage: Some(0),
                }),
            );
        }
        for (done, &id) in dirty.iter().enumerate() {
            self.analyse(id);
            // A client that pulls diagnostics asks for them.
            if !self.pull {
                self.publish(id);
            }
            if let Some(token) = &progress {
                let root = self
                    .world
                    .project(id)
                    .map(|p| p.root.display().to_string())
                    .unwrap_or_default();
                self.progress(
                    token,
                    lsp::WorkDoneProgress::Report(lsp::WorkDoneProgressReport {
                        cancellable: Some(false),
                        message: Some(format!("{}/{total} projects: {root}", done + 1)),
                        percentage: Some(((done + 1) * 100 / total) as u32),
                    }),
                );
            }
        }
        if let Some(token) = &progress {
            self.progress(
                token,
                lsp::WorkDoneProgress::End(lsp::WorkDoneProgressEnd {
                    message: Some(format!(
                        "{total} project{} analysed",
                        if total == 1 { "" } else { "s" }
                    )),
                }),
            );
        }
        if !self.failures.is_empty() {
            // Failures of tests run on a text that has changed since.
            let world = &self.world;
            Arc::make_mut(&mut self.failures).retain(|path| {
                world
                    .locate(path)
                    .map(|(snap, file)| runner::text_hash(snap.text(file)))
            });
        }
        if self.pull {
            // Tell the client there is something new to ask for.
            if !dirty.is_empty() && self.pull_refresh {
                let id = self.request_id("diagnostic-refresh");
                self.send(Request::new(
                    id,
                    "workspace/diagnostic/refresh".to_string(),
                    Value::Null,
                ));
            }
            self.force.clear();
            return;
        }
        self.clear_orphans();
        self.force.clear();
    }

    /// Asks the client for a progress token when it can show progress, to
    /// report the first analysis of the workspace's projects with it. As
    /// rust-analyzer does, progress is reported without waiting for the
    /// client's answer: messages arrive in order, so the token exists by
    /// the time `$/progress` is read.
    pub fn start_progress(&mut self) {
        if !self.work_done_progress || !self.world.is_dirty() {
            return;
        }
        let token = "nudge/analysis".to_string();
        let id = self.request_id("progress");
        self.send(Request::new(
            id,
            "window/workDoneProgress/create".to_string(),
            lsp::WorkDoneProgressCreateParams {
                token: lsp::NumberOrString::String(token.clone()),
            },
        ));
        self.progress_token = Some(token);
    }

    fn progress(&self, token: &str, value: lsp::WorkDoneProgress) {
        self.send(Notification::new(
            "$/progress".to_string(),
            lsp::ProgressParams {
                token: lsp::NumberOrString::String(token.to_string()),
                value: lsp::ProgressParamsValue::WorkDone(value),
            },
        ));
    }

    /// Analyses one project, counted and traced.
    fn analyse(&mut self, id: ProjectId) {
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
            let mut lsp_diags = capped_diagnostics(snap, src, diags);
            lsp_diags.extend(self.failures.for_file(&path, snap.text(file)));
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
        // Files that left the project (deleted, moved) are cleared, and so
        // is its `nudge.toml` once fixed, which the project that held it
        // before a rebuild may have published.
        let gone: Vec<PathBuf> = self
            .published
            .iter()
            .filter(|(p, (owner, _))| {
                let manifest = p.ends_with(crate::world::MANIFEST) && snap.file_id(p).is_some();
                (*owner == id || manifest) && !seen.contains(*p)
            })
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
                    self.invalidate(Some(&path));
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
                self.invalidate(Some(&path));
                self.force.insert(path.clone());
                self.world.change(&path, text, p.text_document.version);
            }
            "textDocument/didClose" => {
                let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params)
                else {
                    return;
                };
                if let Some(path) = uri::to_path(&p.text_document.uri) {
                    self.invalidate(Some(&path));
                    if let Ok(mut tokens) = self.tokens.lock() {
                        tokens.remove(&path);
                    }
                    self.world.close(&path);
                }
            }
            "workspace/didChangeWatchedFiles" => {
                let Ok(p) = serde_json::from_value::<lsp::DidChangeWatchedFilesParams>(n.params)
                else {
                    return;
                };
                // Files changed on disk may be read by any running request.
                self.invalidate(None);
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
}

/// Applies one content change (a range edit, or the whole text) to a document.
pub fn apply_change(text: &mut String, change: lsp::TextDocumentContentChangeEvent) {
    match change.range {
        None => *text = change.text,
        Some(range) => {
            // Only the text up to the edit is read: a keystroke costs no
            // index of the whole file (50 of them arrive in a burst).
            let a = crate::lines::offset_in(text, range.start.line, range.start.character) as usize;
            let b = crate::lines::offset_in(text, range.end.line, range.end.character) as usize;
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

/// Converts for the protocol.
pub(crate) fn to_completion_item(i: completion::Item) -> lsp::CompletionItem {
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

/// Converts for the protocol.
pub(crate) fn to_signature_help(sig: signature::Signature) -> lsp::SignatureHelp {
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

/// Converts for the protocol.
pub(crate) fn symbol_kind_for(kind: &str) -> lsp::SymbolKind {
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
/// Converts for the protocol.
pub(crate) fn to_document_symbol(src: &LineIndex, i: outline::OutlineItem) -> lsp::DocumentSymbol {
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
