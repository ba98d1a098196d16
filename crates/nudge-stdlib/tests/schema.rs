//! Conventions of the standard events, types and profile, checked with a line
//! scan so they hold whatever the state of the parser.

mod common;

use std::collections::HashSet;

use common::{
    LIFECYCLE, SEGMENT_ECOMMERCE_V2, SINGLE_PRODUCT, ScannedDecl, ScannedField, scan,
    scanned_events, snake_case, stdlib_file,
};

fn field<'a>(decl: &'a ScannedDecl, name: &str) -> Option<&'a ScannedField> {
    decl.fields.iter().find(|f| f.name == name)
}

fn event(wire: &str) -> ScannedDecl {
    scanned_events()
        .into_iter()
        .find(|e| e.wire == wire)
        .unwrap_or_else(|| panic!("no event with wire name {wire:?}"))
}

fn product_type() -> ScannedDecl {
    scan(stdlib_file("types.flow").source)
        .into_iter()
        .find(|d| d.keyword == "type" && d.name == "Product")
        .expect("types.flow declares Product")
}

fn assert_field(decl: &ScannedDecl, name: &str, ty: &str, default: Option<&str>) {
    let f = field(decl, name).unwrap_or_else(|| panic!("{} has no field {name}", decl.name));
    assert_eq!(
        (f.ty.as_str(), f.default.as_deref()),
        (ty, default),
        "{}.{name}",
        decl.name
    );
}

#[test]
fn snake_case_joins_lowercased_words() {
    assert_eq!(snake_case("Checkout Started"), "checkout_started");
    assert_eq!(
        snake_case("Product Added to Wishlist"),
        "product_added_to_wishlist"
    );
    assert_eq!(snake_case("SMS Received"), "sms_received");
}

#[test]
fn every_flow_name_is_the_snake_case_of_its_wire_name() {
    for e in scanned_events() {
        assert_eq!(e.name, snake_case(&e.wire), "event {:?}", e.wire);
    }
}

#[test]
fn events_are_exactly_the_segment_spec_plus_the_lifecycle_events() {
    let events = scanned_events();
    let wires: Vec<&str> = events.iter().map(|e| e.wire.as_str()).collect();
    let unique: HashSet<&str> = wires.iter().copied().collect();
    assert_eq!(unique.len(), wires.len(), "duplicate wire names");
    let expected: HashSet<&str> = SEGMENT_ECOMMERCE_V2
        .iter()
        .chain(LIFECYCLE)
        .copied()
        .collect();
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

#[test]
fn every_event_has_a_one_line_comment_directly_above() {
    for e in scanned_events() {
        assert_eq!(e.doc.len(), 1, "event {} needs one comment line", e.name);
        assert!(
            !e.doc[0].is_empty(),
            "event {} has an empty comment",
            e.name
        );
    }
}

#[test]
fn field_names_are_unique_within_each_declaration() {
    for file in nudge_stdlib::FILES {
        for d in scan(file.source) {
            let mut seen = HashSet::new();
            for f in &d.fields {
                assert!(seen.insert(&f.name), "{} repeats {}", d.name, f.name);
            }
        }
    }
}

#[test]
fn every_field_type_is_a_builtin_type_or_a_stdlib_record() {
    let records: HashSet<String> = scan(stdlib_file("types.flow").source)
        .into_iter()
        .map(|d| d.name)
        .collect();
    let known = |name: &str| {
        matches!(
            name,
            "bool" | "int" | "decimal" | "money" | "string" | "duration" | "time" | "date"
        ) || records.contains(name)
    };
    for file in nudge_stdlib::FILES {
        for d in scan(file.source) {
            for f in &d.fields {
                let ty = f.ty.trim_end_matches('?');
                let inner = ty
                    .strip_prefix("list<")
                    .and_then(|t| t.strip_suffix('>'))
                    .unwrap_or(ty);
                assert!(
                    known(inner),
                    "{}.{} has unknown type {}",
                    d.name,
                    f.name,
                    f.ty
                );
            }
        }
    }
}

#[test]
fn amounts_are_money_and_counts_are_int() {
    for e in scanned_events() {
        for f in &e.fields {
            let base = f.ty.trim_end_matches('?');
            match f.name.as_str() {
                "price" | "total" | "revenue" | "value" | "subtotal" | "shipping" | "tax"
                | "discount" => assert_eq!(base, "money", "{}.{}", e.name, f.name),
                "quantity" | "step" => assert_eq!(base, "int", "{}.{}", e.name, f.name),
                // A promotion's position is a slot name such as `home_banner_top`.
                "position" if e.name.starts_with("promotion_") => {
                    assert_eq!(f.ty, "string?", "{}.position", e.name)
                }
                "position" => assert_eq!(f.ty, "int?", "{}.position", e.name),
                "currency" => assert_eq!(f.ty, "string?", "{}.currency", e.name),
                "products" => assert_eq!(
                    (f.ty.as_str(), f.default.as_deref()),
                    ("list<Product>", Some("[]")),
                    "{}.products",
                    e.name
                ),
                _ => {}
            }
        }
    }
}

#[test]
fn everyday_amounts_default_to_zero() {
    for e in scanned_events() {
        for name in ["value", "total", "revenue"] {
            if let Some(f) = field(&e, name) {
                assert_eq!(
                    (f.ty.as_str(), f.default.as_deref()),
                    ("money", Some("$0")),
                    "{}.{name}",
                    e.name
                );
            }
        }
    }
}

#[test]
fn order_events_require_the_order_id() {
    for wire in [
        "Order Updated",
        "Order Completed",
        "Order Refunded",
        "Order Cancelled",
        "Order Shipped",
        "Order Delivered",
        "Return Requested",
    ] {
        assert_field(&event(wire), "order_id", "string", None);
    }
    // A checkout may start before the store has created an order.
    assert_field(&event("Checkout Started"), "order_id", "string?", None);
}

#[test]
fn single_product_events_carry_the_product_fields_flattened() {
    let product = product_type();
    for wire in SINGLE_PRODUCT {
        let e = event(wire);
        for pf in &product.fields {
            assert_eq!(
                field(&e, &pf.name),
                Some(pf),
                "{wire} differs from Product on {}",
                pf.name
            );
        }
    }
    for wire in [
        "Product Added",
        "Product Removed",
        "Wishlist Product Added to Cart",
    ] {
        assert_field(&event(wire), "cart_id", "string?", None);
    }
    assert!(field(&event("Product Viewed"), "cart_id").is_none());
}

#[test]
fn product_follows_the_segment_product_object() {
    let p = product_type();
    let got: Vec<(&str, &str, Option<&str>)> = p
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str(), f.default.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("product_id", "string", None),
            ("sku", "string?", None),
            ("category", "string?", None),
            ("name", "string?", None),
            ("brand", "string?", None),
            ("variant", "string?", None),
            ("price", "money", Some("$0")),
            ("quantity", "int", Some("1")),
            ("coupon", "string?", None),
            ("position", "int?", None),
            ("url", "string?", None),
            ("image_url", "string?", None),
        ]
    );
}

