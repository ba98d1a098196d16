//! What every email plugin shares: reading a message's content fields,
//! the plain-text alternative, the Message-ID, and one-click unsubscribe
//! links (RFC 8058).

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

use crate::{DeliveryError, Outgoing, ProviderConfigError, Purpose};

/// Width of the derived plain-text part, the usual limit for email text.
const TEXT_WIDTH: usize = 78;

/// An email's parts, read from a message's content fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailContent {
    /// `subject`.
    pub subject: String,
    /// `body`, HTML, with the `preheader` (if any) as a hidden first line.
    pub html: String,
    /// `text` when the message has one, otherwise derived from the HTML.
    pub text: String,
}

impl EmailContent {
    /// Reads `subject`, `body` (HTML), `preheader` and `text` from the message.
    ///
    /// A missing subject or body is a permanent failure: the compiler
    /// requires both, so their absence means a malformed outbox line.
    pub fn from_message(msg: &Outgoing) -> Result<Self, DeliveryError> {
        let field = |name: &str| msg.content.get(name).and_then(|v| v.as_str());
        let subject = field("subject").ok_or_else(|| {
            DeliveryError::permanent(0, "the email has no `subject` content field")
        })?;
        let body = field("body")
            .ok_or_else(|| DeliveryError::permanent(0, "the email has no `body` content field"))?;
        let text = match field("text") {
            Some(text) => text.to_string(),
            None => html_to_text(body).map_err(|e| {
                DeliveryError::permanent(0, format!("cannot derive the plain-text part: {e}"))
            })?,
        };
        let html = match field("preheader").filter(|p| !p.is_empty()) {
            Some(pre) => with_preheader(body, pre),
            None => body.to_string(),
        };
        Ok(EmailContent {
            subject: subject.to_string(),
            html,
            text,
        })
    }
}

/// Renders HTML as readable plain text (links kept as footnotes).
fn html_to_text(html: &str) -> Result<String, html2text::Error> {
    // A link broken over two lines cannot be followed, however long it is.
    let text = html2text::config::plain()
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), TEXT_WIDTH)?;
    Ok(text.trim_end().to_string() + "\n")
}

/// Puts the preheader first in the body, hidden, where inboxes show it as
/// the preview line.
fn with_preheader(html: &str, preheader: &str) -> String {
    let hidden = format!(
        "<div style=\"display:none;max-height:0;overflow:hidden\">{}</div>",
        escape_html(preheader)
    );
    // Right after `<body ...>` when there is one, else at the very start.
    let lower = html.to_ascii_lowercase();
    let at = lower
        .find("<body")
        .and_then(|start| html[start..].find('>').map(|end| start + end + 1))
        .unwrap_or(0);
    format!("{}{hidden}{}", &html[..at], &html[at..])
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// The `Message-ID` of the email sent for `idempotency_key`, from `domain`.
///
/// Deterministic and reversible, so a bounce that quotes the Message-ID
/// leads back to the send: characters not allowed in a message id
/// (RFC 5322 `atext`) are written as `=XX`, the byte in hex.
pub fn message_id(idempotency_key: &str, domain: &str) -> String {
    let mut id = String::with_capacity(idempotency_key.len() + domain.len() + 3);
    id.push('<');
    for b in idempotency_key.bytes() {
        let atext = b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~.".contains(&b);
        if atext {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("={b:02X}"));
        }
    }
    id.push('@');
    id.push_str(domain);
    id.push('>');
    id
}

/// Characters left as they are in a query value (RFC 3986 unreserved).
pub(crate) const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One-click unsubscribe links: a base URL plus a signed per-recipient token.
///
/// The link is `BASE?c=CUSTOMER&ch=CHANNEL&t=TOKEN`, where the token is the
/// HMAC-SHA256 of the customer and channel under a secret key, so a link
/// cannot be forged for another customer. Whatever serves `BASE` verifies
/// it with [`Unsubscribe::verify`].
#[derive(Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    base_url: String,
    secret: String,
}

