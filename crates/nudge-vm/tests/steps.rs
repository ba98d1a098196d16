//! Running flow steps: yields, sends with defaults, branches, splits, exits.

mod common;

use common::*;
use nudge_compiler::bytecode::{Bundle, Value};
use nudge_test_support::build;
use nudge_vm::{Frame, Scope, Vm, Yield, bucket};

const SRC: &str = r#"
message hello(name: string, greeting: string = "Hi {name}") {
  channel email
  subject "{greeting}!"
  body "Dear {name}, you spent {format_money(profile.total_spent)}"
}

flow f {
  trigger order_completed
  wait 1h
  send hello(trigger.order_id)
  send hello(trigger.order_id, greeting: "Yo")
  if trigger.total > $100 {
    set profile.orders_count = 5
  } else {
    audience add "small"
  }
  let shipped = wait for order_shipped within 2d
  wait until now() + 1d
  exit if trigger.total > $500
  send hello(shipped?.carrier ?? "nobody")
  on exit {
    audience remove "small"
  }
}

flow s {
  trigger order_completed
  split {
    20% a { audience add "a" }
    80% b { audience add "b" }
  }
}
"#;

fn flow_index(b: &Bundle, name: &str) -> u32 {
    b.flows.iter().position(|f| f.name == name).unwrap() as u32
}

/// Runs a block to its end, answering waits with `bind` and returning the non-step yields.
fn run_block(
    vm: &Vm,
    flow: u32,
    frame: &mut Frame,
    scope: &Scope,
    host: &mut TestHost,
    bind: Value,
) -> Vec<Yield> {
    let f = &vm.bundle().flows[flow as usize];
    let mut out = Vec::new();
    for _ in 0..100 {
        let y = vm.run_steps(flow, frame, scope, host).unwrap();
        match &y {
            Yield::Step(_) => continue,
            Yield::Sleep(t) => {
                assert!(frame.locals.len() <= usize::from(f.locals));
                host.now = host.now.max(*t);
            }
            Yield::SleepFor(d) => {
                assert!(frame.locals.len() <= usize::from(f.locals));
                host.now += d;
            }
            Yield::WaitFor(n) => {
                assert!(frame.locals.len() <= usize::from(f.locals));
                if let Some(slot) = f.waits[usize::from(*n)].bind {
                    frame.locals.resize(usize::from(f.locals), Value::None);
                    frame.locals[usize::from(slot)] = bind.clone();
                }
            }
            _ => {}
        }
        let done = matches!(y, Yield::End | Yield::Exit);
        out.push(y);
        if done {
            return out;
        }
    }
    panic!("the block did not end: {out:?}");
}

#[test]
fn a_flow_runs_its_steps_and_yields_in_order() {
    let bundle = build(&[("f.flow", SRC)]);
    let vm = Vm::new(&bundle);
    let fi = flow_index(&bundle, "f");
    let hello = bundle
        .messages
        .iter()
        .position(|m| m.name == "hello")
        .unwrap() as u32;
    let mut host = TestHost::new(&bundle);
    let start = host.now;
    let trigger = record(
        &bundle,
        "order_completed",
        &[("order_id", Value::str("o1")), ("total", money("50"))],
    );
    let scope = Scope {
        trigger: Some(&trigger),
        event: None,
        since: start,
    };
    let shipped = record(
        &bundle,
        "order_shipped",
        &[
            ("order_id", Value::str("o1")),
            ("carrier", Value::str("UPS")),
        ],
    );
    let mut frame = Frame {
        block: 0,
        pc: 0,
        locals: Vec::new(),
    };
    // The first yield is the step boundary, with pc just past it.
    assert_eq!(
        vm.run_steps(fi, &mut frame, &scope, &mut host).unwrap(),
        Yield::Step(0)
    );
    assert_eq!(frame.pc, 1);
    let ys = run_block(&vm, fi, &mut frame, &scope, &mut host, shipped);
    let send = |name: &str, greeting: &str| Yield::Send {
        message: hello,
        args: vec![Value::str(name), Value::str(greeting)],
    };
    assert_eq!(
        ys,
        vec![
            Yield::SleepFor(3600),
            send("o1", "Hi o1"),
            send("o1", "Yo"),
            Yield::Audience {
                name: "small".into(),
                add: true
            },
            Yield::WaitFor(0),
            Yield::Sleep(start + 3600 + 86_400),
            send("UPS", "Hi UPS"),
            Yield::End,
        ]
    );
    assert!(host.writes.is_empty(), "the else branch ran");

    // The on-exit block runs the same way.
    let on_exit = bundle.flows[fi as usize].on_exit.expect("an on exit block");
    let mut frame = Frame {
        block: on_exit,
        pc: 0,
        locals: Vec::new(),
    };
    let ys = run_block(&vm, fi, &mut frame, &scope, &mut host, Value::None);
    assert_eq!(
        ys,
        vec![
            Yield::Audience {
                name: "small".into(),
                add: false
            },
            Yield::End
        ]
    );
}

