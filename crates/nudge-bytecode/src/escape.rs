//! Output escaping: how a customer's value is made inert where it lands in a
//! message. The compiler picks the context from the message's channel and
//! content key; the runtime applies it to every interpolated value.

use crate::Channel;

/// What `unsubscribe_url` renders to in an email's content: the email
/// plugin, which holds the signing key, puts the customer's signed
/// unsubscribe link in its place. Every escaping leaves it as it is.
pub const UNSUBSCRIBE_URL_MARK: &str = "nudge:unsubscribe_url";

/// What `preferences_url` renders to, replaced with the customer's signed
/// preference-page link as [`UNSUBSCRIBE_URL_MARK`] is.
pub const PREFERENCES_URL_MARK: &str = "nudge:preferences_url";

/// The names message content may use for the two links, with their marks.
pub const LINK_NAMES: [(&str, &str); 2] = [
    ("unsubscribe_url", UNSUBSCRIBE_URL_MARK),
    ("preferences_url", PREFERENCES_URL_MARK),
];

/// The escaping a value gets in one kind of content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Escape {
    /// HTML text and attributes: `& < > " '` become entities (email bodies).
    Html,
    /// The inside of a JSON string: quotes, backslashes and control
    /// characters escaped (webhook payloads).
    Json,
    /// A URL component: everything but RFC 3986's unreserved characters
    /// percent-encoded (values interpolated into URLs).
    Url,
    /// One line of text: control characters (CR, LF, tab, ...) and Unicode
    /// line separators removed (subjects, preheaders, SMS text, titles).
    Line,
}

impl Escape {
    /// Every context.
    pub const ALL: [Escape; 4] = [Escape::Html, Escape::Json, Escape::Url, Escape::Line];

    /// The context of a content key of a channel's messages. Keys not listed
    /// are treated as one line, the safest reading of a header-like field.
    pub fn of(channel: Channel, key: &str) -> Escape {
        match (channel, key) {
            (Channel::Email, "body") => Escape::Html,
            (Channel::Webhook, "payload") => Escape::Json,
            (Channel::Push | Channel::Webhook, "url") => Escape::Url,
            _ => Escape::Line,
        }
    }

    /// The context a whole value gets when it is the entire content rather
    /// than a part interpolated into a string: a URL given whole is the URL
    /// itself, so it is kept to one line instead of being percent-encoded.
    pub fn whole(self) -> Escape {
        match self {
            Escape::Url => Escape::Line,
            other => other,
        }
    }

    /// The context's name: in templates' auto-escape setting and in the
    /// internal builtin that escapes interpolated values (`escape:html`).
    pub fn name(self) -> &'static str {
        match self {
            Escape::Html => "html",
            Escape::Json => "json",
            Escape::Url => "url",
            Escape::Line => "line",
        }
    }

    /// The context of a name given by [`Escape::name`].
    pub fn from_name(name: &str) -> Option<Escape> {
        Escape::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The internal builtin that escapes a value for this context. Its name
    /// has a colon, so no function a flow can call is ever mistaken for it.
    pub fn builtin(self) -> &'static str {
        match self {
            Escape::Html => "escape:html",
            Escape::Json => "escape:json",
            Escape::Url => "escape:url",
            Escape::Line => "escape:line",
        }
    }

    /// The context of an internal builtin's name.
    pub fn of_builtin(name: &str) -> Option<Escape> {
        Escape::ALL.into_iter().find(|e| e.builtin() == name)
    }

    /// `text` made inert for this context.
    pub fn apply(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        match self {
            Escape::Html => {
                for c in text.chars() {
                    match c {
                        '&' => out.push_str("&amp;"),
                        '<' => out.push_str("&lt;"),
                        '>' => out.push_str("&gt;"),
                        '"' => out.push_str("&quot;"),
                        '\'' => out.push_str("&#x27;"),
                        c => out.push(c),
                    }
                }
            }
            Escape::Json => {
                for c in text.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        // Also `<`, so a payload embedded in HTML cannot close a script.
                        c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '<') => {
                            out.push_str(&format!("\\u{:04x}", u32::from(c)))
                        }
                        c => out.push(c),
                    }
                }
            }
            Escape::Url => {
                for b in text.bytes() {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        out.push(char::from(b));
                    } else {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
            }
            Escape::Line => out.extend(
                text.chars()
                    .filter(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')),
            ),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_context_makes_its_hostile_value_inert() {
        assert_eq!(
            Escape::Html.apply("<script>alert('x')</script>&"),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;"
        );
        assert_eq!(
            Escape::Json.apply("\"},\"admin\":true,\"x\":\"\\\n"),
            "\\\"},\\\"admin\\\":true,\\\"x\\\":\\\"\\\\\\n"
        );
        assert_eq!(Escape::Url.apply("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            Escape::Line.apply("Hi\r\nBcc: x@evil.example\u{2028}\t!"),
            "HiBcc: x@evil.example!"
        );
    }

    #[test]
    fn json_escaping_leaves_no_bare_quote_or_control_character() {
        let hostile = "\"},\"admin\":true,\"n\":\"\u{0}\u{1f}\\\"</script>";
        let out = Escape::Json.apply(hostile);
        let chars: Vec<char> = out.chars().collect();
        // Every quote is escaped by an odd run of backslashes before it.
        for (i, &c) in chars.iter().enumerate() {
            if c == '"' {
                let run = chars[..i].iter().rev().take_while(|&&b| b == '\\').count();
                assert!(run % 2 == 1, "bare quote at {i} in {out}");
            }
            assert!(!c.is_control(), "{out}");
        }
        assert!(!out.contains("</"), "{out}");
    }

    #[test]
    fn contexts_follow_the_channel_and_key() {
        assert_eq!(Escape::of(Channel::Email, "body"), Escape::Html);
        assert_eq!(Escape::of(Channel::Email, "subject"), Escape::Line);
        assert_eq!(Escape::of(Channel::Email, "preheader"), Escape::Line);
        assert_eq!(Escape::of(Channel::Sms, "text"), Escape::Line);
        assert_eq!(Escape::of(Channel::Push, "url"), Escape::Url);
        assert_eq!(Escape::of(Channel::Webhook, "url"), Escape::Url);
        assert_eq!(Escape::of(Channel::Webhook, "payload"), Escape::Json);
        assert_eq!(Escape::Url.whole(), Escape::Line);
        for e in Escape::ALL {
            assert_eq!(Escape::from_name(e.name()), Some(e));
            assert_eq!(Escape::of_builtin(e.builtin()), Some(e));
        }
    }
}
