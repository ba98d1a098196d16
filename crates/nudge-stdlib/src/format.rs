//! How `format_date` and money in messages read: date styles and patterns
//! in a few locales, and the currencies amounts are written in.
//!
//! Both the checker (which refuses a constant pattern it cannot read) and
//! the VM (which formats) use this module, so they agree on what a pattern
//! means. It works on plain calendar fields: the VM does the time-zone
//! arithmetic.

use std::fmt;

/// The named styles of `format_date`, in the order the docs list them.
pub const DATE_STYLES: &[&str] = &["short", "medium", "long", "full", "time"];

/// The languages `format_date` writes month and day names in; any other
/// locale reads as English.
pub const DATE_LANGUAGES: &[&str] = &["en", "de", "fr", "es", "it", "nl", "pt"];

/// One piece of a date pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text written as it is.
    Text(String),
    /// `%Y`: the year, `2026`.
    Year,
    /// `%y`: the year's last two digits, `26`.
    YearShort,
    /// `%m`: the month, `01`–`12`.
    Month,
    /// `%-m`: the month, `1`–`12`.
    MonthBare,
    /// `%d`: the day of the month, `01`–`31`.
    Day,
    /// `%-d`: the day of the month, `1`–`31`.
    DayBare,
    /// `%B`: the month's name, `December`.
    MonthName,
    /// `%b`: the month's short name, `Dec`.
    MonthAbbr,
    /// `%A`: the weekday's name, `Thursday`.
    WeekdayName,
    /// `%a`: the weekday's short name, `Thu`.
    WeekdayAbbr,
    /// `%H`: the hour on a 24-hour clock, `00`–`23`.
    Hour,
    /// `%-H`: the hour on a 24-hour clock, `0`–`23`.
    HourBare,
    /// `%I`: the hour on a 12-hour clock, `01`–`12`.
    Hour12,
    /// `%-I`: the hour on a 12-hour clock, `1`–`12`.
    Hour12Bare,
    /// `%M`: the minute, `00`–`59`.
    Minute,
    /// `%p`: `AM` or `PM`.
    AmPm,
    /// `%Z`: the zone's abbreviation, `CET`.
    Zone,
}

/// What `format_date`'s second argument asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DateFormat {
    /// A named style, written the locale's way: an index in [`DATE_STYLES`].
    Style(usize),
    /// A pattern with `%` specifiers.
    Pattern(Vec<Piece>),
}

/// Why a date format cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DateFormatError {
    /// Not a style name and no `%` in it.
    UnknownStyle(String),
    /// A `%` followed by something this pattern language does not have.
    UnknownSpecifier(String),
    /// A `%` at the very end.
    TrailingPercent,
}

impl fmt::Display for DateFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateFormatError::UnknownStyle(s) => write!(
                f,
                "unknown date style {s:?}: the styles are {}, or write a pattern with `%` specifiers",
                DATE_STYLES.join(", ")
            ),
            DateFormatError::UnknownSpecifier(s) => write!(
                f,
                "unknown `{s}` in a date pattern: the specifiers are %Y %y %m %-m %d %-d %B %b %A %a %H %-H %I %-I %M %p %Z and %%"
            ),
            DateFormatError::TrailingPercent => {
                f.write_str("a date pattern ends with a lone `%`: write `%%` for a percent sign")
            }
        }
    }
}

impl std::error::Error for DateFormatError {}

/// Reads `format_date`'s second argument: a style name or a pattern.
pub fn parse_date_format(spec: &str) -> Result<DateFormat, DateFormatError> {
    if let Some(i) = DATE_STYLES.iter().position(|s| *s == spec) {
        return Ok(DateFormat::Style(i));
    }
    if !spec.contains('%') {
        return Err(DateFormatError::UnknownStyle(spec.to_string()));
    }
    parse_pattern(spec).map(DateFormat::Pattern)
}

