//! Every example project replays its sample events with the outbox, the
//! dead letters and the summary checked exactly.

use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::replay::{self, Options};

fn replay_example(name: &str) -> String {
    let bundle = nudge_test_support::example_bundle(name);
    let events = nudge_test_support::example_events(name);
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
example!(category_interest);
example!(newsletter);
example!(post_purchase);
example!(recommendations);
example!(replenishment);
example!(seasonal);
example!(shipping_delay_sms);
example!(welcome_series);
example!(win_back);

#[test]
fn every_example_has_a_replay_test() {
    let names = nudge_test_support::example_names();
    let this = include_str!("examples.rs");
    for n in names {
        assert!(
            this.contains(&format!("example!({n});")),
            "no replay test for {n}"
        );
    }
}
