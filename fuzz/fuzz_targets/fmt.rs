//! The formatter is idempotent: on any source it accepts, formatting its
//! own output changes nothing, and that output parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nudge_diagnostics::FileId;

fuzz_target!(|src: &str| {
    let file = FileId(0);
    if let Ok(once) = nudge_fmt::format_source(file, src) {
        let twice = match nudge_fmt::format_source(file, &once) {
            Ok(t) => t,
            Err(e) => panic!("the formatter's output does not parse: {e:?}\n{once}"),
        };
        assert_eq!(once, twice, "formatting is not idempotent");
    }
});
