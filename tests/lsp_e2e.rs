//! End to end: the built `nudge lsp` binary driven over stdio with
//! Content-Length framing, through a whole editing session.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

/// Every read waits at most this long, so a hang fails instead of blocking CI.
const TIMEOUT: Duration = Duration::from_secs(30);

struct Session {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Session {
    fn start(cache: &Path) -> Session {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .arg("lsp")
            .env("XDG_CACHE_HOME", cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nudge starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        // Reads frames on a thread so that the test can wait with a timeout.
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let msg: Value = serde_json::from_slice(&body).expect("JSON");
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Session {
            child,
            stdin,
            messages: rx,
            next_id: 0,
        }
    }

    fn write(&mut self, msg: Value) {
        self.write_bytes(&frame(&msg));
    }

    /// Writes bytes as they are, in one write, so that they arrive together.
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next response (skipping notifications and server requests).
    fn next_response(&self) -> Value {
        loop {
            let msg = self.next();
            if msg.get("method").is_none() {
                return msg;
            }
        }
    }

    /// Starts with `initialize` and `initialized`.
    fn initialize(&mut self, root: &Path, trace: &str) {
        let init = self.request(
            "initialize",
            json!({ "processId": null, "rootUri": file_uri(root), "capabilities": {}, "trace": trace }),
        );
        assert_eq!(init["serverInfo"]["name"], "nudge");
        self.notify("initialized", json!({}));
    }

    /// Closes stdin and waits for the process's exit code.
    fn exit_code(mut self) -> Option<i32> {
        drop(self.stdin);
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("nudge lsp did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.write(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn next(&self) -> Value {
        self.messages
            .recv_timeout(TIMEOUT)
            .expect("the server answers in time")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.write(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let msg = self.next();
            if msg["id"] == id && msg.get("method").is_none() {
                assert!(msg.get("error").is_none(), "{method} failed: {msg}");
                return msg["result"].clone();
            }
        }
    }

    fn diagnostics_for(&self, uri: &str) -> Vec<Value> {
        loop {
            let msg = self.next();
            if msg["method"] == "textDocument/publishDiagnostics" && msg["params"]["uri"] == uri {
                return msg["params"]["diagnostics"].as_array().unwrap().clone();
            }
        }
    }
}

/// A message framed with its `Content-Length` header.
fn frame(msg: &Value) -> Vec<u8> {
    let body = serde_json::to_string(msg).unwrap();
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

const CART: &str = "flow cart_added {\n  trigger product_added\n  exit on order_complted\n  wait 1h\n  send cart_reminder(trigger.product_id)\n}\n";
const MESSAGES: &str = "message cart_reminder(product: string) {\n  channel email\n  subject \"About {product}\"\n  body \"Your cart is saved.\"\n}\n";

#[test]
fn a_whole_editing_session_over_stdio() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let project = root.join("shop");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("nudge.toml"), "").unwrap();
    std::fs::write(project.join("cart.flow"), CART).unwrap();
    std::fs::write(project.join("messages.flow"), MESSAGES).unwrap();
    let cart = file_uri(&project.join("cart.flow"));
    let messages = file_uri(&project.join("messages.flow"));

    let mut s = Session::start(&root.join("cache"));
    let init = s.request(
        "initialize",
        json!({ "processId": null, "rootUri": file_uri(&project), "capabilities": {} }),
    );
    assert_eq!(init["serverInfo"]["name"], "nudge");
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
    s.notify("initialized", json!({}));
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": cart, "languageId": "nudge", "version": 1, "text": CART } }),
    );

    // The misspelled event is underlined, with a quick fix.
    let diags = s.diagnostics_for(&cart);
    let typo = diags.iter().find(|d| d["code"] == "E0202").expect("E0202");
    assert_eq!(
        typo["range"]["start"],
        json!({ "line": 2, "character": 10 })
    );
    assert!(
        typo["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `order_completed`")
    );
    let actions = s.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": cart }, "range": typo["range"], "context": { "diagnostics": [typo] } }),
    );
    assert_eq!(actions[0]["title"], "replace with `order_completed`");
    let edit = &actions[0]["edit"]["changes"][&cart][0];
    assert_eq!(edit["newText"], "order_completed");

