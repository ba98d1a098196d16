//! Email through SendGrid's v3 Mail Send API.

use std::fmt;

use lettre::message::Mailbox;
use serde_json::{Map, Value, json};

use crate::email::{parse_from, parse_to};
use crate::http::{Client, check_base_url, required};
use crate::{
    DeliveryError, EmailContent, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Receipt,
    Unsubscribe,
};

const PLUGIN: &str = "sendgrid";

/// Where and how a [`SendGrid`] plugin sends.
#[derive(Clone, PartialEq, Eq)]
pub struct SendGridConfig {
    /// The API key (`SG.…`), sent as a bearer token.
    pub api_key: String,
    /// The sender, e.g. `Shop <news@shop.example>`; a verified sender in SendGrid.
    pub from: String,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<String>,
    /// The API's base URL; `https://api.sendgrid.com` unless testing.
    pub api_url: String,
    /// Signed one-click unsubscribe links, put on every marketing message.
    pub unsubscribe: Unsubscribe,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for SendGridConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The API key is left out.
        f.debug_struct("SendGridConfig")
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("api_url", &self.api_url)
            .field("unsubscribe", &self.unsubscribe)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SendGridConfig {
    /// A config for SendGrid's public API with default settings.
    pub fn new(
        api_key: impl Into<String>,
        from: impl Into<String>,
        unsubscribe: Unsubscribe,
    ) -> Self {
        SendGridConfig {
            api_key: api_key.into(),
            from: from.into(),
            reply_to: None,
            api_url: "https://api.sendgrid.com".to_string(),
            unsubscribe,
            settings: ProviderSettings::default(),
        }
    }
}

/// A plugin that sends each email message with `POST /v3/mail/send`.
///
/// The request carries the plain-text and HTML parts, the RFC 8058 headers on
/// marketing messages, and the idempotency key, flow, message and customer as
/// `custom_args`, which SendGrid returns in its event webhook. SendGrid does
/// not deduplicate, so a try that timed out is repeated only while tries
/// remain; when the last one times out the outcome is reported as unknown.
pub struct SendGrid {
    url: String,
    auth: String,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    unsubscribe: Unsubscribe,
    client: Client,
}

impl fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrid")
            .field("url", &self.url)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

fn address(mailbox: &Mailbox) -> Value {
    let mut a = Map::new();
    a.insert("email".into(), Value::String(mailbox.email.to_string()));
    if let Some(name) = &mailbox.name {
        a.insert("name".into(), Value::String(name.clone()));
    }
    Value::Object(a)
}

impl SendGrid {
    /// Checks `config` and makes the plugin.
    pub fn new(config: SendGridConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "api_key", &config.api_key)?;
        config.settings.check(PLUGIN)?;
        let base = check_base_url(PLUGIN, &config.api_url)?;
        let from = parse_from(PLUGIN, &config.from)?;
        let reply_to = config
            .reply_to
            .as_deref()
            .map(|r| parse_from(PLUGIN, r))
            .transpose()?;
        Ok(SendGrid {
            url: format!("{base}/v3/mail/send"),
            auth: format!("Bearer {}", config.api_key),
            from,
            reply_to,
            unsubscribe: config.unsubscribe,
            client: Client::new(&config.settings, true),
        })
    }

    /// The JSON request body for `msg`, as SendGrid documents it.
    pub fn request_body(&self, msg: &Outgoing) -> Result<Value, DeliveryError> {
        let content = EmailContent::from_message(&self.unsubscribe.fill_links(msg))?;
        let to = parse_to(&msg.to)?;
        let mut body = json!({
            "personalizations": [{ "to": [address(&to)] }],
            "from": address(&self.from),
            "subject": content.subject,
            // SendGrid requires text/plain before text/html.
            "content": [
                { "type": "text/plain", "value": content.text },
                { "type": "text/html", "value": content.html },
            ],
            "custom_args": {
                "nudge_key": msg.idempotency_key,
                "nudge_flow": msg.flow,
                "nudge_message": msg.message,
                "nudge_customer": msg.customer,
            },
        });
        if let Some(reply_to) = &self.reply_to {
            body["reply_to"] = address(reply_to);
        }
        let headers: Map<String, Value> = self
            .unsubscribe
            .headers(msg)
            .into_iter()
            .map(|(n, v)| (n.to_string(), Value::String(v)))
            .collect();
        if !headers.is_empty() {
            body["headers"] = Value::Object(headers);
        }
        Ok(body)
    }
}

impl Plugin for SendGrid {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let body = serde_json::to_vec(&self.request_body(msg)?).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize the request: {e}"))
        })?;
        let what = format!("POST {}", self.url);
        let (url, auth) = (&self.url, &self.auth);
        let accepted = self.client.send(&what, |agent| {
            agent
                .post(url)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send(&body[..])
        })?;
        let mut detail = format!("HTTP {}", accepted.status);
        if let Some(id) = accepted.message_id {
            detail.push_str(&format!(" X-Message-Id {id}"));
        }
        Ok(Receipt {
            attempts: accepted.attempts,
            detail: Some(detail),
        })
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}
