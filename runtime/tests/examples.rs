//! Every example project replays its sample events with the outbox, the
//! dead letters and the summary checked exactly.

use std::path::PathBuf;

use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::replay::{self, Options};

fn replay_example(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let project = nudge_compiler::Project::load(std::slice::from_ref(&root)).unwrap();
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{name} does not check");
    let bundle = nudge_compiler::lower(&project, &analysis).unwrap();
    let events = std::fs::read_to_string(root.join("events.jsonl")).unwrap();
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut dead = Vec::new();
    let options = Options {
        until: None,
        drain: true,
    };
    replay::replay(&mut engine, events.as_bytes(), options, &mut |d| {
        dead.push(d)
    })
    .unwrap();
    let stats = engine.stats();
    let sink = engine.into_sink();
    let mut out = String::from("# outbox\n");
    for m in &sink.outbox {
        out.push_str(&serde_json::to_string_pretty(m).unwrap());
        out.push('\n');
    }
    out.push_str("# dead letters\n");
    for d in &dead {
        out.push_str(&format!("line {}: {}\n", d.line, d.reason));
    }
    out.push_str("# summary\n");
    out.push_str(&stats.table());
    out
}

macro_rules! example {
    ($name:ident) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), replay_example(stringify!($name)));
        }
    };
}

example!(ad_retargeting);
example!(browse_abandonment);
example!(cart_recovery);
example!(newsletter);
example!(post_purchase);
example!(replenishment);
example!(seasonal);
example!(shipping_delay_sms);
example!(welcome_series);
example!(win_back);

#[test]
fn every_example_has_a_replay_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("nudge.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let this = include_str!("examples.rs");
    for n in names {
        assert!(
            this.contains(&format!("example!({n});")),
            "no replay test for {n}"
        );
    }
}
