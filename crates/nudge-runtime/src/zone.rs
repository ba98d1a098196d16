//! Recipients' time zones and local-time windows.

use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

use Tz::*;

/// Calling codes and the zones of their country, most populous first.
///
/// Calling codes are prefix-free, so at most one matches a number. A country
/// spanning several zones lists every populated one: quiet hours must hold in
/// all of them when the number's own area is not known.
const COUNTRIES: &[(&str, &[Tz])] = &[
    (
        "1",
        &[
            America__New_York,
            America__Chicago,
            America__Los_Angeles,
            America__Denver,
            America__Phoenix,
            America__Halifax,
            America__St_Johns,
            America__Anchorage,
            Pacific__Honolulu,
        ],
    ),
    (
        "7",
        &[
            Europe__Moscow,
            Europe__Kaliningrad,
            Europe__Samara,
            Asia__Yekaterinburg,
            Asia__Omsk,
            Asia__Novosibirsk,
            Asia__Krasnoyarsk,
            Asia__Irkutsk,
            Asia__Yakutsk,
            Asia__Vladivostok,
            Asia__Magadan,
            Asia__Kamchatka,
        ],
    ),
    ("20", &[Africa__Cairo]),
    ("27", &[Africa__Johannesburg]),
    ("30", &[Europe__Athens]),
    ("31", &[Europe__Amsterdam]),
    ("32", &[Europe__Brussels]),
    ("33", &[Europe__Paris]),
    ("34", &[Europe__Madrid, Atlantic__Canary]),
    ("36", &[Europe__Budapest]),
    ("39", &[Europe__Rome]),
    ("40", &[Europe__Bucharest]),
    ("41", &[Europe__Zurich]),
    ("43", &[Europe__Vienna]),
    ("44", &[Europe__London]),
    ("45", &[Europe__Copenhagen]),
    ("46", &[Europe__Stockholm]),
    ("47", &[Europe__Oslo]),
    ("48", &[Europe__Warsaw]),
    ("49", &[Europe__Berlin]),
    (
        "52",
        &[
            America__Mexico_City,
            America__Tijuana,
            America__Hermosillo,
            America__Mazatlan,
            America__Chihuahua,
            America__Cancun,
        ],
    ),
    (
        "55",
        &[
            America__Sao_Paulo,
            America__Manaus,
            America__Cuiaba,
            America__Rio_Branco,
            America__Noronha,
        ],
    ),
    (
        "61",
        &[
            Australia__Sydney,
            Australia__Brisbane,
            Australia__Adelaide,
            Australia__Perth,
            Australia__Darwin,
            Australia__Hobart,
        ],
    ),
    ("62", &[Asia__Jakarta, Asia__Makassar, Asia__Jayapura]),
    ("64", &[Pacific__Auckland]),
    ("65", &[Asia__Singapore]),
    ("81", &[Asia__Tokyo]),
    ("82", &[Asia__Seoul]),
    ("86", &[Asia__Shanghai]),
    ("91", &[Asia__Kolkata]),
    ("351", &[Europe__Lisbon, Atlantic__Azores]),
    ("353", &[Europe__Dublin]),
    ("358", &[Europe__Helsinki]),
    ("971", &[Asia__Dubai]),
];

/// North American area codes of the largest zones, so a +1 number is read
/// in its own area's zone rather than in all of the continent's.
const NANP_AREAS: &[(Tz, &[&str])] = &[
    (
        America__New_York,
        &[
            "201", "202", "212", "215", "216", "240", "248", "267", "301", "305", "313", "317",
            "321", "332", "347", "404", "407", "410", "412", "416", "437", "443", "470", "502",
            "513", "514", "516", "561", "571", "613", "614", "617", "631", "646", "647", "678",
            "703", "704", "718", "727", "732", "770", "786", "813", "857", "904", "905", "908",
            "914", "917", "919", "929", "954", "973", "980", "984",
        ],
    ),
    (
        America__Chicago,
        &[
            "204", "205", "210", "214", "224", "225", "262", "281", "312", "314", "316", "346",
            "402", "405", "414", "469", "501", "504", "512", "515", "608", "612", "615", "630",
            "651", "682", "708", "713", "737", "763", "773", "816", "817", "832", "847", "872",
            "901", "913", "918", "952", "972",
        ],
    ),
    (
        America__Denver,
        &[
            "303", "307", "385", "403", "406", "435", "505", "575", "587", "719", "720", "780",
            "801", "970",
        ],
    ),
    (America__Phoenix, &["480", "520", "602", "623", "928"]),
    (
        America__Los_Angeles,
        &[
            "206", "209", "213", "236", "250", "253", "310", "323", "360", "408", "415", "424",
            "425", "503", "510", "530", "541", "559", "562", "604", "619", "626", "628", "650",
            "657", "661", "669", "702", "707", "714", "725", "747", "760", "775", "778", "805",
            "818", "831", "858", "909", "916", "925", "949", "951", "971",
        ],
    ),
    (America__Halifax, &["506", "782", "902"]),
    (America__St_Johns, &["709"]),
    (America__Anchorage, &["907"]),
    (Pacific__Honolulu, &["808"]),
    (America__Puerto_Rico, &["787", "939"]),
];

/// The digits of an international number (`+1 (310) 555-0100`), or `None`
/// when it is not written with its country code.
fn international_digits(phone: &str) -> Option<String> {
    let rest = phone.trim().strip_prefix('+')?;
    Some(rest.chars().filter(char::is_ascii_digit).collect())
}

