//! The protocol shell, driven in-process over an in-memory connection:
//! project-wide diagnostics, UTF-16 positions and malformed requests.

use std::path::Path;
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use lsp_types::Uri;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    conn: Connection,
    next_id: i32,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(root: &Path, stdlib: &Path) -> Client {
        let (server, client) = Connection::memory();
        let stdlib = stdlib.to_path_buf();
        let thread = std::thread::spawn(move || {
            nudge_lsp::run(server, stdlib).expect("the server ends cleanly");
        });
        let mut c = Client {
            conn: client,
            next_id: 0,
            thread: Some(thread),
        };
        let init = c.request(
            "initialize",
            json!({ "capabilities": {}, "rootUri": uri(root).as_str() }),
        );
        assert!(init["capabilities"]["completionProvider"].is_object());
        c.notify("initialized", json!({}));
        c
    }

    fn notify(&self, method: &str, params: Value) {
        self.conn
            .sender
            .send(Notification::new(method.to_string(), params).into())
            .unwrap();
    }

    fn request_raw(&mut self, method: &str, params: Value) -> Response {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.conn
            .sender
            .send(Request::new(id.clone(), method.to_string(), params).into())
            .unwrap();
        loop {
            match self
                .conn
                .receiver
                .recv_timeout(TIMEOUT)
                .expect("a response in time")
            {
                Message::Response(r) if r.id == id => return r,
                _ => {}
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let r = self.request_raw(method, params);
        r.response_result.expect("a successful response")
    }

    /// The next diagnostics published for `file`, skipping other messages.
    fn diagnostics_for(&self, file: &Path) -> Vec<Value> {
        let want = uri(file);
        loop {
            let msg = self
                .conn
                .receiver
                .recv_timeout(TIMEOUT)
                .expect("diagnostics in time");
            if let Message::Notification(n) = msg
                && n.method == "textDocument/publishDiagnostics"
                && n.params["uri"] == want.as_str()
            {
                return n.params["diagnostics"].as_array().unwrap().clone();
            }
        }
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        self.thread.take().unwrap().join().unwrap();
    }
}

fn uri(path: &Path) -> Uri {
    nudge_lsp::uri::from_path(path)
}

fn codes(diags: &[Value]) -> Vec<String> {
    diags
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

const FLOW: &str = "flow welcome {\n  trigger subscribed\n  send hello()\n}\n";
const MESSAGE: &str =
    "message hello() {\n  channel email\n  subject \"Hi\"\n  body \"Welcome\"\n}\n";

#[test]
fn an_edit_in_one_file_updates_the_diagnostics_of_another() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let flow = root.join("welcome.flow");
    let msgs = root.join("messages.flow");
    std::fs::write(&flow, FLOW).unwrap();
    std::fs::write(&msgs, MESSAGE).unwrap();
    let c = Client::start(&root, &tmp.path().join("stdlib"));
    // The whole project is analysed at start-up: both files are clean.
    assert_eq!(c.diagnostics_for(&flow), Vec::<Value>::new());

    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&msgs).as_str(), "languageId": "nudge", "version": 1, "text": MESSAGE } }),
    );
    assert!(c.diagnostics_for(&msgs).is_empty());
    // Renaming the message in messages.flow breaks welcome.flow, which is not open.
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri(&msgs).as_str(), "version": 2 },
            "contentChanges": [{ "range": { "start": { "line": 0, "character": 8 }, "end": { "line": 0, "character": 13 } }, "text": "hullo" }]
        }),
    );
    let broken = c.diagnostics_for(&flow);
    assert_eq!(codes(&broken), ["E0203"], "{broken:?}");
    assert_eq!(
        broken[0]["range"]["start"],
        json!({ "line": 2, "character": 7 })
    );
    // Undoing it clears the other file.
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri(&msgs).as_str(), "version": 3 },
            "contentChanges": [{ "text": MESSAGE }]
        }),
    );
    assert!(c.diagnostics_for(&flow).is_empty());
    c.stop();
}

