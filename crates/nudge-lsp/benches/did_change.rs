//! Latency of the language server: from a `didChange` on a 5,000-line project
//! to its `publishDiagnostics`, and from a burst of 50 keystrokes to the
//! diagnostics of the last one (and, with a completion behind the burst, to
//! its answer), through the server core in-process (no stdio); and one
//! analysis after a one-file edit, parsing every file against reusing the
//! trees of the unchanged ones; and a check with and without building the
//! typed IR.
//! Run with `cargo bench -p nudge-lsp --bench did_change`.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lsp_server::{Message, Notification, Request, RequestId};
use nudge_lsp::Snapshot;
use nudge_lsp::server::Server;
use serde_json::json;

/// One block of declarations; `{n}` is replaced by the block's number.
const BLOCK: &str = r#"// Block {n}: a cart flow with the usual rules.
let threshold_{n} = $50.00
let cart_url_{n} = "https://shop.example/cart/{n}"

segment loyal_{n} = profile.orders_count > 3 and profile.total_spent >= threshold_{n}

message reminder_{n}(products: list<Product>, url: string) {
  channel email
  subject "{profile.first_name ?? "Hi"}, you left {len(products)} items behind"
  body "Your cart is saved: {url}"
}

message nudge_sms_{n}(url: string) {
  channel sms
  text "Still thinking it over? {url}"
}

flow cart_{n} {
  trigger checkout_started where event.value > $0
  entry once per 7d
  exit on order_completed
  suppress if profile.total_spent > $10000
  quiet hours 21:00 to 08:00
  cap email 1 per 16h
  goal order_completed within 5d

  wait 1h
  send reminder_{n}(trigger.products, cart_url_{n})
  let bought = wait for order_completed where event.order_id != "" within 1d
  if bought != none {
    exit
  }
  if loyal_{n} and any(trigger.products, p => p.price > threshold_{n}) {
    send nudge_sms_{n}(cart_url_{n})
  } else {
    wait 2h
    send reminder_{n}(filter(trigger.products, p => p.quantity > 1), cart_url_{n})
  }
  on exit {
    audience remove "cart_abandoners_{n}"
  }
}
"#;

/// A project of about `lines` lines in files of about 1,000 lines.
fn generate(root: &std::path::Path, lines: usize) -> Vec<(PathBuf, String)> {
    let block_lines = BLOCK.lines().count() + 1;
    let blocks = lines.div_ceil(block_lines);
    let per_file = 1000 / block_lines;
    let mut files = Vec::new();
    let mut text = String::new();
    for n in 0..blocks {
        text.push_str(&BLOCK.replace("{n}", &n.to_string()));
        text.push('\n');
        if (n + 1) % per_file == 0 || n + 1 == blocks {
            files.push((
                root.join(format!("file_{}.flow", files.len())),
                std::mem::take(&mut text),
            ));
        }
    }
    files
}

fn bench_did_change(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files = generate(&root, 5_000);
    let lines: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
    let (edited_path, clean) = files[0].clone();
    // The edit a typist makes: one event name misspelled, then corrected.
    let broken = clean.replacen("exit on order_completed", "exit on order_complted", 1);
    let uri = nudge_lsp::uri::from_path(&edited_path);

    let (tx, rx) = crossbeam_channel::unbounded();
    let mut server = Server::new(tx, PathBuf::from("/bench/stdlib"));
    server.world.add_project_in_memory(root, files);
    server.handle_notification(Notification::new(
        "textDocument/didOpen".to_string(),
        json!({ "textDocument": { "uri": uri.as_str(), "languageId": "nudge", "version": 1, "text": clean } }),
    ));
    server.refresh();
    let errors = server
        .world
        .snapshots()
        .flat_map(|s| s.analysis.diagnostics.iter())
        .filter(|d| d.is_error())
        .count();
    assert_eq!(errors, 0, "the generated project must check cleanly");
    while rx.try_recv().is_ok() {}
    eprintln!("project: {lines} lines");

    let mut version = 1;
    c.bench_function("didChange to publishDiagnostics, 5,000-line project", |b| {
        b.iter(|| {
            version += 1;
            let text = if version % 2 == 0 { &broken } else { &clean };
            server.handle_notification(Notification::new(
                "textDocument/didChange".to_string(),
                json!({
                    "textDocument": { "uri": uri.as_str(), "version": version },
                    "contentChanges": [{ "text": text }]
                }),
            ));
            server.refresh();
            // The edited file's diagnostics are what the editor waits for.
            loop {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Message::Notification(n))
                        if n.method == "textDocument/publishDiagnostics"
                            && n.params["uri"] == uri.as_str() =>
                    {
                        let count = n.params["diagnostics"].as_array().map_or(0, Vec::len);
                        assert_eq!(count, usize::from(version % 2 == 0));
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("no diagnostics published: {e}"),
                }
            }
        })
    });
}

