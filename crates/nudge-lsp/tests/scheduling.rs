//! The message loop, driven in-process with every message queued before the
//! server looks at them: bursts analysed once, cancellation, the shutdown
//! sequence, and watched files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use nudge_lsp::server::Ending;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

fn uri(path: &Path) -> String {
    nudge_lsp::uri::from_path(path).as_str().to_string()
}

/// A client whose messages are queued on an in-memory connection.
struct Client {
    conn: Connection,
    server: Option<Connection>,
    stdlib: PathBuf,
    thread: Option<std::thread::JoinHandle<Ending>>,
}

impl Client {
    fn new(root: &Path, stdlib: &Path, capabilities: Value) -> Client {
        let (server, conn) = Connection::memory();
        let c = Client {
            conn,
            server: Some(server),
            stdlib: stdlib.to_path_buf(),
            thread: None,
        };
        c.request(
            0,
            "initialize",
            json!({ "capabilities": capabilities, "rootUri": uri(root), "trace": "messages" }),
        );
        c.notify("initialized", json!({}));
        c
    }

    /// Starts the server on everything queued so far.
    fn start(&mut self) {
        let server = self.server.take().expect("started once");
        let stdlib = self.stdlib.clone();
        self.thread = Some(std::thread::spawn(move || {
            nudge_lsp::run(server, stdlib).expect("the server ends cleanly")
        }));
    }

    fn notify(&self, method: &str, params: Value) {
        self.conn
            .sender
            .send(Notification::new(method.to_string(), params).into())
            .unwrap();
    }

    fn request(&self, id: i32, method: &str, params: Value) {
        self.conn
            .sender
            .send(Request::new(RequestId::from(id), method.to_string(), params).into())
            .unwrap();
    }

    fn next(&self) -> Message {
        self.conn
            .receiver
            .recv_timeout(TIMEOUT)
            .expect("a message in time")
    }

    /// Every message up to the response to `id`, and that response as JSON.
    fn until_response(&self, id: i32) -> (Vec<Message>, Value) {
        let mut seen = Vec::new();
        loop {
            match self.next() {
                Message::Response(r) if r.id == RequestId::from(id) => {
                    return (seen, serde_json::to_value(r).unwrap());
                }
                m => seen.push(m),
            }
        }
    }

    /// Every other message up to the responses to `ids`, and those responses
    /// in the order of `ids`, whatever order they came in: requests answered
    /// on different worker threads may overtake each other.
    fn until_responses(&self, ids: &[i32]) -> (Vec<Message>, Vec<Value>) {
        let mut seen = Vec::new();
        let mut got: Vec<Option<Value>> = vec![None; ids.len()];
        while got.iter().any(Option::is_none) {
            match self.next() {
                Message::Response(r) if ids.iter().any(|&id| r.id == RequestId::from(id)) => {
                    let k = ids.iter().position(|&id| r.id == RequestId::from(id));
                    got[k.unwrap()] = Some(serde_json::to_value(r).unwrap());
                }
                m => seen.push(m),
            }
        }
        (seen, got.into_iter().flatten().collect())
    }

    fn diagnostics_for(&self, file: &Path) -> Vec<Value> {
        let want = uri(file);
        loop {
            if let Message::Notification(n) = self.next()
                && n.method == "textDocument/publishDiagnostics"
                && n.params["uri"] == want.as_str()
            {
                return n.params["diagnostics"].as_array().unwrap().clone();
            }
        }
    }

    fn ending(mut self) -> Ending {
        self.thread.take().unwrap().join().unwrap()
    }
}

fn analyses(msgs: &[Message]) -> usize {
    msgs.iter()
        .filter(|m| {
            matches!(m, Message::Notification(n) if n.method == "$/logTrace"
                && n.params["message"].as_str().unwrap_or("").starts_with("analysed "))
        })
        .count()
}

fn codes(diags: &[Value]) -> Vec<String> {
    diags
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect()
}

