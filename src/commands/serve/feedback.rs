//! The providers' webhooks: SendGrid's Event Webhook, Postmark's bounce,
//! spam, delivery and subscription webhooks, Twilio's status callbacks and
//! inbound SMS, and Amazon SES's notifications through SNS.
//!
//! A request is verified first (a signature, or Postmark's Basic-auth
//! credentials), then read into reports ([`nudge_channels::feedback`]). The
//! engine thread finds each report's send in the ledger (by idempotency key,
//! else the last send to the address) and the customer it went to; each
//! report then becomes the standard event for that customer (Message
//! Bounced, Marked As Spam, Unsubscribed, Message Clicked, SMS Received) and
//! goes through the same path as any call: durable before the answer,
//! applied by the engine, traced. The report's provider id is the call's
//! `messageId`, so a webhook the provider retries is applied once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nudge_channels::Outgoing;
use nudge_channels::feedback::{self, Refusal, Report, Subject, sendgrid, ses, twilio};
use nudge_runtime::engine::{Engine, Sink};
use nudge_store::Store;
use serde_json::{Map, Value, json};

use super::{App, error};
use nudge_host::config::FeedbackVerifiers;

/// The largest webhook body read: SendGrid batches events, up to some
/// hundreds of kilobytes.
const MAX_WEBHOOK_BODY: usize = 2 * 1024 * 1024;

/// A report's send and how a call names its customer.
pub(super) struct Resolved {
    /// The send the report is about.
    pub send: Outgoing,
    /// `userId` or `anonymousId`.
    pub field: &'static str,
    /// The id.
    pub id: String,
}

/// The webhooks' checks and counters.
#[derive(Default)]
pub(super) struct Hooks {
    verifiers: FeedbackVerifiers,
    /// Reports by provider and by what became of them.
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Hooks {
    /// The webhooks `verifiers` turns on.
    pub fn new(verifiers: FeedbackVerifiers) -> Self {
        Hooks {
            verifiers,
            counts: Mutex::default(),
        }
    }

    fn count(&self, provider: &'static str, outcome: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((provider, outcome)).or_default() += n;
        }
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP nudge_feedback_reports_total Provider webhook reports: applied as events, about a delivery, or matching no send.\n# TYPE nudge_feedback_reports_total counter\n",
        );
        if let Ok(c) = self.counts.lock() {
            for ((provider, outcome), n) in c.iter() {
                out.push_str(&format!(
                    "nudge_feedback_reports_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} {n}\n"
                ));
            }
        }
        out
    }
}

/// The webhook routes.
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/webhooks/sendgrid", post(sendgrid_events))
        .route("/webhooks/postmark", post(postmark_record))
        .route("/webhooks/twilio/status", post(twilio_status))
        .route("/webhooks/twilio/sms", post(twilio_sms))
        .route("/webhooks/ses", post(ses_notification))
}

/// Looks each subject's send up in the ledger, on the engine thread.
pub(super) fn resolve<S: Sink>(
    store: &Store,
    engine: &mut Engine<'_, S>,
    subjects: &[Subject],
) -> Vec<Option<Resolved>> {
    subjects
        .iter()
        .map(|subject| {
            let found = match subject {
                Subject::Send(key) => store.sent(key),
                Subject::Address { channel, address } => store.last_sent_to(channel, address),
            };
            let send = match found {
                Ok(s) => s?,
                Err(e) => {
                    eprintln!("warning: looking up a provider report's send: {e}");
                    return None;
                }
            };
            let (field, id) = engine.caller_of(&send.customer)?;
            Some(Resolved { send, field, id })
        })
        .collect()
}

fn refused(provider: &str, r: &Refusal) -> Response {
    let (status, what) = match r {
        Refusal::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "refused"),
        Refusal::Forged(_) => (StatusCode::FORBIDDEN, "refused"),
        Refusal::Malformed(_) => (StatusCode::BAD_REQUEST, "not understood"),
    };
    if status != StatusCode::BAD_REQUEST {
        eprintln!("warning: {provider} webhook {what}: {r}");
    }
    error(status, &r.to_string(), None)
}

