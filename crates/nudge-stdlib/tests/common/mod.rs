//! Helpers shared by the integration tests: a line scanner for the stdlib's
//! `.flow` files that does not depend on the parser, so the conventions can be
//! checked even while the parser is incomplete.

#![allow(dead_code)] // each test binary uses a different subset

use nudge_stdlib::{FILES, StdlibFile};

/// A field as written on one line: `name: type (= default)?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedField {
    /// The field's name.
    pub name: String,
    /// The type as written, such as `list<Product>` or `string?`.
    pub ty: String,
    /// The default as written, if any.
    pub default: Option<String>,
}

/// A block declaration found by [`scan`]: `event`, `type` or `profile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedDecl {
    /// `event`, `type` or `profile`.
    pub keyword: String,
    /// The declared name; empty for `profile`.
    pub name: String,
    /// The wire name of an event; empty otherwise.
    pub wire: String,
    /// The comment lines directly above the declaration, without `//`.
    pub doc: Vec<String>,
    /// The fields in order.
    pub fields: Vec<ScannedField>,
}

/// The stdlib file with that name.
pub fn stdlib_file(name: &str) -> &'static StdlibFile {
    FILES
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in FILES"))
}

/// Scans block declarations, relying on the stdlib's own layout: one header
/// line ending in `{`, one field per line, `}` alone on a line.
pub fn scan(source: &str) -> Vec<ScannedDecl> {
    let mut decls = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut current: Option<ScannedDecl> = None;
    for raw in source.lines() {
        let line = raw.trim();
        if let Some(decl) = current.as_mut() {
            if line == "}" {
                decls.push(current.take().unwrap());
            } else if !line.is_empty() && !line.starts_with("//") {
                decl.fields.push(parse_field(line));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix("//") {
            doc.push(comment.trim().to_string());
            continue;
        }
        if line.is_empty() {
            doc.clear();
            continue;
        }
        let header = line
            .strip_suffix('{')
            .unwrap_or_else(|| panic!("unexpected line outside a block: {line}"))
            .trim();
        let (keyword, rest) = header.split_once(' ').unwrap_or((header, ""));
        let (name, wire) = match rest.split_once(' ') {
            Some((name, wire)) => (name, wire.trim_matches('"')),
            None => (rest, ""),
        };
        current = Some(ScannedDecl {
            keyword: keyword.to_string(),
            name: name.to_string(),
            wire: wire.to_string(),
            doc: std::mem::take(&mut doc),
            fields: Vec::new(),
        });
    }
    assert!(current.is_none(), "unterminated block");
    decls
}

fn parse_field(line: &str) -> ScannedField {
    let line = line.trim_end_matches(',');
    let (name, rest) = line
        .split_once(':')
        .unwrap_or_else(|| panic!("field without a type: {line}"));
    let (ty, default) = match rest.split_once('=') {
        Some((ty, default)) => (ty, Some(default.trim().to_string())),
        None => (rest, None),
    };
    ScannedField {
        name: name.trim().to_string(),
        ty: ty.trim().to_string(),
        default,
    }
}

/// Every `event` declaration of `events.flow`.
pub fn scanned_events() -> Vec<ScannedDecl> {
    scan(stdlib_file("events.flow").source)
        .into_iter()
        .filter(|d| d.keyword == "event")
        .collect()
}

/// The flow-level name for a wire name: lower case, words joined by `_`.
pub fn snake_case(wire: &str) -> String {
    wire.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}

/// The events of the Segment e-commerce spec v2, by wire name.
pub const SEGMENT_ECOMMERCE_V2: &[&str] = &[
    "Products Searched",
    "Product List Viewed",
    "Product List Filtered",
    "Promotion Viewed",
    "Promotion Clicked",
    "Product Clicked",
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Checkout Step Viewed",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Order Updated",
    "Order Completed",
    "Order Refunded",
    "Order Cancelled",
    "Coupon Entered",
    "Coupon Applied",
    "Coupon Denied",
    "Coupon Removed",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Wishlist Product Added to Cart",
    "Product Shared",
    "Cart Shared",
    "Product Reviewed",
];

/// The lifecycle events the Segment spec lacks, by wire name.
pub const LIFECYCLE: &[&str] = &[
    "Order Shipped",
    "Order Delivered",
    "Return Requested",
    "Subscribed",
    "Unsubscribed",
    "Message Bounced",
    "Message Clicked",
    "Marked As Spam",
    "SMS Received",
    "Page Viewed",
    "Screen Viewed",
    "Signed Up",
];

/// Events about one product, which carry the product's fields flattened.
pub const SINGLE_PRODUCT: &[&str] = &[
    "Product Clicked",
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Wishlist Product Added to Cart",
    "Product Shared",
    "Product Reviewed",
];
