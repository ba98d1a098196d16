//! Meta Custom Audiences through the Marketing API's `/{audience_id}/users`
//! edge: `POST` adds people, `DELETE` removes them, each request a
//! form-encoded `payload` (a multi-key `schema` and the hashed `data` rows)
//! and a `session`, up to 10,000 rows per request, as documented at
//! developers.facebook.com/docs/marketing-api/reference/custom-audience/users.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::audience::{Batcher, MatchKeys, PhoneRules, Platform, Rows, check_batch_size};
use crate::http::{Client, Refused, check_base_url, required};
use crate::{DeliveryError, ProviderConfigError, ProviderSettings, SyncReport};

const PLUGIN: &str = "meta_audience";

/// The most rows Meta takes in one request.
pub const META_MAX_BATCH: usize = 10_000;

/// Where and how a [`MetaAudience`] plugin syncs.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaAudienceConfig {
    /// A system user's access token with the `ads_management` permission.
    pub access_token: String,
    /// Each flow audience's Custom Audience id, by the flow's name for it.
    pub audiences: BTreeMap<String, String>,
    /// The Graph API's base URL; `https://graph.facebook.com` unless testing.
    pub api_url: String,
    /// The Graph API version in the path, e.g. `v25.0`.
    pub api_version: String,
    /// Rows per request, at most [`META_MAX_BATCH`].
    pub batch_size: usize,
    /// How national phone numbers are read.
    pub phone: PhoneRules,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for MetaAudienceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is left out.
        f.debug_struct("MetaAudienceConfig")
            .field("audiences", &self.audiences)
            .field("api_url", &self.api_url)
            .field("api_version", &self.api_version)
            .field("batch_size", &self.batch_size)
            .field("phone", &self.phone)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MetaAudienceConfig {
    /// A config for Meta's public API with full batches and default settings.
    pub fn new(access_token: impl Into<String>, audiences: BTreeMap<String, String>) -> Self {
        MetaAudienceConfig {
            access_token: access_token.into(),
            audiences,
            api_url: "https://graph.facebook.com".to_string(),
            api_version: "v25.0".to_string(),
            batch_size: META_MAX_BATCH,
            phone: PhoneRules::default(),
            settings: ProviderSettings::default(),
        }
    }
}

/// Syncs audience membership to Meta Custom Audiences.
///
/// Each row is `[EMAIL, PHONE]`, SHA-256 of the normalized values, an empty
/// string where the profile has none. A request is retried as the other
/// providers' sends are (backoff, `Retry-After`, a bounded number of tries);
/// one that times out is tried again too, since adding or removing the same
/// people twice changes nothing.
pub struct MetaAudience {
    base: String,
    token: String,
    audiences: BTreeMap<String, String>,
    batch_size: usize,
    phone: PhoneRules,
    batcher: Batcher,
    report: SyncReport,
    session: u64,
    client: Client,
}

