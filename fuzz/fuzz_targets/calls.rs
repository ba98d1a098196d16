//! Call decoding (Segment JSON lines): the decoder every host uses, the
//! tree reader it is held to (`parse_line`, the `oracle` feature) and the
//! replay's time reader on any line, against the cart-recovery example's
//! schemas. Neither panics, and they agree on what they refuse.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::ingest::{self, Decoded};
use nudge_runtime::segment;

static BUNDLE: LazyLock<Bundle> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cart_recovery");
    let project = nudge_compiler::Project::load(&[dir]).expect("the example loads");
    let analysis = nudge_compiler::check(&project);
    nudge_compiler::lower(&project, &analysis).expect("the example compiles")
});

fuzz_target!(|line: &str| {
    let tree = segment::parse_line(line);
    let _ = segment::time_of(line);
    let mut engine = Engine::new(&BUNDLE, MemorySink::default(), Config::default(), i64::MIN);
    match engine.decoder().decode(line) {
        Decoded::Bad(r) => assert_eq!(tree.err(), Some(r), "the decoders disagree on {line:?}"),
        Decoded::Call(_) => assert!(tree.is_ok(), "only the one-pass decoder took {line:?}"),
    }
    let _ = ingest::apply_line(&mut engine, line);
});