/// 50 keystrokes that arrive together, as the message loop takes them: each
/// applied on arrival, then one analysis, until the edited file's diagnostics.
fn bench_burst(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files = generate(&root, 5_000);
    let (edited_path, clean) = files[0].clone();
    let uri = nudge_lsp::uri::from_path(&edited_path);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut server = Server::new(tx, PathBuf::from("/bench/stdlib"));
    server.world.add_project_in_memory(root, files);
    server.accept(
        Notification::new(
            "textDocument/didOpen".to_string(),
            json!({ "textDocument": { "uri": uri.as_str(), "languageId": "nudge", "version": 1, "text": clean } }),
        )
        .into(),
    );
    server.flush();
    while rx.try_recv().is_ok() {}

    let mut version = 1;
    c.bench_function(
        "50 keystrokes at once to publishDiagnostics, 5,000-line project",
        |b| {
            b.iter(|| {
                // Typing into the first line's comment, one character at a time.
                for _ in 0..50 {
                    version += 1;
                    server.accept(
                        Notification::new(
                            "textDocument/didChange".to_string(),
                            json!({
                                "textDocument": { "uri": uri.as_str(), "version": version },
                                "contentChanges": [{
                                    "range": { "start": { "line": 0, "character": 2 }, "end": { "line": 0, "character": 2 } },
                                    "text": "x"
                                }]
                            }),
                        )
                        .into(),
                    );
                }
                server.flush();
                loop {
                    match rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(Message::Notification(n))
                            if n.method == "textDocument/publishDiagnostics"
                                && n.params["uri"] == uri.as_str() =>
                        {
                            assert_eq!(n.params["version"], version);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => panic!("no diagnostics published: {e}"),
                    }
                }
            })
        },
    );
}

/// The same burst with a request behind it, as an editor sends a
/// completion after typing: the time until the request is answered, from
/// the analysis of the last keystroke, on a worker thread.
fn bench_burst_then_request(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files = generate(&root, 5_000);
    let (edited_path, clean) = files[0].clone();
    let uri = nudge_lsp::uri::from_path(&edited_path);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut server = Server::new(tx, PathBuf::from("/bench/stdlib"));
    server.world.add_project_in_memory(root, files);
    server.accept(
        Notification::new(
            "textDocument/didOpen".to_string(),
            json!({ "textDocument": { "uri": uri.as_str(), "languageId": "nudge", "version": 1, "text": clean } }),
        )
        .into(),
    );
    server.flush();
    while rx.try_recv().is_ok() {}

    let mut version = 1;
    let mut id = 0;
    c.bench_function(
        "50 keystrokes and a completion at once to its answer, 5,000-line project",
        |b| {
            b.iter(|| {
                for _ in 0..50 {
                    version += 1;
                    server.accept(
                        Notification::new(
                            "textDocument/didChange".to_string(),
                            json!({
                                "textDocument": { "uri": uri.as_str(), "version": version },
                                "contentChanges": [{
                                    "range": { "start": { "line": 0, "character": 2 }, "end": { "line": 0, "character": 2 } },
                                    "text": "x"
                                }]
                            }),
                        )
                        .into(),
                    );
                }
                id += 1;
                server.accept(
                    Request::new(
                        RequestId::from(id),
                        "textDocument/completion".to_string(),
                        json!({ "textDocument": { "uri": uri.as_str() }, "position": { "line": 20, "character": 2 } }),
                    )
                    .into(),
                );
                server.flush();
                loop {
                    match rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(Message::Response(r)) if r.id == RequestId::from(id) => {
                            let items = r.response_result.expect("completion items");
                            assert!(items.as_array().is_some_and(|a| !a.is_empty()));
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => panic!("no answer: {e}"),
                    }
                }
            })
        },
    );
}

