//! The simulation: customers, their sessions, and the queue that puts every
//! line in timestamp order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Write};

use chrono::{DateTime, Offset, TimeZone};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalogue::{CATEGORIES, Catalogue, FIRST_NAMES, LAST_NAMES, ZONES};
use crate::json::Obj;
use crate::{GenConfig, GenStats};

/// Lines one session brings on average, counting the order updates and
/// feedback it leads to; measured on generated streams, and used to pace
/// sessions so that the requested count spans about the requested days.
const LINES_PER_SESSION: f64 = 12.0;

/// Relative session frequency of a shopper: most visit now and then, a few
/// very often.
const ACTIVITY: &[(f64, u32)] = &[(0.25, 30), (0.5, 30), (1.0, 20), (2.0, 15), (4.0, 5)];

/// How likely a session is to start in each local hour (0 to 23): little
/// at night, peaks at lunch and in the evening.
const HOUR_WEIGHT: [u32; 24] = [
    3, 2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 10, 9, 7, 7, 7, 8, 10, 12, 13, 12, 8, 5,
];

/// Coupons the store hands out: code and percentage off.
const COUPONS: &[(&str, i64)] = &[("WELCOME10", 10), ("SPRING15", 15), ("VIP20", 20)];

/// Messages the store sends, with the flow that sends them, for feedback events.
const MESSAGES: &[(&str, &str)] = &[
    ("cart_reminder", "cart_recovery"),
    ("welcome_1", "welcome_series"),
    ("weekly_digest", "newsletter"),
    ("win_back_offer", "win_back"),
    ("shipping_update", "post_purchase"),
];

const SMS_TEXTS: &[&str] = &[
    "STOP",
    "HELP",
    "Thanks!",
    "YES",
    "stop",
    "When does my order arrive?",
];
const RETURN_REASONS: &[&str] = &[
    "too small",
    "damaged",
    "not as described",
    "changed my mind",
];
const SIGNUP_METHODS: &[&str] = &["email", "google", "apple"];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.instagram.com/",
    "https://www.facebook.com/",
    "https://news.example/best-gifts",
];
const BOUNCE_REASONS: &[&str] = &["mailbox full", "user unknown", "domain not found"];
const STORE_NUMBER: &str = "+15555550199";

/// A messaging channel named in feedback events.
#[derive(Clone, Copy)]
enum Chan {
    Email,
    Sms,
}

impl Chan {
    fn name(self) -> &'static str {
        match self {
            Chan::Email => "email",
            Chan::Sms => "sms",
        }
    }
}

/// Which ids a line carries.
#[derive(Clone, Copy)]
enum Who {
    /// An unidentified device.
    Anon(u8),
    /// The store's user id only (server-side events).
    User,
    /// An identified device: user id and the device's anonymous id.
    Both(u8),
}

/// Products in a cart or order: catalogue index and quantity.
type Items = Box<[(u16, u8)]>;

enum Body {
    Identify {
        first: bool,
    },
    Alias {
        device: u8,
    },
    Page {
        page: u8,
        category: u8,
        referrer: Option<u8>,
    },
    Track(Track),
}

enum Track {
    Searched {
        category: u8,
        noun: u8,
    },
    ListViewed {
        category: u8,
        page: u8,
    },
    Clicked {
        product: u16,
        position: u8,
    },
    Viewed {
        product: u16,
    },
    Added {
        product: u16,
        qty: u8,
        cart: u32,
    },
    Removed {
        product: u16,
        qty: u8,
        cart: u32,
    },
    Wishlisted {
        product: u16,
    },
    CartViewed {
        cart: u32,
        items: Items,
    },
    CouponApplied {
        cart: u32,
        coupon: u8,
        discount: i64,
    },
    CheckoutStarted {
        items: Items,
        coupon: Option<u8>,
    },
    OrderCompleted {
        order: u32,
        cart: u32,
        items: Items,
        coupon: Option<u8>,
    },
    OrderCancelled {
        order: u32,
        items: Items,
        coupon: Option<u8>,
    },
    OrderShipped {
        order: u32,
        tracking: u64,
        items: Items,
    },
    OrderDelivered {
        order: u32,
        tracking: u64,
        items: Items,
    },
    ReturnRequested {
        order: u32,
        items: Items,
        reason: u8,
    },
    OrderRefunded {
        order: u32,
        items: Items,
    },
    Reviewed {
        product: u16,
        rating: u8,
        review: u32,
    },
    SignedUp {
        method: u8,
    },
    Subscribed {
        channel: Chan,
    },
    Unsubscribed {
        channel: Chan,
    },
    MessageClicked {
        channel: Chan,
        message: u8,
        product: u16,
    },
    MessageBounced {
        hard: bool,
        message: u8,
        reason: u8,
    },
    MarkedAsSpam {
        message: u8,
    },
    SmsReceived {
        text: u8,
    },
}

