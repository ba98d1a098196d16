//! The editor features, called directly with byte offsets on in-memory projects.

mod common;

use common::{CART, MESSAGES, file, path, pos_of, snapshot};
use nudge_diagnostics::Span;
use nudge_lsp::{actions, completion, hover, inlay, navigate, outline, semantic};

fn labels(items: &[completion::Item]) -> Vec<String> {
    items.iter().map(|i| i.label.clone()).collect()
}

fn render(items: &[completion::Item]) -> String {
    items
        .iter()
        .map(|i| match &i.detail {
            Some(d) => format!("{:?} {}: {d}", i.kind, i.label),
            None => format!("{:?} {}", i.kind, i.label),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Typing `trigger.` inside a cart flow triggered by `product_added` offers
/// the properties of "Product Added" with their types, even though the line
/// does not parse yet.
#[test]
fn trigger_dot_in_a_cart_flow_offers_product_added_properties() {
    let broken = CART.replace("  wait 30m\n", "  wait 30m\n  send cart_sms(trigger.\n");
    let snap = snapshot(&[("cart.flow", &broken), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    assert!(snap.analysis.has_errors(), "the fixture is mid-edit");
    let items = completion::complete(&snap, f, pos_of(&broken, "cart_sms(trigger.|\n"));
    assert!(items.iter().all(|i| i.kind == completion::ItemKind::Field));
    let price = items.iter().find(|i| i.label == "price").expect("price");
    assert_eq!(price.detail.as_deref(), Some("money"));
    let id = items
        .iter()
        .find(|i| i.label == "product_id")
        .expect("product_id");
    assert_eq!(id.detail.as_deref(), Some("string"));
    insta::assert_snapshot!(render(&items));
}

#[test]
fn trigger_dot_where_the_statement_parses_uses_the_analysis() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let items = completion::complete(&snap, f, pos_of(CART, "trigger.|product_id"));
    assert_eq!(labels(&items)[..3], ["cart_id", "product_id", "sku"]);
}

#[test]
fn event_names_after_trigger_exit_on_and_wait_for() {
    for (edit, cursor) in [
        (
            "  trigger product_added where",
            "  trigger |product_added where",
        ),
        ("  exit on order_completed", "  exit on |order_completed"),
    ] {
        let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
        let f = file(&snap, "cart.flow");
        assert!(CART.contains(edit));
        let items = completion::complete(&snap, f, pos_of(CART, cursor));
        let added = items
            .iter()
            .find(|i| i.label == "product_added")
            .expect("event");
        assert_eq!(added.kind, completion::ItemKind::Event);
        assert_eq!(added.detail.as_deref(), Some("\"Product Added\""));
        assert!(
            added
                .documentation
                .as_deref()
                .unwrap()
                .contains("- `price: money`")
        );
    }
    let text = CART.replace("  wait 30m\n", "  let paid = wait for \n");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let items = completion::complete(&snap, file(&snap, "cart.flow"), pos_of(&text, "wait for |"));
    assert!(labels(&items).contains(&"order_completed".to_string()));
    assert!(!labels(&items).contains(&"cart_reminder".to_string()));
}

#[test]
fn event_fields_after_event_dot_in_a_where() {
    let text = CART.replace(
        "  exit on order_completed\n",
        "  exit on order_completed where event.\n",
    );
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let items = completion::complete(
        &snap,
        file(&snap, "cart.flow"),
        pos_of(&text, "where event.|\n"),
    );
    let l = labels(&items);
    assert!(l.contains(&"order_id".to_string()), "{l:?}");
    assert!(l.contains(&"total".to_string()));
    assert!(!l.contains(&"cart_id".to_string()));
}

#[test]
fn profile_fields_include_stdlib_traits_and_the_projects_own() {
    let text = CART.replace("  wait 30m\n", "  exit if profile.\n");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let items = completion::complete(
        &snap,
        file(&snap, "cart.flow"),
        pos_of(&text, "profile.|\n"),
    );
    let tier = items
        .iter()
        .find(|i| i.label == "loyalty_tier")
        .expect("custom trait");
    assert_eq!(tier.detail.as_deref(), Some("string"));
    assert_eq!(
        tier.documentation.as_deref(),
        Some("The store's loyalty tier.")
    );
    let email = items
        .iter()
        .find(|i| i.label == "email")
        .expect("stdlib trait");
    assert_eq!(email.detail.as_deref(), Some("string?"));
}

#[test]
fn messages_after_send_with_their_signatures() {
    let text = CART.replace("  wait 30m\n", "  send \n");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let items = completion::complete(&snap, file(&snap, "cart.flow"), pos_of(&text, "  send |\n"));
    insta::assert_snapshot!(render(&items), @r"
    Message cart_reminder: cart_reminder(product: string, url: string)
    Message cart_sms: cart_sms(url: string)
    ");
}

#[test]
fn keywords_depend_on_the_block() {
    let text = format!("{CART}\n\n");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let top = labels(&completion::complete(&snap, f, text.len() as u32));
    assert_eq!(
        top,
        [
            "let", "event", "type", "profile", "segment", "message", "flow", "policy", "test"
        ]
    );
    let in_flow = labels(&completion::complete(&snap, f, pos_of(&text, "  |wait 1d")));
    assert!(in_flow.contains(&"exit on".to_string()), "{in_flow:?}");
    assert!(in_flow.contains(&"send".to_string()));
    let in_if = labels(&completion::complete(
        &snap,
        f,
        pos_of(&text, "    |wait 2h"),
    ));
    assert!(in_if.contains(&"send".to_string()));
    assert!(
        !in_if.contains(&"trigger".to_string()),
        "no header clauses in a block"
    );
    let labelled = CART.replace("  wait 30m\n", "  last: \n");
    let snap = snapshot(&[("cart.flow", &labelled), ("messages.flow", MESSAGES)]);
    let after_label = labels(&completion::complete(
        &snap,
        file(&snap, "cart.flow"),
        pos_of(&labelled, "last: |"),
    ));
    assert!(after_label.contains(&"send".to_string()), "{after_label:?}");
    let m = snapshot(&[("messages.flow", MESSAGES)]);
    let mf = file(&m, "messages.flow");
    let keys = labels(&completion::complete(
        &m,
        mf,
        pos_of(MESSAGES, "  |channel sms"),
    ));
    assert!(keys.contains(&"subject".to_string()) && keys.contains(&"channel".to_string()));
    let channels = labels(&completion::complete(
        &m,
        mf,
        pos_of(MESSAGES, "channel |sms"),
    ));
    assert_eq!(channels, ["email", "sms", "push", "webhook", "audience"]);
}

#[test]
fn expressions_offer_names_segments_and_builtins_with_signatures() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let items = completion::complete(&snap, f, pos_of(CART, "if |first_time"));
    let any = items.iter().find(|i| i.label == "any").expect("builtin");
    assert_eq!(
        any.detail.as_deref(),
        Some("any(items: list<T>, test: fn(T) -> bool) -> bool")
    );
    let seg = items
        .iter()
        .find(|i| i.label == "first_time")
        .expect("segment");
    assert_eq!(seg.kind, completion::ItemKind::Segment);
    let page = items
        .iter()
        .find(|i| i.label == "cart_page")
        .expect("constant");
    assert_eq!(page.detail.as_deref(), Some("string"));
    assert!(labels(&items).contains(&"trigger".to_string()));
}

#[test]
fn nothing_is_offered_inside_comments_and_string_text() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    assert!(completion::complete(&snap, f, pos_of(CART, "// Cart |flows")).is_empty());
    assert!(completion::complete(&snap, f, pos_of(CART, "https://shop|")).is_empty());
    // Past the end of the file: the top-level keywords, no panic.
    assert!(!completion::complete(&snap, f, 100_000).is_empty());
}

#[test]
fn hover_shows_event_documentation_and_properties() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let h = hover::hover(&snap, f, pos_of(CART, "trigger product_a|dded")).expect("hover");
    assert_eq!(&CART[h.range.range()], "product_added");
    insta::assert_snapshot!(h.markdown);
}

#[test]
fn hover_shows_a_fields_type_and_a_messages_channel_and_parameters() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let field = hover::hover(&snap, f, pos_of(CART, "event.pr|ice")).expect("field");
    assert!(
        field.markdown.starts_with("```nudge\nprice: money\n```"),
        "{}",
        field.markdown
    );
    assert!(field.markdown.contains("Field of event `product_added`"));
    let msg = hover::hover(&snap, f, pos_of(CART, "send cart_s|ms")).expect("message");
    insta::assert_snapshot!(msg.markdown, @r"
    ```nudge
    message cart_sms(url: string)
    ```

    Channel: `sms`  
    Purpose: `transactional`  
    Parameters: `url: string`
    ");
    let trig = hover::hover(&snap, f, pos_of(CART, "(trig|ger.product_id")).expect("trigger");
    assert!(
        trig.markdown.contains("trigger: product_added"),
        "{}",
        trig.markdown
    );
    assert!(trig.markdown.contains("\"Product Added\""));
}

#[test]
fn hover_on_a_builtin_shows_its_signature() {
    let text = CART.replace(
        "if first_time",
        "if first_time and contains(cart_page, \"x\")",
    );
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let h =
        hover::hover(&snap, file(&snap, "cart.flow"), pos_of(&text, "conta|ins(")).expect("hover");
    assert!(
        h.markdown.contains("contains(text: string"),
        "{}",
        h.markdown
    );
    // Whitespace and positions past the end have no hover.
    assert!(hover::hover(&snap, file(&snap, "cart.flow"), 1_000_000).is_none());
}

#[test]
fn definition_goes_across_files_and_into_the_stdlib() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let d = navigate::definition(&snap, f, pos_of(CART, "send cart_rem|inder")).expect("def");
    assert_eq!(d.path, path("messages.flow"));
    assert_eq!(&MESSAGES[d.span.range()], "cart_reminder");
    let d = navigate::definition(&snap, f, pos_of(CART, "exit on order_comp|leted")).expect("def");
    assert_eq!(d.path, std::path::Path::new("/stdlib/events.flow"));
    let events = nudge_stdlib::file("events.flow").unwrap().source;
    assert_eq!(&events[d.span.range()], "order_completed");
}

#[test]
fn references_span_the_project() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let m = file(&snap, "messages.flow");
    let refs = navigate::references(&snap, m, pos_of(MESSAGES, "message cart_rem|inder"), true);
    let shown: Vec<String> = refs
        .iter()
        .map(|l| format!("{}:{}", l.path.display(), l.span.start))
        .collect();
    assert_eq!(
        shown,
        [
            format!(
                "/proj/messages.flow:{}",
                pos_of(MESSAGES, "message |cart_reminder")
            ),
            format!("/proj/cart.flow:{}", pos_of(CART, "send |cart_reminder")),
        ]
    );
}

