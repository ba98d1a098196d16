//! Running test blocks of a small in-memory project through the engine.

use nudge_compiler::Project;

const FLOWS: &str = r#"message thanks(order: order_completed) {
  channel email
  purpose transactional
  subject "Thanks for order {order.order_id}"
  body "We got it."
}

flow thank_you {
  trigger order_completed
  wait 1h
  send thanks(trigger)
}

test "buyers are thanked an hour later" {
  given profile u1 { email: "ana@example.com", consent: { email: true } }
  at 10:00 track u1 order_completed { order_id: "o1", total: $12.50 }
  run 2h
  expect send thanks to u1 where contains(content.subject, "o1") at 11:00
  expect profile u1.orders_count == 1
}

test "a wrong expectation fails" {
  at 10:00 track u2 order_completed { order_id: "o2" }
  run 30m
  expect send thanks to u2
}
"#;

#[test]
fn passing_and_failing_tests_are_told_apart() {
    let project = Project::from_sources(vec![("main.flow".into(), FLOWS.into())]);
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let bundle = nudge_compiler::lower(&project, &analysis).expect("lowers");
    let results = nudge_testing::run_tests(&project, &analysis, &bundle, None);
    assert_eq!(results.len(), 2);
    assert!(results[0].passed(), "{:?}", results[0].failures);
    let failed = &results[1];
    assert!(!failed.passed());
    assert_eq!(failed.failures.len(), 1);
    let f = &failed.failures[0];
    assert_eq!(f.expected, "expect send thanks to u2");
    assert_eq!(f.line, 25);
    assert_eq!(f.actual, vec!["thanks was never sent to u2".to_string()]);
    assert_eq!(f.timelines[0].0, "u2");
    assert!(
        f.timelines[0]
            .1
            .iter()
            .any(|l| l == "2026-01-05T10:00:00Z  entered thank_you (on Order Completed)"),
        "{:?}",
        f.timelines
    );
}

#[test]
fn filter_selects_by_name_ignoring_case() {
    let project = Project::from_sources(vec![("main.flow".into(), FLOWS.into())]);
    let analysis = nudge_compiler::check(&project);
    let bundle = nudge_compiler::lower(&project, &analysis).expect("lowers");
    let results = nudge_testing::run_tests(&project, &analysis, &bundle, Some("WRONG"));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].name, "a wrong expectation fails");
}

#[test]
fn a_send_window_includes_both_ends_and_reports_a_miss() {
    let src = FLOWS.to_string()
        + r#"
test "windows" {
  given profile u3 { email: "chloe@example.com" }
  at 10:00 track u3 order_completed { order_id: "o3" }
  run 2h
  expect send thanks to u3 between 10:30 and 11:00
  expect send thanks to u3 between +11h and +12h
}

test "a missed window" {
  given profile u4 { email: "dan@example.com" }
  at 10:00 track u4 order_completed { order_id: "o4" }
  run 2h
  expect send thanks to u4 between 10:00 and 10:59
}
"#;
    let project = Project::from_sources(vec![("main.flow".into(), src)]);
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let bundle = nudge_compiler::lower(&project, &analysis).expect("lowers");
    let results = nudge_testing::run_tests(&project, &analysis, &bundle, Some("window"));
    assert_eq!(results.len(), 2);
    assert!(results[0].passed(), "{:?}", results[0].failures);
    let f = &results[1].failures[0];
    assert_eq!(
        f.expected,
        "expect send thanks to u4 between 10:00 and 10:59"
    );
    assert_eq!(
        f.actual,
        vec![
            "thanks was sent to u4 at 2026-01-05T11:00:00Z, not between 2026-01-05T10:00:00Z and 2026-01-05T10:59:00Z"
                .to_string()
        ]
    );
}

#[test]
fn a_call_arriving_before_it_happens_fails_its_test_at_its_line() {
    let src = FLOWS.to_string()
        + r#"
test "arrives early" {
  given profile u5 { email: "eve@example.com" }
  at 10:00 track u5 order_completed { order_id: "o5" } arrives 09:00
}

test "arrives late" {
  given profile u6 { email: "fay@example.com", consent: { email: true } }
  at 10:00 track u6 order_completed { order_id: "o6" } arrives 12:00
  run 1m
  expect send thanks to u6 at 12:00
}
"#;
    let project = Project::from_sources(vec![("main.flow".into(), src)]);
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let bundle = nudge_compiler::lower(&project, &analysis).expect("lowers");
    let results = nudge_testing::run_tests(&project, &analysis, &bundle, Some("arrives"));
    assert_eq!(results.len(), 2);
    let f = &results[0].failures[0];
    assert_eq!(f.line, 30);
    assert!(
        f.actual[0].contains("arrives at 2026-01-05T09:00:00Z before it happens"),
        "{:?}",
        f.actual
    );
    // Its wait of an hour ended at 11:00, before the order was known: the
    // thanks goes out when the clock moves on from the arrival.
    assert!(results[1].passed(), "{:?}", results[1].failures);
}

#[test]
fn a_content_condition_is_checked_against_each_send() {
    let src = FLOWS.to_string()
        + r#"
let order_word = "order"

test "conditions" {
  given profile u7 { email: "gil@example.com", consent: { email: true } }
  at 10:00 track u7 order_completed { order_id: "o7" }
  run 2h
  expect send thanks to u7 where contains(lower(content.subject), order_word) and len([content.body]) == 1
  expect send thanks to u7 where ends_with(content.subject, "o8")
}
"#;
    let project = Project::from_sources(vec![("main.flow".into(), src)]);
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let bundle = nudge_compiler::lower(&project, &analysis).expect("lowers");
    let results = nudge_testing::run_tests(&project, &analysis, &bundle, Some("conditions"));
    assert_eq!(results.len(), 1);
    let failures = &results[0].failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].expected,
        "expect send thanks to u7 where ends_with(content.subject, \"o8\")"
    );
    assert_eq!(
        failures[0].actual,
        vec![
            "thanks was sent to u7 at 2026-01-05T11:00:00Z, its content does not match: \
             subject = \"Thanks for order o7\", body = \"We got it.\""
                .to_string()
        ]
    );
}
