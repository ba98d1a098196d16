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
use nudge_channels::{PluginSpec, WebhookConfig};
use serde::Deserialize;

use crate::workspace::MANIFEST;

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
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The store file, relative to the project root.
    pub path: Option<String>,
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
}

/// `[channels.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// `outbox`, `stdout` or `webhook`.
    pub plugin: String,
    /// The webhook's endpoint.
    pub url: Option<String>,
    /// Extra webhook request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The limit for one webhook try.
    pub timeout_seconds: Option<u64>,
    /// Webhook tries in total, the first included.
    pub max_attempts: Option<u32>,
}

/// Why `nudge.toml` could not be used.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the TOML location when there is one.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason.trim_end())
    }
}

impl Config {
    /// Reads the project's `nudge.toml`; a project without one has the defaults.
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        Self::load_with(root, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with environment lookups through `env`, for tests.
    pub fn load_with(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = root.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(ConfigError {
                    path,
                    reason: format!("cannot read it: {e}"),
                });
            }
        };
        Self::parse(&text, env).map_err(|reason| ConfigError { path, reason })
    }

    /// Parses the text of a `nudge.toml`, expanding `${NAME}` through `env`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        // Typed straight from the text, so errors carry line and column.
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.expand(&env)?;
        config.check()?;
        Ok(config)
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
        if let Some(t) = &mut self.serve.admin_token {
            *t = expand_str(t, "serve.admin_token", env)?;
        }
        for (name, section) in &mut self.channels {
            if let Some(u) = &mut section.url {
                *u = expand_str(u, &format!("channels.{name}.url"), env)?;
            }
            for (header, v) in &mut section.headers {
                *v = expand_str(v, &format!("channels.{name}.headers.{header}"), env)?;
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: channel names and plugin settings.
    fn check(&self) -> Result<(), String> {
        self.routes().map(drop)
    }

    /// The store path, resolved against the project root.
    pub fn store_path(&self, root: &Path) -> Option<PathBuf> {
        self.store.path.as_ref().map(|p| root.join(p))
    }

    /// The channel plugins the file configures.
    pub fn routes(&self) -> Result<Vec<(Channel, PluginSpec)>, String> {
        self.channels
            .iter()
            .map(|(name, section)| {
                let channel = Channel::from_name(name).ok_or_else(|| {
                    format!(
                        "[channels.{name}]: unknown channel; channels are email, sms, push, webhook and audience"
                    )
                })?;
                let spec = section
                    .spec()
                    .map_err(|reason| format!("[channels.{name}]: {reason}"))?;
                Ok((channel, spec))
            })
            .collect()
    }
}

impl ChannelSection {
    fn spec(&self) -> Result<PluginSpec, String> {
        let webhook_only = self.url.is_some()
            || !self.headers.is_empty()
            || self.timeout_seconds.is_some()
            || self.max_attempts.is_some();
        match self.plugin.as_str() {
            "outbox" | "stdout" if webhook_only => Err(format!(
                "`url`, `headers`, `timeout_seconds` and `max_attempts` are webhook settings, but the plugin is `{}`",
                self.plugin
            )),
            "outbox" => Ok(PluginSpec::Outbox),
            "stdout" => Ok(PluginSpec::Stdout),
            "webhook" => {
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
                if let Some(s) = self.timeout_seconds {
                    if s == 0 {
                        return Err("`timeout_seconds` must be at least 1".to_string());
                    }
                    config = config.timeout(Duration::from_secs(s));
                }
                if let Some(n) = self.max_attempts {
                    if n == 0 {
                        return Err("`max_attempts` must be at least 1".to_string());
                    }
                    config.retry.max_attempts = n;
                }
                Ok(PluginSpec::Webhook(config))
            }
            other => Err(format!(
                "unknown plugin `{other}`; expected `outbox`, `stdout` or `webhook`"
            )),
        }
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

/// Why a project's `nudge.toml` cannot be used, placed in its text: what
/// `nudge check` reports as a diagnostic.
#[derive(Debug)]
pub struct ManifestProblem {
    /// The file.
    pub path: PathBuf,
    /// Its text (empty when it could not be read).
    pub text: String,
    /// The bytes the problem is about, when they can be told.
    pub span: Option<std::ops::Range<usize>>,
    /// What is wrong, without the location.
    pub message: String,
}

/// Checks a project's `nudge.toml` the way `nudge run` and `nudge serve`
/// read it (environment variables included); `None` when the file is absent
/// or usable.
pub fn manifest_problem(root: &Path) -> Option<ManifestProblem> {
    manifest_problem_with(root, |name| std::env::var(name).ok())
}

/// [`manifest_problem`] with environment lookups through `env`, for tests.
pub fn manifest_problem_with(
    root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Option<ManifestProblem> {
    let path = root.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(ManifestProblem {
                path,
                text: String::new(),
                span: None,
                message: format!("cannot read it: {e}"),
            });
        }
    };
    // Syntax and unknown keys: the TOML parser knows exactly where.
    if let Err(e) = toml::from_str::<Config>(&text) {
        return Some(ManifestProblem {
            span: e.span(),
            message: e.message().trim_end().to_string(),
            path,
            text,
        });
    }
    let message = Config::parse(&text, env).err()?;
    Some(ManifestProblem {
        span: setting_span(&text, &message),
        message,
        path,
        text,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("secret".to_string()),
            "TOKEN" => Some("t0k".to_string()),
            _ => None,
        }
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
                "webhook settings",
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

    #[test]
    fn manifest_problems_are_placed_in_the_text() {
        let dir = std::env::temp_dir().join(format!("nudge-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |text: &str| std::fs::write(dir.join(MANIFEST), text).unwrap();
        let at = |p: &ManifestProblem| {
            let span = p.span.clone().expect("a span");
            p.text[span].to_string()
        };

        write("[store]\npth = \"x\"\n");
        let p = manifest_problem_with(&dir, env).expect("a problem");
        assert_eq!(at(&p), "pth");
        assert!(p.message.contains("unknown field `pth`"), "{}", p.message);

        write("[channels.fax]\nplugin = \"stdout\"\n");
        let p = manifest_problem_with(&dir, env).expect("a problem");
        assert_eq!(at(&p), "[channels.fax]");

        write("[serve]\nlisten = \"${NOPE}\"\n");
        let p = manifest_problem_with(&dir, env).expect("a problem");
        assert_eq!(at(&p), "listen");
        assert!(p.message.contains("NOPE"), "{}", p.message);

        write("# fine\n[store]\npath = \"x.db\"\n");
        assert!(manifest_problem_with(&dir, env).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(manifest_problem_with(&dir, env).is_none());
    }
}