#[test]
fn big_orders_set_the_profile_and_huge_ones_exit() {
    let bundle = build(&[("f.flow", SRC)]);
    let vm = Vm::new(&bundle);
    let fi = flow_index(&bundle, "f");
    let mut host = TestHost::new(&bundle);
    let trigger = record(
        &bundle,
        "order_completed",
        &[("order_id", Value::str("o9")), ("total", money("600"))],
    );
    let scope = Scope {
        trigger: Some(&trigger),
        event: None,
        since: 0,
    };
    let mut frame = Frame {
        block: 0,
        pc: 0,
        locals: Vec::new(),
    };
    let ys = run_block(&vm, fi, &mut frame, &scope, &mut host, Value::None);
    let orders = field_index(&bundle, bundle.profile, "orders_count") as u16;
    assert_eq!(host.writes, vec![(orders, Value::Int(5))]);
    assert!(!ys.iter().any(|y| matches!(y, Yield::Audience { .. })));
    assert_eq!(ys.last(), Some(&Yield::Exit));
    assert_eq!(
        ys.iter()
            .filter(|y| matches!(y, Yield::Send { .. }))
            .count(),
        2,
        "the send after the exit did not happen"
    );
}

fn split_arm(vm: &Vm, fi: u32, host: &mut TestHost) -> (u16, Yield) {
    let scope = Scope::default();
    let mut frame = Frame {
        block: 0,
        pc: 0,
        locals: Vec::new(),
    };
    loop {
        match vm.run_steps(fi, &mut frame, &scope, host).unwrap() {
            Yield::Split { arm, .. } => {
                // After the split, the arm's own steps run.
                let next = loop {
                    match vm.run_steps(fi, &mut frame, &scope, host).unwrap() {
                        Yield::Step(_) => continue,
                        y => break y,
                    }
                };
                return (arm, next);
            }
            Yield::Step(_) => continue,
            y => panic!("unexpected {y:?}"),
        }
    }
}

#[test]
fn splits_are_deterministic_and_follow_the_shares() {
    let bundle = build(&[("f.flow", SRC)]);
    let vm = Vm::new(&bundle);
    let fi = flow_index(&bundle, "s");
    let mut host = TestHost::new(&bundle);
    let mut first = 0;
    for i in 0..10_000 {
        host.key = format!("customer-{i}");
        let (arm, next) = split_arm(&vm, fi, &mut host);
        let name = if arm == 0 { "a" } else { "b" };
        assert_eq!(
            next,
            Yield::Audience {
                name: name.into(),
                add: true
            }
        );
        if i < 50 {
            assert_eq!(
                split_arm(&vm, fi, &mut host).0,
                arm,
                "same customer, same arm"
            );
        }
        if arm == 0 {
            first += 1;
        }
    }
    assert!(
        (1_800..=2_200).contains(&first),
        "20% arm got {first} of 10000"
    );
}

#[test]
fn bucket_is_stable() {
    assert_eq!(bucket("ana", "f/split/0"), bucket("ana", "f/split/0"));
    assert!(bucket("ana", "f/split/0") < 10_000);
    // Pinned: SHA-256("salt\0key"), first 8 bytes big-endian, mod 10000.
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(b"salt\0key");
    let want = u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000;
    assert_eq!(u64::from(bucket("key", "salt")), want);
    let differs = (0..20).any(|i| bucket(&format!("k{i}"), "a") != bucket(&format!("k{i}"), "b"));
    assert!(differs, "the salt matters");
}

#[test]
fn rendering_code_content_uses_args_and_profile() {
    let bundle = build(&[("f.flow", SRC)]);
    let vm = Vm::new(&bundle);
    let hello = bundle
        .messages
        .iter()
        .position(|m| m.name == "hello")
        .unwrap() as u32;
    let mut host = TestHost::new(&bundle);
    host.set(&bundle, "total_spent", money("12.5"));
    let r = vm
        .render(hello, &[Value::str("Ana"), Value::str("Hi Ana")], &mut host)
        .unwrap();
    assert_eq!(
        r.content,
        vec![
            ("subject".to_string(), "Hi Ana!".to_string()),
            ("body".to_string(), "Dear Ana, you spent $12.50".to_string())
        ]
    );
}

#[test]
fn a_vm_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Vm<'static>>();
}
