//! Triggers that are not events: schedules, profile dates and segment entry.
//!
//! All of them start instances on the newest release. Their timers name the
//! flow by key, so a deploy that renumbers flows leaves them valid; a timer
//! for a flow the newest release no longer has (or no longer triggers that
//! way) does nothing when it fires.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use nudge_bytecode::{Cadence, Trigger, Value};

use super::Machine;
use crate::millis::{ms, secs};
use crate::record::{EntryReason, What};
use crate::timers::{ONCE, Wake, YEARLY};
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
        mem.generation = mem.generation.wrapping_add(1) & !ONCE;
        let generation = mem.generation
            | if matches!(cadence, Cadence::Once(_)) {
                ONCE
            } else {
                0
            };
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
        if cust.flow(key).generation != generation & !ONCE {
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
        let Trigger::DateProperty { yearly, .. } = *self.trigger_of(f) else {
            return; // a deploy gave the flow another trigger
        };
        let Some(cust) = self.customers.get_mut(&c) else {
            return;
        };
        if cust.flow(key).generation != generation & !YEARLY {
            return;
        }
        if yearly {
            // Arm next year's first: the instance may run for longer.
            self.arm_date_timer(c, f, false);
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
                Trigger::Entering { segment } => self.look_at_segment(c, f, segment),
                Trigger::DateProperty { .. } => self.arm_date(c, f, false),
                _ => {}
            }
        }
    }

    /// Looks at whether customer `c` is in the segment of the newest
    /// release's `trigger entering` flow `f`: entering starts the flow.
    /// Then arms the timer for when the membership can next change with
    /// time alone.
    fn look_at_segment(&mut self, c: u32, f: u32, segment: u32) {
        let inside = self.in_segment(c, segment);
        let key = self.key_of(self.current(), f);
        let mem = super::known_mut(&mut self.customers, c).flow(key);
        let was = std::mem::replace(&mut mem.in_segment, inside);
        if inside && !was {
            self.try_enter(c, f, Value::None, 0, "segment".into(), self.now);
        }
        self.arm_segment(c, f, false);
    }

    /// Sets the timer of `trigger entering` flow `f` for customer `c` at the
    /// next instant its segment can change with time alone (the bundle's
    /// change points), cancelling the one before (by the generation bump).
    /// Unless `force`, a timer already set for that instant is kept.
    pub(super) fn arm_segment(&mut self, c: u32, f: u32, force: bool) {
        let Trigger::Entering { segment } = *self.trigger_of(f) else {
            return;
        };
        let r = self.current();
        let windows = &super::rel(&self.releases, r).windows;
        if self.bundle().change_points.is_empty() && windows.is_empty() {
            return;
        }
        let priority = self.flow_of(r, f).priority;
        let key = self.key_of(r, f);
        let tz = self.zone(c, None);
        let now = secs(self.now);
        // The first instant an event leaves a window the segments read,
        // as the VM counts windows: an event at `t` ms is within `w`
        // seconds of the clock while `now - w <= t / 1000` (seconds).
        let exit = {
            let cust = super::known(&self.customers, c);
            windows
                .iter()
                .filter_map(|&(kind, w)| {
                    cust.events
                        .iter()
                        .filter(|e| e.schema == kind)
                        .map(|e| e.at.div_euclid(1000).saturating_add(w).saturating_add(1))
                        .find(|&exit| exit > now)
                })
                .min()
        };
        let cust = super::known_mut(&mut self.customers, c);
        let mut host = super::customer::Ctx {
            customer: cust,
            now: self.now,
            tz,
            writes: Vec::new(),
        };
        let next = super::rel(&self.releases, r)
            .vm
            .next_change(segment, now, &mut host);
        let next = match (next, exit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mem = super::known_mut(&mut self.customers, c).flow(key);
        if mem.armed() == next && !force {
            return;
        }
        mem.set_armed(next);
        mem.generation = mem.generation.wrapping_add(1);
        let generation = mem.generation;
        if let Some(due) = next {
            self.timers.set(
                ms(due),
                priority,
                Wake::Segment {
                    customer: c,
                    flow: key,
                    generation,
                },
            );
        }
    }

    /// Sets again, for customer `c` who just absorbed another, the timers of
    /// the newest release's date and `trigger entering` flows whose memories
    /// were joined (flow keys `joined`): joining cancelled both sides'.
    pub(super) fn rearm_joined(&mut self, c: u32, joined: &[u32]) {
        if joined.is_empty() {
            return;
        }
        let r = self.current();
        for f in 0..self.bundle().flows.len() as u32 {
            if !joined.contains(&self.key_of(r, f)) {
                continue;
            }
            match *self.trigger_of(f) {
                Trigger::DateProperty { .. } => {
                    // Only if it was armed: a date learned by the join is
                    // news, which the profile change that follows handles.
                    let key = self.key_of(r, f);
                    if super::known_mut(&mut self.customers, c)
                        .flow(key)
                        .armed()
                        .is_some()
                    {
                        self.arm_date_timer(c, f, false);
                    }
                }
                Trigger::Entering { .. } => self.arm_segment(c, f, true),
                _ => {}
            }
        }
    }

    /// A segment's timer went off; `key` is the flow's key.
    pub(super) fn fire_segment(&mut self, c: u32, key: u32, generation: u32) {
        let Some(f) = self.newest.get(key as usize).copied().flatten() else {
            return; // the flow was removed by a deploy
        };
        let Trigger::Entering { segment } = *self.trigger_of(f) else {
            return; // a deploy gave the flow another trigger
        };
        let Some(cust) = self.customers.get_mut(&c) else {
            return; // merged away; the kept customer has its own timer
        };
        if cust.flow(key).generation != generation {
            return;
        }
        self.look_at_segment(c, f, segment);
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
    ///
    /// A date whose time has already passed when it is learned does not
    /// fire (replaying an old trait must not send a burst of late messages),
    /// unless it passed within the flow's `grace`; otherwise the skip is
    /// recorded, so `nudge explain` can say why nothing started. A yearly
    /// date's past anniversaries are not news: only one within the grace
    /// fires, and the next one is armed. A deploy (`force`) arms without
    /// firing or recording.
    pub(super) fn arm_date(&mut self, c: u32, f: u32, force: bool) {
        let Trigger::DateProperty {
            field,
            yearly,
            grace,
            ..
        } = *self.trigger_of(f)
        else {
            return;
        };
        let key = self.key_of(self.current(), f);
        let cust = super::known_mut(&mut self.customers, c);
        let value = cust.profile.get(field as usize).as_ref().and_then(Base::of);
        let mem = cust.flow(key);
        if mem.armed() == value.map(Base::key) && !force {
            return;
        }
        mem.set_armed(value.map(Base::key));
        let Some(last) = self.arm_date_timer(c, f, true) else {
            return;
        };
        if force {
            return;
        }
        let late = self.now.saturating_sub(ms(last));
        if grace.is_some_and(|g| late <= ms(g)) {
            self.try_enter(c, f, Value::None, 0, "date".into(), self.now);
        } else if !yearly {
            let flow = self.flow_of(self.current(), f).name.clone();
            self.stats.flow_mut(&flow).not_entered += 1;
            self.record(
                c,
                What::NotEntered {
                    flow,
                    reason: EntryReason::DatePassed,
                    late_by: Some(nudge_bytecode::format_duration_ms(late)),
                    due: Some(nudge_bytecode::format_instant_ms(ms(last))),
                },
            );
        }
    }

    /// Sets the timer of date flow `f` for customer `c` at the trigger's
    /// next time after now, cancelling the one before (by the generation
    /// bump). Returns, when `past` asks, the trigger's latest time at or
    /// before now, in seconds: a date learned late.
    fn arm_date_timer(&mut self, c: u32, f: u32, past: bool) -> Option<i64> {
        let Trigger::DateProperty {
            offset,
            field,
            yearly,
            at,
            ..
        } = *self.trigger_of(f)
        else {
            return None;
        };
        let rule = DateRule { offset, yearly, at };
        let priority = self.flow_of(self.current(), f).priority;
        let key = self.key_of(self.current(), f);
        let now = secs(self.now);
        let base = super::known(&self.customers, c)
            .profile
            .get(field as usize)
            .as_ref()
            .and_then(Base::of);
        // Reading the zone reads the profile's `timezone` and parses it: on
        // every order of a win-back, for a rule that does not need it.
        let tz = match base {
            Some(b) if rule.reads_zone(b) => self.zone(c, None),
            _ => chrono_tz::UTC,
        };
        let mem = super::known_mut(&mut self.customers, c).flow(key);
        mem.generation = mem.generation.wrapping_add(1) & !YEARLY;
        let generation = mem.generation | if yearly { YEARLY } else { 0 };
        let (last, next) = match base {
            Some(b) => rule.around(b, tz, now),
            None => (None, None),
        };
        // The instant in milliseconds is later than `now` in seconds when
        // they share a second; a time at that second has passed.
        if let Some(due) = next.map(ms).filter(|&d| d > self.now) {
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
        if past { last } else { None }
    }
}

/// A profile date a date trigger counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// An instant, seconds since the epoch (a `time` trait).
    Time(i64),
    /// A calendar date, days since 1970-01-01 (a `date` trait): its midnight
    /// in the recipient's zone.
    Date(i32),
}

impl Base {
    /// The trait's value as a date trigger reads it; none for anything else.
    pub(crate) fn of(v: &Value) -> Option<Base> {
        match v {
            Value::Time(t) => Some(Base::Time(*t)),
            Value::Date(d) => Some(Base::Date(*d)),
            _ => None,
        }
    }

    /// The number the trigger's memory keeps to see the trait change.
    pub(crate) fn key(self) -> i64 {
        match self {
            Base::Time(t) => t,
            Base::Date(d) => i64::from(d),
        }
    }
}

/// How a date trigger reads its trait (the parts of `Trigger::DateProperty`
/// that say when it fires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DateRule {
    /// Seconds after the date; negative before it.
    pub offset: i64,
    /// Every year on the date's anniversary.
    pub yearly: bool,
    /// The local time of day it fires at, in minutes since midnight.
    pub at: Option<u16>,
}

