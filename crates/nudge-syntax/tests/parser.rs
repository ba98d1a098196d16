//! Focused tests of the parser: precedence, literals, placement rules,
//! recovery and diagnostics.

mod common;

use nudge_diagnostics::codes;
use nudge_syntax::ast::*;
use nudge_syntax::{FileId, Parsed, parse};

fn parse_ok(src: &str) -> Parsed {
    let parsed = parse(FileId(0), src);
    assert!(
        parsed.diagnostics.is_empty(),
        "unexpected diagnostics for {src:?}:\n{}",
        common::diagnostics(src, &parsed.diagnostics)
    );
    common::assert_spans_within(&parsed.file, src);
    parsed
}

/// Parses `let x = SRC` and returns the value.
fn expr_of(src: &str) -> Expr {
    let parsed = parse_ok(&format!("let x = {src}"));
    match parsed.file.items.into_iter().next() {
        Some(Item::Let(l)) => l.value,
        other => panic!("expected a let, got {other:?}"),
    }
}

fn show(src: &str) -> String {
    common::expr(&expr_of(src))
}

fn flow_items(src: &str) -> Vec<FlowItem> {
    let parsed = parse_ok(src);
    match parsed.file.items.into_iter().next() {
        Some(Item::Flow(f)) => f.items,
        other => panic!("expected a flow, got {other:?}"),
    }
}

fn codes_of(src: &str) -> Vec<&'static str> {
    parse(FileId(0), src)
        .diagnostics
        .iter()
        .map(|d| d.code.id)
        .collect()
}

#[test]
fn default_binds_tighter_than_comparison() {
    assert_eq!(show("a ?? b == c"), "(== (?? a b) c)");
    assert_eq!(show("a == b ?? c"), "(== a (?? b c))");
}

#[test]
fn default_is_right_associative_and_looser_than_addition() {
    assert_eq!(show("a ?? b ?? c"), "(?? a (?? b c))");
    assert_eq!(show("a + b ?? c"), "(?? (+ a b) c)");
}

#[test]
fn not_binds_tighter_than_and_but_looser_than_comparison() {
    assert_eq!(show("not a and b"), "(and (not a) b)");
    assert_eq!(show("not a == b"), "(not (== a b))");
    assert_eq!(show("not not a"), "(not (not a))");
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(show("a or b and c"), "(or a (and b c))");
    assert_eq!(show("a and b or c"), "(or (and a b) c)");
}

#[test]
fn arithmetic_is_left_associative_with_usual_precedence() {
    assert_eq!(show("a + b * c - d"), "(- (+ a (* b c)) d)");
    assert_eq!(show("a / b % c"), "(% (/ a b) c)");
    assert_eq!(show("-a.b * 2"), "(* (neg (. a b)) 2)");
    assert_eq!(show("(a + b) * c"), "(* (+ a b) c)");
}

#[test]
fn postfix_chains_and_optional_access() {
    assert_eq!(show("event.order?.total"), "(?. (. event order) total)");
    assert_eq!(show("trigger.products"), "(. trigger products)");
    // Keywords are field names after a dot.
    assert_eq!(show("event.type"), "(. event type)");
    assert_eq!(show("profile.set"), "(. profile set)");
}

#[test]
fn membership_and_lists() {
    assert_eq!(show("a in [1, 2, 3,]"), "(in a [1 2 3])");
    assert_eq!(show("[]"), "[]");
}

#[test]
fn lambdas_take_one_or_many_parameters() {
    assert_eq!(
        show("any(xs, x => x.price > $20)"),
        "(call any xs (fn (x) (> (. x price) $20)))"
    );
    assert_eq!(
        show("fold(xs, (acc, x) => acc + x)"),
        "(call fold xs (fn (acc x) (+ acc x)))"
    );
    assert_eq!(show("x => y => x"), "(fn (x) (fn (y) x))");
}

#[test]
fn chained_comparisons_are_an_error() {
    let src = "let x = a < b < c";
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.code, codes::E0102);
    assert_eq!(d.title, "comparison operators cannot be chained");
    assert_eq!(&src[d.primary.span.range()], "<");
    assert_eq!(d.primary.span.start, 14);
}

