//! Completion snippets for statements, and each keyword offered once.

mod common;

use common::{CART, MESSAGES, file, pos_of, snapshot};
use nudge_lsp::completion::{self, ItemKind};

#[test]
fn statement_snippets_are_offered_in_flows_and_blocks_only() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let f = file(&snap, "cart.flow");
    let in_flow = completion::complete(&snap, f, pos_of(CART, "  |wait 1d"));
    let snippet = |label: &str| {
        in_flow
            .iter()
            .find(|i| i.label == label)
            .unwrap_or_else(|| panic!("{label} is offered"))
            .clone()
    };
    let wait_for = snippet("wait for … within");
    assert_eq!(wait_for.kind, ItemKind::Snippet);
    assert_eq!(
        wait_for.snippet.as_deref(),
        Some("wait for ${1:order_completed} within ${2:1d}")
    );
    assert!(
        snippet("split { … }")
            .snippet
            .unwrap()
            .starts_with("split {\n\t${1:50}% ")
    );
    assert!(
        snippet("split optimise { … }")
            .snippet
            .unwrap()
            .starts_with("split optimise floor ${1:10}% {\n\t${2:first} {")
    );
    assert_eq!(
        snippet("if { … }").snippet.as_deref(),
        Some("if ${1:condition} {\n\t$0\n}")
    );
    assert!(in_flow.iter().any(|i| i.label == "goal … within"));

    // Inside an `if` block: the step snippets, not the flow's header clauses.
    let in_if = completion::complete(&snap, f, pos_of(CART, "    |wait 2h"));
    assert!(
        in_if
            .iter()
            .any(|i| i.label == "split { … }" && i.snippet.is_some())
    );
    assert!(!in_if.iter().any(|i| i.label == "goal … within"));

    // At the top level there are no statements.
    let top = completion::complete(&snap, f, CART.len() as u32);
    assert!(top.iter().all(|i| i.snippet.is_none()));
}

#[test]
fn exit_if_is_offered_once_in_a_flow() {
    let snap = snapshot(&[("cart.flow", CART), ("messages.flow", MESSAGES)]);
    let items = completion::complete(&snap, file(&snap, "cart.flow"), pos_of(CART, "  |wait 1d"));
    let mut labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(labels.iter().filter(|l| **l == "exit if").count(), 1);
    let n = labels.len();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), n, "every label once");
}