#[test]
fn rename_edits_every_file_and_refuses_bad_names() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let at = pos_of(CART, "send cart_rem|inder");
    let edits = navigate::rename(&snap, f, at, "cart_nudge").expect("renamed");
    let files: Vec<_> = edits.keys().cloned().collect();
    assert_eq!(files, [path("cart.flow"), path("messages.flow")]);
    for (p, es) in &edits {
        let text = if *p == path("cart.flow") {
            CART
        } else {
            MESSAGES
        };
        for (span, new) in es {
            assert_eq!(&text[span.range()], "cart_reminder");
            assert_eq!(new, "cart_nudge");
        }
    }
    use navigate::RenameError as E;
    assert_eq!(
        navigate::rename(&snap, f, at, "wait"),
        Err(E::Keyword("wait".into()))
    );
    assert_eq!(
        navigate::rename(&snap, f, at, "2x"),
        Err(E::NotIdentifier("2x".into()))
    );
    assert_eq!(
        navigate::rename(&snap, f, at, "a-b"),
        Err(E::NotIdentifier("a-b".into()))
    );
    assert_eq!(
        navigate::rename(&snap, f, at, "cart_sms"),
        Err(E::Taken("cart_sms".into()))
    );
    let stdlib = pos_of(CART, "exit on order_comp|leted");
    assert_eq!(
        navigate::prepare_rename(&snap, f, stdlib),
        Err(E::Stdlib("order_completed".into()))
    );
    assert_eq!(
        navigate::prepare_rename(&snap, f, pos_of(CART, "wa|it 1d")),
        Err(E::NoSymbol)
    );
    // A local variable in a flow renames too.
    let span = navigate::prepare_rename(&snap, f, pos_of(CART, "if first_t|ime")).expect("segment");
    assert_eq!(&CART[span.range()], "first_time");
}

