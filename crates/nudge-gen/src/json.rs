//! A small JSON writer appending to a reused buffer.
//!
//! Lines are written by hand rather than through `serde_json::Value`: key
//! order stays fixed (so output is byte-stable), and a million lines cost
//! no allocation per line. It also knows how to spoil one value on purpose,
//! for the malformed lines of `--bad-rate`.

use std::fmt::Write;

/// Appends `s` as a JSON string literal.
pub fn string(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

/// Appends an amount in cents as a JSON number with at most two decimals
/// (`12.5`, `32.0`, `19.99`), the way stores send money.
pub fn money(buf: &mut String, cents: i64) {
    if cents < 0 {
        buf.push('-');
    }
    let c = cents.unsigned_abs();
    let (whole, frac) = (c / 100, c % 100);
    let _ = if frac == 0 {
        write!(buf, "{whole}.0")
    } else if frac % 10 == 0 {
        write!(buf, "{whole}.{}", frac / 10)
    } else {
        write!(buf, "{whole}.{frac:02}")
    };
}

/// Appends seconds since the epoch as an RFC 3339 UTC string
/// (`"2026-01-05T09:30:00Z"`), without going through a formatter per line.
pub fn time(buf: &mut String, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        buf,
        "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z\"",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An object being written: fields are appended with commas as needed.
/// When `spoil` is set, the next typed field gets a value of the wrong type
/// (text where a number belongs and the reverse), and the flag clears.
pub struct Obj<'a> {
    buf: &'a mut String,
    first: bool,
    spoil: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object.
    pub fn open(buf: &'a mut String, spoil: bool) -> Obj<'a> {
        buf.push('{');
        Obj {
            buf,
            first: true,
            spoil,
        }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
    }

    fn take_spoil(&mut self) -> bool {
        std::mem::take(&mut self.spoil)
    }

    /// A text field.
    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        // A list where text belongs: a bare number would be taken as an
        // id's text, as stores that send numeric ids need.
        if self.take_spoil() {
            self.buf.push_str("[404]");
        } else {
            string(self.buf, v);
        }
    }

    /// A text field built with `format_args!`, without an intermediate String.
    pub fn fmt(&mut self, k: &str, v: std::fmt::Arguments<'_>) {
        self.key(k);
        if self.take_spoil() {
            self.buf.push_str("[404]");
        } else {
            // Only ids and URLs made of safe characters come through here.
            self.buf.push('"');
            let _ = self.buf.write_fmt(v);
            self.buf.push('"');
        }
    }

    /// A money field, in cents.
    pub fn money(&mut self, k: &str, cents: i64) {
        self.key(k);
        if self.take_spoil() {
            self.buf.push_str("\"n/a\"");
        } else {
            money(self.buf, cents);
        }
    }

    /// An integer field.
    pub fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        if self.take_spoil() {
            self.buf.push_str("\"several\"");
        } else {
            let _ = write!(self.buf, "{v}");
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        if self.take_spoil() {
            self.buf.push_str("\"yes\"");
        } else {
            self.buf.push_str(if v { "true" } else { "false" });
        }
    }

    /// A time field, from seconds since the epoch.
    pub fn time(&mut self, k: &str, secs: i64) {
        self.key(k);
        if self.take_spoil() {
            self.buf.push_str("12");
        } else {
            time(self.buf, secs);
        }
    }

    /// A nested object; write its fields, then `close` it.
    pub fn obj(&mut self, k: &str) -> Obj<'_> {
        self.obj_spoiled(k, false)
    }

    /// A nested object whose first typed field gets the wrong type when
    /// `spoil` is set.
    pub fn obj_spoiled(&mut self, k: &str, spoil: bool) -> Obj<'_> {
        self.key(k);
        Obj::open(self.buf, spoil)
    }

    /// A list of objects, each written by `item`.
    pub fn list<T>(&mut self, k: &str, items: &[T], mut item: impl FnMut(&mut Obj<'_>, usize, &T)) {
        self.key(k);
        self.buf.push('[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            let mut o = Obj::open(self.buf, false);
            item(&mut o, i, it);
            o.close();
        }
        self.buf.push(']');
    }

    /// Closes the object.
    pub fn close(self) {
        self.buf.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_at_most_two_decimals() {
        let cases = [(1250, "12.5"), (3200, "32.0"), (1999, "19.99"), (5, "0.05")];
        for (cents, want) in cases {
            let mut s = String::new();
            money(&mut s, cents);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let mut s = String::new();
        time(&mut s, 1_767_571_200); // 2026-01-05T00:00:00Z
        time(&mut s, 951_825_599); // the last second of 2000-02-29
        assert_eq!(s, "\"2026-01-05T00:00:00Z\"\"2000-02-29T11:59:59Z\"");
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn spoil_changes_only_the_first_typed_field() {
        let mut s = String::new();
        let mut o = Obj::open(&mut s, true);
        o.str("order_id", "o-1");
        o.money("total", 1250);
        o.close();
        assert_eq!(s, r#"{"order_id":[404],"total":12.5}"#);
    }
}