/// The zones an SMS recipient without a zone of their own may be in, most
/// likely first: the number's own area's zone when it is known (North
/// American area codes), else every zone of its country. Empty when the
/// country is not known.
pub fn zones_of_phone(phone: &str) -> &'static [Tz] {
    let Some(digits) = international_digits(phone) else {
        return &[];
    };
    let Some((code, zones)) = COUNTRIES.iter().find(|(code, _)| digits.starts_with(code)) else {
        return &[];
    };
    if *code == "1"
        && let Some(area) = digits.get(1..4)
        && let Some((tz, _)) = NANP_AREAS.iter().find(|(_, areas)| areas.contains(&area))
    {
        return std::slice::from_ref(tz);
    }
    zones
}

/// The zone of a phone number, for SMS recipients without one: its area's
/// when known, else its country's most populous (what a sender would guess).
/// Used to show local times and to render; quiet hours use [`zones_of_phone`].
pub fn zone_of_phone(phone: &str) -> Option<Tz> {
    zones_of_phone(phone).first().copied()
}

/// Quiet windows (`from..to`, minutes since local midnight) that hold while
/// it is quiet in any of `zones`: the first instant from `at` on at which
/// no window is in force in any zone, with the zone that held it last.
/// `None` when no window holds at `at`.
///
/// When the windows cover every hour somewhere in the zones (a country so
/// wide that it is always night in one of them), only the first zone is
/// kept, so messages are not held forever.
pub fn quiet_until<W>(at: i64, zones: &[Tz], windows: W) -> Option<(i64, Tz)>
where
    W: IntoIterator<Item = (u16, u16)> + Clone,
{
    let latest_end = |t: i64, zones: &[Tz]| {
        let mut best: Option<(i64, Tz)> = None;
        for &tz in zones {
            for (from, to) in windows.clone() {
                if let Some(e) = window_end(t, tz, from, to)
                    && best.is_none_or(|(b, _)| e > b)
                {
                    best = Some((e, tz));
                }
            }
        }
        best
    };
    let mut found = latest_end(at, zones)?;
    // Each round moves past a window's end; a day holds at most two windows
    // per zone and window, so a few dozen rounds always reach a free instant.
    let rounds = 4 * zones.len() * windows.clone().into_iter().count() + 4;
    for _ in 0..rounds {
        match latest_end(found.0, zones) {
            None => return Some(found),
            Some(next) => found = next,
        }
        if found.0 > at + 2 * 86_400 {
            break;
        }
    }
    let first = zones.first()?;
    latest_end(at, std::slice::from_ref(first))
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
        assert_eq!(
            zones_of_phone("+6281234567"),
            [Asia__Jakarta, Asia__Makassar, Asia__Jayapura]
        );
    }

    #[test]
    fn a_north_american_area_code_gives_its_own_zone() {
        assert_eq!(zones_of_phone("+13105550100"), [America__Los_Angeles]);
        assert_eq!(zones_of_phone("+1 (312) 555-0100"), [America__Chicago]);
        assert_eq!(zones_of_phone("+19075550100"), [America__Anchorage]);
        // An area code not in the table: every zone of the continent.
        assert!(zones_of_phone("+15555550100").len() > 5);
        assert!(zones_of_phone("+79161234567").contains(&Asia__Vladivostok));
    }

    #[test]
    fn quiet_hours_hold_while_it_is_night_in_any_zone() {
        let night = [(21 * 60, 8 * 60)];
        // 13:06 UTC on 24 Nov 2026: 08:06 in New York, 05:06 in Los Angeles.
        let at = t("2026-11-24T13:06:00Z");
        assert_eq!(quiet_until(at, &[America__New_York], night), None);
        let (end, tz) = quiet_until(at, zones_of_phone("+15555550100"), night).unwrap();
        // Honolulu (UTC-10) is the last to reach 08:00, at 18:00 UTC.
        assert_eq!((end, tz), (t("2026-11-24T18:00:00Z"), Pacific__Honolulu));
        let (end, tz) = quiet_until(at, zones_of_phone("+13105550100"), night).unwrap();
        assert_eq!((end, tz), (t("2026-11-24T16:00:00Z"), America__Los_Angeles));
        // At 20:30 in New York it is quiet nowhere yet.
        assert_eq!(
            quiet_until(
                t("2026-11-25T01:30:00Z"),
                zones_of_phone("+15555550100"),
                night
            ),
            Some((t("2026-11-25T18:00:00Z"), Pacific__Honolulu)),
            "St John's is already at 22:00"
        );
    }

    #[test]
    fn windows_covering_the_whole_day_fall_back_to_the_first_zone() {
        // 15 hours of quiet over Russia's 10 hours of zones leaves no free hour.
        let night = [(18 * 60, 9 * 60)];
        let zones = zones_of_phone("+79161234567");
        let at = t("2026-11-24T20:00:00Z"); // 23:00 in Moscow
        let (end, tz) = quiet_until(at, zones, night).unwrap();
        assert_eq!(tz, Europe__Moscow);
        assert_eq!(end, t("2026-11-25T06:00:00Z"));
        // 12 hours still leave two free hours: 08:00 in Kaliningrad to 20:00 in Kamchatka.
        let (end, _) = quiet_until(at, zones, [(20 * 60, 8 * 60)]).unwrap();
        assert_eq!(end, t("2026-11-25T06:00:00Z"));
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