#[test]
fn positions_are_utf16_and_bad_requests_get_errors_not_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("a.flow");
    // "é" is one UTF-16 unit and two bytes; "😀" is two units and four bytes.
    let text = "// é😀\nlet x = \"😀\" + nudge\n";
    std::fs::write(&flow, text).unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow).as_str(), "languageId": "nudge", "version": 1, "text": text } }),
    );
    let diags = c.diagnostics_for(&flow);
    let unknown = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("nudge"))
        .expect("unknown name");
    // `nudge` starts after `let x = "😀" + `: 9 + 4 (quote, two units, quote) + 3.
    assert_eq!(
        unknown["range"]["start"],
        json!({ "line": 1, "character": 15 })
    );

    let r = c.request_raw("textDocument/hover", json!({ "textDocument": 3 }));
    assert_eq!(r.response_result.unwrap_err().code, -32602);
    let r = c.request_raw("nudge/unknown", json!({}));
    assert_eq!(r.response_result.unwrap_err().code, -32601);
    // Positions past the end clamp instead of failing.
    let far = json!({ "textDocument": { "uri": uri(&flow).as_str() }, "position": { "line": 99, "character": 99 } });
    assert!(
        c.request_raw("textDocument/hover", far.clone())
            .response_result
            .is_ok()
    );
    assert!(
        c.request_raw("textDocument/completion", far.clone())
            .response_result
            .is_ok()
    );
    assert!(
        c.request_raw("textDocument/definition", far)
            .response_result
            .is_ok()
    );
    // A document of another scheme is not ours: an empty answer.
    let other = json!({ "textDocument": { "uri": "untitled:Untitled-1" }, "position": { "line": 0, "character": 0 } });
    assert_eq!(c.request("textDocument/hover", other), Value::Null);
    c.stop();
}

#[test]
fn definitions_in_the_stdlib_link_to_read_only_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let stdlib = root.join("cache").join("stdlib");
    let flow = root.join("a.flow");
    std::fs::write(&flow, FLOW).unwrap();
    let mut c = Client::start(&root, &stdlib);
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri(&flow).as_str() }, "position": { "line": 1, "character": 12 } }),
    );
    assert_eq!(def["uri"], uri(&stdlib.join("events.flow")).as_str());
    let copy = std::fs::read_to_string(stdlib.join("events.flow")).unwrap();
    assert_eq!(copy, nudge_stdlib::file("events.flow").unwrap().source);
    assert!(
        std::fs::metadata(stdlib.join("events.flow"))
            .unwrap()
            .permissions()
            .readonly()
    );
    let line = def["range"]["start"]["line"].as_u64().unwrap() as usize;
    assert!(
        copy.lines()
            .nth(line)
            .unwrap()
            .starts_with("event subscribed ")
    );
    // Hover works inside the stdlib copy as well.
    let h = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": def["uri"] }, "position": def["range"]["start"] }),
    );
    assert!(
        h["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("event subscribed")
    );
    c.stop();
}

#[test]
fn outline_symbols_tokens_hints_and_refused_renames_over_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  wait 1d\n  wait 2h\n  send hello()\n}\n";
    std::fs::write(&flow, text).unwrap();
    std::fs::write(root.join("messages.flow"), MESSAGE).unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let doc = json!({ "uri": uri(&flow).as_str() });

    let outline = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": doc }),
    );
    assert_eq!(outline[0]["name"], "welcome");
    let steps: Vec<&str> = outline[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["trigger subscribed", "wait 1d", "wait 2h", "send hello()"]
    );

    let found = c.request("workspace/symbol", json!({ "query": "hel" }));
    assert_eq!(found[0]["name"], "hello");
    assert_eq!(
        found[0]["location"]["uri"],
        uri(&root.join("messages.flow")).as_str()
    );

    let hints = c.request(
        "textDocument/inlayHint",
        json!({ "textDocument": doc, "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 9, "character": 0 } } }),
    );
    let labels: Vec<&str> = hints
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["+1d", "+1d 2h"]);
    assert_eq!(hints[1]["position"], json!({ "line": 3, "character": 9 }));

    let tokens = c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": doc }),
    );
    let data: Vec<u64> = tokens["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // `flow` at 0:0 (keyword, 4 long), then `welcome` 5 further (a declared namespace).
    assert_eq!(data[..10], [0, 0, 4, 0, 0, 0, 5, 7, 11, 1]);
    // `subscribed` on the next line: an event from the stdlib.
    assert_eq!(data[15..20], [0, 8, 10, 5, 4]);

    let refused = c.request_raw(
        "textDocument/prepareRename",
        json!({ "textDocument": doc, "position": { "line": 1, "character": 12 } }),
    );
    let err = refused.response_result.unwrap_err();
    assert!(err.message.contains("standard library"), "{}", err.message);
    let keyword = c.request_raw(
        "textDocument/rename",
        json!({ "textDocument": doc, "position": { "line": 4, "character": 8 }, "newName": "send" }),
    );
    assert_eq!(
        keyword.response_result.unwrap_err().message,
        "`send` is a reserved word"
    );
    c.stop();
}

