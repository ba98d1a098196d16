//! Answers to requests, computed from immutable, shared analyses: the
//! message loop hands each request to a worker thread with a [`View`] of
//! the latest analyses, so a long request never holds up the edits that
//! follow it, and a [`Cancel`] flag that the loop sets when the client
//! cancels the request or edits what it reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lsp_server::{ErrorCode, Request};
use lsp_types as lsp;
use nudge_diagnostics::{FileId, Span};
use serde_json::Value;

use crate::cancel::{Cancel, Stop};
use crate::lines::LineIndex;
use crate::server::{
    capped_diagnostics, encode_tokens, symbol_kind_for, to_completion_item, to_document_symbol,
    to_lsp_diagnostic, to_offset, to_position, to_range, to_signature_help,
};
use crate::world::Snapshot;
use crate::{
    actions, completion, hover, inlay, navigate, outline, runner, semantic, signature, structure,
    uri,
};

/// What a worker needs to answer a request: the analysis of the request's
/// document and every project's latest analysis, as they were when the
/// request was handed over.
#[derive(Clone, Default)]
pub struct View {
    /// The analysis holding the request's document, and its file id there.
    pub doc: Option<(Arc<Snapshot>, FileId)>,
    /// Every analysed project.
    pub all: Vec<Arc<Snapshot>>,
    /// Whether the client's completion inserts snippets.
    pub snippets: bool,
    /// Where messages for the user go (the result of a test run).
    pub messages: Option<crossbeam_channel::Sender<lsp_server::Message>>,
    /// The semantic tokens last sent for each document, for deltas.
    pub tokens: TokenCache,
    /// Where the results of test runs go, for the message loop to keep.
    pub test_runs: Option<crossbeam_channel::Sender<TestRun>>,
    /// The failed expectations of the tests last run, merged into pulled
    /// diagnostics.
    pub failures: Arc<TestFailures>,
}

/// Where the diagnostics of failed expectations say they come from.
pub const TEST_SOURCE: &str = "nudge test";

/// The result of one run of a test, sent by the worker that ran it to the
/// message loop, which keeps it (see [`TestFailures`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TestRun {
    /// The file that declares the test.
    pub path: PathBuf,
    /// The test's name.
    pub name: String,
    /// A hash of the file's text when the test ran ([`runner::text_hash`]).
    pub text_hash: u64,
    /// One diagnostic per expectation that did not hold; none when it passed.
    pub diagnostics: Vec<lsp::Diagnostic>,
}

/// The failed expectations of the tests last run from the code lens, per
/// file and test. They are shown as diagnostics beside the checker's for as
/// long as the file's text is the one the tests ran on: an edit moves or
/// fixes what they point at, and the checker's diagnostics are replaced on
/// every edit anyway.
#[derive(Clone, Debug, Default)]
pub struct TestFailures {
    files: HashMap<PathBuf, (u64, BTreeMap<String, Vec<lsp::Diagnostic>>)>,
}

impl TestFailures {
    /// Keeps a run's failures in place of the earlier ones of the same test;
    /// a run on another text than the kept ones replaces them all.
    pub fn record(&mut self, run: TestRun) {
        let entry = self
            .files
            .entry(run.path)
            .or_insert_with(|| (run.text_hash, BTreeMap::new()));
        if entry.0 != run.text_hash {
            *entry = (run.text_hash, BTreeMap::new());
        }
        if run.diagnostics.is_empty() {
            entry.1.remove(&run.name);
        } else {
            entry.1.insert(run.name, run.diagnostics);
        }
        self.files.retain(|_, (_, tests)| !tests.is_empty());
    }