    // Applying it clears the file's diagnostics.
    s.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": cart, "version": 2 },
            "contentChanges": [{ "range": edit["range"], "text": "order_completed" }]
        }),
    );
    assert_eq!(s.diagnostics_for(&cart), Vec::<Value>::new());

    // `trigger.` offers the properties of "Product Added" with their types.
    let completion = s.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": cart }, "position": { "line": 4, "character": 29 } }),
    );
    let price = completion
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "price")
        .expect("price is offered");
    assert_eq!(price["detail"], "money");

    let hover = s.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": cart }, "position": { "line": 1, "character": 12 } }),
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("event product_added \"Product Added\""),
        "{text}"
    );

    let def = s.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": cart }, "position": { "line": 4, "character": 10 } }),
    );
    assert_eq!(def["uri"], messages);
    assert_eq!(def["range"]["start"], json!({ "line": 0, "character": 8 }));

    let rename = s.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": cart }, "position": { "line": 4, "character": 10 }, "newName": "cart_nudge" }),
    );
    assert_eq!(rename["changes"][&cart][0]["newText"], "cart_nudge");
    assert_eq!(
        rename["changes"][&messages][0]["range"]["start"],
        json!({ "line": 0, "character": 8 })
    );

    s.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": cart, "version": 3 },
            "contentChanges": [{ "text": "flow   cart_added {\ntrigger product_added\n exit on order_completed\n}\n" }]
        }),
    );
    let formatting = s.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": cart }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(
        formatting[0]["newText"],
        "flow cart_added {\n  trigger product_added\n  exit on order_completed\n}\n"
    );

    assert_eq!(s.request("shutdown", Value::Null), Value::Null);
    s.notify("exit", Value::Null);
    drop(s.stdin);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = s.child.kill();
            panic!("nudge lsp did not exit after `exit`");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn flow_named(name: &str) -> String {
    format!("flow {name} {{\n  trigger subscribed\n  exit on order_completed\n}}\n")
}

/// A project with one flow, its directory and the flow's URI.
fn one_flow_project(root: &Path) -> (std::path::PathBuf, String) {
    let project = root.join("shop");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("nudge.toml"), "").unwrap();
    std::fs::write(project.join("a.flow"), flow_named("a")).unwrap();
    let uri = file_uri(&project.join("a.flow"));
    (project, uri)
}

#[test]
fn malformed_frames_are_answered_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (project, uri) = one_flow_project(&root);
    let mut s = Session::start(&root.join("cache"));
    s.initialize(&project, "off");

    let bad: [(&[u8], i64); 4] = [
        (&raw_frame(b"{ \"jsonrpc\": \"2.0\", "), -32700),
        (
            &raw_frame(b"[{\"jsonrpc\":\"2.0\",\"method\":\"initialized\"}]"),
            -32600,
        ),
        (b"Content-Type: application/vscode-jsonrpc\r\n\r\n", -32700),
        (
            &raw_frame(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"\xff\xfe\"}"),
            -32700,
        ),
    ];
    for (bytes, code) in bad {
        s.write_bytes(bytes);
        let answer = s.next_response();
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["id"], Value::Null);
    }
    // A request with an id and a bad method is answered with its id.
    s.write_bytes(&raw_frame(br#"{"jsonrpc":"2.0","id":77,"method":[]}"#));
    let answer = s.next_response();
    assert_eq!(answer["id"], 77);
    assert_eq!(answer["error"]["code"], -32600);

    // Still serving.
    let symbols = s.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert_eq!(symbols[0]["name"], "a");

    // A length no one can allocate is refused at once, without aborting.
    s.write_bytes(b"Content-Length: 4611686018427387904\r\n\r\n{}");
    let answer = s.next_response();
    assert_eq!(answer["error"]["code"], -32700);
    std::thread::sleep(Duration::from_millis(200));
    assert!(s.child.try_wait().unwrap().is_none(), "the server stopped");
    // The claimed body swallows the rest of the input; at its end the
    // server stops as a client that went away without `shutdown`.
    assert_eq!(s.exit_code(), Some(1));
}

#[test]
fn the_shutdown_and_exit_sequence_follows_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (project, _) = one_flow_project(&root);

    let mut s = Session::start(&root.join("cache"));
    s.initialize(&project, "off");
    assert_eq!(s.request("shutdown", Value::Null), Value::Null);
    s.next_id += 1;
    let id = s.next_id;
    s.write(json!({ "jsonrpc": "2.0", "id": id, "method": "workspace/symbol", "params": { "query": "" } }));
    let answer = s.next_response();
    assert_eq!(answer["id"], id);
    assert_eq!(answer["error"]["code"], -32600);
    s.notify("exit", Value::Null);
    assert_eq!(s.exit_code(), Some(0));

    // `exit` without `shutdown`: exit code 1.
    let mut s = Session::start(&root.join("cache"));
    s.initialize(&project, "off");
    s.notify("exit", Value::Null);
    assert_eq!(s.exit_code(), Some(1));
}

