//! Lowering to bytecode: every example builds, bundles round-trip byte for
//! byte, builds are deterministic, and versions are per flow.

use nudge_compiler::bytecode::{Bundle, Instr, disassemble};
use nudge_compiler::{Project, check, lower};
use nudge_test_support::{build, build_project, example_bundle, example_dirs};

#[test]
fn every_example_lowers_and_round_trips_byte_for_byte() {
    let dirs = example_dirs();
    assert!(dirs.len() >= 10, "expected the ten example projects");
    for dir in dirs {
        let project = Project::load(std::slice::from_ref(&dir)).expect("example loads");
        let bundle = build_project(&project);
        assert!(!bundle.flows.is_empty(), "{}: no flows", dir.display());
        let bytes = bundle.encode();
        let decoded = Bundle::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(decoded, bundle, "{}", dir.display());
        assert_eq!(decoded.encode(), bytes, "{}", dir.display());
        for (i, f) in bundle.flows.iter().enumerate() {
            assert_eq!(f.version.len(), 16, "{}", f.name);
            assert_eq!(bundle.flow_version(i).as_deref(), Some(f.version.as_str()));
            assert_eq!(f.unit.blocks[0].code.last(), Some(&Instr::End));
        }
        // The listing covers every flow.
        let listing = disassemble(&bundle, &|_| None);
        for f in &bundle.flows {
            assert!(listing.contains(&format!("flow {}  version {}", f.name, f.version)));
        }
    }
}

/// A small project using every kind of trigger, clause and step.
const SHOP: &str = r#"let cutoff = 2026-12-18T17:00:00Z
let threshold = $50.00
let tier_default: decimal = 2

type Tier = "none" | "gold"

event plan_paused "Plan Paused" {
  plan: string
  weeks: int = 2
  tier: Tier = "none"
}

profile {
  tier: Tier = "none"
  score: decimal = 0
}

segment vip = profile.total_spent >= threshold or profile.tier == "gold"

message nudge_email(items: list<Product>, note: string = "Hi") {
  channel email
  subject "{profile.first_name ?? note}, {len(items)} items"
  body "Total {format_money(sum(items, p => p.price * p.quantity))}"
}

message ping(n: decimal) {
  channel push
  purpose transactional
  text "score {n}"
}

flow cart {
  trigger checkout_started where event.value > $0
  entry once per 7d
  exit on order_completed where event.total > $1
  exit if now() >= cutoff
  suppress if profile.tier == "gold"
  quiet hours 21:00 to 08:00
  cap email 1 per 16h then defer
  goal order_completed within 5d
  holdout 10%
  priority 5

  first: wait 1h
  send nudge_email(trigger.products)
  let got = wait for order_shipped or order_delivered where event.order_id != "" within 2d
  if got == none {
    set profile.score = 1
  } else if vip {
    send ping(n: 2.5)
  } else {
    split {
      50% a { audience add "a" }
      50% b { wait until now() + 1d }
    }
  }
  exit if any_event(order_refunded, r => r.order_id == got?.order_id)
  on exit {
    audience remove "a"
  }
}

flow lapsed {
  trigger 30d after profile.last_order_at
  send ping(n: tier_default)
}

flow weekly {
  trigger every monday at 09:00 local for vip
  send ping(n: profile.score + 1)
}

flow promoted {
  trigger entering vip
  entry always
  exit
}
"#;

#[test]
fn a_small_project_lowers_to_the_expected_listing() {
    let bundle = build(&[("shop.flow", SHOP)]);
    let listing = disassemble(&bundle, &|p| (p == "shop.flow").then(|| SHOP.to_string()));
    // The bound value of `wait for a or b` is the shared record: each event
    // says which of its fields make it.
    let cart = bundle.flow("cart").expect("the cart flow");
    let wait = &cart.waits[0];
    let shared = &bundle.schemas[wait.schema as usize];
    assert_eq!(shared.name, "order_shipped | order_delivered");
    for e in &wait.events {
        let fields = &bundle.schemas[e.event as usize].fields;
        let projected: Vec<&str> = e
            .project
            .as_ref()
            .expect("a projection for several events")
            .iter()
            .map(|&i| fields[usize::from(i)].name.as_str())
            .collect();
        let names: Vec<&str> = shared.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(projected, names);
    }
    assert_eq!(wait.bind, Some(0));
    assert_eq!(cart.locals, 1, "only `got` outlives a wait");
    assert_eq!(
        cart.local_names,
        vec![nudge_compiler::bytecode::LocalName {
            name: "got".into(),
            step: 2
        }]
    );
    // Split arms jump to their own steps.
    let arms = &cart.splits[0].arms;
    let code = &cart.unit.blocks[0].code;
    assert_eq!(arms.len(), 2);
    for arm in arms {
        assert!(matches!(code[arm.target as usize], Instr::Step(_)));
    }
    // Field defaults are folded constants, widened to the field's type.
    let profile = &bundle.schemas[bundle.profile as usize];
    let score = profile.fields.iter().find(|f| f.name == "score").unwrap();
    assert_eq!(
        score.default,
        Some(nudge_compiler::bytecode::Value::Decimal(0.into()))
    );
    // Only the project's own part: the stdlib tables are long and covered elsewhere.
    let start = listing.find("\nlet ").expect("lets are listed");
    insta::assert_snapshot!(&listing[start + 1..]);
}

