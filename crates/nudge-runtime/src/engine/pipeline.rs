//! The send pipeline: every send decision, in one order, with its reason.
//!
//! The order is fixed: holdout, address and consent, suppression, caps,
//! quiet hours, idempotency, then the channel plugin. A deferred send parks
//! its instance and runs the whole pipeline again when it is due, so consent
//! and exits are judged at the moment of sending, not when it was first asked.

use nudge_bytecode::{Cap, CapAction, CapScope, Channel, Purpose, Value, format_instant_ms};
use nudge_channels::Outgoing;
use nudge_vm::{UnitRef, bucket};

use super::Machine;
use super::instance::{Next, Waiting};
use crate::millis::{ms, secs};
use crate::record::{Outcome, SendReason, What};
use crate::zone::quiet_until;

/// The pipeline's answer for one send.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Verdict {
    /// Go out now.
    Send {
        /// The address.
        to: String,
        /// The address lower-cased: how bounces, opt-outs and caps know it.
        address: String,
    },
    /// Not now: try again at `retry_at`.
    Defer {
        /// When the holding rule ends.
        until: i64,
        /// When to try again.
        retry_at: i64,
        /// The zone quiet hours were read in.
        zone: Option<String>,
        /// Why (`quiet_hours`, a cap).
        reason: String,
        /// The reason's code.
        code: SendReason,
    },
    /// Not at all.
    Stop {
        /// The outcome.
        outcome: Outcome,
        /// Why.
        reason: String,
        /// The reason's code.
        code: SendReason,
    },
}

/// What the send pipeline reads of the instance that sends.
struct Sender {
    /// Its release.
    release: u32,
    /// Its flow, in that release.
    flow: u32,
    /// Its customer.
    customer: u32,
    /// Whether it is held out.
    holdout: bool,
    /// Its trigger event.
    trigger: Value,
    /// When it started.
    since: i64,
}