#[test]
fn a_burst_of_fifty_edits_is_not_analysed_edit_by_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (project, uri) = one_flow_project(&root);
    let mut s = Session::start(&root.join("cache"));
    // Analyses are reported as `$/logTrace` when traces are on.
    s.initialize(&project, "messages");
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "nudge", "version": 1, "text": flow_named("a") } }),
    );
    s.diagnostics_for(&uri);

    let mut burst = Vec::new();
    for v in 2..52 {
        burst.extend(frame(&json!({
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": { "uri": uri, "version": v },
                "contentChanges": [{ "text": flow_named(&format!("f{v}")) }]
            }
        })));
    }
    burst.extend(frame(&json!({
        "jsonrpc": "2.0", "id": 1000, "method": "textDocument/documentSymbol",
        "params": { "textDocument": { "uri": uri } }
    })));
    s.write_bytes(&burst);
    let mut analyses = 0;
    let mut versions = Vec::new();
    let symbols = loop {
        let msg = s.next();
        match msg["method"].as_str() {
            Some("$/logTrace")
                if msg["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("analysed ")) =>
            {
                analyses += 1;
            }
            Some("textDocument/publishDiagnostics") => {
                versions.push(msg["params"]["version"].clone())
            }
            _ if msg["id"] == 1000 => break msg["result"].clone(),
            _ => {}
        }
    };
    // The reader may hand the first edits over before the rest has arrived
    // (more so on a loaded machine); never one analysis per edit, as before
    // pending edits were drained (49 analyses for this burst).
    assert!((1..10).contains(&analyses), "{analyses} analyses");
    assert_eq!(symbols[0]["name"], "f51");
    assert_eq!(versions.last(), Some(&json!(51)));

    // A request cancelled in the same write is answered either with
    // RequestCanceled or, when the reader handed the request over before it
    // read the cancel, with its result: never both, never neither. That a
    // cancel reaching the queue in time cancels is proven deterministically
    // in process (crates/nudge-lsp/tests/scheduling.rs).
    let mut cancelled = 0;
    for round in 0..10 {
        let id = 3000 + round;
        let mut bytes = frame(&json!({
            "jsonrpc": "2.0", "id": id, "method": "textDocument/documentSymbol",
            "params": { "textDocument": { "uri": uri } }
        }));
        bytes.extend(frame(&json!({
            "jsonrpc": "2.0", "method": "$/cancelRequest", "params": { "id": id }
        })));
        s.write_bytes(&bytes);
        let answer = loop {
            let msg = s.next_response();
            if msg["id"] == id {
                break msg;
            }
        };
        match answer.get("error") {
            Some(e) => {
                assert_eq!(e["code"], -32800);
                cancelled += 1;
            }
            None => assert_eq!(answer["result"][0]["name"], "f51"),
        }
    }
    eprintln!("{cancelled} of 10 requests cancelled over stdio");
    assert_eq!(s.request("shutdown", Value::Null), Value::Null);
    s.notify("exit", Value::Null);
    assert_eq!(s.exit_code(), Some(0));
}

#[test]
fn a_running_request_is_cancelled_over_stdio_and_does_not_hold_up_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    // A long file in one project, a short one edited in another.
    let big_dir = root.join("big");
    let small_dir = root.join("small");
    for dir in [&big_dir, &small_dir] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("nudge.toml"), "").unwrap();
    }
    let mut long = String::from("flow long {\n  trigger subscribed\n");
    for i in 0..8_000 {
        long.push_str(&format!(
            "  if profile.orders_count > {i} and profile.email != \"x{i}\" {{ wait 1h }}\n"
        ));
    }
    long.push_str("}\n");
    std::fs::write(big_dir.join("long.flow"), &long).unwrap();
    std::fs::write(small_dir.join("a.flow"), flow_named("a")).unwrap();
    let big = file_uri(&big_dir.join("long.flow"));
    let small = file_uri(&small_dir.join("a.flow"));
    let mut s = Session::start(&root.join("cache"));
    s.initialize(&root, "off");
    s.diagnostics_for(&big);
    s.diagnostics_for(&small);

    // Cancelled after it was handed to a worker: it stops and says so.
    let tokens = |id: i64| {
        json!({ "jsonrpc": "2.0", "id": id, "method": "textDocument/semanticTokens/full",
                "params": { "textDocument": { "uri": big } } })
    };
    s.write(tokens(100));
    std::thread::sleep(Duration::from_millis(50));
    s.notify("$/cancelRequest", json!({ "id": 100 }));
    let answer = s.next_response();
    assert_eq!(answer["id"], 100);
    assert_eq!(answer["error"]["code"], -32800, "{answer}");

    // While another one runs, an edit elsewhere is analysed and published.
    s.write(tokens(101));
    std::thread::sleep(Duration::from_millis(50));
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": small, "languageId": "nudge", "version": 1, "text": "flow a {\n  trigger nope\n}\n" } }),
    );
    let mut published_first = false;
    let answer = loop {
        let msg = s.next();
        if msg["method"] == "textDocument/publishDiagnostics" && msg["params"]["uri"] == small {
            published_first = true;
        }
        if msg["id"] == 101 {
            break msg;
        }
    };
    assert!(published_first, "the edit waited for the long request");
    assert!(
        answer["result"]["data"]
            .as_array()
            .is_some_and(|d| d.len() > 40_000)
    );

    // An edit of the long file itself: the running request is stale.
    s.write(tokens(102));
    std::thread::sleep(Duration::from_millis(50));
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": big, "languageId": "nudge", "version": 1, "text": flow_named("long") } }),
    );
    let answer = loop {
        let msg = s.next_response();
        if msg["id"] == 102 {
            break msg;
        }
    };
    assert_eq!(answer["error"]["code"], -32801, "{answer}");
    assert_eq!(s.request("shutdown", Value::Null), Value::Null);
    s.notify("exit", Value::Null);
    assert_eq!(s.exit_code(), Some(0));
}