#[test]
fn persistent_locals_are_named_with_the_step_that_declares_them() {
    let source = r#"
message m(n: int) {
  channel push
  text "{n}"
}

flow f {
  trigger signed_up
  let a = 1
  if a > 0 {
    wait 1h
    let b = 2
  } else {
    let reply = wait for order_completed within 1d
  }
  split {
    50% x { let c = 3 }
    50% y { send m(a) }
  }
  let d = 4
  on exit {
    let e = 5
    send m(e)
  }
}
"#;
    let bundle = build(&[("f.flow", source)]);
    let f = bundle.flow("f").expect("the flow");
    let named: Vec<(&str, &str)> = f
        .local_names
        .iter()
        .map(|l| (l.name.as_str(), f.steps[usize::from(l.step)].what.as_str()))
        .collect();
    assert_eq!(
        named,
        [
            ("a", "let a"),
            ("b", "let b"),
            ("reply", "wait for order_completed"),
            ("c", "let c"),
            ("d", "let d"),
            ("e", "let e"),
        ]
    );
    assert_eq!(usize::from(f.locals), f.local_names.len());
    // Each declaring step's own code writes its slot.
    for (slot, l) in f.local_names.iter().enumerate() {
        let info = &f.steps[usize::from(l.step)];
        let code = &f.unit.blocks[info.block as usize].code[info.pc as usize + 1..];
        let end = code
            .iter()
            .position(|i| matches!(i, Instr::Step(_) | Instr::End))
            .unwrap_or(code.len());
        let writes = code[..end].iter().any(|i| match i {
            Instr::StoreLocal(s) => usize::from(*s) == slot,
            Instr::WaitFor(w) => f.waits[usize::from(*w)].bind == Some(slot as u16),
            _ => false,
        });
        assert!(writes, "step {} does not write `{}`", l.step, l.name);
    }
}

fn versions(b: &Bundle) -> Vec<(String, String)> {
    b.flows
        .iter()
        .map(|f| (f.name.clone(), f.version.clone()))
        .collect()
}

#[test]
fn building_twice_gives_the_same_bytes() {
    for dir in example_dirs() {
        let once = build_project(&Project::load(std::slice::from_ref(&dir)).unwrap()).encode();
        let twice = build_project(&Project::load(std::slice::from_ref(&dir)).unwrap()).encode();
        assert_eq!(once, twice, "{}", dir.display());
    }
    let a = build(&[("shop.flow", SHOP)]).encode();
    let b = build(&[("shop.flow", SHOP)]).encode();
    assert_eq!(a, b);
}

const TWO_FLOWS: &str = r#"
message hello(name: string) {
  channel email
  subject "Hello {name}"
  body "Welcome"
}

message bye() {
  channel email
  subject "Bye"
  body "Come back"
}

flow alpha {
  trigger signed_up
  wait 1h
  send hello("a")
}

flow beta {
  trigger order_completed
  wait 2h
  send bye()
}
"#;

#[test]
fn editing_one_flow_changes_only_its_version() {
    let base = versions(&build(&[("shop.flow", TWO_FLOWS)]));
    assert_eq!(base.len(), 2);
    assert_ne!(base[0].1, base[1].1);

    let edited = TWO_FLOWS.replace("wait 2h", "wait 3h");
    let after = versions(&build(&[("shop.flow", &edited)]));
    assert_eq!(after[0], base[0], "alpha is untouched");
    assert_ne!(after[1].1, base[1].1, "beta changed");

    // Editing a message changes the versions of the flows that send it, only.
    let edited = TWO_FLOWS.replace("\"Bye\"", "\"Goodbye\"");
    let after = versions(&build(&[("shop.flow", &edited)]));
    assert_eq!(after[0], base[0]);
    assert_ne!(after[1].1, base[1].1);

    // Moving code, adding comments and declarations others do not use, or
    // splitting the project into files changes no version.
    let moved = format!(
        "// a comment\n\nlet unused = 3\n\nmessage aaa() {{\n  channel sms\n  text \"x\"\n}}\n{TWO_FLOWS}"
    );
    let after = versions(&build(&[("shop.flow", &moved)]));
    assert_eq!(after, base);
    let (first, second) = TWO_FLOWS.split_at(TWO_FLOWS.find("flow alpha").unwrap());
    let split = versions(&build(&[("b.flow", second), ("a.flow", first)]));
    assert_eq!(split, base);
}

#[test]
fn a_project_with_errors_is_not_lowered() {
    let project = Project::from_sources(vec![(
        "bad.flow".into(),
        "flow f {\n  trigger no_such_event\n}\n".into(),
    )]);
    let analysis = check(&project);
    let err = lower(&project, &analysis).unwrap_err();
    assert!(err.message.contains("1 error"), "{}", err.message);
}

