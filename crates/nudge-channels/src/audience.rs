//! Ad audiences: membership changes turned into what Meta Custom Audiences
//! and Google Customer Match can match, as upload files and as batched API
//! calls ([`MetaAudience`](crate::MetaAudience),
//! [`GoogleCustomerMatch`](crate::GoogleCustomerMatch)).
//!
//! The platforms match people by the SHA-256 of a normalized email address
//! or phone number, never by a shop's customer ids. Normalization follows
//! each platform's documentation:
//!
//! - Meta, "Customer File Custom Audiences" and the `/{audience_id}/users`
//!   reference (developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences):
//!   email trimmed and lower-cased; phone as digits only, with the country
//!   code, without symbols or leading zeros (so E.164 without its `+`).
//! - Google Ads API, "Customer Match"
//!   (developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match):
//!   email trimmed and lower-cased (removing the dots of gmail.com addresses
//!   is documented as not required, so they are kept); phone in E.164
//!   (`+` and digits).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use sha2::{Digest, Sha256};

use crate::DeliveryError;

/// The ad platform whose rules and formats apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Meta (Facebook, Instagram) Custom Audiences from a customer file.
    Meta,
    /// Google Ads Customer Match.
    Google,
}

impl Platform {
    /// `meta` or `google`.
    pub fn name(&self) -> &'static str {
        match self {
            Platform::Meta => "meta",
            Platform::Google => "google",
        }
    }

    /// The platform named `meta` or `google`.
    pub fn from_name(name: &str) -> Option<Platform> {
        match name.trim().to_ascii_lowercase().as_str() {
            "meta" => Some(Platform::Meta),
            "google" => Some(Platform::Google),
            _ => None,
        }
    }
}

/// How phone numbers without an international prefix are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhoneRules {
    /// The country calling code (`1`, `44`, `49`) put in front of a national
    /// number (one without `+` or `00`), after dropping its leading zeros.
    /// `None` refuses such numbers: their country cannot be known.
    pub default_calling_code: Option<String>,
}

impl PhoneRules {
    /// Checks the calling code: one to three digits, not starting with 0.
    pub fn check(&self) -> Result<(), String> {
        if let Some(code) = &self.default_calling_code {
            let ok = (1..=3).contains(&code.len())
                && code.bytes().all(|b| b.is_ascii_digit())
                && !code.starts_with('0');
            if !ok {
                return Err(format!(
                    "`phone_country_code` = {code:?} is not a country calling code (1 to 3 digits, such as \"1\" or \"49\")"
                ));
            }
        }
        Ok(())
    }
}

/// Why an identifier cannot be matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierError {
    /// `email` or `phone`.
    pub kind: &'static str,
    /// What is wrong, readable by a person.
    pub reason: String,
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

impl std::error::Error for IdentifierError {}

/// An email address as the platforms hash it: trimmed and lower-cased.
pub fn normalize_email(raw: &str) -> Result<String, IdentifierError> {
    let email = raw.trim().to_lowercase();
    let err = |reason: String| IdentifierError {
        kind: "email",
        reason,
    };
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(err(format!("{raw:?} has no `@`")));
    };
    if local.is_empty() || domain.is_empty() || !domain.contains('.') {
        return Err(err(format!("{raw:?} is not an email address")));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(format!("{raw:?} has spaces inside")));
    }
    Ok(email)
}

