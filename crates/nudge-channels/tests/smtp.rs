//! The SMTP plugin against a real SMTP server on 127.0.0.1: the received
//! MIME is parsed and checked header by header and part by part.

mod common;

use std::time::Duration;

use common::message;
use common::smtp::{DataReply, Security, SmtpServer};
use mail_parser::{MessageParser, MimeHeaders};
use nudge_channels::{
    Delivery, Plugin, ProviderSettings, Purpose, RetryPolicy, Smtp, SmtpConfig, SmtpTls,
    Unsubscribe, message_id,
};

const SECRET: &str = "test-secret-0123456789";

fn unsubscribe() -> Unsubscribe {
    Unsubscribe::new("smtp", "https://shop.example/unsubscribe", SECRET).unwrap()
}

fn config(server: &SmtpServer) -> SmtpConfig {
    SmtpConfig {
        port: Some(server.port()),
        tls: SmtpTls::None,
        credentials: Some(("mailer".into(), "p4ss word".into())),
        settings: ProviderSettings {
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
            rate_limit: None,
        },
        ..SmtpConfig::new("127.0.0.1", "Shop <news@shop.example>", unsubscribe())
    }
}

#[test]
fn a_marketing_email_arrives_as_multipart_with_one_click_unsubscribe() {
    let server = SmtpServer::start(Vec::new());
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let msg = message(1);
    let receipt = smtp.deliver(&msg).unwrap();
    assert_eq!(receipt.attempts, 1);
    assert!(
        receipt.detail.as_deref().unwrap().starts_with("SMTP 250"),
        "{receipt:?}"
    );

    let received = server.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.auth, Some(("mailer".into(), "p4ss word".into())));
    assert_eq!(got.mail_from, "news@shop.example");
    assert_eq!(got.rcpt_to, ["user1@example.com"]);

    let mail = MessageParser::default().parse(&got.data).unwrap();
    let from = mail.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Shop"));
    assert_eq!(from.address(), Some("news@shop.example"));
    assert_eq!(
        mail.to().unwrap().first().unwrap().address(),
        Some("user1@example.com")
    );
    assert_eq!(mail.subject(), Some("Welcome, customer 1"));
    // The Message-ID is derived from the idempotency key.
    assert_eq!(
        format!("<{}>", mail.message_id().unwrap()),
        message_id("onboarding:cus_1:step-2", "shop.example")
    );
    assert_eq!(
        mail.message_id(),
        Some("onboarding=3Acus_1=3Astep-2@shop.example")
    );
    let unsubscribe_url = unsubscribe().url("cus_1", "email");
    assert_eq!(
        mail.header_raw("List-Unsubscribe").map(str::trim),
        Some(format!("<{unsubscribe_url}>").as_str())
    );
    assert_eq!(
        mail.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
    let token = unsubscribe_url.rsplit("t=").next().unwrap();
    assert!(unsubscribe().verify("cus_1", "email", token));

    // multipart/alternative: the plain text first, then the HTML.
    let ct = mail.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("alternative"));
    // MIME lines end in CRLF on the wire.
    let html = mail.body_html(0).unwrap().replace("\r\n", "\n");
    assert_eq!(
        html,
        "<p>Hi &amp; welcome</p>\nLine two: \"quoted\" ünïcödé"
    );
    let text = mail.body_text(0).unwrap();
    assert!(text.contains("Hi & welcome"), "{text}");
    assert!(text.contains("Line two: \"quoted\" ünïcödé"), "{text}");
    assert!(!text.contains("<p>"), "{text}");
    let parts: Vec<String> = mail
        .parts
        .iter()
        .filter_map(|p| p.content_type())
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .collect();
    assert_eq!(parts, ["multipart/alternative", "text/plain", "text/html"]);
}

