//! Messages, flows, policies, tests and lints: each program and the codes it yields.

use nudge_compiler::{Project, check};

fn codes(src: &str) -> Vec<&'static str> {
    let p = Project::from_sources(vec![("a.flow".into(), src.to_string())]);
    check(&p).diagnostics.iter().map(|d| d.code.id).collect()
}

/// A message `m(name: string)` and a flow that sends it, around `extra`.
fn with_flow(flow_body: &str, extra: &str) -> String {
    format!(
        "message m(name: string) {{\n  channel email\n  subject \"Hi {{name}}\"\n  body \"x\"\n}}\nflow f {{\n{flow_body}\n  send m(\"x\")\n}}\n{extra}"
    )
}

fn message(content: &str) -> String {
    format!(
        "message n(name: string) {{\n{content}\n}}\nflow g {{\n  trigger order_completed\n  send n(\"x\")\n}}\n"
    )
}

#[test]
fn message_content() {
    let cases: &[(&str, &[&str])] = &[
        (
            "  channel email\n  subject \"s\"\n  body \"b\"\n  preheader \"p\"",
            &[],
        ),
        (
            "  channel sms\n  purpose transactional\n  text \"t {name}\"",
            &[],
        ),
        ("  channel push\n  title \"t\"", &[]),
        ("  channel push\n  url \"u\"", &["E0404"]),
        (
            "  channel webhook\n  url \"https://x\"\n  payload \"{name}\"",
            &[],
        ),
        ("  channel webhook\n  payload \"p\"", &["E0404"]),
        ("  subject \"s\"\n  body \"b\"", &["E0404"]),
        (
            "  channel email\n  subject \"s\"\n  subject \"t\"\n  body \"b\"",
            &["E0404"],
        ),
        (
            "  channel email\n  subjet \"s\"\n  body \"b\"",
            &["E0404", "E0404"],
        ),
        (
            "  channel email\n  purpose marketting\n  subject \"s\"\n  body \"b\"",
            &["E0404"],
        ),
        ("  channel email\n  subject 3\n  body \"b\"", &["E0301"]),
        (
            "  channel email\n  subject \"{nam}\"\n  body \"b\"",
            &["E0201"],
        ),
        (
            "  channel email\n  subject \"{profile.first_name}\"\n  body \"b\"",
            &["E0302"],
        ),
        ("  channel pigeon\n  subject \"s\"", &["E0207"]),
    ];
    for (content, want) in cases {
        assert_eq!(codes(&message(content)), want.to_vec(), "{content}");
    }
}