#[test]
fn document_outline_lists_flows_with_their_steps() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let items = outline::document_symbols(&snap, file(&snap, "cart.flow"));
    fn show(items: &[outline::OutlineItem], depth: usize, out: &mut String) {
        for i in items {
            let detail = i
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{}{:?} {}{detail}\n",
                "  ".repeat(depth),
                i.kind,
                i.name
            ));
            show(&i.children, depth + 1, out);
        }
    }
    let mut out = String::new();
    show(&items, 0, &mut out);
    insta::assert_snapshot!(out);
}

#[test]
fn workspace_symbols_find_user_declarations_before_the_stdlib() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let found = outline::workspace_symbols(std::iter::once(&snap), "cart", 5);
    let names: Vec<(&str, &str)> = found.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        names,
        [
            ("cart_sms", "message"),
            ("cart_page", "constant"),
            ("cart_added", "flow"),
            ("cart_reminder", "message"),
            ("cart_id", "field"),
        ]
    );
    assert_eq!(found[4].path, std::path::Path::new("/stdlib/events.flow"));
}

#[test]
fn formatting_matches_nudge_fmt_and_leaves_broken_files_alone() {
    let messy = "flow   f {\ntrigger order_completed\n      wait 1d\n}\n";
    let out = actions::format(messy).expect("reformatted");
    assert_eq!(
        out,
        nudge_fmt::format_source(nudge_diagnostics::FileId(0), messy).unwrap()
    );
    assert_eq!(out, "flow f {\n  trigger order_completed\n  wait 1d\n}\n");
    assert_eq!(actions::format(&out), None, "already formatted");
    assert_eq!(
        actions::format("flow f {\n  wait\n"),
        None,
        "does not parse"
    );
}

