//! Folding ranges, selection ranges, document highlights and template links.

mod common;

use std::path::Path;

use common::{CART, MESSAGES, file, pos_of, snapshot};
use nudge_lsp::Snapshot;
use nudge_lsp::structure::{document_highlights, folding_ranges, selection_ranges, template_links};

fn line_of(text: &str, offset: u32) -> usize {
    text[..offset as usize].matches('\n').count()
}

#[test]
fn flows_blocks_and_comment_runs_fold() {
    let text = format!("// One.\n// Two.\n// Three.\n{CART}");
    let snap = snapshot(&[("cart.flow", &text), ("messages.flow", MESSAGES)]);
    let folds = folding_ranges(&snap, file(&snap, "cart.flow"));
    let lines: Vec<(usize, usize, bool)> = folds
        .iter()
        .map(|f| {
            (
                line_of(&text, f.span.start),
                line_of(&text, f.span.end),
                f.comment,
            )
        })
        .collect();
    // The flow from its header to its closing brace.
    let flow_start = line_of(&text, pos_of(&text, "|flow cart_added"));
    let flow_end = text.lines().count() - 1;
    assert!(lines.contains(&(flow_start, flow_end, false)), "{lines:?}");
    // The `if` block inside it.
    let if_line = line_of(&text, pos_of(&text, "|if first_time"));
    assert!(
        lines
            .iter()
            .any(|&(a, b, c)| a == if_line && b == if_line + 3 && !c),
        "{lines:?}"
    );
    // The three comment lines added at the top and CART's own first line
    // fold together; the lone comment further down does not fold.
    assert_eq!(
        lines.iter().filter(|l| l.2).collect::<Vec<_>>(),
        [&(0, 3, true)]
    );
}

#[test]
fn selection_grows_from_the_word_to_the_step_the_flow_and_the_file() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let off = pos_of(CART, "send cart_re|minder");
    let chain = selection_ranges(&snap, file(&snap, "cart.flow"), off);
    let texts: Vec<&str> = chain.iter().map(|s| &CART[s.range()]).collect();
    assert_eq!(texts[0], "cart_reminder");
    assert_eq!(
        texts[1],
        "send cart_reminder(trigger.product_id, cart_page)"
    );
    assert!(texts[2].starts_with("flow cart_added {"), "{texts:?}");
    assert_eq!(*texts.last().unwrap(), CART);
    for pair in chain.windows(2) {
        assert!(pair[1].start <= pair[0].start && pair[1].end >= pair[0].end);
        assert_ne!(pair[0], pair[1]);
    }
}

#[test]
fn highlights_are_the_declaration_and_uses_in_the_same_file() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let hs = document_highlights(&snap, f, pos_of(CART, "let cart_|page"));
    let found: Vec<(&str, bool)> = hs
        .iter()
        .map(|h| (&CART[h.span.range()], h.declaration))
        .collect();
    assert_eq!(
        found,
        [
            ("cart_page", true),
            ("cart_page", false),
            ("cart_page", false)
        ]
    );
    // A message declared in another file: only the uses here.
    let hs = document_highlights(&snap, f, pos_of(CART, "send cart_s|ms"));
    assert_eq!(hs.len(), 1);
    assert!(!hs[0].declaration);
}

#[test]
fn template_paths_link_to_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(root.join("templates/hello.html"), "<p>Hi</p>").unwrap();
    let text = "message hello() {\n  channel email\n  subject \"Hi\"\n  body template \"templates/hello.html\"\n}\n\nmessage bye() {\n  channel email\n  subject \"Bye\"\n  body template \"templates/missing.html\"\n}\n";
    let path = root.join("messages.flow");
    let snap = Snapshot::analyse(vec![(path.clone(), text.to_string())], Path::new("/stdlib"));
    let links = template_links(&snap, snap.file_id(&path).unwrap());
    assert_eq!(links.len(), 1, "only existing files are linked: {links:?}");
    assert_eq!(&text[links[0].span.range()], "templates/hello.html");
    assert_eq!(links[0].target, root.join("templates/hello.html"));
}