impl Machine<'_> {
    /// Runs the pipeline for a send of instance `id`; parks the instance when
    /// the send is deferred.
    pub(super) fn send(&mut self, id: u32, message: u32, args: Vec<Value>) -> Next {
        let Some(inst) = self.instances.get(id) else {
            return Next::Park;
        };
        let (r, f, c, number, step) = (
            inst.release,
            inst.flow,
            inst.customer,
            inst.number,
            inst.step,
        );
        let sender = Sender {
            release: r,
            flow: f,
            customer: c,
            holdout: inst.holdout,
            trigger: inst.trigger(),
            since: inst.started,
        };
        // The message, like the flow's own rules, comes from the instance's release.
        let bundle = self.bundle_of(r);
        let flow = self.flow_of(r, f);
        let release = super::rel(&self.releases, r);
        let (Some(msg), Some(&message_key)) = (
            bundle.messages.get(message as usize),
            release.message_keys.get(message as usize),
        ) else {
            self.end(
                id,
                super::End::Error(format!("message #{message} is not in the bundle")),
            );
            return Next::Park;
        };
        let who = inst
            .origin()
            .unwrap_or(&super::known(&self.customers, c).key);
        let key = super::send_key(&flow.name, &flow.version, who, number, step);
        // Hashed once: the verdict checks it and the send notes it.
        let fingerprint = crate::dedupe::fingerprint(&key);
        let verdict = self.verdict(id, sender, msg, &key, fingerprint);
        // Every decision names the recipient's zone, so a timeline can show local times.
        let recipient_zone = self.zone(c, Some(msg.channel)).name().to_string();
        let record =
            |outcome: Outcome,
             reason: Option<(String, SendReason)>,
             deferral: Option<(i64, i64, Option<String>)>| What::Send {
                flow: flow.name.clone(),
                instance: number,
                step,
                message: msg.name.clone(),
                channel: msg.channel.name().to_string(),
                outcome,
                code: reason.as_ref().map(|r| r.1),
                reason: reason.map(|r| r.0),
                until: deferral.as_ref().map(|d| format_instant_ms(d.0)),
                retry_at: deferral.as_ref().map(|d| format_instant_ms(d.1)),
                zone: deferral
                    .and_then(|d| d.2)
                    .or_else(|| Some(recipient_zone.clone())),
                key: key.clone(),
            };
        match verdict {
            Verdict::Stop {
                outcome,
                reason,
                code,
            } => {
                self.count(r, f, outcome, Some(&reason), Some(code));
                self.record(c, record(outcome, Some((reason, code)), None));
                Next::Run
            }
            Verdict::Defer {
                until,
                retry_at,
                zone,
                reason,
                code,
            } => {
                self.count(r, f, Outcome::Deferred, Some(&reason), Some(code));
                self.record(
                    c,
                    record(
                        Outcome::Deferred,
                        Some((reason, code)),
                        Some((until, retry_at, zone)),
                    ),
                );
                self.park(
                    id,
                    Waiting::Send {
                        message,
                        args,
                        until: retry_at,
                    },
                    retry_at,
                );
                Next::Park
            }
            Verdict::Send { to, address } => {
                let (rendered, served) = {
                    let tz = self.zone(c, Some(msg.channel));
                    let trigger = self.instances.get(id).map(|i| i.trigger());
                    let cust = super::known_mut(&mut self.customers, c);
                    let ctx = super::customer::Ctx {
                        customer: cust,
                        now: self.now,
                        tz,
                        writes: Vec::new(),
                    };
                    let release = super::rel(&self.releases, r);
                    let mut host = super::recs::RecCtx::new(
                        ctx,
                        release.bundle,
                        &self.learned,
                        &self.config.catalogue,
                        trigger.as_ref(),
                    );
                    let rendered = release.vm.render(message, &args, &mut host);
                    (rendered, host.records(&flow.name))
                };
                for what in served {
                    self.record(c, what);
                }
                let rendered = match rendered {
                    Ok(r) => r,
                    Err(e) => {
                        let reason = (format!("rendering failed: {e}"), SendReason::RenderFailed);
                        self.count(
                            r,
                            f,
                            Outcome::Failed,
                            Some("rendering"),
                            Some(SendReason::RenderFailed),
                        );
                        self.record(c, record(Outcome::Failed, Some(reason), None));
                        return Next::Run;
                    }
                };
                let out = Outgoing {
                    at: self.now_text(),
                    flow: flow.name.clone(),
                    flow_version: flow.version.clone(),
                    message: msg.name.clone(),
                    channel: msg.channel.name().to_string(),
                    customer: super::known(&self.customers, c).key.to_string(),
                    to,
                    idempotency_key: key.clone(),
                    content: rendered
                        .content
                        .into_iter()
                        .map(|(k, v)| (k, serde_json::Value::String(v)))
                        .collect(),
                    purpose: nudge_channels::Purpose::from_marketing(
                        msg.purpose == Purpose::Marketing,
                    ),
                };
                // The send is an intent from here on: it counts for caps and
                // idempotency at once, as it will in the ledger. A host that
                // cannot hand it over says so before the next input
                // (`delivery_failed`), which takes it back.
                self.effects.push(super::Effect::Send {
                    channel: msg.channel,
                    message: out,
                });
                if let Some(inst) = self.instances.get_mut(id) {
                    inst.note_sent(fingerprint);
                }
                let sent = super::customer::Sent {
                    at: self.now,
                    channel: msg.channel,
                    marketing: msg.purpose == Purpose::Marketing,
                    flow: self.key_of(r, f),
                    message: message_key,
                };
                let cust = super::known_mut(&mut self.customers, c);
                if cust.sends.is_empty() {
                    // Most customers hold one send at a time: not room for four.
                    cust.sends.reserve_exact(1);
                }
                cust.sends.push(sent);
                let address = sent.marketing.then_some(address);
                if let Some(address) = &address {
                    self.log_address_send(address.clone(), c, sent);
                }
                let stats = self.stats.flow_mut(&flow.name);
                crate::stats::add_one(&mut stats.sends, msg.channel.name());
                self.count(r, f, Outcome::Sent, None, None);
                self.record(c, record(Outcome::Sent, None, None));
                self.unsettled.push(super::Unsettled {
                    key,
                    instance: id,
                    customer: c,
                    release: r,
                    flow: f,
                    sent,
                    address,
                });
                Next::Run
            }
        }
    }

    /// What becomes of a send of an instance.
    fn verdict(
        &mut self,
        id: u32,
        from: Sender,
        msg: &nudge_bytecode::Message,
        key: &str,
        fingerprint: u128,
    ) -> Verdict {
        let Sender {
            release: r,
            flow: f,
            customer: c,
            holdout,
            trigger,
            since,
        } = from;
        // The flow's rules come from the instance's release, the policy from
        // the newest: a policy change applies to every send from now on.
        let bundle = self.bundle_of(r);
        let policy = &self.bundle().policy;
        let flow = self.flow_of(r, f);
        let flow_key = self.key_of(r, f);
        let marketing = msg.purpose == Purpose::Marketing;
        let stop = |outcome, code: SendReason| Verdict::Stop {
            outcome,
            reason: code.code().to_string(),
            code,
        };
        if holdout {
            return stop(Outcome::HeldOut, SendReason::Holdout);
        }
        let cust = super::known(&self.customers, c);
        let t = &self.traits;
        let to = match msg.channel {
            Channel::Email => t.text(&cust.profile, t.email).map(|e| e.trim().to_string()),
            Channel::Sms => t.text(&cust.profile, t.phone).map(|p| p.trim().to_string()),
            Channel::Push => t
                .text(&cust.profile, t.device_token)
                .map(|d| d.trim().to_string()),
            Channel::Webhook | Channel::Audience => Some(cust.key.to_string()),
        };
        let Some(to) = to else {
            return stop(Outcome::Blocked, SendReason::NoAddress);
        };
        // A bounce or an SMS opt-out holds for the address, whichever
        // customer it came through.
        let address = to.to_lowercase();
        if cust.rare().bounced.contains(&address) || self.undeliverable.contains(&address) {
            return stop(Outcome::Blocked, SendReason::Undeliverable);
        }
        if cust.rare().opted_out.contains(msg.channel.name())
            || (msg.channel == Channel::Sms && self.stopped_phones.contains(&to))
        {
            return stop(Outcome::Blocked, SendReason::OptedOut);
        }
        if marketing
            && matches!(msg.channel, Channel::Email | Channel::Sms | Channel::Push)
            && t.consent(bundle, &cust.profile, msg.channel) != Some(true)
        {
            return stop(Outcome::Blocked, SendReason::Consent);
        }
        // Suppression is a marketing rule: an order confirmation still goes to
        // a listed customer. Hard opt-outs and bounces (above) block everything.
        if marketing {
            if let Some(v) = self.suppressed(c, r, f, &trigger, since, &to) {
                return v;
            }
            let caps = policy
                .caps
                .iter()
                .map(|c| (c, None))
                .chain(flow.caps.iter().map(|c| (c, Some(flow_key))));
            for (cap, only_flow) in caps {
                if let Some(oldest) = self.cap_full(c, &address, cap, msg.channel, only_flow) {
                    let reason = cap_name(cap, only_flow.is_some());
                    let code = if only_flow.is_some() {
                        SendReason::FlowCap
                    } else {
                        SendReason::PolicyCap
                    };
                    return match cap.then {
                        CapAction::Skip => Verdict::Stop {
                            outcome: Outcome::Capped,
                            reason,
                            code,
                        },
                        CapAction::Defer => Verdict::Defer {
                            until: oldest.saturating_add(ms(cap.per)),
                            retry_at: oldest.saturating_add(ms(cap.per)),
                            zone: None,
                            reason,
                            code,
                        },
                    };
                }
            }
            let cust = super::known(&self.customers, c);
            let zones = self
                .traits
                .quiet_zones(&cust.profile, msg.channel, self.policy_tz);
            let windows = policy
                .quiet
                .iter()
                .chain(flow.quiet.iter())
                .filter(|w| w.channel.is_none_or(|ch| ch == msg.channel))
                .map(|w| (w.from, w.to));
            // Quiet while it is night in any zone the recipient may be in.
            if let Some((end, tz)) = quiet_until(secs(self.now), zones.as_slice(), windows) {
                let end = ms(end);
                // Spread releases so a whole time zone is not sent at the
                // same second; by whole seconds, as configured.
                let spread = self.config.release_spread.max(0);
                let offset = if spread == 0 {
                    0
                } else {
                    ms(i64::from(bucket(key, "release")) * spread / 10_000)
                };
                return Verdict::Defer {
                    until: end,
                    retry_at: end + offset,
                    zone: Some(tz.name().to_string()),
                    reason: SendReason::QuietHours.code().into(),
                    code: SendReason::QuietHours,
                };
            }
        }
        if self
            .instances
            .get(id)
            .is_some_and(|i| i.has_sent(fingerprint))
        {
            return stop(Outcome::Duplicate, SendReason::IdempotencyKey);
        }
        Verdict::Send { to, address }
    }

    /// The suppression verdict for a marketing send, if `suppress if` or a
    /// suppression list holds.
    #[allow(clippy::too_many_arguments)]
    fn suppressed(
        &mut self,
        c: u32,
        r: u32,
        f: u32,
        trigger: &Value,
        since: i64,
        to: &str,
    ) -> Option<Verdict> {
        let stop = |reason: &str, code: SendReason| {
            Some(Verdict::Stop {
                outcome: Outcome::Suppressed,
                reason: reason.to_string(),
                code,
            })
        };
        let suppress = self.flow_of(r, f).suppress.clone();
        for p in suppress {
            match self.predicate(
                c,
                r,
                UnitRef::Flow(f),
                p,
                Some(trigger),
                None,
                since,
                &mut Vec::new(),
            ) {
                Ok(false) => {}
                Ok(true) => return stop("suppress_if", SendReason::SuppressIf),
                Err(e) => {
                    return stop(
                        &format!("suppress_if failed: {e}"),
                        SendReason::SuppressIfFailed,
                    );
                }
            }
        }
        let cust = super::known(&self.customers, c);
        let t = &self.traits;
        // Any of the customer's identifiers on a list suppresses every channel.
        let listed = !self.config.suppression.is_empty()
            && [
                Some(to),
                Some(&*cust.key),
                t.text(&cust.profile, t.email),
                t.text(&cust.profile, t.phone),
            ]
            .into_iter()
            .flatten()
            .any(|x| self.config.suppression.contains(&x.trim().to_lowercase()));
        if listed {
            return stop("suppression_list", SendReason::SuppressionList);
        }
        None
    }

    /// When a cap is full: the time of the send whose ageing out frees a
    /// place. `only_flow` is a flow key: a flow cap counts every release's sends.
    /// The customer's own sends count, and those of every other customer to
    /// `address` (lower-cased): two accounts sharing an inbox share its caps.
    fn cap_full(
        &self,
        c: u32,
        address: &str,
        cap: &Cap,
        channel: Channel,
        only_flow: Option<u32>,
    ) -> Option<i64> {
        if let CapScope::Channel(ch) = cap.scope
            && ch != channel
        {
            return None;
        }
        let from = self.now.saturating_sub(ms(cap.per));
        let counts = |s: &&super::customer::Sent| {
            s.marketing
                && s.at > from
                && only_flow.is_none_or(|f| s.flow == f)
                && match cap.scope {
                    CapScope::Channel(ch) => s.channel == ch,
                    CapScope::Marketing => true,
                }
        };
        let cust = super::known(&self.customers, c);
        let mut counted: Vec<i64> = cust.sends.iter().filter(counts).map(|s| s.at).collect();
        if let Some(log) = self.address_sends.get(address) {
            let before = counted.len();
            // A customer merged away has its sends in the survivor's list.
            counted.extend(
                log.iter()
                    .filter(|a| a.customer != c && self.customers.contains_key(&a.customer))
                    .map(|a| &a.sent)
                    .filter(counts)
                    .map(|s| s.at),
            );
            if counted.len() != before {
                counted.sort_unstable();
            }
        }
        // Full when `count` sends are in the window: the place frees up when
        // the `count`-th newest ages out.
        let limit = cap.count as usize;
        let n = counted.len();
        if limit == 0 || n < limit {
            return None;
        }
        counted.get(n - limit).copied()
    }
}

