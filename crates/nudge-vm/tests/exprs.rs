//! Expressions: operators, errors with positions, `??`, `?.`, short-circuits, builtins.

mod common;

use common::*;
use nudge_compiler::bytecode::{Bundle, Value};
use nudge_test_support::build;
use nudge_vm::{Scope, UnitRef, Vm, VmError, VmErrorKind};

/// A project with one message `probe(params, r: T = EXPR)`; `eval` computes `r`.
struct Probe {
    bundle: Bundle,
}

impl Probe {
    fn new(decls: &str, params: &str, ty: &str, expr: &str) -> Probe {
        let sep = if params.is_empty() { "" } else { ", " };
        let src = format!(
            "{decls}\nmessage probe({params}{sep}r: {ty} =\n    {expr}) {{\n  channel sms\n  text \"x\"\n}}\n"
        );
        Probe {
            bundle: build(&[("probe.flow", &src)]),
        }
    }

    fn eval_with(&self, host: &mut TestHost, args: &[Value]) -> Result<Value, VmError> {
        let vm = Vm::new(&self.bundle);
        let (mi, m) = self
            .bundle
            .messages
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == "probe")
            .unwrap();
        let block = m.params.last().unwrap().default.unwrap();
        let mut locals = args.to_vec();
        vm.eval(
            UnitRef::Message(mi as u32),
            block,
            &mut locals,
            &Scope::default(),
            host,
        )
    }

    fn eval(&self, args: &[Value]) -> Result<Value, VmError> {
        let mut host = TestHost::new(&self.bundle);
        self.eval_with(&mut host, args)
    }
}

fn eval(params: &str, ty: &str, expr: &str, args: &[Value]) -> Result<Value, VmError> {
    Probe::new("", params, ty, expr).eval(args)
}

