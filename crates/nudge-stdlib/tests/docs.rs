//! `docs/stdlib.md` is written by hand; these checks keep it in step with the
//! builtin table and the `.flow` files.

mod common;

use nudge_stdlib::BUILTINS;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/stdlib.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The table rows of the doc, as lists of trimmed cells.
fn rows(doc: &str) -> Vec<Vec<String>> {
    doc.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn every_builtin_is_documented_with_its_exact_signature() {
    let rows = rows(&doc());
    for b in BUILTINS {
        let code = format!("`{}`", b.signature);
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&code))
            .unwrap_or_else(|| panic!("docs/stdlib.md has no row for {code}"));
        assert_eq!(
            row.get(1).map(String::as_str),
            Some(b.doc),
            "doc of `{}`",
            b.name()
        );
    }
}

#[test]
fn every_documented_builtin_is_in_the_table() {
    // A row left behind by a renamed or removed builtin would document a
    // function the checker rejects.
    let doc = doc();
    let section = doc
        .split("\n## Builtins\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/stdlib.md has a Builtins section");
    let documented: Vec<Vec<String>> = rows(section)
        .into_iter()
        .filter(|r| r.first().is_some_and(|c| c.starts_with('`')))
        .collect();
    assert_eq!(documented.len(), BUILTINS.len(), "one row per builtin");
    for row in documented {
        let known = BUILTINS
            .iter()
            .any(|b| row[0] == format!("`{}`", b.signature));
        assert!(
            known,
            "docs/stdlib.md documents {} which is not a builtin",
            row[0]
        );
    }
}

#[test]
fn every_event_is_documented_with_its_wire_and_flow_names_and_properties() {
    let rows = rows(&doc());
    let product_row = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some("`Product`"))
        .expect("docs/stdlib.md has a row for Product")
        .join(" | ");
    for e in common::scanned_events() {
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&e.wire))
            .unwrap_or_else(|| panic!("docs/stdlib.md has no row for {:?}", e.wire));
        assert_eq!(row[1], format!("`{}`", e.name), "flow name of {:?}", e.wire);
        let props = row.last().unwrap();
        // Flattened product fields are written once, in the Product row.
        let flattened = props.contains("[`Product`](#types) fields");
        for f in &e.fields {
            let written = match &f.default {
                Some(d) => format!("`{}: {} = {d}`", f.name, f.ty),
                None => format!("`{}: {}`", f.name, f.ty),
            };
            assert!(
                props.contains(&written) || (flattened && product_row.contains(&written)),
                "{:?}: property {written} is not documented",
                e.wire
            );
        }
    }
}

#[test]
fn every_profile_trait_is_documented_with_its_type() {
    let rows = rows(&doc());
    let profile = common::scan(common::stdlib_file("profile.flow").source)
        .into_iter()
        .find(|d| d.keyword == "profile")
        .expect("profile block");
    for f in &profile.fields {
        let ty = match &f.default {
            Some(d) => format!("`{} = {d}`", f.ty),
            None => format!("`{}`", f.ty),
        };
        assert!(
            rows.iter()
                .any(|r| r.first() == Some(&format!("`{}`", f.name)) && r.get(1) == Some(&ty)),
            "trait {} ({ty}) is not documented",
            f.name
        );
    }
}
