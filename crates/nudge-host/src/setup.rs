//! Setting a host up from a project's settings: the engine's configuration,
//! the channel routes, the audience plugin, and the store with the outbox
//! and plugins its ledger delivers through.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::{AudienceSync, OutboxFile, OutboxMode, PluginSpec};
use nudge_runtime::engine::Config;
use nudge_store::{Store, StoreError};

use crate::config::Config as Settings;
use crate::durable::Router;

/// Why a host could not be set up: what went wrong, and how to fix it
/// when there is something to say.
#[derive(Debug)]
pub struct SetupError {
    /// What went wrong, as one line.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl SetupError {
    /// An error without a hint.
    pub fn new(message: impl Into<String>) -> SetupError {
        SetupError {
            message: message.into(),
            help: None,
        }
    }
}

impl From<StoreError> for SetupError {
    fn from(e: StoreError) -> SetupError {
        SetupError {
            message: e.to_string(),
            help: e.hint().map(str::to_string),
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SetupError {}

/// The engine's configuration: `nudge.toml`'s `[runtime]` settings, and
/// the policy's suppression lists plus `suppress`.
pub fn engine_config(
    bundle: &Bundle,
    settings: &Settings,
    suppress: &[PathBuf],
    release_spread: i64,
) -> Result<Config, SetupError> {
    // Checked when the file was read; the default stands otherwise.
    let max_lateness = settings
        .max_lateness()
        .ok()
        .flatten()
        .unwrap_or(nudge_runtime::engine::DEFAULT_MAX_LATENESS);
    let mut lists: Vec<PathBuf> = bundle
        .policy
        .suppress_lists
        .iter()
        .map(PathBuf::from)
        .collect();
    lists.extend(suppress.iter().cloned());
    let suppression = read_suppression(&lists).map_err(SetupError::new)?;
    Ok(Config {
        release_spread,
        suppression,
        max_lateness,
        catch_up_schedules: true,
        forget_every: settings.forget_every(),
        // Checked when nudge.toml was read.
        dedupe_window: settings
            .dedupe_window()
            .ok()
            .flatten()
            .unwrap_or(nudge_runtime::engine::DEFAULT_DEDUPE_WINDOW),
        catalogue: std::sync::Arc::new(settings.catalogue().map_err(SetupError::new)?),
        // With a store, customers beyond it are let go (`durable::bound_memory`);
        // without one (`nudge run --in-memory`), frozen.
        customers_in_memory: settings.customers_in_memory(),
    })
}

/// Reads suppression lists: one entry per line; blank lines and `#` comments
/// are skipped; entries are compared lower-cased.
fn read_suppression(paths: &[PathBuf]) -> Result<HashSet<String>, String> {
    let mut out = HashSet::new();
    for p in paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the suppression list {}: {e}", p.display()))?;
        for line in text.lines() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() {
                out.insert(entry.to_lowercase());
            }
        }
    }
    Ok(out)
}

/// The channel plugins of `nudge.toml`, each replaced by a route given on
/// the command line for the same channel.
pub fn merge_routes(
    settings: &Settings,
    cli: &[(Channel, PluginSpec)],
) -> Result<Vec<(Channel, PluginSpec)>, SetupError> {
    let mut routes = settings
        .routes()
        .map_err(|e| SetupError::new(format!("{}: {e}", nudge_project::MANIFEST)))?;
    routes.retain(|(channel, _)| cli.iter().all(|(c, _)| c != channel));
    routes.extend(cli.iter().cloned());
    Ok(routes)
}

/// A route written `CHANNEL=PLUGIN` (`sms=webhook=http://…`, `email=stdout`).
pub fn parse_route(text: &str) -> Result<(Channel, PluginSpec), String> {
    let (channel, spec) = text
        .split_once('=')
        .ok_or("expected CHANNEL=PLUGIN, such as sms=stdout")?;
    let channel = Channel::from_name(channel.trim()).ok_or_else(|| {
        format!("unknown channel {channel:?}; channels are email, sms, push, webhook and audience")
    })?;
    let spec: PluginSpec = spec.parse().map_err(|e| format!("{e}"))?;
    Ok((channel, spec))
}

/// The ad platform `[channels.audience]` names, ready to sync to.
pub fn audience_plugin(settings: &Settings) -> Result<Option<Box<dyn AudienceSync>>, SetupError> {
    let spec = settings
        .audience_sync()
        .map_err(|e| SetupError::new(format!("{}: {e}", nudge_project::MANIFEST)))?;
    spec.map(|s| s.build())
        .transpose()
        .map_err(|e| SetupError::new(format!("cannot set up the audience plugin: {e}")))
}

/// Opens (or with `reset`, recreates) the store, ties it to the engine's
/// configuration and sets up the outbox and plugins the ledger delivers
/// through.
pub fn open_store(
    store_path: &Path,
    reset: bool,
    config: &Config,
    outbox: &Path,
    routes: &[(Channel, PluginSpec)],
) -> Result<(Store, Router), SetupError> {
    if reset {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = store_path.to_path_buf().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SetupError::new(format!(
                        "cannot remove {}: {e}",
                        Path::new(&p).display()
                    )));
                }
            }
        }
    }
    let mut store = Store::open(store_path)?;
    let mut listed: Vec<String> = config.suppression.iter().cloned().collect();
    listed.sort();
    let fingerprint = nudge_store::fingerprint(config.release_spread, &listed);
    store.claim(&fingerprint)?;
    // A fresh store starts a fresh outbox; otherwise the outbox holds every
    // message sent so far and only grows. A crash can leave half a line at
    // its end, of a message the ledger still has pending: cut it, the
    // message is written again whole.
    let mode = if store.is_fresh()? {
        OutboxMode::Truncate
    } else {
        nudge_store::outbox::repair(outbox).map_err(|e| {
            SetupError::new(format!(
                "cannot repair the outbox {}: {e}",
                outbox.display()
            ))
        })?;
        OutboxMode::Append
    };
    let router = router(outbox, mode, routes)?;
    Ok((store, router))
}

/// The outbox (opened in `mode`) and the channel plugins a ledger
/// delivers through: the store's, and a cluster worker's.
pub fn router(
    outbox: &Path,
    mode: OutboxMode,
    routes: &[(Channel, PluginSpec)],
) -> Result<Router, SetupError> {
    let default = OutboxFile::open(outbox, mode).map_err(|e| {
        SetupError::new(format!("cannot open the outbox {}: {e}", outbox.display()))
    })?;
    let mut router = Router::new(Box::new(default), Some(outbox.to_path_buf()));
    for (channel, spec) in routes {
        if let PluginSpec::Fcm(c) = spec {
            router.watch_invalid_tokens(c.invalid_tokens.clone());
        }
        let plugin = spec.build(outbox, OutboxMode::Append).map_err(|e| {
            SetupError::new(format!("cannot set up the {} plugin: {e}", channel.name()))
        })?;
        router.route(*channel, plugin);
    }
    Ok(router)
}