impl fmt::Debug for MetaAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaAudience")
            .field("base", &self.base)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl MetaAudience {
    /// Checks `config` and makes the plugin.
    pub fn new(config: MetaAudienceConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "access_token", &config.access_token)?;
        required(PLUGIN, "api_version", &config.api_version)?;
        check_batch_size(PLUGIN, config.batch_size, META_MAX_BATCH)?;
        config.settings.check(PLUGIN)?;
        config
            .phone
            .check()
            .map_err(|e| ProviderConfigError::new(PLUGIN, e))?;
        check_ids(PLUGIN, &config.audiences)?;
        let base = check_base_url(PLUGIN, &config.api_url)?;
        // Sessions only need to differ between uploads of one audience.
        let session = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(MetaAudience {
            base: format!("{base}/{}", config.api_version.trim_matches('/')),
            token: config.access_token,
            audiences: config.audiences,
            batch_size: config.batch_size,
            phone: config.phone,
            batcher: Batcher::default(),
            report: SyncReport::default(),
            session,
            client: Client::new(&config.settings, true),
        })
    }

    /// The form field `payload` for `rows`, as Meta documents it.
    pub fn payload(rows: &[MatchKeys]) -> Value {
        let data: Vec<Value> = rows
            .iter()
            .map(|k| {
                json!([
                    k.email.as_deref().unwrap_or(""),
                    k.phone.as_deref().unwrap_or("")
                ])
            })
            .collect();
        json!({ "schema": ["EMAIL", "PHONE"], "data": data })
    }

    /// Sends `rows` to `audience` in batches: `POST` to add, `DELETE` to remove.
    fn send(&mut self, audience: &str, add: bool, rows: Rows) -> Result<(), DeliveryError> {
        if rows.is_empty() {
            return Ok(());
        }
        let Some(id) = self.audiences.get(audience).cloned() else {
            self.report.of(audience).unmapped += rows.len() as u64;
            return Ok(());
        };
        self.session = self.session.wrapping_add(1);
        let url = format!("{}/{id}/users", self.base);
        let method = if add { "POST" } else { "DELETE" };
        let what = format!("{method} {url}");
        let batches: Vec<Vec<MatchKeys>> = rows
            .chunks(self.batch_size)
            .map(|c| c.iter().map(|(_, p)| p.keys.clone()).collect())
            .collect();
        let total = rows.len();
        for (i, batch) in batches.iter().enumerate() {
            let payload = Self::payload(batch).to_string();
            let session = json!({
                "session_id": self.session,
                "batch_seq": i + 1,
                "last_batch_flag": i + 1 == batches.len(),
                "estimated_num_total": total,
            })
            .to_string();
            let token = &self.token;
            let form = [
                ("payload", payload.as_str()),
                ("session", session.as_str()),
                ("access_token", token.as_str()),
            ];
            let result = self.client.send_answered(&what, |agent| {
                if add {
                    agent
                        .post(&url)
                        .header("Accept", "application/json")
                        .send_form(form)
                } else {
                    agent
                        .delete(&url)
                        .header("Accept", "application/json")
                        .force_send_body()
                        .send_form(form)
                }
            });
            match result {
                Ok(accepted) => {
                    let counts = self.report.of(audience);
                    counts.batches += 1;
                    let answer: Value = serde_json::from_str(&accepted.body).unwrap_or(Value::Null);
                    let invalid = answer
                        .get("num_invalid_entries")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    counts.invalid += invalid;
                    let taken = (batch.len() as u64).saturating_sub(invalid);
                    if add {
                        counts.added += taken;
                    } else {
                        counts.removed += taken;
                    }
                }
                Err(refused) => {
                    let e = throttled(refused);
                    // This batch and the ones after it wait for the next flush.
                    let rest = rows[i * self.batch_size..].to_vec();
                    self.batcher.put_back(audience, rest, &e, &mut self.report);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn flush_audience(&mut self, audience: &str) -> Result<(), DeliveryError> {
        let (adds, removes) = self.batcher.take(audience);
        let removed = self.send(audience, false, removes);
        let added = self.send(audience, true, adds);
        removed.and(added)
    }
}

crate::audience::batched_sync!(MetaAudience, Platform::Meta, PLUGIN);

/// The Graph API error codes of its rate limits, which it answers with a
/// `400` rather than a `429` (Marketing API, "Rate Limiting"): 4 (app), 17
/// (user), 32 (page), 613 (calls within a time window), 80003 (custom
/// audiences' own limit).
const THROTTLE_CODES: [i64; 5] = [4, 17, 32, 613, 80003];

/// A refused request as a failure that may go away when Meta said it was
/// throttling, whatever the status.
fn throttled(refused: Refused) -> DeliveryError {
    let mut error = refused.error;
    let code = refused.answer.and_then(|(_, body)| {
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_i64())
    });
    if code.is_some_and(|c| THROTTLE_CODES.contains(&c)) {
        error.retryable = true;
    }
    error
}

/// Refuses an audience id that is empty or not digits (both platforms number them).
pub(crate) fn check_ids(
    plugin: &'static str,
    audiences: &BTreeMap<String, String>,
) -> Result<(), ProviderConfigError> {
    if audiences.is_empty() {
        return Err(ProviderConfigError::new(
            plugin,
            "`audiences` is empty; map each flow audience to the platform's audience id",
        ));
    }
    for (name, id) in audiences {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderConfigError::new(
                plugin,
                format!("audience `{name}`: {id:?} is not an audience id (digits only)"),
            ));
        }
    }
    Ok(())
}
