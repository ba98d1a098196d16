//! Google Ads Customer Match through the Google Ads API's
//! `OfflineUserDataJobService` (REST), as documented at
//! developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match
//! and in the reference of `customers.offlineUserDataJobs`: a job of type
//! `CUSTOMER_MATCH_USER_LIST` is created for a user list (`:create`), gets
//! its `create` or `remove` operations of `userIdentifiers` (`hashedEmail`,
//! `hashedPhoneNumber`) in batches (`:addOperations`), then is started
//! (`:run`); Google processes it in the background.
//!
//! The API takes an OAuth 2.0 access token, made here from a refresh token
//! (the installed-app or web flow's, with its client id and secret) at
//! Google's token endpoint and kept until shortly before it expires, and
//! the account's developer token.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audience::{Batcher, MatchKeys, PhoneRules, Platform, Rows, check_batch_size};
use crate::http::{Client, check_base_url, required};
use crate::meta_audience::check_ids;
use crate::{DeliveryError, ProviderConfigError, ProviderSettings, SyncReport};

const PLUGIN: &str = "google_customer_match";

/// Operations per `addOperations` request at most. Google's limit per
/// request is higher; this bounds the size of one request body.
pub const GOOGLE_MAX_BATCH: usize = 10_000;

/// How long before its expiry an access token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where and how a [`GoogleCustomerMatch`] plugin syncs.
#[derive(Clone, PartialEq, Eq)]
pub struct GoogleCustomerMatchConfig {
    /// The Google Ads account that owns the lists: ten digits, dashes allowed.
    pub customer_id: String,
    /// The manager account the call is made through, if any (`login-customer-id`).
    pub login_customer_id: Option<String>,
    /// The API developer token (`developer-token`).
    pub developer_token: String,
    /// The OAuth client's id.
    pub client_id: String,
    /// The OAuth client's secret.
    pub client_secret: String,
    /// A refresh token granted for the `https://www.googleapis.com/auth/adwords` scope.
    pub refresh_token: String,
    /// Each flow audience's Customer Match user list id, by the flow's name for it.
    pub audiences: BTreeMap<String, String>,
    /// The API's base URL; `https://googleads.googleapis.com` unless testing.
    pub api_url: String,
    /// The API version in the path, e.g. `v21`.
    pub api_version: String,
    /// The OAuth token endpoint; `https://oauth2.googleapis.com/token` unless testing.
    pub token_url: String,
    /// Operations per request, at most [`GOOGLE_MAX_BATCH`].
    pub batch_size: usize,
    /// How national phone numbers are read.
    pub phone: PhoneRules,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
}

impl fmt::Debug for GoogleCustomerMatchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens and the client secret are left out.
        f.debug_struct("GoogleCustomerMatchConfig")
            .field("customer_id", &self.customer_id)
            .field("login_customer_id", &self.login_customer_id)
            .field("client_id", &self.client_id)
            .field("audiences", &self.audiences)
            .field("api_url", &self.api_url)
            .field("api_version", &self.api_version)
            .field("token_url", &self.token_url)
            .field("batch_size", &self.batch_size)
            .field("phone", &self.phone)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GoogleCustomerMatchConfig {
    /// A config for Google's public API with full batches and default settings.
    pub fn new(
        customer_id: impl Into<String>,
        developer_token: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
        audiences: BTreeMap<String, String>,
    ) -> Self {
        GoogleCustomerMatchConfig {
            customer_id: customer_id.into(),
            login_customer_id: None,
            developer_token: developer_token.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            audiences,
            api_url: "https://googleads.googleapis.com".to_string(),
            api_version: "v21".to_string(),
            token_url: "https://oauth2.googleapis.com/token".to_string(),
            batch_size: GOOGLE_MAX_BATCH,
            phone: PhoneRules::default(),
            settings: ProviderSettings::default(),
        }
    }
}

/// Syncs audience membership to Google Ads Customer Match user lists.
///
/// Each flush makes, per user list, one job for the additions and one for
/// the removals (a job holds one kind of change here), fills it in batches
/// and runs it. Requests are retried as the other providers' sends are; a
/// 401 drops the access token so the next try fetches another.
pub struct GoogleCustomerMatch {
    base: String,
    customer_id: String,
    login_customer_id: Option<String>,
    developer_token: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token_url: String,
    audiences: BTreeMap<String, String>,
    batch_size: usize,
    phone: PhoneRules,
    batcher: Batcher,
    report: SyncReport,
    access: Option<(String, Instant)>,
    client: Client,
}

