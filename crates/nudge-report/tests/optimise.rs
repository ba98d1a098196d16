//! The report of a split that optimises: each arm's rate, its probability
//! of being best and the day the split settled.
//!
//! Day 1: a and b each take 20 customers and 2 reach the goal (a coin
//! toss). Day 2: 10 more each; 1 more on a, 9 more on b (3 of 30 against
//! 11 of 30: b is best with probability about 0.99). Day 3: 10 more each;
//! none more on a, 6 more on b. So the split settled at the end of day 2.

use std::fmt::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate};
use nudge_report::{FlowSpec, Report, Scope, Trace, html};

fn line(out: &mut String, at: &str, customer: &str, rest: &str) {
    let _ = writeln!(out, r#"{{"at":"{at}","customer":"{customer}",{rest}}}"#);
}

/// `n` customers entering `flow` on `day`, `won` of them reaching the goal.
fn day(out: &mut String, flow: &str, day: u32, arm: &str, n: u32, won: u32, floor: bool) {
    let floor = if floor { r#","floor":"10%""# } else { "" };
    for i in 0..n {
        let c = format!("{flow}-{arm}-{day}-{i}");
        let at = format!("2026-03-0{day}T10:00:00.000Z");
        line(
            out,
            &at,
            &c,
            &format!(
                r#""kind":"entered","flow":"{flow}","version":"0123456789abcdef","instance":1,"trigger":"Checkout Started","holdout":false"#
            ),
        );
        line(
            out,
            &at,
            &c,
            &format!(r#""kind":"variant","flow":"{flow}","instance":1,"variant":"{arm}"{floor}"#),
        );
        if i < won {
            line(
                out,
                &format!("2026-03-0{day}T12:00:00.000Z"),
                &c,
                &format!(
                    r#""kind":"converted","flow":"{flow}","instance":1,"event":"order_completed","revenue":"$10.00","holdout":false,"order_id":"o-{c}""#
                ),
            );
        }
    }
}

fn trace() -> Trace {
    let mut out = String::new();
    for (flow, floor) in [("tuned", true), ("fixed", false)] {
        for (d, a_won, b_won) in [(1, 2, 2), (2, 1, 9), (3, 0, 6)] {
            let n = if d == 1 { 20 } else { 10 };
            day(&mut out, flow, d, "a", n, a_won, floor);
            day(&mut out, flow, d, "b", n, b_won, floor);
        }
    }
    Trace::parse(&out, Path::new("optimise.jsonl")).expect("parses")
}

fn report() -> Report {
    let spec = |name: &str| FlowSpec {
        name: name.into(),
        goal_window: Some(Duration::days(1)),
    };
    Report::build(
        &trace(),
        &Scope {
            flows: vec![spec("tuned"), spec("fixed")],
            from: None,
            to: None,
            currency: Some("USD".into()),
        },
    )
}

#[test]
fn each_arm_has_its_rate_its_probability_of_being_best_and_the_split_its_day() {
    let r = report();
    let tuned = r.flows.iter().find(|f| f.flow == "tuned").unwrap();
    let arms: Vec<(&str, u64, u64)> = tuned
        .arms
        .iter()
        .map(|a| (a.variant.as_str(), a.entered, a.converted))
        .collect();
    assert_eq!(arms, [("a", 40, 3), ("b", 40, 17)]);
    let p: Vec<f64> = tuned
        .arms
        .iter()
        .map(|a| a.probability_best.unwrap())
        .collect();
    assert!(p[1] > 0.999, "{p:?}");
    assert!((p[0] + p[1] - 1.0).abs() < 1e-12, "{p:?}");
    let o = tuned.optimised.as_ref().expect("the split optimises");
    assert_eq!(o.floor, "10%");
    assert_eq!(o.settled, NaiveDate::from_ymd_opt(2026, 3, 2));
    // The same trace gives the same figures.
    assert_eq!(report().flows, r.flows);

    // A plain split has rates only.
    let fixed = r.flows.iter().find(|f| f.flow == "fixed").unwrap();
    assert!(fixed.optimised.is_none());
    assert!(fixed.arms.iter().all(|a| a.probability_best.is_none()));

    let text = r.table();
    assert!(
        text.contains("split optimises the goal (floor 10%): settled on 2026-03-02"),
        "{text}"
    );
    assert!(
        text.contains(
            "arm b: entered 40, reached the goal 17 (42.5%), best with probability 100.0%"
        ) || text.contains(
            "arm b: entered 40, reached the goal 17 (42.5%), best with probability 99.9%"
        ),
        "{text}"
    );
    let json = r.json();
    let flows = json["flows"].as_array().unwrap();
    let t = flows.iter().find(|f| f["flow"] == "tuned").unwrap();
    assert_eq!(t["optimised"]["settled"], "2026-03-02");
    assert!(t["arms"][1]["probability_best"].as_f64().unwrap() > 0.999);
    let f = flows.iter().find(|f| f["flow"] == "fixed").unwrap();
    assert!(f.get("optimised").is_none());
    assert!(f["arms"][0].get("probability_best").is_none());
    let csv = r.csv();
    assert!(csv.contains("arm b probability_best"), "{csv}");
    assert!(csv.contains("2026-03-02"), "{csv}");
    let page = html::page(&r, "report");
    assert!(page.contains("<th>probability best</th>"), "{page}");
    assert!(page.contains("settled on 2026-03-02"), "{page}");
}

#[test]
fn a_split_whose_arms_stay_close_has_not_settled() {
    let mut out = String::new();
    day(&mut out, "tuned", 1, "a", 20, 5, true);
    day(&mut out, "tuned", 1, "b", 20, 6, true);
    let trace = Trace::parse(&out, Path::new("close.jsonl")).unwrap();
    let r = Report::build(
        &trace,
        &Scope {
            flows: vec![FlowSpec {
                name: "tuned".into(),
                goal_window: Some(Duration::days(1)),
            }],
            from: None,
            to: None,
            currency: None,
        },
    );
    let o = r.flows[0].optimised.as_ref().unwrap();
    assert_eq!(o.settled, None);
    let p = r.flows[0].arms[1].probability_best.unwrap();
    assert!(p > 0.5 && p < 0.9, "{p}");
    assert!(r.table().contains("(floor 10%): not settled"));
}