/// The day of `month`/`day` in `year`; 29 February is the 28th in a year
/// without one.
fn anniversary(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, day).or_else(|| {
        (month == 2 && day == 29)
            .then(|| NaiveDate::from_ymd_opt(year, 2, 28))
            .flatten()
    })
}

impl DateRule {
    /// When the trigger fires for a date of `year` (the date itself when
    /// not yearly), in seconds; none past the calendar's range.
    fn due_in(self, base: Base, year: Option<i32>, tz: Tz) -> Option<i64> {
        let start = match (base, year) {
            (Base::Time(t), None) => t,
            (Base::Time(t), Some(y)) => {
                let local = tz.timestamp_opt(t, 0).single()?.naive_local();
                let day = anniversary(y, local.month(), local.day())?;
                instant_of(day.and_time(local.time()), tz)
            }
            (Base::Date(d), year) => {
                let date = NaiveDate::from_ymd_opt(1970, 1, 1)?
                    .checked_add_signed(Duration::days(i64::from(d)))?;
                let day = match year {
                    None => date,
                    Some(y) => anniversary(y, date.month(), date.day())?,
                };
                instant_of(day.and_hms_opt(0, 0, 0)?, tz)
            }
        };
        let shifted = start.checked_add(self.offset)?;
        match self.at {
            None => Some(shifted),
            Some(at) => {
                let day = local_date(shifted, tz);
                let local = day.and_hms_opt(u32::from(at / 60), u32::from(at % 60), 0)?;
                Some(instant_of(local, tz))
            }
        }
    }

