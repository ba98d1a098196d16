//! The pages behind the links in every marketing email: the signed
//! unsubscribe link (a confirm page on `GET`, RFC 8058's one-click `POST`)
//! and a small preference page (channels, topics, how often, preferred
//! hour).
//!
//! Links are checked with the same signer the email plugins sign them with
//! (`unsubscribe_url` and `unsubscribe_secret` of an email channel), so
//! nobody can unsubscribe or change another customer. A choice goes in as
//! calls (`Unsubscribed`, `Subscribed`, an `identify` with the traits)
//! through the same path as any call, durable before the page answers, so
//! the next send honours it.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use nudge_bytecode::Value;
use nudge_channels::Unsubscribe;
use nudge_channels::feedback::parse_form;
use nudge_runtime::engine::{Engine, Sink};
use serde_json::json;

use super::App;

/// What the page needs to know of a customer.
pub(super) struct Known {
    /// How a call names them: `userId` or `anonymousId`, and the id.
    pub caller: (&'static str, String),
    /// Marketing consent on email, SMS and push, where they have said.
    pub consents: [Option<bool>; 3],
    /// The `topics` trait, when the profile declares it and it is set.
    pub topics: Option<Vec<String>>,
    /// The `email_frequency` trait.
    pub frequency: Option<String>,
    /// The `preferred_hour` trait.
    pub hour: Option<i64>,
}

impl Known {
    /// What the engine knows of the customer `caller` names.
    pub fn read<S: Sink>(engine: &mut Engine<'_, S>, caller: (&'static str, String)) -> Known {
        let id = caller.1.clone();
        let topics = match engine.profile_field(&id, TOPICS) {
            Some(Value::List(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        };
        let frequency = match engine.profile_field(&id, FREQUENCY) {
            Some(Value::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        let hour = match engine.profile_field(&id, HOUR) {
            Some(Value::Int(h)) => Some(h),
            _ => None,
        };
        Known {
            consents: engine.consents_of(&id).unwrap_or([None; 3]),
            caller,
            topics,
            frequency,
            hour,
        }
    }
}

/// The traits the page writes; a project declares them in its profile to
/// use them (`topics: list<string> = []`, `email_frequency: string?`,
/// `preferred_hour: int?`).
const TOPICS: &str = "topics";
const FREQUENCY: &str = "email_frequency";
const HOUR: &str = "preferred_hour";

/// The pages' settings.
#[derive(Default)]
pub(super) struct Pages {
    /// The signer of the links; without one the pages are off.
    pub links: Option<Unsubscribe>,
    /// Email lists the preference page offers.
    pub topics: Vec<String>,
}

/// The channel named by the token of a preference-page link.
const PREFERENCES: &str = "preferences";
const CHANNELS: [&str; 3] = ["email", "sms", "push"];
/// How often, as the page offers it; stored as the `email_frequency` trait.
const FREQUENCIES: [(&str, &str); 3] = [
    ("any", "Whenever there is news"),
    ("weekly", "At most once a week"),
    ("monthly", "At most once a month"),
];

/// The page routes.
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/unsubscribe", get(unsubscribe_page).post(unsubscribe))
        .route("/preferences", get(preferences_page).post(save_preferences))
}

/// The query of a link.
struct Link {
    /// The customer's display id.
    c: Option<String>,
    /// The channel (unsubscribe links only).
    ch: Option<String>,
    /// The token.
    t: Option<String>,
}

impl Link {
    fn of(uri: &Uri) -> Link {
        let mut link = Link {
            c: None,
            ch: None,
            t: None,
        };
        for (k, v) in parse_form(uri.query().unwrap_or_default()) {
            match k.as_str() {
                "c" => link.c = Some(v),
                "ch" => link.ch = Some(v),
                "t" => link.t = Some(v),
                _ => {}
            }
        }
        link
    }
}

/// The page for a link this server cannot check: no secret is configured.
fn not_served() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not available",
        "<p>This server does not serve unsubscribe links: set <code>unsubscribe_url</code> and <code>unsubscribe_secret</code> on an email channel in nudge.toml.</p>",
    )
}

/// The signed link's customer and channel, or the page saying why not.
fn checked(app: &App, link: &Link, preferences: bool) -> Result<(String, String), Box<Response>> {
    let Some(links) = &app.pages.links else {
        return Err(Box::new(not_served()));
    };
    let channel = if preferences {
        Some(PREFERENCES.to_string())
    } else {
        link.ch.clone().filter(|c| CHANNELS.contains(&c.as_str()))
    };
    match (&link.c, channel, &link.t) {
        (Some(c), Some(ch), Some(t)) if links.verify(c, &ch, t) => Ok((c.clone(), ch)),
        _ => Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "This link is not valid",
            "<p>The link is incomplete or was changed. Use the link from the message exactly as it came.</p>",
        ))),
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;line-height:1.5}}\
         fieldset{{border:1px solid #ccc;margin:1em 0}}button{{font-size:1em;padding:.4em 1.2em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    // Personal pages: never kept by a browser or a proxy, so a page shows
    // the choice just saved.
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn channel_name(channel: &str) -> &str {
    match channel {
        "email" => "email",
        "sms" => "text message",
        _ => "push notification",
    }
}

/// The preference page's link for the same customer, relative to this page.
fn preferences_link(links: &Unsubscribe, customer: &str) -> String {
    format!(
        "preferences?c={}&amp;t={}",
        query_value(customer),
        links.token(customer, PREFERENCES)
    )
}

async fn unsubscribe_page(State(app): State<App>, uri: Uri) -> Response {
    let link = Link::of(&uri);
    let (customer, channel) = match checked(&app, &link, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let Some(links) = app.pages.links.as_ref() else {
        return not_served();
    };
    let action = format!(
        "unsubscribe?c={}&amp;ch={}&amp;t={}",
        query_value(&customer),
        query_value(&channel),
        escape(link.t.as_deref().unwrap_or_default())
    );
    let body = format!(
        "<p>Stop receiving marketing {name}s from us?</p>\
         <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\" id=\"unsubscribe\">Unsubscribe</button></form>\
         <p>Or <a id=\"preferences\" href=\"{prefs}\">choose what you receive</a>.</p>",
        name = channel_name(&channel),
        prefs = preferences_link(links, &customer),
    );
    page(StatusCode::OK, "Unsubscribe", &body)
}

/// The one-click `POST` of RFC 8058 (body `List-Unsubscribe=One-Click`), and
/// the confirm page's button.
async fn unsubscribe(State(app): State<App>, uri: Uri) -> Response {
    let link = Link::of(&uri);
    let (customer, channel) = match checked(&app, &link, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let caller = match known(&app, &customer).await {
        Ok(k) => k.map_or_else(|| ("userId", customer.clone()), |k| k.caller),
        Err(r) => return r,
    };
    let call = track(&caller, "Unsubscribed", json!({ "channel": channel }));
    if let Err(r) = record(&app, vec![call]).await {
        return r;
    }
    let Some(links) = app.pages.links.as_ref() else {
        return not_served();
    };
    page(
        StatusCode::OK,
        "You are unsubscribed",
        &format!(
            "<p id=\"done\">You will get no more marketing {}s from us.</p><p><a href=\"{}\">Choose what you receive</a></p>",
            channel_name(&channel),
            preferences_link(links, &customer)
        ),
    )
}

async fn preferences_page(State(app): State<App>, uri: Uri) -> Response {
    let link = Link::of(&uri);
    let (customer, _) = match checked(&app, &link, true) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let known = match known(&app, &customer).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let consents = known.as_ref().map_or([None; 3], |k| k.consents);
    let topics = known.as_ref().and_then(|k| k.topics.clone());
    let frequency = known.as_ref().and_then(|k| k.frequency.clone());
    let hour = known.as_ref().and_then(|k| k.hour);
    let mut body = format!(
        "<form method=\"post\" action=\"preferences?c={}&amp;t={}\"><fieldset><legend>Send me news by</legend>",
        query_value(&customer),
        escape(link.t.as_deref().unwrap_or_default())
    );
    for (channel, consent) in CHANNELS.iter().zip(consents) {
        let checked = if consent == Some(true) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<label><input type=\"checkbox\" name=\"channel\" value=\"{channel}\" id=\"channel-{channel}\"{checked}> {}</label><br>",
            channel_name(channel)
        );
    }
    body.push_str("</fieldset>");
    if !app.pages.topics.is_empty() {
        body.push_str("<fieldset><legend>Topics</legend>");
        for topic in &app.pages.topics {
            let t = escape(topic);
            // Everything is on until the customer chooses.
            let on = topics.as_ref().is_none_or(|list| list.contains(topic));
            let checked = if on { " checked" } else { "" };
            let _ = write!(
                body,
                "<label><input type=\"checkbox\" name=\"topic\" value=\"{t}\" id=\"topic-{t}\"{checked}> {t}</label><br>"
            );
        }
        body.push_str("</fieldset>");
    }
    body.push_str("<fieldset><legend>How often</legend><select name=\"frequency\" id=\"frequency\"><option value=\"\">No change</option>");
    for (value, label) in FREQUENCIES {
        let selected = if frequency.as_deref() == Some(value) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    body.push_str("</select></fieldset><fieldset><legend>Best time of day</legend><select name=\"hour\" id=\"hour\"><option value=\"\">No change</option>");
    for h in 0..24 {
        let selected = if hour == Some(h) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{h}\"{selected}>{h:02}:00</option>");
    }
    body.push_str("</select></fieldset><button type=\"submit\" id=\"save\">Save</button></form>");
    page(StatusCode::OK, "Your preferences", &body)
}

async fn save_preferences(State(app): State<App>, uri: Uri, body: Body) -> Response {
    let link = Link::of(&uri);
    let (customer, _) = match checked(&app, &link, true) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "<p>The form is too large.</p>",
        );
    };
    let form = parse_form(&String::from_utf8_lossy(&bytes));
    let chosen = |name: &str, value: &str| form.iter().any(|(k, v)| k == name && v == value);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let frequency = field("frequency");
    if frequency.is_some_and(|f| !FREQUENCIES.iter().any(|(v, _)| *v == f)) {
        return page(
            StatusCode::BAD_REQUEST,
            "Not saved",
            "<p>Unknown frequency.</p>",
        );
    }
    let hour = match field("hour").map(str::parse::<u8>) {
        None => None,
        Some(Ok(h)) if h < 24 => Some(h),
        Some(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Not saved",
                "<p>The hour must be 0 to 23.</p>",
            );
        }
    };
    let known = match known(&app, &customer).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (caller, consents) = match known.map(|k| (k.caller, k.consents)) {
        Some(k) => k,
        None => (("userId", customer.clone()), [None; 3]),
    };
    let mut calls = Vec::new();
    // Only changes: an unticked box of a channel never consented to is not
    // an opt-out worth recording, and a ticked one already on is no news.
    for (channel, consent) in CHANNELS.iter().zip(consents) {
        let wants = chosen("channel", channel);
        if wants && consent != Some(true) {
            calls.push(track(&caller, "Subscribed", json!({ "channel": channel })));
        } else if !wants && consent == Some(true) {
            calls.push(track(
                &caller,
                "Unsubscribed",
                json!({ "channel": channel }),
            ));
        }
    }
    let mut traits = serde_json::Map::new();
    // Topics are a trait, not Subscribed/Unsubscribed with a `list`: those
    // set the whole channel's consent.
    if !app.pages.topics.is_empty() {
        let on: Vec<&String> = app
            .pages
            .topics
            .iter()
            .filter(|t| chosen("topic", t))
            .collect();
        traits.insert(TOPICS.into(), json!(on));
    }
    if let Some(f) = frequency {
        traits.insert(FREQUENCY.into(), json!(f));
    }
    if let Some(h) = hour {
        traits.insert(HOUR.into(), json!(h));
    }
    if !traits.is_empty() {
        let mut call = json!({ "type": "identify", "traits": traits });
        crate::commands::put(&mut call, caller.0, json!(caller.1));
        calls.push(call);
    }
    if let Err(r) = record(&app, calls).await {
        return r;
    }
    page(
        StatusCode::OK,
        "Saved",
        "<p id=\"done\">Your preferences are saved. They apply from the next message.</p>",
    )
}