fn off(provider: &str, setting: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("the {provider} webhook is off: set {setting} under [feedback] in nudge.toml"),
        None,
    )
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_WEBHOOK_BODY)
        .await
        .map_err(|e| {
            let msg = format!("cannot read the webhook body (at most 2 MB): {e}");
            error(StatusCode::PAYLOAD_TOO_LARGE, &msg, None)
        })
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn sendgrid_events(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let Some(verifier) = app.hooks.verifiers.sendgrid.clone() else {
        return off("SendGrid", "sendgrid_verification_key");
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let checked = verifier.verify(
        header_str(&headers, sendgrid::SIGNATURE_HEADER),
        header_str(&headers, sendgrid::TIMESTAMP_HEADER),
        &body,
    );
    if let Err(r) = checked {
        return refused("SendGrid", &r);
    }
    match sendgrid::parse(&body) {
        Ok(reports) => apply(&app, "sendgrid", reports).await,
        Err(r) => refused("SendGrid", &r),
    }
}

async fn postmark_record(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let Some(auth) = app.hooks.verifiers.postmark.clone() else {
        return off("Postmark", "postmark_username and postmark_password");
    };
    if let Err(r) = auth.check(header_str(&headers, header::AUTHORIZATION.as_str())) {
        return refused("Postmark", &r);
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match nudge_channels::feedback::postmark::parse(&body) {
        Ok(report) => apply(&app, "postmark", report.into_iter().collect()).await,
        Err(r) => refused("Postmark", &r),
    }
}

/// The URL Twilio called: `public_url` (or this server's own address, as
/// the `Host` header gives it) followed by the path and query.
fn called_url(app: &App, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match &app.hooks.verifiers.public_url {
        Some(base) => format!("{base}{path}"),
        None => format!(
            "http://{}{path}",
            header_str(headers, header::HOST.as_str()).unwrap_or("localhost")
        ),
    }
}

/// Verifies a Twilio form post; its parameters, or the refusal.
async fn twilio_form(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Result<Vec<(String, String)>, Response> {
    let Some(token) = app.hooks.verifiers.twilio_auth_token.clone() else {
        return Err(off(
            "Twilio",
            "twilio_auth_token (or configure a twilio channel)",
        ));
    };
    let body = read_body(body).await?;
    let params = feedback::parse_form(&String::from_utf8_lossy(&body));
    let url = called_url(app, headers, uri);
    twilio::verify(
        &token,
        &url,
        &params,
        header_str(headers, twilio::SIGNATURE_HEADER),
    )
    .map_err(|r| refused("Twilio", &r))?;
    Ok(params)
}

async fn twilio_status(
    State(app): State<App>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let params = match twilio_form(&app, &headers, &uri, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let query = feedback::parse_form(uri.query().unwrap_or_default());
    let key = query
        .iter()
        .find(|(k, _)| k == "nudge_key")
        .map(|(_, v)| v.as_str());
    match twilio::status(&params, key) {
        Ok(report) => apply(&app, "twilio", report.into_iter().collect()).await,
        Err(r) => refused("Twilio", &r),
    }
}

async fn twilio_sms(State(app): State<App>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    let params = match twilio_form(&app, &headers, &uri, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let report = match twilio::inbound(&params) {
        Ok(r) => r,
        Err(r) => return refused("Twilio", &r),
    };
    let answer = apply(&app, "twilio", vec![report]).await;
    if !answer.status().is_success() {
        return answer;
    }
    // Twilio wants TwiML back; an empty response sends no reply (STOP and
    // HELP are answered by Twilio's own opt-out handling).
    (
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}

/// Amazon SNS posting SES's notifications: the envelope's topic and
/// signature are checked first; a subscription confirmation is confirmed
/// by visiting its `SubscribeURL`, a notification's reports are applied.
async fn ses_notification(State(app): State<App>, body: Body) -> Response {
    let Some(verifier) = app.hooks.verifiers.ses.clone() else {
        return off("SES", "ses_topic_arn and ses_signing_certificate");
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let envelope = match ses::Envelope::parse(&body) {
        Ok(e) => e,
        Err(r) => return refused("SES", &r),
    };
    if let Err(r) = verifier.verify(&envelope) {
        return refused("SES", &r);
    }
    match envelope.kind.as_str() {
        "SubscriptionConfirmation" => {
            let Some(url) = envelope.subscribe_url else {
                return refused("SES", &Refusal::Malformed("no SubscribeURL".into()));
            };
            confirm_subscription(url).await
        }
        "Notification" => match ses::reports(&envelope.message) {
            Ok(reports) => apply(&app, "ses", reports).await,
            Err(r) => refused("SES", &r),
        },
        other => (StatusCode::OK, axum::Json(json!({ "ignored": other }))).into_response(),
    }
}

/// Visits a subscription's `SubscribeURL`, which is how SNS takes a yes.
async fn confirm_subscription(url: String) -> Response {
    let visited = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .new_agent();
        agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("visiting the SubscribeURL failed: {e}"))
    })
    .await;
    match visited {
        Ok(Ok(status)) => {
            eprintln!("note: confirmed the SES notification subscription (HTTP {status})");
            (StatusCode::OK, axum::Json(json!({ "confirmed": true }))).into_response()
        }
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, &e, None),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None),
    }
}

/// Resolves the reports on the engine thread, then applies the events they
/// become as calls; answers once they are durable.
async fn apply(app: &App, provider: &'static str, reports: Vec<Report>) -> Response {
    let subjects: Vec<Subject> = reports.iter().map(|r| r.subject.clone()).collect();
    let resolved = if subjects.is_empty() {
        Vec::new()
    } else {
        let (msg, answer) =
            super::ask(move |live| resolve(&live.store, &mut live.engine, &subjects));
        if let Err(e) = app.tx.try_send(msg) {
            return super::not_taken(app, e);
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None),
        }
    };
    let now = chrono::Utc::now();
    let stamp = super::pages::applied_now();
    let (mut lines, mut unmatched, mut outcomes) = (Vec::new(), 0u64, 0u64);
    for (report, found) in reports.iter().zip(resolved) {
        let Some(found) = found else {
            unmatched += 1;
            continue;
        };
        match report.event(&found.send) {
            Some((name, props)) => lines.push(call_line(
                report,
                &found,
                name,
                props,
                &stamp,
                app.receipt,
                now,
            )),
            None => outcomes += 1,
        }
    }
    app.hooks.count(provider, "unmatched", unmatched);
    app.hooks.count(provider, "outcome", outcomes);
    let applied = lines.len() as u64;
    if !lines.is_empty() {
        let (msg, answer) = super::calls(lines, Vec::new());
        if let Err(e) = app.tx.try_send(msg) {
            return super::not_taken(app, e);
        }
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e, None),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None),
        }
    }
    app.hooks.count(provider, "applied", applied);
    (
        StatusCode::OK,
        axum::Json(json!({
            "applied": applied,
            "outcomes": outcomes,
            "unmatched": unmatched,
        })),
    )
        .into_response()
}

/// A Segment track call for the report's event, at the provider's time
/// (never later than now), with the report's id as `messageId`.
fn call_line(
    report: &Report,
    found: &Resolved,
    event: &str,
    props: Map<String, Value>,
    now: &str,
    receipt: bool,
    now_at: chrono::DateTime<chrono::Utc>,
) -> String {
    let at = report
        .at_millis
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .filter(|t| *t <= now_at)
        .map_or_else(
            || now.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
    let mut call = json!({
        "type": "track",
        "event": event,
        "properties": props,
        "messageId": report.id,
        "timestamp": at,
    });
    crate::commands::put(&mut call, found.field, json!(found.id));
    if receipt {
        crate::commands::put(&mut call, "receivedAt", json!(now));
    }
    call.to_string()
}
