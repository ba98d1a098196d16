//! `nudge.toml`: the project's runtime settings (store, serving, channel
//! plugins). The file also marks the project root; an empty file is valid.
//!
//! Any string may name environment variables as `${NAME}`, so secrets stay
//! out of the file; `$$` is a literal `$`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nudge_bytecode::Channel;
use nudge_channels::feedback::postmark::PostmarkAuth;
use nudge_channels::feedback::sendgrid::SendGridVerifier;
use nudge_channels::feedback::ses::SnsVerifier;
use nudge_channels::{
    AudienceSpec, FcmConfig, GoogleCustomerMatchConfig, MetaAudienceConfig, PhoneRules, PluginSpec,
    PostmarkConfig, ProviderSettings, RateLimit, SendGridConfig, ServiceAccountKey, SesConfig,
    SmtpConfig, SmtpTls, TwilioConfig, Unsubscribe, WebhookConfig,
};
use nudge_diagnostics::{Diagnostic, SourceMap, render};
use nudge_project::manifest;
pub use nudge_project::manifest::RuntimeSection;
use serde::Deserialize;

use crate::alerts::{Kind, Rule};

/// The settings of one project, as read from its `nudge.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the durable store lives.
    #[serde(default)]
    pub store: StoreSection,
    /// Settings of `nudge serve`.
    #[serde(default)]
    pub serve: ServeSection,
    /// How each channel delivers, by channel name.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSection>,
    /// How the engine treats time.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The providers' webhooks that `nudge serve` accepts.
    #[serde(default)]
    pub feedback: FeedbackSection,
    /// The preference page that `nudge serve` shows.
    #[serde(default)]
    pub preferences: PreferencesSection,
    /// `[[alerts]]`: what `nudge serve` watches and notifies about.
    #[serde(default)]
    pub alerts: Vec<AlertSection>,
    /// Where `nudge serve` posts alert notifications.
    pub alerts_webhook: Option<AlertsWebhookSection>,
    /// Cluster mode: its services and layout (`nudge serve --cluster`,
    /// `nudge cluster init`).
    pub cluster: Option<ClusterSection>,
    /// The product catalogue that `recommend` draws on besides the events.
    #[serde(default)]
    pub catalogue: CatalogueSection,
}

/// `[catalogue]`: a catalogue file and the products served when nothing
/// else is left (docs/runtime.md, "The product catalogue").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSection {
    /// The catalogue file (CSV with a header row, or JSON lines), relative
    /// to the project root.
    pub file: Option<String>,
    /// Product ids `recommend` serves last, in this order.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// The file as written, for errors (set when the path is resolved).
    #[serde(skip)]
    pub file_name: Option<String>,
}

/// `[cluster]`: where cluster mode's services are and how its log is laid
/// out; docs/cluster.md describes each setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The NATS server(s) with JetStream (`nats://127.0.0.1:4222`).
    pub nats: String,
    /// The PostgreSQL connection string (a URL or `key=value` pairs).
    pub postgres: String,
    /// The PostgreSQL schema of the cluster's tables (`nudge` by default).
    pub schema: Option<String>,
    /// Virtual partitions, fixed when the cluster is created (256 by default).
    pub partitions: Option<u32>,
    /// Names the stream and its subjects (`nudge` by default).
    pub prefix: Option<String>,
    /// How long a repeated `messageId` is dropped for (`2m` by default).
    pub duplicate_window: Option<String>,
    /// Copies of the stream in a NATS cluster (1 by default).
    pub replicas: Option<usize>,
    /// PostgreSQL connections per ingest node (4 by default).
    pub connections: Option<usize>,
    /// How long calls stay in the log once every worker has committed
    /// them (`7d` by default; `forever` keeps them all).
    pub keep: Option<String>,
}

/// The most partitions a cluster may have.
pub const MAX_CLUSTER_PARTITIONS: u32 = 65_536;

/// One `[[alerts]]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// The alert's name, unique in the file.
    pub name: String,
    /// `event_volume_drop`, `bounce_rate`, `spam_rate`, `unsubscribe_rate`,
    /// `delivery_failure_rate` or `dead_letter_rate`.
    pub kind: String,
    /// The percentage a rate fires over.
    pub threshold: Option<f64>,
    /// The window a rate is taken over (`1h`); also how long it must stay
    /// under the threshold to resolve.
    pub window: String,
    /// The event an `event_volume_drop` watches, as calls name it.
    pub event: Option<String>,
    /// How far (percent) an `event_volume_drop` must fall below its baseline.
    pub drop: Option<f64>,
    /// The baseline before the window an `event_volume_drop` compares with
    /// (`1d` by default).
    pub baseline: Option<String>,
    /// The least volume (sends, calls, or expected events) in the window
    /// for the value to count; 1 by default.
    pub min_volume: Option<u64>,
}

/// `[alerts_webhook]`: the endpoint alert notifications are POSTed to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsWebhookSection {
    /// The endpoint.
    pub url: String,
    /// Extra request headers (an authorization token, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The limit for one try, in seconds (10 by default).
    pub timeout_seconds: Option<u64>,
}

/// `[preferences]`: what the preference page offers besides the channels.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesSection {
    /// Email lists a customer may leave or join (`Subscribed`/`Unsubscribed`
    /// with `list`), e.g. `["news", "offers"]`.
    #[serde(default)]
    pub topics: Vec<String>,
}

/// `[feedback]`: credentials of the providers' webhooks. An endpoint whose
/// provider has no credentials here is off (404), so nothing unverified
/// reaches the engine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSection {
    /// The URL providers reach `nudge serve` at (`https://nudge.shop.example`),
    /// when a proxy sits in front: Twilio signs the full URL it called.
    pub public_url: Option<String>,
    /// SendGrid's Signed Event Webhook verification key (base64 DER or PEM).
    pub sendgrid_verification_key: Option<String>,
    /// The Basic-auth user name in the webhook URL set in Postmark.
    pub postmark_username: Option<String>,
    /// Its password, at least 16 characters.
    pub postmark_password: Option<String>,
    /// Twilio's auth token; by default the `auth_token` of a `twilio` channel.
    pub twilio_auth_token: Option<String>,
    /// The ARN of the SNS topic SES reports bounces, complaints and
    /// deliveries to; envelopes from other topics are refused.
    pub ses_topic_arn: Option<String>,
    /// SNS's signing certificate for that topic: a PEM file (relative to
    /// the project) or the PEM text itself.
    pub ses_signing_certificate: Option<String>,
}

/// The default of `[runtime] checkpoint_every`: a restart replays at most
/// this many calls (under a second's work). A checkpoint writes only the
/// rows those calls changed; this often, it does not slow `nudge serve`'s
/// ingest, where one every 10,000 calls took a fifth of its throughput
/// (docs/benchmarks.md, "The state as rows").
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 100_000;

/// The default of `[runtime] max_sends_per_step`: above any one customer's
/// journey many times over; a broadcast to a larger audience in one step
/// needs it raised.
pub const DEFAULT_MAX_SENDS_PER_STEP: usize = 10_000;

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The store file, relative to the project root.
    pub path: Option<String>,
    /// How long applied calls stay in the store's log (`400d`); unset keeps them all.
    pub keep_calls: Option<String>,
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// The address to listen on.
    pub listen: Option<String>,
    /// Write keys accepted as the Basic-auth user name.
    #[serde(default)]
    pub write_keys: Vec<String>,
    /// The bearer token of `POST /admin/reload`.
    pub admin_token: Option<String>,
    /// When set, `GET /metrics` wants this bearer token.
    pub metrics_token: Option<String>,
    /// Bearer tokens that may read customers (`GET /v1/profiles/{id}`);
    /// without one the profile API is off.
    #[serde(default)]
    pub read_keys: Vec<String>,
    /// The profile traits the profile API returns.
    #[serde(default)]
    pub profile_traits: Vec<String>,
    /// The wait before a failed delivery's second round (then doubling).
    pub retry_backoff: Option<String>,
    /// How long a client may take to send a request's headers (`10s`).
    pub header_read_timeout: Option<String>,
    /// How long a client may take to send a request's body (`30s`).
    pub body_read_timeout: Option<String>,
    /// How long a kept-alive connection may wait for its next request (`5s`).
    pub idle_timeout: Option<String>,
    /// How long one request may take from its headers to its answer (`60s`).
    pub request_timeout: Option<String>,
}

/// The HTTP limits of `nudge serve`, resolved from `[serve]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's start (or its last answer) to a request's full headers.
    pub header_read: Duration,
    /// From a request's headers to the last byte of its body.
    pub body_read: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle: Duration,
    /// From a request's headers to its answer, the engine's commit included.
    pub request: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        // Segment's clients send small bodies at once and keep connections
        // open only between bursts: generous for them, short enough that a
        // few thousand slow or silent connections cannot pin the server.
        HttpLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(5),
            request: Duration::from_secs(60),
        }
    }
}

/// `[channels.NAME]`: the plugin and its settings; each plugin takes only its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// `outbox`, `stdout`, `webhook`, `smtp`, `sendgrid`, `postmark`, `ses`, `twilio`,
    /// `fcm`, `meta_audience` or `google_customer_match`.
    pub plugin: String,
    /// The webhook's endpoint.
    pub url: Option<String>,
    /// Extra webhook request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The limit for one try (webhook and providers).
    pub timeout_seconds: Option<u64>,
    /// Tries in total, the first included (webhook and providers).
    pub max_attempts: Option<u32>,
    /// The provider's allowance: sends per second, on average.
    pub rate_limit_per_second: Option<u32>,
    /// Sends allowed back to back (defaults to the rate).
    pub rate_limit_burst: Option<u32>,
    /// The sender: an address for email, a number or Messaging Service SID for Twilio.
    pub from: Option<String>,
    /// Where email replies go.
    pub reply_to: Option<String>,
    /// The base of one-click unsubscribe links (email).
    pub unsubscribe_url: Option<String>,
    /// The key that signs unsubscribe links (email), at least 16 characters.
    pub unsubscribe_secret: Option<String>,
    /// The SMTP server's host.
    pub host: Option<String>,
    /// The SMTP server's port.
    pub port: Option<u16>,
    /// `starttls` (the default), `implicit` or `none`.
    pub tls: Option<String>,
    /// The SMTP AUTH user.
    pub username: Option<String>,
    /// The SMTP AUTH password.
    pub password: Option<String>,
    /// SendGrid's API key.
    pub api_key: Option<String>,
    /// Postmark's server token.
    pub server_token: Option<String>,
    /// Postmark's stream for transactional messages.
    pub transactional_stream: Option<String>,
    /// Postmark's stream for marketing messages.
    pub marketing_stream: Option<String>,
    /// Twilio's account SID.
    pub account_sid: Option<String>,
    /// Twilio's auth token.
    pub auth_token: Option<String>,
    /// Where Twilio posts status changes.
    pub status_callback: Option<String>,
    /// A provider API's base URL, for a proxy or a test server.
    pub api_url: Option<String>,
    /// SES: the IAM access key id.
    pub access_key_id: Option<String>,
    /// SES: its secret.
    pub secret_access_key: Option<String>,
    /// SES: the session token of temporary credentials.
    pub session_token: Option<String>,
    /// SES: the AWS region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// SES: the configuration set whose SNS destination reports events.
    pub configuration_set: Option<String>,
    /// FCM: the service account's key file, downloaded from the Firebase console.
    pub service_account_file: Option<String>,
    /// FCM: the key file's JSON itself, e.g. `"${FCM_SERVICE_ACCOUNT}"`.
    pub service_account: Option<String>,
    /// FCM: the Firebase project, when not the key's `project_id`.
    pub project_id: Option<String>,
    /// Meta: a system user's access token.
    pub access_token: Option<String>,
    /// Ad audiences: each flow audience's id on the platform, by its name in the flows.
    #[serde(default)]
    pub audiences: BTreeMap<String, String>,
    /// Ad audiences: the API version in the request path.
    pub api_version: Option<String>,
    /// Ad audiences: members per request.
    pub batch_size: Option<usize>,
    /// Ad audiences: the country calling code of phone numbers written without one.
    pub phone_country_code: Option<String>,
    /// Google Ads: the account that owns the user lists.
    pub customer_id: Option<String>,
    /// Google Ads: the manager account calls go through.
    pub login_customer_id: Option<String>,
    /// Google Ads: the API developer token.
    pub developer_token: Option<String>,
    /// Google Ads: the OAuth client id.
    pub client_id: Option<String>,
    /// Google Ads: the OAuth client secret.
    pub client_secret: Option<String>,
    /// Google Ads: the OAuth refresh token.
    pub refresh_token: Option<String>,
    /// Google Ads: the OAuth token endpoint, for a test server.
    pub token_url: Option<String>,
}

