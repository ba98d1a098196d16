//! Campaigns: `trigger once on DATE at TIME [local] [for SEGMENT]` sends one
//! time to the customers in the segment then, through the send pipeline
//! (consent, quiet hours, caps) like any flow.

mod common;

use common::{arena, bundle, engine, feed, replay, sends};

const BASE: &str = r#"
policy {
  timezone "America/New_York"
  quiet hours 21:00 to 08:00
}
segment vip = profile.total_spent >= $100
message black_friday() {
  channel email
  subject "Black Friday"
  body "x"
}
"#;

fn campaign(trigger: &str) -> nudge_bytecode::Bundle {
    bundle(&format!(
        "{BASE}\nflow bf {{\n  trigger {trigger}\n  send black_friday()\n}}\n"
    ))
}

/// An identify call for `id` at `at`: zone (empty for none) and spend.
fn identify(id: &str, at: &str, zone: &str, spent: u32) -> String {
    let zone = if zone.is_empty() {
        String::new()
    } else {
        format!(r#""timezone":"{zone}","#)
    };
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com",{zone}"total_spent":{spent},"consent":{{"email":true}}}}}}"#
    )
}

fn customers() -> Vec<String> {
    vec![
        identify("berlin", "2026-11-01T09:00:00Z", "Europe/Berlin", 150),
        identify("la", "2026-11-01T09:00:00Z", "America/Los_Angeles", 250),
        identify("small", "2026-11-01T09:00:00Z", "", 20),
        identify("nozone", "2026-11-01T09:00:00Z", "", 500),
    ]
}

#[test]
fn a_local_campaign_reaches_each_member_at_their_own_ten_oclock() {
    let b = campaign("once on 2026-11-27 at 10:00 local for vip");
    let (sink, _) = replay(&b, &customers().join("\n"));
    assert_eq!(
        sends(&sink),
        [
            "2026-11-27T09:00:00Z berlin black_friday",
            "2026-11-27T15:00:00Z nozone black_friday",
            "2026-11-27T18:00:00Z la black_friday",
        ]
    );
}

#[test]
fn without_local_everyone_gets_it_at_one_instant_in_the_policy_zone() {
    let b = campaign("once on 2026-11-27 at 10:00");
    let (sink, _) = replay(&b, &customers().join("\n"));
    // 10:00 in New York is 07:00 in Los Angeles, inside the quiet hours
    // there: that one is held to 08:00, the recipient's morning.
    assert_eq!(
        sends(&sink),
        [
            "2026-11-27T15:00:00Z berlin black_friday",
            "2026-11-27T15:00:00Z small black_friday",
            "2026-11-27T15:00:00Z nozone black_friday",
            "2026-11-27T16:00:00Z la black_friday",
        ]
    );
}

#[test]
fn membership_is_read_when_it_goes_out_and_late_comers_get_nothing() {
    let b = campaign("once on 2026-11-27 at 10:00 for vip");
    let lines = [
        identify("grew", "2026-11-01T09:00:00Z", "", 20),
        identify("shrank", "2026-11-01T09:00:00Z", "", 200),
        // Spent more before the campaign: in; less: out.
        identify("grew", "2026-11-20T09:00:00Z", "", 120),
        identify("shrank", "2026-11-20T09:00:00Z", "", 10),
        // First seen, or joined the segment, after it went out.
        identify("late", "2026-11-28T09:00:00Z", "", 900),
    ];
    let (sink, _) = replay(&b, &lines.join("\n"));
    assert_eq!(sends(&sink), ["2026-11-27T15:00:00Z grew black_friday"]);
}

#[test]
fn quiet_hours_hold_a_campaign_like_any_send() {
    // 22:00 in New York is inside the quiet hours: it goes at 08:00.
    let b = campaign("once on 2026-11-27 at 22:00 for vip");
    let (sink, _) = replay(&b, &customers()[3]);
    assert_eq!(sends(&sink), ["2026-11-28T13:00:00Z nozone black_friday"]);
}

#[test]
fn a_campaign_deployed_later_reaches_the_customers_already_known() {
    let before = bundle(&format!(
        "{BASE}\nflow other {{\n  trigger order_completed\n  send black_friday()\n}}\n"
    ));
    let after = campaign("once on 2026-11-27 at 10:00 local for vip");
    let mut e = engine(&before);
    feed(&mut e, &customers());
    e.deploy(&after, arena()).unwrap();
    e.drain();
    let sent: Vec<String> = e
        .sink()
        .outbox
        .iter()
        .map(|m| format!("{} {}", m.at, m.customer))
        .collect();
    assert_eq!(
        sent,
        [
            "2026-11-27T09:00:00Z berlin",
            "2026-11-27T15:00:00Z nozone",
            "2026-11-27T18:00:00Z la",
        ]
    );
}

#[test]
fn a_campaign_whose_day_has_passed_sends_nothing() {
    let b = campaign("once on 2026-10-01 at 10:00 for vip");
    let (sink, _) = replay(&b, &customers().join("\n"));
    assert_eq!(sends(&sink), Vec::<String>::new());
}