fn track(
    caller: &(&'static str, String),
    event: &str,
    props: serde_json::Value,
) -> serde_json::Value {
    let mut call = json!({ "type": "track", "event": event, "properties": props });
    crate::commands::put(&mut call, caller.0, json!(caller.1));
    call
}

/// Asks the engine thread about a customer.
async fn known(app: &App, customer: &str) -> Result<Option<Known>, Response> {
    let customer = customer.to_string();
    let (msg, answer) = super::ask(move |live| {
        live.engine
            .caller_of(&customer)
            .map(|caller| Known::read(&mut live.engine, caller))
    });
    if app.tx.try_send(msg).is_err() {
        return Err(unavailable());
    }
    answer.await.map_err(|_| unavailable())
}

fn unavailable() -> Response {
    let mut r = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "<p>We could not save this just now. Please try again in a moment.</p>",
    );
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// Now, to the millisecond: the engine's clock reaches the wall clock before
/// it applies a group of calls, so a choice stamped now is applied before
/// the page answers and shows on the next load.
pub(super) fn applied_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Stamps the calls with now and commits them; the page answers once they
/// are durable.
async fn record(app: &App, calls: Vec<serde_json::Value>) -> Result<(), Response> {
    if calls.is_empty() {
        return Ok(());
    }
    let now = applied_now();
    let lines = calls
        .into_iter()
        .map(|mut c| {
            crate::commands::put(&mut c, "timestamp", json!(now));
            if app.receipt {
                crate::commands::put(&mut c, "receivedAt", json!(now));
            }
            c.to_string()
        })
        .collect();
    let (msg, answer) = super::calls(lines, Vec::new());
    if app.tx.try_send(msg).is_err() {
        return Err(unavailable());
    }
    match answer.await {
        Ok(Ok(())) => Ok(()),
        _ => Err(unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }
}