impl Track {
    fn wire(&self) -> &'static str {
        match self {
            Track::Searched { .. } => "Products Searched",
            Track::ListViewed { .. } => "Product List Viewed",
            Track::Clicked { .. } => "Product Clicked",
            Track::Viewed { .. } => "Product Viewed",
            Track::Added { .. } => "Product Added",
            Track::Removed { .. } => "Product Removed",
            Track::Wishlisted { .. } => "Product Added to Wishlist",
            Track::CartViewed { .. } => "Cart Viewed",
            Track::CouponApplied { .. } => "Coupon Applied",
            Track::CheckoutStarted { .. } => "Checkout Started",
            Track::OrderCompleted { .. } => "Order Completed",
            Track::OrderCancelled { .. } => "Order Cancelled",
            Track::OrderShipped { .. } => "Order Shipped",
            Track::OrderDelivered { .. } => "Order Delivered",
            Track::ReturnRequested { .. } => "Return Requested",
            Track::OrderRefunded { .. } => "Order Refunded",
            Track::Reviewed { .. } => "Product Reviewed",
            Track::SignedUp { .. } => "Signed Up",
            Track::Subscribed { .. } => "Subscribed",
            Track::Unsubscribed { .. } => "Unsubscribed",
            Track::MessageClicked { .. } => "Message Clicked",
            Track::MessageBounced { .. } => "Message Bounced",
            Track::MarkedAsSpam { .. } => "Marked As Spam",
            Track::SmsReceived { .. } => "SMS Received",
        }
    }
}

struct Line {
    customer: u32,
    who: Who,
    body: Body,
}

enum Item {
    Session(u32),
    Line(Box<Line>),
}

/// A queue entry; the heap is a max-heap, so the order is reversed to pop
/// the earliest, and `seq` keeps ties in the order they were scheduled.
struct Entry {
    t: i64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

/// Consent to one channel as the store knows it: unknown, refused, given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Consent {
    Unknown,
    No,
    Yes,
}

struct Customer {
    zone: u8,
    first: u8,
    last: u8,
    favourite: u8,
    anon: [u64; 2],
    two_devices: bool,
    /// Will create an account at some point; the others only browse.
    registers: bool,
    /// Has identified (the user id is known).
    known: bool,
    /// Which devices are joined to the user id.
    joined: [bool; 2],
    phone: Option<u32>,
    consent_email: Consent,
    consent_sms: Consent,
    activity: f64,
    cart: Vec<(u16, u8)>,
    cart_no: u32,
    sessions: u32,
    seen: bool,
}

impl Customer {
    fn who(&self, device: u8) -> Who {
        if self.joined[device as usize] {
            Who::Both(device)
        } else {
            Who::Anon(device)
        }
    }
}

/// The generator's whole state.
pub struct Stream<'c> {
    config: &'c GenConfig,
    rng: ChaCha8Rng,
    /// A separate stream for spoiling lines, so that a bad rate changes which
    /// lines are spoiled but not what the customers do.
    bad_rng: ChaCha8Rng,
    catalogue: Catalogue,
    customers: Vec<Customer>,
    heap: BinaryHeap<Entry>,
    seq: u64,
    orders: u32,
    reviews: u32,
    base_gap: f64,
    span: f64,
    buf: String,
    stats: GenStats,
}

