//! Escaping by context: a hostile value arrives inert wherever it lands in a
//! message, inline or through a template.

mod common;

use std::path::PathBuf;

use common::*;
use nudge_compiler::Project;
use nudge_compiler::bytecode::{Bundle, Value};
use nudge_test_support::{build, build_project};
use nudge_vm::Vm;

const SRC: &str = r#"
message mail(name: string) {
  channel email
  subject "Hi {name}"
  preheader "A note for {name}"
  body "<p>Hello {name}</p>"
}

message text(name: string) {
  channel sms
  text "Hi {name}. Reply STOP to opt out."
}

message hook(name: string) {
  channel webhook
  url "https://hooks.example/orders/{name}?src=nudge"
  payload "\{\"name\": \"{name}\", \"source\": \"nudge\"\}"
}

message tap(name: string, link: string) {
  channel push
  title "For {name}"
  url link
}

message mail_whole(name: string) {
  channel email
  subject name
  body name
}

flow f {
  trigger order_completed
  send mail("x")
  send text("x")
  send hook("x")
  send tap("x", "y")
  send mail_whole("x")
}
"#;

/// The rendered content of message `name` for one string argument (and more).
fn render(bundle: &Bundle, name: &str, args: &[&str]) -> Vec<(String, String)> {
    let vm = Vm::new(bundle);
    let i = bundle
        .messages
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("no message {name}")) as u32;
    let mut host = TestHost::new(bundle);
    let args: Vec<Value> = args.iter().map(|a| Value::str(a)).collect();
    vm.render(i, &args, &mut host)
        .unwrap_or_else(|e| panic!("{name}: {}", e.display(bundle)))
        .content
}

fn field<'a>(content: &'a [(String, String)], key: &str) -> &'a str {
    &content
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {content:?}"))
        .1
}

#[test]
fn html_in_an_inline_email_body_is_escaped_and_the_literal_markup_kept() {
    let b = build(&[("f.flow", SRC)]);
    let c = render(&b, "mail", &["<script>alert('x')</script>"]);
    assert_eq!(
        field(&c, "body"),
        "<p>Hello &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</p>"
    );
}

#[test]
fn a_json_breaking_value_stays_one_string_in_a_webhook_payload() {
    let b = build(&[("f.flow", SRC)]);
    let hostile = "\"},\"admin\":true,\"x\":{\"y\":\"\\";
    let c = render(&b, "hook", &[hostile]);
    let payload: serde_json::Value =
        serde_json::from_str(field(&c, "payload")).expect("the payload is still JSON");
    assert_eq!(
        payload,
        serde_json::json!({"name": hostile, "source": "nudge"})
    );
}

#[test]
fn a_value_in_a_url_is_percent_encoded() {
    let b = build(&[("f.flow", SRC)]);
    let c = render(&b, "hook", &["a b&c=d/../admin"]);
    assert_eq!(
        field(&c, "url"),
        "https://hooks.example/orders/a%20b%26c%3Dd%2F..%2Fadmin?src=nudge"
    );
}

#[test]
fn control_characters_are_removed_from_subjects_preheaders_sms_and_titles() {
    let b = build(&[("f.flow", SRC)]);
    let hostile = "Ana\r\nBcc: all@evil.example\u{2028}";
    let mail = render(&b, "mail", &[hostile]);
    assert_eq!(field(&mail, "subject"), "Hi AnaBcc: all@evil.example");
    assert_eq!(
        field(&mail, "preheader"),
        "A note for AnaBcc: all@evil.example"
    );
    let sms = render(&b, "text", &[hostile]);
    assert_eq!(
        field(&sms, "text"),
        "Hi AnaBcc: all@evil.example. Reply STOP to opt out."
    );
    let push = render(&b, "tap", &[hostile, "https://shop.example/"]);
    assert_eq!(field(&push, "title"), "For AnaBcc: all@evil.example");
}

#[test]
fn a_whole_value_is_escaped_for_its_place_and_a_whole_url_kept_a_url() {
    let b = build(&[("f.flow", SRC)]);
    let c = render(&b, "mail_whole", &["<b>\r\nX"]);
    assert_eq!(field(&c, "subject"), "<b>X");
    assert_eq!(field(&c, "body"), "&lt;b&gt;\r\nX");
    let push = render(
        &b,
        "tap",
        &["Ana", "https://shop.example/p?a=1&b=2\r\nSet-Cookie: x"],
    );
    assert_eq!(
        field(&push, "url"),
        "https://shop.example/p?a=1&b=2Set-Cookie: x"
    );
}

/// A project on disk with templates, in a fresh directory under the system's temp dir.
fn project_with_templates(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nudge-escaping-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const TEMPLATED: &str = r#"
message mail(name: string) {
  channel email
  subject template "t/subject.txt"
  body template "t/body.txt"
}

message hook(name: string) {
  channel webhook
  url template "t/url.txt"
  payload template "t/payload.json"
}

message text(name: string) {
  channel sms
  text template "t/sms.txt"
}

flow f {
  trigger order_completed
  send mail("x")
  send hook("x")
  send text("x")
}
"#;

#[test]
fn templates_are_escaped_for_the_place_they_land_whatever_their_extension() {
    let dir = project_with_templates(
        "templates",
        &[
            ("nudge.toml", ""),
            ("f.flow", TEMPLATED),
            ("t/subject.txt", "Hi {{ name }}"),
            ("t/body.txt", "<p>{{ name }}</p>{{ '<hr>' | safe }}"),
            ("t/url.txt", "https://hooks.example/o/{{ name }}"),
            ("t/payload.json", "{\"name\": \"{{ name }}\"}"),
            ("t/sms.txt", "Hi {{ name }}\nReply STOP to opt out."),
        ],
    );
    let project = Project::load(std::slice::from_ref(&dir)).expect("loads");
    let b = build_project(&project);
    let hostile = "<script>\"},\"admin\":true,\"a\":\"\r\nBcc: x a&b";
    let mail = render(&b, "mail", &[hostile]);
    assert_eq!(
        field(&mail, "subject"),
        "Hi <script>\"},\"admin\":true,\"a\":\"Bcc: x a&b"
    );
    assert_eq!(
        field(&mail, "body"),
        "<p>&lt;script&gt;&quot;},&quot;admin&quot;:true,&quot;a&quot;:&quot;\r\nBcc: x a&amp;b</p><hr>"
    );
    let hook = render(&b, "hook", &[hostile]);
    let payload: serde_json::Value =
        serde_json::from_str(field(&hook, "payload")).expect("the payload is still JSON");
    assert_eq!(payload, serde_json::json!({ "name": hostile }));
    assert!(
        field(&hook, "url").starts_with("https://hooks.example/o/%3Cscript%3E%22"),
        "{}",
        field(&hook, "url")
    );
    // The template's own line break is kept; the value's are removed.
    let sms = render(&b, "text", &[hostile]);
    assert_eq!(
        field(&sms, "text"),
        "Hi <script>\"},\"admin\":true,\"a\":\"Bcc: x a&b\nReply STOP to opt out."
    );
    let _ = std::fs::remove_dir_all(&dir);
}