#[test]
fn flow_structure() {
    let cases: &[(String, &[&str])] = &[
        (
            with_flow(
                "  trigger order_completed\n  entry once\n  entry always",
                "",
            ),
            &["E0402"],
        ),
        (
            with_flow("  trigger order_completed\n  holdout 10%\n  holdout 5%", ""),
            &["E0402"],
        ),
        (
            with_flow("  trigger order_completed\n  holdout 120%", ""),
            &["E0308"],
        ),
        (
            with_flow("  trigger order_completed\n  priority 1\n  priority 2", ""),
            &["E0402"],
        ),
        (
            with_flow("  trigger order_completed\n  entry once per 0d", ""),
            &["E0306"],
        ),
        (
            with_flow("  trigger order_completed\n  cap emial 1 per 1d", ""),
            &["E0207"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  cap marketing 1 per 1d then defer",
                "",
            ),
            &[],
        ),
        (
            with_flow(
                "  trigger order_completed\n  quiet hours sms 21:00 to 08:00",
                "",
            ),
            &[],
        ),
        (
            with_flow(
                "  trigger order_completed\n  quiet hours fax 21:00 to 08:00",
                "",
            ),
            &["E0207"],
        ),
        (
            with_flow("  trigger every month on 29 at 09:00", ""),
            &["E0104"],
        ),
        (
            with_flow(
                "  trigger every day at 09:00 for vip",
                "segment vip = profile.orders_count > 3\n",
            ),
            &[],
        ),
        (
            with_flow(
                "  trigger every day at 09:00 for vipp",
                "segment vip = profile.orders_count > 3\n",
            ),
            &["E0201"],
        ),
        (
            with_flow("  trigger 0d after profile.created_at", ""),
            &["E0306"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  goal order_completed within 0d",
                "",
            ),
            &["E0306"],
        ),
        (
            with_flow("  trigger order_completed\n  exit if 1", ""),
            &["E0301"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  suppress if profile.subscribed",
                "",
            ),
            &[],
        ),
        (
            with_flow(
                "  trigger order_completed\n  wait for order_shipped or order_delivered where event.order_id == trigger.order_id within 1d",
                "",
            ),
            &[],
        ),
        (
            with_flow(
                "  trigger order_completed\n  wait for order_shipped or product_added where event.order_id == trigger.order_id within 1d",
                "",
            ),
            &["E0204"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  if true {\n    exit\n    wait 1h\n  }",
                "",
            ),
            &["E0403"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  split {\n    50% a {\n      wait 1h\n    }\n    50% b {\n      wait 2h\n    }\n  }",
                "",
            ),
            &[],
        ),
        // Variants are reported by name: two arms may not share one.
        (
            with_flow(
                "  trigger order_completed\n  split {\n    50% a {\n      wait 1h\n    }\n    50% a {\n      wait 2h\n    }\n  }",
                "",
            ),
            &["E0206"],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(codes(src), want.to_vec(), "{src}");
    }
}

#[test]
fn splits_that_optimise() {
    let goal = "  trigger order_completed\n  goal order_completed within 7d\n";
    let cases: &[(String, &[&str])] = &[
        (
            with_flow(
                &format!("{goal}  split optimise {{\n    a {{}}\n    b {{}}\n  }}"),
                "",
            ),
            &[],
        ),
        (
            with_flow(
                &format!("{goal}  split optimise floor 50% {{\n    a {{}}\n    b {{}}\n  }}"),
                "",
            ),
            &[],
        ),
        // The floor leaves no room for three arms.
        (
            with_flow(
                &format!(
                    "{goal}  split optimise floor 40% {{\n    a {{}}\n    b {{}}\n    c {{}}\n  }}"
                ),
                "",
            ),
            &["E0308"],
        ),
        // The default floor (5%) for 21 arms asks for 105%.
        (
            with_flow(
                &format!(
                    "{goal}  split optimise {{\n{}  }}",
                    (0..21)
                        .map(|i| format!("    a{i} {{}}\n"))
                        .collect::<String>()
                ),
                "",
            ),
            &["E0308"],
        ),
        (
            with_flow(
                &format!("{goal}  split optimise floor 101% {{\n    a {{}}\n  }}"),
                "",
            ),
            &["E0308", "E0308"],
        ),
        // Arms of a split that optimises have no share; a plain split's have.
        (
            with_flow(
                &format!("{goal}  split optimise {{\n    50% a {{}}\n    b {{}}\n  }}"),
                "",
            ),
            &["E0308"],
        ),
        (
            with_flow(
                &format!("{goal}  split {{\n    50% a {{}}\n    b {{}}\n  }}"),
                "",
            ),
            &["E0308"],
        ),
        // Nothing to optimise without a goal, wherever the split stands.
        (
            with_flow(
                "  trigger order_completed\n  split optimise {\n    a {}\n    b {}\n  }",
                "",
            ),
            &["E0412"],
        ),
        (
            with_flow(
                "  trigger order_completed\n  if true {\n    split optimise {\n      a {}\n    }\n  }",
                "",
            ),
            &["E0412"],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(codes(src), want.to_vec(), "{src}");
    }
}

#[test]
fn declarations_and_duplicates() {
    let cases: &[(&str, &[&str])] = &[
        ("profile {\n  email: string?\n}\n", &["E0206"]),
        (
            "profile {\n  a: int\n}\nprofile {\n  a: int\n}\n",
            &["E0206"],
        ),
        ("event x \"Order Completed\" {\n  a: int\n}\n", &["E0206"]),
        (
            "event order_completed \"Other\" {\n  a: int\n}\n",
            &["E0206"],
        ),
        ("type T {\n  a: int\n  a: string\n}\n", &["E0206"]),
        ("type T = \"a\" | \"b\"\ntype T = \"c\"\n", &["E0206"]),
        ("let a = 1\nsegment a = true\nlet b = a\n", &["E0206"]),
        ("type T {\n  a: lst<int>\n}\n", &["E0205"]),
        ("type T {\n  a: list\n}\n", &["E0205"]),
        ("type T {\n  a: int<string>\n}\n", &["E0205"]),
        (
            "type T {\n  p: Product\n  e: order_completed?\n  l: list<list<int>>\n}\n",
            &[],
        ),
        ("let x: money = 5\nlet y = x\n", &["E0301"]),
        ("segment a = b\nsegment b = a\nlet z = a\n", &["E0305"]),
        (
            "policy {\n  timezone \"Mars/Olympus\"\n  cap sms 0 per 1d\n}\n",
            &["E0307", "E0301"],
        ),
        (
            "policy {\n  timezone \"Europe/Berlin\"\n  cap marketing 2 per 0d\n}\n",
            &["E0306"],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(codes(src), want.to_vec(), "{src}");
    }
}

#[test]
fn test_blocks() {
    let base = with_flow("  trigger checkout_started\n  exit on order_completed", "");
    let cases: &[(&str, &[&str])] = &[
        (
            "given profile u1 { email: \"a@b.c\", orders_count: 2 }",
            &[],
        ),
        ("given profile u1 { emial: \"a@b.c\" }", &["E0204"]),
        ("given profile u1 { orders_count: \"two\" }", &["E0301"]),
        (
            "given profile u1 { last_order_at: \"2026-11-23T10:00:00Z\" }",
            &[],
        ),
        (
            "given profile u1 { last_order_at: \"yesterday\" }",
            &["E0301"],
        ),
        (
            "at 10:00 track u1 \"Order Completed\" { order_id: \"o1\", total: 12.50 }",
            &[],
        ),
        (
            "at 10:00 track anonymous a9 order_completed { total: $12.50 }",
            &[],
        ),
        ("at 10:00 track u1 \"Order Complete\" { }", &["E0202"]),
        ("at 10:00 track u1 order_complete { }", &["E0202"]),
        ("at 10:00 track u1 order_completed { totl: 1 }", &["E0204"]),
        (
            "at 10:00 track u1 order_completed { total: \"much\" }",
            &["E0301"],
        ),
        ("at 10:00 identify u1 { first_name: \"Ana\" }", &[]),
        ("at 10:05 alias a9 to u1", &[]),
        ("run 0d", &["E0306"]),
        ("expect send m", &[]),
        ("expect send m where content.subject == \"Hi x\"", &[]),
        ("expect send m where content.subjet == \"Hi x\"", &["E0204"]),
        ("expect send mm", &["E0203"]),
        ("expect no send m", &[]),
        ("expect send m between 10:00 and +2h", &[]),
        // No flow adds anyone to this audience: expecting a member cannot hold.
        ("expect audience \"vip\" has u1", &["E0408"]),
        ("expect no audience \"vip\" has u1", &[]),
        ("expect exit f reason \"order_completed\"", &[]),
        ("expect exit ff", &["E0208"]),
        ("expect exit f reason \"exit\"", &[]),
        ("expect exit f reason \"order_complete\"", &["E0408"]),
        ("expect conversion f", &[]),
        ("expect decision m suppressed", &[]),
        ("expect decision m lost", &["E0408"]),
        ("expect profile u1.orders_count == 1", &[]),
        ("expect profile u1.orders == 1", &["E0204"]),
    ];
    for (stmt, want) in cases {
        let src = format!("{base}test \"t\" {{\n  {stmt}\n}}\n");
        assert_eq!(codes(&src), want.to_vec(), "{stmt}");
    }
    // A message that no flow sends can never be expected.
    let src = format!(
        "{base}message unsent(a: int) {{\n  channel sms\n  text \"{{a}}\"\n}}\ntest \"t\" {{\n  expect send unsent\n}}\n"
    );
    assert_eq!(codes(&src), vec!["E0408"]);
}

#[test]
fn lints() {
    let sms = "message s(a: string) {\n  channel sms\n  text \"{a}\"\n}\n";
    let cases: &[(String, &[&str])] = &[
        // W0002: covered by flow or policy quiet hours, or transactional.
        (format!("{sms}flow f {{\n  trigger order_completed\n  send s(\"x\")\n}}\n"), &["W0002"]),
        (format!("{sms}flow f {{\n  trigger order_completed\n  quiet hours email 21:00 to 08:00\n  send s(\"x\")\n}}\n"), &["W0002"]),
        (format!("{sms}flow f {{\n  trigger order_completed\n  quiet hours 21:00 to 08:00\n  send s(\"x\")\n}}\n"), &[]),
        (format!("{sms}flow f {{\n  trigger order_completed\n  send s(\"x\")\n}}\npolicy {{\n  quiet hours 21:00 to 08:00\n}}\n"), &[]),
        (format!("{sms}flow f {{\n  trigger order_completed\n  send s(\"x\")\n}}\npolicy {{\n  quiet hours sms 21:00 to 08:00\n}}\n"), &[]),
        (
            "message s(a: string) {\n  channel sms\n  purpose transactional\n  text \"{a}\"\n}\nflow f {\n  trigger order_completed\n  send s(\"x\")\n}\n".to_string(),
            &[],
        ),
        // W0003 counts waits on the path to each send, including nested ones.
        (with_flow("  trigger order_completed\n  goal order_completed within 2d\n  wait 1d\n  if true {\n    wait 2d\n    send m(\"y\")\n  }", ""), &["W0003"]),
        (with_flow("  trigger order_completed\n  goal order_completed within 2d\n  wait 1d", ""), &[]),
        // W0004: constant false only when it really is.
        (with_flow("  trigger order_completed\n  exit on order_refunded where false", ""), &["W0004"]),
        (with_flow("  trigger order_completed\n  exit on order_refunded where 1 == 2", ""), &["W0004"]),
        (with_flow("  trigger order_completed\n  exit on order_refunded where event.order_id == trigger.order_id", ""), &[]),
        // W0001 only for abandonment triggers.
        (with_flow("  trigger product_viewed", ""), &["W0001"]),
        (with_flow("  trigger product_viewed\n  exit on order_completed", ""), &[]),
        // A misspelled purchase exit is an error, not also a missing exit.
        (with_flow("  trigger product_viewed\n  exit on order_complted", ""), &["E0202"]),
        // W0005–W0007 skip the stdlib and count uses anywhere.
        (with_flow("  trigger order_completed", "segment s = true\nlet l = 1\n"), &["W0005", "W0007"]),
        (with_flow("  trigger order_completed\n  exit if s and l > 0", "segment s = true\nlet l = 1\n"), &[]),
        // W0008: the clock read, by the segment itself, through a `let` or
        // through another segment, in a way whose changes the runtime
        // cannot compute; not a profile condition, nor `exit if`.
        (with_flow("  trigger entering s", "segment s = format_date(now(), \"%A\") == \"Saturday\"\n"), &["W0008"]),
        (with_flow("  trigger entering s", "segment s = date_of(now() + 1d) == 2026-12-24\n"), &["W0008"]),
        (with_flow("  trigger entering s", "segment s = profile.total_spent > $500\n"), &[]),
        (with_flow("  trigger entering s", "let d = days_between(profile.last_order_at ?? now(), now()) * 2\nsegment s = d > 10\n"), &["W0008"]),
        (with_flow("  trigger entering s", "segment t = format_date(now(), \"%A\") == \"Saturday\"\nsegment s = t and profile.total_spent > $5\n"), &["W0008"]),
        (with_flow("  trigger entering s", "segment s = now() in [2026-12-24T00:00:00Z]\n"), &["W0008"]),
        // A window that is not a constant: its exits cannot be followed.
        (with_flow("  trigger entering s", "segment s = count_events_within(product_viewed, (profile.last_order_at ?? now()) - now() + 30d, v => true) >= 3\n"), &["W0008"]),
        // A window computed at run time, though not from the clock.
        (with_flow("  trigger entering s", "segment s = count_events_within(product_viewed, 30d + 1d, v => true) >= 3\n"), &["W0008"]),
        // A window against the clock in one comparison.
        (with_flow("  trigger entering s", "segment s = count_events_within(product_viewed, 30d, v => true) > days_between(profile.last_order_at ?? now(), now())\n"), &["W0008"]),
        (with_flow("  trigger order_completed\n  exit if s", "segment s = date_of(now()) == 2026-12-24\n"), &[]),
        // Shapes whose next change is computed: no warning.
        (with_flow("  trigger entering s", "let cutoff = now() - 30d\nsegment s = (profile.last_order_at ?? cutoff) < cutoff\n"), &[]),
        (with_flow("  trigger entering s", "segment t = now() > 2026-12-24T00:00:00Z\nsegment s = t and profile.total_spent > $5\n"), &[]),
        (with_flow("  trigger entering s", "segment s = days_between(profile.last_order_at ?? now(), now()) >= 60\n"), &[]),
        (with_flow("  trigger entering s", "segment s = date_of(now()) >= 2026-12-01 and profile.total_spent > $5\n"), &[]),
        (with_flow("  trigger entering s", "segment s = not (now() - (profile.last_order_at ?? now()) < 45d) or profile.total_spent > $5\n"), &[]),
        // Events within constant windows: the runtime follows their exits.
        (with_flow("  trigger entering s", "segment s = count_events_within(product_viewed, 30d, v => true) >= 3\n"), &[]),
        (with_flow("  trigger entering s", "let w = 7d\nsegment t = not any_event_within(order_completed, w, o => true)\nsegment s = t and count_events_within(product_viewed, 30d, v => true) >= 3\n"), &[]),
    ];
    for (src, want) in cases {
        assert_eq!(codes(src), want.to_vec(), "{src}");
    }
}