    /// Whether the times of a date counted from `base` depend on the
    /// recipient's zone: not for a plain offset from an instant.
    pub(crate) fn reads_zone(self, base: Base) -> bool {
        self.yearly || self.at.is_some() || matches!(base, Base::Date(_))
    }

    /// The trigger's last occurrence at or before `now` and its first after
    /// it, in seconds: one date has one occurrence, a yearly one has one a year.
    pub(crate) fn around(self, base: Base, tz: Tz, now: i64) -> (Option<i64>, Option<i64>) {
        let mut last = None;
        let mut next = None;
        let mut consider = |due: i64| {
            if due <= now {
                last = Some(last.map_or(due, |l: i64| l.max(due)));
            } else {
                next = Some(next.map_or(due, |n: i64| n.min(due)));
            }
        };
        if !self.yearly {
            if let Some(due) = self.due_in(base, None, tz) {
                consider(due);
            }
            return (last, next);
        }
        // The anniversaries of the years around now, widened by the
        // offset's length in years, hold the two either side of now.
        let year = local_date(now, tz).year();
        let span = 2 + i32::try_from(self.offset.unsigned_abs() / (365 * 86_400))
            .unwrap_or(0)
            .min(100);
        for y in year.saturating_sub(span)..=year.saturating_add(span) {
            if let Some(due) = self.due_in(base, Some(y), tz) {
                consider(due);
            }
        }
        (last, next)
    }
}