#[test]
fn a_transactional_email_has_no_unsubscribe_headers_and_keeps_its_own_text() {
    let server = SmtpServer::start(Vec::new());
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let mut msg = message(2);
    msg.purpose = Purpose::Transactional;
    msg.content
        .insert("text".into(), "Your order is confirmed.".into());
    smtp.deliver(&msg).unwrap();
    let received = server.received();
    let mail = MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(mail.header_raw("List-Unsubscribe"), None);
    assert_eq!(mail.header_raw("List-Unsubscribe-Post"), None);
    assert_eq!(
        mail.body_text(0).unwrap().trim_end(),
        "Your order is confirmed."
    );
    assert!(mail.body_html(0).unwrap().contains("Hi &amp; welcome"));
}

#[test]
fn a_4xx_reply_is_retried_and_a_5xx_reply_is_final() {
    let server = SmtpServer::start(vec![DataReply::Refuse(451)]);
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let receipt = smtp.deliver(&message(1)).unwrap();
    assert_eq!(receipt.attempts, 2);
    assert_eq!(server.received().len(), 1);

    let server = SmtpServer::start(vec![DataReply::Refuse(550)]);
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let result = smtp.deliver(&message(1));
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable);
    assert!(err.reason.contains("550"), "{err}");
    assert!(server.received().is_empty());
}

#[test]
fn tries_are_given_up_after_the_limit_with_the_reason() {
    let server = SmtpServer::start(vec![DataReply::Refuse(421); 3]);
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let err = smtp.deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 3);
    assert!(err.retryable && !err.unknown, "{err:?}");
    assert!(err.reason.contains("421"), "{err}");
    assert!(
        err.to_string()
            .ends_with("(after 3 attempts; may succeed if retried later)"),
        "{err}"
    );
}

#[test]
fn a_timeout_after_the_data_is_an_unknown_outcome_and_not_retried() {
    let server = SmtpServer::start(vec![DataReply::Stall(Duration::from_secs(3))]);
    let mut cfg = config(&server);
    cfg.settings.timeout = Duration::from_millis(500);
    let mut smtp = Smtp::new(cfg).unwrap();
    let result = smtp.deliver(&message(1));
    assert_eq!(Delivery::of(&result), Delivery::Unknown);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable);
    assert!(err.to_string().starts_with("outcome unknown: "), "{err}");
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    // Bind and drop, so nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = SmtpServer::start(Vec::new());
    let mut cfg = config(&server);
    cfg.port = Some(port);
    let mut smtp = Smtp::new(cfg).unwrap();
    let err = smtp.deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 3);
    assert!(err.retryable && !err.unknown, "{err:?}");
}

#[test]
fn bad_input_fails_before_connecting() {
    let server = SmtpServer::start(Vec::new());
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let mut msg = message(1);
    msg.to = "not an address".into();
    let err = smtp.deliver(&msg).unwrap_err();
    assert_eq!((err.attempts, err.retryable), (0, false));
    assert!(err.reason.contains("not an email address"), "{err}");
    let mut msg = message(1);
    msg.content.remove("subject");
    let err = smtp.deliver(&msg).unwrap_err();
    assert!(err.reason.contains("subject"), "{err}");
    assert!(server.received().is_empty());
}

#[test]
fn settings_are_checked_when_the_plugin_is_made() {
    let server = SmtpServer::start(Vec::new());
    let err = Smtp::new(SmtpConfig {
        from: "nobody".into(),
        ..config(&server)
    })
    .unwrap_err();
    assert!(err.to_string().starts_with("smtp: `from`"), "{err}");
    let err = Smtp::new(SmtpConfig {
        host: " ".into(),
        ..config(&server)
    })
    .unwrap_err();
    assert!(err.reason.contains("`host`"), "{err}");
    let shown = format!("{:?}", config(&server));
    assert!(
        shown.contains("mailer") && !shown.contains("p4ss"),
        "{shown}"
    );
}