    /// The failures to show in `path` when its text is `text`: none once
    /// the text changed.
    pub fn for_file(&self, path: &Path, text: &str) -> Vec<lsp::Diagnostic> {
        match self.files.get(path) {
            Some((hash, tests)) if *hash == runner::text_hash(text) => {
                tests.values().flatten().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the files whose text is no longer the one their tests ran
    /// on; `current` gives a file's hash now (`None` when it is gone).
    pub fn retain(&mut self, current: impl Fn(&Path) -> Option<u64>) {
        self.files
            .retain(|path, (hash, _)| current(path) == Some(*hash));
    }

    /// Whether no failure is kept.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The semantic tokens last sent for each document, with their result id,
/// shared by the workers and the message loop (which forgets a document
/// when it is closed).
pub type TokenCache = Arc<Mutex<HashMap<PathBuf, (String, Vec<lsp::SemanticToken>)>>>;

/// Numbers the semantic-token results, so that every one has its own id.
static NEXT_TOKENS_ID: AtomicU64 = AtomicU64::new(1);

/// The one edit that turns `old` tokens into `new`: the common tokens at
/// both ends are kept and the middle replaced; `None` when they are equal.
/// Offsets count integers, five per token, as the protocol wants.
pub fn tokens_edit(
    old: &[lsp::SemanticToken],
    new: &[lsp::SemanticToken],
) -> Option<lsp::SemanticTokensEdit> {
    if old == new {
        return None;
    }
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let inserted = &new[prefix..new.len() - suffix];
    Some(lsp::SemanticTokensEdit {
        start: (prefix * 5) as u32,
        delete_count: ((old.len() - prefix - suffix) * 5) as u32,
        data: (!inserted.is_empty()).then(|| inserted.to_vec()),
    })
}

impl From<Stop> for (ErrorCode, String) {
    fn from(stop: Stop) -> (ErrorCode, String) {
        let code = match stop {
            Stop::Cancelled => ErrorCode::RequestCanceled,
            Stop::Modified => ErrorCode::ContentModified,
        };
        (code, stop.message().to_string())
    }
}

/// A file's diagnostics as published (errors first, capped), computed
/// after a look at the cancel flag.
fn file_diagnostics(
    snap: &Snapshot,
    file: FileId,
    diags: Vec<&nudge_diagnostics::Diagnostic>,
    cancel: &Cancel,
) -> Result<Vec<lsp::Diagnostic>, Stop> {
    cancel.check()?;
    Ok(capped_diagnostics(snap, snap.lines(file), diags))
}

/// A pulled diagnostic report: `unchanged` when the client's previous
/// result id is that of these items, else `full` with a new id. The id is
/// a hash of the items, so it needs no memory of what was sent.
fn report(items: Vec<lsp::Diagnostic>, previous: Option<&str>, uri: Option<&str>) -> Value {
    let text = serde_json::to_string(&items).unwrap_or_default();
    // FNV-1a: stable across runs and threads.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let id = format!("{hash:016x}");
    let mut out = if previous == Some(id.as_str()) {
        serde_json::json!({ "kind": "unchanged", "resultId": id })
    } else {
        serde_json::json!({ "kind": "full", "resultId": id, "items": items })
    };
    if let Some(uri) = uri {
        out["uri"] = Value::String(uri.to_string());
    }
    out
}

impl View {
    /// Answers one request from the analyses in this view.
    pub fn answer(&self, req: Request, cancel: &Cancel) -> Result<Value, (ErrorCode, String)> {
        cancel.check()?;
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
                json(self.at(pos.position, |snap, file, src, off| {
                    hover::hover(snap, file, off).map(|h| lsp::Hover {
                        contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                            kind: lsp::MarkupKind::Markdown,
                            value: h.markdown,
                        }),
                        range: Some(to_range(src, h.range)),
                    })
                }))
            }
            "textDocument/completion" => {
                let p: lsp::CompletionParams = params(req.params)?;
                let pos = &p.text_document_position;
                let items = self
                    .at(pos.position, |snap, file, _, off| {
                        Some(completion::complete(snap, file, off))
                    })
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
                let loc = self.at(pos.position, |snap, file, _, off| {
                    navigate::definition(snap, file, off)
                });
                json(
                    loc.and_then(|l| self.location(&l))
                        .map(lsp::GotoDefinitionResponse::Scalar),
                )
            }
            "textDocument/references" => {
                let p: lsp::ReferenceParams = params(req.params)?;
                let pos = &p.text_document_position;
                let locs = self
                    .at(pos.position, |snap, file, _, off| {
                        Some(navigate::references(
                            snap,
                            file,
                            off,
                            p.context.include_declaration,
                        ))
                    })
                    .unwrap_or_default();
                let mut out: Vec<lsp::Location> = Vec::with_capacity(locs.len());
                for (i, l) in locs.iter().enumerate() {
                    if i % 1024 == 0 {
                        cancel.check()?;
                    }
                    out.extend(self.location(l));
                }
                json(out)
            }
            "textDocument/prepareRename" => {
                let p: lsp::TextDocumentPositionParams = params(req.params)?;
                let result = self.at(p.position, |snap, file, src, off| {
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
                let result = self.at(pos.position, |snap, file, _, off| {
                    Some(navigate::rename(snap, file, off, &p.new_name))
                });
                match result {
                    Some(Ok(edits)) => json(self.workspace_edit(edits)),
                    Some(Err(e)) => Err((ErrorCode::RequestFailed, e.to_string())),
                    None => Err((ErrorCode::RequestFailed, "no such document".to_string())),
                }
            }
            "textDocument/documentSymbol" => {
                let _: lsp::DocumentSymbolParams = params(req.params)?;
                let syms = self.file(|snap, file, src| {
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
                let found = outline::workspace_symbols_until(
                    self.all.iter().map(|s| &**s),
                    &p.query,
                    200,
                    cancel,
                )?;
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
                let _: lsp::DocumentFormattingParams = params(req.params)?;
                let edits = self.file(|snap, file, src| {
                    let text = snap.text(file);
                    let formatted = actions::format(text)?;
                    Some(vec![lsp::TextEdit {
                        range: to_range(src, Span::new(0, text.len())),
                        new_text: formatted,
                    }])
                });
                json(edits.unwrap_or_default())
            }
            "textDocument/rangeFormatting" => {
                // Only the changes `nudge fmt` would make to these lines.
                let p: lsp::DocumentRangeFormattingParams = params(req.params)?;
                let edits = self.file(|snap, file, src| {
                    let range = Span {
                        start: to_offset(src, p.range.start),
                        end: to_offset(src, p.range.end),
                    };
                    let edits = actions::format_range(snap.text(file), range);
                    Some(
                        edits
                            .into_iter()
                            .map(|(span, new_text)| lsp::TextEdit {
                                range: to_range(src, span),
                                new_text,
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                json(edits.unwrap_or_default())
            }
            "textDocument/codeLens" => {
                let _: lsp::CodeLensParams = params(req.params)?;
                let lenses = self.file(|snap, file, src| {
                    let path = snap.path(file)?;
                    let uri = uri::from_path(path);
                    let blocks = runner::test_blocks(snap, file);
                    Some(
                        blocks
                            .into_iter()
                            .map(|t| lsp::CodeLens {
                                range: to_range(src, t.header),
                                command: Some(lsp::Command {
                                    title: "▶ Run test".to_string(),
                                    command: runner::RUN_TEST.to_string(),
                                    arguments: Some(vec![
                                        Value::String(uri.as_str().to_string()),
                                        Value::String(t.name),
                                    ]),
                                }),
                                data: None,
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                json(lenses.unwrap_or_default())
            }
            "workspace/executeCommand" => {
                let p: lsp::ExecuteCommandParams = params(req.params)?;
                if p.command != runner::RUN_TEST {
                    return Err((
                        ErrorCode::InvalidParams,
                        format!("unknown command {}", p.command),
                    ));
                }
                let Some(Value::String(name)) = p.arguments.get(1) else {
                    return Err((
                        ErrorCode::InvalidParams,
                        format!("{} takes a document URI and a test name", runner::RUN_TEST),
                    ));
                };
                let Some((snap, file)) = &self.doc else {
                    return Err((
                        ErrorCode::InvalidParams,
                        "the test's document is not in any project".to_string(),
                    ));
                };
                match runner::run_test(snap, *file, name) {
                    Ok(outcome) => {
                        self.keep_failures(snap, *file, name, &outcome, cancel);
                        let kind = if outcome.passed {
                            lsp::MessageType::INFO
                        } else {
                            lsp::MessageType::ERROR
                        };
                        if !outcome.passed {
                            self.tell("window/logMessage", kind, outcome.details.clone());
                        }
                        self.tell("window/showMessage", kind, outcome.summary.clone());
                        json(serde_json::json!({
                            "passed": outcome.passed,
                            "summary": outcome.summary,
                            "failedLines": outcome.failures.iter().map(|f| f.line).collect::<Vec<_>>(),
                        }))
                    }
                    Err(why) => {
                        self.tell("window/showMessage", lsp::MessageType::ERROR, why.clone());
                        Err((ErrorCode::RequestFailed, why))
                    }
                }
            }
            "textDocument/diagnostic" => {
                let p: lsp::DocumentDiagnosticParams = params(req.params)?;
                let items = match &self.doc {
                    Some((snap, file)) => {
                        let path = snap.path(*file);
                        let diags = path
                            .and_then(|path| snap.diagnostics_by_path().remove(path))
                            .unwrap_or_default();
                        let mut items = file_diagnostics(snap, *file, diags, cancel)?;
                        if let Some(path) = path {
                            items.extend(self.failures.for_file(path, snap.text(*file)));
                        }
                        items
                    }
                    None => Vec::new(),
                };
                json(report(items, p.previous_result_id.as_deref(), None))
            }
            "workspace/diagnostic" => {
                let p: lsp::WorkspaceDiagnosticParams = params(req.params)?;
                let previous: HashMap<String, String> = p
                    .previous_result_ids
                    .into_iter()
                    .map(|r| (r.uri.as_str().to_string(), r.value))
                    .collect();
                let mut reports = Vec::new();
                for snap in &self.all {
                    for (path, diags) in snap.diagnostics_by_path() {
                        let Some(file) = snap.file_id(&path) else {
                            continue;
                        };
                        let uri = uri::from_path(&path).as_str().to_string();
                        let mut items = file_diagnostics(snap, file, diags, cancel)?;
                        items.extend(self.failures.for_file(&path, snap.text(file)));
                        let mut r =
                            report(items, previous.get(&uri).map(String::as_str), Some(&uri));
                        r["version"] = serde_json::json!(snap.version(&path));
                        reports.push(r);
                    }
                }
                json(serde_json::json!({ "items": reports }))
            }
            "textDocument/semanticTokens/full" => {
                let _: lsp::SemanticTokensParams = params(req.params)?;
                let tokens = self.full_tokens(cancel)?;
                json(tokens.map(|(result_id, data)| {
                    lsp::SemanticTokensResult::Tokens(lsp::SemanticTokens {
                        result_id: Some(result_id),
                        data,
                    })
                }))
            }
            "textDocument/semanticTokens/full/delta" => {
                let p: lsp::SemanticTokensDeltaParams = params(req.params)?;
                let previous = self.doc.as_ref().and_then(|(snap, file)| {
                    let path = snap.path(*file)?;
                    let cache = self.tokens.lock().ok()?;
                    let (id, data) = cache.get(path)?;
                    (*id == p.previous_result_id).then(|| data.clone())
                });
                let tokens = self.full_tokens(cancel)?;
                json(tokens.map(|(result_id, data)| match previous {
                    // What the client holds is known: only what changed.
                    Some(old) => {
                        lsp::SemanticTokensFullDeltaResult::TokensDelta(lsp::SemanticTokensDelta {
                            result_id: Some(result_id),
                            edits: tokens_edit(&old, &data).into_iter().collect(),
                        })
                    }
                    // An id from another time: everything.
                    None => lsp::SemanticTokensFullDeltaResult::Tokens(lsp::SemanticTokens {
                        result_id: Some(result_id),
                        data,
                    }),
                }))
            }
            "textDocument/semanticTokens/range" => {
                // The visible part of a long file, so the editor colours it first.
                let p: lsp::SemanticTokensRangeParams = params(req.params)?;
                let tokens = self.file(|snap, file, src| {
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
                    .file(|snap, file, src| {
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
                    && let Some((snap, file)) = self.locate(&path)
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
                let hints = self.file(|snap, file, src| {
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
                let help = self.at(pos.position, |snap, file, _, off| {
                    signature::signature_help(snap, file, off)
                });
                json(help.map(to_signature_help))
            }
            "textDocument/foldingRange" => {
                let _: lsp::FoldingRangeParams = params(req.params)?;
                let folds = self.file(|snap, file, src| {
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
                let ranges = self.file(|snap, file, src| {
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
                let found = self.at(pos.position, |snap, file, src, off| {
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
                });
                json(found.unwrap_or_default())
            }
            "textDocument/documentLink" => {
                let _: lsp::DocumentLinkParams = params(req.params)?;
                let links = self.file(|snap, file, src| {
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

    /// The request's document's semantic tokens with a new result id,
    /// remembered for the next delta.
    fn full_tokens(
        &self,
        cancel: &Cancel,
    ) -> Result<Option<(String, Vec<lsp::SemanticToken>)>, Stop> {
        let Some((snap, file)) = &self.doc else {
            return Ok(None);
        };
        if snap.source(*file).is_none() {
            return Ok(None);
        }
        let tokens = semantic::semantic_tokens_until(snap, *file, cancel)?;
        let data = encode_tokens(snap.lines(*file), &tokens);
        cancel.check()?;
        let id = NEXT_TOKENS_ID.fetch_add(1, Ordering::Relaxed).to_string();
        if let (Some(path), Ok(mut cache)) = (snap.path(*file), self.tokens.lock()) {
            cache.insert(path.to_path_buf(), (id.clone(), data.clone()));
        }
        Ok(Some((id, data)))
    }

    /// Sends the user a message (`window/showMessage` or `window/logMessage`).
    /// Sends the failed expectations of a test run to the message loop, which
    /// shows them as diagnostics at their lines (and clears them on a pass).
    fn keep_failures(
        &self,
        snap: &Snapshot,
        file: FileId,
        name: &str,
        outcome: &runner::Outcome,
        cancel: &Cancel,
    ) {
        // A stopped run is answered with an error: its result is not shown.
        if cancel.stopped().is_some() {
            return;
        }
        let (Some(tx), Some(path)) = (&self.test_runs, snap.path(file)) else {
            return;
        };
        let src = snap.lines(file);
        let diagnostics = outcome
            .failures
            .iter()
            .map(|f| lsp::Diagnostic {
                range: to_range(src, f.span),
                severity: Some(lsp::DiagnosticSeverity::ERROR),
                source: Some(TEST_SOURCE.to_string()),
                message: f.message.clone(),
                ..Default::default()
            })
            .collect();
        let _ = tx.send(TestRun {
            path: path.to_path_buf(),
            name: name.to_string(),
            text_hash: runner::text_hash(snap.text(file)),
            diagnostics,
        });
    }

    fn tell(&self, method: &str, typ: lsp::MessageType, message: String) {
        if let Some(tx) = &self.messages {
            let note = lsp_server::Notification::new(
                method.to_string(),
                lsp::ShowMessageParams { typ, message },
            );
            let _ = tx.send(note.into());
        }
    }

    /// Runs `f` on the analysis of the request's document at a position.
    fn at<T>(
        &self,
        pos: lsp::Position,
        f: impl FnOnce(&Snapshot, FileId, &LineIndex, u32) -> Option<T>,
    ) -> Option<T> {
        self.file(|snap, file, src| f(snap, file, src, to_offset(src, pos)))
    }

    /// Runs `f` on the analysis of the request's document, if it has one.
    fn file<T>(&self, f: impl FnOnce(&Snapshot, FileId, &LineIndex) -> Option<T>) -> Option<T> {
        let (snap, file) = self.doc.as_ref()?;
        snap.source(*file)?;
        f(snap, *file, snap.lines(*file))
    }

    /// The analysis holding a file: the request's document's first (a
    /// definition in the same project), then any other project's.
    pub fn locate(&self, path: &Path) -> Option<(&Snapshot, FileId)> {
        self.doc
            .iter()
            .map(|(s, _)| s)
            .chain(self.all.iter())
            .find_map(|s| s.file_id(path).map(|f| (&**s, f)))
    }

    fn location(&self, loc: &navigate::Location) -> Option<lsp::Location> {
        let (snap, file) = self.locate(&loc.path)?;
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
            let Some((snap, file)) = self.locate(&path) else {
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
