//! The type rules, narrowing, scopes and builtin calls, checked through whole programs.

use nudge_compiler::builtins::{Builtins, Param, SigTy, Signature, Var};
use nudge_compiler::{Analysis, Project, SymbolKind, check, check_with_builtins};

const PRELUDE: &str = r#"type Tier = "none" | "gold"
profile {
  tier: Tier = "none"
}
"#;

fn analyse(src: &str) -> (Project, Analysis) {
    let p = Project::from_sources(vec![("a.flow".into(), src.to_string())]);
    let a = check(&p);
    (p, a)
}

fn error_codes(a: &Analysis) -> Vec<&'static str> {
    a.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id)
        .collect()
}

/// The type of `expr` as a top-level let, or the error codes it produces.
fn type_of(expr: &str) -> String {
    let src = format!("{PRELUDE}let probe = {expr}\n");
    let (_, a) = analyse(&src);
    let errors = error_codes(&a);
    if !errors.is_empty() {
        return errors.join(",");
    }
    let sym = a
        .symbols
        .iter()
        .find(|s| s.name == "probe" && s.kind == SymbolKind::Let)
        .expect("the let is a symbol");
    sym.detail.clone()
}

#[test]
fn expression_types() {
    let table: &[(&str, &str)] = &[
        ("1 + 2", "int"),
        ("1 + 2.5", "decimal"),
        ("7 / 2", "decimal"),
        ("7 % 2", "int"),
        ("$1 + $2", "money"),
        ("$5 * 2", "money"),
        ("2 * $5", "money"),
        ("$5 * 1.5", "money"),
        ("$10 * 10%", "money"),
        ("$10 / 4", "money"),
        ("-$5", "money"),
        ("-1h", "duration"),
        ("1h + 30m", "duration"),
        ("2h * 3", "duration"),
        ("2026-01-01T00:00:00Z + 1d", "time"),
        ("2026-01-01T00:00:00Z - 1h", "time"),
        ("2026-01-02T00:00:00Z - 2026-01-01T00:00:00Z", "duration"),
        ("2026-01-01 + 1d", "date"),
        ("\"a\" + \"b\"", "string"),
        ("1 < 2.5", "bool"),
        ("$1 <= $2", "bool"),
        ("09:00 < 17:00", "bool"),
        ("1d > 1h", "bool"),
        ("1 in [1, 2]", "bool"),
        ("[1, 2.5]", "list<decimal>"),
        ("not true", "bool"),
        ("profile.first_name ?? \"there\"", "string"),
        ("profile.first_name ?? none", "string?"),
        ("profile.first_name == none", "bool"),
        ("profile.consent?.email", "bool?"),
        ("profile.tier == \"gold\"", "bool"),
        ("profile.tier", "Tier"),
        (
            "profile.orders_count > 2 or profile.total_spent >= $500",
            "bool",
        ),
        ("\"Hi {profile.first_name ?? \"there\"}\"", "string"),
        // Errors.
        ("$1 + 1", "E0304"),
        ("$1 > 1", "E0304"),
        ("\"a\" < \"b\"", "E0304"),
        ("2026-01-01 + 1", "E0304"),
        ("-\"a\"", "E0304"),
        ("\"x\" in [1]", "E0304"),
        ("profile.orders_count == none", "E0304"),
        ("true and 1", "E0301"),
        ("[1, \"a\"]", "E0301"),
        ("profile.tier == \"golld\"", "E0301"),
        ("profile.first_name + \"x\"", "E0302"),
        ("profile.consent.email", "E0302"),
        ("\"Hi {profile.first_name}\"", "E0302"),
        ("nope", "E0201"),
        ("trigger", "E0201"),
        ("event", "E0201"),
        ("profile.nope", "E0204"),
        ("(1).x", "E0204"),
        ("x => x", "E0301"),
    ];
    let mut wrong = Vec::new();
    for (expr, want) in table {
        let got = type_of(expr);
        if got != *want {
            wrong.push(format!("{expr}: expected {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn errors_do_not_cascade() {
    // One unknown name, used in arithmetic and a comparison: one diagnostic.
    let (_, a) = analyse("let probe = (nope + 1) * 2 > 3 and nope == \"x\"\n");
    let codes = error_codes(&a);
    assert_eq!(codes, vec!["E0201", "E0201"], "{:?}", a.diagnostics);
}

#[test]
fn builtin_calls_unify() {
    let table: &[(&str, &str)] = &[
        ("len([1, 2])", "int"),
        ("max(1, 2.5)", "decimal"),
        ("max($1, $2)", "money"),
        ("count([1, 2], x => x > 1)", "int"),
        ("first([$1], x => x > $0)", "money?"),
        ("map([1, 2], x => \"{x}\")", "list<string>"),
        ("sum([1, 2], x => x)", "int"),
        (
            "filter([\"a\"], s => starts_with(s, \"a\"))",
            "list<string>",
        ),
        ("max($1, 2)", "E0303"),
        ("any([1], x => x)", "E0303"),
        ("len(1)", "E0303"),
        ("len()", "E0303"),
        ("len([1], [2])", "E0303"),
        ("any([1], (a, b) => true)", "E0303"),
        ("upper(profile.first_name)", "E0302"),
        ("uper(\"a\")", "E0209"),
        ("any_event(nope, e => true)", "E0202"),
        ("any_event(1, e => true)", "E0303"),
    ];
    let mut wrong = Vec::new();
    for (expr, want) in table {
        let got = type_of(expr);
        if got != *want {
            wrong.push(format!("{expr}: expected {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn own_signatures_bind_type_variables_and_event_names() {
    const T: SigTy = SigTy::Var(Var::T);
    const E: SigTy = SigTy::Var(Var::E);
    let builtins = Builtins::from_signatures([
        Signature {
            name: "pick",
            params: &[
                Param {
                    name: "items",
                    ty: SigTy::List(&T),
                },
                Param {
                    name: "fallback",
                    ty: T,
                },
            ],
            ret: T,
        },
        Signature {
            name: "latest",
            params: &[Param {
                name: "kind",
                ty: SigTy::EventOf(Var::E),
            }],
            ret: SigTy::Optional(&E),
        },
    ]);
    assert_eq!(builtins.names, ["pick", "latest"]);
    let src =
        "let a = pick([1, 2], 3)\nlet b = latest(order_completed)\nlet c = pick([1], \"x\")\n";
    let p = Project::from_sources(vec![("a.flow".into(), src.into())]);
    let an = check_with_builtins(&p, builtins);
    let detail = |n: &str| {
        an.symbols
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.detail.clone())
    };
    assert_eq!(detail("a").as_deref(), Some("int"));
    assert_eq!(detail("b").as_deref(), Some("order_completed?"));
    let codes: Vec<_> = an
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id)
        .collect();
    assert_eq!(codes, vec!["E0303"]);
}

fn flow_errors(body: &str) -> Vec<&'static str> {
    let src = format!(
        "{PRELUDE}message m(name: string) {{\n  channel email\n  subject \"Hi {{name}}\"\n  body \"x\"\n}}\n{body}\n"
    );
    let (_, a) = analyse(&src);
    error_codes(&a).to_vec()
}

#[test]
fn narrowing_of_optionals() {
    let ok = [
        "flow f {\n  trigger order_completed\n  if profile.first_name != none {\n    send m(profile.first_name)\n  }\n}",
        "flow f {\n  trigger order_completed\n  if profile.first_name != none and upper(profile.first_name) == \"A\" {\n    send m(\"x\")\n  }\n}",
        "flow f {\n  trigger order_completed\n  exit if profile.first_name == none\n  send m(profile.first_name)\n}",
        "flow f {\n  trigger order_completed\n  if profile.first_name == none {\n    exit\n  }\n  send m(profile.first_name)\n}",
        "flow f {\n  trigger order_completed\n  if profile.first_name == none {\n    send m(\"friend\")\n  } else {\n    send m(profile.first_name)\n  }\n}",
        "flow f {\n  trigger order_completed\n  let d = wait for order_delivered where event.order_id == trigger.order_id within 14d\n  if d == none {\n    exit\n  }\n  send m(d.order_id)\n}",
        "flow f {\n  trigger order_completed\n  let d = wait for order_delivered within 14d\n  send m(d?.order_id ?? \"none\")\n}",
    ];
    for body in ok {
        assert_eq!(flow_errors(body), Vec::<&str>::new(), "{body}");
    }
    let bad = [
        "flow f {\n  trigger order_completed\n  if profile.first_name != none {\n    wait 1h\n  }\n  send m(profile.first_name)\n}",
        "flow f {\n  trigger order_completed\n  if profile.first_name == none {\n    wait 1h\n  }\n  send m(profile.first_name)\n}",
        "flow f {\n  trigger order_completed\n  let d = wait for order_delivered within 14d\n  send m(d.order_id)\n}",
    ];
    for body in bad {
        assert_eq!(flow_errors(body), vec!["E0302"], "{body}");
    }
}

#[test]
fn scopes_of_trigger_event_and_locals() {
    let cases: &[(&str, &[&str])] = &[
        // `trigger` is the trigger event's record.
        (
            "flow f {\n  trigger order_completed\n  send m(trigger.order_id)\n}",
            &[],
        ),
        // Not in a scheduled flow.
        (
            "flow f {\n  trigger every monday at 09:00 local\n  send m(trigger.order_id)\n}",
            &["E0201"],
        ),
        // `event` only inside a `where`.
        (
            "flow f {\n  trigger order_completed\n  send m(event.order_id)\n}",
            &["E0201"],
        ),
        (
            "flow f {\n  trigger order_completed where event.total > $10\n  send m(\"x\")\n}",
            &[],
        ),
        // Locals are block-scoped.
        (
            "flow f {\n  trigger order_completed\n  if true {\n    let x = \"a\"\n  }\n  send m(x)\n}",
            &["E0201"],
        ),
        (
            "flow f {\n  trigger order_completed\n  let x = \"a\"\n  if true {\n    send m(x)\n  }\n}",
            &[],
        ),
        // Lambda parameters take the element type; event names bind E.
        (
            "flow f {\n  trigger order_completed\n  exit if any_event(return_requested, r => r.order_id == trigger.order_id)\n  send m(\"x\")\n}",
            &[],
        ),
        (
            "flow f {\n  trigger order_completed\n  exit if any(trigger.products, p => p.price > $100)\n  send m(\"x\")\n}",
            &[],
        ),
        (
            "flow f {\n  trigger order_completed\n  exit if any(trigger.products, p => p.prize > $100)\n  send m(\"x\")\n}",
            &["E0204"],
        ),
        // Segments are bool names; they cannot read the trigger.
        (
            "segment s = trigger.total > $1\nflow f {\n  trigger order_completed\n  if s {\n    send m(\"x\")\n  }\n}",
            &["E0201"],
        ),
        // A date trigger needs a time or date field.
        (
            "flow f {\n  trigger 90d after profile.last_order_at\n  send m(\"x\")\n}",
            &[],
        ),
        (
            "flow f {\n  trigger 90d after profile.orders_count\n  send m(\"x\")\n}",
            &["E0301"],
        ),
        (
            "flow f {\n  trigger entering nope\n  send m(\"x\")\n}",
            &["E0201"],
        ),
        // `wait until` takes a time; `set profile` checks the field's type.
        (
            "flow f {\n  trigger order_completed\n  wait until 1h\n  send m(\"x\")\n}",
            &["E0301"],
        ),
        (
            "flow f {\n  trigger order_completed\n  set profile.tier = \"gold\"\n  send m(\"x\")\n}",
            &[],
        ),
        (
            "flow f {\n  trigger order_completed\n  set profile.tier = \"platinum\"\n  send m(\"x\")\n}",
            &["E0301"],
        ),
        // Sends: positional, named, defaults, wrong names.
        (
            "flow f {\n  trigger order_completed\n  send m(name: \"x\")\n}",
            &[],
        ),
        (
            "flow f {\n  trigger order_completed\n  send m(nam: \"x\")\n}",
            &["E0303", "E0303"],
        ),
        (
            "flow f {\n  trigger order_completed\n  send m(\"x\", \"y\")\n}",
            &["E0303"],
        ),
        (
            "flow f {\n  trigger order_completed\n  send m(1)\n}",
            &["E0303"],
        ),
    ];
    for (body, want) in cases {
        assert_eq!(flow_errors(body), want.to_vec(), "{body}");
    }
}

#[test]
fn unknown_names_suggest_close_names_with_a_fix() {
    let (_, a) =
        analyse("segment big_spender = profile.total_spent > $500\nlet probe = big_spendr\n");
    let d = a
        .diagnostics
        .iter()
        .find(|d| d.code.id == "E0201")
        .expect("E0201");
    assert_eq!(d.help.as_deref(), Some("did you mean `big_spender`?"));
    let fix = d.fix.as_ref().expect("a fix");
    assert_eq!(fix.edits[0].replacement, "big_spender");
    assert_eq!(fix.edits[0].at, d.primary);
    // Nothing close: no suggestion.
    let (_, a) = analyse("let probe = zzzzqqq\n");
    let d = a
        .diagnostics
        .iter()
        .find(|d| d.code.id == "E0201")
        .expect("E0201");
    assert!(d.help.is_none() && d.fix.is_none());
}

#[test]
fn w0001_fix_inserts_the_exit_after_the_trigger() {
    let src = "message m(name: string) {\n  channel email\n  subject \"x\"\n  body \"{name}\"\n}\nflow f {\n    trigger product_added\n    send m(\"x\")\n}\n";
    let (_, a) = analyse(src);
    let d = a
        .diagnostics
        .iter()
        .find(|d| d.code.id == "W0001")
        .expect("W0001");
    let edit = &d.fix.as_ref().expect("fix").edits[0];
    let mut fixed = src.to_string();
    fixed.insert_str(edit.at.span.start as usize, &edit.replacement);
    assert!(
        fixed.contains("    trigger product_added\n    exit on order_completed\n    send"),
        "{fixed}"
    );
    let (_, a) = analyse(&fixed);
    assert!(a.diagnostics.iter().all(|d| d.code.id != "W0001"));
}

#[test]
fn stdlib_is_clean_and_not_linted() {
    let (_, a) = analyse("");
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
}

#[test]
fn named_durations_in_waits_and_windows() {
    let flow = |lets: &str, steps: &str| {
        format!(
            "{lets}\nflow f {{\n  trigger order_completed\n  goal order_completed within window\n{steps}\n  send m(\"x\")\n}}"
        )
    };
    // Constants folded from literals, integers and other constants.
    let ok = flow(
        "let grace = 3d\nlet window = grace * 2 + 12h\nlet half = window / 2 - 1h",
        "  wait grace\n  let d = wait for order_delivered within half\n  wait 1h",
    );
    let (_, a) = analyse(&format!(
        "{PRELUDE}message m(name: string) {{\n  channel email\n  subject \"Hi {{name}}\"\n  body \"x\"\n}}\n{ok}\n"
    ));
    assert_eq!(error_codes(&a), Vec::<&str>::new());
    let program = a.program().expect("no errors, so a typed program");
    let f = &program.flows[0];
    let waits: Vec<String> = f.steps.iter().map(|s| format!("{:?}", s.kind)).collect();
    assert!(waits[0].starts_with("Wait(259200)"), "{waits:?}");
    assert!(waits[1].contains("within: 277200"), "{waits:?}");
    // The goal window is 6d 12h; the lint sees the named lengths.
    assert!(
        !a.diagnostics.iter().any(|d| d.code.id == "W0007"),
        "the constants count as used"
    );

    let cases: &[(&str, &str, &[&str])] = &[
        // Computed from the profile: not a constant.
        (
            "let window = 7d\nlet grace = 1d * profile.orders_count",
            "  wait grace",
            &["E0310"],
        ),
        // A local of the flow is computed while it runs.
        (
            "let window = 7d",
            "  let grace = 3d\n  wait grace",
            &["E0310"],
        ),
        // Not a duration.
        ("let window = 7d\nlet grace = 3", "  wait grace", &["E0301"]),
        // Zero after folding.
        (
            "let window = 7d\nlet grace = 1d - 24h",
            "  wait grace",
            &["E0306"],
        ),
        // Unknown names are unknown.
        ("let window = 7d", "  wait grcae", &["E0201"]),
        // A computed goal window.
        ("let window = 1d * len([1, 2])", "  wait 1h", &["E0310"]),
    ];
    for (lets, steps, want) in cases {
        assert_eq!(flow_errors(&flow(lets, steps)), *want, "{lets} / {steps}");
    }
}

#[test]
fn a_wait_beyond_a_named_goal_window_is_linted() {
    let src = format!(
        "{PRELUDE}message m(name: string) {{\n  channel email\n  subject \"Hi {{name}}\"\n  body \"x\"\n}}\nlet window = 2d\nlet pause = 3d\nflow f {{\n  trigger order_completed\n  goal order_completed within window\n  wait pause\n  send m(\"x\")\n}}\n"
    );
    let (_, a) = analyse(&src);
    let w: Vec<&str> = a.diagnostics.iter().map(|d| d.code.id).collect();
    assert_eq!(w, ["W0003"]);
}

#[test]
fn formatting_builtins_check_their_arguments() {
    assert_eq!(type_of("format_date(now(), \"long\")"), "string");
    assert_eq!(type_of("format_date(2026-12-24, \"%d %B\")"), "string");
    assert_eq!(type_of("format_money_in($3, \"JPY\")"), "string");
    // A moment is a time or a date.
    assert_eq!(type_of("format_date(3, \"long\")"), "E0303");
    // Constant formats and currencies are read now.
    assert_eq!(type_of("format_date(now(), \"lnog\")"), "E0311");
    assert_eq!(type_of("format_date(now(), \"%Y-%q\")"), "E0311");
    assert_eq!(type_of("format_money_in($3, \"eur\")"), "E0311");
    let (_, a) = analyse("let style = \"%Y %\"\nlet probe = format_date(now(), style)\n");
    assert_eq!(error_codes(&a), ["E0311"]);
    // A misspelt style gets the closest one as a fix.
    let (_, a) = analyse("let probe = format_date(now(), \"shrt\")\n");
    let d = &a.diagnostics[0];
    assert_eq!(d.fix.as_ref().unwrap().edits[0].replacement, "\"short\"");
    // Known only at send time: not checked here.
    let (_, a) = analyse(
        "let probe = format_date(now(), profile.locale ?? \"long\") + format_money_in($1, profile.country ?? \"x\")\n",
    );
    assert_eq!(error_codes(&a), Vec::<&str>::new());
    // The policy's currency.
    let (_, a) = analyse("policy {\n  currency \"Euro\"\n}\n");
    assert_eq!(error_codes(&a), ["E0311"]);
    let (_, a) = analyse("policy {\n  currency \"EUR\"\n}\n");
    assert_eq!(error_codes(&a), Vec::<&str>::new());
}

#[test]
fn date_triggers_before_after_yearly_and_with_grace() {
    let flow = |trigger: &str| {
        format!(
            "profile {{\n  renews_at: time?\n  since: date?\n  label: string?\n}}\nflow f {{\n  trigger {trigger}\n  send m(\"x\")\n}}"
        )
    };
    for ok in [
        "90d after profile.renews_at",
        "3d before profile.renews_at",
        "on profile.since every year",
        "7d before profile.birthday every year at 09:00",
        "on profile.renews_at at 10:30 grace 2d",
        "90d after profile.last_order_at grace 2d",
    ] {
        assert_eq!(flow_errors(&flow(ok)), Vec::<&str>::new(), "{ok}");
    }
    let bad: &[(&str, &[&str])] = &[
        ("0d before profile.renews_at", &["E0306"]),
        ("1d after profile.renews_at grace 0s", &["E0306"]),
        ("on profile.label every year", &["E0301"]),
        ("on profile.nope", &["E0204"]),
    ];
    for (trigger, want) in bad {
        assert_eq!(flow_errors(&flow(trigger)), *want, "{trigger}");
    }
}

#[test]
fn recommend_is_refused_where_there_is_no_one_customer() {
    for (src, place) in [
        ("let picks = recommend(3)\n", "a top-level `let`"),
        ("segment s = len(recommend(2)) > 0\n", "a segment"),
    ] {
        let (_, a) = analyse(src);
        let d = a
            .diagnostics
            .iter()
            .find(|d| d.is_error())
            .expect("an error");
        assert_eq!(d.code.id, "E0209", "{src}");
        assert_eq!(d.title, format!("`recommend` is not available in {place}"));
    }
    let (_, a) = analyse("segment due = next_order_at(\"p\") != none\n");
    assert_eq!(error_codes(&a), ["E0209"]);
    // In a flow and in a message's content it is at home.
    let (_, a) = analyse(
        "message m(items: list<Product>) {\n  channel email\n  subject \"{len(recommend(1))}\"\n  body \"x\"\n}\n\
         flow f {\n  trigger order_completed\n  send m(recommend_excluding(2, trigger.products))\n}\n",
    );
    assert_eq!(error_codes(&a), Vec::<&str>::new());
}

#[test]
fn recommend_takes_a_count_and_products_to_leave_out() {
    let table: &[(&str, &str)] = &[
        ("recommend(3)", "list<Product>"),
        ("recommend_excluding(2, recommend(1))", "list<Product>"),
        ("first(recommend(1), p => p.price > $5)?.name", "string?"),
        ("map(recommend(4), p => p.product_id)", "list<string>"),
        ("recommend(\"3\")", "E0303"),
        ("recommend(2.5)", "E0303"),
        ("recommend()", "E0303"),
        ("recommend(3, 4)", "E0303"),
        ("recommend_excluding(3, [\"a\"])", "E0303"),
        ("recommend_excluding(3)", "E0303"),
        ("recomend(3)", "E0209"),
        ("next_order_at(\"p1\")", "time?"),
        ("next_order_at(\"p1\") ?? now()", "time"),
        ("next_order_at(1)", "E0303"),
    ];
    let mut wrong = Vec::new();
    for (expr, want) in table {
        let got = type_in_flow(expr);
        if got != *want {
            wrong.push(format!("{expr}: expected {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The type of `expr` as a flow's local, or the error codes it produces.
fn type_in_flow(expr: &str) -> String {
    let src = format!("flow f {{\n  trigger order_completed\n  let probe = {expr}\n  exit\n}}\n");
    let (_, a) = analyse(&src);
    let errors = error_codes(&a);
    if !errors.is_empty() {
        return errors.join(",");
    }
    let sym = a
        .symbols
        .iter()
        .find(|s| s.name == "probe")
        .expect("the local is a symbol");
    sym.detail.clone()
}
