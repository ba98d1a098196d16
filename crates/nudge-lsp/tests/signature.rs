//! Signature help for messages and builtins, with the active parameter.

mod common;

use common::{CART, MESSAGES, file, pos_of, snapshot};
use nudge_lsp::signature::signature_help;

fn params(sig: &nudge_lsp::signature::Signature) -> Vec<&str> {
    sig.params
        .iter()
        .map(|&(a, b)| &sig.label[a as usize..b as usize])
        .collect()
}

#[test]
fn a_message_call_shows_its_parameters_and_the_one_being_written() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let first = signature_help(&snap, f, pos_of(CART, "cart_reminder(trig|ger")).unwrap();
    assert_eq!(first.label, "cart_reminder(product: string, url: string)");
    assert_eq!(params(&first), ["product: string", "url: string"]);
    assert_eq!(first.active, Some(0));
    assert_eq!(
        first.documentation.as_deref(),
        Some("The first reminder, by email.")
    );
    let second = signature_help(&snap, f, pos_of(CART, "product_id, cart_|page)")).unwrap();
    assert_eq!(second.active, Some(1));
    // Outside the parentheses: nothing.
    assert_eq!(
        signature_help(&snap, f, pos_of(CART, "  se|nd cart_reminder")),
        None
    );
}

#[test]
fn a_builtin_call_and_a_named_argument() {
    let text = "message hello(code: string, url: string) {\n  channel email\n  subject \"Hi {code}\"\n  body \"{url}\"\n}\n\nflow welcome {\n  trigger order_completed\n  if any(trigger.products, p => p.price > $10) {\n    send hello(url: \"x\", code: \"y\")\n  }\n}\n";
    let snap = snapshot(&[("a.flow", text)]);
    let f = file(&snap, "a.flow");
    let any = signature_help(&snap, f, pos_of(text, "p => p.pr|ice")).unwrap();
    assert_eq!(
        any.label,
        "any(items: list<T>, test: fn(T) -> bool) -> bool"
    );
    assert_eq!(params(&any), ["items: list<T>", "test: fn(T) -> bool"]);
    assert_eq!(any.active, Some(1));
    assert!(
        any.documentation
            .unwrap()
            .starts_with("Whether at least one item")
    );
    // `url:` is written first but is the second parameter.
    let named = signature_help(&snap, f, pos_of(text, "url: \"|x\"")).unwrap();
    assert_eq!(named.active, Some(1));
    let named = signature_help(&snap, f, pos_of(text, "code: \"|y\"")).unwrap();
    assert_eq!(named.active, Some(0));
}