/// Why `nudge.toml` could not be used: its problems as diagnostics, with
/// the file they point into.
#[derive(Debug)]
pub struct ConfigError {
    /// The manifest, the one file the diagnostics point into.
    pub sources: SourceMap,
    /// What is wrong; never empty.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// The problems as `nudge check` shows them, with the file's lines.
    pub fn render(&self, color: bool) -> String {
        render::human(&self.sources, &self.diagnostics, color)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render(false).trim_end())
    }
}

/// Said of every setting the host refuses beyond TOML and its types.
const REFUSED: &str = "`nudge run` and `nudge serve` refuse to start with this file; see docs/runtime.md for its settings";

impl Config {
    /// Reads the project's `nudge.toml`; a project without one has the defaults.
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        Self::load_with(root, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with environment lookups through `env`, for tests.
    ///
    /// The file is first checked as every tool checks it (syntax, sections,
    /// `[runtime]`), then typed and its settings checked as the host needs.
    pub fn load_with(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut sources = SourceMap::new();
        let Some(found) = manifest::read(root, &mut sources) else {
            return Ok(Config::default());
        };
        if !found.diagnostics.is_empty() {
            return Err(ConfigError {
                sources,
                diagnostics: found.diagnostics,
            });
        }
        let text = sources.get(found.file).text.clone();
        let problem = match toml::from_str::<Config>(&text) {
            Err(e) => manifest::toml_error(found.file, &text, &e),
            Ok(mut config) => match config.finish(&env, Some(root)) {
                Ok(()) => return Ok(config),
                Err(message) => {
                    manifest::invalid_setting(found.file, setting_span(&text, &message), message)
                        .with_help(REFUSED)
                }
            },
        };
        Err(ConfigError {
            sources,
            diagnostics: vec![problem],
        })
    }

    /// Parses the text of a `nudge.toml`, expanding `${NAME}` through `env`
    /// (the settings' own tests; files are read with [`Config::load`]).
    #[cfg(test)]
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        // Typed straight from the text, so errors carry line and column.
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.finish(&env, None)?;
        Ok(config)
    }

    /// Completes a typed file: expands `${NAME}`, reads relative file
    /// settings (an FCM key file) against the project `root`, and checks
    /// what serde cannot.
    fn finish(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
        root: Option<&Path>,
    ) -> Result<(), String> {
        self.expand(env)?;
        if let Some(root) = root {
            if let Some(cert) = &mut self.feedback.ses_signing_certificate
                && !cert.contains("-----BEGIN")
                && Path::new(cert.as_str()).is_relative()
            {
                *cert = root.join(&*cert).to_string_lossy().into_owned();
            }
            if let Some(file) = &mut self.catalogue.file {
                self.catalogue.file_name = Some(file.clone());
                if Path::new(file.as_str()).is_relative() {
                    *file = root.join(&*file).to_string_lossy().into_owned();
                }
            }
            for section in self.channels.values_mut() {
                if let Some(file) = &mut section.service_account_file
                    && Path::new(file.as_str()).is_relative()
                {
                    *file = root.join(&*file).to_string_lossy().into_owned();
                }
            }
        }
        self.check()
    }

    /// Expands `${NAME}` in every string setting.
    fn expand(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(p) = &mut self.store.path {
            *p = expand_str(p, "store.path", env)?;
        }
        if let Some(l) = &mut self.serve.listen {
            *l = expand_str(l, "serve.listen", env)?;
        }
        for (i, k) in self.serve.write_keys.iter_mut().enumerate() {
            *k = expand_str(k, &format!("serve.write_keys[{i}]"), env)?;
        }
        if let Some(t) = &mut self.serve.metrics_token {
            *t = expand_str(t, "serve.metrics_token", env)?;
        }
        if let Some(t) = &mut self.serve.admin_token {
            *t = expand_str(t, "serve.admin_token", env)?;
        }
        let f = &mut self.feedback;
        for (key, value) in [
            ("feedback.public_url", &mut f.public_url),
            (
                "feedback.sendgrid_verification_key",
                &mut f.sendgrid_verification_key,
            ),
            ("feedback.postmark_username", &mut f.postmark_username),
            ("feedback.postmark_password", &mut f.postmark_password),
            ("feedback.twilio_auth_token", &mut f.twilio_auth_token),
            ("feedback.ses_topic_arn", &mut f.ses_topic_arn),
            (
                "feedback.ses_signing_certificate",
                &mut f.ses_signing_certificate,
            ),
        ] {
            if let Some(v) = value {
                *v = expand_str(v, key, env)?;
            }
        }
        if let Some(c) = &mut self.cluster {
            c.nats = expand_str(&c.nats, "cluster.nats", env)?;
            c.postgres = expand_str(&c.postgres, "cluster.postgres", env)?;
        }
        if let Some(hook) = &mut self.alerts_webhook {
            hook.url = expand_str(&hook.url, "alerts_webhook.url", env)?;
            for (header, v) in &mut hook.headers {
                *v = expand_str(v, &format!("alerts_webhook.headers.{header}"), env)?;
            }
        }
        for (name, section) in &mut self.channels {
            for (key, value) in section.strings_mut() {
                if let Some(v) = value {
                    *v = expand_str(v, &format!("channels.{name}.{key}"), env)?;
                }
            }
            for (header, v) in &mut section.headers {
                *v = expand_str(v, &format!("channels.{name}.headers.{header}"), env)?;
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: channel names, plugin settings, durations.
    fn check(&self) -> Result<(), String> {
        self.max_lateness()?;
        self.dedupe_window()?;
        self.retry_backoff()?;
        self.feedback_verifiers()?;
        for (i, topic) in self.preferences.topics.iter().enumerate() {
            if topic.trim().is_empty() || topic.len() > 64 {
                return Err(format!(
                    "[preferences] topics[{i}]: a topic is a list name of 1 to 64 characters"
                ));
            }
            if self.preferences.topics.iter().take(i).any(|t| t == topic) {
                return Err(format!("[preferences] topics: `{topic}` is listed twice"));
            }
        }
        self.max_future()?;
        self.keep_calls()?;
        self.max_sends_per_step()?;
        self.reorder_window()?;
        self.http_limits()?;
        self.alert_rules()?;
        self.cluster_window()?;
        self.cluster_keep()?;
        self.check_cluster()?;
        if let Some(hook) = &self.alerts_webhook {
            let url = hook.url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "`alerts_webhook.url`: `{url}` is not an absolute URL; expected http:// or https://"
                ));
            }
        }
        self.routes().map(drop)
    }