impl fmt::Debug for GoogleCustomerMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleCustomerMatch")
            .field("base", &self.base)
            .field("customer_id", &self.customer_id)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// An account id without its dashes, or an error naming the setting.
fn account_id(key: &str, id: &str) -> Result<String, ProviderConfigError> {
    let digits: String = id.chars().filter(|c| *c != '-').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProviderConfigError::new(
            PLUGIN,
            format!(
                "`{key}` = {id:?} is not a Google Ads account id (10 digits, such as 123-456-7890)"
            ),
        ));
    }
    Ok(digits)
}

impl GoogleCustomerMatch {
    /// Checks `config` and makes the plugin.
    pub fn new(config: GoogleCustomerMatchConfig) -> Result<Self, ProviderConfigError> {
        required(PLUGIN, "developer_token", &config.developer_token)?;
        required(PLUGIN, "client_id", &config.client_id)?;
        required(PLUGIN, "client_secret", &config.client_secret)?;
        required(PLUGIN, "refresh_token", &config.refresh_token)?;
        required(PLUGIN, "api_version", &config.api_version)?;
        let customer_id = account_id("customer_id", &config.customer_id)?;
        let login_customer_id = config
            .login_customer_id
            .as_deref()
            .map(|id| account_id("login_customer_id", id))
            .transpose()?;
        check_batch_size(PLUGIN, config.batch_size, GOOGLE_MAX_BATCH)?;
        config.settings.check(PLUGIN)?;
        config
            .phone
            .check()
            .map_err(|e| ProviderConfigError::new(PLUGIN, e))?;
        check_ids(PLUGIN, &config.audiences)?;
        let base = check_base_url(PLUGIN, &config.api_url)?;
        let token_url = check_base_url(PLUGIN, &config.token_url)?;
        Ok(GoogleCustomerMatch {
            base: format!("{base}/{}", config.api_version.trim_matches('/')),
            customer_id,
            login_customer_id,
            developer_token: config.developer_token,
            client_id: config.client_id,
            client_secret: config.client_secret,
            refresh_token: config.refresh_token,
            token_url,
            audiences: config.audiences,
            batch_size: config.batch_size,
            phone: config.phone,
            batcher: Batcher::default(),
            report: SyncReport::default(),
            access: None,
            client: Client::new(&config.settings, true),
        })
    }

    /// One operation of an `addOperations` request, as Google documents it.
    pub fn operation(add: bool, keys: &MatchKeys) -> Value {
        let mut ids = Vec::new();
        if let Some(e) = &keys.email {
            ids.push(json!({ "hashedEmail": e }));
        }
        if let Some(p) = &keys.phone {
            ids.push(json!({ "hashedPhoneNumber": p }));
        }
        let data = json!({ "userIdentifiers": ids });
        if add {
            json!({ "create": data })
        } else {
            json!({ "remove": data })
        }
    }

