//! The stdlib files parse cleanly with the real parser, and the parser sees
//! the same declarations as the line scanner the other tests rely on.

mod common;

use nudge_stdlib::FILES;
use nudge_syntax::ast::{
    EventDecl, ExprKind, FieldDecl, File, Item, ProfileDecl, TypeDecl, TypeDeclKind, TypeExpr,
};
use nudge_syntax::{FileId, parse};

fn parsed(name: &str) -> File {
    let (index, file) = FILES
        .iter()
        .enumerate()
        .find(|(_, f)| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in FILES"));
    let result = parse(FileId(index as u32), file.source);
    assert!(
        result.diagnostics.is_empty(),
        "{name}: {:#?}",
        result.diagnostics
    );
    result.file
}

/// The type as written, such as `list<Product>` or `time?`.
fn render(ty: &TypeExpr) -> String {
    let mut out = ty.name.name.clone();
    if !ty.args.is_empty() {
        let args: Vec<String> = ty.args.iter().map(render).collect();
        out = format!("{out}<{}>", args.join(", "));
    }
    if ty.optional {
        out.push('?');
    }
    out
}

fn events(file: &File) -> Vec<&EventDecl> {
    file.items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn field<'a>(fields: &'a [FieldDecl], name: &str) -> &'a FieldDecl {
    fields
        .iter()
        .find(|f| f.name.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn record<'a>(file: &'a File, name: &str) -> &'a [FieldDecl] {
    file.items
        .iter()
        .find_map(|i| match i {
            Item::Type(TypeDecl {
                name: n,
                kind: TypeDeclKind::Record(fields),
                ..
            }) if n.name == name => Some(fields.as_slice()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no record type {name}"))
}

#[test]
fn every_file_parses_without_diagnostics_or_error_nodes() {
    for file in FILES {
        let tree = parsed(file.name);
        assert!(!tree.items.is_empty(), "{} parsed to nothing", file.name);
        for item in &tree.items {
            assert!(
                !matches!(item, Item::Error(_)),
                "{}: unparsed text at {:?}",
                file.name,
                item.span()
            );
        }
    }
}

#[test]
fn events_flow_declares_only_events_named_after_their_wire_names() {
    let tree = parsed("events.flow");
    assert_eq!(events(&tree).len(), 40);
    assert_eq!(events(&tree).len(), tree.items.len(), "only events");
    for e in events(&tree) {
        assert_eq!(e.name.name, common::snake_case(&e.wire.value));
    }
}

#[test]
fn order_completed_has_its_key_fields() {
    let tree = parsed("events.flow");
    let order = events(&tree)
        .into_iter()
        .find(|e| e.name.name == "order_completed")
        .expect("order_completed is declared");
    assert_eq!(order.wire.value, "Order Completed");

    let id = field(&order.fields, "order_id");
    assert_eq!(render(&id.ty), "string");
    assert!(id.default.is_none());

    let total = field(&order.fields, "total");
    assert_eq!(render(&total.ty), "money");
    assert!(
        matches!(&total.default.as_ref().unwrap().kind, ExprKind::Money(m) if m.is_zero()),
        "total defaults to $0"
    );

    let products = field(&order.fields, "products");
    assert_eq!(render(&products.ty), "list<Product>");
    assert!(
        matches!(&products.default.as_ref().unwrap().kind, ExprKind::List(items) if items.is_empty())
    );
}

#[test]
fn the_parser_and_the_line_scanner_agree() {
    for file in FILES {
        let tree = parsed(file.name);
        let scanned = common::scan(file.source);
        assert_eq!(tree.items.len(), scanned.len(), "{}", file.name);
        for (item, s) in tree.items.iter().zip(&scanned) {
            let (name, wire, fields): (&str, &str, &[FieldDecl]) = match item {
                Item::Event(e) => (&e.name.name, &e.wire.value, &e.fields),
                Item::Type(TypeDecl {
                    name,
                    kind: TypeDeclKind::Record(fields),
                    ..
                }) => (&name.name, "", fields),
                Item::Profile(ProfileDecl { fields, .. }) => ("", "", fields),
                other => panic!("{}: unexpected item {other:?}", file.name),
            };
            assert_eq!((name, wire), (s.name.as_str(), s.wire.as_str()));
            let got: Vec<(String, String, bool)> = fields
                .iter()
                .map(|f| (f.name.name.clone(), render(&f.ty), f.default.is_some()))
                .collect();
            let want: Vec<(String, String, bool)> = s
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.ty.clone(), f.default.is_some()))
                .collect();
            assert_eq!(got, want, "{}: {name}", file.name);
        }
    }
}

#[test]
fn types_flow_declares_the_records() {
    let tree = parsed("types.flow");
    let product = record(&tree, "Product");
    assert_eq!(product.len(), 12);
    assert_eq!(render(&field(product, "product_id").ty), "string");
    assert!(matches!(
        &field(product, "quantity").default.as_ref().unwrap().kind,
        ExprKind::Int(1)
    ));
    let consent = record(&tree, "Consent");
    let channels: Vec<(&str, String)> = consent
        .iter()
        .map(|f| (f.name.name.as_str(), render(&f.ty)))
        .collect();
    assert_eq!(
        channels,
        [
            ("email", "bool?".to_string()),
            ("sms", "bool?".to_string()),
            ("push", "bool?".to_string())
        ]
    );
    // `type` is a keyword, which the grammar allows as a field name.
    assert_eq!(render(&field(record(&tree, "Filter"), "type").ty), "string");
}

#[test]
fn profile_flow_declares_the_standard_traits() {
    let tree = parsed("profile.flow");
    let [Item::Profile(profile)] = tree.items.as_slice() else {
        panic!("profile.flow holds one profile block");
    };
    assert_eq!(profile.fields.len(), 29);
    assert_eq!(render(&field(&profile.fields, "consent").ty), "Consent?");
    assert!(matches!(
        &field(&profile.fields, "subscribed")
            .default
            .as_ref()
            .unwrap()
            .kind,
        ExprKind::Bool(false)
    ));
}