    /// The catalogue file read and the fallback list, for the engine: an
    /// empty catalogue without `[catalogue]`. A bad row is refused with
    /// the file, its line and why.
    pub fn catalogue(&self) -> Result<nudge_runtime::catalogue::CatalogueFile, String> {
        use nudge_runtime::catalogue::CatalogueFile;
        let mut out = match &self.catalogue.file {
            None => CatalogueFile::default(),
            Some(path) => {
                let name = self.catalogue.file_name.as_deref().unwrap_or(path);
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("[catalogue] file: cannot read {name}: {e}"))?;
                CatalogueFile::parse(name, &text).map_err(|e| format!("[catalogue] file: {e}"))?
            }
        };
        for (i, id) in self.catalogue.fallback.iter().enumerate() {
            if id.trim().is_empty() {
                return Err(format!(
                    "[catalogue] fallback[{i}]: a product id cannot be empty"
                ));
            }
        }
        out.fallback.clone_from(&self.catalogue.fallback);
        Ok(out)
    }

    /// The `[[alerts]]` tables as rules, checked.
    pub fn alert_rules(&self) -> Result<Vec<Rule>, String> {
        let mut rules: Vec<Rule> = Vec::new();
        for (i, a) in self.alerts.iter().enumerate() {
            let at = |key: &str, why: String| format!("`alerts[{i}].{key}`: {why}");
            let name = a.name.trim();
            if name.is_empty() || name.len() > 64 {
                return Err(at("name", "an alert's name is 1 to 64 characters".into()));
            }
            if rules.iter().any(|r| r.name == name) {
                return Err(at("name", format!("`{name}` names two alerts")));
            }
            let window = parse_duration(&a.window)
                .filter(|&s| s > 0)
                .ok_or_else(|| {
                    at(
                        "window",
                        format!(
                            "expected a duration such as `15m` or `1h`, found {:?}",
                            a.window
                        ),
                    )
                })?;
            let percent = |key: &str, value: Option<f64>| match value {
                None => Err(at(
                    key,
                    format!("a `{}` alert needs `{key}` (a percentage)", a.kind),
                )),
                Some(v) if v.is_finite() && (0.0..100.0).contains(&v) => Ok(v),
                Some(v) => Err(at(
                    key,
                    format!("expected a percentage from 0 up to 100, found {v}"),
                )),
            };
            let volume_only = |key: &str, set: bool| {
                if set {
                    Err(at(
                        key,
                        format!("only an `event_volume_drop` alert takes `{key}`"),
                    ))
                } else {
                    Ok(())
                }
            };
            let (kind, threshold) = match a.kind.as_str() {
                "event_volume_drop" => {
                    if a.threshold.is_some() {
                        return Err(at(
                            "threshold",
                            "an `event_volume_drop` alert takes `drop` (a percentage), not `threshold`".into(),
                        ));
                    }
                    let event = a
                        .event
                        .as_deref()
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .ok_or_else(|| at("event", "an `event_volume_drop` alert needs `event`, the event's name as calls send it".into()))?;
                    let text = a.baseline.as_deref().unwrap_or("1d");
                    let baseline = parse_duration(text).filter(|&b| b >= window).ok_or_else(|| {
                        at(
                            "baseline",
                            format!("expected a duration at least as long as the window, such as `1d`, found {text:?}"),
                        )
                    })?;
                    (
                        Kind::EventVolumeDrop {
                            event: event.to_string(),
                            baseline,
                        },
                        percent("drop", a.drop)?,
                    )
                }
                other => {
                    volume_only("event", a.event.is_some())?;
                    volume_only("drop", a.drop.is_some())?;
                    volume_only("baseline", a.baseline.is_some())?;
                    let kind = match other {
                        "bounce_rate" => Kind::BounceRate,
                        "spam_rate" => Kind::SpamRate,
                        "unsubscribe_rate" => Kind::UnsubscribeRate,
                        "delivery_failure_rate" => Kind::DeliveryFailureRate,
                        "dead_letter_rate" => Kind::DeadLetterRate,
                        _ => {
                            return Err(at(
                                "kind",
                                format!(
                                    "unknown kind `{other}`; expected `event_volume_drop`, `bounce_rate`, `spam_rate`, `unsubscribe_rate`, `delivery_failure_rate` or `dead_letter_rate`"
                                ),
                            ));
                        }
                    };
                    (kind, percent("threshold", a.threshold)?)
                }
            };
            rules.push(Rule {
                name: name.to_string(),
                kind,
                threshold,
                window,
                min_volume: a.min_volume.unwrap_or(1),
            });
        }
        Ok(rules)
    }

    /// The checks of the providers' webhooks that `[feedback]` turns on.
    pub fn feedback_verifiers(&self) -> Result<FeedbackVerifiers, String> {
        let f = &self.feedback;
        let public_url = match f.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(u) => {
                return Err(format!(
                    "[feedback] public_url: `{u}` is not an absolute URL; expected http:// or https://"
                ));
            }
        };
        let sendgrid = f
            .sendgrid_verification_key
            .as_deref()
            .map(SendGridVerifier::new)
            .transpose()
            .map_err(|e| format!("[feedback] sendgrid_verification_key: {}", e.reason))?;
        let postmark = match (&f.postmark_username, &f.postmark_password) {
            (Some(u), Some(p)) => Some(
                PostmarkAuth::new(u, p)
                    .map_err(|e| format!("[feedback] postmark: {}", e.reason))?,
            ),
            (None, None) => None,
            _ => {
                return Err(
                    "[feedback] postmark_username and postmark_password go together".to_string(),
                );
            }
        };
        let twilio_auth_token = f
            .twilio_auth_token
            .clone()
            .or_else(|| {
                self.channels
                    .values()
                    .find(|c| c.plugin == "twilio")
                    .and_then(|c| c.auth_token.clone())
            })
            .filter(|t| !t.is_empty());
        let ses = match (&f.ses_topic_arn, &f.ses_signing_certificate) {
            (Some(topic), Some(cert)) => {
                let pem = if cert.contains("-----BEGIN") {
                    cert.clone()
                } else {
                    std::fs::read_to_string(cert).map_err(|e| {
                        format!("[feedback] ses_signing_certificate: cannot read {cert}: {e}")
                    })?
                };
                Some(
                    SnsVerifier::new(topic, &pem)
                        .map_err(|e| format!("[feedback] {}", e.reason))?,
                )
            }
            (None, None) => None,
            _ => {
                return Err(
                    "[feedback] ses_topic_arn and ses_signing_certificate go together".to_string(),
                );
            }
        };
        Ok(FeedbackVerifiers {
            public_url,
            sendgrid,
            postmark,
            twilio_auth_token,
            ses,
        })
    }

    /// `[runtime] max_lateness` in seconds, when set.
    pub fn max_lateness(&self) -> Result<Option<i64>, String> {
        self.runtime
            .max_lateness
            .as_deref()
            .map(|text| {
                parse_duration(text)
                    .ok_or_else(|| format!("[runtime] max_lateness: expected a duration such as `30m`, `24h` or `2d`, found {text:?}"))
            })
            .transpose()
    }

    /// `[runtime] dedupe_window` in seconds, when set (0: for ever).
    pub fn dedupe_window(&self) -> Result<Option<i64>, String> {
        self.runtime
            .dedupe_window
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    format!("[runtime] dedupe_window: expected a duration such as `7d` or `24h` (`0s` keeps every id), found {text:?}")
                })
            })
            .transpose()
    }

    /// `[serve] retry_backoff` in seconds, when set.
    pub fn retry_backoff(&self) -> Result<Option<i64>, String> {
        self.serve
            .retry_backoff
            .as_deref()
            .map(|text| {
                parse_duration(text)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("[serve] retry_backoff: expected a duration such as `30s` or `5m`, found {text:?}"))
            })
            .transpose()
    }

    /// `[runtime] max_future` in seconds, when set.
    pub fn max_future(&self) -> Result<Option<i64>, String> {
        self.runtime
            .max_future
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    format!("[runtime] max_future: expected a duration such as `1h` or `1d`, found {text:?}")
                })
            })
            .transpose()
    }

    /// `[store] keep_calls` in seconds, when set: calls older than this
    /// (by the store's clock) leave the log once a checkpoint covers them.
    pub fn keep_calls(&self) -> Result<Option<i64>, String> {
        self.store
            .keep_calls
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    format!("[store] keep_calls: expected a duration such as `90d` or `52w`, found {text:?}")
                })
            })
            .transpose()
    }

    /// [`Config::keep_calls`] in milliseconds, as the hosts use it
    /// (checked when the file was read).
    pub fn keep_calls_ms(&self) -> Option<i64> {
        self.keep_calls()
            .ok()
            .flatten()
            .map(|s| s.saturating_mul(1000))
    }

    /// The signer of the unsubscribe links of the first channel that has
    /// `unsubscribe_url` and `unsubscribe_secret`: `nudge serve` checks the
    /// links it serves with it.
    pub fn unsubscribe_links(&self) -> Option<Unsubscribe> {
        self.channels.values().find_map(|c| {
            c.unsubscribe_url.as_ref()?;
            c.unsubscribe_secret.as_ref()?;
            c.unsubscribe().ok()
        })
    }

    /// `[runtime] max_sends_per_step`, the default when unset; at least 1.
    pub fn max_sends_per_step(&self) -> Result<usize, String> {
        match self.runtime.max_sends_per_step {
            None => Ok(DEFAULT_MAX_SENDS_PER_STEP),
            Some(0) => Err("[runtime] max_sends_per_step: must be at least 1".to_string()),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }

    /// `[runtime] forget_every` in calls, the default when unset (0 forgets nothing).
    pub fn forget_every(&self) -> u32 {
        self.runtime
            .forget_every
            .unwrap_or(nudge_runtime::engine::DEFAULT_FORGET_EVERY)
    }

    /// `[runtime] checkpoint_every` in calls, the default when unset (0: at
    /// the end of a run and when a server stops only).
    pub fn checkpoint_every(&self) -> u64 {
        self.runtime
            .checkpoint_every
            .unwrap_or(DEFAULT_CHECKPOINT_EVERY)
    }

    /// `[runtime] customers_in_memory`: the most customers a run or a
    /// server keeps in memory between checkpoints; `None` (unset or 0)
    /// keeps every customer.
    pub fn customers_in_memory(&self) -> Option<usize> {
        self.runtime
            .customers_in_memory
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `[runtime] reorder_window` in lines, the default when unset; at least 1.
    pub fn reorder_window(&self) -> Result<usize, String> {
        match self.runtime.reorder_window {
            None => Ok(nudge_runtime::window::DEFAULT_LINES),
            Some(0) => Err(
                "[runtime] reorder_window: must be at least 1 (1 applies lines in file order)"
                    .to_string(),
            ),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }

    /// `[cluster] duplicate_window`, when set: at least a second.
    pub fn cluster_window(&self) -> Result<Option<Duration>, String> {
        let Some(text) = self
            .cluster
            .as_ref()
            .and_then(|c| c.duplicate_window.as_ref())
        else {
            return Ok(None);
        };
        let secs = parse_duration(text).filter(|&s| s > 0).ok_or_else(|| {
            format!("`cluster.duplicate_window`: expected a duration of at least a second such as `2m`, found {text:?}")
        })?;
        Ok(Some(Duration::from_secs(secs as u64)))
    }

    /// `[cluster] keep`, when set: `Some(None)` for `forever`, else how long
    /// committed calls stay in the log (zero trims them at once).
    pub fn cluster_keep(&self) -> Result<Option<Option<Duration>>, String> {
        let Some(text) = self.cluster.as_ref().and_then(|c| c.keep.as_ref()) else {
            return Ok(None);
        };
        if text == "forever" {
            return Ok(Some(None));
        }
        let secs = parse_duration(text).filter(|&s| s >= 0).ok_or_else(|| {
            format!(
                "`cluster.keep`: expected a duration such as `7d`, or `forever`, found {text:?}"
            )
        })?;
        Ok(Some(Some(Duration::from_secs(secs as u64))))
    }

    /// Checks `[cluster]`'s names and numbers: the schema is a plain
    /// PostgreSQL name and the prefix a plain stream name, since both are
    /// written into statements and subjects.
    fn check_cluster(&self) -> Result<(), String> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        for (key, value) in [("nats", &c.nats), ("postgres", &c.postgres)] {
            if value.trim().is_empty() {
                return Err(format!("`cluster.{key}`: empty; say where the service is"));
            }
        }
        if let Some(schema) = &c.schema {
            let lower = |ch: char| ch.is_ascii_lowercase() || ch == '_';
            if schema.is_empty()
                || schema.len() > 63
                || !schema.starts_with(lower)
                || !schema.chars().all(|ch| lower(ch) || ch.is_ascii_digit())
            {
                return Err(format!(
                    "`cluster.schema`: `{schema}` is not a plain PostgreSQL name: lower-case letters, digits and `_`, 1 to 63 of them, not starting with a digit"
                ));
            }
        }
        if let Some(prefix) = &c.prefix
            && (prefix.is_empty()
                || prefix.len() > 32
                || !prefix
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
        {
            return Err(format!(
                "`cluster.prefix`: `{prefix}` cannot name a stream and its subjects: letters, digits, `_` and `-`, 1 to 32 of them"
            ));
        }
        if let Some(p) = c.partitions
            && (p == 0 || p > MAX_CLUSTER_PARTITIONS)
        {
            return Err(format!(
                "`cluster.partitions`: {p} is outside 1 to {MAX_CLUSTER_PARTITIONS}"
            ));
        }
        for (key, value) in [("replicas", c.replicas), ("connections", c.connections)] {
            if value == Some(0) {
                return Err(format!("`cluster.{key}`: at least 1"));
            }
        }
        Ok(())
    }

    /// `[serve]`'s timeouts, the defaults where unset; each at least a second.
    pub fn http_limits(&self) -> Result<HttpLimits, String> {
        let mut limits = HttpLimits::default();
        let serve = &self.serve;
        for (key, value, slot) in [
            (
                "header_read_timeout",
                &serve.header_read_timeout,
                &mut limits.header_read,
            ),
            (
                "body_read_timeout",
                &serve.body_read_timeout,
                &mut limits.body_read,
            ),
            ("idle_timeout", &serve.idle_timeout, &mut limits.idle),
            (
                "request_timeout",
                &serve.request_timeout,
                &mut limits.request,
            ),
        ] {
            if let Some(text) = value {
                let secs = parse_duration(text).filter(|&s| s > 0).ok_or_else(|| {
                    format!("`serve.{key}`: expected a duration of at least a second such as `10s` or `2m`, found {text:?}")
                })?;
                *slot = Duration::from_secs(secs as u64);
            }
        }
        Ok(limits)
    }

    /// The store path, resolved against the project root.
    pub fn store_path(&self, root: &Path) -> Option<PathBuf> {
        self.store.path.as_ref().map(|p| root.join(p))
    }

    /// The channel plugins the file configures.
    pub fn routes(&self) -> Result<Vec<(Channel, PluginSpec)>, String> {
        self.audience_sync()?;
        self.channels
            .iter()
            .filter(|(_, section)| !is_audience_sync(&section.plugin))
            .map(|(name, section)| {
                let channel = Channel::from_name(name).ok_or_else(|| {
                    format!(
                        "[channels.{name}]: unknown channel; channels are email, sms, push, webhook and audience"
                    )
                })?;
                let spec = section
                    .spec()
                    .map_err(|reason| format!("[channels.{name}]: {reason}"))?;
                let fits = match &spec {
                    PluginSpec::Smtp(_)
                    | PluginSpec::SendGrid(_)
                    | PluginSpec::Postmark(_)
                    | PluginSpec::Ses(_) => channel == Channel::Email,
                    PluginSpec::Twilio(_) => channel == Channel::Sms,
                    PluginSpec::Fcm(_) => channel == Channel::Push,
                    _ => true,
                };
                if !fits {
                    let sends = match channel_of(&spec) {
                        Channel::Sms => "SMS",
                        Channel::Push => "push",
                        _ => "email",
                    };
                    return Err(format!(
                        "[channels.{name}]: the `{}` plugin sends {sends}; configure it under [channels.{}]",
                        section.plugin,
                        channel_of(&spec).name()
                    ));
                }
                Ok((channel, spec))
            })
            .collect()
    }
}

/// Whether `plugin` syncs ad audiences rather than delivering messages.
fn is_audience_sync(plugin: &str) -> bool {
    matches!(plugin, "meta_audience" | "google_customer_match")
}

impl Config {
    /// The ad platform `[channels.audience]` syncs membership changes to, if any.
    pub fn audience_sync(&self) -> Result<Option<AudienceSpec>, String> {
        let mut found = None;
        for (name, section) in &self.channels {
            if !is_audience_sync(&section.plugin) {
                continue;
            }
            if name != "audience" {
                return Err(format!(
                    "[channels.{name}]: the `{}` plugin syncs ad audiences; configure it under [channels.audience]",
                    section.plugin
                ));
            }
            section
                .check_keys()
                .map_err(|reason| format!("[channels.{name}]: {reason}"))?;
            let spec = match section.plugin.as_str() {
                "meta_audience" => section.meta_audience(),
                _ => section.google_customer_match(),
            };
            found = Some(spec.map_err(|reason| format!("[channels.{name}]: {reason}"))?);
        }
        Ok(found)
    }
}

/// How `nudge serve` checks each provider's webhook; `None` turns it off.
#[derive(Clone, Debug, Default)]
pub struct FeedbackVerifiers {
    /// The base of the URLs providers call, without a trailing `/`.
    pub public_url: Option<String>,
    /// SendGrid's signature check.
    pub sendgrid: Option<SendGridVerifier>,
    /// Postmark's Basic-auth check.
    pub postmark: Option<PostmarkAuth>,
    /// The key of Twilio's signatures.
    pub twilio_auth_token: Option<String>,
    /// The SNS topic and certificate of SES's notifications.
    pub ses: Option<SnsVerifier>,
}

/// A duration as the flow language writes one (`90s`, `30m`, `24h`, `2d`,
/// `1w`), in seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The channel a provider plugin delivers on (email for the mail providers).
fn channel_of(spec: &PluginSpec) -> Channel {
    match spec {
        PluginSpec::Twilio(_) => Channel::Sms,
        PluginSpec::Fcm(_) => Channel::Push,
        _ => Channel::Email,
    }
}

/// The settings each plugin takes, besides `plugin` itself.
fn settings_of(plugin: &str) -> &'static [&'static str] {
    const PROVIDER: [&str; 4] = [
        "timeout_seconds",
        "max_attempts",
        "rate_limit_per_second",
        "rate_limit_burst",
    ];
    match plugin {
        "webhook" => &["url", "headers", "timeout_seconds", "max_attempts"],
        "smtp" => &[
            "host",
            "port",
            "tls",
            "username",
            "password",
            "from",
            "reply_to",
            "unsubscribe_url",
            "unsubscribe_secret",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "sendgrid" => &[
            "api_key",
            "api_url",
            "from",
            "reply_to",
            "unsubscribe_url",
            "unsubscribe_secret",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "postmark" => &[
            "server_token",
            "api_url",
            "from",
            "reply_to",
            "transactional_stream",
            "marketing_stream",
            "unsubscribe_url",
            "unsubscribe_secret",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "twilio" => &[
            "account_sid",
            "auth_token",
            "from",
            "status_callback",
            "api_url",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "ses" => &[
            "access_key_id",
            "secret_access_key",
            "session_token",
            "region",
            "configuration_set",
            "api_url",
            "from",
            "reply_to",
            "unsubscribe_url",
            "unsubscribe_secret",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "meta_audience" => &[
            "access_token",
            "audiences",
            "api_url",
            "api_version",
            "batch_size",
            "phone_country_code",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "google_customer_match" => &[
            "customer_id",
            "login_customer_id",
            "developer_token",
            "client_id",
            "client_secret",
            "refresh_token",
            "audiences",
            "api_url",
            "api_version",
            "token_url",
            "batch_size",
            "phone_country_code",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        "fcm" => &[
            "service_account_file",
            "service_account",
            "project_id",
            "api_url",
            PROVIDER[0],
            PROVIDER[1],
            PROVIDER[2],
            PROVIDER[3],
        ],
        _ => &[],
    }
}

const PLUGINS: &str = "`outbox`, `stdout`, `webhook`, `smtp`, `sendgrid`, `postmark`, `ses`, `twilio`, `fcm`, `meta_audience` or `google_customer_match`";

impl ChannelSection {
    /// Every string setting with its key, for `${NAME}` expansion.
    fn strings_mut(&mut self) -> [(&'static str, &mut Option<String>); 35] {
        [
            ("url", &mut self.url),
            ("from", &mut self.from),
            ("reply_to", &mut self.reply_to),
            ("unsubscribe_url", &mut self.unsubscribe_url),
            ("unsubscribe_secret", &mut self.unsubscribe_secret),
            ("host", &mut self.host),
            ("tls", &mut self.tls),
            ("username", &mut self.username),
            ("password", &mut self.password),
            ("api_key", &mut self.api_key),
            ("server_token", &mut self.server_token),
            ("transactional_stream", &mut self.transactional_stream),
            ("marketing_stream", &mut self.marketing_stream),
            ("account_sid", &mut self.account_sid),
            ("auth_token", &mut self.auth_token),
            ("status_callback", &mut self.status_callback),
            ("api_url", &mut self.api_url),
            ("access_key_id", &mut self.access_key_id),
            ("secret_access_key", &mut self.secret_access_key),
            ("session_token", &mut self.session_token),
            ("region", &mut self.region),
            ("configuration_set", &mut self.configuration_set),
            ("service_account_file", &mut self.service_account_file),
            ("service_account", &mut self.service_account),
            ("project_id", &mut self.project_id),
            ("access_token", &mut self.access_token),
            ("api_version", &mut self.api_version),
            ("phone_country_code", &mut self.phone_country_code),
            ("customer_id", &mut self.customer_id),
            ("login_customer_id", &mut self.login_customer_id),
            ("developer_token", &mut self.developer_token),
            ("client_id", &mut self.client_id),
            ("client_secret", &mut self.client_secret),
            ("refresh_token", &mut self.refresh_token),
            ("token_url", &mut self.token_url),
        ]
    }

    /// The keys that are set, besides `plugin`.
    fn set_keys(&self) -> Vec<&'static str> {
        let present = [
            ("url", self.url.is_some()),
            ("headers", !self.headers.is_empty()),
            ("timeout_seconds", self.timeout_seconds.is_some()),
            ("max_attempts", self.max_attempts.is_some()),
            (
                "rate_limit_per_second",
                self.rate_limit_per_second.is_some(),
            ),
            ("rate_limit_burst", self.rate_limit_burst.is_some()),
            ("from", self.from.is_some()),
            ("reply_to", self.reply_to.is_some()),
            ("unsubscribe_url", self.unsubscribe_url.is_some()),
            ("unsubscribe_secret", self.unsubscribe_secret.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("tls", self.tls.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("api_key", self.api_key.is_some()),
            ("server_token", self.server_token.is_some()),
            ("transactional_stream", self.transactional_stream.is_some()),
            ("marketing_stream", self.marketing_stream.is_some()),
            ("account_sid", self.account_sid.is_some()),
            ("auth_token", self.auth_token.is_some()),
            ("status_callback", self.status_callback.is_some()),
            ("api_url", self.api_url.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("session_token", self.session_token.is_some()),
            ("region", self.region.is_some()),
            ("configuration_set", self.configuration_set.is_some()),
            ("service_account_file", self.service_account_file.is_some()),
            ("service_account", self.service_account.is_some()),
            ("project_id", self.project_id.is_some()),
            ("access_token", self.access_token.is_some()),
            ("audiences", !self.audiences.is_empty()),
            ("api_version", self.api_version.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("phone_country_code", self.phone_country_code.is_some()),
            ("customer_id", self.customer_id.is_some()),
            ("login_customer_id", self.login_customer_id.is_some()),
            ("developer_token", self.developer_token.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("refresh_token", self.refresh_token.is_some()),
            ("token_url", self.token_url.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
    }

    /// Refuses an unknown plugin and settings the plugin does not take.
    fn check_keys(&self) -> Result<(), String> {
        let plugin = self.plugin.as_str();
        if !matches!(
            plugin,
            "outbox"
                | "stdout"
                | "webhook"
                | "smtp"
                | "sendgrid"
                | "postmark"
                | "ses"
                | "twilio"
                | "fcm"
                | "meta_audience"
                | "google_customer_match"
        ) {
            return Err(format!("unknown plugin `{plugin}`; expected {PLUGINS}"));
        }
        let allowed = settings_of(plugin);
        let foreign: Vec<String> = self
            .set_keys()
            .into_iter()
            .filter(|k| !allowed.contains(k))
            .map(|k| format!("`{k}`"))
            .collect();
        if !foreign.is_empty() {
            let takes = if allowed.is_empty() {
                "it takes no settings".to_string()
            } else {
                format!(
                    "it takes {}",
                    allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(format!(
                "{} {} not a setting of the `{plugin}` plugin; {takes}",
                foreign.join(", "),
                if foreign.len() == 1 { "is" } else { "are" },
            ));
        }
        Ok(())
    }

    fn spec(&self) -> Result<PluginSpec, String> {
        self.check_keys()?;
        match self.plugin.as_str() {
            "outbox" => Ok(PluginSpec::Outbox),
            "stdout" => Ok(PluginSpec::Stdout),
            "webhook" => self.webhook(),
            "smtp" => self.smtp(),
            "sendgrid" => self.sendgrid(),
            "postmark" => self.postmark(),
            "fcm" => self.fcm(),
            "ses" => self.ses(),
            _ => self.twilio(),
        }
    }

    fn webhook(&self) -> Result<PluginSpec, String> {
        let url = self
            .url
            .as_deref()
            .ok_or("the webhook plugin needs `url`")?;
        // The command-line form checks the URL the same way.
        let PluginSpec::Webhook(mut config) = format!("webhook={url}")
            .parse::<PluginSpec>()
            .map_err(|e| e.reason)?
        else {
            return Err("the webhook plugin needs `url`".to_string());
        };
        config = headers(config, &self.headers);
        let settings = self.provider_settings()?;
        config = config.timeout(settings.timeout);
        config.retry.max_attempts = settings.retry.max_attempts;
        Ok(PluginSpec::Webhook(config))
    }

    /// A required setting, or an error naming it.
    fn need<'a>(&self, value: &'a Option<String>, key: &str) -> Result<&'a str, String> {
        match value.as_deref() {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(format!("`{key}` is empty")),
            None => Err(format!("the {} plugin needs `{key}`", self.plugin)),
        }
    }

    /// Timeout, tries and rate limit, with the defaults for what is not set.
    fn provider_settings(&self) -> Result<ProviderSettings, String> {
        let mut settings = ProviderSettings::default();
        if let Some(s) = self.timeout_seconds {
            if s == 0 {
                return Err("`timeout_seconds` must be at least 1".to_string());
            }
            settings.timeout = Duration::from_secs(s);
        }
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err("`max_attempts` must be at least 1".to_string());
            }
            settings.retry.max_attempts = n;
        }
        match (self.rate_limit_per_second, self.rate_limit_burst) {
            (None, Some(_)) => {
                return Err("`rate_limit_burst` needs `rate_limit_per_second`".to_string());
            }
            (Some(0), _) | (_, Some(0)) => {
                return Err("the rate limit and its burst must be at least 1".to_string());
            }
            (Some(per_second), burst) => {
                settings.rate_limit = Some(RateLimit {
                    per_second,
                    burst: burst.unwrap_or(per_second),
                });
            }
            (None, None) => {}
        }
        Ok(settings)
    }

    fn unsubscribe(&self) -> Result<Unsubscribe, String> {
        let plugin = match self.plugin.as_str() {
            "smtp" => "smtp",
            "sendgrid" => "sendgrid",
            "ses" => "ses",
            _ => "postmark",
        };
        let url = self.need(&self.unsubscribe_url, "unsubscribe_url")?;
        let secret = self.need(&self.unsubscribe_secret, "unsubscribe_secret")?;
        Unsubscribe::new(plugin, url, secret).map_err(|e| e.reason)
    }

    fn smtp(&self) -> Result<PluginSpec, String> {
        let host = self.need(&self.host, "host")?;
        let from = self.need(&self.from, "from")?;
        let tls = match self.tls.as_deref().unwrap_or("starttls") {
            "starttls" => SmtpTls::StartTls,
            "implicit" => SmtpTls::Implicit,
            "none" => SmtpTls::None,
            other => {
                return Err(format!(
                    "`tls` = {other:?}; expected \"starttls\", \"implicit\" or \"none\""
                ));
            }
        };
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => return Err("`username` and `password` go together".to_string()),
        };
        let config = SmtpConfig {
            port: self.port,
            tls,
            credentials,
            reply_to: self.reply_to.clone(),
            settings: self.provider_settings()?,
            ..SmtpConfig::new(host, from, self.unsubscribe()?)
        };
        // Built once here so a bad setting is reported at load time.
        nudge_channels::Smtp::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::Smtp(config))
    }

    fn sendgrid(&self) -> Result<PluginSpec, String> {
        let key = self.need(&self.api_key, "api_key")?;
        let from = self.need(&self.from, "from")?;
        let mut config = SendGridConfig::new(key, from, self.unsubscribe()?);
        config.reply_to = self.reply_to.clone();
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        nudge_channels::SendGrid::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::SendGrid(config))
    }

    fn postmark(&self) -> Result<PluginSpec, String> {
        let token = self.need(&self.server_token, "server_token")?;
        let from = self.need(&self.from, "from")?;
        let mut config = PostmarkConfig::new(token, from, self.unsubscribe()?);
        config.reply_to = self.reply_to.clone();
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        if let Some(stream) = &self.transactional_stream {
            config.transactional_stream = stream.clone();
        }
        if let Some(stream) = &self.marketing_stream {
            config.marketing_stream = stream.clone();
        }
        nudge_channels::Postmark::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::Postmark(config))
    }

    fn twilio(&self) -> Result<PluginSpec, String> {
        let sid = self.need(&self.account_sid, "account_sid")?;
        let token = self.need(&self.auth_token, "auth_token")?;
        let from = self.need(&self.from, "from")?;
        let mut config = TwilioConfig::new(sid, token, from);
        config.status_callback = self.status_callback.clone();
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        nudge_channels::Twilio::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::Twilio(config))
    }

    fn ses(&self) -> Result<PluginSpec, String> {
        let key = self.need(&self.access_key_id, "access_key_id")?;
        let secret = self.need(&self.secret_access_key, "secret_access_key")?;
        let region = self.need(&self.region, "region")?;
        let from = self.need(&self.from, "from")?;
        let mut config = SesConfig::new(key, secret, region, from, self.unsubscribe()?);
        config.session_token = self.session_token.clone();
        config.reply_to = self.reply_to.clone();
        config.configuration_set = self.configuration_set.clone();
        config.api_url = self.api_url.clone();
        config.settings = self.provider_settings()?;
        nudge_channels::Ses::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::Ses(config))
    }

    fn fcm(&self) -> Result<PluginSpec, String> {
        let key = match (&self.service_account_file, &self.service_account) {
            (Some(_), Some(_)) => {
                return Err(
                    "`service_account_file` and `service_account` are two ways to give one key; set one".to_string(),
                );
            }
            (Some(_), None) => ServiceAccountKey::File(
                self.need(&self.service_account_file, "service_account_file")?
                    .into(),
            ),
            (None, Some(_)) => ServiceAccountKey::Json(
                self.need(&self.service_account, "service_account")?
                    .to_string(),
            ),
            (None, None) => {
                return Err(
                    "the fcm plugin needs `service_account_file` (or `service_account`, the key's JSON)".to_string(),
                );
            }
        };
        let mut config = FcmConfig::new(key);
        config.project_id = self.project_id.clone();
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        nudge_channels::Fcm::new(config.clone()).map_err(|e| e.reason)?;
        Ok(PluginSpec::Fcm(config))
    }
}

impl ChannelSection {
    /// The phone rules and audience ids both ad platforms take.
    fn audience_common(&self) -> Result<PhoneRules, String> {
        let phone = PhoneRules {
            default_calling_code: self.phone_country_code.clone(),
        };
        phone.check()?;
        if self.audiences.is_empty() {
            return Err(format!(
                "the {} plugin needs `audiences`, a table from each flow audience to the platform's id, such as audiences = {{ cart_abandoners = \"23851234567890123\" }}",
                self.plugin
            ));
        }
        Ok(phone)
    }

    fn meta_audience(&self) -> Result<AudienceSpec, String> {
        let token = self.need(&self.access_token, "access_token")?;
        let phone = self.audience_common()?;
        let mut config = MetaAudienceConfig::new(token, self.audiences.clone());
        config.phone = phone;
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        if let Some(v) = &self.api_version {
            config.api_version = v.clone();
        }
        if let Some(n) = self.batch_size {
            config.batch_size = n;
        }
        nudge_channels::MetaAudience::new(config.clone()).map_err(|e| e.reason)?;
        Ok(AudienceSpec::Meta(config))
    }

    fn google_customer_match(&self) -> Result<AudienceSpec, String> {
        let customer = self.need(&self.customer_id, "customer_id")?;
        let developer = self.need(&self.developer_token, "developer_token")?;
        let client_id = self.need(&self.client_id, "client_id")?;
        let client_secret = self.need(&self.client_secret, "client_secret")?;
        let refresh = self.need(&self.refresh_token, "refresh_token")?;
        let phone = self.audience_common()?;
        let mut config = GoogleCustomerMatchConfig::new(
            customer,
            developer,
            client_id,
            client_secret,
            refresh,
            self.audiences.clone(),
        );
        config.login_customer_id = self.login_customer_id.clone();
        config.phone = phone;
        config.settings = self.provider_settings()?;
        if let Some(url) = &self.api_url {
            config.api_url = url.clone();
        }
        if let Some(url) = &self.token_url {
            config.token_url = url.clone();
        }
        if let Some(v) = &self.api_version {
            config.api_version = v.clone();
        }
        if let Some(n) = self.batch_size {
            config.batch_size = n;
        }
        nudge_channels::GoogleCustomerMatch::new(config.clone()).map_err(|e| e.reason)?;
        Ok(AudienceSpec::Google(config))
    }
}

fn headers(mut config: WebhookConfig, headers: &BTreeMap<String, String>) -> WebhookConfig {
    for (name, value) in headers {
        config = config.header(name, value);
    }
    config
}

fn expand_str(s: &str, at: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("`{at}`: `${{` without a closing `}}`"))?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`{at}`: `${{{name}}}` is not an environment variable name"
                ));
            }
            let value = env(name).ok_or_else(|| {
                format!("`{at}` uses the environment variable {name}, which is not set")
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the setting a semantic error names is: messages start with the
/// section (`[channels.sms]: …`) or the key (`` `serve.listen` … ``).
fn setting_span(text: &str, message: &str) -> Option<std::ops::Range<usize>> {
    if let Some(rest) = message.strip_prefix('[') {
        let header = format!("[{}]", rest.split(']').next()?);
        let at = text.find(&header)?;
        return Some(at..at + header.len());
    }
    let key = message.strip_prefix('`')?.split('`').next()?;
    if let Some(rest) = key.strip_prefix("alerts[") {
        return alert_span(text, rest);
    }
    let last = key.rsplit('.').next()?.split('[').next()?;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(after) = trimmed.strip_prefix(last)
            && after.trim_start().starts_with('=')
        {
            let at = offset + (line.len() - trimmed.len());
            return Some(at..at + last.len());
        }
        offset += line.len();
    }
    None
}

/// Where `alerts[N].KEY` is: the key in the Nth `[[alerts]]` table, else
/// that table's header.
fn alert_span(text: &str, rest: &str) -> Option<std::ops::Range<usize>> {
    let (index, key) = rest.split_once("].")?;
    let index: usize = index.parse().ok()?;
    let mut offset = 0;
    let mut seen = 0;
    let mut header = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let at = offset + (line.len() - trimmed.len());
        offset += line.len();
        if trimmed.starts_with('[') {
            if header.is_some() {
                break;
            }
            if trimmed.starts_with("[[alerts]]") {
                if seen == index {
                    header = Some(at..at + "[[alerts]]".len());
                }
                seen += 1;
            }
            continue;
        }
        if header.is_some()
            && let Some(after) = trimmed.strip_prefix(key)
            && after.trim_start().starts_with('=')
        {
            return Some(at..at + key.len());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_project::MANIFEST;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("secret".to_string()),
            "SMTP_PASSWORD" => Some("smtp-pass".to_string()),
            "UNSUB_SECRET" => Some("0123456789abcdef-secret".to_string()),
            "SENDGRID_API_KEY" => Some("SG.abc".to_string()),
            "TWILIO_AUTH_TOKEN" => Some("tw-token".to_string()),
            "TOKEN" => Some("t0k".to_string()),
            _ => None,
        }
    }

    #[test]
    fn the_lateness_bound_is_a_duration() {
        let c = Config::parse("[runtime]\ndedupe_window = \"2d\"\n", env).unwrap();
        assert_eq!(c.dedupe_window(), Ok(Some(2 * 86_400)));
        assert_eq!(Config::parse("", env).unwrap().dedupe_window(), Ok(None));
        let err = Config::parse("[runtime]\ndedupe_window = \"a week\"\n", env).unwrap_err();
        assert!(err.contains("[runtime] dedupe_window"), "{err}");
        let c = Config::parse("[runtime]\nmax_lateness = \"90m\"\n", env).unwrap();
        assert_eq!(c.max_lateness(), Ok(Some(5400)));
        assert_eq!(Config::parse("", env).unwrap().max_lateness(), Ok(None));
        for bad in ["\"soon\"", "\"5 h\"", "\"h\"", "\"99999999999999999999d\""] {
            let err =
                Config::parse(&format!("[runtime]\nmax_lateness = {bad}\n"), env).unwrap_err();
            assert!(err.contains("max_lateness"), "{bad}: {err}");
        }
    }

    #[test]
    fn feedback_turns_on_the_webhooks_it_has_credentials_for() {
        let none = Config::parse("", env)
            .unwrap()
            .feedback_verifiers()
            .unwrap();
        assert!(none.sendgrid.is_none() && none.postmark.is_none());
        assert!(none.twilio_auth_token.is_none() && none.public_url.is_none());
        let text = "[feedback]\npublic_url = \"https://nudge.shop.example/\"\nsendgrid_verification_key = \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==\"\npostmark_username = \"postmark\"\npostmark_password = \"${UNSUB_SECRET}\"\n\n[channels.sms]\nplugin = \"twilio\"\naccount_sid = \"AC123\"\nauth_token = \"${TWILIO_AUTH_TOKEN}\"\nfrom = \"+15005550006\"\n";
        let v = Config::parse(text, env)
            .unwrap()
            .feedback_verifiers()
            .unwrap();
        assert_eq!(v.public_url.as_deref(), Some("https://nudge.shop.example"));
        assert!(v.sendgrid.is_some() && v.postmark.is_some());
        // The SMS channel's token signs Twilio's callbacks unless one is given.
        assert_eq!(v.twilio_auth_token.as_deref(), Some("tw-token"));
        for (bad, says) in [
            (
                "public_url = \"nudge.shop.example\"",
                "[feedback] public_url: `nudge.shop.example` is not an absolute URL",
            ),
            (
                "sendgrid_verification_key = \"abc\"",
                "[feedback] sendgrid_verification_key: the event webhook verification key is not base64",
            ),
            (
                "postmark_username = \"pm\"",
                "[feedback] postmark_username and postmark_password go together",
            ),
            (
                "postmark_username = \"pm\"\npostmark_password = \"short\"",
                "[feedback] postmark: the webhook password must be at least 16 characters",
            ),
            ("twilio_token = \"x\"", "unknown field `twilio_token`"),
        ] {
            let err = Config::parse(&format!("[feedback]\n{bad}\n"), env).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_cluster_section_is_checked() {
        let c = Config::parse(
            "[cluster]\nnats = \"nats://${KEY}@n1:4222\"\npostgres = \"host=db\"\npartitions = 64\nduplicate_window = \"5m\"\n",
            env,
        )
        .unwrap();
        let cluster = c.cluster.as_ref().unwrap();
        assert_eq!(cluster.nats, "nats://secret@n1:4222");
        assert_eq!(cluster.partitions, Some(64));
        assert_eq!(c.cluster_window(), Ok(Some(Duration::from_secs(300))));
        assert_eq!(c.cluster_keep(), Ok(None));
        assert!(Config::parse("", env).unwrap().cluster.is_none());
        let keep = |v: &str| {
            Config::parse(
                &format!("[cluster]\nnats = \"n\"\npostgres = \"p\"\nkeep = \"{v}\"\n"),
                env,
            )
            .unwrap()
            .cluster_keep()
        };
        assert_eq!(keep("7d"), Ok(Some(Some(Duration::from_secs(7 * 86_400)))));
        assert_eq!(keep("0s"), Ok(Some(Some(Duration::ZERO))));
        assert_eq!(keep("forever"), Ok(Some(None)));
        let base = "[cluster]\nnats = \"n\"\npostgres = \"p\"\n";
        for (bad, says) in [
            (
                "partitions = 0",
                "`cluster.partitions`: 0 is outside 1 to 65536",
            ),
            (
                "partitions = 70000",
                "`cluster.partitions`: 70000 is outside",
            ),
            (
                "schema = \"Nudge\"",
                "`cluster.schema`: `Nudge` is not a plain PostgreSQL name",
            ),
            ("schema = \"a;drop\"", "`cluster.schema`"),
            (
                "prefix = \"a.b\"",
                "`cluster.prefix`: `a.b` cannot name a stream",
            ),
            ("duplicate_window = \"now\"", "`cluster.duplicate_window`"),
            ("keep = \"soon\"", "`cluster.keep`: expected a duration"),
            ("connections = 0", "`cluster.connections`: at least 1"),
            ("partition = 3", "unknown field `partition`"),
        ] {
            let err = Config::parse(&format!("{base}{bad}\n"), env).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = Config::parse("[cluster]\nnats = \"n\"\n", env).unwrap_err();
        assert!(err.contains("missing field `postgres`"), "{err}");
    }

    #[test]
    fn http_timeouts_are_durations_with_defaults() {
        let c = Config::parse(
            "[serve]\nheader_read_timeout = \"2s\"\nidle_timeout = \"1m\"\n",
            env,
        )
        .unwrap();
        let limits = c.http_limits().unwrap();
        assert_eq!(limits.header_read, Duration::from_secs(2));
        assert_eq!(limits.idle, Duration::from_secs(60));
        assert_eq!(limits.body_read, HttpLimits::default().body_read);
        assert_eq!(limits.request, HttpLimits::default().request);
        for bad in ["\"0s\"", "\"fast\"", "\"-3s\""] {
            let err =
                Config::parse(&format!("[serve]\nrequest_timeout = {bad}\n"), env).unwrap_err();
            assert!(err.starts_with("`serve.request_timeout`"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_future_bound_is_a_duration() {
        let c = Config::parse("[store]\nkeep_calls = \"400d\"\n", env).unwrap();
        assert_eq!(c.keep_calls(), Ok(Some(400 * 86_400)));
        assert_eq!(Config::parse("", env).unwrap().keep_calls(), Ok(None));
        let err = Config::parse("[store]\nkeep_calls = \"a year\"\n", env).unwrap_err();
        assert!(err.contains("[store] keep_calls"), "{err}");
        let c = Config::parse("[runtime]\nmax_future = \"2h\"\n", env).unwrap();
        assert_eq!(c.max_future(), Ok(Some(7200)));
        assert_eq!(Config::parse("", env).unwrap().max_future(), Ok(None));
        let err = Config::parse("[runtime]\nmax_future = \"later\"\n", env).unwrap_err();
        assert!(err.contains("max_future"), "{err}");
    }

    #[test]
    fn the_send_breaker_has_a_default_and_refuses_zero() {
        let c = Config::parse("[runtime]\nmax_sends_per_step = 50\n", env).unwrap();
        assert_eq!(c.max_sends_per_step(), Ok(50));
        let default = Config::parse("", env).unwrap().max_sends_per_step();
        assert_eq!(default, Ok(DEFAULT_MAX_SENDS_PER_STEP));
        let err = Config::parse("[runtime]\nmax_sends_per_step = 0\n", env).unwrap_err();
        assert!(err.contains("max_sends_per_step"), "{err}");
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn checkpoints_have_a_default_and_can_be_left_to_the_end() {
        let env = |_: &str| None;
        let c = Config::parse("[runtime]\ncheckpoint_every = 5000\n", env).unwrap();
        assert_eq!(c.checkpoint_every(), 5000);
        let c = Config::parse("[runtime]\ncheckpoint_every = 0\n", env).unwrap();
        assert_eq!(c.checkpoint_every(), 0);
        let c = Config::parse("[runtime]\ncustomers_in_memory = 5000\n", env).unwrap();
        assert_eq!(c.customers_in_memory(), Some(5000));
        let c = Config::parse("[runtime]\ncustomers_in_memory = 0\n", env).unwrap();
        assert_eq!(c.customers_in_memory(), None);
        assert_eq!(Config::parse("", env).unwrap().customers_in_memory(), None);
        assert!(Config::parse("[runtime]\ncustomers_in_memory = -5\n", env).is_err());
        let c = Config::parse("", env).unwrap();
        assert_eq!(c.checkpoint_every(), DEFAULT_CHECKPOINT_EVERY);
        assert!(Config::parse("[runtime]\ncheckpoint_every = -1\n", env).is_err());
    }

    #[test]
    fn forgetting_can_be_tuned_or_turned_off() {
        let env = |_: &str| None;
        assert_eq!(
            Config::parse("[runtime]\nforget_every = 0\n", env)
                .unwrap()
                .forget_every(),
            0
        );
        assert_eq!(
            Config::parse("", env).unwrap().forget_every(),
            nudge_runtime::engine::DEFAULT_FORGET_EVERY
        );
        assert!(Config::parse("[runtime]\nforget_every = -1\n", env).is_err());
    }

    #[test]
    fn the_reorder_window_counts_lines_and_refuses_zero() {
        let c = Config::parse("[runtime]\nreorder_window = 500\n", env).unwrap();
        assert_eq!(c.reorder_window(), Ok(500));
        assert_eq!(
            Config::parse("", env).unwrap().reorder_window(),
            Ok(nudge_runtime::window::DEFAULT_LINES)
        );
        let err = Config::parse("[runtime]\nreorder_window = 0\n", env).unwrap_err();
        assert!(err.contains("reorder_window"), "{err}");
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("# just a marker\n", env).unwrap();
        assert!(c.store.path.is_none());
        assert!(c.serve.write_keys.is_empty());
        assert!(c.routes().unwrap().is_empty());
    }

    #[test]
    fn reads_every_section_and_expands_the_environment() {
        let text = r#"
[store]
path = "state/nudge.db"

[serve]
listen = "0.0.0.0:9000"
write_keys = ["${KEY}", "plain$$key"]
admin_token = "${TOKEN}"

[channels.sms]
plugin = "webhook"
url = "https://sms.example/send"
headers = { Authorization = "Bearer ${TOKEN}" }
timeout_seconds = 3
max_attempts = 2

[channels.email]
plugin = "stdout"
"#;
        let c = Config::parse(text, env).unwrap();
        assert_eq!(
            c.store_path(Path::new("/p")),
            Some(PathBuf::from("/p/state/nudge.db"))
        );
        assert_eq!(c.serve.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(c.serve.write_keys, ["secret", "plain$key"]);
        assert_eq!(c.serve.admin_token.as_deref(), Some("t0k"));
        let routes = c.routes().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0], (Channel::Email, PluginSpec::Stdout));
        let (channel, PluginSpec::Webhook(hook)) = &routes[1] else {
            panic!("sms is a webhook: {routes:?}");
        };
        assert_eq!(*channel, Channel::Sms);
        assert_eq!(hook.url, "https://sms.example/send");
        assert_eq!(
            hook.headers,
            [("Authorization".to_string(), "Bearer t0k".to_string())]
        );
        assert_eq!(hook.timeout, Duration::from_secs(3));
        assert_eq!(hook.retry.max_attempts, 2);
    }

    #[test]
    fn a_missing_variable_names_the_key_and_the_variable() {
        let err = Config::parse("[serve]\nwrite_keys = [\"${NOPE}\"]\n", env).unwrap_err();
        assert_eq!(
            err,
            "`serve.write_keys[0]` uses the environment variable NOPE, which is not set"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_location() {
        let err = Config::parse("[store]\npth = \"x\"\n", env).unwrap_err();
        assert!(err.contains("line 2, column 1"), "{err}");
        assert!(
            err.contains("unknown field `pth`, expected `path`"),
            "{err}"
        );
        let err = Config::parse("[serve\n", env).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn channel_settings_are_checked() {
        let cases = [
            ("[channels.fax]\nplugin = \"stdout\"\n", "unknown channel"),
            (
                "[channels.sms]\nplugin = \"pigeon\"\n",
                "unknown plugin `pigeon`",
            ),
            ("[channels.sms]\nplugin = \"webhook\"\n", "needs `url`"),
            (
                "[channels.sms]\nplugin = \"webhook\"\nurl = \"ftp://x\"\n",
                "http",
            ),
            (
                "[channels.sms]\nplugin = \"stdout\"\nurl = \"http://x\"\n",
                "`url` is not a setting of the `stdout` plugin; it takes no settings",
            ),
            (
                "[channels.sms]\nplugin = \"webhook\"\nurl = \"http://x\"\nmax_attempts = 0\n",
                "at least 1",
            ),
        ];
        for (text, expected) in cases {
            let err = Config::parse(text, env).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    fn route(text: &str) -> Result<(Channel, PluginSpec), String> {
        let c = Config::parse(text, env)?;
        let mut routes = c.routes()?;
        assert_eq!(routes.len(), 1);
        Ok(routes.remove(0))
    }

    const UNSUB: &str =
        "unsubscribe_url = \"https://shop.example/u\"\nunsubscribe_secret = \"${UNSUB_SECRET}\"\n";

    #[test]
    fn smtp_takes_its_settings_with_secrets_from_the_environment() {
        let text = format!(
            "[channels.email]\nplugin = \"smtp\"\nhost = \"smtp.example.com\"\nport = 2525\ntls = \"implicit\"\nusername = \"mailer\"\npassword = \"${{SMTP_PASSWORD}}\"\nfrom = \"Shop <news@shop.example>\"\nreply_to = \"help@shop.example\"\n{UNSUB}timeout_seconds = 4\nmax_attempts = 2\nrate_limit_per_second = 10\n"
        );
        let (channel, PluginSpec::Smtp(smtp)) = route(&text).unwrap() else {
            panic!("not smtp");
        };
        assert_eq!(channel, Channel::Email);
        assert_eq!(smtp.host, "smtp.example.com");
        assert_eq!(smtp.port, Some(2525));
        assert_eq!(smtp.tls, SmtpTls::Implicit);
        assert_eq!(
            smtp.credentials,
            Some(("mailer".to_string(), "smtp-pass".to_string()))
        );
        assert_eq!(smtp.reply_to.as_deref(), Some("help@shop.example"));
        assert_eq!(smtp.unsubscribe.base_url(), "https://shop.example/u");
        let expected =
            Unsubscribe::new("smtp", "https://shop.example/u", "0123456789abcdef-secret").unwrap();
        assert_eq!(smtp.unsubscribe, expected);
        assert_eq!(smtp.settings.timeout, Duration::from_secs(4));
        assert_eq!(smtp.settings.retry.max_attempts, 2);
        assert_eq!(
            smtp.settings.rate_limit,
            Some(RateLimit {
                per_second: 10,
                burst: 10
            })
        );
    }

    #[test]
    fn http_providers_take_their_settings() {
        let text = format!(
            "[channels.email]\nplugin = \"sendgrid\"\napi_key = \"${{SENDGRID_API_KEY}}\"\nfrom = \"news@shop.example\"\n{UNSUB}"
        );
        let (_, PluginSpec::SendGrid(sg)) = route(&text).unwrap() else {
            panic!("not sendgrid");
        };
        assert_eq!(sg.api_key, "SG.abc");
        assert_eq!(sg.api_url, "https://api.sendgrid.com");
        let text = format!(
            "[channels.email]\nplugin = \"postmark\"\nserver_token = \"${{KEY}}\"\nfrom = \"news@shop.example\"\nmarketing_stream = \"newsletters\"\napi_url = \"http://127.0.0.1:9\"\n{UNSUB}"
        );
        let (_, PluginSpec::Postmark(pm)) = route(&text).unwrap() else {
            panic!("not postmark");
        };
        assert_eq!(pm.server_token, "secret");
        assert_eq!(pm.marketing_stream, "newsletters");
        assert_eq!(pm.transactional_stream, "outbound");
        assert_eq!(pm.api_url, "http://127.0.0.1:9");
        let text = "[channels.sms]\nplugin = \"twilio\"\naccount_sid = \"AC123\"\nauth_token = \"${TWILIO_AUTH_TOKEN}\"\nfrom = \"+15005550006\"\nstatus_callback = \"https://shop.example/twilio\"\nrate_limit_per_second = 1\nrate_limit_burst = 5\n";
        let (channel, PluginSpec::Twilio(tw)) = route(text).unwrap() else {
            panic!("not twilio");
        };
        assert_eq!(channel, Channel::Sms);
        assert_eq!(tw.auth_token, "tw-token");
        assert_eq!(
            tw.status_callback.as_deref(),
            Some("https://shop.example/twilio")
        );
        assert_eq!(
            tw.settings.rate_limit,
            Some(RateLimit {
                per_second: 1,
                burst: 5
            })
        );
    }

    #[test]
    fn ses_takes_its_keys_and_region_with_secrets_from_the_environment() {
        let text = format!(
            "[channels.email]\nplugin = \"ses\"\naccess_key_id = \"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key = \"${{UNSUB_SECRET}}\"\nregion = \"eu-west-1\"\nconfiguration_set = \"nudge-events\"\nfrom = \"news@shop.example\"\n{UNSUB}"
        );
        let (channel, PluginSpec::Ses(ses)) = route(&text).unwrap() else {
            panic!("not ses");
        };
        assert_eq!(channel, Channel::Email);
        assert_eq!(ses.region, "eu-west-1");
        assert_eq!(ses.configuration_set.as_deref(), Some("nudge-events"));
        assert_eq!(ses.secret_access_key, env("UNSUB_SECRET").unwrap());
        let err = route(&text.replace("region = \"eu-west-1\"\n", "")).unwrap_err();
        assert!(err.contains("the ses plugin needs `region`"), "{err}");
        let err = route(&text.replace("[channels.email]", "[channels.sms]")).unwrap_err();
        assert!(err.contains("the `ses` plugin sends email"), "{err}");
    }

    #[test]
    fn fcm_reads_its_key_from_a_file_in_the_project_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let key = include_str!("../../nudge-channels/tests/fixtures/fcm-service-account.json");
        std::fs::write(dir.path().join("fcm-key.json"), key).unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            "[channels.push]\nplugin = \"fcm\"\nservice_account_file = \"fcm-key.json\"\nmax_attempts = 2\n",
        )
        .unwrap();
        let config = Config::load_with(dir.path(), env).unwrap();
        let routes = config.routes().unwrap();
        let [(Channel::Push, PluginSpec::Fcm(fcm))] = routes.as_slice() else {
            panic!("not fcm on push: {routes:?}");
        };
        assert_eq!(
            fcm.key,
            ServiceAccountKey::File(dir.path().join("fcm-key.json"))
        );
        assert_eq!(fcm.settings.retry.max_attempts, 2);
        let from_env = |name: &str| (name == "FCM_KEY").then(|| key.to_string());
        let text = "[channels.push]\nplugin = \"fcm\"\nservice_account = \"${FCM_KEY}\"\nproject_id = \"other-project\"\n";
        let c = Config::parse(text, from_env).unwrap();
        let routes = c.routes().unwrap();
        let [(_, PluginSpec::Fcm(fcm))] = routes.as_slice() else {
            panic!("not fcm: {routes:?}");
        };
        assert_eq!(fcm.project_id.as_deref(), Some("other-project"));
        for (text, expected) in [
            (
                "[channels.push]\nplugin = \"fcm\"\n",
                "the fcm plugin needs `service_account_file`",
            ),
            (
                "[channels.push]\nplugin = \"fcm\"\nservice_account_file = \"/nonexistent/k.json\"\n",
                "cannot read /nonexistent/k.json",
            ),
            (
                "[channels.push]\nplugin = \"fcm\"\nservice_account_file = \"a\"\nservice_account = \"b\"\n",
                "set one",
            ),
            (
                "[channels.push]\nplugin = \"fcm\"\nfrom = \"x\"\n",
                "`from` is not a setting of the `fcm` plugin",
            ),
        ] {
            let err = route(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let email = format!(
            "[channels.email]\nplugin = \"fcm\"\nservice_account = '{}'\n",
            key.replace('\n', "")
        );
        let err = route(&email).unwrap_err();
        assert!(
            err.contains("the `fcm` plugin sends push; configure it under [channels.push]"),
            "{err}"
        );
    }

    #[test]
    fn ad_audiences_take_their_settings_and_stay_out_of_the_routes() {
        let text = "[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"${KEY}\"\naudiences = { cart_abandoners = \"23851234567890123\" }\nphone_country_code = \"49\"\nbatch_size = 500\n";
        let c = Config::parse(text, env).unwrap();
        assert!(c.routes().unwrap().is_empty());
        let Some(AudienceSpec::Meta(meta)) = c.audience_sync().unwrap() else {
            panic!("not meta");
        };
        assert_eq!(meta.access_token, "secret");
        assert_eq!(meta.batch_size, 500);
        assert_eq!(meta.phone.default_calling_code.as_deref(), Some("49"));
        assert_eq!(meta.audiences["cart_abandoners"], "23851234567890123");
        let text = "[channels.audience]\nplugin = \"google_customer_match\"\ncustomer_id = \"123-456-7890\"\ndeveloper_token = \"${KEY}\"\nclient_id = \"c\"\nclient_secret = \"${TOKEN}\"\nrefresh_token = \"r\"\naudiences = { cart_abandoners = \"4567\" }\n";
        let c = Config::parse(text, env).unwrap();
        let Some(AudienceSpec::Google(google)) = c.audience_sync().unwrap() else {
            panic!("not google");
        };
        assert_eq!(google.developer_token, "secret");
        assert_eq!(google.client_secret, "t0k");
        for (text, expected) in [
            (
                "[channels.audience]\nplugin = \"meta_audience\"\naudiences = { a = \"1\" }\n",
                "[channels.audience]: the meta_audience plugin needs `access_token`",
            ),
            (
                "[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"t\"\n",
                "needs `audiences`",
            ),
            (
                "[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"t\"\naudiences = { a = \"1\" }\nphone_country_code = \"+1\"\n",
                "not a country calling code",
            ),
            (
                "[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"t\"\naudiences = { a = \"1\" }\nfrom = \"x\"\n",
                "`from` is not a setting of the `meta_audience` plugin",
            ),
            (
                "[channels.sms]\nplugin = \"google_customer_match\"\n",
                "configure it under [channels.audience]",
            ),
            (
                "[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"${NOPE}\"\naudiences = { a = \"1\" }\n",
                "NOPE",
            ),
        ] {
            let err = Config::parse(text, env).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn provider_settings_are_checked_with_clear_errors() {
        let smtp = |extra: &str| {
            format!(
                "[channels.email]\nplugin = \"smtp\"\nfrom = \"news@shop.example\"\n{UNSUB}{extra}"
            )
        };
        let cases = [
            (smtp(""), "[channels.email]: the smtp plugin needs `host`"),
            (
                smtp("host = \"h\"\ntls = \"ssl\"\n"),
                "`tls` = \"ssl\"; expected \"starttls\", \"implicit\" or \"none\"",
            ),
            (
                smtp("host = \"h\"\nusername = \"u\"\n"),
                "`username` and `password` go together",
            ),
            (
                smtp("host = \"h\"\napi_key = \"k\"\n"),
                "`api_key` is not a setting of the `smtp` plugin; it takes `host`",
            ),
            (
                smtp("host = \"h\"\nrate_limit_burst = 3\n"),
                "`rate_limit_burst` needs `rate_limit_per_second`",
            ),
            (
                smtp("host = \"h\"\nrate_limit_per_second = 0\n"),
                "must be at least 1",
            ),
            (
                "[channels.email]\nplugin = \"smtp\"\nhost = \"h\"\nfrom = \"news@shop.example\"\n"
                    .to_string(),
                "the smtp plugin needs `unsubscribe_url`",
            ),
            (
                "[channels.email]\nplugin = \"smtp\"\nhost = \"h\"\nfrom = \"news@shop.example\"\nunsubscribe_url = \"https://s.example/u\"\nunsubscribe_secret = \"short\"\n"
                    .to_string(),
                "at least 16 characters",
            ),
            (
                "[channels.email]\nplugin = \"sendgrid\"\nfrom = \"news@shop.example\"\n".to_string(),
                "the sendgrid plugin needs `api_key`",
            ),
            (
                format!("[channels.email]\nplugin = \"sendgrid\"\napi_key = \"\"\nfrom = \"x@y.z\"\n{UNSUB}"),
                "`api_key` is empty",
            ),
            (
                format!("[channels.email]\nplugin = \"postmark\"\nserver_token = \"t\"\nfrom = \"not an address\"\n{UNSUB}"),
                "`from` = \"not an address\" is not an address",
            ),
            (
                "[channels.sms]\nplugin = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"0800 123\"\n".to_string(),
                "neither an E.164 number",
            ),
            (
                "[channels.email]\nplugin = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"+15005550006\"\n".to_string(),
                "[channels.email]: the `twilio` plugin sends SMS; configure it under [channels.sms]",
            ),
            (
                smtp("host = \"h\"\n").replace("channels.email", "channels.sms"),
                "the `smtp` plugin sends email; configure it under [channels.email]",
            ),
            (
                "[channels.sms]\nplugin = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"${NOPE}\"\nfrom = \"+15005550006\"\n".to_string(),
                "`channels.sms.auth_token` uses the environment variable NOPE, which is not set",
            ),
        ];
        for (text, expected) in cases {
            let err = Config::parse(&text, env).unwrap_err();
            assert!(err.contains(expected), "{text}\n=> {err}");
        }
    }

    #[test]
    fn manifest_problems_are_diagnostics_placed_in_the_text() {
        use nudge_diagnostics::codes::{E0501, E0502, E0503, E0504};
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join(MANIFEST), text).unwrap();
        let problem = || {
            let e = Config::load_with(dir.path(), env).expect_err("a problem");
            assert_eq!(e.diagnostics.len(), 1, "{e}");
            let d = e.diagnostics[0].clone();
            let text = &e.sources.get(d.primary.file).text;
            let at = text[d.primary.span.range()].to_string();
            (d.code, at, d.title)
        };

        write("[store]\npth = \"x\"\n");
        let (code, at, title) = problem();
        assert_eq!((code, at.as_str()), (E0503, "pth"));
        assert!(title.contains("unknown field `pth`"), "{title}");

        write("[store]\npath = 5\n");
        let (code, at, _) = problem();
        assert_eq!((code, at.as_str()), (E0504, "5"));

        write("[store\n");
        assert_eq!(problem().0, E0502);

        write("[channels.fax]\nplugin = \"stdout\"\n");
        let (code, at, _) = problem();
        assert_eq!((code, at.as_str()), (E0501, "[channels.fax]"));

        write("[serve]\nlisten = \"${NOPE}\"\n");
        let (code, at, title) = problem();
        assert_eq!((code, at.as_str()), (E0501, "listen"));
        assert!(title.contains("NOPE"), "{title}");

        write("# fine\n[store]\npath = \"x.db\"\n");
        assert!(Config::load_with(dir.path(), env).is_ok());
        std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
        assert!(Config::load_with(dir.path(), env).is_ok());
    }

    #[test]
    fn every_section_the_project_crate_knows_is_a_section_here() {
        // The language server refuses what `nudge_project::manifest::SECTIONS`
        // does not list; the host must read every section listed there.
        for section in nudge_project::manifest::SECTIONS {
            let text = format!("[{section}]\n");
            if let Err(e) = toml::from_str::<Config>(&text) {
                assert!(!e.message().contains("unknown field"), "{section}: {e}");
            }
        }
        let e = toml::from_str::<Config>("[nope]\n").expect_err("unknown");
        assert!(e.message().contains("unknown field"), "{e}");
    }

    #[test]
    fn alert_tables_become_rules_or_say_what_is_wrong() {
        let parse = |text: &str| Config::parse(text, env);
        let config = parse(
            "[[alerts]]\nname = \"b\"\nkind = \"bounce_rate\"\nthreshold = 2.5\nwindow = \"1h\"\n\n[[alerts]]\nname = \"o\"\nkind = \"event_volume_drop\"\nevent = \"Order Completed\"\ndrop = 50\nwindow = \"30m\"\n\n[alerts_webhook]\nurl = \"https://hooks.example/${KEY}\"\n",
        )
        .unwrap();
        let rules = config.alert_rules().unwrap();
        assert_eq!(rules[0].kind, Kind::BounceRate);
        assert_eq!((rules[0].threshold, rules[0].window), (2.5, 3600));
        assert_eq!(
            rules[1].kind,
            Kind::EventVolumeDrop {
                event: "Order Completed".into(),
                baseline: 86_400
            }
        );
        assert_eq!((rules[1].threshold, rules[1].window), (50.0, 1800));
        assert_eq!(
            config.alerts_webhook.unwrap().url,
            "https://hooks.example/secret"
        );
        let table = |body: &str| format!("[[alerts]]\nname = \"a\"\nwindow = \"1h\"\n{body}");
        for (body, error) in [
            (
                "kind = \"bounce_rate\"\n",
                "`alerts[0].threshold`: a `bounce_rate` alert needs `threshold`",
            ),
            (
                "kind = \"spam_rate\"\nthreshold = 100\n",
                "`alerts[0].threshold`: expected a percentage from 0 up to 100, found 100",
            ),
            (
                "kind = \"spam_rate\"\nthreshold = 1\ndrop = 5\n",
                "`alerts[0].drop`: only an `event_volume_drop` alert takes `drop`",
            ),
            (
                "kind = \"event_volume_drop\"\nevent = \"X\"\ndrop = 5\nbaseline = \"30m\"\n",
                "`alerts[0].baseline`: expected a duration at least as long as the window",
            ),
            (
                "kind = \"event_volume_drop\"\nevent = \"X\"\nthreshold = 5\n",
                "`alerts[0].threshold`: an `event_volume_drop` alert takes `drop`",
            ),
        ] {
            let got = parse(&table(body)).unwrap_err();
            assert!(got.starts_with(error), "{body}: {got}");
        }
        let twice = format!(
            "{}\nkind = \"dead_letter_rate\"\nthreshold = 1\n",
            table("")
        );
        let got = parse(&format!("{twice}\n{twice}")).unwrap_err();
        assert!(
            got.starts_with("`alerts[1].name`: `a` names two alerts"),
            "{got}"
        );
        let got = parse("[alerts_webhook]\nurl = \"hooks.example\"\n").unwrap_err();
        assert!(got.contains("not an absolute URL"), "{got}");
    }
}