/// A phone number in E.164 (`+` and 8 to 15 digits).
///
/// Spaces, dashes, dots, slashes and parentheses are dropped. A number
/// starting with `+` or `00` carries its country code; any other is national,
/// and gets `rules.default_calling_code` in place of its leading zeros (the
/// trunk prefix), or is refused when no default is configured.
pub fn normalize_phone(raw: &str, rules: &PhoneRules) -> Result<String, IdentifierError> {
    let err = |reason: String| IdentifierError {
        kind: "phone",
        reason,
    };
    let text = raw.trim();
    let (international, rest) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
            other => return Err(err(format!("{raw:?} has {other:?}, not a phone number"))),
        }
    }
    let full = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else {
        let Some(code) = &rules.default_calling_code else {
            return Err(err(format!(
                "{raw:?} has no country code (start it with + or set `phone_country_code`)"
            )));
        };
        format!("{code}{}", digits.trim_start_matches('0'))
    };
    if full.starts_with('0') {
        return Err(err(format!(
            "{raw:?}: a country code does not start with 0"
        )));
    }
    if !(8..=15).contains(&full.len()) {
        return Err(err(format!(
            "{raw:?} has {} digits with its country code; E.164 numbers have 8 to 15",
            full.len()
        )));
    }
    Ok(format!("+{full}"))
}

/// The lower-case hex SHA-256 of `text`'s UTF-8 bytes.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A customer's hashed identifiers for one platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchKeys {
    /// SHA-256 of the normalized email.
    pub email: Option<String>,
    /// SHA-256 of the normalized phone number.
    pub phone: Option<String>,
    /// Why an identifier the profile has could not be used.
    pub problems: Vec<IdentifierError>,
}

impl MatchKeys {
    /// Normalizes and hashes `email` and `phone` as `platform` documents it.
    pub fn of(
        platform: Platform,
        email: Option<&str>,
        phone: Option<&str>,
        rules: &PhoneRules,
    ) -> MatchKeys {
        let mut keys = MatchKeys::default();
        if let Some(raw) = email.filter(|e| !e.trim().is_empty()) {
            match normalize_email(raw) {
                Ok(e) => keys.email = Some(sha256_hex(&e)),
                Err(e) => keys.problems.push(e),
            }
        }
        if let Some(raw) = phone.filter(|p| !p.trim().is_empty()) {
            match normalize_phone(raw, rules) {
                Ok(e164) => {
                    let hashed = match platform {
                        // Meta documents digits only: the country code, no `+`.
                        Platform::Meta => e164.trim_start_matches('+').to_string(),
                        Platform::Google => e164,
                    };
                    keys.phone = Some(sha256_hex(&hashed));
                }
                Err(e) => keys.problems.push(e),
            }
        }
        keys
    }

    /// Whether there is anything to match on.
    pub fn is_matchable(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }

    /// Why nothing can be matched, for a customer with no usable identifier.
    pub fn unmatched_reason(&self) -> String {
        if self.problems.is_empty() {
            "no email or phone in the profile".to_string()
        } else {
            self.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }
    }
}

/// One change of audience membership, with the identifiers the customer's
/// profile held at the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceChange {
    /// The audience's name in the flows.
    pub audience: String,
    /// The customer's display id.
    pub customer: String,
    /// True to add, false to remove.
    pub add: bool,
    /// The profile's `email`, as given.
    pub email: Option<String>,
    /// The profile's `phone`, as given.
    pub phone: Option<String>,
}

/// What an audience plugin did with the changes it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Per audience name.
    pub audiences: BTreeMap<String, AudienceCounts>,
}

/// Counts for one audience.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudienceCounts {
    /// Customers the platform accepted as additions.
    pub added: u64,
    /// Customers the platform accepted as removals.
    pub removed: u64,
    /// Changes for customers without a usable email or phone.
    pub unmatched: u64,
    /// The reason of the first unmatched change, as an example.
    pub unmatched_example: Option<String>,
    /// Changes for an audience with no platform id configured.
    pub unmapped: u64,
    /// Changes given up: refused for good, or in [`SYNC_MAX_ROUNDS`] batches the
    /// platform did not take.
    pub failed: u64,
    /// Requests that carried members.
    pub batches: u64,
    /// Entries the platform reported as invalid (Meta's `num_invalid_entries`).
    pub invalid: u64,
}

impl SyncReport {
    /// The counts of `audience`, created empty.
    pub fn of(&mut self, audience: &str) -> &mut AudienceCounts {
        self.audiences.entry(audience.to_string()).or_default()
    }

