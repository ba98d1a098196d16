//! A trace written by hand (`data/hand.jsonl`) whose figures were worked
//! out on paper, one by one, before the report was run on it.
//!
//! The project declares `cart` (goal window three days) and `promo` (one
//! day); `ghost` is not in it. Amounts with no currency of their own are
//! in EUR.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use nudge_report::report::{Funnel, points};
use nudge_report::{FlowSpec, Report, Scope, Trace, html};
use rust_decimal::Decimal;

fn scope() -> Scope {
    Scope {
        flows: vec![
            FlowSpec {
                name: "cart".into(),
                goal_window: Some(Duration::days(3)),
            },
            FlowSpec {
                name: "promo".into(),
                goal_window: Some(Duration::days(1)),
            },
        ],
        from: None,
        to: None,
        currency: Some("EUR".into()),
    }
}

fn trace() -> Trace {
    Trace::parse(include_str!("data/hand.jsonl"), Path::new("hand.jsonl")).expect("parses")
}

fn report() -> Report {
    Report::build(&trace(), &scope())
}

fn eur(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

#[test]
fn only_the_projects_flows_are_counted() {
    let r = report();
    let names: Vec<&str> = r.flows.iter().map(|f| f.flow.as_str()).collect();
    assert_eq!(names, ["cart", "promo"]);
    // ghost's entry, its send to c1 and the click naming it.
    assert_eq!(r.ignored_records, 3);
    assert_eq!(r.ignored_flows, ["ghost"]);
    // c6's click on a message nobody sent.
    assert_eq!(r.unmatched_feedback, 1);
    assert!(r.table().contains(
        "note: 3 record(s) name flows the project does not declare and are ignored: ghost"
    ));
}

#[test]
fn the_funnel_counts_customers() {
    let r = report();
    let cart = &r.flows[0];
    // Entered c1..c6; messaged all but c3 (blocked); c2's only send bounced;
    // c1 and c6 clicked; orders credited to cart came from c2 and c4.
    assert_eq!(
        cart.funnel,
        Funnel {
            entered: 6,
            messaged: 5,
            delivered: Some(4),
            clicked: 2,
            converted: 2,
        }
    );
    assert_eq!((cart.instances, cart.instances_holdout), (11, 5));
    let promo = &r.flows[1];
    assert_eq!(
        promo.funnel,
        Funnel {
            entered: 2,
            messaged: 2,
            delivered: Some(2),
            clicked: 0,
            converted: 1,
        }
    );
    // Across flows each customer once: c1 and c4 are in both.
    assert_eq!(
        r.funnel,
        Funnel {
            entered: 6,
            messaged: 5,
            delivered: Some(4),
            clicked: 2,
            converted: 3,
        }
    );
}

#[test]
fn sends_are_still_counted_per_step() {
    let cart = &report().flows[0];
    let s0 = &cart.steps[0];
    assert_eq!((s0.step, s0.message.as_str()), (0, "cart_email"));
    assert_eq!(s0.counts.sent, 5);
    assert_eq!(s0.counts.delivered, Some(4));
    assert_eq!((s0.counts.bounced, s0.counts.clicked), (1, 2));
    assert_eq!(s0.counts.held["blocked: consent"], 1);
    assert_eq!(s0.counts.held["deferred: quiet_hours"], 1);
    assert_eq!(s0.counts.held["held_out: holdout"], 5);
    assert_eq!(s0.orders, 2);
    assert_eq!((cart.steps[1].counts.sent, cart.steps[1].orders), (1, 0));
    assert_eq!(cart.sends.sent, 6);
    assert_eq!(report().sends.sent, 8);
}

#[test]
fn each_order_is_credited_once_by_the_last_message_in_its_window() {
    let r = report();
    let (cart, promo) = (&r.flows[0], &r.flows[1]);
    // o1 reached both goals; promo's SMS (12:30) came after cart's email (11:00).
    assert_eq!(promo.attributed.orders, 1);
    assert_eq!(promo.attributed.revenue.get(Some("EUR")), eur(10000));
    // o2 (USD, two days after cart's email) and o4 (promo's SMS was 28 hours
    // before it, outside promo's one day; cart's email 29 hours, inside three).
    assert_eq!((cart.attributed.orders, cart.attributed.customers), (2, 2));
    assert_eq!(cart.attributed.revenue.get(Some("EUR")), eur(20_00));
    assert_eq!(cart.attributed.revenue.get(Some("USD")), eur(50_00));
    // c3 was never messaged; h1 and h2 are in the holdout group.
    assert_eq!((r.unattributed.orders, r.unattributed.customers), (3, 3));
    assert_eq!(r.unattributed.revenue.get(Some("EUR")), eur(80_00));
    assert_eq!((r.total.orders, r.total.customers), (6, 6));
    assert_eq!(r.total.revenue.get(Some("EUR")), eur(20000));
    assert_eq!(r.total.revenue.get(Some("USD")), eur(50_00));
    assert_eq!(r.total.revenue.get(None), Decimal::ZERO);
    let text = r.table();
    assert!(
        text.contains("orders credited: 2 from 2 customer(s), revenue €20.00 + $50.00"),
        "{text}"
    );
    assert!(text.contains("orders 6 from 6 customer(s), revenue €200.00 + $50.00"));
    assert!(text.contains("unattributed 3 (€80.00)"));
}

#[test]
fn split_arms_and_the_holdout_lift() {
    let r = report();
    let cart = &r.flows[0];
    let arms: Vec<(&str, u64, u64)> = cart
        .arms
        .iter()
        .map(|a| (a.variant.as_str(), a.entered, a.converted))
        .collect();
    // A: c1, c2, c3 all reached the goal; B: only c4 of c4, c5, c6.
    assert_eq!(arms, [("A", 3, 3), ("B", 3, 1)]);
    assert_eq!(cart.arms[1].rate, Some(Decimal::ONE / Decimal::from(3)));
    let h = &cart.holdout;
    assert_eq!((h.treated.entered, h.treated.converted), (6, 4));
    assert_eq!((h.control.entered, h.control.converted), (5, 2));
    assert_eq!(h.control.revenue.get(Some("EUR")), eur(50_00));
    // Wilson 4/6: 0.29999 to 0.90323; 2/5: 0.11762 to 0.76928.
    // Newcombe: 0.26667 - sqrt(0.36668² + 0.36928²) = -0.25373,
    //           0.26667 + sqrt(0.23656² + 0.28238²) = +0.63504.
    let d = h.difference.expect("both groups have five customers");
    assert!((d.estimate - 4.0 / 6.0 + 0.4).abs() < 1e-12);
    assert!((d.low - -0.25373).abs() < 5e-6, "{}", d.low);
    assert!((d.high - 0.63504).abs() < 5e-6, "{}", d.high);
    assert_eq!(h.text(), "+26.7 points (95% CI -25.4 to +63.5)");
    assert_eq!(points(-0.0001), "0.0 points");
    // promo has no holdout group.
    assert_eq!(r.flows[1].holdout.text(), "no holdout group");
    let json = r.json();
    assert_eq!(json["flows"][0]["holdout"]["difference"]["low"], -0.253731);
    assert_eq!(json["flows"][0]["holdout"]["difference"]["high"], 0.635041);
}

#[test]
fn too_small_a_group_gives_no_interval() {
    // Without h5 the control group has four customers.
    let text: String = include_str!("data/hand.jsonl")
        .lines()
        .filter(|l| !l.contains("\"h5\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let r = Report::build(&Trace::parse(&text, Path::new("t")).unwrap(), &scope());
    assert_eq!(r.flows[0].holdout.difference, None);
    assert_eq!(
        r.flows[0].holdout.text(),
        "not enough data (each group needs 5 customers)"
    );
}

#[test]
fn a_date_range_counts_records_in_it() {
    let day = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let r = Report::build(
        &trace(),
        &Scope {
            from: Some(day("2026-11-11T00:00:00Z")),
            to: Some(day("2026-11-11T23:59:59.999Z")),
            ..scope()
        },
    );
    assert_eq!(
        r.period(),
        "2026-11-11T00:00:00.000Z to 2026-11-11T23:59:59.999Z"
    );
    let cart = &r.flows[0];
    // Nobody entered cart that day, so its funnel is empty...
    assert_eq!(cart.funnel.entered, 0);
    assert_eq!(cart.funnel.converted, 0);
    // ...but o4 was placed that day, credited to the email of the day before.
    assert_eq!(cart.attributed.orders, 1);
    assert_eq!(cart.steps[0].orders, 1);
    assert_eq!(cart.steps[0].counts.sent, 0);
    assert_eq!(cart.steps[1].counts.sent, 1);
    assert_eq!((r.total.orders, r.unattributed.orders), (1, 0));
    assert_eq!(r.flows[1].instances, 1);
    assert_eq!(r.ignored_records, 0);
}

#[test]
fn json_and_csv_carry_the_same_numbers() {
    let r = report();
    let json = r.json();
    let cart = &json["flows"][0];
    assert_eq!(cart["funnel"]["delivered"], 4);
    assert_eq!(
        cart["attributed"]["revenue"],
        serde_json::json!([
            {"currency": "EUR", "amount": "20.00"},
            {"currency": "USD", "amount": "50.00"}
        ])
    );
    assert_eq!(cart["arms"][1]["rate"], "0.333333");
    assert_eq!(json["unattributed"]["orders"], 3);
    assert_eq!(json["ignored_records"], 3);
    let csv = r.csv();
    for line in [
        "cart,,,,customers_converted,2",
        "cart,,,,revenue (EUR),20.00",
        "cart,,,,revenue (USD),50.00",
        "cart,,,,arm B rate,0.333333",
        "cart,,,,difference_low,-0.253731",
        "cart,0,cart_email,email,orders,2",
        "cart,all,,,sent,6",
        "*,,,,unattributed_revenue (EUR),80.00",
        "*,,,,ignored_records,3",
    ] {
        assert!(csv.lines().any(|l| l == line), "{line} not in\n{csv}");
    }
    for line in csv.lines() {
        assert_eq!(line.split(',').count(), 6, "{line}");
    }
}

#[test]
fn the_page_shows_the_tables_numbers() {
    let page = html::page(&report(), "shop");
    assert!(!page.contains("<script") && !page.contains("href=") && !page.contains("src="));
    // The overview: a converted column and a totals row.
    assert!(page.contains("<th>converted</th>"));
    assert!(page.contains(
        "<tr><td class=\"l\">cart</td><td>6</td><td>5</td><td>4</td><td>2</td><td>2</td><td>6</td><td>2</td><td>€20.00 + $50.00</td></tr>"
    ));
    assert!(page.contains(
        "<tr class=\"total\"><td class=\"l\">total</td><td>6</td><td>5</td><td>4</td><td>2</td><td>3</td><td>8</td><td>6</td><td>€200.00 + $50.00</td></tr>"
    ));
    // Charts: revenue per currency, funnel, holdout and arms, with the same figures.
    assert!(page.contains("<title>cart: €20.00</title>"));
    assert!(page.contains("<title>unattributed: €80.00</title>"));
    assert!(page.contains("<title>cart: $50.00</title>"));
    assert!(page.contains("<title>converted: 2</title>"));
    assert!(page.contains("<title>control: 40.0% (2 of 5)</title>"));
    assert!(page.contains("<title>B: 33.3% (1 of 3)</title>"));
    assert!(page.contains("+26.7 points (95% CI -25.4 to +63.5)"));
    assert!(page.contains("Note: 3 record(s) name flows the project does not declare"));
    assert!(!page.contains("$100") && !page.contains("$20.00"));
}
