//! `nudge serve` request bodies: the function that cuts a body into call
//! lines, on any text, for each endpoint kind and with or without receipt
//! stamping. It refuses with a reason or gives lines that are each one line
//! of JSON; a single call it accepts is one `nudge run` would accept.
#![no_main]

// The body parser lives in the binary crate; it is compiled here as it is
// there, from the same file.
#[path = "../../src/commands/serve/body.rs"]
#[allow(dead_code)]
mod body;

use libfuzzer_sys::fuzz_target;
use nudge_runtime::segment;

const KINDS: [Option<&str>; 4] = [None, Some("track"), Some("identify"), Some("alias")];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = KINDS[usize::from(first & 3)];
    let receipt = first & 4 != 0;
    let now = "2026-01-05T10:00:00.000Z";
    let Ok(lines) = body::to_lines(kind, text, now, receipt, 32 * 1024) else {
        return;
    };
    for line in &lines.calls {
        assert!(!line.contains('\n'), "a line break in {line:?}");
        // JSON's grammar, not serde_json's number range: `[111e200111]` is a
        // batch of one valid JSON value, which the decoder then refuses as a
        // dead letter with its reason.
        serde_json::from_str::<Box<serde_json::value::RawValue>>(line)
            .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        if kind.is_some() {
            segment::parse_line(line).expect("an accepted single call is a valid call");
        }
    }
});