/// An exponentially distributed wait with the given mean.
fn exp(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// Pauses between clicks: a few seconds to a few minutes.
fn think(rng: &mut ChaCha8Rng) -> i64 {
    3 + exp(rng, 35.0).min(600.0) as i64
}

/// Picks an index by weight.
fn weighted<T>(rng: &mut ChaCha8Rng, table: &[(T, u32)]) -> usize {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut r = rng.random_range(0..total);
    for (i, (_, w)) in table.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    table.len() - 1
}

/// How many more times something repeats, each time with probability `p`.
fn repeats(rng: &mut ChaCha8Rng, p: f64, cap: u32) -> u32 {
    let mut n = 0;
    while n < cap && rng.random_bool(p) {
        n += 1;
    }
    n
}

impl<'c> Stream<'c> {
    /// Creates the customers and the pacing for `config`.
    pub fn new(config: &'c GenConfig) -> Stream<'c> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let bad_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5bad_5bad_5bad_5bad);
        let zones: Vec<(u8, u32)> = ZONES
            .iter()
            .enumerate()
            .map(|(i, z)| (i as u8, z.weight))
            .collect();
        let mut customers = Vec::with_capacity(config.customers as usize);
        for _ in 0..config.customers {
            let registers = rng.random_bool(0.75);
            let phone = rng.random_bool(0.65).then(|| rng.random::<u32>());
            let consent_email = match rng.random_range(0..100) {
                0..10 => Consent::Unknown,
                10..25 => Consent::No,
                _ => Consent::Yes,
            };
            let consent_sms = match (phone, rng.random_range(0..100)) {
                (None, _) | (_, 0..15) => Consent::Unknown,
                (_, 15..55) => Consent::No,
                _ => Consent::Yes,
            };
            customers.push(Customer {
                zone: zones[weighted(&mut rng, &zones)].0,
                first: rng.random_range(0..FIRST_NAMES.len()) as u8,
                last: rng.random_range(0..LAST_NAMES.len()) as u8,
                favourite: rng.random_range(0..CATEGORIES.len()) as u8,
                anon: [rng.random(), rng.random()],
                two_devices: registers && rng.random_bool(0.3),
                registers,
                known: false,
                joined: [false; 2],
                phone,
                consent_email,
                consent_sms,
                activity: ACTIVITY[weighted(&mut rng, ACTIVITY)].0,
                cart: Vec::new(),
                cart_no: 1,
                sessions: 0,
                seen: false,
            });
        }
        let span = f64::from(config.days) * 86_400.0;
        let activity: f64 = customers.iter().map(|c| c.activity).sum();
        // Sessions per customer = span * activity / base_gap; solve for the
        // gap that makes all sessions together bring the requested lines.
        let base_gap =
            (span * activity * LINES_PER_SESSION / config.events.max(1) as f64).max(600.0);
        Stream {
            config,
            rng,
            bad_rng,
            catalogue: Catalogue::new(),
            customers,
            heap: BinaryHeap::new(),
            seq: 0,
            orders: 0,
            reviews: 0,
            base_gap,
            span,
            buf: String::with_capacity(4096),
            stats: GenStats::default(),
        }
    }

    fn push(&mut self, t: i64, item: Item) {
        self.seq += 1;
        self.heap.push(Entry {
            t,
            seq: self.seq,
            item,
        });
    }

    fn line(&mut self, t: i64, customer: u32, who: Who, body: Body) {
        self.push(
            t,
            Item::Line(Box::new(Line {
                customer,
                who,
                body,
            })),
        );
    }

    fn track(&mut self, t: i64, customer: u32, who: Who, track: Track) {
        self.line(t, customer, who, Body::Track(track));
    }

    /// Writes `config.events` lines to `out` and says what was written.
    pub fn run(mut self, out: &mut impl Write) -> io::Result<GenStats> {
        let start = self.config.start.timestamp();
        for c in 0..self.config.customers {
            let t = self.next_session(c, start, true);
            self.push(t, Item::Session(c));
        }
        while self.stats.lines < self.config.events {
            let Some(Entry { t, item, .. }) = self.heap.pop() else {
                break;
            };
            match item {
                Item::Session(c) => self.session(c, t),
                Item::Line(line) => self.emit(t, &line, out)?,
            }
        }
        Ok(self.stats)
    }

    /// When a customer next visits: about `base_gap / activity` after `after`,
    /// nudged towards the local hours people shop in.
    fn next_session(&mut self, c: u32, after: i64, first: bool) -> i64 {
        let cust = &self.customers[c as usize];
        let mean = self.base_gap / cust.activity;
        let tz = ZONES[cust.zone as usize].tz;
        let gap = if first {
            self.rng.random::<f64>() * mean.min(self.span)
        } else {
            1800.0 + exp(&mut self.rng, mean)
        };
        let mut t = after + gap as i64;
        let offset = DateTime::from_timestamp(t, 0)
            .map(|u| {
                tz.offset_from_utc_datetime(&u.naive_utc())
                    .fix()
                    .local_minus_utc()
            })
            .unwrap_or(0) as i64;
        let top = *HOUR_WEIGHT.iter().max().unwrap_or(&1);
        for _ in 0..64 {
            let hour = (t + offset).rem_euclid(86_400) / 3600;
            if self.rng.random_range(0..top) < HOUR_WEIGHT[hour as usize] {
                break;
            }
            t += self.rng.random_range(600..7200);
        }
        t
    }

    fn category_of(&mut self, c: u32) -> u8 {
        if self.rng.random_bool(0.5) {
            self.customers[c as usize].favourite
        } else {
            self.rng.random_range(0..CATEGORIES.len()) as u8
        }
    }

    fn product_in(&mut self, category: u8) -> u16 {
        let range = self.catalogue.in_category(category as usize);
        self.rng.random_range(range) as u16
    }

    /// Identifies the customer on `device`, perhaps with a sign-up and opt-ins.
    fn identify(&mut self, c: u32, device: u8, t: &mut i64) {
        let first = !self.customers[c as usize].known;
        {
            let cust = &mut self.customers[c as usize];
            cust.known = true;
            cust.joined[device as usize] = true;
        }
        let who = self.customers[c as usize].who(device);
        self.line(*t, c, who, Body::Identify { first });
        *t += think(&mut self.rng);
        if !first {
            return;
        }
        if self.rng.random_bool(0.6) {
            let method = self.rng.random_range(0..SIGNUP_METHODS.len()) as u8;
            self.track(*t, c, who, Track::SignedUp { method });
            *t += think(&mut self.rng);
        }
        let cust = &self.customers[c as usize];
        let (email, sms) = (
            cust.consent_email == Consent::Yes,
            cust.consent_sms == Consent::Yes,
        );
        if email && self.rng.random_bool(0.4) {
            self.track(
                *t,
                c,
                who,
                Track::Subscribed {
                    channel: Chan::Email,
                },
            );
            *t += think(&mut self.rng);
        }
        if sms && self.rng.random_bool(0.3) {
            self.track(*t, c, who, Track::Subscribed { channel: Chan::Sms });
            *t += think(&mut self.rng);
        }
    }

    /// Plays one visit: the landing page, browsing, perhaps a cart and a
    /// checkout; then schedules the next visit.
    fn session(&mut self, c: u32, t0: i64) {
        let ci = c as usize;
        let mut t = t0;
        self.customers[ci].sessions += 1;
        let (known, two) = (self.customers[ci].known, self.customers[ci].two_devices);
        let device: u8 = if two && known && self.rng.random_bool(0.4) {
            1
        } else {
            0
        };

        // Some visits start from a message link.
        let cust = &self.customers[ci];
        let (email_ok, sms_ok) = (
            cust.consent_email == Consent::Yes,
            cust.consent_sms == Consent::Yes,
        );
        if known && email_ok && self.rng.random_bool(0.08) {
            let channel = if sms_ok && self.rng.random_bool(0.3) {
                Chan::Sms
            } else {
                Chan::Email
            };
            let message = self.rng.random_range(0..MESSAGES.len()) as u8;
            let category = self.category_of(c);
            let product = self.product_in(category);
            let who = self.customers[ci].who(device);
            self.track(
                t,
                c,
                who,
                Track::MessageClicked {
                    channel,
                    message,
                    product,
                },
            );
            t += 2 + self.rng.random_range(0..5);
        }

        let page = weighted(&mut self.rng, &[(0, 55), (1, 15), (2, 20), (3, 10)]) as u8;
        let category = self.category_of(c);
        let referrer = self
            .rng
            .random_bool(0.4)
            .then(|| self.rng.random_range(0..REFERRERS.len()) as u8);
        let who = self.customers[ci].who(device);
        self.line(
            t,
            c,
            who,
            Body::Page {
                page,
                category,
                referrer,
            },
        );
        t += think(&mut self.rng);

        // A second device is joined when the customer logs in on it.
        if device == 1 && !self.customers[ci].joined[1] && self.rng.random_bool(0.5) {
            self.customers[ci].joined[1] = true;
            let who = self.customers[ci].who(1);
            if self.rng.random_bool(0.6) {
                self.line(t, c, who, Body::Alias { device: 1 });
            } else {
                self.line(t, c, who, Body::Identify { first: false });
            }
            t += think(&mut self.rng);
        }

        let sessions = self.customers[ci].sessions;
        if !known
            && self.customers[ci].registers
            && self.rng.random_bool(if sessions == 1 { 0.35 } else { 0.3 })
        {
            self.identify(c, device, &mut t);
        }

        let lists = 1 + repeats(&mut self.rng, 0.45, 5);
        for _ in 0..lists {
            let category = self.category_of(c);
            let who = self.customers[ci].who(device);
            if self.rng.random_bool(0.15) {
                let noun = self
                    .rng
                    .random_range(0..CATEGORIES[category as usize].nouns.len())
                    as u8;
                self.track(t, c, who, Track::Searched { category, noun });
                t += think(&mut self.rng);
            }
            let page = self.rng.random_range(0..5);
            self.track(t, c, who, Track::ListViewed { category, page });
            t += think(&mut self.rng);
            let views = 1 + repeats(&mut self.rng, 0.5, 5);
            for _ in 0..views {
                let product = self.product_in(category);
                if self.rng.random_bool(0.35) {
                    let position = self.rng.random_range(1..=12);
                    self.track(t, c, who, Track::Clicked { product, position });
                    t += 1 + self.rng.random_range(0..6);
                }
                self.track(t, c, who, Track::Viewed { product });
                t += think(&mut self.rng);
                if self.rng.random_bool(0.25) {
                    let qty = [1, 1, 1, 1, 1, 1, 1, 2, 2, 3][self.rng.random_range(0..10)];
                    let cust = &mut self.customers[ci];
                    match cust.cart.iter_mut().find(|(p, _)| *p == product) {
                        Some(line) => line.1 = line.1.saturating_add(qty),
                        None => cust.cart.push((product, qty)),
                    }
                    let cart = cust.cart_no;
                    self.track(t, c, who, Track::Added { product, qty, cart });
                    t += think(&mut self.rng);
                } else if self.rng.random_bool(0.03) {
                    self.track(t, c, who, Track::Wishlisted { product });
                    t += think(&mut self.rng);
                }
            }
        }

        let who = self.customers[ci].who(device);
        if self.customers[ci].cart.len() >= 2 && self.rng.random_bool(0.15) {
            let i = self.rng.random_range(0..self.customers[ci].cart.len());
            let cust = &mut self.customers[ci];
            let (product, qty) = cust.cart.remove(i);
            let cart = cust.cart_no;
            self.track(t, c, who, Track::Removed { product, qty, cart });
            t += think(&mut self.rng);
        }

        if !self.customers[ci].cart.is_empty() {
            let items: Items = self.customers[ci].cart.clone().into();
            let cart = self.customers[ci].cart_no;
            let viewed = self.rng.random_bool(0.6);
            if viewed {
                self.track(
                    t,
                    c,
                    who,
                    Track::CartViewed {
                        cart,
                        items: items.clone(),
                    },
                );
                t += think(&mut self.rng);
            }
            if self.rng.random_bool(if viewed { 0.45 } else { 0.2 }) {
                if !self.customers[ci].known
                    && self.customers[ci].registers
                    && self.rng.random_bool(0.8)
                {
                    self.identify(c, device, &mut t);
                }
                let who = self.customers[ci].who(device);
                let coupon = self
                    .rng
                    .random_bool(0.12)
                    .then(|| self.rng.random_range(0..COUPONS.len()) as u8);
                if let Some(k) = coupon {
                    let discount = self.totals(&items, coupon).discount;
                    self.track(
                        t,
                        c,
                        who,
                        Track::CouponApplied {
                            cart,
                            coupon: k,
                            discount,
                        },
                    );
                    t += think(&mut self.rng);
                }
                self.track(
                    t,
                    c,
                    who,
                    Track::CheckoutStarted {
                        items: items.clone(),
                        coupon,
                    },
                );
                if self.customers[ci].known && self.rng.random_bool(0.47) {
                    t += 60 + self.rng.random_range(0..540);
                    self.orders += 1;
                    let order = self.orders;
                    self.track(
                        t,
                        c,
                        who,
                        Track::OrderCompleted {
                            order,
                            cart,
                            items: items.clone(),
                            coupon,
                        },
                    );
                    self.after_order(c, t, order, items, coupon);
                    let cust = &mut self.customers[ci];
                    cust.cart.clear();
                    cust.cart_no += 1;
                }
                t += think(&mut self.rng);
            }
        }

        let next = self.next_session(c, t, false);
        if self.customers[ci].known && self.rng.random_bool(0.12) {
            let at = t + 600 + self.rng.random_range(0..((next - t) / 2).max(1));
            self.feedback(c, at);
        }
        self.push(next, Item::Session(c));
    }

    /// Schedules what happens to a placed order: cancellation, or shipping
    /// and delivery, then perhaps a return, a refund and a review.
    fn after_order(&mut self, c: u32, t: i64, order: u32, items: Items, coupon: Option<u8>) {
        const H: i64 = 3600;
        const D: i64 = 86_400;
        let who = Who::User;
        if self.rng.random_bool(0.04) {
            let at = t + 600 + self.rng.random_range(0..6 * H);
            self.track(
                at,
                c,
                who,
                Track::OrderCancelled {
                    order,
                    items,
                    coupon,
                },
            );
            return;
        }
        let tracking: u64 = self.rng.random();
        let shipped = t + 6 * H + self.rng.random_range(0..42 * H);
        let delivered = shipped + D + self.rng.random_range(0..4 * D);
        self.track(
            shipped,
            c,
            who,
            Track::OrderShipped {
                order,
                tracking,
                items: items.clone(),
            },
        );
        self.track(
            delivered,
            c,
            who,
            Track::OrderDelivered {
                order,
                tracking,
                items: items.clone(),
            },
        );
        if self.rng.random_bool(0.07) {
            let back: Items = items[..self.rng.random_range(1..=items.len())].into();
            let asked = delivered + D + self.rng.random_range(0..13 * D);
            let reason = self.rng.random_range(0..RETURN_REASONS.len()) as u8;
            self.track(
                asked,
                c,
                who,
                Track::ReturnRequested {
                    order,
                    items: back.clone(),
                    reason,
                },
            );
            if self.rng.random_bool(0.85) {
                let refunded = asked + 2 * D + self.rng.random_range(0..4 * D);
                self.track(
                    refunded,
                    c,
                    who,
                    Track::OrderRefunded { order, items: back },
                );
            }
        } else if self.rng.random_bool(0.02) {
            let at = delivered + D + self.rng.random_range(0..2 * D);
            self.track(
                at,
                c,
                who,
                Track::OrderRefunded {
                    order,
                    items: items[..1].into(),
                },
            );
        }
        if self.rng.random_bool(0.1) {
            let at = delivered + 2 * D + self.rng.random_range(0..8 * D);
            let rating = [5, 5, 5, 5, 4, 4, 4, 3, 2, 1][self.rng.random_range(0..10)];
            self.reviews += 1;
            let review = self.reviews;
            self.track(
                at,
                c,
                who,
                Track::Reviewed {
                    product: items[0].0,
                    rating,
                    review,
                },
            );
        }
    }

    /// One piece of messaging feedback between visits.
    fn feedback(&mut self, c: u32, at: i64) {
        let who = Who::User;
        let message = self.rng.random_range(0..MESSAGES.len()) as u8;
        let has_phone = self.customers[c as usize].phone.is_some();
        let track = match self.rng.random_range(0..100) {
            0..35 => Track::MessageBounced {
                hard: self.rng.random_bool(0.2),
                message,
                reason: self.rng.random_range(0..BOUNCE_REASONS.len()) as u8,
            },
            35..55 if has_phone => Track::SmsReceived {
                text: self.rng.random_range(0..SMS_TEXTS.len()) as u8,
            },
            35..55 => Track::MessageBounced {
                hard: false,
                message,
                reason: 0,
            },
            55..70 => Track::Unsubscribed {
                channel: if has_phone && self.rng.random_bool(0.3) {
                    Chan::Sms
                } else {
                    Chan::Email
                },
            },
            70..75 => Track::MarkedAsSpam { message },
            _ => Track::Subscribed {
                channel: Chan::Email,
            },
        };
        self.track(at, c, who, track);
    }

    fn totals(&self, items: &[(u16, u8)], coupon: Option<u8>) -> Totals {
        let subtotal: i64 = items
            .iter()
            .map(|(p, q)| self.catalogue.products[*p as usize].price * i64::from(*q))
            .sum();
        let discount = coupon.map_or(0, |k| subtotal * COUPONS[k as usize].1 / 100);
        let net = subtotal - discount;
        let shipping = if net >= 7500 { 0 } else { 599 };
        let tax = net * 8 / 100;
        Totals {
            subtotal,
            discount,
            shipping,
            tax,
            total: net + shipping + tax,
            revenue: net,
        }
    }

    /// Writes one line, spoiled now and then when a bad rate is set.
    fn emit(&mut self, t: i64, line: &Line, out: &mut impl Write) -> io::Result<()> {
        let mut spoil = false;
        let mut truncate = false;
        if self.config.bad_rate > 0.0 && self.bad_rng.random_bool(self.config.bad_rate) {
            // Half broken JSON, half wrong property types; an alias has no
            // properties to get wrong.
            if matches!(line.body, Body::Alias { .. }) || self.bad_rng.random_bool(0.5) {
                truncate = true;
            } else {
                spoil = true;
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let kind = self.write_line(&mut buf, t, line, spoil);
        if truncate {
            let cut = self.bad_rng.random_range(buf.len() / 3..buf.len() - 1);
            let cut = (cut..buf.len())
                .find(|&i| buf.is_char_boundary(i))
                .unwrap_or(buf.len());
            buf.truncate(cut);
        }
        buf.push('\n');
        out.write_all(buf.as_bytes())?;
        self.buf = buf;

        let stats = &mut self.stats;
        stats.lines += 1;
        stats.bad += u64::from(spoil || truncate);
        *stats.by_kind.entry(kind).or_insert(0) += 1;
        if matches!(line.body, Body::Track(Track::OrderCompleted { .. })) {
            stats.orders += 1;
        }
        let cust = &mut self.customers[line.customer as usize];
        if !cust.seen {
            cust.seen = true;
            stats.customers += 1;
        }
        let at = DateTime::from_timestamp(t, 0);
        stats.first = stats.first.or(at);
        stats.last = at;
        Ok(())
    }

    /// Serialises a line into `buf`; returns its kind for the summary.
    fn write_line(&self, buf: &mut String, t: i64, line: &Line, spoil: bool) -> &'static str {
        let cust = &self.customers[line.customer as usize];
        let c = line.customer + 1;
        let mut o = Obj::open(buf, false);
        let kind = match &line.body {
            Body::Identify { .. } => "identify",
            Body::Alias { .. } => "alias",
            Body::Page { .. } => "page",
            Body::Track(track) => track.wire(),
        };
        match &line.body {
            Body::Identify { .. } => o.str("type", "identify"),
            Body::Alias { .. } => o.str("type", "alias"),
            Body::Page { .. } => o.str("type", "page"),
            Body::Track(_) => {
                o.str("type", "track");
                o.str("event", kind);
            }
        }
        match (&line.body, line.who) {
            (Body::Alias { device }, _) => {
                o.fmt(
                    "previousId",
                    format_args!("anon-{:016x}", cust.anon[*device as usize]),
                );
                o.fmt("userId", format_args!("u-{c}"));
            }
            (_, Who::User) => o.fmt("userId", format_args!("u-{c}")),
            (_, Who::Anon(d)) => o.fmt(
                "anonymousId",
                format_args!("anon-{:016x}", cust.anon[d as usize]),
            ),
            (_, Who::Both(d)) => {
                o.fmt("userId", format_args!("u-{c}"));
                o.fmt(
                    "anonymousId",
                    format_args!("anon-{:016x}", cust.anon[d as usize]),
                );
            }
        }
        if let Body::Page { page, .. } = &line.body {
            o.str("name", PAGES[*page as usize].0);
        }
        o.time("timestamp", t);
        o.fmt(
            "messageId",
            format_args!("m-{:x}-{}", self.config.seed, self.stats.lines + 1),
        );
        match &line.body {
            Body::Identify { first, .. } => {
                let mut tr = o.obj_spoiled("traits", spoil);
                self.traits(&mut tr, cust, c, *first, t);
                tr.close();
            }
            Body::Alias { .. } => {}
            Body::Page {
                page,
                category,
                referrer,
            } => {
                let mut p = o.obj_spoiled("properties", spoil);
                let (_, path, title) = PAGES[*page as usize];
                let cat = &CATEGORIES[*category as usize];
                if *page == 2 {
                    p.fmt("path", format_args!("/c/{}", cat.slug));
                    p.fmt("url", format_args!("https://shop.example/c/{}", cat.slug));
                    p.fmt("title", format_args!("{} | Shop", cat.name));
                    p.str("category", cat.name);
                } else {
                    p.str("path", path);
                    p.fmt("url", format_args!("https://shop.example{path}"));
                    p.str("title", title);
                }
                if let Some(r) = referrer {
                    p.str("referrer", REFERRERS[*r as usize]);
                }
                p.close();
            }
            Body::Track(track) => {
                let mut p = o.obj_spoiled("properties", spoil);
                self.properties(&mut p, track, cust, line.customer + 1);
                p.close();
            }
        }
        o.close();
        kind
    }

    fn traits(&self, o: &mut Obj<'_>, cust: &Customer, c: u32, first: bool, t: i64) {
        let zone = &ZONES[cust.zone as usize];
        let first_name = FIRST_NAMES[cust.first as usize];
        let last_name = LAST_NAMES[cust.last as usize];
        let email = format!("{first_name}.{last_name}.{c}@example.com").to_lowercase();
        o.str("email", &email);
        o.str("first_name", first_name);
        o.str("last_name", last_name);
        if let Some(n) = cust.phone {
            let modulus = 10u32.pow(zone.phone_digits);
            let width = zone.phone_digits as usize;
            o.fmt(
                "phone",
                format_args!("{}{:0width$}", zone.phone, n % modulus),
            );
        }
        o.str("timezone", zone.name);
        o.str("country", zone.country);
        o.str("locale", zone.locale);
        if first {
            o.time("created_at", t);
            if cust.consent_email != Consent::Unknown || cust.consent_sms != Consent::Unknown {
                let mut k = o.obj("consent");
                if cust.consent_email != Consent::Unknown {
                    k.bool("email", cust.consent_email == Consent::Yes);
                }
                if cust.consent_sms != Consent::Unknown {
                    k.bool("sms", cust.consent_sms == Consent::Yes);
                }
                k.close();
            }
        }
    }

    fn products(&self, o: &mut Obj<'_>, items: &[(u16, u8)]) {
        o.list("products", items, |p, _, (product, qty)| {
            self.catalogue.products[*product as usize].write(p);
            p.int("quantity", i64::from(*qty));
        });
    }

    fn order_money(&self, o: &mut Obj<'_>, items: &[(u16, u8)], coupon: Option<u8>) {
        let m = self.totals(items, coupon);
        o.str("affiliation", "Online Store");
        o.money("total", m.total);
        o.money("revenue", m.revenue);
        o.money("shipping", m.shipping);
        o.money("tax", m.tax);
        o.money("discount", m.discount);
        if let Some(k) = coupon {
            o.str("coupon", COUPONS[k as usize].0);
        }
        o.str("currency", "USD");
        self.products(o, items);
    }

    /// A track call's properties. The first one written is always declared
    /// by the event's schema, so a spoiled line is refused for its type.
    fn properties(&self, o: &mut Obj<'_>, track: &Track, cust: &Customer, c: u32) {
        let product = |o: &mut Obj<'_>, p: u16| self.catalogue.products[p as usize].write(o);
        let zone = &ZONES[cust.zone as usize];
        match track {
            Track::Searched { category, noun } => {
                let q = CATEGORIES[*category as usize].nouns[*noun as usize].to_lowercase();
                o.str("query", &q);
            }
            Track::ListViewed { category, page } => {
                let cat = &CATEGORIES[*category as usize];
                o.fmt("list_id", format_args!("{}-{}", cat.slug, page + 1));
                o.str("category", cat.name);
                let range = self.catalogue.in_category(*category as usize);
                let start = range.start + usize::from(*page) * 6;
                let shown: Vec<usize> = (start..(start + 6).min(range.end)).collect();
                o.list("products", &shown, |p, i, idx| {
                    self.catalogue.products[*idx].write(p);
                    p.int("position", i as i64 + 1);
                });
            }
            Track::Clicked {
                product: p,
                position,
            } => {
                product(o, *p);
                o.int("position", i64::from(*position));
            }
            Track::Viewed { product: p } => {
                product(o, *p);
                o.str("currency", "USD");
                o.money("value", self.catalogue.products[*p as usize].price);
            }
            Track::Added {
                product: p,
                qty,
                cart,
            }
            | Track::Removed {
                product: p,
                qty,
                cart,
            } => {
                product(o, *p);
                o.int("quantity", i64::from(*qty));
                o.fmt("cart_id", format_args!("c-{}-{cart}", c));
            }
            Track::Wishlisted { product: p } => {
                product(o, *p);
                o.str("wishlist_id", "default");
                o.str("wishlist_name", "Saved for later");
            }
            Track::CartViewed { cart, items } => {
                o.fmt("cart_id", format_args!("c-{}-{cart}", c));
                self.products(o, items);
            }
            Track::CouponApplied {
                cart,
                coupon,
                discount,
            } => {
                o.fmt("cart_id", format_args!("c-{}-{cart}", c));
                let (code, pct) = COUPONS[*coupon as usize];
                o.str("coupon_id", code);
                o.fmt("coupon_name", format_args!("{pct}% off"));
                o.money("discount", *discount);
            }
            Track::CheckoutStarted { items, coupon } => {
                let m = self.totals(items, *coupon);
                o.money("value", m.subtotal);
                o.money("revenue", m.revenue);
                o.money("shipping", m.shipping);
                o.money("tax", m.tax);
                o.money("discount", m.discount);
                if let Some(k) = coupon {
                    o.str("coupon", COUPONS[*k as usize].0);
                }
                o.str("currency", "USD");
                self.products(o, items);
            }
            Track::OrderCompleted {
                order,
                cart,
                items,
                coupon,
            } => {
                order_id(o, *order);
                o.fmt("checkout_id", format_args!("co-{}-{cart}", c));
                o.money("subtotal", self.totals(items, *coupon).subtotal);
                self.order_money(o, items, *coupon);
            }
            Track::OrderCancelled {
                order,
                items,
                coupon,
            } => {
                order_id(o, *order);
                self.order_money(o, items, *coupon);
            }
            Track::OrderRefunded { order, items } => {
                order_id(o, *order);
                let m = self.totals(items, None);
                o.money("total", m.revenue + m.tax);
                o.money("revenue", m.revenue);
                o.money("tax", m.tax);
                o.str("currency", "USD");
                self.products(o, items);
            }
            Track::OrderShipped {
                order,
                tracking,
                items,
            }
            | Track::OrderDelivered {
                order,
                tracking,
                items,
            } => {
                order_id(o, *order);
                o.str("carrier", zone.carrier);
                o.fmt("tracking_number", format_args!("TRK{tracking:016X}"));
                o.fmt(
                    "tracking_url",
                    format_args!("https://track.shop.example/TRK{tracking:016X}"),
                );
                self.products(o, items);
            }
            Track::ReturnRequested {
                order,
                items,
                reason,
            } => {
                order_id(o, *order);
                o.fmt("return_id", format_args!("r-{order}"));
                o.str("reason", RETURN_REASONS[*reason as usize]);
                self.products(o, items);
            }
            Track::Reviewed {
                product: p,
                rating,
                review,
            } => {
                product(o, *p);
                o.fmt("review_id", format_args!("rv-{review}"));
                o.str("review_body", REVIEWS[usize::from(*rating) - 1]);
                o.fmt("rating", format_args!("{rating}"));
            }
            Track::SignedUp { method } => {
                o.str("method", SIGNUP_METHODS[*method as usize]);
                o.str("type", "account");
            }
            Track::Subscribed { channel } | Track::Unsubscribed { channel } => {
                o.str("channel", channel.name());
                o.str("list", "newsletter");
            }
            Track::MessageClicked {
                channel,
                message,
                product: p,
            } => {
                o.str("channel", channel.name());
                let (m, f) = MESSAGES[*message as usize];
                o.str("message", m);
                o.str("flow", f);
                o.str("url", &self.catalogue.products[*p as usize].url);
            }
            Track::MessageBounced {
                hard,
                message,
                reason,
            } => {
                o.str("channel", "email");
                let (m, f) = MESSAGES[*message as usize];
                o.str("message", m);
                o.str("flow", f);
                o.str("kind", if *hard { "hard" } else { "soft" });
                o.str("reason", BOUNCE_REASONS[*reason as usize]);
            }
            Track::MarkedAsSpam { message } => {
                o.str("channel", "email");
                let (m, f) = MESSAGES[*message as usize];
                o.str("message", m);
                o.str("flow", f);
            }
            Track::SmsReceived { text } => {
                o.str("text", SMS_TEXTS[*text as usize]);
                if let Some(n) = cust.phone {
                    let width = zone.phone_digits as usize;
                    o.fmt(
                        "from",
                        format_args!("{}{:0width$}", zone.phone, n % 10u32.pow(zone.phone_digits)),
                    );
                }
                o.str("to", STORE_NUMBER);
            }
        }
    }
}

fn order_id(o: &mut Obj<'_>, order: u32) {
    o.fmt("order_id", format_args!("o-{:07}", 1_000_000 + order));
}

struct Totals {
    subtotal: i64,
    discount: i64,
    shipping: i64,
    tax: i64,
    total: i64,
    revenue: i64,
}

/// Pages a visit lands on: name, path, title.
const PAGES: &[(&str, &str, &str)] = &[
    ("Home", "/", "Shop | Coffee, kitchen and more"),
    ("Sale", "/sale", "Sale | Shop"),
    ("Category", "/c", "Category | Shop"),
    (
        "Journal",
        "/journal/brewing-at-home",
        "Brewing at home | Shop",
    ),
];

const REVIEWS: &[&str] = &[
    "Broke after a week.",
    "Not what I expected.",
    "Does the job.",
    "Really good, would buy again.",
    "Love it!",
];
