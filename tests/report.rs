//! End to end: run a small shop (a cart flow with a holdout group and a
//! split, a thank-you flow, clicks naming a retired flow), then check that
//! `nudge report` agrees with the trace it reads and with itself across
//! formats.

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn nudge() -> Command {
    let mut cmd = Command::cargo_bin("nudge").expect("the nudge binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A copy of the shop, so that `.nudge/` lands in a temp dir.
fn copy_shop() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report_shop");
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("fixture dir") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    dir
}

/// Runs the project in `dir` to the end of its timers.
fn run(dir: &Path) {
    nudge()
        .arg("run")
        .arg(dir)
        .arg("--drain")
        .assert()
        .success();
}

/// A run copy of the shop.
fn run_shop() -> tempfile::TempDir {
    let dir = copy_shop();
    run(dir.path());
    dir
}

fn json(dir: &Path, extra: &[&str]) -> Value {
    let out = nudge()
        .arg("report")
        .arg(dir)
        .args(["--format", "json"])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("JSON")
}

/// `"$29.00"` in cents.
fn cents(text: &str) -> i64 {
    let t = text.trim_start_matches('$').replace(['.', ','], "");
    t.parse().expect("an amount")
}

/// The orders of the trace, worked out from its `converted` records alone:
/// one order per customer and time, with its amount in cents.
fn orders_in_trace(dir: &Path, day: Option<&str>) -> BTreeMap<(String, String), i64> {
    let text = std::fs::read_to_string(dir.join(".nudge/trace.jsonl")).expect("trace");
    let mut orders = BTreeMap::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).expect("record");
        let at = r["at"].as_str().unwrap().to_string();
        if r["kind"] != "converted" || day.is_some_and(|d| !at.starts_with(d)) {
            continue;
        }
        let key = (r["customer"].as_str().unwrap().to_string(), at);
        orders.insert(key, cents(r["revenue"].as_str().unwrap()));
    }
    orders
}

fn total_cents(money: &Value) -> i64 {
    money
        .as_array()
        .expect("amounts")
        .iter()
        .map(|m| cents(m["amount"].as_str().unwrap()))
        .sum()
}

fn n(v: &Value) -> u64 {
    v.as_u64().expect("a count")
}

#[test]
fn the_fixture_checks_clean() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report_shop");
    nudge()
        .arg("check")
        .arg(src)
        .arg("--deny-warnings")
        .assert()
        .success();
}

