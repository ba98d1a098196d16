//! Rendering templates: every message of every example renders with plausible arguments.

mod common;

use common::*;
use nudge_compiler::Project;
use nudge_compiler::bytecode::{ContentValue, Type, Value};
use nudge_test_support::{build, build_project, example_dirs};
use nudge_vm::{Vm, VmErrorKind};

#[test]
fn every_example_message_renders() {
    let dirs = example_dirs();
    assert!(dirs.len() >= 10, "expected the ten example projects");
    let mut templates = 0;
    let mut cart_reminder = None;
    for dir in dirs {
        let project = Project::load(std::slice::from_ref(&dir)).expect("example loads");
        let bundle = build_project(&project);
        let vm = Vm::new(&bundle);
        let mut host = TestHost::new(&bundle);
        host.set(&bundle, "first_name", Value::str("Ana"));
        for (mi, m) in bundle.messages.iter().enumerate() {
            let args: Vec<Value> = m
                .params
                .iter()
                .map(|p| sample(&bundle, &p.ty, &p.name))
                .collect();
            let r = vm.render(mi as u32, &args, &mut host).unwrap_or_else(|e| {
                panic!("{}: {}: {}", dir.display(), m.name, e.display(&bundle))
            });
            assert_eq!(r.content.len(), m.content.len());
            for (c, (key, text)) in m.content.iter().zip(&r.content) {
                assert_eq!(&c.key, key);
                assert!(!text.trim().is_empty(), "{}: {key} is empty", m.name);
                let ContentValue::Template(t) = &c.value else {
                    continue;
                };
                templates += 1;
                assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
                assert!(!text.contains("none"), "{}: none printed: {text}", m.name);
                if t.source.contains("profile.first_name") {
                    assert!(text.contains("Ana"), "{}: {text}", m.name);
                }
                // Every string parameter printed as `{{ p }}` shows its value.
                for (p, a) in m.params.iter().zip(&args) {
                    if p.ty == Type::String && t.source.contains(&format!("{{{{ {} }}}}", p.name)) {
                        assert!(
                            text.contains(&a.to_text()),
                            "{}: {}: {text}",
                            m.name,
                            p.name
                        );
                    }
                }
                if m.name == "cart_reminder" {
                    cart_reminder = Some(text.clone());
                }
            }
        }
    }
    assert!(templates >= 20, "only {templates} templates rendered");
    // The loop over products printed each one, with money as shoppers read it.
    let text = cart_reminder.expect("the cart reminder rendered");
    assert_eq!(text.matches("<td>name-x</td>").count(), 2, "{text}");
    assert!(text.contains("2 × $12.50"), "{text}");
    assert!(
        text.contains("href=\"https://shop.example/cart\""),
        "lets are in the context and links are not mangled: {text}"
    );
}

#[test]
fn template_context_holds_params_profile_lets_and_escapes_html() {
    let dir = std::env::temp_dir().join(format!("nudge-vm-tpl-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("t")).unwrap();
    std::fs::write(
        dir.join("t/list.html"),
        "{% for p in items %}[{{ p.name }}:{{ p.price }}:{{ p.quantity }}]{% endfor %}\
         {{ profile.orders_count }}|{{ profile.phone }}|{{ site }}|{{ note }}",
    )
    .unwrap();
    // Unknown filters are compile errors now (E0411); a filter given a value
    // it cannot take still fails only at render time.
    std::fs::write(dir.join("t/broken.html"), "{{ items | round }}").unwrap();
    let src = r#"
let site = "https://x.example/a?b=1&c=2"

message list(items: list<Product>, note: string) {
  channel email
  subject "s"
  body template "t/list.html"
}

message broken(items: list<Product>) {
  channel email
  subject "s"
  body template "t/broken.html"
}
"#;
    let path = dir.join("m.flow");
    let bundle = build(&[(path.to_str().unwrap(), src)]);
    let vm = Vm::new(&bundle);
    let mut host = TestHost::new(&bundle);
    let product = |name: &str, price: &str| {
        record(
            &bundle,
            "Product",
            &[
                ("product_id", Value::str("p")),
                ("name", Value::str(name)),
                ("price", money(price)),
            ],
        )
    };
    let items = Value::List(vec![product("Mug", "8"), product("<b>Tea</b>", "3.5")].into());
    let list = bundle
        .messages
        .iter()
        .position(|m| m.name == "list")
        .unwrap() as u32;
    let r = vm
        .render(list, &[items.clone(), Value::str("it's")], &mut host)
        .unwrap();
    assert_eq!(
        r.content[1].1,
        "[Mug:$8.00:1][&lt;b&gt;Tea&lt;/b&gt;:$3.50:1]0||https://x.example/a?b=1&amp;c=2|it&#x27;s"
    );
    let broken = bundle
        .messages
        .iter()
        .position(|m| m.name == "broken")
        .unwrap() as u32;
    let e = vm.render(broken, &[items], &mut host).unwrap_err();
    match e.kind {
        VmErrorKind::Template(m) => assert!(m.starts_with("t/broken.html: "), "{m}"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