#[test]
fn a_file_with_lone_carriage_returns_gets_diagnostics_on_the_right_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("a.flow");
    // Old Mac line ends: the protocol counts a lone `\r` as a line break.
    let text = "flow a {\r  trigger nope\r  exit on order_complted\r}\r";
    std::fs::write(&flow, text).unwrap();
    let c = Client::start(&root, &tmp.path().join("stdlib"));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow).as_str(), "languageId": "nudge", "version": 1, "text": text } }),
    );
    let diags = c.diagnostics_for(&flow);
    let starts: Vec<&Value> = diags.iter().map(|d| &d["range"]["start"]).collect();
    assert_eq!(
        starts,
        [
            &json!({ "line": 1, "character": 10 }),
            &json!({ "line": 2, "character": 10 })
        ]
    );
    c.stop();
}

#[test]
fn folding_selection_highlight_and_links_over_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  send hello()\n  send hello()\n}\n";
    std::fs::write(&flow, text).unwrap();
    let msgs =
        "message hello() {\n  channel email\n  subject \"Hi\"\n  body template \"hello.html\"\n}\n";
    std::fs::write(root.join("messages.flow"), msgs).unwrap();
    std::fs::write(root.join("hello.html"), "<p>Hi</p>").unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let doc = json!({ "uri": uri(&flow).as_str() });

    let folds = c.request("textDocument/foldingRange", json!({ "textDocument": doc }));
    assert_eq!(folds[0]["startLine"], 0);
    assert_eq!(folds[0]["endLine"], 4);
    assert_eq!(folds[0]["kind"], "region");

    let sel = c.request(
        "textDocument/selectionRange",
        json!({ "textDocument": doc, "positions": [{ "line": 2, "character": 9 }] }),
    );
    assert_eq!(
        sel[0]["range"],
        json!({ "start": { "line": 2, "character": 7 }, "end": { "line": 2, "character": 12 } })
    );
    assert_eq!(
        sel[0]["parent"]["range"]["start"],
        json!({ "line": 2, "character": 2 })
    );

    let hs = c.request(
        "textDocument/documentHighlight",
        json!({ "textDocument": doc, "position": { "line": 2, "character": 9 } }),
    );
    let lines: Vec<u64> = hs
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3]);

    let links = c.request(
        "textDocument/documentLink",
        json!({ "textDocument": { "uri": uri(&root.join("messages.flow")).as_str() } }),
    );
    assert_eq!(links[0]["target"], uri(&root.join("hello.html")).as_str());
    assert_eq!(
        links[0]["range"]["start"],
        json!({ "line": 3, "character": 17 })
    );
    c.stop();
}

#[test]
fn snippets_go_only_to_clients_that_insert_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  \n}\n";
    std::fs::write(&flow, text).unwrap();
    // This client announces no snippet support.
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let items = c.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri(&flow).as_str() }, "position": { "line": 2, "character": 2 } }),
    );
    let items = items.as_array().unwrap();
    assert!(items.iter().any(|i| i["label"] == "wait"));
    assert!(items.iter().all(|i| i.get("insertTextFormat").is_none()));
    c.stop();
}

#[test]
fn signature_help_over_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  send hello(\n}\n";
    std::fs::write(&flow, text).unwrap();
    std::fs::write(
        root.join("messages.flow"),
        "message hello(name: string, url: string) {\n  channel email\n  subject \"Hi {name}\"\n  body \"{url}\"\n}\n",
    )
    .unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let help = c.request(
        "textDocument/signatureHelp",
        json!({ "textDocument": { "uri": uri(&flow).as_str() }, "position": { "line": 2, "character": 13 } }),
    );
    assert_eq!(
        help["signatures"][0]["label"],
        "hello(name: string, url: string)"
    );
    assert_eq!(
        help["signatures"][0]["parameters"][1]["label"],
        json!([20, 31])
    );
    assert_eq!(help["activeParameter"], 0);
    c.stop();
}