#[test]
fn semantic_tokens_classify_names_by_what_they_resolve_to() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let toks = semantic::semantic_tokens(&snap, f);
    let at = |pattern: &str| {
        let off = pos_of(CART, pattern);
        let t = toks.iter().find(|t| t.span.start == off).expect("a token");
        (semantic::TOKEN_TYPES[t.kind as usize], t.modifiers)
    };
    assert_eq!(at("trigger |product_added"), ("event", 4), "a stdlib event");
    assert_eq!(at("send |cart_reminder"), ("function", 0));
    assert_eq!(at("flow |cart_added"), ("namespace", 1), "a declaration");
    assert_eq!(at("|trigger product_added"), ("keyword", 0));
    assert_eq!(at("wait |1d"), ("number", 0));
    assert_eq!(at("|// Cart flows."), ("comment", 0));
    assert_eq!(at("event.|price"), ("property", 4));
    let s = toks
        .iter()
        .find(|t| t.span.start == pos_of(CART, "= |\"https"))
        .expect("string");
    assert_eq!(&CART[s.span.range()], "\"https://shop.example/cart\"");
    assert!(toks.windows(2).all(|w| w[0].span.end <= w[1].span.start));
}

/// A misspelled event name is reported with a quick fix that replaces it.
#[test]
fn a_misspelled_event_is_underlined_with_a_did_you_mean_fix() {
    let text = CART.replace("exit on order_completed", "exit on order_complted");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let typo = pos_of(&text, "exit on |order_complted");
    let d = snap
        .analysis
        .diagnostics
        .iter()
        .find(|d| d.code.id == "E0202")
        .expect("E0202");
    assert_eq!(d.primary.span, Span::new(typo as usize, typo as usize + 14));
    let fixes = actions::quick_fixes(&snap, f, Span::new(typo as usize, typo as usize));
    assert_eq!(fixes.len(), 1);
    assert_eq!(fixes[0].title, "replace with `order_completed`");
    let edits = &fixes[0].edits[&path("cart.flow")];
    assert_eq!(edits, &[(d.primary.span, "order_completed".to_string())]);
    // Applying the fix makes the file clean.
    let mut fixed = text.clone();
    fixed.replace_range(d.primary.span.range(), &edits[0].1);
    let snap = snapshot(&[("cart.flow", &fixed), ("messages.flow", MESSAGES)]);
    assert!(!snap.analysis.has_errors());
}

#[test]
fn the_w0001_fix_adds_the_purchase_exit() {
    let text = CART.replace("  exit on order_completed\n", "");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let at = pos_of(&text, "|trigger product_added");
    let fixes = actions::quick_fixes(&snap, f, Span::new(at as usize, at as usize));
    let fix = fixes
        .iter()
        .find(|x| x.diagnostic.code.id == "W0001")
        .expect("W0001 fix");
    assert_eq!(fix.title, "add `exit on order_completed`");
    let (span, new) = &fix.edits[&path("cart.flow")][0];
    let mut fixed = text.clone();
    fixed.replace_range(span.range(), new);
    assert!(fixed.contains("where event.price > $0\n  exit on order_completed\n"));
}

