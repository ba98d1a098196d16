//! Triggers that are not events: schedules, profile dates and segment entry.
//!
//! All of them start instances on the newest release. Their timers name the
//! flow by key, so a deploy that renumbers flows leaves them valid; a timer
//! for a flow the newest release no longer has (or no longer triggers that
//! way) does nothing when it fires.

use chrono::{Datelike, Duration, NaiveDate};
use nudge_bytecode::{Cadence, Trigger, Value};

use super::Machine;
use crate::millis::{ms, secs};
use crate::timers::Wake;
use crate::zone::{instant_of, local_date};

impl Machine<'_> {
    /// Arms every schedule trigger for customer `c` at its next occurrence.
    pub(super) fn arm_schedules(&mut self, c: u32) {
        let flows = self.bundle().flows.len() as u32;
        if !(0..flows).any(|f| matches!(self.trigger_of(f), Trigger::Schedule { .. })) {
            return;
        }
        let zone = self.zone(c, None);
        if let Some(cust) = self.customers.get_mut(&c) {
            cust.rare_mut().schedule_zone = Some(zone);
        }
        for f in 0..flows {
            if let Trigger::Schedule { .. } = self.trigger_of(f) {
                self.arm_schedule(c, f);
            }
        }
    }

    /// Arms the newest release's schedule flow `f` for customer `c`,
    /// cancelling the timer armed before; returns when it is due.
    pub(super) fn arm_schedule(&mut self, c: u32, f: u32) -> Option<i64> {
        let Trigger::Schedule {
            cadence, at, local, ..
        } = *self.trigger_of(f)
        else {
            return None;
        };
        let tz = if local {
            self.zone(c, None)
        } else {
            self.policy_tz
        };
        let due = next_occurrence(secs(self.now), tz, cadence, at).map(ms)?;
        let priority = self.flow_of(self.current(), f).priority;
        let key = self.key_of(self.current(), f);
        let mem = super::known_mut(&mut self.customers, c).flow(key);
        mem.generation += 1;
        let generation = mem.generation;
        self.timers.set(
            due,
            priority,
            Wake::Schedule {
                customer: c,
                flow: key,
                generation,
            },
        );
        Some(due)
    }

    /// A schedule timer went off; `key` is the flow's key. `limit` is where
    /// the clock is going in this advance: without catch-up, an occurrence
    /// with a later one also due by then is passed over.
    pub(super) fn fire_schedule(&mut self, c: u32, key: u32, generation: u32, limit: i64) {
        let Some(f) = self.newest.get(key as usize).copied().flatten() else {
            return; // the flow was removed by a deploy
        };
        let Some(cust) = self.customers.get_mut(&c) else {
            return; // merged away; the kept customer has its own timer
        };
        if cust.flow(key).generation != generation {
            return;
        }
        let Trigger::Schedule { segment, .. } = *self.trigger_of(f) else {
            return;
        };
        let member = match segment {
            None => true,
            Some(s) => self.in_segment(c, s),
        };
        // Arm the next occurrence first: the instance may run for longer.
        let next = self.arm_schedule(c, f);
        if !self.config.catch_up_schedules && next.is_some_and(|due| due <= limit) {
            // A later occurrence is also due in this advance: only the latest fires.
            return;
        }
        if member {
            self.try_enter(c, f, Value::None, 0, "schedule".into(), self.now);
        }
    }

    /// A date trigger's timer went off; `key` is the flow's key.
    pub(super) fn fire_date(&mut self, c: u32, key: u32, generation: u32) {
        let Some(f) = self.newest.get(key as usize).copied().flatten() else {
            return; // the flow was removed by a deploy
        };
        if !matches!(self.trigger_of(f), Trigger::DateProperty { .. }) {
            return; // a deploy gave the flow another trigger
        }
        let Some(cust) = self.customers.get_mut(&c) else {
            return;
        };
        if cust.flow(key).generation != generation {
            return;
        }
        self.try_enter(c, f, Value::None, 0, "date".into(), self.now);
    }

    /// Looks at a customer whose profile changed: segment entries and date triggers.
    pub(super) fn profile_changed(&mut self, c: u32) {
        let flows = self.bundle().flows.len() as u32;
        let has_schedules =
            (0..flows).any(|f| matches!(self.trigger_of(f), Trigger::Schedule { .. }));
        if has_schedules
            && super::known(&self.customers, c).rare().schedule_zone != Some(self.zone(c, None))
        {
            self.arm_schedules(c);
        }
        for f in 0..flows {
            match *self.trigger_of(f) {
                Trigger::Entering { segment } => {
                    let inside = self.in_segment(c, segment);
                    let key = self.key_of(self.current(), f);
                    let mem = super::known_mut(&mut self.customers, c).flow(key);
                    let was = std::mem::replace(&mut mem.in_segment, inside);
                    if inside && !was {
                        self.try_enter(c, f, Value::None, 0, "segment".into(), self.now);
                    }
                }
                Trigger::DateProperty { .. } => self.arm_date(c, f, false),
                _ => {}
            }
        }
    }

    /// Whether customer `c` is in the newest release's segment `segment` now.
    pub(super) fn in_segment(&mut self, c: u32, segment: u32) -> bool {
        let r = self.current();
        let tz = self.zone(c, None);
        let cust = super::known_mut(&mut self.customers, c);
        let mut host = super::customer::Ctx {
            customer: cust,
            now: self.now,
            tz,
            writes: Vec::new(),
        };
        super::rel(&self.releases, r)
            .vm
            .segment(segment, &mut host)
            .unwrap_or(false)
    }

    /// Arms the newest release's date flow `f` for customer `c` when the
    /// profile date changed since it was last armed, or always with `force`
    /// (a deploy that added the flow or changed its trigger).
    pub(super) fn arm_date(&mut self, c: u32, f: u32, force: bool) {
        let Trigger::DateProperty { offset, field } = *self.trigger_of(f) else {
            return;
        };
        let priority = self.flow_of(self.current(), f).priority;
        let key = self.key_of(self.current(), f);
        let cust = super::known_mut(&mut self.customers, c);
        let value = match cust.profile.get(field as usize) {
            Some(Value::Time(t)) => Some(*t),
            _ => None,
        };
        let mem = cust.flow(key);
        if mem.armed() == value && !force {
            return;
        }
        // Re-arm: the old timer is cancelled by the generation bump.
        mem.set_armed(value);
        mem.generation += 1;
        let generation = mem.generation;
        if let Some(t) = value {
            let due = ms(t.saturating_add(offset));
            // A date already behind us when it is learned does not fire:
            // replaying an old trait must not send a burst of late messages.
            if due > self.now {
                self.timers.set(
                    due,
                    priority,
                    Wake::DateTrigger {
                        customer: c,
                        flow: key,
                        generation,
                    },
                );
            }
        }
    }
}

