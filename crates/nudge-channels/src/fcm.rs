//! Push through Firebase Cloud Messaging's HTTP v1 API.
//!
//! FCM takes an OAuth 2.0 access token made from a service-account key: a
//! JWT signed with the key's RSA private key (RS256) is exchanged at the
//! key's `token_uri` for a bearer token, which is kept until shortly before
//! it expires. Each push is a `POST /v1/projects/{project}/messages:send`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{Client, Refused, check_base_url};
use crate::{DeliveryError, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Receipt};

const PLUGIN: &str = "fcm";

/// The OAuth scope FCM's send API asks for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The JWT grant type of RFC 7523, as Google's token endpoint takes it.
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long before its expiry an access token is replaced, so that a token
/// never expires between being read and reaching FCM.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where the service-account key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ServiceAccountKey {
    /// A key file downloaded from the Firebase console.
    File(PathBuf),
    /// The file's JSON itself (from an environment variable, say).
    Json(String),
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The JSON holds the private key; only a file's path is shown.
        match self {
            ServiceAccountKey::File(p) => f.debug_tuple("File").field(p).finish(),
            ServiceAccountKey::Json(_) => f.write_str("Json(..)"),
        }
    }
}

/// Where and how an [`Fcm`] plugin sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcmConfig {
    /// The service account's key.
    pub key: ServiceAccountKey,
    /// The Firebase project; the key's `project_id` when `None`.
    pub project_id: Option<String>,
    /// The API's base URL; `https://fcm.googleapis.com` unless testing.
    pub api_url: String,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
    /// Where tokens FCM reports invalid are left for the host to remove.
    pub invalid_tokens: InvalidTokens,
}

impl FcmConfig {
    /// A config for FCM's public API with default settings.
    pub fn new(key: ServiceAccountKey) -> Self {
        FcmConfig {
            key,
            project_id: None,
            api_url: "https://fcm.googleapis.com".to_string(),
            settings: ProviderSettings::default(),
            invalid_tokens: InvalidTokens::default(),
        }
    }
}

/// A device token FCM said it will never deliver to again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidToken {
    /// The customer it was the `device_token` of (their display id).
    pub customer: String,
    /// The token.
    pub token: String,
    /// The send that found out.
    pub idempotency_key: String,
    /// FCM's error code: `UNREGISTERED` or `INVALID_ARGUMENT`.
    pub code: String,
}

/// The invalid tokens an [`Fcm`] plugin has met, shared with whoever
/// removes them from the profiles (cloning shares the list).
#[derive(Clone, Debug, Default)]
pub struct InvalidTokens(Arc<Mutex<Vec<InvalidToken>>>);

impl InvalidTokens {
    /// Takes the tokens reported since the last call.
    pub fn take(&self) -> Vec<InvalidToken> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn push(&self, token: InvalidToken) {
        if let Ok(mut v) = self.0.lock() {
            v.push(token);
        }
    }
}

impl PartialEq for InvalidTokens {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InvalidTokens {}

/// The fields of a service-account key file that signing needs.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: String,
}

/// A plugin that sends each push message to its device token.
///
/// 429 (with `Retry-After`), 5xx and refused connections are retried with
/// backoff. A token FCM reports as `UNREGISTERED` (404), or as an invalid
/// registration token (400 `INVALID_ARGUMENT`), fails the send for good and
/// is left in [`FcmConfig::invalid_tokens`], so the host removes it from
/// the profile. A 401 drops the access token; the next try fetches another.
pub struct Fcm {
    url: String,
    token_uri: String,
    client_email: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    access: Option<(String, Instant)>,
    invalid: InvalidTokens,
    client: Client,
    oauth: Client,
}

