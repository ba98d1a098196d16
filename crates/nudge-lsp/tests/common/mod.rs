//! Fixtures shared by the feature tests: an in-memory project and cursor markers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nudge_diagnostics::FileId;
use nudge_lsp::Snapshot;

/// Where the fixtures' stdlib copies are said to live.
pub const STDLIB: &str = "/stdlib";

/// A cart flow triggered by `product_added`, messages in another file.
pub const CART: &str = r#"// Cart flows.
segment first_time = profile.orders_count == 0

let cart_page = "https://shop.example/cart"

// Reminds shoppers of what they added.
flow cart_added {
  trigger product_added where event.price > $0
  exit on order_completed
  wait 1d
  wait 1h
  send cart_reminder(trigger.product_id, cart_page)
  if first_time {
    wait 2h
    send cart_sms(cart_page)
  }
  wait 30m
}
"#;

/// Messages used by [`CART`].
pub const MESSAGES: &str = r#"// The first reminder, by email.
message cart_reminder(product: string, url: string) {
  channel email
  subject "Still thinking about {product}?"
  body "Your cart is saved: {url}"
}

message cart_sms(url: string) {
  channel sms
  purpose transactional
  text "Your cart is saved: {url}"
}

profile {
  // The store's loyalty tier.
  loyalty_tier: string = "none"
}
"#;

/// The absolute path of a fixture file.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/proj").join(name)
}

/// Analyses files given as `(name, text)` as one project.
pub fn snapshot(files: &[(&str, &str)]) -> Snapshot {
    let files = files
        .iter()
        .map(|(n, t)| (path(n), t.to_string()))
        .collect();
    Snapshot::analyse(files, Path::new(STDLIB))
}

/// The id of a fixture file in a snapshot.
pub fn file(snap: &Snapshot, name: &str) -> FileId {
    snap.file_id(&path(name))
        .expect("the file is in the project")
}

/// The byte offset marked by `|` in `pattern`, which must occur once in `text`
/// with the `|` removed: `pos_of(text, "trigger.|")`.
pub fn pos_of(text: &str, pattern: &str) -> u32 {
    let bar = pattern
        .find('|')
        .expect("the pattern marks the cursor with |");
    let needle = pattern.replacen('|', "", 1);
    let found: Vec<usize> = text.match_indices(&needle).map(|(i, _)| i).collect();
    assert_eq!(found.len(), 1, "{needle:?} must occur exactly once");
    (found[0] + bar) as u32
}