    /// One line per audience, for a run's summary.
    pub fn lines(&self) -> Vec<String> {
        self.audiences
            .iter()
            .map(|(name, c)| {
                let mut line = format!(
                    "{name}: {} added, {} removed in {} batch{}",
                    c.added,
                    c.removed,
                    c.batches,
                    if c.batches == 1 { "" } else { "es" }
                );
                if c.unmatched > 0 {
                    line.push_str(&format!(", {} unmatched", c.unmatched));
                    if let Some(why) = &c.unmatched_example {
                        line.push_str(&format!(" (e.g. {why})"));
                    }
                }
                if c.invalid > 0 {
                    line.push_str(&format!(", {} invalid", c.invalid));
                }
                if c.unmapped > 0 {
                    line.push_str(&format!(
                        ", {} not synced: no platform audience id configured",
                        c.unmapped
                    ));
                }
                if c.failed > 0 {
                    line.push_str(&format!(", {} failed", c.failed));
                }
                line
            })
            .collect()
    }
}

/// A destination for audience membership changes: an ad platform's API.
///
/// Changes are kept and sent in batches; a batch goes out when it is full
/// and on [`AudienceSync::flush`]. Within what is pending, a customer's
/// last change wins, so a customer added and removed before a flush is only
/// removed, and additions and removals can be sent in any order.
pub trait AudienceSync: Send {
    /// A short name for reports (`meta_audience`, `google_customer_match`).
    fn name(&self) -> &str;

    /// Takes one change; sends a batch when one is full.
    fn change(&mut self, change: &AudienceChange) -> Result<(), DeliveryError>;

    /// Sends everything pending.
    fn flush(&mut self) -> Result<(), DeliveryError>;

    /// What was sent, matched and refused so far.
    fn report(&self) -> &SyncReport;

    /// Changes still waiting: not sent yet, or put back after a batch the
    /// platform did not take (tried again at the next flush, up to
    /// [`SYNC_MAX_ROUNDS`] batches).
    fn pending(&self) -> u64;
}

/// The [`AudienceSync`] of a plugin that keeps its changes in `batcher`
/// (reading phones by `phone`, counting in `report`) and sends one
/// audience at a time with its own `flush_audience`: a change is kept, and
/// its audience sent once `batch_size` changes wait.
macro_rules! batched_sync {
    ($plugin:ty, $platform:expr, $name:expr) => {
        impl $crate::audience::AudienceSync for $plugin {
            fn name(&self) -> &str {
                $name
            }

            fn change(
                &mut self,
                change: &$crate::audience::AudienceChange,
            ) -> Result<(), $crate::DeliveryError> {
                let pending = self
                    .batcher
                    .keep($platform, &self.phone, change, &mut self.report);
                if pending >= self.batch_size {
                    return self.flush_audience(&change.audience);
                }
                Ok(())
            }

            fn flush(&mut self) -> Result<(), $crate::DeliveryError> {
                // Every audience is tried; the first failure is reported.
                let mut first = Ok(());
                for audience in self.batcher.audiences() {
                    if let Err(e) = self.flush_audience(&audience) {
                        first = first.and(Err(e));
                    }
                }
                first
            }

            fn report(&self) -> &$crate::audience::SyncReport {
                &self.report
            }

            fn pending(&self) -> u64 {
                self.batcher.len()
            }
        }
    };
}
pub(crate) use batched_sync;

/// A pending member of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) add: bool,
    pub(crate) keys: MatchKeys,
    /// Batches it was in that the platform did not take.
    pub(crate) rounds: u32,
}

/// A change that failed this many batches is given up.
pub const SYNC_MAX_ROUNDS: u32 = 8;

/// A batch's rows: the customer and their pending change.
pub(crate) type Rows = Vec<(String, Pending)>;

/// Changes waiting to be sent, by audience, then by customer (last change wins).
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    pub(crate) pending: BTreeMap<String, BTreeMap<String, Pending>>,
}