fn ok(params: &str, ty: &str, expr: &str, args: &[Value]) -> Value {
    eval(params, ty, expr, args).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

#[test]
fn integer_arithmetic_is_checked() {
    let two = [Value::Int(7), Value::Int(2)];
    assert_eq!(
        ok("a: int, b: int", "int", "a * b - a % b", &two),
        Value::Int(13)
    );
    assert_eq!(ok("a: int, b: int", "decimal", "a / b", &two), dec("3.5"));
    let e = eval(
        "a: int, b: int",
        "int",
        "a + b",
        &[Value::Int(i64::MAX), Value::Int(1)],
    )
    .unwrap_err();
    assert_eq!(e.kind, VmErrorKind::Overflow);
    // The error points at the `+` expression on line 3 (after the empty declarations line), column 5.
    let pos = e.pos.expect("a position");
    assert_eq!((pos.line, pos.col), (3, 5));
}

#[test]
fn division_by_zero_is_an_error_with_its_position() {
    let p = Probe::new("", "a: int, b: int", "int", "a % b");
    let e = p.eval(&[Value::Int(1), Value::Int(0)]).unwrap_err();
    assert_eq!(e.kind, VmErrorKind::DivisionByZero);
    assert_eq!(
        e.display(&p.bundle).to_string(),
        "division by zero (probe.flow:3:5)"
    );
    let e = eval(
        "a: money, b: decimal",
        "money",
        "a / b",
        &[money("1"), dec("0")],
    )
    .unwrap_err();
    assert_eq!(e.kind, VmErrorKind::DivisionByZero);
}

#[test]
fn money_is_exact() {
    let v = ok(
        "a: money, b: money",
        "bool",
        "a + b == $0.30",
        &[money("0.10"), money("0.20")],
    );
    assert_eq!(v, Value::Bool(true));
    let v = ok("a: money", "money", "a * 15%", &[money("19.99")]);
    assert_eq!(v, money("2.9985"));
    assert_eq!(v.to_text(), "$3.00");
    let v = ok(
        "a: money, n: int",
        "money",
        "a * n",
        &[money("0.1"), Value::Int(3)],
    );
    assert_eq!(v, money("0.3"));
    let v = ok("a: money", "decimal", "a / $4", &[money("10")]);
    assert_eq!(v, dec("2.5"));
    // 1.0 == 1.00: decimals compare by value.
    let v = ok("a: decimal", "bool", "a == 1.00", &[dec("1.0")]);
    assert_eq!(v, Value::Bool(true));
}

#[test]
fn time_and_date_arithmetic() {
    let t = Value::Time(1_000_000);
    assert_eq!(
        ok("t: time", "time", "t + 1h", std::slice::from_ref(&t)),
        Value::Time(1_003_600)
    );
    assert_eq!(
        ok(
            "t: time",
            "duration",
            "t - (t - 2d)",
            std::slice::from_ref(&t)
        ),
        Value::Duration(172_800)
    );
    assert_eq!(
        ok("d: date", "date", "d + 36h", &[Value::Date(100)]),
        Value::Date(101)
    );
    assert_eq!(
        ok("d: duration", "duration", "d / 2", &[Value::Duration(7)]),
        Value::Duration(3)
    );
}

#[test]
fn default_operator_and_optional_fields() {
    let decls = "type Box {\n  n: int?\n}\n";
    let p = Probe::new(decls, "b: Box?", "int", "b?.n ?? 7");
    assert_eq!(p.eval(&[Value::None]).unwrap(), Value::Int(7));
    let with_none = record(&p.bundle, "Box", &[]);
    assert_eq!(p.eval(&[with_none]).unwrap(), Value::Int(7));
    let with_five = record(&p.bundle, "Box", &[("n", Value::Int(5))]);
    assert_eq!(p.eval(&[with_five]).unwrap(), Value::Int(5));
}

#[test]
fn and_or_short_circuit() {
    // With b = 0 the right side would divide by zero; it must not run.
    let zero = [Value::Int(1), Value::Int(0)];
    assert_eq!(
        ok("a: int, b: int", "bool", "b == 0 or a % b == 0", &zero),
        Value::Bool(true)
    );
    assert_eq!(
        ok("a: int, b: int", "bool", "b != 0 and a % b == 0", &zero),
        Value::Bool(false)
    );
    let e = eval("a: int, b: int", "bool", "b == 0 and a % b == 0", &zero).unwrap_err();
    assert_eq!(e.kind, VmErrorKind::DivisionByZero);
}

#[test]
fn list_builtins() {
    let decls = "type Item {\n  price: money = $0\n  qty: int = 1\n  tag: string?\n}\n";
    let p = |ty: &str, e: &str| Probe::new(decls, "xs: list<Item>", ty, e);
    let b = Probe::new(decls, "", "int", "1").bundle;
    let item = |price: &str, qty: i64, tag: Option<&str>| {
        record(
            &b,
            "Item",
            &[
                ("price", money(price)),
                ("qty", Value::Int(qty)),
                ("tag", tag.map(Value::str).unwrap_or(Value::None)),
            ],
        )
    };
    let xs = Value::List(
        vec![
            item("2.50", 2, Some("a")),
            item("10", 1, None),
            item("1.25", 4, Some("b")),
        ]
        .into(),
    );
    let args = [xs.clone()];
    let empty = [Value::List(Vec::new().into())];
    let run = |ty: &str, e: &str, a: &[Value]| p(ty, e).eval(a).unwrap();
    assert_eq!(
        run("bool", "any(xs, x => x.qty > 3)", &args),
        Value::Bool(true)
    );
    assert_eq!(
        run("bool", "any(xs, x => x.qty > 9)", &args),
        Value::Bool(false)
    );
    assert_eq!(
        run("bool", "all(xs, x => x.qty > 0)", &args),
        Value::Bool(true)
    );
    assert_eq!(
        run("bool", "all(xs, x => x.qty > 1)", &args),
        Value::Bool(false)
    );
    assert_eq!(
        run("int", "count(xs, x => x.tag != none)", &args),
        Value::Int(2)
    );
    assert_eq!(
        run("string", "first(xs, x => x.qty == 4)?.tag ?? \"-\"", &args),
        Value::str("b")
    );
    assert_eq!(
        run("bool", "first(xs, x => x.qty == 9) == none", &args),
        Value::Bool(true)
    );
    assert_eq!(
        run("int", "len(filter(xs, x => x.price < $5))", &args),
        Value::Int(2)
    );
    assert_eq!(
        run("list<string>", "map(xs, x => x.tag ?? \"none\")", &args),
        Value::List(vec![Value::str("a"), Value::str("none"), Value::str("b")].into())
    );
    assert_eq!(
        run("money", "sum(xs, x => x.price * x.qty)", &args),
        money("20")
    );
    assert_eq!(run("int", "sum(xs, x => x.qty)", &args), Value::Int(7));
    assert_eq!(run("int", "len(xs)", &args), Value::Int(3));
    // An empty sum is the zero of the lambda's result type.
    assert_eq!(
        run("money", "sum(xs, x => x.price * x.qty)", &empty),
        money("0")
    );
    assert_eq!(run("money", "sum(xs, x => x.price)", &empty), money("0"));
    assert_eq!(run("int", "sum(xs, x => x.qty)", &empty), Value::Int(0));
    assert_eq!(
        run("bool", "any(xs, x => x.qty > 0)", &empty),
        Value::Bool(false)
    );
    assert_eq!(
        run("bool", "all(xs, x => x.qty > 5)", &empty),
        Value::Bool(true)
    );
}

#[test]
fn number_builtins() {
    let two = [money("3"), money("5")];
    assert_eq!(
        ok("a: money, b: money", "money", "min(a, b)", &two),
        money("3")
    );
    assert_eq!(
        ok("a: money, b: money", "money", "max(a, b)", &two),
        money("5")
    );
    assert_eq!(
        ok("a: decimal", "decimal", "round(a, 1)", &[dec("2.25")]),
        dec("2.3")
    );
    assert_eq!(
        ok("a: decimal", "decimal", "round(a, 1)", &[dec("-2.25")]),
        dec("-2.3")
    );
    assert_eq!(
        ok("a: money", "money", "round(a / 3, 2)", &[money("10")]),
        money("3.33")
    );
    assert_eq!(
        ok("a: int", "int", "round(a, 0)", &[Value::Int(7)]),
        Value::Int(7)
    );
}

#[test]
fn text_builtins() {
    let s = [Value::str("  Hello World  ")];
    let t = |ty: &str, e: &str| ok("s: string", ty, e, &s);
    assert_eq!(t("bool", "contains(s, \"lo W\")"), Value::Bool(true));
    assert_eq!(t("bool", "contains(s, \"lo w\")"), Value::Bool(false));
    assert_eq!(
        t("bool", "starts_with(trim(s), \"Hello\")"),
        Value::Bool(true)
    );
    assert_eq!(t("bool", "ends_with(s, \"World\")"), Value::Bool(false));
    assert_eq!(t("string", "lower(trim(s))"), Value::str("hello world"));
    assert_eq!(t("string", "upper(trim(s))"), Value::str("HELLO WORLD"));
    assert_eq!(
        t("string", "url_encode(trim(s))"),
        Value::str("Hello%20World")
    );
    assert_eq!(
        ok("m: money", "string", "format_money(m)", &[money("12.5")]),
        Value::str("$12.50")
    );
    assert_eq!(
        ok(
            "n: int, m: money",
            "string",
            "\"{n} for {m}\"",
            &[Value::Int(2), money("3")]
        ),
        Value::str("2 for $3.00")
    );
}

#[test]
fn time_builtins() {
    let p = Probe::new("", "t: time", "date", "date_of(t)");
    let mut host = TestHost::new(&p.bundle);
    // 2026-01-01T03:00:00Z: New Year's Day in UTC, still New Year's Eve in New York.
    let t = Value::Time(1_767_236_400);
    let utc = p.eval_with(&mut host, std::slice::from_ref(&t)).unwrap();
    assert_eq!(utc.to_text(), "2026-01-01");
    host.tz = chrono_tz::America::New_York;
    let ny = p.eval_with(&mut host, std::slice::from_ref(&t)).unwrap();
    assert_eq!(ny.to_text(), "2025-12-31");

    let p = Probe::new("", "", "time", "now()");
    let mut host = TestHost::new(&p.bundle);
    host.now = 42;
    assert_eq!(p.eval_with(&mut host, &[]).unwrap(), Value::Time(42));

    let db = |a: i64, b: i64| {
        ok(
            "a: time, b: time",
            "int",
            "days_between(a, b)",
            &[Value::Time(a), Value::Time(b)],
        )
    };
    assert_eq!(db(0, 86_400 * 3 - 1), Value::Int(2));
    assert_eq!(db(86_400 * 3 - 1, 0), Value::Int(-2));
    assert_eq!(db(0, 86_400), Value::Int(1));
}

#[test]
fn profile_fields_read_their_defaults() {
    let p = Probe::new("", "", "int", "profile.orders_count + 1");
    let mut host = TestHost::new(&p.bundle);
    assert_eq!(p.eval_with(&mut host, &[]).unwrap(), Value::Int(1));
    host.set(&p.bundle, "orders_count", Value::Int(4));
    assert_eq!(p.eval_with(&mut host, &[]).unwrap(), Value::Int(5));
}

#[test]
fn lets_and_segments() {
    let decls =
        "let base = $10\nlet doubled = base * 2\nsegment big = profile.total_spent > doubled\n";
    let p = Probe::new(decls, "", "money", "doubled + $1");
    assert_eq!(p.eval(&[]).unwrap(), money("21"));
    let vm = Vm::new(&p.bundle);
    let mut host = TestHost::new(&p.bundle);
    let seg = p
        .bundle
        .segments
        .iter()
        .position(|s| s.name == "big")
        .unwrap() as u32;
    assert!(!vm.segment(seg, &mut host).unwrap());
    host.set(&p.bundle, "total_spent", money("20.01"));
    assert!(vm.segment(seg, &mut host).unwrap());
}

#[test]
fn event_builtins_see_events_since_the_instance_started() {
    let src = r#"
flow f {
  trigger order_completed
  exit if any_event(order_refunded, r => r.order_id == trigger.order_id)
  exit if count_events(order_refunded, r => r.total > $5) >= 2
  exit if (last_event(order_refunded)?.order_id ?? "") == "o2"
  wait 1d
}
"#;
    let bundle = build(&[("f.flow", src)]);
    let vm = Vm::new(&bundle);
    let flow = &bundle.flows[0];
    let refund = schema_index(&bundle, "order_refunded");
    let trigger = record(
        &bundle,
        "order_completed",
        &[("order_id", Value::str("o1"))],
    );
    let mut host = TestHost::new(&bundle);
    let ev = |id: &str, total: &str| {
        record(
            &bundle,
            "order_refunded",
            &[("order_id", Value::str(id)), ("total", money(total))],
        )
    };
    host.events.push((refund, 100, ev("o1", "10")));
    host.events.push((refund, 200, ev("o2", "10")));
    host.events.push((refund, 300, ev("o3", "1")));
    let run = |host: &mut TestHost, rule: usize, since: i64| {
        let scope = Scope {
            trigger: Some(&trigger),
            event: None,
            since,
        };
        let mut locals = Vec::new();
        vm.eval(
            UnitRef::Flow(0),
            flow.exit_if[rule],
            &mut locals,
            &scope,
            host,
        )
        .unwrap()
    };
    assert_eq!(run(&mut host, 0, 0), Value::Bool(true));
    assert_eq!(run(&mut host, 0, 150), Value::Bool(false), "o1 came before");
    assert_eq!(run(&mut host, 1, 0), Value::Bool(true));
    assert_eq!(run(&mut host, 1, 150), Value::Bool(false));
    assert_eq!(run(&mut host, 2, 0), Value::Bool(false), "the last is o3");
    host.events.pop();
    assert_eq!(run(&mut host, 2, 0), Value::Bool(true));
}

#[test]
fn a_missing_trigger_is_bad_code_not_a_panic() {
    let src = "flow f {\n  trigger order_completed\n  exit if trigger.total > $1\n  wait 1d\n}\n";
    let bundle = build(&[("f.flow", src)]);
    let vm = Vm::new(&bundle);
    let mut host = TestHost::new(&bundle);
    let e = vm
        .eval(
            UnitRef::Flow(0),
            bundle.flows[0].exit_if[0],
            &mut Vec::new(),
            &Scope::default(),
            &mut host,
        )
        .unwrap_err();
    assert!(matches!(e.kind, VmErrorKind::BadCode(_)), "{e}");
    assert!(e.pos.is_some());
}

#[test]
fn malformed_code_gives_bad_code() {
    use nudge_compiler::bytecode::Instr;
    let mut bundle = build(&[("l.flow", "let a = 1\n")]);
    let a = bundle.lets.iter().position(|l| l.name == "a").unwrap();
    let cases: Vec<Vec<Instr>> = vec![
        vec![Instr::Pop, Instr::Return],
        vec![Instr::LoadLet(a as u32), Instr::Return],
        vec![Instr::Const(99), Instr::Return],
        vec![
            Instr::LoadLocal(0),
            Instr::Const(0),
            Instr::AddInt,
            Instr::Return,
        ],
        vec![Instr::Jump(7)],
        vec![Instr::Wait(5), Instr::Return],
    ];
    for code in cases {
        let block = &mut bundle.lets[a].unit.blocks[0];
        block.pos = vec![block.pos[0]; code.len()];
        block.code = code.clone();
        let vm = Vm::new(&bundle);
        let mut host = TestHost::new(&bundle);
        let e = vm
            .eval(
                UnitRef::Let(a as u32),
                0,
                &mut Vec::new(),
                &Scope::default(),
                &mut host,
            )
            .unwrap_err();
        assert!(matches!(e.kind, VmErrorKind::BadCode(_)), "{code:?}: {e}");
    }
}

#[test]
fn builtins_are_bound_by_name_when_the_vm_is_made() {
    // Calls index the bundle's list of names, so a list in another order
    // still calls the builtin each name says.
    let mut p = Probe::new("", "t: string", "string", "upper(t)");
    assert_eq!(p.eval(&[Value::str("ab")]), Ok(Value::str("AB")));
    let upper = p.bundle.builtins.iter().position(|n| n == "upper").unwrap();
    p.bundle.builtins[upper] = "lower".into();
    assert_eq!(p.eval(&[Value::str("Ab")]), Ok(Value::str("ab")));
    // A name the VM does not know fails the call with that name, not a panic.
    p.bundle.builtins[upper] = "shout".into();
    let e = p.eval(&[Value::str("ab")]).unwrap_err();
    assert_eq!(
        e.kind,
        VmErrorKind::BadCode("unknown builtin `shout`".into())
    );
}

#[test]
fn format_date_writes_in_the_recipients_zone_and_locale() {
    // 2026-12-24T16:30:00Z: 17:30 in Berlin, 11:30 in New York.
    let t = Value::Time(1_798_129_800);
    let p = Probe::new("", "t: time, f: string", "string", "format_date(t, f)");
    let fmt = |tz: chrono_tz::Tz, locale: Option<&str>, f: &str| {
        let mut host = TestHost::new(&p.bundle);
        host.tz = tz;
        if let Some(l) = locale {
            host.set(&p.bundle, "locale", Value::str(l));
        }
        match p.eval_with(&mut host, &[t.clone(), Value::str(f)]) {
            Ok(Value::Str(s)) => s.to_string(),
            other => panic!("{f}: {other:?}"),
        }
    };
    use chrono_tz::{America::New_York, Europe::Berlin};
    assert_eq!(fmt(Berlin, Some("de-DE"), "long"), "24. Dezember 2026");
    assert_eq!(fmt(Berlin, Some("de-DE"), "time"), "17:30");
    assert_eq!(fmt(New_York, None, "full"), "Thursday, December 24, 2026");
    assert_eq!(fmt(New_York, Some("en-US"), "time"), "11:30 AM");
    assert_eq!(
        fmt(Berlin, Some("fr-FR"), "%A %-d %B à %H:%M %Z"),
        "jeudi 24 décembre à 17:30 CET"
    );
    // Late in the evening in New York is already the next day in Berlin.
    let late = Value::Time(1_798_160_400); // 2026-12-25T01:00:00Z
    let mut host = TestHost::new(&p.bundle);
    host.tz = New_York;
    assert_eq!(
        p.eval_with(&mut host, &[late, Value::str("short")])
            .unwrap(),
        Value::str("12/24/2026")
    );
    // A pattern known only at run time that cannot be read fails the send, with the reason.
    let mut host = TestHost::new(&p.bundle);
    let e = p
        .eval_with(&mut host, &[t.clone(), Value::str("%Q")])
        .unwrap_err();
    assert!(
        matches!(&e.kind, VmErrorKind::Format(m) if m.contains("%Q")),
        "{e}"
    );
}

#[test]
fn format_date_reads_dates_as_calendar_days() {
    let p = Probe::new("", "d: date", "string", "format_date(d, \"full\")");
    let mut host = TestHost::new(&p.bundle);
    host.tz = chrono_tz::Pacific::Auckland;
    host.set(&p.bundle, "locale", Value::str("es"));
    // 2024-02-29 is day 19782 since the epoch.
    assert_eq!(
        p.eval_with(&mut host, &[Value::Date(19_782)]).unwrap(),
        Value::str("jueves, 29 de febrero de 2024")
    );
}

#[test]
fn money_is_written_in_its_currency() {
    let amounts = [money("1234.5"), money("-3"), money("0.125")];
    let write = |code: &str| -> Vec<String> {
        amounts
            .iter()
            .map(|a| {
                match ok(
                    "a: money, c: string",
                    "string",
                    "format_money_in(a, c)",
                    &[a.clone(), Value::str(code)],
                ) {
                    Value::Str(s) => s.to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    };
    assert_eq!(write("EUR"), ["€1234.50", "-€3.00", "€0.13"]);
    assert_eq!(write("JPY"), ["¥1235", "-¥3", "¥0"]);
    assert_eq!(write("KWD"), ["KWD 1234.500", "-KWD 3.000", "KWD 0.125"]);
    assert_eq!(write("CHF"), ["CHF 1234.50", "-CHF 3.00", "CHF 0.13"]);
    // Codes from event data are read case-insensitively; anything else fails the send.
    assert_eq!(write(" gbp"), ["£1234.50", "-£3.00", "£0.13"]);
    let e = eval(
        "a: money, c: string",
        "string",
        "format_money_in(a, c)",
        &[money("1"), Value::str("euro")],
    )
    .unwrap_err();
    assert!(matches!(e.kind, VmErrorKind::Format(_)), "{e}");

    // The policy's currency is the store's: format_money and interpolation use it.
    let p = Probe::new(
        "policy {\n  currency \"EUR\"\n}",
        "a: money",
        "string",
        "format_money(a) + \" / {a}\"",
    );
    assert_eq!(
        p.eval(&[money("12.5")]).unwrap(),
        Value::str("€12.50 / €12.50")
    );
    let p = Probe::new(
        "policy {\n  currency \"JPY\"\n}",
        "a: money",
        "string",
        "\"{a}\"",
    );
    assert_eq!(p.eval(&[money("1250.5")]).unwrap(), Value::str("¥1251"));
    // Without one, amounts read as they always have.
    assert_eq!(
        ok("a: money", "string", "\"{a}\"", &[money("12.5")]),
        Value::str("$12.50")
    );
}

#[test]
fn recommend_makes_products_of_what_the_host_suggests() {
    let probe = Probe::new(
        "",
        "",
        "list<string>",
        "map(recommend(2), p => \"{p.product_id}:{p.name ?? \"-\"}:{p.price}:{p.quantity}\")",
    );
    let mut host = TestHost::new(&probe.bundle);
    host.suggestions = vec![
        nudge_vm::Suggestion {
            product_id: "mug".into(),
            name: Some("Enamel Mug".into()),
            price: Some(rust_decimal::Decimal::new(850, 2)),
            ..Default::default()
        },
        nudge_vm::Suggestion {
            product_id: "bare".into(),
            ..Default::default()
        },
        nudge_vm::Suggestion {
            product_id: "third".into(),
            ..Default::default()
        },
    ];
    let got = probe.eval_with(&mut host, &[]).unwrap();
    assert_eq!(
        got,
        Value::List(
            vec![
                Value::str("mug:Enamel Mug:$8.50:1"),
                Value::str("bare:-:$0.00:1")
            ]
            .into()
        )
    );
    assert_eq!(host.asked, [(2, vec![])]);
}

#[test]
fn recommend_excluding_passes_the_ids_and_a_negative_count_asks_for_none() {
    let probe = Probe::new(
        "",
        "",
        "int",
        "len(recommend_excluding(3, recommend(1))) + len(recommend(-4))",
    );
    let mut host = TestHost::new(&probe.bundle);
    host.suggestions = vec![nudge_vm::Suggestion {
        product_id: "p1".into(),
        ..Default::default()
    }];
    assert_eq!(probe.eval_with(&mut host, &[]).unwrap(), Value::Int(1));
    assert_eq!(
        host.asked,
        [(1, vec![]), (3, vec!["p1".to_string()]), (0, vec![])]
    );
    // A host without a catalogue suggests nothing.
    assert_eq!(ok("", "int", "len(recommend(5))", &[]), Value::Int(0));
}

#[test]
fn next_order_at_is_the_host_s_answer_or_none() {
    let probe = Probe::new("", "", "time?", "next_order_at(\"beans\")");
    let mut host = TestHost::new(&probe.bundle);
    assert_eq!(probe.eval_with(&mut host, &[]).unwrap(), Value::None);
    host.next_orders = vec![("beans".into(), 1_767_225_600)];
    assert_eq!(
        probe.eval_with(&mut host, &[]).unwrap(),
        Value::Time(1_767_225_600)
    );
}
