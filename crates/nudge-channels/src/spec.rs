//! Which plugin a channel uses: the command-line forms `outbox`, `stdout`,
//! `webhook=URL`, and the providers configured in `nudge.toml`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::webhook::check_url;
use crate::{
    AudienceSync, Fcm, FcmConfig, GoogleCustomerMatch, GoogleCustomerMatchConfig, Lines,
    MetaAudience, MetaAudienceConfig, OutboxError, OutboxFile, OutboxMode, PhoneRules, Platform,
    Plugin, Postmark, PostmarkConfig, ProviderConfigError, SendGrid, SendGridConfig, Ses,
    SesConfig, Smtp, SmtpConfig, Twilio, TwilioConfig, Webhook, WebhookConfig, WebhookConfigError,
};

/// Which plugin to use, as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSpec {
    /// `outbox`: JSON lines in the outbox file, whose path the caller supplies.
    Outbox,
    /// `stdout`: JSON lines on standard output.
    Stdout,
    /// `webhook=URL`: an HTTP POST per message; headers, timeout and retries
    /// can be adjusted on the config before building.
    Webhook(WebhookConfig),
    /// `smtp`: email over SMTP (configured in `nudge.toml`).
    Smtp(SmtpConfig),
    /// `sendgrid`: email through SendGrid's v3 API (configured in `nudge.toml`).
    SendGrid(SendGridConfig),
    /// `postmark`: email through Postmark's API (configured in `nudge.toml`).
    Postmark(PostmarkConfig),
    /// `twilio`: SMS through Twilio's Messages API (configured in `nudge.toml`).
    Twilio(TwilioConfig),
    /// `ses`: email through Amazon SES's v2 API (configured in `nudge.toml`).
    Ses(SesConfig),
    /// `fcm`: push through Firebase Cloud Messaging (configured in `nudge.toml`).
    Fcm(FcmConfig),
}

/// Providers that need more settings than a command line can carry.
const CONFIGURED_ONLY: [&str; 8] = [
    "smtp",
    "sendgrid",
    "postmark",
    "ses",
    "twilio",
    "fcm",
    "meta_audience",
    "google_customer_match",
];

const EXPECTED: &str = "expected `outbox`, `stdout` or `webhook=URL`";

impl FromStr for PluginSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| SpecError {
            spec: s.to_string(),
            reason,
        };
        let spec = s.trim();
        let (name, value) = match spec.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (spec, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("", _) => Err(err(format!("no plugin named; {EXPECTED}"))),
            ("outbox", None) => Ok(PluginSpec::Outbox),
            ("stdout", None) => Ok(PluginSpec::Stdout),
            ("outbox", Some(_)) => Err(err(
                "`outbox` takes no value; the outbox path is set separately".to_string(),
            )),
            ("stdout", Some(_)) => Err(err("`stdout` takes no value".to_string())),
            ("webhook", None) | ("webhook", Some("")) => Err(err(
                "`webhook` needs a URL, e.g. webhook=http://127.0.0.1:8080/hook".to_string(),
            )),
            ("webhook", Some(url)) => {
                check_url(url).map_err(|e| err(e.reason))?;
                Ok(PluginSpec::Webhook(WebhookConfig::new(url)))
            }
            (provider, _) if CONFIGURED_ONLY.contains(&provider) => Err(err(format!(
                "`{provider}` needs settings (credentials, sender); configure it in nudge.toml under [channels.NAME]"
            ))),
            _ => Err(err(format!("unknown plugin `{name}`; {EXPECTED}"))),
        }
    }
}

impl fmt::Display for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSpec::Outbox => write!(f, "outbox"),
            PluginSpec::Stdout => write!(f, "stdout"),
            PluginSpec::Webhook(config) => write!(f, "webhook={}", config.url),
            PluginSpec::Smtp(config) => write!(f, "smtp ({})", config.host),
            PluginSpec::SendGrid(_) => write!(f, "sendgrid"),
            PluginSpec::Postmark(_) => write!(f, "postmark"),
            PluginSpec::Twilio(_) => write!(f, "twilio"),
            PluginSpec::Fcm(_) => write!(f, "fcm"),
            PluginSpec::Ses(config) => write!(f, "ses ({})", config.region),
        }
    }
}

impl PluginSpec {
    /// Makes the plugin; `outbox` and `mode` are used only by [`PluginSpec::Outbox`].
    pub fn build(&self, outbox: &Path, mode: OutboxMode) -> Result<Box<dyn Plugin>, SetupError> {
        Ok(match self {
            PluginSpec::Outbox => Box::new(OutboxFile::open(outbox, mode)?),
            PluginSpec::Stdout => Box::new(Lines::stdout()),
            PluginSpec::Webhook(config) => Box::new(Webhook::new(config.clone())?),
            PluginSpec::Smtp(config) => Box::new(Smtp::new(config.clone())?),
            PluginSpec::SendGrid(config) => Box::new(SendGrid::new(config.clone())?),
            PluginSpec::Postmark(config) => Box::new(Postmark::new(config.clone())?),
            PluginSpec::Twilio(config) => Box::new(Twilio::new(config.clone())?),
            PluginSpec::Fcm(config) => Box::new(Fcm::new(config.clone())?),
            PluginSpec::Ses(config) => Box::new(Ses::new(config.clone())?),
        })
    }
}