#[test]
fn inlay_hints_show_the_time_since_the_trigger_at_each_wait() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let hints = inlay::inlay_hints(&snap, f, Span::new(0, CART.len()));
    let shown: Vec<(u32, &str)> = hints.iter().map(|h| (h.offset, h.label.as_str())).collect();
    assert_eq!(
        shown,
        [
            (pos_of(CART, "wait 1d|"), "+1d"),
            (pos_of(CART, "wait 1h|"), "+1d 1h"),
            (pos_of(CART, "wait 2h|"), "+1d 3h"),
            // After an `if` whose branch waited, the shortest path counts.
            (pos_of(CART, "wait 30m|"), "≥ +1d 1h 30m"),
        ]
    );
    let only_first = inlay::inlay_hints(&snap, f, Span::new(0, pos_of(CART, "wait 1d|") as usize));
    assert_eq!(only_first.len(), 1);
}

#[test]
fn event_fields_shared_by_every_awaited_event() {
    let text = CART.replace(
        "  wait 30m\n",
        "  let done = wait for order_completed or order_cancelled where event.\n",
    );
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let items = completion::complete(
        &snap,
        file(&snap, "cart.flow"),
        pos_of(&text, "where event.|\n"),
    );
    let l = labels(&items);
    assert!(l.contains(&"order_id".to_string()), "{l:?}");
    assert!(
        !l.contains(&"checkout_id".to_string()),
        "only in Order Completed: {l:?}"
    );
}

#[test]
fn completion_never_offers_a_label_twice() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    for name in ["cart.flow", "messages.flow"] {
        let f = file(&snap, name);
        let len = snap.text(f).len() as u32;
        for off in 0..=len {
            if !snap.text(f).is_char_boundary(off as usize) {
                continue;
            }
            let items = completion::complete(&snap, f, off);
            let mut seen = std::collections::HashSet::new();
            for i in &items {
                assert!(
                    seen.insert((&i.label, i.snippet.is_some())),
                    "{name}:{off}: {:?} offered twice",
                    i.label
                );
            }
        }
    }
    // The report that started this: `exit if` in a flow, and in a block.
    let f = file(&snap, "cart.flow");
    for pattern in ["  |wait 30m", "    |wait 2h"] {
        let items = completion::complete(&snap, f, pos_of(CART, pattern));
        let exits = items.iter().filter(|i| i.label == "exit if").count();
        assert_eq!(exits, 1, "{pattern}");
    }
}

#[test]
fn date_trigger_words_are_offered() {
    let text = "flow dated {\n  trigger 3d \n}\n";
    let snap = snapshot(&[("dated.flow", text)]);
    let f = file(&snap, "dated.flow");
    let items = completion::complete(&snap, f, pos_of(text, "trigger 3d |\n"));
    assert_eq!(labels(&items), ["after", "before"]);
    let text = "flow dated {\n  trigger on profile.birthday every \n}\n";
    let snap = snapshot(&[("dated.flow", text)]);
    let f = file(&snap, "dated.flow");
    let items = completion::complete(&snap, f, pos_of(text, "every |\n"));
    assert_eq!(labels(&items), ["year"]);
    let text = "flow dated {\n  trigger \n}\n";
    let snap = snapshot(&[("dated.flow", text)]);
    let f = file(&snap, "dated.flow");
    let items = completion::complete(&snap, f, pos_of(text, "trigger |\n"));
    assert!(labels(&items).contains(&"on".to_string()));
}

#[test]
fn split_words_are_offered() {
    let text =
        "flow tuned {\n  trigger order_completed\n  goal order_completed within 1d\n  split \n}\n";
    let snap = snapshot(&[("tuned.flow", text)]);
    let f = file(&snap, "tuned.flow");
    let items = completion::complete(&snap, f, pos_of(text, "split |\n"));
    assert_eq!(labels(&items), ["optimise"]);
    let text = "flow tuned {\n  trigger order_completed\n  goal order_completed within 1d\n  split optimise \n}\n";
    let snap = snapshot(&[("tuned.flow", text)]);
    let f = file(&snap, "tuned.flow");
    let items = completion::complete(&snap, f, pos_of(text, "optimise |\n"));
    assert_eq!(labels(&items), ["floor"]);
}
