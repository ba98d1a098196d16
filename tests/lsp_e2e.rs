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
        let body = serde_json::to_string(&msg).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
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
