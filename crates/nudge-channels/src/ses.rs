//! Email through Amazon SES's v2 API (`SendEmail`), signed with AWS
//! Signature Version 4.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lettre::message::Mailbox;
use serde_json::{Value, json};

use crate::email::{parse_from, parse_to};
use crate::http::{Client, check_base_url, required};
use crate::sigv4::{self, Credentials};
use crate::{
    DeliveryError, EmailContent, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Receipt,
    Unsubscribe,
};

const PLUGIN: &str = "ses";

/// The message tag that carries a send's idempotency key, base64url
/// encoded: SES allows only letters, digits, `_` and `-` in tag values.
pub const KEY_TAG: &str = "nudge_key";

/// Where and how an [`Ses`] plugin sends.
#[derive(Clone, PartialEq, Eq)]
pub struct SesConfig {
    /// The IAM access key id (`AKIA…`).
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// The AWS region SES sends from, e.g. `eu-west-1`.
    pub region: String,
    /// The sender, a verified identity in SES.
    pub from: String,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<String>,
    /// The configuration set whose event destination (an SNS topic)
    /// reports bounces, complaints and deliveries.
    pub configuration_set: Option<String>,
    /// The API's base URL; `https://email.{region}.amazonaws.com` unless testing.
    pub api_url: Option<String>,
    /// Signed one-click unsubscribe links, put on every marketing message.
    pub unsubscribe: Unsubscribe,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for SesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the session token are left out.
        f.debug_struct("SesConfig")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("configuration_set", &self.configuration_set)
            .field("api_url", &self.api_url)
            .field("unsubscribe", &self.unsubscribe)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SesConfig {
    /// A config for SES's public API in `region` with default settings.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
        from: impl Into<String>,
        unsubscribe: Unsubscribe,
    ) -> Self {
        SesConfig {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            region: region.into(),
            from: from.into(),
            reply_to: None,
            configuration_set: None,
            api_url: None,
            unsubscribe,
            settings: ProviderSettings::default(),
        }
    }
}

/// A plugin that sends each email with `POST /v2/email/outbound-emails`.
///
/// The request carries the plain-text and HTML parts, the RFC 8058 headers
/// on marketing messages, and the idempotency key as the `nudge_key`
/// message tag, which SES returns in its notifications. 429 and 5xx are
/// retried with backoff; SES does not deduplicate, so a try that timed out
/// is repeated only while tries remain, and the last is reported unknown.
pub struct Ses {
    url: String,
    signer: Signer,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    configuration_set: Option<String>,
    unsubscribe: Unsubscribe,
    client: Client,
}

impl fmt::Debug for Ses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ses")
            .field("url", &self.url)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Ses {
    /// Checks `config` and makes the plugin.
    pub fn new(config: SesConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "access_key_id", &config.access_key_id)?;
        required(PLUGIN, "secret_access_key", &config.secret_access_key)?;
        required(PLUGIN, "region", &config.region)?;
        config.settings.check(PLUGIN)?;
        if !config
            .region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ProviderConfigError::new(
                PLUGIN,
                format!("`region` = {:?} is not an AWS region", config.region),
            ));
        }
        let base = match &config.api_url {
            Some(url) => check_base_url(PLUGIN, url)?,
            None => format!("https://email.{}.amazonaws.com", config.region),
        };
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest);
        let (host, prefix) = match authority.split_once('/') {
            Some((host, prefix)) => (host.to_string(), format!("/{prefix}")),
            None => (authority.to_string(), String::new()),
        };
        let from = parse_from(PLUGIN, &config.from)?;
        let reply_to = config
            .reply_to
            .as_deref()
            .map(|r| parse_from(PLUGIN, r))
            .transpose()?;
        let path = format!("{prefix}/v2/email/outbound-emails");
        Ok(Ses {
            url: format!("{base}/v2/email/outbound-emails"),
            signer: Signer {
                host,
                path,
                region: config.region,
                credentials: Credentials {
                    access_key_id: config.access_key_id,
                    secret_access_key: config.secret_access_key,
                    session_token: config.session_token.filter(|t| !t.trim().is_empty()),
                },
            },
            from,
            reply_to,
            configuration_set: config.configuration_set,
            unsubscribe: config.unsubscribe,
            client: Client::new(&config.settings, true),
        })
    }

    /// The JSON request body for `msg`, as SES documents `SendEmail`.
    pub fn request_body(&self, msg: &Outgoing) -> Result<Value, DeliveryError> {
        let content = EmailContent::from_message(&self.unsubscribe.fill_links(msg))?;
        let to = parse_to(&msg.to)?;
        let utf8 = |text: &str| json!({ "Data": text, "Charset": "UTF-8" });
        let mut simple = json!({
            "Subject": utf8(&content.subject),
            "Body": { "Text": utf8(&content.text), "Html": utf8(&content.html) },
        });
        let headers: Vec<Value> = self
            .unsubscribe
            .headers(msg)
            .into_iter()
            .map(|(name, value)| json!({ "Name": name, "Value": value }))
            .collect();
        if !headers.is_empty() {
            simple["Headers"] = Value::Array(headers);
        }
        let mut body = json!({
            "FromEmailAddress": self.from.to_string(),
            "Destination": { "ToAddresses": [to.to_string()] },
            "Content": { "Simple": simple },
            "EmailTags": [
                { "Name": KEY_TAG, "Value": URL_SAFE_NO_PAD.encode(&msg.idempotency_key) },
            ],
        });
        if let Some(reply_to) = &self.reply_to {
            body["ReplyToAddresses"] = json!([reply_to.to_string()]);
        }
        if let Some(set) = &self.configuration_set {
            body["ConfigurationSetName"] = json!(set);
        }
        Ok(body)
    }
}

/// What signs a request: SES's host and path, the region and the keys.
struct Signer {
    host: String,
    path: String,
    region: String,
    credentials: Credentials,
}

impl Signer {
    /// The headers of a request with `body` sent at `amz_date`, signed.
    fn headers(&self, body: &[u8], amz_date: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("content-type".to_string(), "application/json".to_string()),
            ("x-amz-date".to_string(), amz_date.to_string()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let request = sigv4::Request {
            method: "POST",
            path: &self.path,
            query: "",
            headers: headers.clone(),
            body,
        };
        let auth = sigv4::authorization(&request, &self.credentials, &self.region, "ses", amz_date);
        headers.push(("authorization".to_string(), auth));
        // ureq sets Host itself, from the URL.
        headers.retain(|(n, _)| n != "host");
        headers
    }
}

/// The idempotency key a `nudge_key` tag value carries.
pub fn key_of_tag(value: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
    String::from_utf8(bytes).ok().filter(|k| !k.is_empty())
}

impl Plugin for Ses {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let body = serde_json::to_vec(&self.request_body(msg)?).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize the request: {e}"))
        })?;
        let what = format!("POST {}", self.url);
        let (url, signer) = (&self.url, &self.signer);
        let accepted = self.client.send(&what, |agent| {
            // Each try is signed anew: a signature is good for five minutes.
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let mut request = agent.post(url);
            for (name, value) in signer.headers(&body, &amz_date) {
                request = request.header(name, value);
            }
            request.send(&body[..])
        })?;
        Ok(accepted.receipt("MessageId"))
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}