#[test]
fn truncated_or_damaged_bundles_are_refused_without_panicking() {
    let bytes = example_bundle("cart_recovery").encode();
    for n in 0..bytes.len() {
        let err = Bundle::decode(&bytes[..n]).expect_err("a prefix is not a bundle");
        let text = err.to_string();
        assert!(
            text.contains("truncated") || text.contains("corrupt"),
            "prefix of {n} bytes: {text}"
        );
    }
    // Any single damaged byte either still decodes to a consistent bundle
    // or is refused; it never panics.
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x5a;
        let _ = Bundle::decode(&damaged);
    }
}

/// The codes of a one-file project's error diagnostics.
fn error_codes(src: &str) -> Vec<&'static str> {
    let project = Project::from_sources(vec![("p.flow".into(), src.into())]);
    let analysis = check(&project);
    assert_eq!(
        analysis.program().is_some(),
        !analysis.has_errors(),
        "a typed program exactly when there are no errors"
    );
    analysis
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id)
        .collect()
}

const THANKS: &str = r#"
message thanks(name: string) {
  channel email
  subject "Thanks, {name}"
  body "We got your order."
}

flow thank_buyers {
  trigger order_completed
  send thanks(profile.first_name ?? "friend")
}
"#;

#[test]
fn a_checked_program_is_lowered_from_its_typed_program_alone() {
    let project = Project::from_sources(vec![("shop.flow".into(), SHOP.into())]);
    let analysis = check(&project);
    let program = analysis
        .program()
        .expect("a clean project has a typed program");
    let bundle = nudge_compiler::lower_program(&project, program);
    let names = |b: &Bundle| b.flows.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    let typed: Vec<String> = program.flows.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names(&bundle), typed);
    assert_eq!(bundle, lower(&project, &analysis).expect("lowers"));
}

#[test]
fn what_a_bundle_cannot_hold_is_refused_by_the_checker() {
    // A field default that reads the customer.
    let default = format!("profile {{\n  visits: int = profile.orders_count\n}}\n{THANKS}");
    assert_eq!(error_codes(&default), ["E0309"]);
    // Constants with no type of their own.
    for value in ["none", "[]"] {
        let src = format!("let nothing = {value}\n{THANKS}");
        assert_eq!(error_codes(&src), ["E0309"], "let nothing = {value}");
        let typed = format!("let nothing: list<string>? = {value}\n{THANKS}");
        assert_eq!(error_codes(&typed), Vec::<&str>::new(), "{typed}");
    }
    // Every item that cannot be built is reported, not only the first.
    let both = format!("let nothing = none\n{default}");
    assert_eq!(error_codes(&both), ["E0309", "E0309"]);
    // A send that gives a message its 65th parameter.
    let params: Vec<String> = (0..65).map(|i| format!("p{i}: int = 0")).collect();
    let src = format!(
        "message many({}) {{\n  channel sms\n  text \"hi\"\n}}\n\nflow f {{\n  trigger order_completed\n  send many(p64: 1)\n}}\n",
        params.join(", ")
    );
    assert_eq!(error_codes(&src), ["E0309"]);
    let within = src.replace("send many(p64: 1)", "send many(p63: 1)");
    assert_eq!(error_codes(&within), Vec::<&str>::new());
}

/// FNV-1a, 64 bits: a digest that stays the same on every platform and
/// Rust release, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Every example's bundle, pinned byte for byte: a change to the checker,
/// the typed IR or lowering that alters what any example compiles to shows
/// up here and must be reviewed. Paths are relative to this crate (cargo
/// runs tests from it), so the bundles do not depend on the checkout.
#[test]
fn example_bundles_are_pinned_byte_for_byte() {
    let mut dirs: Vec<String> = std::fs::read_dir("../../examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("nudge.toml").is_file())
        .map(|p| p.display().to_string())
        .collect();
    dirs.sort();
    dirs.push("../../benches/winback".into());
    let mut out = String::new();
    for dir in dirs {
        let project = Project::load(&[std::path::PathBuf::from(&dir)]).expect("loads");
        let bytes = build_project(&project).encode();
        out.push_str(&format!(
            "{dir}: {} bytes, fnv1a {:016x}\n",
            bytes.len(),
            fnv1a(&bytes)
        ));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn an_error_added_after_the_check_still_refuses_the_project() {
    use nudge_diagnostics::{Diagnostic, codes};
    let project = Project::from_sources(vec![("shop.flow".into(), SHOP.into())]);
    let mut analysis = check(&project);
    assert!(lower(&project, &analysis).is_ok());
    // As a language server adds the problems of `nudge.toml` to a project's.
    let at = analysis.symbols[0].at;
    analysis
        .diagnostics
        .push(Diagnostic::new(codes::E0501, at, "broken nudge.toml"));
    let err = lower(&project, &analysis).unwrap_err();
    assert!(err.message.contains("1 error"), "{}", err.message);
    assert!(nudge_compiler::lower_test_conditions(&project, &analysis).is_err());
}
