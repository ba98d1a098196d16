//! Twilio's status callbacks and inbound SMS: form posts signed in
//! `X-Twilio-Signature` with HMAC-SHA1, under the account's auth token, of
//! the full URL Twilio called followed by every POST parameter (sorted by
//! name, each name then its value).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{Refusal, Report, Signal, Subject, same_secret};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Error codes for a number that can never receive the message: an unknown
/// or unreachable destination, a landline, an invalid `To`.
const HARD: &[&str] = &["21211", "21612", "21614", "30005", "30006"];
/// The recipient texted STOP: Twilio refuses further sends itself.
const UNSUBSCRIBED: &str = "21610";

/// The signature Twilio sends for a POST of `params` to `url`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature` for a POST of `params` to `url` (the URL as
/// Twilio called it, query included).
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    given: Option<&str>,
) -> Result<(), Refusal> {
    let Some(given) = given else {
        return Err(Refusal::Unauthenticated(format!(
            "unsigned: Twilio signs its requests with `{SIGNATURE_HEADER}`"
        )));
    };
    let expected = signature(auth_token, url, params);
    if same_secret(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Forged(format!(
            "the Twilio signature does not match a request to {url}; check `public_url` under [feedback]"
        )))
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The report in a status callback, if the status is a final one Nudge
/// acts on. `key` is the `nudge_key` the plugin put in the callback's query.
pub fn status(params: &[(String, String)], key: Option<&str>) -> Result<Option<Report>, Refusal> {
    let sid = param(params, "MessageSid").or(param(params, "SmsSid"));
    let status = param(params, "MessageStatus").or(param(params, "SmsStatus"));
    let (Some(sid), Some(status)) = (sid, status) else {
        return Err(Refusal::Malformed(
            "a status callback needs `MessageSid` and `MessageStatus`".into(),
        ));
    };
    let signal = match status {
        "delivered" => Signal::Delivered,
        "undelivered" | "failed" => match param(params, "ErrorCode") {
            Some(UNSUBSCRIBED) => Signal::Unsubscribed,
            code => Signal::Bounced {
                hard: code.is_some_and(|c| HARD.contains(&c)),
                reason: Some(match code {
                    Some(c) => format!("Twilio {status}: error {c}"),
                    None => format!("Twilio {status}"),
                }),
            },
        },
        _ => return Ok(None),
    };
    let subject = match (key, param(params, "To")) {
        (Some(k), _) => Subject::Send(k.to_string()),
        (None, Some(to)) => Subject::Address {
            channel: "sms",
            address: to.to_string(),
        },
        (None, None) => {
            return Err(Refusal::Malformed(
                "the callback names neither a send (`nudge_key`) nor a `To` number".into(),
            ));
        }
    };
    Ok(Some(Report {
        provider: "twilio",
        id: format!("twilio:{sid}:{status}"),
        subject,
        signal,
        at_millis: None,
    }))
}

/// The report of an inbound SMS, for the customer last texted from the
/// store to the sender's number.
pub fn inbound(params: &[(String, String)]) -> Result<Report, Refusal> {
    let (Some(sid), Some(from)) = (
        param(params, "MessageSid").or(param(params, "SmsSid")),
        param(params, "From"),
    ) else {
        return Err(Refusal::Malformed(
            "an incoming message needs `MessageSid` and `From`".into(),
        ));
    };
    Ok(Report {
        provider: "twilio",
        id: format!("twilio:{sid}"),
        subject: Subject::Address {
            channel: "sms",
            address: from.to_string(),
        },
        signal: Signal::SmsReceived {
            text: param(params, "Body").unwrap_or_default().to_string(),
            from: from.to_string(),
            to: param(params, "To").map(str::to_string),
        },
        at_millis: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::parse_form;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example of Twilio's webhook security guide.
    #[test]
    fn the_published_example_signs_and_verifies() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        // Out of order on purpose: the signature sorts them.
        let params = parse_form(
            "To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&From=%2B12349013030&Caller=%2B12349013030",
        );
        assert_eq!(
            signature("12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            verify("12345", url, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Ok(())
        );
        let forged = |r| matches!(r, Err(Refusal::Forged(_)));
        assert!(forged(verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        )));
        let mut tampered = params.clone();
        tampered[2].1 = "9999".into();
        assert!(forged(verify(
            "12345",
            url,
            &tampered,
            Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        )));
        assert!(forged(verify(
            "54321",
            url,
            &params,
            Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        )));
        assert!(matches!(
            verify("12345", url, &params, None),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn final_statuses_become_reports() {
        // The fields of the status callback example in Twilio's Messages docs.
        let undelivered = pairs(&[
            ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("ApiVersion", "2010-04-01"),
            ("ErrorCode", "30006"),
            ("From", "+15017250604"),
            ("MessageSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("MessageStatus", "undelivered"),
            ("SmsSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("SmsStatus", "undelivered"),
            ("To", "+15558675310"),
        ]);
        let report = status(&undelivered, Some("winback:cus_9:step-1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            report,
            Report {
                provider: "twilio",
                id: "twilio:SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:undelivered".into(),
                subject: Subject::Send("winback:cus_9:step-1".into()),
                signal: Signal::Bounced {
                    hard: true,
                    reason: Some("Twilio undelivered: error 30006".into())
                },
                at_millis: None,
            }
        );
        let mut soft = undelivered.clone();
        soft[2].1 = "30003".into();
        let report = status(&soft, None).unwrap().unwrap();
        assert!(matches!(report.signal, Signal::Bounced { hard: false, .. }));
        assert_eq!(
            report.subject,
            Subject::Address {
                channel: "sms",
                address: "+15558675310".into()
            }
        );
        let mut stop = undelivered.clone();
        stop[2].1 = UNSUBSCRIBED.into();
        assert_eq!(
            status(&stop, None).unwrap().unwrap().signal,
            Signal::Unsubscribed
        );
        let sent = pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "sent"),
            ("To", "+1"),
        ]);
        assert_eq!(status(&sent, None).unwrap(), None);
        let delivered = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        assert_eq!(
            status(&delivered, Some("k")).unwrap().unwrap().signal,
            Signal::Delivered
        );
        assert!(matches!(
            status(&pairs(&[]), None),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn an_incoming_message_is_an_sms_received() {
        // The parameters of Twilio's incoming-message webhook example.
        let params = parse_form(
            "ToCountry=US&ToState=CA&SmsMessageSid=SM1c1b5e6d7c8a9f0e1d2c3b4a59687f6e&NumMedia=0&ToCity=SAN+FRANCISCO&FromZip=94105&SmsSid=SM1c1b5e6d7c8a9f0e1d2c3b4a59687f6e&FromState=CA&SmsStatus=received&FromCity=SAN+FRANCISCO&Body=STOP&FromCountry=US&To=%2B14155550100&ToZip=94105&NumSegments=1&MessageSid=SM1c1b5e6d7c8a9f0e1d2c3b4a59687f6e&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&From=%2B14155550123&ApiVersion=2010-04-01",
        );
        let report = inbound(&params).unwrap();
        assert_eq!(
            report,
            Report {
                provider: "twilio",
                id: "twilio:SM1c1b5e6d7c8a9f0e1d2c3b4a59687f6e".into(),
                subject: Subject::Address {
                    channel: "sms",
                    address: "+14155550123".into()
                },
                signal: Signal::SmsReceived {
                    text: "STOP".into(),
                    from: "+14155550123".into(),
                    to: Some("+14155550100".into()),
                },
                at_millis: None,
            }
        );
        assert!(matches!(
            inbound(&pairs(&[("Body", "hi")])),
            Err(Refusal::Malformed(_))
        ));
    }
}