#[test]
fn semantic_tokens_of_a_range_are_those_of_the_full_file_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  wait 1d\n  wait 2h\n}\n";
    std::fs::write(&flow, text).unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let doc = json!({ "uri": uri(&flow).as_str() });
    let numbers = |v: &Value| -> Vec<u64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    let full = numbers(&c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": doc }),
    ));
    let range = numbers(&c.request(
        "textDocument/semanticTokens/range",
        json!({ "textDocument": doc, "range": { "start": { "line": 2, "character": 0 }, "end": { "line": 3, "character": 0 } } }),
    ));
    // `wait` and `1d` on line 2: the first is relative to the start of the
    // file, so its line delta is 2; the rest match the full answer.
    assert_eq!(range.len(), 10, "{range:?}");
    assert_eq!(range[..5], [2, 2, 4, 0, 0]);
    let at = full
        .chunks(5)
        .position(|t| t[..3] == [1, 2, 4])
        .expect("`wait` in the full answer");
    assert_eq!(range[5..10], full[(at + 1) * 5..(at + 2) * 5]);
    c.stop();
}

#[test]
fn fix_all_applies_every_fix_of_the_file_as_one_source_action() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("cart.flow");
    let text = "flow cart {\n  trigger subscribd\n  exit on order_complted\n}\n";
    std::fs::write(&flow, text).unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let doc = json!({ "uri": uri(&flow).as_str() });
    let whole =
        json!({ "start": { "line": 0, "character": 0 }, "end": { "line": 4, "character": 0 } });
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": doc, "range": whole, "context": { "diagnostics": [], "only": ["source.fixAll"] } }),
    );
    let actions = actions.as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["kind"], "source.fixAll");
    assert_eq!(
        actions[0]["title"],
        "Fix all problems in this file (2 fixes)"
    );
    let edits = actions[0]["edit"]["changes"][uri(&flow).as_str()]
        .as_array()
        .unwrap();
    let new: Vec<&str> = edits
        .iter()
        .map(|e| e["newText"].as_str().unwrap())
        .collect();
    assert_eq!(new, ["subscribed", "order_completed"]);
    // Asking for quick fixes only leaves it out; asking for `source` includes it.
    let quick = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": doc, "range": whole, "context": { "diagnostics": [], "only": ["quickfix"] } }),
    );
    assert!(
        quick
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] == "quickfix")
    );
    assert_eq!(quick.as_array().unwrap().len(), 2);
    let source = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": doc, "range": whole, "context": { "diagnostics": [], "only": ["source"] } }),
    );
    assert_eq!(source.as_array().unwrap().len(), 1);
    c.stop();
}

#[test]
fn range_formatting_over_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    let flow = root.join("a.flow");
    let text =
        "// 😀 two flows\nflow a {\ntrigger subscribed\n}\nflow b {\n      trigger subscribed\n}\n";
    std::fs::write(&flow, text).unwrap();
    let mut c = Client::start(&root, &root.join("stdlib"));
    let edits = c.request(
        "textDocument/rangeFormatting",
        json!({
            "textDocument": { "uri": uri(&flow).as_str() },
            "range": { "start": { "line": 5, "character": 0 }, "end": { "line": 5, "character": 3 } },
            "options": { "tabSize": 2, "insertSpaces": true }
        }),
    );
    assert_eq!(
        edits,
        json!([{
            "range": { "start": { "line": 5, "character": 0 }, "end": { "line": 6, "character": 0 } },
            "newText": "  trigger subscribed\n"
        }])
    );
    c.stop();
}

#[test]
fn a_code_lens_runs_its_test_and_shows_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let example = nudge_test_support::example_dir("ad_retargeting");
    for name in ["nudge.toml", "ad_retargeting.flow", "tests.flow"] {
        std::fs::copy(example.join(name), root.join(name)).unwrap();
    }
    let tests = root.join("tests.flow");
    let mut c = Client::start(&root, &root.join("stdlib"));
    let lenses = c.request(
        "textDocument/codeLens",
        json!({ "textDocument": { "uri": uri(&tests).as_str() } }),
    );
    let first = &lenses[0];
    assert_eq!(
        first["range"]["start"],
        json!({ "line": 0, "character": 0 })
    );
    assert_eq!(first["command"]["command"], "nudge.runTest");
    assert_eq!(first["command"]["title"], "▶ Run test");
    let command = first["command"].clone();
    c.conn
        .sender
        .send(
            Request::new(
                RequestId::from(1000),
                "workspace/executeCommand".to_string(),
                json!({ "command": command["command"], "arguments": command["arguments"] }),
            )
            .into(),
        )
        .unwrap();
    // The result is shown to the user, and is the request's answer.
    let mut shown = None;
    let result = loop {
        match c.conn.receiver.recv_timeout(TIMEOUT).expect("a message") {
            Message::Notification(n) if n.method == "window/showMessage" => shown = Some(n.params),
            Message::Response(r) if r.id == RequestId::from(1000) => {
                break r.response_result.expect("a result");
            }
            _ => {}
        }
    };
    assert_eq!(result["passed"], true, "{result}");
    let shown = shown.expect("a message for the user");
    assert_eq!(shown["type"], 3);
    assert!(
        shown["message"].as_str().unwrap().contains("passed"),
        "{shown}"
    );
    let unknown = c.request_raw(
        "workspace/executeCommand",
        json!({ "command": "nudge.nope", "arguments": [] }),
    );
    assert_eq!(unknown.response_result.unwrap_err().code, -32602);
    c.stop();
}

