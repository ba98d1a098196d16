//! Recipients' time zones and local-time windows.

use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

/// The zone of a phone number's country, for SMS recipients without one.
///
/// Only unambiguous calling codes are listed; a country spanning several
/// zones gets its most populous one, which is what a sender would guess too.
pub fn zone_of_phone(phone: &str) -> Option<Tz> {
    let digits = phone.strip_prefix('+')?;
    const CODES: &[(&str, Tz)] = &[
        ("1", Tz::America__New_York),
        ("7", Tz::Europe__Moscow),
        ("20", Tz::Africa__Cairo),
        ("27", Tz::Africa__Johannesburg),
        ("30", Tz::Europe__Athens),
        ("31", Tz::Europe__Amsterdam),
        ("32", Tz::Europe__Brussels),
        ("33", Tz::Europe__Paris),
        ("34", Tz::Europe__Madrid),
        ("36", Tz::Europe__Budapest),
        ("39", Tz::Europe__Rome),
        ("40", Tz::Europe__Bucharest),
        ("41", Tz::Europe__Zurich),
        ("43", Tz::Europe__Vienna),
        ("44", Tz::Europe__London),
        ("45", Tz::Europe__Copenhagen),
        ("46", Tz::Europe__Stockholm),
        ("47", Tz::Europe__Oslo),
        ("48", Tz::Europe__Warsaw),
        ("49", Tz::Europe__Berlin),
        ("52", Tz::America__Mexico_City),
        ("55", Tz::America__Sao_Paulo),
        ("61", Tz::Australia__Sydney),
        ("64", Tz::Pacific__Auckland),
        ("65", Tz::Asia__Singapore),
        ("81", Tz::Asia__Tokyo),
        ("82", Tz::Asia__Seoul),
        ("86", Tz::Asia__Shanghai),
        ("91", Tz::Asia__Kolkata),
        ("351", Tz::Europe__Lisbon),
        ("353", Tz::Europe__Dublin),
        ("358", Tz::Europe__Helsinki),
        ("971", Tz::Asia__Dubai),
    ];
    // Calling codes are prefix-free, so at most one matches.
    CODES
        .iter()
        .find(|(code, _)| digits.starts_with(code))
        .map(|(_, tz)| *tz)
}

/// Minutes since local midnight of an instant in a zone.
pub fn local_minute(at: i64, tz: Tz) -> u16 {
    let local = tz.timestamp_opt(at, 0).single().map(|t| t.naive_local());
    local.map_or(0, |t| (t.hour() * 60 + t.minute()) as u16)
}

/// The instant a local wall-clock time occurs in a zone. In a gap (spring
/// forward) the time does not exist, so the first instant after the gap is
/// used; in an overlap (fall back) the earlier of the two.
pub fn instant_of(local: NaiveDateTime, tz: Tz) -> i64 {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.timestamp(),
        LocalResult::Ambiguous(a, _) => a.timestamp(),
        LocalResult::None => {
            // Gaps are at most a few hours; step forward a minute at a time.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.timestamp();
                }
            }
            tz.from_utc_datetime(&local).timestamp()
        }
    }
}

/// The local date of an instant in a zone.
pub fn local_date(at: i64, tz: Tz) -> NaiveDate {
    tz.timestamp_opt(at, 0)
        .single()
        .map_or_else(NaiveDate::default, |t| t.date_naive())
}

/// If `at` falls inside the daily window `from..to` (minutes since local
/// midnight; crossing midnight when `to < from`), the instant the window ends.
pub fn window_end(at: i64, tz: Tz, from: u16, to: u16) -> Option<i64> {
    let m = local_minute(at, tz);
    let inside = if from <= to {
        m >= from && m < to
    } else {
        m >= from || m < to
    };
    if !inside || from == to {
        return None;
    }
    let today = local_date(at, tz);
    let end_day = if from > to && m >= from {
        today.succ_opt()?
    } else {
        today
    };
    let end = end_day.and_hms_opt(u32::from(to / 60), u32::from(to % 60), 0)?;
    Some(instant_of(end, tz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_time;

    fn t(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    #[test]
    fn phone_numbers_give_their_country_zone() {
        assert_eq!(zone_of_phone("+4915112345678"), Some(Tz::Europe__Berlin));
        assert_eq!(zone_of_phone("+15555550100"), Some(Tz::America__New_York));
        assert_eq!(zone_of_phone("0049151"), None);
    }

    #[test]
    fn a_window_across_midnight_ends_next_morning() {
        // 22:30 in New York on 23 Nov 2026 (EST, UTC-5) is 03:30 UTC the next day.
        let at = t("2026-11-24T03:30:00Z");
        let end = window_end(at, Tz::America__New_York, 21 * 60, 8 * 60).unwrap();
        assert_eq!(end, t("2026-11-24T13:00:00Z"));
        // 07:00 is still inside; 08:00 is not.
        assert_eq!(
            window_end(t("2026-11-24T12:00:00Z"), Tz::America__New_York, 1260, 480),
            Some(t("2026-11-24T13:00:00Z"))
        );
        assert_eq!(
            window_end(t("2026-11-24T13:00:00Z"), Tz::America__New_York, 1260, 480),
            None
        );
    }

    #[test]
    fn window_ends_follow_daylight_saving_changes() {
        // Berlin springs forward on 29 Mar 2026: 08:00 that morning is CEST (UTC+2).
        let at = t("2026-03-28T22:00:00Z"); // 23:00 CET
        let end = window_end(at, Tz::Europe__Berlin, 21 * 60, 8 * 60).unwrap();
        assert_eq!(end, t("2026-03-29T06:00:00Z"));
        // New York falls back on 1 Nov 2026: 08:00 that morning is EST (UTC-5).
        let at = t("2026-11-01T02:00:00Z"); // 22:00 EDT on 31 Oct
        let end = window_end(at, Tz::America__New_York, 21 * 60, 8 * 60).unwrap();
        assert_eq!(end, t("2026-11-01T13:00:00Z"));
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_past_it() {
        let local = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            instant_of(local, Tz::Europe__Berlin),
            t("2026-03-29T01:00:00Z")
        );
    }
}