    /// The cached access token, or a new one from the refresh token.
    fn access_token(&mut self) -> Result<String, DeliveryError> {
        if let Some((token, until)) = &self.access
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = self.token_url.clone();
        let what = format!("POST {url}");
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("refresh_token", self.refresh_token.as_str()),
        ];
        let accepted = self
            .client
            .send(&what, |agent| {
                agent
                    .post(&url)
                    .header("Accept", "application/json")
                    .send_form(form)
            })
            .map_err(|mut e| {
                e.reason = format!("OAuth token refresh failed: {}", e.reason);
                e
            })?;
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: Option<u64>,
        }
        let granted: Granted = serde_json::from_str(&accepted.body).map_err(|e| {
            DeliveryError::transient(accepted.attempts, format!("{what}: unexpected answer: {e}"))
        })?;
        let life = Duration::from_secs(granted.expires_in.unwrap_or(3600));
        let keep = if life > 2 * REFRESH_MARGIN {
            life - REFRESH_MARGIN
        } else {
            life / 2
        };
        self.access = Some((granted.access_token.clone(), Instant::now() + keep));
        Ok(granted.access_token)
    }

    /// One authenticated JSON `POST` to `path` (after the version).
    fn call(&mut self, path: &str, body: &Value) -> Result<Value, DeliveryError> {
        let token = self.access_token()?;
        let url = format!("{}/{path}", self.base);
        let what = format!("POST {url}");
        let bytes = serde_json::to_vec(body).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize the request: {e}"))
        })?;
        let (developer, login) = (&self.developer_token, &self.login_customer_id);
        let result = self.client.send(&what, |agent| {
            let mut req = agent
                .post(&url)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .header("Authorization", &format!("Bearer {token}"))
                .header("developer-token", developer);
            if let Some(login) = login {
                req = req.header("login-customer-id", login);
            }
            req.send(&bytes[..])
        });
        match result {
            Ok(accepted) => Ok(serde_json::from_str(&accepted.body).unwrap_or(Value::Null)),
            Err(e) => {
                if e.reason.contains("HTTP 401") {
                    self.access = None;
                }
                Err(e)
            }
        }
    }

    /// Creates, fills and runs one job that adds or removes `rows` in `audience`.
    fn send(&mut self, audience: &str, add: bool, rows: Rows) -> Result<(), DeliveryError> {
        if rows.is_empty() {
            return Ok(());
        }
        let Some(list) = self.audiences.get(audience).cloned() else {
            self.report.of(audience).unmapped += rows.len() as u64;
            return Ok(());
        };
        let customer = self.customer_id.clone();
        let mut refused = 0u64;
        let result = (|| -> Result<(), DeliveryError> {
            let created = self.call(
                &format!("customers/{customer}/offlineUserDataJobs:create"),
                &json!({
                    "job": {
                        "type": "CUSTOMER_MATCH_USER_LIST",
                        "customerMatchUserListMetadata": {
                            "userList": format!("customers/{customer}/userLists/{list}"),
                        },
                    },
                }),
            )?;
            let job = created
                .get("resourceName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    DeliveryError::permanent(
                        1,
                        format!("creating a job for user list {list}: the answer has no `resourceName`: {created}"),
                    )
                })?
                .to_string();
            for batch in rows.chunks(self.batch_size) {
                let operations: Vec<Value> = batch
                    .iter()
                    .map(|(_, p)| Self::operation(add, &p.keys))
                    .collect();
                let answer = self.call(
                    &format!("{job}:addOperations"),
                    &json!({ "operations": operations, "enablePartialFailure": true }),
                )?;
                let invalid = partial_failures(&answer);
                refused += invalid;
                let counts = self.report.of(audience);
                counts.batches += 1;
                counts.invalid += invalid;
            }
            self.call(&format!("{job}:run"), &json!({}))?;
            Ok(())
        })();
        let counts = self.report.of(audience);
        match result {
            Ok(()) => {
                // Operations refused in a partial failure were not taken.
                let n = (rows.len() as u64).saturating_sub(refused);
                if add {
                    counts.added += n;
                } else {
                    counts.removed += n;
                }
                Ok(())
            }
            Err(e) => {
                // A job that is not run changes nothing: the whole list waits
                // for the next flush.
                self.batcher.put_back(audience, rows, &e, &mut self.report);
                Err(e)
            }
        }
    }

    fn flush_audience(&mut self, audience: &str) -> Result<(), DeliveryError> {
        let (adds, removes) = self.batcher.take(audience);
        let removed = self.send(audience, false, removes);
        let added = self.send(audience, true, adds);
        removed.and(added)
    }
}

/// How many operations a partly failed `addOperations` refused: the errors
/// of its `partialFailureError` (a `google.rpc.Status` whose details hold
/// `GoogleAdsFailure`s), at least one when the field is there.
fn partial_failures(answer: &Value) -> u64 {
    let Some(status) = answer.get("partialFailureError") else {
        return 0;
    };
    let errors: usize = status["details"].as_array().map_or(0, |d| {
        d.iter()
            .map(|f| f["errors"].as_array().map_or(0, Vec::len))
            .sum()
    });
    errors.max(1) as u64
}

crate::audience::batched_sync!(GoogleCustomerMatch, Platform::Google, PLUGIN);
