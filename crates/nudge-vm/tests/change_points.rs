//! When a segment can change with time alone: between the clock and the
//! next change point the bundle computes, the segment's answer stays the
//! same; at that point it changes; with no point it never changes.

mod common;

use common::TestHost;
use nudge_compiler::bytecode::{Bundle, Value};
use nudge_test_support::build;
use nudge_vm::Vm;
use proptest::prelude::*;

const DAY: i64 = 86_400;

/// Segments with a clock condition of every shape the compiler follows,
/// over `profile.renews_at` (a time trait), each named `s`.
fn shapes() -> Vec<String> {
    let mut out = Vec::new();
    for op in ["<", "<=", ">", ">=", "==", "!="] {
        for n in [-2, -1, 0, 1, 5] {
            out.push(format!(
                "days_between(profile.renews_at ?? now(), now()) {op} {n}"
            ));
            out.push(format!(
                "days_between(now(), profile.renews_at ?? now()) {op} {n}"
            ));
            out.push(format!(
                "{n} {op} days_between(profile.renews_at ?? now(), now() + 3h)"
            ));
        }
        out.push(format!("now() {op} (profile.renews_at ?? now())"));
        out.push(format!("(profile.renews_at ?? now()) - 2d {op} now() + 1h"));
        out.push(format!("now() - (profile.renews_at ?? now()) {op} 3d"));
        out.push(format!("(profile.renews_at ?? now()) - now() {op} 36h"));
        out.push(format!("now() {op} 2026-02-01T00:00:00Z"));
        out.push(format!("date_of(now()) {op} 2026-01-10"));
        out.push(format!("2026-01-12 {op} date_of(now())"));
    }
    // A window, and the same through `let`s, `not` and another segment.
    out.push(
        "days_between(profile.renews_at ?? now(), now()) >= 3 and days_between(profile.renews_at ?? now(), now()) < 9"
            .into(),
    );
    out.push("not t or now() > 2026-03-01T00:00:00Z".into());
    out
}

struct Shape {
    condition: String,
    bundle: Bundle,
    segment: u32,
}

/// Every shape, compiled once for all cases.
fn compiled() -> &'static [Shape] {
    static SHAPES: std::sync::OnceLock<Vec<Shape>> = std::sync::OnceLock::new();
    SHAPES.get_or_init(|| shapes().iter().map(|c| compile(c)).collect())
}

fn compile(condition: &str) -> Shape {
    let src = format!(
        "profile {{\n  renews_at: time?\n}}\nlet lag = 12h\nsegment t = now() - lag > (profile.renews_at ?? now())\nsegment s = {condition}\nmessage m() {{\n  channel email\n  subject \"x\"\n  body \"x\"\n}}\nflow f {{\n  trigger entering s\n  send m()\n}}\n"
    );
    let bundle = build(&[("shape.flow", &src)]);
    let segment = bundle
        .segments
        .iter()
        .position(|s| s.name == "s")
        .expect("segment s") as u32;
    assert!(
        bundle.change_points.iter().any(|c| c.segment == segment),
        "no change points for {condition}"
    );
    Shape {
        condition: condition.to_string(),
        bundle,
        segment,
    }
}

fn member(vm: &Vm<'_>, shape: &Shape, host: &mut TestHost, at: i64) -> bool {
    host.now = at;
    vm.segment(shape.segment, host)
        .expect("the segment evaluates")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_answer_holds_until_the_next_point_and_changes_there(
        anchor in -20 * DAY..20 * DAY,
        set in any::<bool>(),
        inside in 0.0f64..1.0,
    ) {
        let epoch = 1_767_225_600; // 2026-01-01T00:00:00Z
        for shape in compiled() {
            let condition = &shape.condition;
            let vm = Vm::new(&shape.bundle);
            let mut host = TestHost::new(&shape.bundle);
            // Days turn at midnight in the recipient's zone.
            host.tz = chrono_tz::Europe::Berlin;
            if set {
                host.set(&shape.bundle, "renews_at", Value::Time(epoch + anchor));
            }
            let mut now = epoch;
            // Follow the points for a while, as the engine does.
            for _ in 0..6 {
                host.now = now;
                let was = member(&vm, shape, &mut host, now);
                host.now = now;
                let next = vm.next_change(shape.segment, now, &mut host);
                let Some(next) = next else {
                    for later in [now + 1, now + DAY, now + 400 * DAY] {
                        prop_assert_eq!(member(&vm, shape, &mut host, later), was, "{} at {}: no point, yet it changed by {}", condition, now, later);
                    }
                    break;
                };
                prop_assert!(next > now);
                let between = now + 1 + ((next - now - 1) as f64 * inside) as i64;
                for t in [now + 1, between, next - 1] {
                    if t < next {
                        prop_assert_eq!(member(&vm, shape, &mut host, t), was, "{} at {}: changed at {} before the point {}", condition, now, t, next);
                    }
                }
                // Every point of these shapes is a real change once the
                // trait is set; unset, the day counts are constant.
                if set && !condition.contains(" and ") && !condition.contains("not t") {
                    prop_assert_ne!(member(&vm, shape, &mut host, next), was, "{} at {}: nothing changed at the point {}", condition, now, next);
                }
                now = next;
            }
        }
    }
}