/// Which ad platform the `audience` channel's membership changes go to,
/// configured in `nudge.toml` under `[channels.audience]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudienceSpec {
    /// `meta_audience`: Meta Custom Audiences.
    Meta(MetaAudienceConfig),
    /// `google_customer_match`: Google Ads Customer Match.
    Google(GoogleCustomerMatchConfig),
}

impl AudienceSpec {
    /// Makes the plugin.
    pub fn build(&self) -> Result<Box<dyn AudienceSync>, ProviderConfigError> {
        Ok(match self {
            AudienceSpec::Meta(c) => Box::new(MetaAudience::new(c.clone())?),
            AudienceSpec::Google(c) => Box::new(GoogleCustomerMatch::new(c.clone())?),
        })
    }

    /// The platform whose hashing rules apply.
    pub fn platform(&self) -> Platform {
        match self {
            AudienceSpec::Meta(_) => Platform::Meta,
            AudienceSpec::Google(_) => Platform::Google,
        }
    }

    /// How the plugin reads national phone numbers.
    pub fn phone_rules(&self) -> &PhoneRules {
        match self {
            AudienceSpec::Meta(c) => &c.phone,
            AudienceSpec::Google(c) => &c.phone,
        }
    }
}

impl fmt::Display for AudienceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudienceSpec::Meta(_) => write!(f, "meta_audience"),
            AudienceSpec::Google(_) => write!(f, "google_customer_match"),
        }
    }
}

/// Why a plugin spec could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid plugin `{}`: {}", self.spec, self.reason)
    }
}

impl std::error::Error for SpecError {}

/// Why a plugin could not be made from a valid spec.
#[derive(Debug)]
pub enum SetupError {
    /// The outbox file could not be opened.
    Outbox(OutboxError),
    /// The webhook configuration is unusable.
    Webhook(WebhookConfigError),
    /// A provider's configuration is unusable.
    Provider(ProviderConfigError),
}

impl From<ProviderConfigError> for SetupError {
    fn from(e: ProviderConfigError) -> Self {
        SetupError::Provider(e)
    }
}

impl From<OutboxError> for SetupError {
    fn from(e: OutboxError) -> Self {
        SetupError::Outbox(e)
    }
}

impl From<WebhookConfigError> for SetupError {
    fn from(e: WebhookConfigError) -> Self {
        SetupError::Webhook(e)
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Outbox(e) => e.fmt(f),
            SetupError::Webhook(e) => e.fmt(f),
            SetupError::Provider(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Outbox(e) => Some(e),
            SetupError::Webhook(e) => Some(e),
            SetupError::Provider(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!("outbox".parse::<PluginSpec>(), Ok(PluginSpec::Outbox));
        assert_eq!(" Stdout ".parse::<PluginSpec>(), Ok(PluginSpec::Stdout));
        assert_eq!(
            "webhook=http://127.0.0.1:8080/hook?a=b".parse::<PluginSpec>(),
            Ok(PluginSpec::Webhook(WebhookConfig::new(
                "http://127.0.0.1:8080/hook?a=b"
            )))
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["outbox", "stdout", "webhook=http://localhost/x"] {
            let spec: PluginSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn bad_specs_say_why() {
        for (text, expected) in [
            ("", "no plugin named"),
            ("smtp", "configure it in nudge.toml"),
            ("twilio=x", "configure it in nudge.toml"),
            ("pigeon", "unknown plugin `pigeon`"),
            ("outbox=out.jsonl", "takes no value"),
            ("stdout=x", "takes no value"),
            ("webhook", "needs a URL"),
            ("webhook=", "needs a URL"),
            ("webhook=localhost:8080", "expected http:// or https://"),
            ("webhook=mailto:x@y", "expected http:// or https://"),
        ] {
            let err = text.parse::<PluginSpec>().unwrap_err();
            assert_eq!(err.spec, text);
            assert!(err.reason.contains(expected), "{text}: {err}");
            assert!(err.to_string().starts_with("invalid plugin"), "{err}");
        }
    }

    #[test]
    fn builds_named_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("sub/outbox.jsonl");
        let plugin = PluginSpec::Outbox
            .build(&outbox, OutboxMode::Truncate)
            .unwrap();
        assert_eq!(plugin.name(), "outbox");
        assert!(outbox.exists());
        let plugin = PluginSpec::Stdout
            .build(&outbox, OutboxMode::Append)
            .unwrap();
        assert_eq!(plugin.name(), "stdout");
        let spec: PluginSpec = "webhook=http://127.0.0.1:9/hook".parse().unwrap();
        let plugin = spec.build(&outbox, OutboxMode::Append).unwrap();
        assert_eq!(plugin.name(), "webhook");
    }

    #[test]
    fn setup_errors_carry_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be opened as the outbox file.
        let err = PluginSpec::Outbox
            .build(dir.path(), OutboxMode::Append)
            .err()
            .unwrap();
        assert!(
            matches!(err, SetupError::Outbox(OutboxError::Io { .. })),
            "{err}"
        );
        let spec = PluginSpec::Webhook(
            WebhookConfig::new("http://127.0.0.1:9/").header("Host", "elsewhere"),
        );
        let err = spec.build(dir.path(), OutboxMode::Append).err().unwrap();
        assert!(matches!(err, SetupError::Webhook(_)), "{err}");
    }
}
