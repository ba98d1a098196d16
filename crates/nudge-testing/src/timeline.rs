//! A customer's timeline: the test's calls and the engine's records, in
//! words a marketer reads.

use nudge_runtime::record::{Record, What};

use crate::scenario::Step;

/// The id every earlier id of a customer ended up as, following aliases and joins.
#[derive(Default)]
pub(crate) struct Names {
    to: Vec<(String, String)>,
}

impl Names {
    /// Names from the test's aliases and the engine's join records.
    pub(crate) fn new(aliases: &[(String, String)], records: &[Record]) -> Names {
        let mut to = aliases.to_vec();
        for r in records {
            if let What::Joined { identities } = &r.what {
                for i in identities {
                    to.push((i.clone(), r.customer.clone()));
                }
            }
        }
        Names { to }
    }

    /// The final id of `id`.
    pub(crate) fn of(&self, id: &str) -> String {
        let mut cur = id.to_string();
        // Bounded, so a cycle of aliases cannot loop forever.
        for _ in 0..=self.to.len() {
            match self.to.iter().find(|(from, to)| *from == cur && *to != cur) {
                Some((_, to)) => cur = to.clone(),
                None => break,
            }
        }
        cur
    }
}

/// What a record says, in a few words.
pub(crate) fn describe(what: &What) -> String {
    match what {
        What::Joined { identities } => format!("joined with {}", identities.join(", ")),
        What::Entered {
            flow,
            trigger,
            holdout,
            ..
        } => format!(
            "entered {flow} (on {trigger}){}",
            if *holdout {
                ", in the holdout group"
            } else {
                ""
            }
        ),
        What::NotEntered { flow, reason, .. } => format!("did not enter {flow}: {reason}"),
        What::Variant { flow, variant, .. } => format!("{flow} chose variant {variant}"),
        What::Send {
            message,
            channel,
            outcome,
            reason,
            retry_at,
            ..
        } => {
            let mut s = format!("{message} ({channel}): {}", outcome.name());
            if let Some(r) = reason {
                s.push_str(&format!(", {r}"));
            }
            if let Some(t) = retry_at {
                s.push_str(&format!(", retry at {t}"));
            }
            s
        }
        What::Audience {
            audience, action, ..
        } => match action.as_str() {
            "add" => format!("added to audience {audience:?}"),
            _ => format!("removed from audience {audience:?}"),
        },
        What::Profile { field, value, .. } => format!("profile.{field} set to {value}"),
        What::Recommended {
            products, sources, ..
        } => {
            let picks: Vec<String> = products
                .iter()
                .zip(sources)
                .map(|(p, s)| format!("{p} ({s})"))
                .collect();
            format!("recommended [{}]", picks.join(", "))
        }
        What::Exited { flow, reason, .. } => format!("exited {flow}: {reason}"),
        What::ExitedLate {
            flow,
            event,
            late_by,
            messages,
            ..
        } => format!(
            "{event} arrived {late_by} late for {flow}: already sent {}",
            messages.join(", ")
        ),
        What::Completed { flow, .. } => format!("completed {flow}"),
        What::Converted {
            flow,
            event,
            revenue,
            ..
        } => match revenue {
            Some(r) => format!("converted in {flow} ({event}, {r})"),
            None => format!("converted in {flow} ({event})"),
        },
        What::Feedback {
            feedback, channel, ..
        } => format!("{feedback} ({channel})"),
        What::Refunded {
            order_id, amount, ..
        } => format!("refunded {order_id} ({amount})"),
        What::Error { flow, message, .. } => format!("error in {flow}: {message}"),
        What::Dropped { path, reason, .. } => format!("dropped {path}: {reason}"),
    }
}

/// One customer's calls and records, in time order (calls first at a tie).
pub(crate) fn of(customer: &str, names: &Names, calls: &[Step], records: &[Record]) -> Vec<String> {
    let mut lines: Vec<(String, u8, String)> = Vec::new();
    for s in calls {
        if s.customers.iter().any(|c| names.of(c) == customer) {
            lines.push((
                nudge_bytecode::format_instant(s.at),
                0,
                format!("> {}", s.text),
            ));
        }
    }
    for r in records {
        if names.of(&r.customer) == customer {
            lines.push((r.at.clone(), 1, describe(&r.what)));
        }
    }
    // Stable: records keep the engine's order within a second.
    lines.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    lines
        .into_iter()
        .map(|(at, _, text)| format!("{at}  {text}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_joins_lead_to_the_final_id() {
        let records = vec![Record {
            at: "2026-01-05T10:00:00Z".into(),
            customer: "u2".into(),
            what: What::Joined {
                identities: vec!["u1".into()],
            },
        }];
        let names = Names::new(&[("a9".into(), "u1".into())], &records);
        assert_eq!(names.of("a9"), "u2");
        assert_eq!(names.of("u1"), "u2");
        assert_eq!(names.of("u3"), "u3");
        let loops = Names::new(&[("a".into(), "b".into()), ("b".into(), "a".into())], &[]);
        assert!(["a", "b"].contains(&loops.of("a").as_str()));
    }
}