/// The next instant strictly after `now` at which a schedule fires in `tz`.
pub(crate) fn next_occurrence(
    now: i64,
    tz: chrono_tz::Tz,
    cadence: Cadence,
    at: u16,
) -> Option<i64> {
    let mut day: NaiveDate = local_date(now, tz);
    // A monthly cadence recurs within 31 days; look a little further to be safe.
    for _ in 0..40 {
        let matches = match cadence {
            Cadence::Day => true,
            Cadence::Weekday(d) => day.weekday().num_days_from_monday() == u32::from(d),
            Cadence::Month(d) => day.day() == u32::from(d),
        };
        if matches {
            let local = day.and_hms_opt(u32::from(at / 60), u32::from(at % 60), 0)?;
            let due = instant_of(local, tz);
            if due > now {
                return Some(due);
            }
        }
        day = day.checked_add_signed(Duration::days(1))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_time;
    use chrono_tz::Tz;

    #[test]
    fn weekly_schedules_land_on_the_local_weekday() {
        // 2026-11-23 is a Monday; 09:00 in Berlin has passed at 10:00 UTC.
        let now = parse_time("2026-11-23T10:00:00Z").unwrap();
        let due = next_occurrence(now, Tz::Europe__Berlin, Cadence::Weekday(0), 9 * 60).unwrap();
        assert_eq!(due, parse_time("2026-11-30T08:00:00Z").unwrap());
        // In Los Angeles it is still 02:00 on Monday.
        let due = next_occurrence(now, Tz::America__Los_Angeles, Cadence::Weekday(0), 540).unwrap();
        assert_eq!(due, parse_time("2026-11-23T17:00:00Z").unwrap());
    }

    #[test]
    fn monthly_and_daily_schedules() {
        let now = parse_time("2026-11-23T10:00:00Z").unwrap();
        let due = next_occurrence(now, Tz::UTC, Cadence::Month(1), 0).unwrap();
        assert_eq!(due, parse_time("2026-12-01T00:00:00Z").unwrap());
        let due = next_occurrence(now, Tz::UTC, Cadence::Day, 10 * 60).unwrap();
        assert_eq!(due, parse_time("2026-11-24T10:00:00Z").unwrap());
    }
}
