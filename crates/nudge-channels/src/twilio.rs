//! SMS through Twilio's Messages API.

use std::fmt;

use percent_encoding::utf8_percent_encode;
use serde_json::Value;

use crate::http::{Client, basic_auth, check_base_url, required};
use crate::{DeliveryError, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Receipt};

const PLUGIN: &str = "twilio";

/// Where and how a [`Twilio`] plugin sends.
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// The account SID (`AC…`), in the URL and as the Basic-auth user.
    pub account_sid: String,
    /// The auth token, the Basic-auth password.
    pub auth_token: String,
    /// The sending number in E.164 (`+15005550006`), or a Messaging Service SID (`MG…`).
    pub from: String,
    /// Where Twilio reports status changes; the idempotency key is added as `nudge_key`.
    pub status_callback: Option<String>,
    /// The API's base URL; `https://api.twilio.com` unless testing.
    pub api_url: String,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The auth token is left out.
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .field("status_callback", &self.status_callback)
            .field("api_url", &self.api_url)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TwilioConfig {
    /// A config for Twilio's public API with default settings.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        TwilioConfig {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from: from.into(),
            status_callback: None,
            api_url: "https://api.twilio.com".to_string(),
            settings: ProviderSettings::default(),
        }
    }
}

/// A plugin that sends each SMS with a form-encoded
/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
///
/// 429, 5xx and refused connections are retried with backoff. A timeout is
/// not: Twilio does not deduplicate, so a resend could reach the phone
/// twice. It is reported as an unknown outcome instead. The receipt records
/// the message's SID.
pub struct Twilio {
    url: String,
    auth: String,
    from_field: &'static str,
    from: String,
    status_callback: Option<String>,
    client: Client,
}

impl fmt::Debug for Twilio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twilio")
            .field("url", &self.url)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Twilio {
    /// Checks `config` and makes the plugin.
    pub fn new(config: TwilioConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "account_sid", &config.account_sid)?;
        required(PLUGIN, "auth_token", &config.auth_token)?;
        required(PLUGIN, "from", &config.from)?;
        config.settings.check(PLUGIN)?;
        if !config
            .account_sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(ProviderConfigError::new(
                PLUGIN,
                format!(
                    "`account_sid` = {:?} is not an account SID",
                    config.account_sid
                ),
            ));
        }
        let from_field = if config.from.starts_with("MG") {
            "MessagingServiceSid"
        } else if is_e164(&config.from) {
            "From"
        } else {
            return Err(ProviderConfigError::new(
                PLUGIN,
                format!(
                    "`from` = {:?} is neither an E.164 number (+15005550006) nor a Messaging Service SID (MG…)",
                    config.from
                ),
            ));
        };
        if let Some(cb) = &config.status_callback {
            crate::webhook::check_url(cb).map_err(|e| {
                ProviderConfigError::new(PLUGIN, format!("`status_callback`: {}", e.reason))
            })?;
        }
        let base = check_base_url(PLUGIN, &config.api_url)?;
        Ok(Twilio {
            url: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                config.account_sid
            ),
            auth: basic_auth(&config.account_sid, &config.auth_token),
            from_field,
            from: config.from,
            status_callback: config.status_callback,
            client: Client::new(&config.settings, false),
        })
    }

    /// The form fields for `msg`, in the order they are sent.
    pub fn form(&self, msg: &Outgoing) -> Result<Vec<(&'static str, String)>, DeliveryError> {
        let text = msg
            .content
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| DeliveryError::permanent(0, "the SMS has no `text` content field"))?;
        if !is_e164(&msg.to) {
            return Err(DeliveryError::permanent(
                0,
                format!("{:?} is not a phone number in E.164 form", msg.to),
            ));
        }
        let mut form = vec![
            ("To", msg.to.clone()),
            (self.from_field, self.from.clone()),
            ("Body", text.to_string()),
        ];
        if let Some(cb) = &self.status_callback {
            let sep = if cb.contains('?') { '&' } else { '?' };
            form.push((
                "StatusCallback",
                format!(
                    "{cb}{sep}nudge_key={}",
                    utf8_percent_encode(&msg.idempotency_key, crate::email::QUERY_VALUE)
                ),
            ));
        }
        Ok(form)
    }
}

/// `+` and 8 to 15 digits, the first not 0.
fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

impl Plugin for Twilio {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let form = self.form(msg)?;
        let what = format!("POST {}", self.url);
        let (url, auth) = (&self.url, &self.auth);
        let accepted = self.client.send(&what, |agent| {
            agent
                .post(url)
                .header("Authorization", auth)
                .header("Accept", "application/json")
                .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
        })?;
        Ok(accepted.receipt("sid"))
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        for ok in ["+15005550006", "+447911123456", "+4930123456"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "15005550006",
            "+0123456789",
            "+1 500 555",
            "+1234567",
            "+1234567890123456",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn config_is_checked() {
        let base = || TwilioConfig::new("AC123", "token", "+15005550006");
        assert!(Twilio::new(base()).is_ok());
        let err = Twilio::new(TwilioConfig {
            from: "555-1234".into(),
            ..base()
        })
        .unwrap_err();
        assert!(err.reason.contains("E.164"), "{err}");
        let err = Twilio::new(TwilioConfig {
            auth_token: String::new(),
            ..base()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "twilio: `auth_token` must not be empty");
        let err = Twilio::new(TwilioConfig {
            account_sid: "AC/../x".into(),
            ..base()
        })
        .unwrap_err();
        assert!(err.reason.contains("account SID"), "{err}");
        let err = Twilio::new(TwilioConfig {
            status_callback: Some("cb.example/x".into()),
            ..base()
        })
        .unwrap_err();
        assert!(err.reason.contains("status_callback"), "{err}");
        let service = Twilio::new(TwilioConfig {
            from: "MG0123".into(),
            ..base()
        })
        .unwrap();
        assert_eq!(service.from_field, "MessagingServiceSid");
        assert!(!format!("{:?}", base()).contains("token\""));
    }
}
