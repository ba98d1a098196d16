//! Email through Postmark's `POST /email` API.

use std::fmt;

use serde_json::{Value, json};

use crate::email::{parse_from, parse_to};
use crate::http::{Client, check_base_url, required};
use crate::{
    DeliveryError, EmailContent, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Purpose,
    Receipt, Unsubscribe,
};

const PLUGIN: &str = "postmark";

/// Postmark keeps metadata values to this many characters.
const METADATA_VALUE_LIMIT: usize = 80;

/// Where and how a [`Postmark`] plugin sends.
#[derive(Clone, PartialEq, Eq)]
pub struct PostmarkConfig {
    /// The server API token, sent as `X-Postmark-Server-Token`.
    pub server_token: String,
    /// The sender, e.g. `Shop <news@shop.example>`; a confirmed sender signature.
    pub from: String,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<String>,
    /// The message stream for transactional messages (Postmark's default: `outbound`).
    pub transactional_stream: String,
    /// The message stream for marketing messages (a broadcast stream, by default `broadcast`).
    pub marketing_stream: String,
    /// The API's base URL; `https://api.postmarkapp.com` unless testing.
    pub api_url: String,
    /// Signed one-click unsubscribe links, put on every marketing message.
    pub unsubscribe: Unsubscribe,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for PostmarkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is left out.
        f.debug_struct("PostmarkConfig")
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("transactional_stream", &self.transactional_stream)
            .field("marketing_stream", &self.marketing_stream)
            .field("api_url", &self.api_url)
            .field("unsubscribe", &self.unsubscribe)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PostmarkConfig {
    /// A config for Postmark's public API with its default streams and settings.
    pub fn new(
        server_token: impl Into<String>,
        from: impl Into<String>,
        unsubscribe: Unsubscribe,
    ) -> Self {
        PostmarkConfig {
            server_token: server_token.into(),
            from: from.into(),
            reply_to: None,
            transactional_stream: "outbound".to_string(),
            marketing_stream: "broadcast".to_string(),
            api_url: "https://api.postmarkapp.com".to_string(),
            unsubscribe,
            settings: ProviderSettings::default(),
        }
    }
}

/// A plugin that sends each email message with Postmark's `POST /email`.
///
/// Marketing goes to the broadcast stream with the RFC 8058 headers,
/// transactional mail to the transactional stream. The idempotency key, flow
/// and message travel as `Metadata` (which Postmark returns in its webhooks;
/// values longer than Postmark's 80 characters are left out), and the
/// receipt records Postmark's `MessageID`. Retries and timeouts work as for
/// [`SendGrid`](crate::SendGrid).
pub struct Postmark {
    url: String,
    token: String,
    from: String,
    reply_to: Option<String>,
    transactional_stream: String,
    marketing_stream: String,
    unsubscribe: Unsubscribe,
    client: Client,
}

impl fmt::Debug for Postmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postmark")
            .field("url", &self.url)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Postmark {
    /// Checks `config` and makes the plugin.
    pub fn new(config: PostmarkConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "server_token", &config.server_token)?;
        required(PLUGIN, "transactional_stream", &config.transactional_stream)?;
        required(PLUGIN, "marketing_stream", &config.marketing_stream)?;
        config.settings.check(PLUGIN)?;
        let base = check_base_url(PLUGIN, &config.api_url)?;
        let from = parse_from(PLUGIN, &config.from)?.to_string();
        let reply_to = config
            .reply_to
            .as_deref()
            .map(|r| parse_from(PLUGIN, r).map(|m| m.to_string()))
            .transpose()?;
        Ok(Postmark {
            url: format!("{base}/email"),
            token: config.server_token,
            from,
            reply_to,
            transactional_stream: config.transactional_stream,
            marketing_stream: config.marketing_stream,
            unsubscribe: config.unsubscribe,
            client: Client::new(&config.settings, true),
        })
    }

    /// The JSON request body for `msg`, as Postmark documents it.
    pub fn request_body(&self, msg: &Outgoing) -> Result<Value, DeliveryError> {
        let content = EmailContent::from_message(&self.unsubscribe.fill_links(msg))?;
        let to = parse_to(&msg.to)?;
        let stream = match msg.purpose {
            Purpose::Marketing => &self.marketing_stream,
            Purpose::Transactional => &self.transactional_stream,
        };
        let mut metadata = serde_json::Map::new();
        for (name, value) in [
            ("nudge_key", &msg.idempotency_key),
            ("nudge_flow", &msg.flow),
            ("nudge_message", &msg.message),
        ] {
            if value.chars().count() <= METADATA_VALUE_LIMIT {
                metadata.insert(name.into(), Value::String(value.clone()));
            }
        }
        let headers: Vec<Value> = self
            .unsubscribe
            .headers(msg)
            .into_iter()
            .map(|(name, value)| json!({ "Name": name, "Value": value }))
            .collect();
        let mut body = json!({
            "From": self.from,
            "To": to.to_string(),
            "Subject": content.subject,
            "HtmlBody": content.html,
            "TextBody": content.text,
            "Tag": msg.message,
            "Headers": headers,
            "Metadata": metadata,
            "MessageStream": stream,
        });
        if let Some(reply_to) = &self.reply_to {
            body["ReplyTo"] = Value::String(reply_to.clone());
        }
        Ok(body)
    }
}

impl Plugin for Postmark {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let body = serde_json::to_vec(&self.request_body(msg)?).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize the request: {e}"))
        })?;
        let what = format!("POST {}", self.url);
        let (url, token) = (&self.url, &self.token);
        let accepted = self.client.send(&what, |agent| {
            agent
                .post(url)
                .header("Accept", "application/json")
                .header("X-Postmark-Server-Token", token)
                .header("Content-Type", "application/json")
                .send(&body[..])
        })?;
        Ok(accepted.receipt("MessageID"))
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}