fn flow_named(name: &str) -> String {
    format!("flow {name} {{\n  trigger subscribed\n  exit on order_completed\n}}\n")
}

#[test]
fn a_burst_of_edits_is_analysed_once_and_answered_from_the_latest_text() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let flow = root.join("a.flow");
    std::fs::write(&flow, flow_named("a")).unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow), "languageId": "nudge", "version": 1, "text": flow_named("a") } }),
    );
    for v in 2..52 {
        c.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri(&flow), "version": v }, "contentChanges": [{ "text": flow_named(&format!("f{v}")) }] }),
        );
    }
    c.request(
        1,
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri(&flow) } }),
    );
    c.start();
    let (seen, answer) = c.until_response(1);
    // The start-up analysis, the open and the 50 edits: one analysis.
    assert_eq!(analyses(&seen), 1, "{seen:?}");
    assert_eq!(answer["result"][0]["name"], "f51");
    let published: Vec<&Value> = seen
        .iter()
        .filter_map(|m| match m {
            Message::Notification(n) if n.method == "textDocument/publishDiagnostics" => {
                Some(&n.params)
            }
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["version"], 51);
    c.request(2, "shutdown", Value::Null);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::Clean);
}

#[test]
fn a_cancelled_request_is_answered_with_request_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("a.flow");
    std::fs::write(&flow, flow_named("a")).unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    let doc = json!({ "textDocument": { "uri": uri(&flow) } });
    c.request(1, "textDocument/documentSymbol", doc.clone());
    c.request(2, "textDocument/documentSymbol", doc.clone());
    c.notify("$/cancelRequest", json!({ "id": 1 }));
    // Cancelling what is unknown changes nothing.
    c.notify("$/cancelRequest", json!({ "id": 99 }));
    c.start();
    let (_, first) = c.until_response(1);
    assert_eq!(first["error"]["code"], -32800);
    let (_, second) = c.until_response(2);
    assert_eq!(second["result"][0]["name"], "a");
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn requests_after_shutdown_are_invalid_and_exit_ends_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    c.request(1, "shutdown", Value::Null);
    c.request(2, "workspace/symbol", json!({ "query": "" }));
    c.notify("exit", Value::Null);
    c.start();
    let (_, shutdown) = c.until_response(1);
    assert_eq!(shutdown["result"], Value::Null);
    assert!(shutdown.get("error").is_none());
    let (_, after) = c.until_response(2);
    assert_eq!(after["error"]["code"], -32600);
    assert_eq!(c.ending(), Ending::Clean);
}

#[test]
fn watchers_are_registered_and_changes_on_disk_are_analysed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("cart.flow");
    let msgs = root.join("messages.flow");
    std::fs::write(
        &flow,
        "flow cart {\n  trigger subscribed\n  send hello()\n}\n",
    )
    .unwrap();
    let message = "message hello() {\n  channel email\n  subject \"Hi\"\n  body template \"templates/hello.html\"\n}\n";
    std::fs::write(&msgs, message).unwrap();
    let caps = json!({ "workspace": { "didChangeWatchedFiles": { "dynamicRegistration": true } } });
    let mut c = Client::new(&root, &root.join("stdlib"), caps);
    c.start();

    // The registration asks for flows, manifests and templates.
    let registration = loop {
        if let Message::Request(r) = c.next()
            && r.method == "client/registerCapability"
        {
            break r;
        }
    };
    let reg = &registration.params["registrations"][0];
    assert_eq!(reg["method"], "workspace/didChangeWatchedFiles");
    let globs: Vec<&str> = reg["registerOptions"]["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["globPattern"].as_str().unwrap())
        .collect();
    assert!(globs.contains(&"**/*.flow"));
    assert!(globs.contains(&"**/nudge.toml"));
    assert!(globs.contains(&"**/templates/**"));

    // The template is missing.
    assert_eq!(codes(&c.diagnostics_for(&msgs)), ["E0405"]);
    // Created on disk: the watcher's report clears the error.
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(root.join("templates/hello.html"), "<p>Hi</p>").unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": uri(&root.join("templates/hello.html")), "type": 1 }] }),
    );
    let after = c.diagnostics_for(&msgs);
    assert!(after.is_empty(), "{after:?}");

    // A flow changed on disk (a `git checkout`) is read again.
    std::fs::write(
        &flow,
        "flow cart {\n  trigger subscribed\n  send hullo()\n}\n",
    )
    .unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": uri(&flow), "type": 2 }] }),
    );
    assert_eq!(codes(&c.diagnostics_for(&flow)), ["E0203"]);

    // Deleted: its diagnostics are cleared.
    std::fs::remove_file(&flow).unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": uri(&flow), "type": 3 }] }),
    );
    assert!(c.diagnostics_for(&flow).is_empty());
    c.request(9, "shutdown", Value::Null);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::Clean);
}