#[test]
fn the_report_agrees_with_the_trace() {
    let dir = run_shop();
    let r = json(dir.path(), &[]);
    let flows = r["flows"].as_array().unwrap();
    let names: Vec<&str> = flows.iter().map(|f| f["flow"].as_str().unwrap()).collect();
    assert_eq!(names, ["cart", "thank_you"]);
    // The two clicks naming a flow the project no longer has.
    assert_eq!(r["ignored_records"], 2);
    assert_eq!(r["ignored_flows"], serde_json::json!(["retired_flow"]));

    // Every order once: the flows' credited orders and the unattributed add up
    // to the orders of the trace, count and money.
    let trace_orders = orders_in_trace(dir.path(), None);
    assert!(trace_orders.len() >= 5, "the shop has orders");
    let credited: u64 = flows.iter().map(|f| n(&f["attributed"]["orders"])).sum();
    assert_eq!(n(&r["total"]["orders"]), trace_orders.len() as u64);
    assert_eq!(
        credited + n(&r["unattributed"]["orders"]),
        trace_orders.len() as u64
    );
    let credited_cents: i64 = flows
        .iter()
        .map(|f| total_cents(&f["attributed"]["revenue"]))
        .sum();
    let all_cents: i64 = trace_orders.values().sum();
    assert_eq!(total_cents(&r["total"]["revenue"]), all_cents);
    assert_eq!(
        credited_cents + total_cents(&r["unattributed"]["revenue"]),
        all_cents
    );

    for f in flows {
        let u = &f["funnel"];
        // Nested stages, in customers.
        assert!(n(&u["messaged"]) <= n(&u["entered"]), "{u}");
        assert!(n(&u["delivered"]) <= n(&u["messaged"]), "{u}");
        assert!(n(&u["clicked"]) <= n(&u["messaged"]), "{u}");
        assert!(n(&u["converted"]) <= n(&u["messaged"]), "{u}");
        assert!(n(&u["converted"]) <= n(&f["attributed"]["customers"]));
        // The step rows add up to the flow's sends.
        let sent: u64 = f["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| n(&s["sent"]))
            .sum();
        assert_eq!(sent, n(&f["sends"]["sent"]));
        let step_orders: u64 = f["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| n(&s["orders"]))
            .sum();
        assert_eq!(step_orders, n(&f["attributed"]["orders"]));
    }

    let cart = &flows[0];
    let h = &cart["holdout"];
    // Each held-out instance is one customer here; the holdout is the control group.
    assert_eq!(n(&h["control"]["entered"]), n(&cart["instances_holdout"]));
    assert!(n(&h["control"]["entered"]) > 0);
    assert_eq!(n(&h["treated"]["entered"]), n(&cart["funnel"]["entered"]));
    assert!(
        h["difference"]["low"].as_f64().unwrap() <= h["difference"]["estimate"].as_f64().unwrap()
    );
    assert!(
        h["difference"]["estimate"].as_f64().unwrap() <= h["difference"]["high"].as_f64().unwrap()
    );
    // Every treated customer went down one arm; held-out ones are not an arm.
    let arms = cart["arms"].as_array().unwrap();
    let names: Vec<&str> = arms
        .iter()
        .map(|a| a["variant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let in_arms: u64 = arms.iter().map(|a| n(&a["entered"])).sum();
    assert_eq!(in_arms, n(&cart["funnel"]["entered"]));
    let converted_in_arms: u64 = arms.iter().map(|a| n(&a["converted"])).sum();
    assert_eq!(converted_in_arms, n(&h["treated"]["converted"]));
}

#[test]
fn the_table_csv_and_page_say_the_same() {
    let dir = run_shop();
    let r = json(dir.path(), &["--currency", "EUR"]);
    let cart = &r["flows"][0];
    let u = &cart["funnel"];
    let line = format!(
        "customers: entered {}, messaged {}, delivered {}, clicked {}, converted {}",
        u["entered"], u["messaged"], u["delivered"], u["clicked"], u["converted"]
    );
    let page = dir.path().join("report.html");
    let table = nudge()
        .arg("report")
        .arg(dir.path())
        .args(["--currency", "EUR", "--html"])
        .arg(&page)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains(&line), "{line} not in\n{table}");
    assert!(table.contains(
        "note: 2 record(s) name flows the project does not declare and are ignored: retired_flow"
    ));
    assert!(!table.contains('$'), "{table}");
    assert!(table.contains('€'));

    let csv = nudge()
        .arg("report")
        .arg(dir.path())
        .args(["--currency", "EUR", "--format", "csv"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let csv = String::from_utf8(csv).unwrap();
    let revenue = cart["attributed"]["revenue"][0]["amount"].as_str().unwrap();
    assert!(
        csv.lines()
            .any(|l| l == format!("cart,,,,revenue (EUR),{revenue}"))
    );
    assert!(
        csv.lines()
            .any(|l| l == format!("cart,,,,customers_converted,{}", u["converted"]))
    );

    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(!html.contains("<script") && !html.contains("src="));
    let total = &r["total"];
    let f = &r["funnel"];
    let euros = |cents: i64| format!("€{}.{:02}", cents / 100, cents % 100);
    let total_row = format!(
        "<tr class=\"total\"><td class=\"l\">total</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        f["entered"],
        f["messaged"],
        f["delivered"],
        f["clicked"],
        f["converted"],
        r["sends"]["sent"],
        total["orders"],
        euros(total_cents(&total["revenue"])),
    );
    assert!(html.contains(&total_row), "{total_row} not in the page");
    assert!(html.contains("<th>converted</th>"));
    assert!(html.contains(&format!("<title>converted: {}</title>", u["converted"])));
    let arm = &cart["arms"][0];
    assert!(html.contains(&format!(
        "({} of {})</title>",
        arm["converted"], arm["entered"]
    )));
    assert!(html.contains(&format!("<title>cart: {}</title>", euros(cents(revenue)))));
    assert!(!html.contains('$'));
}

#[test]
fn a_date_range_keeps_its_days() {
    let dir = run_shop();
    let r = json(dir.path(), &["--from", "2026-11-21", "--to", "2026-11-21"]);
    assert_eq!(r["from"], "2026-11-21T00:00:00.000Z");
    assert_eq!(r["to"], "2026-11-21T23:59:59.999Z");
    let that_day = orders_in_trace(dir.path(), Some("2026-11-21"));
    assert!(!that_day.is_empty());
    assert!(that_day.len() < orders_in_trace(dir.path(), None).len());
    assert_eq!(n(&r["total"]["orders"]), that_day.len() as u64);
    // Checkouts were all on the 20th.
    assert_eq!(r["flows"][0]["funnel"]["entered"], 0);
}

#[test]
fn bad_ranges_and_currencies_are_refused() {
    let dir = run_shop();
    nudge()
        .arg("report")
        .arg(dir.path())
        .args(["--from", "21/11/2026"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "\"21/11/2026\" is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor a date (2026-11-24)",
        ));
    nudge()
        .arg("report")
        .arg(dir.path())
        .args(["--from", "2026-11-22", "--to", "2026-11-21T12:00:00Z"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--from is after --to"));
    nudge()
        .arg("report")
        .arg(dir.path())
        .args(["--currency", "euro"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not an ISO 4217 code"));
}

#[test]
fn conversions_carry_their_order_id_and_currency_into_the_report() {
    let dir = copy_shop();
    let events = dir.path().join("events.jsonl");
    let text = std::fs::read_to_string(&events).unwrap();
    // Order o-9 is in euros, and 10 of its 29 euros are refunded later.
    let refund = r#"{"type":"track","event":"Order Refunded","userId":"u09","timestamp":"2026-11-28T09:00:00Z","messageId":"or-9","properties":{"order_id":"o-9","total":10.0,"currency":"EUR"}}"#;
    std::fs::write(
        &events,
        text.replace(
            r#""order_id":"o-9","total":29.0,"revenue":29.0"#,
            r#""order_id":"o-9","total":29.0,"revenue":29.0,"currency":"EUR""#,
        ) + refund
            + "\n",
    )
    .unwrap();
    run(dir.path());
    let trace = std::fs::read_to_string(dir.path().join(".nudge/trace.jsonl")).unwrap();
    let converted: Vec<Value> = trace
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["what"] == "converted" || r["kind"] == "converted")
        .collect();
    assert!(!converted.is_empty(), "the shop converts");
    assert!(
        converted.iter().all(|r| r["order_id"].is_string()),
        "{converted:?}"
    );
    let euro: Vec<&Value> = converted
        .iter()
        .filter(|r| r["order_id"] == "o-9")
        .collect();
    assert!(!euro.is_empty(), "{converted:?}");
    assert!(euro.iter().all(|r| r["currency"] == "EUR"), "{euro:?}");
    let refunds: Vec<Value> = trace
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "refunded")
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["order_id"], "o-9");
    assert_eq!(refunds[0]["amount"], "$10.00");
    nudge()
        .arg("report")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("€19.00"))
        .stdout(predicate::str::contains("€29.00").not())
        .stdout(predicate::str::contains(
            "refunds taken off that revenue: €10.00",
        ));
    let report = json(dir.path(), &[]);
    assert_eq!(
        report["refunded"],
        serde_json::json!([{"currency": "EUR", "amount": "10.00"}]),
        "{report}"
    );
}

#[test]
fn a_split_that_optimises_reports_each_arm_s_chance_of_being_best() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("nudge.toml"), "# a shop that optimises\n").unwrap();
    std::fs::write(
        dir.path().join("shop.flow"),
        r#"
message short_note() {
  channel email
  subject "Your cart is waiting"
  body "Come back."
}

message free_shipping() {
  channel email
  subject "Free shipping on your cart"
  body "Come back."
}

flow cart {
  trigger checkout_started
  goal order_completed within 2d

  wait 1h
  split optimise floor 10% {
    short {
      send short_note()
    }
    shipping {
      send free_shipping()
    }
  }
}
"#,
    )
    .unwrap();
    // Forty shoppers a day for five days; half of them order the next day.
    let mut lines = Vec::new();
    for day in 1..=5 {
        for n in 0..40 {
            let user = format!("u{day}-{n}");
            lines.push(format!(
                r#"{{"type":"identify","userId":"{user}","timestamp":"2026-03-0{day}T08:00:00Z","traits":{{"email":"{user}@example.com","consent":{{"email":true}}}}}}"#
            ));
            lines.push(format!(
                r#"{{"type":"track","event":"Checkout Started","userId":"{user}","timestamp":"2026-03-0{day}T09:00:00Z","properties":{{}}}}"#
            ));
            if n % 2 == 0 {
                lines.push(format!(
                    r#"{{"type":"track","event":"Order Completed","userId":"{user}","timestamp":"2026-03-0{}T09:00:00Z","properties":{{"order_id":"{user}","total":10}}}}"#,
                    day + 1
                ));
            }
        }
    }
    lines.sort_by_key(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["timestamp"].as_str().unwrap().to_string()
    });
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    nudge()
        .arg("run")
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .arg("--drain")
        .assert()
        .success();
    let report = json(dir.path(), &[]);
    let flow = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flow"] == "cart")
        .expect("the cart flow");
    assert_eq!(flow["optimised"]["floor"], "10%", "{flow}");
    let arms = flow["arms"].as_array().unwrap();
    assert_eq!(arms.len(), 2, "{flow}");
    let mut total_entered = 0;
    let mut chances = 0.0;
    for arm in arms {
        total_entered += n(&arm["entered"]);
        let p: f64 = arm["probability_best"]
            .as_str()
            .map(|s| s.trim_end_matches('%').parse::<f64>().unwrap() / 100.0)
            .or_else(|| arm["probability_best"].as_f64())
            .expect("a probability");
        assert!((0.0..=1.0).contains(&p), "{arm}");
        chances += p;
    }
    assert_eq!(total_entered, 200, "{flow}");
    assert!((chances - 1.0).abs() < 0.01, "{flow}");
    // The table says it too.
    nudge()
        .arg("report")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("best with probability"))
        .stdout(predicate::str::contains(
            "split optimises the goal (floor 10%)",
        ));
}