fn parse_pattern(spec: &str) -> Result<Vec<Piece>, DateFormatError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let Some(n) = chars.next() else {
            return Err(DateFormatError::TrailingPercent);
        };
        let (bare, spec_char) = if n == '-' {
            match chars.next() {
                Some(m) => (true, m),
                None => return Err(DateFormatError::UnknownSpecifier("%-".into())),
            }
        } else {
            (false, n)
        };
        let piece = match (bare, spec_char) {
            (false, '%') => {
                text.push('%');
                continue;
            }
            (false, 'Y') => Piece::Year,
            (false, 'y') => Piece::YearShort,
            (false, 'm') => Piece::Month,
            (true, 'm') => Piece::MonthBare,
            (false, 'd') => Piece::Day,
            (true, 'd') => Piece::DayBare,
            (false, 'B') => Piece::MonthName,
            (false, 'b') => Piece::MonthAbbr,
            (false, 'A') => Piece::WeekdayName,
            (false, 'a') => Piece::WeekdayAbbr,
            (false, 'H') => Piece::Hour,
            (true, 'H') => Piece::HourBare,
            (false, 'I') => Piece::Hour12,
            (true, 'I') => Piece::Hour12Bare,
            (false, 'M') => Piece::Minute,
            (false, 'p') => Piece::AmPm,
            (false, 'Z') => Piece::Zone,
            (b, other) => {
                let dash = if b { "-" } else { "" };
                return Err(DateFormatError::UnknownSpecifier(format!("%{dash}{other}")));
            }
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// A moment's calendar fields in the recipient's zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFields {
    /// The year, `2026`.
    pub year: i32,
    /// The month, 1–12.
    pub month: u32,
    /// The day of the month, 1–31.
    pub day: u32,
    /// The weekday, 0 for Monday to 6 for Sunday.
    pub weekday: u32,
    /// The hour, 0–23.
    pub hour: u32,
    /// The minute, 0–59.
    pub minute: u32,
    /// The zone's abbreviation at that moment (`CET`, `EST`, `+04`).
    pub zone: String,
}