impl fmt::Debug for Unsubscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is left out: it signs every link.
        f.debug_struct("Unsubscribe")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Unsubscribe {
    /// Links under `base_url` (https, or http for local tests), signed with `secret`.
    pub fn new(
        plugin: &'static str,
        base_url: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<Self, ProviderConfigError> {
        let base_url = base_url.into();
        let secret = secret.into();
        crate::webhook::check_url(&base_url).map_err(|e| {
            ProviderConfigError::new(plugin, format!("`unsubscribe_url`: {}", e.reason))
        })?;
        if base_url.contains('#') {
            return Err(ProviderConfigError::new(
                plugin,
                "`unsubscribe_url` must not have a #fragment",
            ));
        }
        // Shorter keys make the links guessable.
        if secret.len() < 16 {
            return Err(ProviderConfigError::new(
                plugin,
                "`unsubscribe_secret` must be at least 16 characters",
            ));
        }
        Ok(Unsubscribe { base_url, secret })
    }

    /// The base URL the links start with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The signed token of `customer` on `channel`.
    pub fn token(&self, customer: &str, channel: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        // Length-prefixed, so ("ab", "c") and ("a", "bc") sign differently.
        mac.update(&(customer.len() as u64).to_be_bytes());
        mac.update(customer.as_bytes());
        mac.update(channel.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the one [`Unsubscribe::token`] gives for this customer and channel.
    pub fn verify(&self, customer: &str, channel: &str, token: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(&(customer.len() as u64).to_be_bytes());
        mac.update(customer.as_bytes());
        mac.update(channel.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&raw).is_ok()
    }

    /// The unsubscribe link of `customer` on `channel`.
    pub fn url(&self, customer: &str, channel: &str) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}c={}&ch={}&t={}",
            self.base_url,
            utf8_percent_encode(customer, QUERY_VALUE),
            utf8_percent_encode(channel, QUERY_VALUE),
            self.token(customer, channel)
        )
    }

    /// The preference-page link of `customer`: the page beside the
    /// unsubscribe page (`…/preferences` for `…/unsubscribe`), signed for
    /// the `preferences` channel as the page checks it.
    pub fn preferences_url(&self, customer: &str) -> String {
        let (base, query) = match self.base_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.base_url.as_str(), None),
        };
        let dir = base.rsplit_once('/').map_or(base, |(dir, _)| dir);
        let sep = match query {
            Some(q) => format!("?{q}&"),
            None => "?".to_string(),
        };
        format!(
            "{dir}/preferences{sep}c={}&t={}",
            utf8_percent_encode(customer, QUERY_VALUE),
            self.token(customer, "preferences")
        )
    }

    /// `msg` with the marks of `unsubscribe_url` and `preferences_url` in its
    /// content replaced by the customer's signed links (HTML-escaped in the
    /// `body`, which is HTML); `msg` itself when it has none.
    pub fn fill_links<'m>(&self, msg: &'m Outgoing) -> std::borrow::Cow<'m, Outgoing> {
        use nudge_bytecode::{PREFERENCES_URL_MARK, UNSUBSCRIBE_URL_MARK};
        let marked = msg.content.values().any(|v| {
            v.as_str().is_some_and(|s| {
                s.contains(UNSUBSCRIBE_URL_MARK) || s.contains(PREFERENCES_URL_MARK)
            })
        });
        if !marked {
            return std::borrow::Cow::Borrowed(msg);
        }
        let unsubscribe = self.url(&msg.customer, &msg.channel);
        let preferences = self.preferences_url(&msg.customer);
        let mut filled = msg.clone();
        for (key, value) in filled.content.iter_mut() {
            let Some(text) = value.as_str() else { continue };
            let html = key == "body";
            let link = |url: &str| {
                if html {
                    url.replace('&', "&amp;")
                } else {
                    url.to_string()
                }
            };
            let text = text
                .replace(UNSUBSCRIBE_URL_MARK, &link(&unsubscribe))
                .replace(PREFERENCES_URL_MARK, &link(&preferences));
            *value = serde_json::Value::String(text);
        }
        std::borrow::Cow::Owned(filled)
    }

    /// The RFC 8058 headers for a message: none for transactional email.
    pub(crate) fn headers(&self, msg: &Outgoing) -> Vec<(&'static str, String)> {
        if msg.purpose == Purpose::Transactional {
            return Vec::new();
        }
        vec![
            (
                "List-Unsubscribe",
                format!("<{}>", self.url(&msg.customer, &msg.channel)),
            ),
            (
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_string(),
            ),
        ]
    }
}

/// Parses a configured sender, e.g. `Shop <news@shop.example>`.
pub(crate) fn parse_from(plugin: &'static str, from: &str) -> Result<Mailbox, ProviderConfigError> {
    from.parse::<Mailbox>().map_err(|e| {
        ProviderConfigError::new(plugin, format!("`from` = {from:?} is not an address: {e}"))
    })
}

