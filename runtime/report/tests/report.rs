//! The report of the sample trace: counts, feedback credited through joins,
//! exact revenue and lift over the holdout group.

use std::path::Path;

use nudge_report::{Report, Trace, html};
use rust_decimal::Decimal;

fn sample() -> Report {
    let trace = Trace::parse(include_str!("data/sample.jsonl"), Path::new("sample.jsonl"))
        .expect("sample parses");
    Report::build(&trace)
}

#[test]
fn flows_and_steps_are_counted() {
    let r = sample();
    let names: Vec<&str> = r.flows.iter().map(|f| f.flow.as_str()).collect();
    assert_eq!(names, ["cart_recovery", "welcome"]);
    let cart = &r.flows[0];
    assert_eq!(
        (cart.entered, cart.entered_treated, cart.entered_holdout),
        (5, 3, 2)
    );
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
    // u5's conversion names no message, so no step gets it.
    assert_eq!(cart.steps[0].conversions, 1);
    assert_eq!(cart.steps[1].conversions + cart.steps[2].conversions, 0);
    assert_eq!(reminder.held["held_out: holdout"], 2);
    assert_eq!(reminder.held["suppressed: suppress_if"], 1);
    assert_eq!(
        cart.steps[2].counts.held["capped: cap marketing 3 per 7d"],
        1
    );
    assert_eq!(cart.total.sent, 2);
    assert_eq!(cart.total.held.values().sum::<u64>(), 6);
    assert_eq!(r.unmatched_feedback, 0);
}

#[test]
fn revenue_is_exact_and_lift_compares_with_the_holdout() {
    let cart = &sample().flows[0];
    assert_eq!((cart.conversions, cart.holdout_conversions), (2, 1));
    // $12.50 + $0.20 in decimal; a float would not give exactly 12.70.
    assert_eq!(cart.revenue, Decimal::new(1270, 2));
    assert_eq!(cart.holdout_revenue, Decimal::new(10, 2));
    // Treated 2 of 3, holdout 1 of 2: lift 0.6667 / 0.5 - 1 = 33.3%.
    assert_eq!(cart.treated_rate, Some(Decimal::from(2) / Decimal::from(3)));
    assert_eq!(cart.holdout_rate, Some(Decimal::new(5, 1)));
    assert_eq!(nudge_report::report::lift_text(cart.lift), "+33.3%");
    let welcome = &sample().flows[1];
    assert_eq!(welcome.lift, None);
    assert_eq!(welcome.holdout_rate, None);
}

#[test]
fn without_feedback_delivery_is_unknown() {
    let text = concat!(
        r#"{"at":"2026-11-24T10:00:00Z","customer":"u1","kind":"entered","flow":"f","version":"v","instance":1,"trigger":"t","holdout":false}"#,
        "\n",
        r#"{"at":"2026-11-24T10:00:00Z","customer":"u1","kind":"send","flow":"f","instance":1,"step":0,"message":"m","channel":"sms","outcome":"sent","key":"k"}"#,
    );
    let r = Report::build(&Trace::parse(text, Path::new("t")).unwrap());
    assert!(!r.feedback_seen);
    assert_eq!(r.flows[0].steps[0].counts.delivered, None);
    assert!(r.table().contains("the trace holds no channel feedback"));
}

#[test]
fn the_table_reads_well() {
    insta::assert_snapshot!("report_table", sample().table());
}

#[test]
fn json_and_csv_carry_the_same_numbers() {
    let r = sample();
    let json = r.json();
    assert_eq!(json["flows"][0]["revenue"], "12.70");
    assert_eq!(json["flows"][0]["lift"], "0.333333");
    assert_eq!(json["flows"][1]["lift"], serde_json::Value::Null);
    assert_eq!(
        json["flows"][0]["steps"][0]["held"]["deferred: quiet_hours"],
        1
    );
    let csv = r.csv();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("flow,step,message,channel,metric,value"));
    assert!(csv.contains("\ncart_recovery,,,,revenue,12.70\n"));
    assert!(csv.contains("\ncart_recovery,7,cart_sms,sms,capped: cap marketing 3 per 7d,1\n"));
    assert!(csv.contains("\nwelcome,,,,lift,\n"));
    assert!(csv.contains("\ncart_recovery,all,,,sent,2\n"));
    assert!(csv.contains("\ncart_recovery,,,,holdout_revenue,0.10\n"));
    for line in csv.lines() {
        assert_eq!(line.split(',').count(), 6, "{line}");
    }
}

#[test]
fn the_page_is_self_contained() {
    let page = html::page(&sample(), "shop <main>");
    assert!(page.contains("<svg"));
    assert!(page.contains("shop &lt;main&gt;"));
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(!page.contains("<script"));
    assert!(!page.contains("href="));
    assert!(!page.contains("src="));
}