impl fmt::Debug for Fcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fcm")
            .field("url", &self.url)
            .field("token_uri", &self.token_uri)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl Fcm {
    /// Reads and checks the key, and makes the plugin.
    pub fn new(config: FcmConfig) -> Result<Self, ProviderConfigError> {
        config.settings.check(PLUGIN)?;
        let err = |reason: String| ProviderConfigError::new(PLUGIN, reason);
        let (text, source) = match &config.key {
            ServiceAccountKey::File(path) => (
                std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?,
                path.display().to_string(),
            ),
            ServiceAccountKey::Json(json) => (json.clone(), "the service account key".to_string()),
        };
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "{source} is not a service-account key file (JSON with `private_key`, `client_email` and `token_uri`): {e}"
            ))
        })?;
        if let Some(kind) = &key.kind
            && kind != "service_account"
        {
            return Err(err(format!(
                "{source} is a key of type {kind:?}, not \"service_account\""
            )));
        }
        let der = pem_body(&key.private_key, "PRIVATE KEY")
            .ok_or_else(|| err(format!("{source}: `private_key` is not a PEM private key")))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            err(format!(
                "{source}: `private_key` is not a usable RSA key (PKCS #8, 2048 bits or more): {e}"
            ))
        })?;
        crate::webhook::check_url(&key.token_uri)
            .map_err(|e| err(format!("{source}: `token_uri`: {}", e.reason)))?;
        let project = config
            .project_id
            .clone()
            .or(key.project_id)
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| err(format!("{source} has no `project_id`; set `project_id`")))?;
        if !project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(err(format!(
                "`project_id` = {project:?} is not a project id"
            )));
        }
        let base = check_base_url(PLUGIN, &config.api_url)?;
        Ok(Fcm {
            url: format!("{base}/v1/projects/{project}/messages:send"),
            token_uri: key.token_uri,
            client_email: key.client_email,
            key: pair,
            rng: SystemRandom::new(),
            access: None,
            invalid: config.invalid_tokens,
            // FCM does not deduplicate: a timed-out push is not sent again.
            client: Client::new(&config.settings, false),
            // Asking for a token twice is harmless.
            oauth: Client::new(&config.settings, true),
        })
    }

    /// The signed JWT that asks for an access token, issued at `now`
    /// (seconds since the epoch) and valid for an hour, the most Google takes.
    pub fn assertion(&self, now: u64) -> Result<String, DeliveryError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DeliveryError::permanent(0, "cannot sign the OAuth assertion"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The cached access token, or a new one from the token endpoint.
    fn access_token(&mut self) -> Result<String, DeliveryError> {
        if let Some((token, until)) = &self.access
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = self.assertion(now)?;
        let what = format!("OAuth token exchange at {}", self.token_uri);
        let uri = &self.token_uri;
        let accepted = self
            .oauth
            .send(&format!("POST {uri}"), |agent| {
                agent
                    .post(uri)
                    .header("Accept", "application/json")
                    .send_form([("grant_type", JWT_GRANT), ("assertion", assertion.as_str())])
            })
            .map_err(|mut e| {
                e.reason = format!("{what} failed: {}", e.reason);
                // A refused assertion (bad key, clock skew) is not a reason to
                // hold the push back forever, but a retry later may succeed.
                e.retryable = true;
                e
            })?;
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: Option<u64>,
        }
        let granted: Granted = serde_json::from_str(&accepted.body)
            .map_err(|e| DeliveryError::transient(0, format!("{what}: unexpected answer: {e}")))?;
        let life = Duration::from_secs(granted.expires_in.unwrap_or(3600));
        // A short-lived token is kept for half its life.
        let keep = if life > 2 * REFRESH_MARGIN {
            life - REFRESH_MARGIN
        } else {
            life / 2
        };
        self.access = Some((granted.access_token.clone(), Instant::now() + keep));
        Ok(granted.access_token)
    }

    /// The JSON request body for `msg`, as FCM documents it.
    pub fn request_body(&self, msg: &Outgoing) -> Result<Value, DeliveryError> {
        let field = |name: &str| msg.content.get(name).and_then(Value::as_str);
        let text = field("text")
            .ok_or_else(|| DeliveryError::permanent(0, "the push has no `text` content field"))?;
        let token = msg.to.trim();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DeliveryError::permanent(
                0,
                format!("{:?} is not a device token", msg.to),
            ));
        }
        let mut notification = Map::new();
        if let Some(title) = field("title") {
            notification.insert("title".into(), json!(title));
        }
        notification.insert("body".into(), json!(text));
        // FCM's data values are strings; the key lets the app report back.
        let mut data = Map::new();
        data.insert("nudge_key".into(), json!(msg.idempotency_key));
        data.insert("nudge_flow".into(), json!(msg.flow));
        data.insert("nudge_message".into(), json!(msg.message));
        let mut message = json!({
            "token": token,
            "notification": notification,
        });
        if let Some(url) = field("url") {
            data.insert("url".into(), json!(url));
            // Web clients open the link on a tap.
            message["webpush"] = json!({ "fcm_options": { "link": url } });
        }
        message["data"] = Value::Object(data);
        Ok(json!({ "message": message }))
    }
}

/// The base64 body of the first PEM block labelled `label`, decoded.
pub(crate) fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

/// FCM's error code in an error body (`UNREGISTERED`, `QUOTA_EXCEEDED`...),
/// else the status word.
fn error_code(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    let details = error.get("details").and_then(Value::as_array);
    details
        .into_iter()
        .flatten()
        .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        .or_else(|| error.get("status").and_then(Value::as_str))
        .map(str::to_string)
}