/// Parses the recipient; a bad address fails the send for good.
pub(crate) fn parse_to(to: &str) -> Result<Mailbox, DeliveryError> {
    to.parse::<Mailbox>()
        .map_err(|e| DeliveryError::permanent(0, format!("{to:?} is not an email address: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preference_link_sits_beside_the_unsubscribe_page() {
        let secret = "test-secret-0123456789";
        let links =
            Unsubscribe::new("smtp", "https://shop.example/mail/unsubscribe", secret).unwrap();
        let url = links.preferences_url("cus 1");
        let token = links.token("cus 1", "preferences");
        assert_eq!(
            url,
            format!("https://shop.example/mail/preferences?c=cus%201&t={token}")
        );
        assert_ne!(token, links.token("cus 1", "email"));
        let with_query = Unsubscribe::new("smtp", "https://shop.example/u?shop=7", secret).unwrap();
        assert!(
            with_query
                .preferences_url("c")
                .starts_with("https://shop.example/preferences?shop=7&c=c&t="),
            "{}",
            with_query.preferences_url("c")
        );
    }

    fn msg(content: serde_json::Value) -> Outgoing {
        Outgoing {
            at: "2024-05-01T10:00:00Z".into(),
            flow: "cart".into(),
            flow_version: "v1".into(),
            message: "reminder".into(),
            channel: "email".into(),
            customer: "cus 1&2".into(),
            to: "ann@example.com".into(),
            idempotency_key: "cart:cus_1:step-2".into(),
            content: content.as_object().cloned().unwrap_or_default(),
            purpose: Purpose::Marketing,
        }
    }

    #[test]
    fn text_is_derived_from_html_when_missing() {
        let m = msg(serde_json::json!({
            "subject": "Your cart",
            "body": "<html><body><h1>Hi Ann</h1><p>Your <b>cart</b> &amp; more.</p><ul><li>Shoes</li></ul><p><a href=\"https://shop.example/cart\">Back to your cart</a></p></body></html>",
        }));
        let email = EmailContent::from_message(&m).unwrap();
        // Links keep their target, as a numbered reference.
        assert!(
            email.text.contains("[Back to your cart][1]"),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("[1]: https://shop.example/cart"),
            "{}",
            email.text
        );
        assert_eq!(email.subject, "Your cart");
        assert!(email.text.contains("Hi Ann"), "{}", email.text);
        assert!(email.text.contains("cart & more."), "{}", email.text);
        assert!(email.text.contains("Shoes"), "{}", email.text);
        assert!(!email.text.contains('<'), "{}", email.text);
    }

    #[test]
    fn given_text_and_preheader_are_used() {
        let m = msg(serde_json::json!({
            "subject": "S",
            "preheader": "Still <there>?",
            "body": "<html><BODY class=\"x\"><p>Hi</p></BODY></html>",
            "text": "Hi (text)",
        }));
        let email = EmailContent::from_message(&m).unwrap();
        assert_eq!(email.text, "Hi (text)");
        assert_eq!(
            email.html,
            "<html><BODY class=\"x\"><div style=\"display:none;max-height:0;overflow:hidden\">Still &lt;there&gt;?</div><p>Hi</p></BODY></html>"
        );
    }

    #[test]
    fn missing_fields_fail_for_good() {
        let err = EmailContent::from_message(&msg(serde_json::json!({"body": "x"}))).unwrap_err();
        assert!(!err.retryable && err.reason.contains("subject"), "{err}");
        let err =
            EmailContent::from_message(&msg(serde_json::json!({"subject": "x"}))).unwrap_err();
        assert!(err.reason.contains("body"), "{err}");
    }

    #[test]
    fn message_ids_escape_what_rfc_5322_forbids() {
        assert_eq!(
            message_id("cart:cus_1:step-2", "shop.example"),
            "<cart=3Acus_1=3Astep-2@shop.example>"
        );
        assert_eq!(message_id("a b=c", "x.y"), "<a=20b=3Dc@x.y>");
        // Distinct keys never share an id.
        assert_ne!(message_id("a:b", "d"), message_id("a=3Ab", "d"));
    }

    #[test]
    fn unsubscribe_links_are_signed_per_recipient() {
        let u = Unsubscribe::new("smtp", "https://shop.example/u", "0123456789abcdef").unwrap();
        let url = u.url("cus 1&2", "email");
        let token = u.token("cus 1&2", "email");
        assert_eq!(
            url,
            format!("https://shop.example/u?c=cus%201%262&ch=email&t={token}")
        );
        assert!(u.verify("cus 1&2", "email", &token));
        assert!(!u.verify("cus 1&3", "email", &token));
        assert!(!u.verify("cus 1&2", "sms", &token));
        assert!(!u.verify("cus 1&2", "email", "not base64!"));
        assert_ne!(token, u.token("cus 1&", "2email"));
        let other =
            Unsubscribe::new("smtp", "https://shop.example/u", "another secret key").unwrap();
        assert!(!other.verify("cus 1&2", "email", &token));
        let with_query =
            Unsubscribe::new("smtp", "https://s.example/u?l=news", "0123456789abcdef").unwrap();
        assert!(
            with_query
                .url("c", "email")
                .starts_with("https://s.example/u?l=news&c=c&")
        );
    }

    #[test]
    fn marketing_mail_gets_one_click_headers_and_transactional_mail_does_not() {
        let u = Unsubscribe::new("smtp", "https://shop.example/u", "0123456789abcdef").unwrap();
        let mut m = msg(serde_json::json!({}));
        let headers = u.headers(&m);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "List-Unsubscribe");
        assert_eq!(headers[0].1, format!("<{}>", u.url("cus 1&2", "email")));
        assert_eq!(
            headers[1],
            (
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_string()
            )
        );
        m.purpose = Purpose::Transactional;
        assert!(u.headers(&m).is_empty());
    }

    #[test]
    fn unsubscribe_settings_are_checked() {
        let err = Unsubscribe::new("smtp", "shop.example/u", "0123456789abcdef").unwrap_err();
        assert!(err.reason.contains("unsubscribe_url"), "{err}");
        let err = Unsubscribe::new("smtp", "https://shop.example/u", "short").unwrap_err();
        assert!(err.reason.contains("16 characters"), "{err}");
        let u = Unsubscribe::new("smtp", "https://shop.example/u", "0123456789abcdef").unwrap();
        assert!(!format!("{u:?}").contains("0123456789abcdef"));
    }
}