/// The next instant strictly after `now` at which a schedule fires in `tz`.
pub(crate) fn next_occurrence(
    now: i64,
    tz: chrono_tz::Tz,
    cadence: Cadence,
    at: u16,
) -> Option<i64> {
    if let Cadence::Once(days) = cadence {
        let day = NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(Duration::days(i64::from(days)))?;
        let local = day.and_hms_opt(u32::from(at / 60), u32::from(at % 60), 0)?;
        return Some(instant_of(local, tz)).filter(|&due| due > now);
    }
    let mut day: NaiveDate = local_date(now, tz);
    // A monthly cadence recurs within 31 days; look a little further to be safe.
    for _ in 0..40 {
        let matches = match cadence {
            Cadence::Day => true,
            Cadence::Weekday(d) => day.weekday().num_days_from_monday() == u32::from(d),
            Cadence::Month(d) => day.day() == u32::from(d),
            Cadence::Once(_) => false,
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
    fn date_rules_find_the_occurrences_around_now() {
        let t = |s: &str| parse_time(s).unwrap();
        let now = t("2026-01-05T10:00:00Z");
        // An instant three days back, and one ahead.
        let before = DateRule {
            offset: -3 * 86_400,
            yearly: false,
            at: None,
        };
        let renews = Base::Time(t("2026-01-07T10:00:00Z"));
        assert_eq!(
            before.around(renews, Tz::UTC, now),
            (Some(t("2026-01-04T10:00:00Z")), None)
        );
        let renews = Base::Time(t("2026-01-09T10:00:00Z"));
        assert_eq!(
            before.around(renews, Tz::UTC, now),
            (None, Some(t("2026-01-06T10:00:00Z")))
        );
        // A yearly time keeps its local time of day; 29 February moves to
        // the 28th in other years and back in leap years.
        let yearly = DateRule {
            offset: 0,
            yearly: true,
            at: None,
        };
        let leap = Base::Time(t("2024-02-29T18:30:00Z"));
        assert_eq!(
            yearly.around(leap, Tz::Europe__Berlin, now),
            (
                Some(t("2025-02-28T18:30:00Z")),
                Some(t("2026-02-28T18:30:00Z"))
            )
        );
        let later = t("2027-03-01T00:00:00Z");
        assert_eq!(
            yearly.around(leap, Tz::Europe__Berlin, later).1,
            Some(t("2028-02-29T18:30:00Z"))
        );
        // A date a week before its anniversary, at 09:00 local, across the new year.
        let week_before = DateRule {
            offset: -7 * 86_400,
            yearly: true,
            at: Some(9 * 60),
        };
        let jan_3 = Base::Date(NaiveDate::from_ymd_opt(1990, 1, 3).unwrap().to_epoch_days());
        assert_eq!(
            week_before.around(jan_3, Tz::America__New_York, now),
            (
                Some(t("2025-12-27T14:00:00Z")),
                Some(t("2026-12-27T14:00:00Z"))
            )
        );
    }

    #[test]
    fn a_rule_reads_the_zone_only_when_its_times_depend_on_it() {
        let t = |s: &str| parse_time(s).unwrap();
        let now = t("2026-01-05T10:00:00Z");
        let (tokyo, la) = (Tz::Asia__Tokyo, Tz::America__Los_Angeles);
        let order = Base::Time(t("2025-12-20T23:30:00Z"));
        let plain = DateRule {
            offset: 90 * 86_400,
            yearly: false,
            at: None,
        };
        // A plain offset from an instant is the same instant in every zone,
        // so the engine does not read the customer's.
        assert!(!plain.reads_zone(order));
        assert_eq!(
            plain.around(order, tokyo, now),
            plain.around(order, la, now)
        );
        let at_nine = DateRule {
            at: Some(9 * 60),
            ..plain
        };
        let yearly = DateRule {
            yearly: true,
            ..plain
        };
        let birthday = Base::Date(NaiveDate::from_ymd_opt(1990, 1, 3).unwrap().to_epoch_days());
        for (rule, base) in [(at_nine, order), (plain, birthday)] {
            assert!(rule.reads_zone(base), "{rule:?} from {base:?}");
            assert_ne!(rule.around(base, tokyo, now), rule.around(base, la, now));
        }
        // An anniversary is a local date: the same instant across a change
        // of the clocks only when the zone has one.
        assert!(yearly.reads_zone(order));
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
