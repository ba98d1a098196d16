//! Decoding of literal tokens into values. The lexer only checks the shape of
//! a literal; whether `2026-13-40` is a real date is decided here, so that the
//! parser can report it with the literal's exact span.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;

use crate::Span;
use crate::error::ParseErrorKind;

/// An integer such as `10_000`.
pub(super) fn int(text: &str) -> Result<i64, ParseErrorKind> {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    digits
        .parse::<i64>()
        .map_err(|_| ParseErrorKind::IntegerTooLarge { text: text.into() })
}

/// A decimal, money amount or percentage: `12.50`, `$50.00`, `12.5%`.
pub(super) fn decimal(text: &str) -> Result<Decimal, ParseErrorKind> {
    let digits: String = text
        .chars()
        .filter(|&c| c != '_' && c != '$' && c != '%')
        .collect();
    Decimal::from_str(&digits).map_err(|_| ParseErrorKind::InexactNumber { text: text.into() })
}

/// One duration component such as `90d`, in seconds.
pub(super) fn duration_part(text: &str) -> Result<i64, ParseErrorKind> {
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let per = match unit {
        "w" => 7 * 86_400,
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => 1,
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| ParseErrorKind::DurationPartTooLong { text: text.into() })
}

/// A calendar date `YYYY-MM-DD`, as days since 1970-01-01.
pub(super) fn date(text: &str) -> Result<i32, ParseErrorKind> {
    let d = naive_date(text)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from(d.signed_duration_since(epoch).num_days())
        .map_err(|_| ParseErrorKind::DateOutOfRange { text: text.into() })
}

fn naive_date(text: &str) -> Result<NaiveDate, ParseErrorKind> {
    let bad = || ParseErrorKind::InvalidDate { text: text.into() };
    let mut parts = text.splitn(3, '-');
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let (y, m, d) = (
        next().ok_or_else(bad)?,
        next().ok_or_else(bad)?,
        next().ok_or_else(bad)?,
    );
    let y = i32::try_from(y).map_err(|_| bad())?;
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(bad)
}

/// A time of day `hh:mm`, as hour and minute.
pub(super) fn time_of_day(text: &str) -> Result<(u8, u8), ParseErrorKind> {
    let bad = || ParseErrorKind::InvalidTimeOfDay { text: text.into() };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m) = (
        h.parse::<u8>().map_err(|_| bad())?,
        m.parse::<u8>().map_err(|_| bad())?,
    );
    if h < 24 && m < 60 {
        Ok((h, m))
    } else {
        Err(bad())
    }
}

/// An instant `YYYY-MM-DDThh:mm(:ss)?(Z|±hh:mm)`, as Unix seconds (UTC).
pub(super) fn instant(text: &str) -> Result<i64, ParseErrorKind> {
    let bad = || ParseErrorKind::InvalidInstant { text: text.into() };
    let (date_part, rest) = text.split_once('T').ok_or_else(bad)?;
    let date = naive_date(date_part).map_err(|_| bad())?;
    let (clock, offset) = match rest.strip_suffix('Z') {
        Some(clock) => (clock, 0i64),
        None => {
            let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
            let (clock, off) = rest.split_at(at);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (
                oh.parse::<i64>().map_err(|_| bad())?,
                om.parse::<i64>().map_err(|_| bad())?,
            );
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            (clock, sign * (oh * 3600 + om * 60))
        }
    };
    let mut fields = clock.split(':').map(|p| p.parse::<u32>().ok());
    let h = fields.next().flatten().ok_or_else(bad)?;
    let m = fields.next().flatten().ok_or_else(bad)?;
    let s = match fields.next() {
        Some(s) => s.ok_or_else(bad)?,
        None => 0,
    };
    let time = NaiveTime::from_hms_opt(h, m, s).ok_or_else(bad)?;
    Ok(date.and_time(time).and_utc().timestamp() - offset)
}

/// Decodes the escapes of a piece of string text that starts at byte `base`.
/// Returns the text and the span of every unknown escape.
pub(super) fn unescape(text: &str, base: u32) -> (String, Vec<(Span, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut bad = Vec::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, '{')) => out.push('{'),
            Some((_, '}')) => out.push('}'),
            Some((j, other)) => {
                let start = base as usize + i;
                let end = base as usize + j + other.len_utf8();
                bad.push((Span::new(start, end), format!("\\{other}")));
                out.push(other);
            }
            None => {
                let start = base as usize + i;
                bad.push((Span::new(start, start + 1), "\\".to_string()));
            }
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_instants() {
        assert_eq!(date("1970-01-02"), Ok(1));
        assert!(date("2026-13-40").is_err());
        assert!(date("2026-02-29").is_err());
        assert_eq!(instant("1970-01-01T01:00:00Z"), Ok(3600));
        assert_eq!(instant("1970-01-01T01:00+01:00"), Ok(0));
        assert_eq!(instant("1970-01-01T00:00-00:30"), Ok(1800));
        assert!(instant("2026-01-01T25:00:00Z").is_err());
        assert!(instant("2026-01-01T10:00+24:00").is_err());
    }

    #[test]
    fn times_ints_decimals() {
        assert_eq!(time_of_day("9:05"), Ok((9, 5)));
        assert!(time_of_day("25:00").is_err());
        assert!(time_of_day("10:60").is_err());
        assert_eq!(int("10_000"), Ok(10_000));
        assert!(int("9223372036854775808").is_err());
        assert_eq!(decimal("$1_000.50"), Ok(Decimal::new(100050, 2)));
        assert_eq!(decimal("12.5%"), Ok(Decimal::new(125, 1)));
        assert_eq!(duration_part("2w"), Ok(14 * 86_400));
        assert!(duration_part("99999999999999999999d").is_err());
    }

    #[test]
    fn escapes() {
        let (s, bad) = unescape(r#"a\"b\\c\nd\te\{f\}g"#, 0);
        assert_eq!(s, "a\"b\\c\nd\te{f}g");
        assert!(bad.is_empty());
        let (_, bad) = unescape(r"x\qy", 10);
        assert_eq!(bad, vec![(Span::new(11, 13), "\\q".to_string())]);
    }
}