/// The words and styles of one locale.
struct Locale {
    months: [&'static str; 12],
    months_abbr: [&'static str; 12],
    weekdays: [&'static str; 7],
    weekdays_abbr: [&'static str; 7],
    /// Patterns of `short`, `medium`, `long`, `full` and `time`.
    styles: [&'static str; 5],
}

const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const EN_MONTHS_ABBR: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const EN_WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const EN_WEEKDAYS_ABBR: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const EN_US: Locale = Locale {
    months: EN_MONTHS,
    months_abbr: EN_MONTHS_ABBR,
    weekdays: EN_WEEKDAYS,
    weekdays_abbr: EN_WEEKDAYS_ABBR,
    styles: [
        "%-m/%-d/%Y",
        "%b %-d, %Y",
        "%B %-d, %Y",
        "%A, %B %-d, %Y",
        "%-I:%M %p",
    ],
};

const EN_GB: Locale = Locale {
    months: EN_MONTHS,
    months_abbr: EN_MONTHS_ABBR,
    weekdays: EN_WEEKDAYS,
    weekdays_abbr: EN_WEEKDAYS_ABBR,
    styles: [
        "%d/%m/%Y",
        "%-d %b %Y",
        "%-d %B %Y",
        "%A %-d %B %Y",
        "%H:%M",
    ],
};

const DE: Locale = Locale {
    months: [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    months_abbr: [
        "Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.",
        "Dez.",
    ],
    weekdays: [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ],
    weekdays_abbr: ["Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."],
    styles: [
        "%d.%m.%Y",
        "%d.%m.%Y",
        "%-d. %B %Y",
        "%A, %-d. %B %Y",
        "%H:%M",
    ],
};

const FR: Locale = Locale {
    months: [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    months_abbr: [
        "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
        "déc.",
    ],
    weekdays: [
        "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
    ],
    weekdays_abbr: ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."],
    styles: [
        "%d/%m/%Y",
        "%-d %b %Y",
        "%-d %B %Y",
        "%A %-d %B %Y",
        "%H:%M",
    ],
};

const ES: Locale = Locale {
    months: [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    months_abbr: [
        "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic",
    ],
    weekdays: [
        "lunes",
        "martes",
        "miércoles",
        "jueves",
        "viernes",
        "sábado",
        "domingo",
    ],
    weekdays_abbr: ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
    styles: [
        "%-d/%-m/%Y",
        "%-d %b %Y",
        "%-d de %B de %Y",
        "%A, %-d de %B de %Y",
        "%H:%M",
    ],
};

const IT: Locale = Locale {
    months: [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ],
    months_abbr: [
        "gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic",
    ],
    weekdays: [
        "lunedì",
        "martedì",
        "mercoledì",
        "giovedì",
        "venerdì",
        "sabato",
        "domenica",
    ],
    weekdays_abbr: ["lun", "mar", "mer", "gio", "ven", "sab", "dom"],
    styles: [
        "%d/%m/%Y",
        "%-d %b %Y",
        "%-d %B %Y",
        "%A %-d %B %Y",
        "%H:%M",
    ],
};

const NL: Locale = Locale {
    months: [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ],
    months_abbr: [
        "jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec",
    ],
    weekdays: [
        "maandag",
        "dinsdag",
        "woensdag",
        "donderdag",
        "vrijdag",
        "zaterdag",
        "zondag",
    ],
    weekdays_abbr: ["ma", "di", "wo", "do", "vr", "za", "zo"],
    styles: [
        "%d-%m-%Y",
        "%-d %b %Y",
        "%-d %B %Y",
        "%A %-d %B %Y",
        "%H:%M",
    ],
};

const PT: Locale = Locale {
    months: [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
    months_abbr: [
        "jan.", "fev.", "mar.", "abr.", "mai.", "jun.", "jul.", "ago.", "set.", "out.", "nov.",
        "dez.",
    ],
    weekdays: [
        "segunda-feira",
        "terça-feira",
        "quarta-feira",
        "quinta-feira",
        "sexta-feira",
        "sábado",
        "domingo",
    ],
    weekdays_abbr: ["seg.", "ter.", "qua.", "qui.", "sex.", "sáb.", "dom."],
    styles: [
        "%d/%m/%Y",
        "%-d de %b de %Y",
        "%-d de %B de %Y",
        "%A, %-d de %B de %Y",
        "%H:%M",
    ],
};

/// The locale a language tag (`de-DE`, `en_GB`, `pt-BR`) reads as: its
/// language, and for English whether the month comes first (the United
/// States, and English with no region) or the day. Anything else is US English.
fn locale(tag: &str) -> &'static Locale {
    let mut parts = tag.split(['-', '_']);
    let lang = parts.next().unwrap_or("").to_ascii_lowercase();
    let region = parts.next().unwrap_or("").to_ascii_uppercase();
    match lang.as_str() {
        "de" => &DE,
        "fr" => &FR,
        "es" => &ES,
        "it" => &IT,
        "nl" => &NL,
        "pt" => &PT,
        "en" if !region.is_empty() && region != "US" => &EN_GB,
        _ => &EN_US,
    }
}

/// Writes a moment in a format and locale (a language tag such as `de-DE`).
pub fn format_date(format: &DateFormat, fields: &DateFields, locale_tag: &str) -> String {
    let loc = locale(locale_tag);
    match format {
        DateFormat::Pattern(pieces) => render(pieces, fields, loc),
        DateFormat::Style(i) => {
            let pattern = loc.styles.get(*i).copied().unwrap_or("%Y-%m-%d");
            // The styles are written in the pattern language, so they cannot fail.
            let pieces = parse_pattern(pattern).unwrap_or_default();
            render(&pieces, fields, loc)
        }
    }
}

fn render(pieces: &[Piece], f: &DateFields, loc: &Locale) -> String {
    let month = f.month.clamp(1, 12) as usize - 1;
    let weekday = f.weekday.min(6) as usize;
    let hour12 = match f.hour % 12 {
        0 => 12,
        h => h,
    };
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Year => out.push_str(&f.year.to_string()),
            Piece::YearShort => out.push_str(&format!("{:02}", f.year.rem_euclid(100))),
            Piece::Month => out.push_str(&format!("{:02}", f.month)),
            Piece::MonthBare => out.push_str(&f.month.to_string()),
            Piece::Day => out.push_str(&format!("{:02}", f.day)),
            Piece::DayBare => out.push_str(&f.day.to_string()),
            Piece::MonthName => out.push_str(loc.months[month]),
            Piece::MonthAbbr => out.push_str(loc.months_abbr[month]),
            Piece::WeekdayName => out.push_str(loc.weekdays[weekday]),
            Piece::WeekdayAbbr => out.push_str(loc.weekdays_abbr[weekday]),
            Piece::Hour => out.push_str(&format!("{:02}", f.hour)),
            Piece::HourBare => out.push_str(&f.hour.to_string()),
            Piece::Hour12 => out.push_str(&format!("{hour12:02}")),
            Piece::Hour12Bare => out.push_str(&hour12.to_string()),
            Piece::Minute => out.push_str(&format!("{:02}", f.minute)),
            Piece::AmPm => out.push_str(if f.hour < 12 { "AM" } else { "PM" }),
            Piece::Zone => out.push_str(&f.zone),
        }
    }
    out
}

/// How amounts of a currency are written: its symbol (or none, and then
/// the code is written before the amount) and its minor-unit digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    /// The ISO 4217 code, `EUR`.
    pub code: &'static str,
    /// The sign written before amounts, `€`.
    pub symbol: Option<&'static str>,
    /// Digits after the decimal point: 2 for `EUR`, 0 for `JPY`, 3 for `KWD`.
    pub digits: u32,
}

/// The currencies with a symbol or minor units of their own; any other
/// ISO 4217 code is written out before the amount, with two digits.
pub const CURRENCIES: &[Currency] = &[
    Currency {
        code: "USD",
        symbol: Some("$"),
        digits: 2,
    },
    Currency {
        code: "EUR",
        symbol: Some("€"),
        digits: 2,
    },
    Currency {
        code: "GBP",
        symbol: Some("£"),
        digits: 2,
    },
    Currency {
        code: "JPY",
        symbol: Some("¥"),
        digits: 0,
    },
    Currency {
        code: "CNY",
        symbol: Some("CN¥"),
        digits: 2,
    },
    Currency {
        code: "INR",
        symbol: Some("₹"),
        digits: 2,
    },
    Currency {
        code: "KRW",
        symbol: Some("₩"),
        digits: 0,
    },
    Currency {
        code: "CAD",
        symbol: Some("CA$"),
        digits: 2,
    },
    Currency {
        code: "AUD",
        symbol: Some("A$"),
        digits: 2,
    },
    Currency {
        code: "NZD",
        symbol: Some("NZ$"),
        digits: 2,
    },
    Currency {
        code: "MXN",
        symbol: Some("MX$"),
        digits: 2,
    },
    Currency {
        code: "BRL",
        symbol: Some("R$"),
        digits: 2,
    },
    Currency {
        code: "ILS",
        symbol: Some("₪"),
        digits: 2,
    },
    Currency {
        code: "VND",
        symbol: Some("₫"),
        digits: 0,
    },
    Currency {
        code: "CLP",
        symbol: None,
        digits: 0,
    },
    Currency {
        code: "ISK",
        symbol: None,
        digits: 0,
    },
    Currency {
        code: "HUF",
        symbol: None,
        digits: 2,
    },
    Currency {
        code: "TWD",
        symbol: Some("NT$"),
        digits: 2,
    },
    Currency {
        code: "BHD",
        symbol: None,
        digits: 3,
    },
    Currency {
        code: "KWD",
        symbol: None,
        digits: 3,
    },
    Currency {
        code: "OMR",
        symbol: None,
        digits: 3,
    },
    Currency {
        code: "JOD",
        symbol: None,
        digits: 3,
    },
    Currency {
        code: "TND",
        symbol: None,
        digits: 3,
    },
];

/// The row of [`CURRENCIES`] for `code`; none for a code written out with
/// two digits.
pub fn currency(code: &str) -> Option<Currency> {
    CURRENCIES.iter().find(|c| c.code == code).copied()
}

/// Whether `code` has the shape of an ISO 4217 code: three capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn christmas() -> DateFields {
        // Thursday 24 December 2026, 17:05 in Berlin.
        DateFields {
            year: 2026,
            month: 12,
            day: 24,
            weekday: 3,
            hour: 17,
            minute: 5,
            zone: "CET".into(),
        }
    }

    fn fmt(spec: &str, locale: &str) -> String {
        format_date(&parse_date_format(spec).unwrap(), &christmas(), locale)
    }

    #[test]
    fn styles_follow_the_locale() {
        assert_eq!(fmt("short", "en-US"), "12/24/2026");
        assert_eq!(fmt("medium", "en"), "Dec 24, 2026");
        assert_eq!(fmt("long", "en-US"), "December 24, 2026");
        assert_eq!(fmt("full", "en-US"), "Thursday, December 24, 2026");
        assert_eq!(fmt("time", "en-US"), "5:05 PM");
        assert_eq!(fmt("short", "en-GB"), "24/12/2026");
        assert_eq!(fmt("long", "en_GB"), "24 December 2026");
        assert_eq!(fmt("time", "en-GB"), "17:05");
        assert_eq!(fmt("long", "de-DE"), "24. Dezember 2026");
        assert_eq!(fmt("full", "de"), "Donnerstag, 24. Dezember 2026");
        assert_eq!(fmt("medium", "fr-FR"), "24 déc. 2026");
        assert_eq!(fmt("full", "fr"), "jeudi 24 décembre 2026");
        assert_eq!(fmt("long", "es-ES"), "24 de diciembre de 2026");
        assert_eq!(fmt("long", "it"), "24 dicembre 2026");
        assert_eq!(fmt("short", "nl-NL"), "24-12-2026");
        assert_eq!(fmt("long", "pt-BR"), "24 de dezembro de 2026");
        // Unknown locales read as US English.
        assert_eq!(fmt("long", "xx"), "December 24, 2026");
        assert_eq!(fmt("long", ""), "December 24, 2026");
    }

    #[test]
    fn patterns_write_each_specifier() {
        assert_eq!(
            fmt("%A %-d %B %Y, %H:%M %Z", "de-DE"),
            "Donnerstag 24 Dezember 2026, 17:05 CET"
        );
        assert_eq!(
            fmt("%a %b %d '%y %I:%M %p", "en"),
            "Thu Dec 24 '26 05:05 PM"
        );
        assert_eq!(
            fmt("%-m/%-d %-H:%M %-I%p 100%%", "en"),
            "12/24 17:05 5PM 100%"
        );
        assert_eq!(fmt("%Y-%m-%d", "fr"), "2026-12-24");
    }

    #[test]
    fn bad_formats_say_why() {
        assert_eq!(
            parse_date_format("lnog"),
            Err(DateFormatError::UnknownStyle("lnog".into()))
        );
        assert_eq!(
            parse_date_format("%Y-%q"),
            Err(DateFormatError::UnknownSpecifier("%q".into()))
        );
        assert_eq!(
            parse_date_format("%-Y"),
            Err(DateFormatError::UnknownSpecifier("%-Y".into()))
        );
        assert_eq!(
            parse_date_format("%Y %"),
            Err(DateFormatError::TrailingPercent)
        );
        assert!(
            parse_date_format("lnog")
                .unwrap_err()
                .to_string()
                .contains("short, medium")
        );
    }

    #[test]
    fn every_style_of_every_locale_parses() {
        for l in [&EN_US, &EN_GB, &DE, &FR, &ES, &IT, &NL, &PT] {
            for s in l.styles {
                assert!(parse_pattern(s).is_ok(), "{s}");
            }
        }
    }

    #[test]
    fn currencies_have_symbols_and_minor_units() {
        assert_eq!(currency("EUR").and_then(|c| c.symbol), Some("€"));
        assert_eq!(currency("JPY").map(|c| c.digits), Some(0));
        assert_eq!(currency("KWD").map(|c| c.digits), Some(3));
        assert_eq!(currency("CHF"), None);
        assert!(is_currency_code("CHF"));
        assert!(!is_currency_code("chf"));
        assert!(!is_currency_code("EURO"));
    }
}