#[test]
fn adjacent_durations_add_up() {
    let e = expr_of("1h 30m");
    assert_eq!(e.kind, ExprKind::Duration(5400));
    assert_eq!(e.span, Span::new(8, 14));
    assert_eq!(
        expr_of("1w 2d 3h 4m 5s").kind,
        ExprKind::Duration(7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5)
    );
    let items = flow_items("flow f { wait 1d 12h }");
    match &items[0] {
        FlowItem::Step(Step {
            kind: StepKind::Wait(d),
            ..
        }) => assert_eq!(d.literal(), Some(129_600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn literal_values() {
    assert_eq!(expr_of("10_000").kind, ExprKind::Int(10_000));
    assert_eq!(
        expr_of("$1_250.50").kind,
        ExprKind::Money("1250.50".parse().unwrap_or_default())
    );
    assert_eq!(expr_of("2026-12-24").kind, ExprKind::Date(20_811));
    assert_eq!(expr_of("21:30").kind, ExprKind::TimeOfDay(21 * 60 + 30));
    assert_eq!(
        expr_of("2026-12-18T17:00:00+01:00").kind,
        ExprKind::Instant(1_797_613_200 - 3600)
    );
    assert_eq!(expr_of("none").kind, ExprKind::None);
    assert_eq!(expr_of("true").kind, ExprKind::Bool(true));
}

#[test]
fn interpolation_parts_have_exact_spans() {
    let src = r#"let x = "Hi {profile.first_name ?? "there"}, \{ok\}""#;
    let parsed = parse_ok(src);
    let Some(Item::Let(l)) = parsed.file.items.first() else {
        panic!("expected a let");
    };
    assert_eq!(&src[l.value.span.range()], &src[8..]);
    let ExprKind::Str(parts) = &l.value.kind else {
        panic!("expected a string");
    };
    assert_eq!(parts.len(), 3);
    match &parts[0] {
        StrPart::Text(t, span) => {
            assert_eq!(t, "Hi ");
            assert_eq!(&src[span.range()], "Hi ");
        }
        other => panic!("{other:?}"),
    }
    match &parts[1] {
        StrPart::Interp(e) => {
            assert_eq!(&src[e.span.range()], r#"profile.first_name ?? "there""#);
            assert_eq!(
                common::expr(e),
                r#"(?? (. profile first_name) (str "there"))"#
            );
        }
        other => panic!("{other:?}"),
    }
    match &parts[2] {
        StrPart::Text(t, span) => {
            assert_eq!(t, ", {ok}");
            assert_eq!(&src[span.range()], r", \{ok\}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_escape_is_reported_at_the_escape() {
    let src = r#"let x = "a\qb""#;
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(parsed.diagnostics[0].code, codes::E0104);
    assert_eq!(&src[parsed.diagnostics[0].primary.span.range()], r"\q");
}

#[test]
fn exit_if_before_the_first_step_is_a_standing_rule() {
    let items = flow_items(
        "flow f {\n trigger a\n exit if x\n wait 1h\n exit if y\n if z { exit if w }\n}",
    );
    assert!(matches!(
        &items[1],
        FlowItem::Clause(Clause {
            kind: ClauseKind::ExitIf(_),
            ..
        })
    ));
    assert!(matches!(
        &items[3],
        FlowItem::Step(Step {
            kind: StepKind::ExitIf(_),
            ..
        })
    ));
    let FlowItem::Step(Step {
        kind: StepKind::If(i),
        ..
    }) = &items[4]
    else {
        panic!("expected an if");
    };
    assert!(matches!(i.branches[0].1.steps[0].kind, StepKind::ExitIf(_)));
}

#[test]
fn exit_followed_by_an_if_step_is_not_exit_if() {
    let items = flow_items("flow f {\n wait 1h\n exit\n if x {\n wait 1h\n }\n}");
    assert!(matches!(
        &items[1],
        FlowItem::Step(Step {
            kind: StepKind::Exit,
            ..
        })
    ));
    assert!(matches!(
        &items[2],
        FlowItem::Step(Step {
            kind: StepKind::If(_),
            ..
        })
    ));
}

#[test]
fn labels_name_steps_and_widen_their_span() {
    let src = "flow f {\n  reminder: send cart_reminder(trigger.products)\n}";
    let items = flow_items(src);
    let FlowItem::Step(step) = &items[0] else {
        panic!("expected a step");
    };
    assert_eq!(
        step.label.as_ref().map(|l| l.name.as_str()),
        Some("reminder")
    );
    assert_eq!(
        &src[step.span.range()],
        "reminder: send cart_reminder(trigger.products)"
    );
}

#[test]
fn named_and_positional_arguments() {
    let items =
        flow_items(r#"flow f { send cart_discount(trigger.products, code: "WELCOME10",) }"#);
    let FlowItem::Step(Step {
        kind: StepKind::Send(call),
        ..
    }) = &items[0]
    else {
        panic!("expected a send");
    };
    assert_eq!(call.callee.name, "cart_discount");
    assert_eq!(call.args.len(), 2);
    assert!(call.args[0].name.is_none());
    assert_eq!(
        call.args[1].name.as_ref().map(|n| n.name.as_str()),
        Some("code")
    );
}

#[test]
fn wait_for_with_binding_alternatives_and_predicate() {
    let items =
        flow_items("flow f { let x = wait for a or b where event.id == trigger.id within 14d }");
    let FlowItem::Step(Step {
        kind: StepKind::WaitFor(w),
        ..
    }) = &items[0]
    else {
        panic!("expected wait for");
    };
    assert_eq!(w.binding.as_ref().map(|b| b.name.as_str()), Some("x"));
    let names: Vec<_> = w.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(w.predicate.is_some());
    assert_eq!(w.within.literal(), Some(14 * 86400));
}

#[test]
fn keywords_name_fields_in_declarations_and_props() {
    let parsed = parse_ok(
        "event e \"E\" { type: string, set: int }\ntest \"t\" { given profile u1 { event: 1 } }",
    );
    let Some(Item::Event(e)) = parsed.file.items.first() else {
        panic!("expected an event");
    };
    assert_eq!(e.fields[0].name.name, "type");
    assert_eq!(e.fields[1].name.name, "set");
}

#[test]
fn customer_ids_are_identifiers_or_strings() {
    let parsed = parse_ok("test \"t\" {\n at 10:05 alias a9 to \"user 1\"\n}");
    let Some(Item::Test(t)) = parsed.file.items.first() else {
        panic!("expected a test");
    };
    match &t.stmts[0].kind {
        TestStmtKind::At {
            call: TestCall::Alias { from, to },
            ..
        } => {
            assert_eq!(from.value, "a9");
            assert_eq!(to.value, "user 1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reserved_words_as_names_are_reported_and_kept() {
    let src = "let flow = 1\nmessage m(send: string) { channel email }";
    let parsed = parse(FileId(0), src);
    let got: Vec<_> = parsed
        .diagnostics
        .iter()
        .map(|d| (d.code.id, &src[d.primary.span.range()]))
        .collect();
    assert_eq!(got, [("E0105", "flow"), ("E0105", "send")]);
    assert!(parsed.diagnostics.iter().all(|d| d.help.is_some()));
    let Some(Item::Let(l)) = parsed.file.items.first() else {
        panic!("expected a let");
    };
    assert_eq!(l.name.name, "flow");
    assert!(matches!(parsed.file.items[1], Item::Message(_)));
}

#[test]
fn a_broken_step_keeps_the_rest_of_the_flow() {
    let src = "flow f {\n  wait )\n  send a()\n  wait 1d\n}";
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.title, "expected a duration, `until` or `for`, found `)`");
    assert_eq!(&src[d.primary.span.range()], ")");
    let Some(Item::Flow(f)) = parsed.file.items.first() else {
        panic!("expected a flow");
    };
    let kinds: Vec<_> = f
        .items
        .iter()
        .map(|i| match i {
            FlowItem::Step(s) => match s.kind {
                StepKind::Error => "error",
                StepKind::Send(_) => "send",
                StepKind::Wait(_) => "wait",
                _ => "other",
            },
            FlowItem::Clause(_) => "clause",
        })
        .collect();
    assert_eq!(kinds, ["error", "send", "wait"]);
}

#[test]
fn a_stray_closer_in_a_flow_is_one_error() {
    let src = "flow f {\n  )\n  send a()\n}";
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(
        parsed.diagnostics[0].title,
        "expected a clause or step, found `)`"
    );
    assert!(matches!(parsed.file.items.first(), Some(Item::Flow(f)) if f.items.len() == 2));

    let src = "flow f {
  if x {
    )
  }
}";
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(parsed.diagnostics[0].title, "expected a step, found `)`");
    assert_eq!(
        parsed.diagnostics[0].primary_label.as_deref(),
        Some("unexpected here")
    );
}

#[test]
fn independent_errors_are_each_reported_in_source_order() {
    let src = "let a = )\nsegment s = profile.x ==\nflow f {\n  wait 1h\n  send (\n}\nlet ok = 1";
    let parsed = parse(FileId(0), src);
    let starts: Vec<_> = parsed
        .diagnostics
        .iter()
        .map(|d| d.primary.span.start)
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
    assert_eq!(parsed.diagnostics.len(), 3, "{:#?}", parsed.diagnostics);
    assert!(matches!(parsed.file.items.last(), Some(Item::Let(l)) if l.name.name == "ok"));
}

#[test]
fn unclosed_block_is_labelled_at_its_opening_brace() {
    let src = "flow f {\n  wait 1h\n";
    let parsed = parse(FileId(0), src);
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.code, codes::E0102);
    assert_eq!(d.labels.len(), 1);
    assert_eq!(&src[d.labels[0].at.span.range()], "{");
    assert_eq!(d.labels[0].message, "this `{` is never closed");
    // The flow is kept even though its brace is missing.
    assert!(matches!(parsed.file.items.first(), Some(Item::Flow(f)) if f.items.len() == 1));
}

#[test]
fn invalid_literals_report_e0104_and_percent_over_100_does_not() {
    assert_eq!(codes_of("let a = 2026-13-40"), ["E0104"]);
    assert_eq!(codes_of("let a = 25:00"), ["E0104"]);
    assert_eq!(codes_of("let a = 9223372036854775808"), ["E0104"]);
    assert_eq!(codes_of("let a = 2026-01-01T10:61:00Z"), ["E0104"]);
    assert!(codes_of("let a = 150%").is_empty());
    assert!(codes_of("let a = 9223372036854775807").is_empty());
}

#[test]
fn lexer_errors_are_not_reported_twice() {
    let parsed = parse(FileId(0), "let a = 'x'\nlet b = 1");
    assert!(parsed.diagnostics.iter().all(|d| d.code == codes::E0101));
    assert!(matches!(parsed.file.items.last(), Some(Item::Let(l)) if l.name.name == "b"));
}

#[test]
fn odd_inputs_do_not_panic() {
    for src in [
        "",
        "{",
        "}",
        "(((",
        "\"{",
        "\"{\"{\"",
        "flow",
        "flow f {",
        "flow f { if",
        "let",
        "test \"t\" { at",
        "message m(",
        "type T = ",
        "split { 50% }",
        "}}}}",
        "let x = [1, (2",
        "flow f { split { 50% a { wait 1h } 50% b { } } }",
        "\u{feff}let a = 1",
    ] {
        let parsed = parse(FileId(0), src);
        common::assert_spans_within(&parsed.file, src);
        for d in &parsed.diagnostics {
            assert!(d.primary.span.end as usize <= src.len(), "{src:?}: {d:?}");
        }
    }
}

#[test]
fn pathological_nesting_is_cut_with_one_diagnostic() {
    for src in [
        format!("let x = {}1", "-".repeat(50_000)),
        format!("let x = 1{}", " + 1".repeat(50_000)),
        format!("let x = {}1", "(".repeat(50_000)),
        format!(
            "flow f {{ {}{} }}",
            "if x {".repeat(50_000),
            "}".repeat(50_000)
        ),
    ] {
        let parsed = parse(FileId(0), &src);
        let titles: Vec<_> = parsed
            .diagnostics
            .iter()
            .map(|d| d.title.as_str())
            .collect();
        assert_eq!(titles, ["too deeply nested"], "{}", &src[..30]);
    }
}

#[test]
fn deep_but_reasonable_nesting_is_kept() {
    let src = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(expr_of(&src).kind, ExprKind::Int(1));
    let chain = format!("let x = a{}", " ?? b".repeat(200));
    assert!(parse(FileId(0), &chain).diagnostics.is_empty());
    // Many sibling statements do not add up to depth.
    let test = format!(
        "test \"t\" {{\n{}}}",
        "  at +1h track u1 \"E\" { a: -1 }\n".repeat(600)
    );
    let parsed = parse_ok(&test);
    assert!(matches!(&parsed.file.items[0], Item::Test(t) if t.stmts.len() == 600));
}

#[test]
fn expectation_time_is_not_confused_with_the_next_statement() {
    let parsed = parse_ok(
        "test \"t\" {\n  expect send a where content.x == 1\n  at 10:00 track u1 \"E\"\n}",
    );
    let Some(Item::Test(t)) = parsed.file.items.first() else {
        panic!("expected a test");
    };
    assert_eq!(t.stmts.len(), 2);
    assert!(matches!(
        &t.stmts[0].kind,
        TestStmtKind::Expect(Expectation {
            kind: ExpectKind::Send {
                at: None,
                predicate: Some(_),
                ..
            },
            ..
        })
    ));
}

/// The precedence table on the tokens is the one the grammar parses by: for
/// every pair of operators, `a OP1 b OP2 c` groups as the table says.
#[test]
fn the_precedence_table_is_the_one_the_grammar_follows() {
    let mut checked = 0;
    for first in BinaryOp::ALL {
        for second in BinaryOp::ALL {
            let (p1, p2) = (first.precedence(), second.precedence());
            if p1 == Precedence::Compare && p2 == Precedence::Compare {
                // Comparisons do not chain; that is an error of its own.
                continue;
            }
            let (a, b) = (first.as_str(), second.as_str());
            let left = format!("({b} ({a} x y) z)");
            let right = format!("({a} x ({b} y z))");
            let groups_right = p1 < p2 || (p1 == p2 && p1 == Precedence::Default);
            let want = if groups_right { right } else { left };
            assert_eq!(show(&format!("x {a} y {b} z")), want, "`x {a} y {b} z`");
            checked += 1;
        }
    }
    assert_eq!(checked, 15 * 15 - 7 * 7);
}

/// Every token the lexer makes of an operator's text is the token the
/// operator table maps back to that operator.
#[test]
fn every_binary_operator_lexes_to_its_own_token() {
    for op in BinaryOp::ALL {
        let lexed = nudge_syntax::lex(FileId(0), op.as_str());
        assert_eq!(lexed.tokens.len(), 1, "`{}`", op.as_str());
        let tok = lexed.tokens[0].0;
        assert_eq!(tok.binary_op(), Some(op), "`{}`", op.as_str());
        assert!(tok.is_operator() && tok.continues_expression());
        assert_eq!(tok.binary_precedence(), Some(op.precedence()));
    }
}

/// Only operators are named "an operator" in a syntax error, and each
/// keyword an expression may hold is accepted inside one.
#[test]
fn expected_operators_are_named_as_such() {
    let parsed = parse(FileId(0), "let x = a b");
    let titles: Vec<&str> = parsed
        .diagnostics
        .iter()
        .map(|d| d.title.as_str())
        .collect();
    assert!(
        titles.iter().any(|t| t.contains("an operator")),
        "{titles:?}"
    );
    parse_ok("let x = not profile.vip and event.total in [1] or trigger.x == none ?? true");
}

#[test]
fn date_triggers_read_their_direction_repetition_time_and_grace() {
    let trigger = |src: &str| match flow_items(src).into_iter().next() {
        Some(FlowItem::Clause(Clause {
            kind: ClauseKind::Trigger(t),
            ..
        })) => t,
        other => panic!("{src}: {other:?}"),
    };
    match trigger("flow f { trigger 3d before profile.renews_at }") {
        Trigger::DateProperty {
            offset,
            before,
            field,
            yearly,
            at,
            grace,
        } => {
            assert_eq!(offset.map(|o| o.seconds), Some(3 * 86_400));
            assert!(before);
            assert_eq!(field.name, "renews_at");
            assert!(yearly.is_none() && at.is_none() && grace.is_none());
        }
        other => panic!("{other:?}"),
    }
    match trigger("flow f { trigger on profile.birthday every year at 09:30 grace 1d }") {
        Trigger::DateProperty {
            offset,
            before,
            yearly,
            at,
            grace,
            ..
        } => {
            assert!(offset.is_none() && !before);
            assert!(yearly.is_some());
            assert_eq!(at.map(|t| (t.hour, t.minute)), Some((9, 30)));
            assert_eq!(grace.map(|g| g.seconds), Some(86_400));
        }
        other => panic!("{other:?}"),
    }
    // `every` must be followed by `year` here.
    assert!(!codes_of("flow f { trigger on profile.birthday every month }").is_empty());
}

#[test]
fn wait_and_windows_take_a_constant_by_name() {
    let items =
        flow_items("flow f { goal a within window\n wait grace\n wait for b within grace }");
    let names: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            FlowItem::Clause(Clause {
                kind: ClauseKind::Goal(g),
                ..
            }) => Some(&g.within),
            FlowItem::Step(Step {
                kind: StepKind::Wait(d),
                ..
            }) => Some(d),
            FlowItem::Step(Step {
                kind: StepKind::WaitFor(w),
                ..
            }) => Some(&w.within),
            _ => None,
        })
        .map(|d| match d {
            DurationArg::Name(n) => n.name.clone(),
            DurationArg::Lit(l) => format!("{}s", l.seconds),
        })
        .collect();
    assert_eq!(names, ["window", "grace", "grace"]);
}
