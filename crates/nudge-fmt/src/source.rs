//! Access to the source text: literal slices, duration parts and brace positions.

use nudge_diagnostics::FileId;
use nudge_syntax::ast::{
    DateLit, DurationArg, DurationLit, InstantLit, IntLit, PercentLit, StrLit, TestTime, TimeLit,
};
use nudge_syntax::{Span, Token};

/// The source text with the token positions the tree does not record.
pub(crate) struct Source<'s> {
    /// The file's text.
    pub text: &'s str,
    /// Start offsets of every `{` token, in order.
    lbraces: Vec<usize>,
    /// Every duration part (`1h`) with its span, in order.
    durations: Vec<(usize, usize, &'s str)>,
}

impl<'s> Source<'s> {
    /// Lexes `text` to find the braces and duration parts.
    pub fn new(file: FileId, text: &'s str) -> Self {
        let lexed = nudge_syntax::lex(file, text);
        let mut lbraces = Vec::new();
        let mut durations = Vec::new();
        for (tok, span) in &lexed.tokens {
            match tok {
                Token::LBrace => lbraces.push(span.start as usize),
                Token::Duration(d) => durations.push((span.start as usize, span.end as usize, *d)),
                _ => {}
            }
        }
        Source {
            text,
            lbraces,
            durations,
        }
    }

    /// The text under `span`, if the span lies within the file.
    pub fn slice(&self, span: Span) -> Option<&'s str> {
        self.text.get(span.range())
    }

    /// The text under `span`, or `fallback` when the span is unusable.
    pub fn lit(&self, span: Span, fallback: impl FnOnce() -> String) -> String {
        match self.slice(span) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => fallback(),
        }
    }

    /// The offset of the first `{` at or after `pos`.
    pub fn lbrace_after(&self, pos: usize) -> Option<usize> {
        let i = self.lbraces.partition_point(|&p| p < pos);
        self.lbraces.get(i).copied()
    }

    /// The offset of the `}` that ends `span`, when it ends with one.
    pub fn closing_brace(&self, span: Span) -> Option<usize> {
        let end = span.end as usize;
        let at = end.checked_sub(1)?;
        (self.text.as_bytes().get(at) == Some(&b'}')).then_some(at)
    }

    /// Whether `text` contains a line with nothing but whitespace between two line breaks.
    pub fn has_blank_line(text: &str) -> bool {
        let parts: Vec<&str> = text.split('\n').collect();
        parts.len() > 2
            && parts[1..parts.len() - 1]
                .iter()
                .any(|line| line.trim().is_empty())
    }

    /// A duration as written: its parts joined by single spaces.
    pub fn duration(&self, span: Span, seconds: i64) -> String {
        let (start, end) = (span.start as usize, span.end as usize);
        let i = self.durations.partition_point(|&(s, _, _)| s < start);
        let parts: Vec<&str> = self.durations[i..]
            .iter()
            .take_while(|&&(_, e, _)| e <= end)
            .map(|&(_, _, d)| d)
            .collect();
        if parts.is_empty() {
            duration_from_seconds(seconds)
        } else {
            parts.join(" ")
        }
    }

    /// A [`DurationLit`] as written.
    pub fn dur(&self, d: &DurationLit) -> String {
        self.duration(d.span, d.seconds)
    }

    /// A [`DurationArg`]: a literal as written, or the constant's name.
    pub fn dur_arg(&self, d: &DurationArg) -> String {
        match d {
            DurationArg::Lit(l) => self.dur(l),
            DurationArg::Name(n) => n.name.clone(),
        }
    }

    /// An [`IntLit`] as written.
    pub fn int(&self, i: &IntLit) -> String {
        self.lit(i.span, || i.value.to_string())
    }

    /// A [`PercentLit`] as written.
    pub fn percent(&self, p: &PercentLit) -> String {
        self.lit(p.span, || format!("{}%", p.value))
    }

    /// A [`TimeLit`] as written.
    pub fn time(&self, t: &TimeLit) -> String {
        self.lit(t.span, || format!("{:02}:{:02}", t.hour, t.minute))
    }

    /// A [`DateLit`] as written.
    pub fn date(&self, d: &DateLit) -> String {
        self.lit(d.span, || date_from_days(i64::from(d.days)))
    }

    /// An [`InstantLit`] as written.
    pub fn instant(&self, i: &InstantLit) -> String {
        self.lit(i.span, || instant_from_unix(i.unix_seconds))
    }

    /// A [`StrLit`] as written: quoted, or a bare identifier where the grammar allows one.
    pub fn str_lit(&self, s: &StrLit) -> String {
        self.lit(s.span, || quote(&s.value))
    }

    /// A test time: a time of day, an instant or `+D`.
    pub fn test_time(&self, t: &TestTime) -> String {
        match t {
            TestTime::TimeOfDay(t) => self.time(t),
            TestTime::Instant(i) => self.instant(i),
            TestTime::Offset(d) => format!("+{}", self.dur(d)),
        }
    }
}

/// Quotes `value` as a string literal, escaping what the lexer would read otherwise.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '{' => out.push_str("\\{"),
            '}' => out.push_str("\\}"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a number of seconds with the largest units first (`1h 30m`).
pub(crate) fn duration_from_seconds(seconds: i64) -> String {
    if seconds <= 0 {
        return "0s".to_string();
    }
    let mut rest = seconds;
    let mut parts = Vec::new();
    for (unit, len) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if rest >= len {
            parts.push(format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    parts.join(" ")
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian).
pub(crate) fn date_from_days(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// An instant in UTC, written as the grammar's instant literal.
pub(crate) fn instant_from_unix(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date_from_days(days),
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_found_between_line_breaks() {
        assert!(!Source::has_blank_line(" \n  "));
        assert!(Source::has_blank_line(" \n\n  "));
        assert!(Source::has_blank_line("\n  \t \n"));
        assert!(!Source::has_blank_line("a and\n b\n"));
    }

    #[test]
    fn fallbacks_write_valid_literals() {
        assert_eq!(duration_from_seconds(5_400), "1h 30m");
        assert_eq!(duration_from_seconds(0), "0s");
        assert_eq!(date_from_days(0), "1970-01-01");
        assert_eq!(instant_from_unix(1_797_613_200), "2026-12-18T17:00:00Z");
        assert_eq!(quote("a\"{b}"), r#""a\"\{b\}""#);
    }

    #[test]
    fn duration_parts_keep_their_text() {
        let src = Source::new(FileId(0), "wait 1h  30m\nsend");
        assert_eq!(src.duration(Span::new(5, 12), 5_400), "1h 30m");
        assert_eq!(src.duration(Span::new(13, 13), 60), "1m");
    }
}