/// Runs the code lens's command for `name` in `file`: its answer, and the
/// diagnostics published for `file` by then (the failures are sent to the
/// message loop while the answer is written).
fn run_test_command(c: &mut Client, file: &Path, name: &str) -> (Value, Option<Vec<Value>>) {
    c.next_id += 1;
    let id = RequestId::from(c.next_id);
    c.conn
        .sender
        .send(
            Request::new(
                id.clone(),
                "workspace/executeCommand".to_string(),
                json!({ "command": "nudge.runTest", "arguments": [uri(file).as_str(), name] }),
            )
            .into(),
        )
        .unwrap();
    let mut published = None;
    loop {
        match c.conn.receiver.recv_timeout(TIMEOUT).expect("a message") {
            Message::Response(r) if r.id == id => {
                return (r.response_result.expect("a result"), published);
            }
            Message::Notification(n)
                if n.method == "textDocument/publishDiagnostics"
                    && n.params["uri"] == uri(file).as_str() =>
            {
                published = Some(n.params["diagnostics"].as_array().unwrap().clone());
            }
            _ => {}
        }
    }
}

#[test]
fn a_failed_expectation_is_a_diagnostic_at_its_line_until_the_text_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let example = nudge_test_support::example_dir("ad_retargeting");
    for name in ["nudge.toml", "ad_retargeting.flow", "tests.flow"] {
        std::fs::copy(example.join(name), root.join(name)).unwrap();
    }
    let tests = root.join("tests.flow");
    let good = std::fs::read_to_string(&tests).unwrap();
    let holds = "expect audience \"cart_abandoners\" has u1";
    let fails = "expect no audience \"cart_abandoners\" has u1";
    let bad = good.replacen(holds, fails, 1);
    let first = "a shopper who leaves the cart joins the cart audience";
    let mut c = Client::start(&root, &root.join("stdlib"));
    assert!(c.diagnostics_for(&tests).is_empty());
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&tests).as_str(), "languageId": "nudge", "version": 1, "text": bad } }),
    );
    assert!(c.diagnostics_for(&tests).is_empty(), "the checker is happy");

    let (result, published) = run_test_command(&mut c, &tests, first);
    assert_eq!(result["passed"], false, "{result}");
    assert_eq!(result["failedLines"], json!([5]));
    // The failure is published with the file's diagnostics, on the
    // expectation's line (from its first character to the end).
    let diags = published.unwrap_or_else(|| c.diagnostics_for(&tests));
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["source"], "nudge test");
    assert_eq!(d["severity"], 1);
    assert_eq!(
        d["range"],
        json!({ "start": { "line": 4, "character": 2 }, "end": { "line": 4, "character": 2 + fails.len() } })
    );
    let message = d["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("test \"{first}\" failed: `{fails}` does not hold")),
        "{message}"
    );
    assert!(message.contains("\ngot: "), "{message}");

    // The failure holds for the text the test ran on: an edit clears it.
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri(&tests).as_str(), "version": 2 },
            "contentChanges": [{ "text": good }]
        }),
    );
    assert_eq!(c.diagnostics_for(&tests), Vec::<Value>::new());

    // Run on the fixed text, the test passes and nothing more is shown.
    let (result, published) = run_test_command(&mut c, &tests, first);
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(published, None, "nothing changed");
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri(&tests).as_str(), "version": 3 },
            "contentChanges": [{ "text": bad.clone() + "\nflow oops {\n  trigger nope\n}\n" }]
        }),
    );
    // The earlier failure does not come back with the checker's errors.
    let diags = c.diagnostics_for(&tests);
    assert!(!diags.is_empty());
    assert!(
        diags.iter().all(|d| d["source"] == "nudge"),
        "only the checker's: {diags:?}"
    );
    c.stop();
}

