//! Stable codes for dead-letter reasons: the file keeps each reason's full
//! text, `/metrics` counts them by these few codes.

/// Every code, in the order `/metrics` lists them.
pub const CODES: [&str; 7] = [
    "not_utf8",
    "malformed_json",
    "duplicate_key",
    "too_large",
    "beyond_horizon",
    "invalid_envelope",
    "other",
];

/// The code of a dead letter's reason.
pub fn code(reason: &str) -> &'static str {
    if reason.starts_with("not UTF-8") {
        "not_utf8"
    } else if reason.starts_with("malformed JSON") || reason.starts_with("expected a JSON object") {
        "malformed_json"
    } else if reason.contains(" is given twice") {
        "duplicate_key"
    } else if reason.contains("over the limit of") {
        "too_large"
    } else if reason.contains("refused, as applying it would move the clock there") {
        "beyond_horizon"
    } else if reason.starts_with("missing `")
        || reason.starts_with("the call names no customer")
        || reason.starts_with("unsupported call type")
        || reason.contains("is not an RFC 3339 time")
        || reason.starts_with('`')
    {
        // The envelope's own faults: a key missing, of the wrong type, or unreadable.
        "invalid_envelope"
    } else {
        "other"
    }
}