#[test]
fn a_new_manifest_splits_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let flow = root.join("sub/welcome.flow");
    std::fs::write(
        &flow,
        "flow welcome {\n  trigger subscribed\n  send hello()\n}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("messages.flow"),
        "message hello() {\n  channel email\n  subject \"Hi\"\n  body \"Welcome\"\n}\n",
    )
    .unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    c.start();
    // One project of the whole folder: the message is found.
    assert!(c.diagnostics_for(&flow).is_empty());
    std::fs::write(root.join("sub/nudge.toml"), "").unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": uri(&root.join("sub/nudge.toml")), "type": 1 }] }),
    );
    // `sub` is a project of its own now, without the message.
    assert_eq!(codes(&c.diagnostics_for(&flow)), ["E0203"]);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn saving_a_flow_reads_its_templates_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let msgs = root.join("messages.flow");
    let message =
        "message hello() {\n  channel email\n  subject \"Hi\"\n  body template \"hello.html\"\n}\n";
    std::fs::write(&msgs, message).unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&msgs), "languageId": "nudge", "version": 1, "text": message } }),
    );
    c.start();
    assert_eq!(codes(&c.diagnostics_for(&msgs)), ["E0405"]);
    std::fs::write(root.join("hello.html"), "<p>Hi</p>").unwrap();
    c.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": uri(&msgs) } }),
    );
    // Only the warning that nothing sends the message is left.
    assert_eq!(codes(&c.diagnostics_for(&msgs)), ["W0006"]);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn a_file_outside_every_project_is_analysed_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let dir = root.join("loose");
    std::fs::create_dir_all(&dir).unwrap();
    // A broken neighbour that must not be loaded.
    std::fs::write(dir.join("other.flow"), "flow other {\n  trigger nope\n}\n").unwrap();
    let lone = dir.join("lone.flow");
    let text = "flow lone {\n  trigger subscribed\n}\n";
    std::fs::write(&lone, text).unwrap();
    let workspace = root.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let mut c = Client::new(&workspace, &root.join("stdlib"), json!({}));
    c.request(
        1,
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri(&dir.join("missing.flow")) }, "position": { "line": 0, "character": 0 } }),
    );
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&lone), "languageId": "nudge", "version": 1, "text": text } }),
    );
    c.request(2, "workspace/symbol", json!({ "query": "" }));
    c.start();
    let (seen, answers) = c.until_responses(&[1, 2]);
    let [hover, symbols] = <[Value; 2]>::try_from(answers).unwrap();
    assert_eq!(hover["result"], Value::Null);
    assert!(hover.get("error").is_none());
    let published: Vec<String> = seen
        .iter()
        .filter_map(|m| match m {
            Message::Notification(n) if n.method == "textDocument/publishDiagnostics" => {
                Some(n.params["uri"].as_str().unwrap().to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(published, [uri(&lone)]);
    let names: Vec<&str> = symbols["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .filter(|n| *n == "lone" || *n == "other")
        .collect();
    assert_eq!(names, ["lone"]);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

/// A flow file of about `lines` lines, each with a few tokens to colour.
fn long_flow(lines: usize) -> String {
    let mut text = String::from("flow long {\n  trigger subscribed\n");
    for i in 0..lines {
        text.push_str(&format!(
            "  if profile.orders_count > {i} and profile.email != \"x{i}\" {{ wait 1h }}\n"
        ));
    }
    text.push_str("}\n");
    text
}

#[test]
fn a_request_whose_document_changed_before_it_was_answered_gets_content_modified() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let flow = root.join("a.flow");
    std::fs::write(&flow, flow_named("a")).unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    let doc = json!({ "textDocument": { "uri": uri(&flow) } });
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow), "languageId": "nudge", "version": 1, "text": flow_named("a") } }),
    );
    // Sent for version 1, which is never analysed: version 2 follows at once.
    c.request(1, "textDocument/semanticTokens/full", doc.clone());
    c.request(
        2,
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri(&flow) }, "position": { "line": 0, "character": 6 } }),
    );
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri(&flow), "version": 2 }, "contentChanges": [{ "text": flow_named("b") }] }),
    );
    // Sent for version 2: answered from its analysis.
    c.request(3, "textDocument/documentSymbol", doc.clone());
    // A file that is not open has no version to go stale.
    let other = root.join("other.flow");
    std::fs::write(&other, flow_named("other")).unwrap();
    c.request(
        4,
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri(&other) } }),
    );
    c.start();
    let (_, answers) = c.until_responses(&[1, 2, 3, 4]);
    let [tokens, hover, symbols, other] = <[Value; 4]>::try_from(answers).unwrap();
    assert_eq!(tokens["error"]["code"], -32801, "{tokens}");
    assert_eq!(hover["error"]["code"], -32801, "{hover}");
    assert_eq!(symbols["result"][0]["name"], "b", "{symbols}");
    assert_eq!(other["result"][0]["name"], "other", "{other}");
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn a_running_request_is_stopped_by_a_cancel_and_does_not_hold_up_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    // Two projects: a long file in one, a short one edited in the other.
    let big_root = root.join("big");
    let small_root = root.join("small");
    for dir in [&big_root, &small_root] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("nudge.toml"), "").unwrap();
    }
    let big = big_root.join("long.flow");
    std::fs::write(&big, long_flow(8_000)).unwrap();
    let small = small_root.join("a.flow");
    std::fs::write(&small, flow_named("a")).unwrap();
    let mut c = Client::new(&root, &root.join("stdlib"), json!({}));
    c.start();
    // The start-up analysis is over when both files are published.
    let mut published = 0;
    while published < 2 {
        if let Message::Notification(n) = c.next()
            && n.method == "textDocument/publishDiagnostics"
        {
            published += 1;
        }
    }
    let big_doc = json!({ "textDocument": { "uri": uri(&big) } });

    // Handed to a worker at once (nothing to analyse), then cancelled while
    // it colours 8,000 lines.
    c.request(1, "textDocument/semanticTokens/full", big_doc.clone());
    c.notify("$/cancelRequest", json!({ "id": 1 }));
    let (_, cancelled) = c.until_response(1);
    assert_eq!(cancelled["error"]["code"], -32800, "{cancelled}");

    // While another one runs, an edit in the other project is analysed and
    // published before the long answer is ready.
    c.request(2, "textDocument/semanticTokens/full", big_doc.clone());
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&small), "languageId": "nudge", "version": 1, "text": "flow a {\n  trigger nope\n}\n" } }),
    );
    let (seen, tokens) = c.until_response(2);
    let data = tokens["result"]["data"].as_array().expect("tokens");
    assert!(data.len() > 5 * 8_000, "{}", data.len());
    let published_first = seen.iter().any(|m| {
        matches!(m, Message::Notification(n) if n.method == "textDocument/publishDiagnostics"
            && n.params["uri"] == uri(&small).as_str())
    });
    assert!(published_first, "the edit waited for the long request");

    // An edit of the long file itself stops its running request.
    c.request(3, "textDocument/semanticTokens/full", big_doc.clone());
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&big), "languageId": "nudge", "version": 1, "text": flow_named("long") } }),
    );
    let (_, modified) = c.until_response(3);
    assert_eq!(modified["error"]["code"], -32801, "{modified}");
    c.request(4, "shutdown", Value::Null);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::Clean);
}