#[test]
fn messaging_events_name_their_channel() {
    for wire in [
        "Subscribed",
        "Unsubscribed",
        "Message Bounced",
        "Message Clicked",
        "Marked As Spam",
    ] {
        assert_field(&event(wire), "channel", "string", None);
    }
    assert_field(&event("Subscribed"), "list", "string?", None);
    assert_field(&event("Message Bounced"), "kind", "string?", None);
    assert_field(&event("Message Clicked"), "url", "string?", None);
    // STOP detection needs the text of every inbound SMS.
    assert_field(&event("SMS Received"), "text", "string", None);
    assert_field(&event("SMS Received"), "from", "string?", None);
}

#[test]
fn profile_has_the_standard_traits() {
    let profile = scan(stdlib_file("profile.flow").source)
        .into_iter()
        .find(|d| d.keyword == "profile")
        .expect("profile.flow declares the profile");
    let got: Vec<(&str, &str, Option<&str>)> = profile
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str(), f.default.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("email", "string?", None),
            ("phone", "string?", None),
            ("first_name", "string?", None),
            ("last_name", "string?", None),
            ("timezone", "string?", None),
            ("name", "string?", None),
            ("title", "string?", None),
            ("username", "string?", None),
            ("gender", "string?", None),
            ("birthday", "date?", None),
            ("age", "int?", None),
            ("avatar", "string?", None),
            ("website", "string?", None),
            ("description", "string?", None),
            ("street", "string?", None),
            ("city", "string?", None),
            ("state", "string?", None),
            ("postal_code", "string?", None),
            ("country", "string?", None),
            ("locale", "string?", None),
            ("device_token", "string?", None),
            ("consent", "Consent?", None),
            ("orders_count", "int", Some("0")),
            ("total_spent", "money", Some("$0")),
            ("first_order_at", "time?", None),
            ("last_order_at", "time?", None),
            ("last_seen_at", "time?", None),
            ("created_at", "time?", None),
            ("subscribed", "bool", Some("false")),
        ]
    );
}

#[test]
fn every_profile_trait_says_who_maintains_it() {
    let source = stdlib_file("profile.flow").source;
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let mut traits = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains(':') && !line.starts_with("//") {
            traits += 1;
            let above = lines[i - 1];
            assert!(
                above.starts_with("// Set by") || above.starts_with("// Maintained by"),
                "trait `{line}` lacks a comment saying who maintains it"
            );
        }
    }
    assert_eq!(traits, 29);
}