fn tls_config(server: &SmtpServer, tls: SmtpTls) -> SmtpConfig {
    SmtpConfig {
        tls,
        extra_roots: vec![server.certificate_pem.clone().into_bytes()],
        ..config(server)
    }
}

#[test]
fn starttls_upgrades_the_connection_before_authenticating_and_sending() {
    let server = SmtpServer::start_with(Security::StartTls, Vec::new());
    let mut smtp = Smtp::new(tls_config(&server, SmtpTls::StartTls)).unwrap();
    smtp.deliver(&message(1)).unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    // The server only takes AUTH and mail once TLS is up.
    assert_eq!(
        received[0].auth,
        Some(("mailer".into(), "p4ss word".into()))
    );
    let mail = MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(mail.subject(), Some("Welcome, customer 1"));
}

#[test]
fn implicit_tls_speaks_tls_from_the_first_byte() {
    let server = SmtpServer::start_with(Security::Implicit, Vec::new());
    let mut smtp = Smtp::new(tls_config(&server, SmtpTls::Implicit)).unwrap();
    smtp.deliver(&message(1)).unwrap();
    assert_eq!(server.received().len(), 1);
}

#[test]
fn an_untrusted_certificate_is_refused_and_not_retried() {
    let server = SmtpServer::start_with(Security::Implicit, Vec::new());
    let mut smtp = Smtp::new(SmtpConfig {
        tls: SmtpTls::Implicit,
        ..config(&server)
    })
    .unwrap();
    let err = smtp.deliver(&message(1)).unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false), "{err}");
    assert!(server.received().is_empty());
}

#[test]
fn a_server_without_starttls_is_refused_when_tls_is_required() {
    let server = SmtpServer::start_with(Security::Plain, Vec::new());
    let mut smtp = Smtp::new(tls_config(&server, SmtpTls::StartTls)).unwrap();
    let err = smtp.deliver(&message(1)).unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(
        server.received().is_empty(),
        "nothing goes out in the clear"
    );
}

#[test]
fn the_customers_signed_links_replace_their_marks_in_the_content() {
    let server = SmtpServer::start(Vec::new());
    let mut smtp = Smtp::new(config(&server)).unwrap();
    let mut msg = message(1);
    // What a message's `{unsubscribe_url}` and `{preferences_url}` render to.
    msg.content.insert(
        "body".into(),
        serde_json::Value::String(format!(
            "<p>Bye?</p><a href=\"{}\">Unsubscribe</a> or <a href=\"{}\">choose</a>",
            nudge_bytecode::UNSUBSCRIBE_URL_MARK,
            nudge_bytecode::PREFERENCES_URL_MARK
        )),
    );
    msg.content.insert(
        "subject".into(),
        serde_json::Value::String(format!("Manage: {}", nudge_bytecode::PREFERENCES_URL_MARK)),
    );
    smtp.deliver(&msg).unwrap();
    let received = server.received();
    let mail = MessageParser::default().parse(&received[0].data).unwrap();
    let links = unsubscribe();
    let unsubscribe_url = links.url("cus_1", "email");
    let preferences_url = links.preferences_url("cus_1");
    assert!(
        preferences_url.starts_with("https://shop.example/preferences?c=cus_1&t="),
        "{preferences_url}"
    );
    let token = preferences_url.rsplit("t=").next().unwrap();
    assert!(links.verify("cus_1", "preferences", token));
    let html = mail.body_html(0).unwrap();
    assert!(
        html.contains(&format!(
            "href=\"{}\"",
            unsubscribe_url.replace('&', "&amp;")
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "href=\"{}\"",
            preferences_url.replace('&', "&amp;")
        )),
        "{html}"
    );
    assert!(!html.contains("nudge:"), "{html}");
    // The text part, derived from the HTML, has the links as they are.
    let text = mail.body_text(0).unwrap();
    assert!(text.contains(&unsubscribe_url), "{text}");
    assert_eq!(
        mail.subject(),
        Some(format!("Manage: {preferences_url}").as_str())
    );
}