impl Batcher {
    /// Keeps `change` unless it cannot be matched (counted in `report`).
    /// Returns how many changes the audience now has pending.
    pub(crate) fn keep(
        &mut self,
        platform: Platform,
        rules: &PhoneRules,
        change: &AudienceChange,
        report: &mut SyncReport,
    ) -> usize {
        let keys = MatchKeys::of(
            platform,
            change.email.as_deref(),
            change.phone.as_deref(),
            rules,
        );
        let pending = self.pending.entry(change.audience.clone()).or_default();
        if !keys.is_matchable() {
            // An earlier change for the customer no longer stands either.
            pending.remove(&change.customer);
            let counts = report.of(&change.audience);
            counts.unmatched += 1;
            counts
                .unmatched_example
                .get_or_insert_with(|| format!("{}: {}", change.customer, keys.unmatched_reason()));
            return pending.len();
        }
        pending.insert(
            change.customer.clone(),
            Pending {
                add: change.add,
                keys,
                rounds: 0,
            },
        );
        pending.len()
    }

    /// Takes the pending changes of `audience`: additions, then removals.
    pub(crate) fn take(&mut self, audience: &str) -> (Rows, Rows) {
        let mut adds = Vec::new();
        let mut removes = Vec::new();
        for (customer, p) in self.pending.remove(audience).unwrap_or_default() {
            if p.add {
                adds.push((customer, p));
            } else {
                removes.push((customer, p));
            }
        }
        (adds, removes)
    }

    /// Puts back rows of a batch the platform did not take, for the next
    /// flush, unless `error` will not go away or a row has failed
    /// [`SYNC_MAX_ROUNDS`] batches; a customer with a newer change keeps that
    /// one. Counts what is given up as failed.
    pub(crate) fn put_back(
        &mut self,
        audience: &str,
        rows: Rows,
        error: &DeliveryError,
        report: &mut SyncReport,
    ) {
        let retry = error.retryable || error.unknown;
        let pending = self.pending.entry(audience.to_string()).or_default();
        let mut given_up = 0;
        for (customer, mut p) in rows {
            if pending.contains_key(&customer) {
                continue;
            }
            p.rounds += 1;
            if retry && p.rounds < SYNC_MAX_ROUNDS {
                pending.insert(customer, p);
            } else {
                given_up += 1;
            }
        }
        report.of(audience).failed += given_up;
    }

    /// How many changes wait, over all audiences.
    pub(crate) fn len(&self) -> u64 {
        self.pending.values().map(|p| p.len() as u64).sum()
    }

    /// The audiences with something pending.
    pub(crate) fn audiences(&self) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// Checks a batch size against the platform's documented maximum.
pub(crate) fn check_batch_size(
    plugin: &'static str,
    size: usize,
    max: usize,
) -> Result<(), crate::ProviderConfigError> {
    if size == 0 || size > max {
        return Err(crate::ProviderConfigError::new(
            plugin,
            format!("`batch_size` = {size}; it must be between 1 and {max}"),
        ));
    }
    Ok(())
}

/// The net change of each customer over a run of changes, as upload files:
/// who to add and who to remove, hashed for one platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadLists {
    /// Customers whose last change added them.
    pub add: Vec<MatchKeys>,
    /// Customers whose last change removed them.
    pub remove: Vec<MatchKeys>,
    /// Customers without a usable identifier, with the reason.
    pub unmatched: Vec<(String, String)>,
}

impl UploadLists {
    /// The net change of each customer in `changes` (in order; the last wins).
    pub fn from_changes<'a>(
        platform: Platform,
        rules: &PhoneRules,
        changes: impl IntoIterator<Item = &'a AudienceChange>,
    ) -> UploadLists {
        let mut last: BTreeMap<&str, &AudienceChange> = BTreeMap::new();
        for change in changes {
            last.insert(&change.customer, change);
        }
        let mut lists = UploadLists::default();
        for (customer, change) in last {
            let keys = MatchKeys::of(
                platform,
                change.email.as_deref(),
                change.phone.as_deref(),
                rules,
            );
            if !keys.is_matchable() {
                lists
                    .unmatched
                    .push((customer.to_string(), keys.unmatched_reason()));
            } else if change.add {
                lists.add.push(keys);
            } else {
                lists.remove.push(keys);
            }
        }
        lists
    }
}

