//! End-to-end: the unsubscribe link of a real email, served by `nudge
//! serve` (the confirm page, the one-click POST of RFC 8058), and the
//! preference page, over HTTP and in headless Chromium.

mod common;
use common::{Server, afternoon_zone, basic_auth, http_agent, serve_smtp, start_server_with};

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "a-long-random-unsubscribe-secret";

fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next()?;
    // Long headers are folded onto continuation lines.
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A shop that emails a note for every order, through a local SMTP server,
/// with unsubscribe links pointing at the `nudge serve` about to start.
struct Shop {
    _tmp: tempfile::TempDir,
    server: Server,
    mail: Arc<Mutex<Vec<String>>>,
}

impl Shop {
    fn start() -> Shop {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("shop");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(
            project.join("flows.flow"),
            r#"profile {
  topics: list<string>?
  email_frequency: string?
  preferred_hour: int?
}

message note(what: string) {
  channel email
  subject "{what}"
  body "<p>{what}</p>"
}

flow on_order {
  trigger order_completed
  entry always
  send note("order {trigger.order_id}")
}
"#,
        )
        .unwrap();
        let smtp = TcpListener::bind("127.0.0.1:0").unwrap();
        let smtp_port = smtp.local_addr().unwrap().port();
        let mail = Arc::new(Mutex::new(Vec::new()));
        serve_smtp(smtp, Arc::clone(&mail));
        // The links must name the server's port before it starts.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            project.join("nudge.toml"),
            format!(
                "[channels.email]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"Shop <news@shop.example>\"\nunsubscribe_url = \"http://127.0.0.1:{port}/unsubscribe\"\nunsubscribe_secret = \"{SECRET}\"\n\n[preferences]\ntopics = [\"news\", \"offers\"]\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{port}");
        let server = start_server_with(
            &project,
            &["--write-key", common::WRITE_KEY, "--listen", &listen],
            &[],
        );
        Shop {
            _tmp: tmp,
            server,
            mail,
        }
    }

    fn ingest(&self, calls: &[Value]) {
        let (status, text) = post(
            &self.server,
            "/v1/batch",
            &[("Authorization", basic_auth())],
            &json!({ "batch": calls }).to_string(),
        );
        assert_eq!(status, 200, "{text}");
    }

    fn customer(&self, id: &str, email: &str) {
        self.ingest(&[
            json!({"type": "identify", "userId": id, "traits": {"email": email, "timezone": afternoon_zone(), "consent": {"email": true}}}),
        ]);
    }

    fn order(&self, id: &str, order: &str) {
        self.ingest(&[
            json!({"type": "track", "userId": id, "event": "Order Completed", "properties": {"order_id": order, "total": 5.0}}),
        ]);
    }

    /// The emails received so far, once `n` have arrived (or a deadline).
    fn mail_to(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mail = self.mail.lock().unwrap().clone();
            if mail.len() >= n || Instant::now() > deadline {
                return mail;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn links() -> nudge_channels::Unsubscribe {
        nudge_channels::Unsubscribe::new("smtp", "http://127.0.0.1/unsubscribe", SECRET).unwrap()
    }

    fn preferences_url(&self, customer: &str) -> String {
        format!(
            "{}/preferences?c={customer}&t={}",
            self.server.base,
            Self::links().token(customer, "preferences")
        )
    }
}

fn post(server: &Server, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", server.base)
    };
    let mut req = http_agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut resp = req.send(body).expect("the request completes");
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

fn get(url: &str) -> (u16, String) {
    let mut resp = http_agent().get(url).call().expect("the request completes");
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

/// The last orders of everyone but the control customer send nothing.
fn only_control_was_sent_to(shop: &Shop, before: usize, control: &str) {
    let mail = shop.mail_to(before + 1);
    std::thread::sleep(Duration::from_millis(500));
    let mail_now = shop.mail.lock().unwrap().clone();
    assert_eq!(mail_now.len(), before + 1, "{mail:#?}");
    assert_eq!(
        header(&mail_now[before], "To").as_deref(),
        Some(control),
        "only the control customer is mailed"
    );
}

#[test]
fn the_one_click_link_of_a_real_email_unsubscribes_and_preferences_are_recorded() {
    let shop = Shop::start();
    shop.customer("u1", "ann@example.com");
    shop.customer("u2", "bob@example.com");
    shop.customer("u3", "carl@example.com");
    shop.order("u1", "o1");
    let mail = shop.mail_to(1);
    assert_eq!(mail.len(), 1);
    let list = header(&mail[0], "List-Unsubscribe").expect("a List-Unsubscribe header");
    let link = list
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    assert!(
        link.starts_with(&format!(
            "{}/unsubscribe?c=u1&ch=email&t=",
            shop.server.base
        )),
        "{link}"
    );

    // The confirm page, and a link that was changed.
    let (status, page) = get(&link);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<button type=\"submit\" id=\"unsubscribe\">"),
        "{page}"
    );
    assert!(page.contains("Stop receiving marketing emails"), "{page}");
    let forged = link.replace("c=u1", "c=u2");
    let (status, page) = get(&forged);
    assert_eq!(status, 403, "{page}");
    assert_eq!(
        post(&shop.server, &forged, &[], "List-Unsubscribe=One-Click").0,
        403
    );

    // RFC 8058: what a mailbox provider posts when the reader clicks
    // "unsubscribe" in its own interface.
    let (status, page) = post(
        &shop.server,
        &link,
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("You will get no more marketing emails"),
        "{page}"
    );

    // Bob's preference page shows his consent; he turns email off and
    // picks a time of day.
    let prefs = shop.preferences_url("u2");
    let (status, page) = get(&prefs);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("value=\"email\" id=\"channel-email\" checked"),
        "{page}"
    );
    assert!(page.contains("value=\"news\""), "{page}");
    let (status, page) = get(&prefs.replace("c=u2", "c=u3"));
    assert_eq!(status, 403, "{page}");
    let (status, page) = post(
        &shop.server,
        &prefs,
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        "topic=news&frequency=weekly&hour=9",
    );
    assert_eq!(status, 200, "{page}");
    let (status, page) = post(&shop.server, &prefs, &[], "hour=25");
    assert_eq!(status, 400, "{page}");

    // The next orders: only Carl, who changed nothing, is mailed.
    shop.order("u1", "o2");
    shop.order("u2", "o3");
    shop.order("u3", "o4");
    only_control_was_sent_to(&shop, 1, "carl@example.com");
    let (_, page) = get(&shop.preferences_url("u2"));
    for shown in [
        "value=\"email\" id=\"channel-email\">",
        "value=\"news\" id=\"topic-news\" checked>",
        "value=\"offers\" id=\"topic-offers\">",
        "<option value=\"weekly\" selected>",
        "<option value=\"9\" selected>09:00</option>",
    ] {
        assert!(
            page.contains(shown),
            "the page shows the choice: {shown} in {page}"
        );
    }
}