/// The 50 keystrokes alone: each applied as it arrives, without the
/// analysis, to tell what a burst costs beyond the one analysis.
fn bench_burst_apply(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files = generate(&root, 5_000);
    let (edited_path, clean) = files[0].clone();
    let uri = nudge_lsp::uri::from_path(&edited_path);
    let (tx, _rx) = crossbeam_channel::unbounded();
    let mut server = Server::new(tx, PathBuf::from("/bench/stdlib"));
    server.world.add_project_in_memory(root, files);
    let mut version = 1;
    let open = |server: &mut Server, version: i32| {
        server.accept(
            Notification::new(
                "textDocument/didOpen".to_string(),
                json!({ "textDocument": { "uri": uri.as_str(), "languageId": "nudge", "version": version, "text": clean } }),
            )
            .into(),
        );
    };
    open(&mut server, version);
    server.flush();
    c.bench_function("50 keystrokes applied, without the analysis", |b| {
        b.iter(|| {
            for _ in 0..50 {
                version += 1;
                server.accept(
                    Notification::new(
                        "textDocument/didChange".to_string(),
                        json!({
                            "textDocument": { "uri": uri.as_str(), "version": version },
                            "contentChanges": [{
                                "range": { "start": { "line": 0, "character": 2 }, "end": { "line": 0, "character": 2 } },
                                "text": "x"
                            }]
                        }),
                    )
                    .into(),
                );
            }
            // The same text each round, as in the bursts above.
            version += 1;
            open(&mut server, version);
        })
    });
}

/// The analysis an edit of one file sets off, on the same 5,000-line
/// project: every file parsed (the baseline), and the unchanged files'
/// trees taken from the previous analysis.
fn bench_reanalyse(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files = generate(&root, 5_000);
    let stdlib = PathBuf::from("/bench/stdlib");
    let mut edited = files.clone();
    edited[0].1 = edited[0]
        .1
        .replacen("exit on order_completed", "exit on order_complted", 1);
    let previous = Snapshot::analyse(files, &stdlib);
    let errors = |s: &Snapshot| {
        s.analysis
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count()
    };
    assert_eq!(
        errors(&previous),
        0,
        "the generated project must check cleanly"
    );
    let mut group = c.benchmark_group("analysis after a one-file edit, 5,000-line project");
    group.bench_function("every file parsed", |b| {
        b.iter(|| {
            let snap = Snapshot::analyse(edited.clone(), &stdlib);
            assert_eq!(errors(&snap), 1);
            snap
        })
    });
    group.bench_function("unchanged files' trees reused", |b| {
        b.iter(|| {
            let snap = Snapshot::analyse_reusing(edited.clone(), &stdlib, Some(&previous));
            assert_eq!(errors(&snap), 1);
            snap
        })
    });
    group.finish();
}

/// What building the typed IR adds to a check: the same 5,000-line project
/// checked clean (the checker ends by building the typed IR) and with one
/// misspelled event (the IR is not built for a project with errors).
fn bench_typed_ir(c: &mut Criterion) {
    let root = PathBuf::from("/bench/project");
    let files: Vec<(String, String)> = generate(&root, 5_000)
        .into_iter()
        .map(|(p, t)| (p.display().to_string(), t))
        .collect();
    let mut broken = files.clone();
    broken[0].1 = broken[0]
        .1
        .replacen("exit on order_completed", "exit on order_complted", 1);
    let mut group = c.benchmark_group("check of a 5,000-line project");
    for (name, sources, ir) in [
        ("clean, typed IR built", files, true),
        ("one error, no typed IR", broken, false),
    ] {
        let project = nudge_compiler::Project::from_sources(sources);
        group.bench_function(name, |b| {
            b.iter(|| {
                let analysis = nudge_compiler::check(&project);
                assert_eq!(analysis.program().is_some(), ir);
                analysis
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench_did_change, bench_burst, bench_burst_then_request, bench_burst_apply, bench_reanalyse, bench_typed_ir
}
criterion_main!(benches);
