//! Sends whose delivery failed in a way worth retrying (a provider down, a
//! timeout before the request was sent, a 429) are tried again while
//! serving, with exponential backoff, and given up after a fixed number of
//! rounds with their last reason. Each round is one call of the plugin,
//! which makes its own quick retries inside it; these rounds cover outages
//! of minutes to hours without holding the engine thread.
//!
//! Nothing here is durable: a send waiting for its next round is still
//! `pending` in the store, so a restart tries it again at once.

use std::time::{Duration, Instant};

use nudge_store::Intent;

/// Rounds of delivery a send gets while serving, the first included.
pub const ROUNDS: u32 = 8;

/// The wait before the second round unless `[serve] retry_backoff` says
/// otherwise; each later wait doubles, up to [`LONGEST`].
pub const FIRST: Duration = Duration::from_secs(30);

/// The longest wait between two rounds.
pub const LONGEST: Duration = Duration::from_secs(3600);

/// Bounds the queue, so an outage that fails every send cannot grow memory
/// without end: past it, failed sends wait in the store for a restart.
pub const MAX_WAITING: usize = 100_000;

/// The wait after failed round `round` (0 for the first delivery), when
/// the first wait is `first`.
pub fn backoff(first: Duration, round: u32) -> Duration {
    first
        .checked_mul(1u32.checked_shl(round).unwrap_or(u32::MAX))
        .map_or(LONGEST, |d| d.min(LONGEST))
}

/// What to do with a send whose round `round` failed and may be retried.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this instant.
    RetryAt(Instant),
    /// Too many rounds: record it as failed for good.
    GiveUp,
    /// The queue is full: leave it pending in the store.
    Later,
}

/// Sends waiting for their next round.
pub struct Retries {
    first: Duration,
    waiting: Vec<(Instant, u32, Intent)>,
}

impl Retries {
    /// An empty queue whose first wait is `first`.
    pub fn new(first: Duration) -> Self {
        Retries {
            first,
            waiting: Vec::new(),
        }
    }

    /// Schedules the next round of a send whose round `round` failed at `now`.
    pub fn failed(&mut self, intent: Intent, round: u32, now: Instant) -> Next {
        if round + 1 >= ROUNDS {
            return Next::GiveUp;
        }
        if self.waiting.len() >= MAX_WAITING {
            return Next::Later;
        }
        let at = now + backoff(self.first, round);
        self.waiting.push((at, round + 1, intent));
        Next::RetryAt(at)
    }

    /// Takes the sends due at `now`, with the round each is in, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<(Intent, u32)> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting.get(i).is_some_and(|w| w.0 <= now) {
                let (_, round, intent) = self.waiting.swap_remove(i);
                due.push((intent, round));
            } else {
                i += 1;
            }
        }
        due.sort_by(|a, b| a.0.message.at.cmp(&b.0.message.at));
        due
    }

    /// How many sends wait for a round.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no send waits for another round.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The idempotency key of each send waiting for a round.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.waiting
            .iter()
            .map(|(_, _, i)| i.message.idempotency_key.as_str())
    }

    /// The channel of each send waiting for a round.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.waiting
            .iter()
            .map(|(_, _, i)| i.message.channel.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(key: &str) -> Intent {
        Intent {
            message: nudge_channels::Outgoing {
                at: "2026-01-05T10:00:00Z".into(),
                flow: "f".into(),
                flow_version: "v".into(),
                message: "m".into(),
                channel: "email".into(),
                customer: "c".into(),
                to: "c@example.com".into(),
                idempotency_key: key.into(),
                content: Default::default(),
                purpose: Default::default(),
            },
        }
    }

    #[test]
    fn waits_double_up_to_an_hour() {
        let waits: Vec<u64> = (0..9).map(|r| backoff(FIRST, r).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(FIRST, 40), LONGEST);
    }

    #[test]
    fn a_send_comes_back_when_due_and_is_given_up_after_the_last_round() {
        let t0 = Instant::now();
        let mut r = Retries::new(FIRST);
        assert_eq!(r.failed(intent("k"), 0, t0), Next::RetryAt(t0 + FIRST));
        assert!(r.due(t0 + FIRST - Duration::from_millis(1)).is_empty());
        let due = r.due(t0 + FIRST);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].0.message.idempotency_key.as_str(), due[0].1),
            ("k", 1)
        );
        assert_eq!(r.len(), 0);
        assert_eq!(r.failed(intent("k"), ROUNDS - 1, t0), Next::GiveUp);
        assert_eq!(r.len(), 0);
    }
}