/// Writes `members` as the customer-list CSV `platform` takes in its upload
/// screen, hashed: Meta's column headers `email` and `phone` (Meta Business
/// Help Centre, "How to format a customer list"), Google's `Email` and
/// `Phone` (the Customer Match upload template). Values are SHA-256 hex, so
/// nothing needs quoting; a missing identifier is an empty cell.
pub fn write_upload_csv(
    platform: Platform,
    members: &[MatchKeys],
    out: &mut impl Write,
) -> std::io::Result<()> {
    let header = match platform {
        Platform::Meta => "email,phone",
        Platform::Google => "Email,Phone",
    };
    writeln!(out, "{header}")?;
    for m in members {
        writeln!(
            out,
            "{},{}",
            m.email.as_deref().unwrap_or(""),
            m.phone.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(code: Option<&str>) -> PhoneRules {
        PhoneRules {
            default_calling_code: code.map(str::to_string),
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased_only() {
        assert_eq!(
            normalize_email("  Ana.Lopez+Shop@GMail.com \n").unwrap(),
            "ana.lopez+shop@gmail.com"
        );
        for bad in [
            "ana",
            "@example.com",
            "ana@",
            "ana@localhost",
            "a b@example.com",
        ] {
            let err = normalize_email(bad).unwrap_err();
            assert_eq!(err.kind, "email", "{bad}");
        }
    }

    #[test]
    fn phones_become_e164() {
        let none = rules(None);
        assert_eq!(
            normalize_phone("+1 (650) 555-1234", &none).unwrap(),
            "+16505551234"
        );
        assert_eq!(
            normalize_phone("0049 30 1234567", &none).unwrap(),
            "+49301234567"
        );
        let de = rules(Some("49"));
        assert_eq!(normalize_phone("030 1234567", &de).unwrap(), "+49301234567");
        // A number with its own prefix keeps it whatever the default.
        assert_eq!(
            normalize_phone("+44 20 7946 0958", &de).unwrap(),
            "+442079460958"
        );
        let err = normalize_phone("030 1234567", &none).unwrap_err();
        assert!(err.reason.contains("no country code"), "{err}");
        let err = normalize_phone("+1 650 CALL-NOW", &none).unwrap_err();
        assert!(err.reason.contains("not a phone number"), "{err}");
        let err = normalize_phone("+1234", &none).unwrap_err();
        assert!(err.reason.contains("8 to 15"), "{err}");
        let err = normalize_phone("+0123456789", &none).unwrap_err();
        assert!(err.reason.contains("does not start with 0"), "{err}");
    }

    #[test]
    fn calling_codes_are_checked() {
        assert!(rules(Some("1")).check().is_ok());
        assert!(rules(Some("353")).check().is_ok());
        for bad in ["", "0", "+49", "1234", "4a"] {
            assert!(rules(Some(bad)).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_sha256_hex() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn phones_hash_as_each_platform_documents() {
        let r = rules(None);
        let meta = MatchKeys::of(Platform::Meta, None, Some("+1 650 555 1234"), &r);
        let google = MatchKeys::of(Platform::Google, None, Some("+1 650 555 1234"), &r);
        assert_eq!(meta.phone, Some(sha256_hex("16505551234")));
        assert_eq!(google.phone, Some(sha256_hex("+16505551234")));
        let both = MatchKeys::of(Platform::Google, Some(" Ana@Example.com"), None, &r);
        assert_eq!(both.email, Some(sha256_hex("ana@example.com")));
    }

    #[test]
    fn a_customer_without_identifiers_is_unmatched_with_a_reason() {
        let r = rules(None);
        let keys = MatchKeys::of(Platform::Meta, None, Some(" "), &r);
        assert!(!keys.is_matchable());
        assert_eq!(keys.unmatched_reason(), "no email or phone in the profile");
        let keys = MatchKeys::of(Platform::Meta, Some("nope"), Some("555 1234"), &r);
        assert!(!keys.is_matchable());
        let why = keys.unmatched_reason();
        assert!(
            why.starts_with("email: ") && why.contains("; phone: "),
            "{why}"
        );
        // One good identifier is enough; the bad one is still told.
        let keys = MatchKeys::of(Platform::Meta, Some("a@b.co"), Some("555"), &r);
        assert!(keys.is_matchable());
        assert_eq!(keys.problems.len(), 1);
    }

    fn change(customer: &str, add: bool, email: Option<&str>) -> AudienceChange {
        AudienceChange {
            audience: "cart_abandoners".into(),
            customer: customer.into(),
            add,
            email: email.map(str::to_string),
            phone: None,
        }
    }

    #[test]
    fn the_last_change_of_a_customer_wins() {
        let changes = [
            change("u1", true, Some("ana@example.com")),
            change("u2", true, Some("ben@example.com")),
            change("u1", false, Some("ana@example.com")),
            change("u3", true, None),
        ];
        let lists = UploadLists::from_changes(Platform::Meta, &rules(None), &changes);
        assert_eq!(lists.add.len(), 1);
        assert_eq!(lists.add[0].email, Some(sha256_hex("ben@example.com")));
        assert_eq!(lists.remove.len(), 1);
        assert_eq!(lists.remove[0].email, Some(sha256_hex("ana@example.com")));
        assert_eq!(
            lists.unmatched,
            vec![(
                "u3".to_string(),
                "no email or phone in the profile".to_string()
            )]
        );

        let mut batcher = Batcher::default();
        let mut report = SyncReport::default();
        for c in &changes {
            batcher.keep(Platform::Meta, &rules(None), c, &mut report);
        }
        let (adds, removes) = batcher.take("cart_abandoners");
        assert_eq!((adds.len(), removes.len()), (1, 1));
        assert_eq!(report.audiences["cart_abandoners"].unmatched, 1);
        assert!(batcher.audiences().is_empty());

        // A batch that failed goes back, unless the customer changed since.
        batcher.keep(Platform::Meta, &rules(None), &changes[0], &mut report);
        let outage = DeliveryError::transient(5, "HTTP 503");
        batcher.put_back("cart_abandoners", adds.clone(), &outage, &mut report);
        batcher.put_back("cart_abandoners", removes, &outage, &mut report);
        assert_eq!(batcher.len(), 2);
        let (again, _) = batcher.take("cart_abandoners");
        let rounds: Vec<(&str, bool, u32)> = again
            .iter()
            .map(|(c, p)| (c.as_str(), p.add, p.rounds))
            .collect();
        // u1's newer addition stands; u2's failed addition is back.
        assert_eq!(rounds, vec![("u1", true, 0), ("u2", true, 1)]);
        assert_eq!(report.audiences["cart_abandoners"].failed, 0);
        // A refusal for good, or too many rounds, gives the change up.
        let refused = DeliveryError::permanent(1, "HTTP 400");
        batcher.put_back("cart_abandoners", again, &refused, &mut report);
        let mut tired = adds;
        tired[0].1.rounds = SYNC_MAX_ROUNDS - 1;
        batcher.put_back("cart_abandoners", tired, &outage, &mut report);
        assert_eq!(batcher.len(), 0);
        assert_eq!(report.audiences["cart_abandoners"].failed, 3);
    }

    #[test]
    fn upload_files_have_the_documented_headers() {
        let keys = MatchKeys::of(
            Platform::Google,
            Some("ana@example.com"),
            None,
            &rules(None),
        );
        let mut out = Vec::new();
        write_upload_csv(Platform::Google, &[keys], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!("Email,Phone\n{},\n", sha256_hex("ana@example.com"))
        );
        let mut out = Vec::new();
        write_upload_csv(Platform::Meta, &[], &mut out).unwrap();
        assert_eq!(out, b"email,phone\n");
    }
}