impl Machine<'_> {
    /// Notes a marketing send to `address` for the caps of others who share
    /// it, dropping what no cap can look back at any more.
    fn log_address_send(&mut self, address: String, c: u32, sent: super::customer::Sent) {
        let window = self.cap_window;
        if window == 0 {
            return;
        }
        let from = self.now.saturating_sub(window);
        let log = self.address_sends.entry(address).or_default();
        log.retain(|a| a.at_after(from));
        log.push(super::AddressSend { customer: c, sent });
        self.address_pushes += 1;
        // Addresses not sent to again keep their last sends: sweep them
        // now and then, so the log stays as small as the windows.
        if self.address_pushes >= 65_536 {
            self.address_pushes = 0;
            self.address_sends.retain(|_, log| {
                log.retain(|a| a.at_after(from));
                !log.is_empty()
            });
        }
    }
}

/// A cap as written, for reasons: `cap marketing 3 per 7d` (policy) or
/// `flow cap email 1 per 16h`.
fn cap_name(cap: &Cap, flow: bool) -> String {
    let scope = match cap.scope {
        CapScope::Channel(ch) => ch.name(),
        CapScope::Marketing => "marketing",
    };
    format!(
        "{}cap {scope} {} per {}",
        if flow { "flow " } else { "" },
        cap.count,
        nudge_bytecode::format_duration(cap.per)
    )
}