/// A headless Chromium driven over the DevTools protocol.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    socket: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium runs (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string))
                .filter(|p| !p.is_empty())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (_, list) = get(&format!("http://127.0.0.1:{port}/json/list"));
        let targets: Vec<Value> = serde_json::from_str(&list).unwrap();
        let ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (socket, _) = tungstenite::client(ws.as_str(), stream).unwrap();
        Browser {
            child,
            _profile: profile,
            socket,
            next: 0,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// The value of a JavaScript expression in the page (null while a
    /// navigation replaces the page).
    fn eval(&mut self, expression: &str) -> Value {
        let v = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        v["result"]["result"]["value"].clone()
    }

    fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn open(&mut self, url: &str) {
        // Marks the current document, so the wait is for a new one even
        // when the URL stays the same.
        self.eval("window.stale = true");
        self.call("Page.navigate", json!({ "url": url }));
        let check = format!(
            "!window.stale && location.href === {} && document.readyState === 'complete'",
            json!(url)
        );
        self.wait_for(&check);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_reader_unsubscribes_and_saves_preferences_in_a_real_browser() {
    let shop = Shop::start();
    shop.customer("u1", "ann@example.com");
    shop.customer("u2", "bob@example.com");
    shop.customer("u3", "carl@example.com");
    let mut browser = Browser::launch();

    // Ann opens her link and clicks the button.
    let link = format!(
        "{}/unsubscribe?c=u1&ch=email&t={}",
        shop.server.base,
        Shop::links().token("u1", "email")
    );
    browser.open(&link);
    assert_eq!(
        browser.eval("document.querySelector('h1').textContent"),
        json!("Unsubscribe")
    );
    browser.eval("document.getElementById('unsubscribe').click()");
    browser.wait_for("document.getElementById('done') !== null");
    assert_eq!(
        browser.eval("document.getElementById('done').textContent"),
        json!("You will get no more marketing emails from us.")
    );

    // Bob unticks email on his preference page, picks 9:00 and saves.
    browser.open(&shop.preferences_url("u2"));
    assert_eq!(
        browser.eval("document.getElementById('channel-email').checked"),
        json!(true)
    );
    browser.eval("document.getElementById('channel-email').click()");
    browser.eval("document.getElementById('topic-offers').click()");
    browser.eval(
        "document.getElementById('hour').value = '9'; \
         document.getElementById('save').click()",
    );
    browser.wait_for("document.getElementById('done') !== null");
    browser.open(&shop.preferences_url("u2"));
    assert_eq!(
        browser.eval(
            "[document.getElementById('channel-email').checked, \
              document.getElementById('topic-news').checked, \
              document.getElementById('topic-offers').checked, \
              document.getElementById('hour').value]"
        ),
        json!([false, true, false, "9"])
    );
    drop(browser);

    shop.order("u1", "o1");
    shop.order("u2", "o2");
    shop.order("u3", "o3");
    only_control_was_sent_to(&shop, 0, "carl@example.com");
}
