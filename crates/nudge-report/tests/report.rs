//! The report of the sample trace: counts, feedback credited through joins,
//! exact revenue and the holdout comparison.

use std::path::Path;

use chrono::Duration;
use nudge_report::report::Funnel;
use nudge_report::{FlowSpec, Report, Scope, Trace, html};
use rust_decimal::Decimal;

fn scope(flows: &[&str]) -> Scope {
    Scope {
        flows: flows
            .iter()
            .map(|f| FlowSpec {
                name: f.to_string(),
                goal_window: Some(Duration::days(3)),
            })
            .collect(),
        ..Scope::default()
    }
}

fn sample() -> Report {
    let trace = Trace::parse(include_str!("data/sample.jsonl"), Path::new("sample.jsonl"))
        .expect("sample parses");
    Report::build(&trace, &scope(&["cart_recovery", "welcome"]))
}

#[test]
fn flows_and_steps_are_counted() {
    let r = sample();
    let names: Vec<&str> = r.flows.iter().map(|f| f.flow.as_str()).collect();
    assert_eq!(names, ["cart_recovery", "welcome"]);
    let cart = &r.flows[0];
    assert_eq!((cart.instances, cart.instances_holdout), (5, 2));
    assert_eq!((cart.not_entered, cart.completed, cart.exited), (1, 2, 2));
    let steps: Vec<(u16, &str)> = cart
        .steps
        .iter()
        .map(|s| (s.step, s.message.as_str()))
        .collect();
    assert_eq!(
        steps,
        [(1, "cart_reminder"), (4, "cart_discount"), (7, "cart_sms")]
    );
    let reminder = &cart.steps[0].counts;
    assert_eq!(reminder.sent, 2);
    // The click was reported under a9, the bounce under u2 without a flow: both still land here.
    assert_eq!((reminder.bounced, reminder.clicked), (1, 1));
    assert_eq!(reminder.delivered, Some(1));
    assert_eq!(reminder.held["deferred: quiet_hours"], 1);
    // u1's purchase is credited to the reminder sent to a9 before the join;
    // u5 was never messaged, so no step gets theirs.
    assert_eq!(cart.steps[0].orders, 1);
    assert_eq!(cart.steps[1].orders + cart.steps[2].orders, 0);
    assert_eq!(reminder.held["held_out: holdout"], 2);
    assert_eq!(reminder.held["suppressed: suppress_if"], 1);
    assert_eq!(
        cart.steps[2].counts.held["capped: cap marketing 3 per 7d"],
        1
    );
    assert_eq!(cart.sends.sent, 2);
    assert_eq!(cart.sends.held.values().sum::<u64>(), 6);
    assert_eq!(r.unmatched_feedback, 0);
    // u1 (joined from a9) and u2 were messaged; u2's only message bounced.
    assert_eq!(
        cart.funnel,
        Funnel {
            entered: 3,
            messaged: 2,
            delivered: Some(1),
            clicked: 1,
            converted: 1,
        }
    );
}

#[test]
fn revenue_is_exact_and_the_holdout_is_the_control_group() {
    let r = sample();
    let cart = &r.flows[0];
    assert_eq!(cart.attributed.orders, 1);
    assert_eq!(cart.attributed.revenue.get(None), Decimal::new(1250, 2));
    // u5 converted without a message and u3 is held out: neither is credited.
    assert_eq!(r.unattributed.orders, 2);
    // $0.20 + $0.10 in decimal; a float would not give exactly 0.30.
    assert_eq!(r.unattributed.revenue.get(None), Decimal::new(30, 2));
    assert_eq!(r.total.revenue.get(None), Decimal::new(1280, 2));
    let h = &cart.holdout;
    assert_eq!((h.treated.converted, h.treated.entered), (2, 3));
    assert_eq!((h.control.converted, h.control.entered), (1, 2));
    assert_eq!(h.control.rate, Some(Decimal::new(5, 1)));
    assert_eq!(h.difference, None);
    assert_eq!(h.text(), "not enough data (each group needs 5 customers)");
    assert_eq!(r.flows[1].holdout.text(), "no holdout group");
}

#[test]
fn records_of_other_flows_are_ignored() {
    let trace = Trace::parse(include_str!("data/sample.jsonl"), Path::new("s")).unwrap();
    let r = Report::build(&trace, &scope(&["welcome"]));
    assert_eq!(r.flows.len(), 1);
    // Every cart_recovery record but the bounce, which names no flow.
    assert_eq!(r.ignored_records, 22);
    assert_eq!(r.ignored_flows, ["cart_recovery"]);
    assert_eq!(r.unmatched_feedback, 1);
    assert_eq!(r.total.orders, 0);
}

#[test]
fn without_feedback_delivery_is_unknown() {
    let text = concat!(
        r#"{"at":"2026-11-24T10:00:00Z","customer":"u1","kind":"entered","flow":"f","version":"v","instance":1,"trigger":"t","holdout":false}"#,
        "\n",
        r#"{"at":"2026-11-24T10:00:00Z","customer":"u1","kind":"send","flow":"f","instance":1,"step":0,"message":"m","channel":"sms","outcome":"sent","key":"k"}"#,
    );
    let r = Report::build(&Trace::parse(text, Path::new("t")).unwrap(), &scope(&["f"]));
    assert!(!r.feedback_seen);
    assert_eq!(r.flows[0].steps[0].counts.delivered, None);
    assert_eq!(r.flows[0].funnel.delivered, None);
    assert!(r.table().contains("the trace holds no channel feedback"));
}

#[test]
fn a_bad_currency_is_an_error_with_its_line() {
    let text = r#"{"at":"2026-11-24T10:00:00Z","customer":"u1","kind":"converted","flow":"f","instance":1,"event":"e","revenue":"$1.00","holdout":false,"currency":"euro"}"#;
    let err = Trace::parse(text, Path::new("t.jsonl")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"t.jsonl:1: `currency` "euro" is not an ISO 4217 code (three capital letters)"#
    );
}

#[test]
fn the_table_reads_well() {
    insta::assert_snapshot!("report_table", sample().table());
}

#[test]
fn the_page_is_self_contained() {
    let page = html::page(&sample(), "shop <main>");
    assert!(page.contains("<svg"));
    assert!(page.contains("shop &lt;main&gt;"));
    // Revenue, then per flow a funnel and (cart_recovery only) a holdout chart.
    assert_eq!(page.matches("<svg").count(), 4);
    assert!(!page.contains("<script"));
    assert!(!page.contains("href="));
    assert!(!page.contains("src="));
    assert!(!page.contains('$'));
}