#[test]
fn a_client_that_pulls_diagnostics_gets_reports_and_no_pushed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let a = root.join("a.flow");
    let broken = "flow a {\n  trigger nope\n}\n";
    std::fs::write(&a, broken).unwrap();
    let b = root.join("b.flow");
    std::fs::write(&b, flow_named("b")).unwrap();
    let caps = json!({
        "textDocument": { "diagnostic": { "dynamicRegistration": false } },
        "workspace": { "diagnostics": { "refreshSupport": true } }
    });
    let mut c = Client::new(&root, &root.join("stdlib"), caps);
    let a_doc = json!({ "textDocument": { "uri": uri(&a) } });
    c.request(1, "textDocument/diagnostic", a_doc.clone());
    c.start();
    let (mut seen, init) = c.until_response(0);
    let provider = &init["result"]["capabilities"]["diagnosticProvider"];
    assert_eq!(provider["interFileDependencies"], true);
    assert_eq!(provider["workspaceDiagnostics"], true);
    let (more, first) = c.until_response(1);
    seen.extend(more);
    assert_eq!(first["result"]["kind"], "full");
    let items = first["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["severity"], 1);
    let id = first["result"]["resultId"].as_str().unwrap().to_string();

    // Asked again with that id: nothing changed.
    c.request(
        2,
        "textDocument/diagnostic",
        json!({ "textDocument": { "uri": uri(&a) }, "previousResultId": id }),
    );
    let (more, again) = c.until_response(2);
    seen.extend(more);
    assert_eq!(
        again["result"],
        json!({ "kind": "unchanged", "resultId": id })
    );

    // Fixed in the editor: the client is asked to pull again, and gets a
    // full, empty report.
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&a), "languageId": "nudge", "version": 7, "text": flow_named("a") } }),
    );
    let refresh = loop {
        match c.next() {
            Message::Request(r) => break r,
            m => seen.push(m),
        }
    };
    assert_eq!(refresh.method, "workspace/diagnostic/refresh");
    c.request(
        3,
        "textDocument/diagnostic",
        json!({ "textDocument": { "uri": uri(&a) }, "previousResultId": id }),
    );
    let (more, fixed) = c.until_response(3);
    seen.extend(more);
    assert_eq!(fixed["result"]["kind"], "full");
    assert_eq!(fixed["result"]["items"], json!([]));

    // The whole workspace: both files, the open one with its version.
    c.request(
        4,
        "workspace/diagnostic",
        json!({ "previousResultIds": [] }),
    );
    let (more, all) = c.until_response(4);
    seen.extend(more);
    let mut reports: Vec<(String, Value, Value)> = all["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["uri"].as_str().unwrap().to_string(),
                r["kind"].clone(),
                r["version"].clone(),
            )
        })
        .collect();
    reports.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        reports,
        [
            (uri(&a), json!("full"), json!(7)),
            (uri(&b), json!("full"), Value::Null)
        ]
    );
    let pushed = seen.iter().any(
        |m| matches!(m, Message::Notification(n) if n.method == "textDocument/publishDiagnostics"),
    );
    assert!(
        !pushed,
        "diagnostics were pushed to a client that pulls them"
    );
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn a_client_that_pulls_diagnostics_is_asked_to_pull_a_failed_test() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let example = nudge_test_support::example_dir("ad_retargeting");
    for name in ["nudge.toml", "ad_retargeting.flow"] {
        std::fs::copy(example.join(name), root.join(name)).unwrap();
    }
    let tests = root.join("tests.flow");
    let text = std::fs::read_to_string(example.join("tests.flow")).unwrap();
    let fails = "expect no audience \"cart_abandoners\" has u1";
    let text = text.replacen("expect audience \"cart_abandoners\" has u1", fails, 1);
    std::fs::write(&tests, &text).unwrap();
    let caps = json!({
        "textDocument": { "diagnostic": { "dynamicRegistration": false } },
        "workspace": { "diagnostics": { "refreshSupport": true } }
    });
    let mut c = Client::new(&root, &root.join("stdlib"), caps);
    let doc = json!({ "textDocument": { "uri": uri(&tests) } });
    c.request(1, "textDocument/diagnostic", doc.clone());
    c.start();
    let (mut seen, clean) = c.until_response(1);
    assert_eq!(clean["result"]["items"], json!([]));

    let name = "a shopper who leaves the cart joins the cart audience";
    c.request(
        2,
        "workspace/executeCommand",
        json!({ "command": "nudge.runTest", "arguments": [uri(&tests), name] }),
    );
    let (more, ran) = c.until_response(2);
    seen.extend(more);
    assert_eq!(ran["result"]["passed"], false, "{ran}");
    // The client is told to pull again: once after the start-up analysis,
    // once for the failure.
    let refreshes = |seen: &[Message]| {
        seen.iter()
            .filter(
                |m| matches!(m, Message::Request(r) if r.method == "workspace/diagnostic/refresh"),
            )
            .count()
    };
    while refreshes(&seen) < 2 {
        seen.push(c.next());
    }

    c.request(3, "textDocument/diagnostic", doc);
    let (_, pulled) = c.until_response(3);
    let items = pulled["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["source"], "nudge test");
    assert_eq!(
        items[0]["range"]["start"],
        json!({ "line": 4, "character": 2 })
    );
    c.request(
        4,
        "workspace/diagnostic",
        json!({ "previousResultIds": [] }),
    );
    let (_, all) = c.until_response(4);
    let report = all["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uri"] == uri(&tests))
        .expect("a report for the tests")
        .clone();
    assert_eq!(report["items"], pulled["result"]["items"]);
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}