/// Whether an error body says the registration token itself is bad, not
/// the rest of the message: a field violation on `message.token`, or FCM's
/// message for an invalid token.
fn names_the_token(body: &Value) -> bool {
    let Some(error) = body.get("error") else {
        return false;
    };
    let on_token = error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("fieldViolations").and_then(Value::as_array))
        .flatten()
        .any(|v| v.get("field").and_then(Value::as_str) == Some("message.token"));
    on_token
        || error
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.to_ascii_lowercase().contains("registration token"))
}

impl Plugin for Fcm {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let body = serde_json::to_vec(&self.request_body(msg)?).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize the request: {e}"))
        })?;
        let bearer = format!("Bearer {}", self.access_token()?);
        let what = format!("POST {}", self.url);
        let url = &self.url;
        let sent = self.client.send_answered(&what, |agent| {
            agent
                .post(url)
                .header("Authorization", &bearer)
                .header("Content-Type", "application/json; charset=UTF-8")
                .send(&body[..])
        });
        match sent {
            Ok(accepted) => Ok(accepted.receipt("name")),
            Err(Refused {
                error,
                answer: Some((status, text)),
            }) => {
                let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = error_code(&answer).unwrap_or_default();
                let gone = (status == 404 && code == "UNREGISTERED")
                    || (status == 400 && code == "INVALID_ARGUMENT" && names_the_token(&answer));
                if gone {
                    self.invalid.push(InvalidToken {
                        customer: msg.customer.clone(),
                        token: msg.to.trim().to_string(),
                        idempotency_key: msg.idempotency_key.clone(),
                        code: code.clone(),
                    });
                    return Err(DeliveryError::permanent(
                        error.attempts,
                        format!(
                            "the device token is no longer valid ({code}); it is removed from the profile"
                        ),
                    ));
                }
                if status == 401 {
                    // Revoked or expired early: the next try asks for another.
                    self.access = None;
                    return Err(DeliveryError::transient(error.attempts, error.reason));
                }
                Err(error)
            }
            Err(Refused { error, .. }) => Err(error),
        }
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_fcm_documents_them() {
        let unregistered = json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}});
        assert_eq!(error_code(&unregistered).as_deref(), Some("UNREGISTERED"));
        assert!(!names_the_token(&unregistered));
        let bad_token = json!({"error": {"code": 400, "message": "The registration token is not a valid FCM registration token", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}});
        assert!(names_the_token(&bad_token));
        let violation = json!({"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]}});
        assert_eq!(error_code(&violation).as_deref(), Some("INVALID_ARGUMENT"));
        assert!(names_the_token(&violation));
        // A payload FCM refuses is the message's fault, not the token's.
        let payload = json!({"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.data[0].value", "description": "Invalid value"}]}]}});
        assert!(!names_the_token(&payload));
        assert_eq!(error_code(&json!({"nope": 1})), None);
    }

    #[test]
    fn pem_blocks_are_decoded() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body(pem, "PRIVATE KEY"), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_body(pem, "CERTIFICATE"), None);
        assert_eq!(
            pem_body(
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----",
                "PRIVATE KEY"
            ),
            None
        );
    }

    #[test]
    fn a_bad_key_is_refused_with_its_reason() {
        let config = |json: &str| FcmConfig::new(ServiceAccountKey::Json(json.to_string()));
        let err = Fcm::new(config("{}")).unwrap_err();
        assert!(
            err.reason.contains("not a service-account key file"),
            "{err}"
        );
        let err = Fcm::new(config(r#"{"type":"authorized_user","private_key":"x","client_email":"a@b","token_uri":"https://oauth2.googleapis.com/token"}"#)).unwrap_err();
        assert!(err.reason.contains("\"authorized_user\""), "{err}");
        let err = Fcm::new(config(r#"{"type":"service_account","private_key":"not pem","client_email":"a@b","token_uri":"https://oauth2.googleapis.com/token"}"#)).unwrap_err();
        assert!(err.reason.contains("not a PEM private key"), "{err}");
        let err = Fcm::new(config(r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----","client_email":"a@b","token_uri":"https://oauth2.googleapis.com/token"}"#)).unwrap_err();
        assert!(err.reason.contains("not a usable RSA key"), "{err}");
        let err = Fcm::new(FcmConfig::new(ServiceAccountKey::File(
            "/nonexistent/key.json".into(),
        )))
        .unwrap_err();
        assert!(
            err.reason.contains("cannot read /nonexistent/key.json"),
            "{err}"
        );
        assert!(!format!("{:?}", config("secret")).contains("secret"));
    }
}