#[test]
fn semantic_token_deltas_turn_the_last_answer_into_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let flow = root.join("welcome.flow");
    let text = "flow welcome {\n  trigger subscribed\n  wait 1d\n  wait 2h\n}\n";
    std::fs::write(&flow, text).unwrap();
    let mut c = Client::start(&root, &tmp.path().join("stdlib"));
    let doc = json!({ "uri": uri(&flow).as_str() });
    let numbers = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    let first = c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": doc }),
    );
    let id1 = first["resultId"].as_str().expect("a result id").to_string();
    let mut held = numbers(&first["data"]);

    // One line in the middle changes: `wait 1d` becomes `wait 3d 12h`.
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&flow).as_str(), "languageId": "nudge", "version": 1, "text": text } }),
    );
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri(&flow).as_str(), "version": 2 },
            "contentChanges": [{ "range": { "start": { "line": 2, "character": 7 }, "end": { "line": 2, "character": 9 } }, "text": "3d 12h" }]
        }),
    );
    let delta = c.request(
        "textDocument/semanticTokens/full/delta",
        json!({ "textDocument": doc, "previousResultId": id1 }),
    );
    let id2 = delta["resultId"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    let edits = delta["edits"]
        .as_array()
        .expect("edits, not the whole list");
    assert_eq!(edits.len(), 1, "{delta}");
    let e = &edits[0];
    let (start, delete) = (
        e["start"].as_u64().unwrap() as usize,
        e["deleteCount"].as_u64().unwrap() as usize,
    );
    // Only the changed line's tokens (and the one after it) are sent.
    assert!(start > 0 && start + delete < held.len(), "{e}");
    held.splice(start..start + delete, numbers(&e["data"]));
    let fresh = c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": doc }),
    );
    assert_eq!(held, numbers(&fresh["data"]));

    // Nothing changed since: no edits.
    let id3 = fresh["resultId"].as_str().unwrap();
    let same = c.request(
        "textDocument/semanticTokens/full/delta",
        json!({ "textDocument": doc, "previousResultId": id3 }),
    );
    assert_eq!(same["edits"], json!([]));
    // An id the server does not know: the whole list.
    let unknown = c.request(
        "textDocument/semanticTokens/full/delta",
        json!({ "textDocument": doc, "previousResultId": "nope" }),
    );
    assert_eq!(numbers(&unknown["data"]), held);
    c.stop();
}

/// Tells the server a file changed on disk, as a client's file watcher does.
fn changed_on_disk(c: &Client, path: &Path) {
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": uri(path).as_str(), "type": 2 }] }),
    );
}

#[test]
fn a_broken_nudge_toml_is_flagged_where_it_is_wrong_until_it_is_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let manifest = root.join("nudge.toml");
    std::fs::write(&manifest, "[store]\npath = \"state.db\n").unwrap();
    std::fs::write(root.join("welcome.flow"), FLOW).unwrap();
    std::fs::write(root.join("messages.flow"), MESSAGE).unwrap();
    let c = Client::start(&root, &tmp.path().join("stdlib"));
    // A syntax error, found at start-up, on the line it is on.
    let diags = c.diagnostics_for(&manifest);
    assert_eq!(codes(&diags), ["E0502"], "{diags:?}");
    assert_eq!(diags[0]["range"]["start"]["line"], 1);

    // An unknown section and a value of the wrong type in a known one.
    std::fs::write(
        &manifest,
        "[runtime]\nreorder_window = \"100\"\n\n[stores]\npath = \"x\"\n",
    )
    .unwrap();
    changed_on_disk(&c, &manifest);
    let diags = c.diagnostics_for(&manifest);
    assert_eq!(codes(&diags), ["E0503", "E0504"], "{diags:?}");
    assert_eq!(
        diags[0]["range"],
        json!({ "start": { "line": 3, "character": 1 }, "end": { "line": 3, "character": 7 } })
    );
    assert!(
        diags[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `store`?")
    );
    assert_eq!(
        diags[1]["range"]["start"],
        json!({ "line": 1, "character": 17 })
    );

    // Fixed: the diagnostics are cleared.
    std::fs::write(&manifest, "[runtime]\nreorder_window = 100\n").unwrap();
    changed_on_disk(&c, &manifest);
    assert_eq!(c.diagnostics_for(&manifest), Vec::<Value>::new());
    c.stop();
}