#[test]
fn the_first_analysis_reports_progress_to_clients_that_show_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for name in ["one", "two"] {
        std::fs::create_dir_all(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("nudge.toml"), "").unwrap();
        std::fs::write(root.join(name).join("a.flow"), flow_named(name)).unwrap();
    }
    let caps = json!({ "window": { "workDoneProgress": true } });
    let mut c = Client::new(&root, &root.join("stdlib"), caps);
    c.request(1, "workspace/symbol", json!({ "query": "one" }));
    c.start();
    let (seen, _) = c.until_response(1);
    let mut created = None;
    let mut steps = Vec::new();
    for m in &seen {
        match m {
            Message::Request(r) if r.method == "window/workDoneProgress/create" => {
                assert!(steps.is_empty(), "progress before the token was created");
                created = Some(r.params["token"].clone());
            }
            Message::Notification(n) if n.method == "$/progress" => {
                assert_eq!(Some(&n.params["token"]), created.as_ref());
                let v = &n.params["value"];
                steps.push((
                    v["kind"].as_str().unwrap().to_string(),
                    v["percentage"].clone(),
                ));
            }
            _ => {}
        }
    }
    assert_eq!(
        steps,
        [
            ("begin".to_string(), json!(0)),
            ("report".to_string(), json!(50)),
            ("report".to_string(), json!(100)),
            ("end".to_string(), Value::Null),
        ]
    );
    // Later analyses are not reported.
    let flow = root.join("one/a.flow");
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow), "languageId": "nudge", "version": 1, "text": flow_named("uno") } }),
    );
    c.request(2, "workspace/symbol", json!({ "query": "uno" }));
    let (later, _) = c.until_response(2);
    assert!(
        !later
            .iter()
            .any(|m| matches!(m, Message::Notification(n) if n.method == "$/progress"))
    );
    c.notify("exit", Value::Null);
    assert_eq!(c.ending(), Ending::WithoutShutdown);
}
