//! The product catalogue and the recommendations drawn from it.
//!
//! Products come from two places: the events themselves (the Segment
//! e-commerce spec's single-product events and the `products` arrays of
//! list, cart and order events) and a catalogue file declared in
//! `nudge.toml`, which wins where both say something and alone says what is
//! out of stock. What the events taught ([`Learned`]: the products seen and
//! which were ordered together) is engine state, saved with the engine's
//! head; the file ([`CatalogueFile`]) is configuration, read again on
//! reload.
//!
//! Recommendations ([`Learned::recommend`]) are item-to-item: products
//! ordered together with what the customer bought or is looking at, each
//! pair weighted by the cosine of the two products' order counts so that a
//! product that is in every basket does not crowd out the others. When
//! they run short, the category's best sellers fill in, then the store's,
//! then the project's own list. Everything is kept in ordered maps and
//! ties break on the product id, so the same calls give the same answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use nudge_bytecode::{Bundle, Value};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Distinct products of one order counted in pairs; a bigger basket (a
/// wholesale order) adds its popularity but not its pairs, which would
/// grow with the square of its size.
const MAX_BASKET_PAIRS: usize = 50;

/// What is known of one product.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The product's id (`product_id` in events).
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its category.
    pub category: Option<String>,
    /// Its price, exact.
    pub price: Option<Decimal>,
    /// The ISO 4217 code of its price.
    pub currency: Option<String>,
    /// Its page.
    pub url: Option<String>,
    /// Its picture.
    pub image_url: Option<String>,
    /// Whether it can be ordered; only a catalogue file says it cannot.
    pub in_stock: bool,
}

impl Product {
    /// Fills what `self` does not know from `other`.
    fn or(mut self, other: &Product) -> Product {
        fill(&mut self.name, &other.name);
        fill(&mut self.category, &other.category);
        if self.price.is_none() {
            self.price = other.price;
            self.currency = other.currency.clone();
        }
        fill(&mut self.url, &other.url);
        fill(&mut self.image_url, &other.image_url);
        self
    }
}

fn fill(mine: &mut Option<String>, other: &Option<String>) {
    if mine.is_none() {
        mine.clone_from(other);
    }
}

/// Which source a recommended product came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Ordered together with what the customer bought or is looking at.
    CoPurchase,
    /// A best seller of a category the customer bought from or is looking at.
    Category,
    /// A best seller of the store.
    Popular,
    /// The project's own list (`[catalogue] fallback`).
    Fallback,
}

impl Source {
    /// The name the trace and the profile API use.
    pub fn name(self) -> &'static str {
        match self {
            Source::CoPurchase => "co_purchase",
            Source::Category => "category",
            Source::Popular => "popular",
            Source::Fallback => "fallback",
        }
    }
}

/// One recommended product and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The product, as the catalogue knows it.
    pub product: Product,
    /// The source that served it.
    pub source: Source,
}

/// A question for [`Learned::recommend`].
#[derive(Clone, Debug, Default)]
pub struct Ask {
    /// How many products.
    pub n: usize,
    /// Products the customer is looking at (the trigger's), first in line
    /// for neighbours and categories, and never recommended.
    pub looking_at: Vec<String>,
    /// Products the customer bought, oldest first: neighbours come from
    /// them too, and they are never recommended.
    pub bought: Vec<String>,
    /// Other products never to recommend.
    pub exclude: Vec<String>,
}

/// What the events taught: the products seen and the orders' baskets.
/// Part of the engine's saved state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// Products by id, as the latest event described them.
    products: BTreeMap<String, Product>,
    /// Orders counted.
    orders: u64,
    /// Orders that held each product.
    ordered: BTreeMap<String, u64>,
    /// Orders that held both products, both ways round.
    pairs: BTreeMap<String, BTreeMap<String, u64>>,
    /// Gaps between a customer's two orders of a product, by product.
    gaps: BTreeMap<String, Gaps>,
    /// The same, by the product's category.
    category_gaps: BTreeMap<String, Gaps>,
}

/// Reorder gaps counted: how many, and their total in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gaps {
    /// How many gaps.
    pub count: u64,
    /// Their total, in milliseconds.
    pub total: i64,
}

impl Gaps {
    /// Counts one more gap.
    fn add(&mut self, gap: i64) {
        self.count += 1;
        self.total = self.total.saturating_add(gap);
    }

    /// The average gap in milliseconds, when there is one.
    pub fn mean(&self) -> Option<i64> {
        let n = i64::try_from(self.count).ok().filter(|n| *n > 0)?;
        Some(self.total / n)
    }
}

/// A customer's orders of one product, in milliseconds, oldest first.
pub fn mean_gap(times: &[i64]) -> Option<i64> {
    let gaps: Vec<i64> = times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if b > a => Some(b - a),
            _ => None,
        })
        .collect();
    let n = i64::try_from(gaps.len()).ok().filter(|n| *n > 0)?;
    Some(gaps.iter().fold(0i64, |t, g| t.saturating_add(*g)) / n)
}

/// The products of a catalogue file and the project's fallback list:
/// configuration, not state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogueFile {
    /// Products by id.
    pub products: BTreeMap<String, Product>,
    /// Product ids served when nothing else is left (`[catalogue] fallback`).
    pub fallback: Vec<String>,
}

/// Why a catalogue file could not be read: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueError {
    /// The file, as named in `nudge.toml`.
    pub file: String,
    /// The line, from 1 (0 when the file as a whole is at fault).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for CatalogueError {}

impl CatalogueFile {
    /// Reads a catalogue file's text: CSV with a header row when `file`
    /// ends in `.csv`, else JSON lines. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<CatalogueFile, CatalogueError> {
        let rows = if file.to_ascii_lowercase().ends_with(".csv") {
            csv_rows(file, text)?
        } else {
            json_rows(file, text)?
        };
        let mut products = BTreeMap::new();
        for (line, p) in rows {
            let id = p.id.clone();
            if products.insert(id.clone(), p).is_some() {
                return Err(CatalogueError {
                    file: file.into(),
                    line,
                    reason: format!("product {id:?} is listed twice"),
                });
            }
        }
        Ok(CatalogueFile {
            products,
            fallback: Vec::new(),
        })
    }
}

/// The columns (CSV) or keys (JSON) of a catalogue row, with the names
/// the Segment spec uses accepted beside the short ones.
fn column(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "id" | "product_id" => "id",
        "name" => "name",
        "category" => "category",
        "price" => "price",
        "currency" => "currency",
        "url" => "url",
        "image" | "image_url" => "image",
        "in_stock" => "in_stock",
        _ => return None,
    })
}

/// Builds a product from a row's cells by column.
fn product_of(cells: &BTreeMap<&'static str, String>) -> Result<Product, String> {
    let text = |k: &str| {
        cells
            .get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let id = text("id").ok_or("the product has no id")?;
    let price = match text("price") {
        None => None,
        Some(p) => {
            Some(Decimal::from_str_exact(&p).map_err(|_| format!("price {p:?} is not an amount"))?)
        }
    };
    if price.is_some_and(|p| p.is_sign_negative()) {
        return Err("the price is negative".into());
    }
    let currency = match text("currency") {
        None => None,
        Some(c) => {
            let code = c.to_ascii_uppercase();
            if !looks_like_currency(&code) {
                return Err(format!("currency {c:?} is not an ISO 4217 code"));
            }
            Some(code)
        }
    };
    if price.is_some() && currency.is_none() {
        return Err("a price needs its currency".into());
    }
    let in_stock = match text("in_stock").as_deref().map(str::to_ascii_lowercase) {
        None => true,
        Some(s) => match s.as_str() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => return Err(format!("in_stock {s:?} is not true or false")),
        },
    };
    Ok(Product {
        id,
        name: text("name"),
        category: text("category"),
        price,
        currency,
        url: text("url"),
        image_url: text("image"),
        in_stock,
    })
}

/// Whether `code` reads as an ISO 4217 code: three ASCII capitals.
fn looks_like_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn csv_rows(file: &str, text: &str) -> Result<Vec<(usize, Product)>, CatalogueError> {
    let err = |line: usize, reason: String| CatalogueError {
        file: file.into(),
        line,
        reason,
    };
    let records = csv_records(text).map_err(|(line, reason)| err(line, reason))?;
    let mut it = records.into_iter();
    let Some((hline, header)) = it.next() else {
        return Err(err(0, "the file is empty: it needs a header row".into()));
    };
    let mut columns = Vec::with_capacity(header.len());
    for h in &header {
        let c = column(h).ok_or_else(|| {
            err(
                hline,
                format!(
                    "unknown column {h:?} (columns: id, name, category, price, currency, url, image, in_stock)"
                ),
            )
        })?;
        columns.push(c);
    }
    if !columns.contains(&"id") {
        return Err(err(hline, "the header has no id column".into()));
    }
    let mut out = Vec::new();
    for (line, cells) in it {
        if cells.len() == 1 && cells.first().is_some_and(|c| c.trim().is_empty()) {
            continue;
        }
        if cells.len() != columns.len() {
            return Err(err(
                line,
                format!(
                    "{} cells where the header has {}",
                    cells.len(),
                    columns.len()
                ),
            ));
        }
        let row = columns.iter().copied().zip(cells).collect();
        out.push((line, product_of(&row).map_err(|r| err(line, r))?));
    }
    Ok(out)
}

/// RFC 4180 records with the line each starts on: cells split on commas,
/// quoted cells may hold commas, doubled quotes and line breaks.
#[allow(clippy::type_complexity)]
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let start = line;
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err((start, "a quoted cell is not closed".into()));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        cell.push(c);
                    }
                    _ => cell.push(c),
                }
                continue;
            }
            match c {
                '"' if cell.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err((line, "a quote inside an unquoted cell".into())),
                ',' => {
                    cells.push(std::mem::take(&mut cell));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                _ => cell.push(c),
            }
        }
        cells.push(cell);
        out.push((start, cells));
    }
    Ok(out)
}

fn json_rows(file: &str, text: &str) -> Result<Vec<(usize, Product)>, CatalogueError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |reason: String| CatalogueError {
            file: file.into(),
            line,
            reason,
        };
        if raw.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| err(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(err("a row must be a JSON object".into()));
        };
        let mut cells = BTreeMap::new();
        for (k, v) in map {
            let Some(c) = column(&k) else {
                return Err(err(format!(
                    "unknown key {k:?} (keys: id, name, category, price, currency, url, image, in_stock)"
                )));
            };
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                // A number keeps the digits it was written with: prices stay exact.
                serde_json::Value::Number(n) if c == "price" || c == "id" => n.to_string(),
                serde_json::Value::Bool(b) if c == "in_stock" => b.to_string(),
                other => return Err(err(format!("{k} cannot be {other}"))),
            };
            cells.insert(c, text);
        }
        out.push((line, product_of(&cells).map_err(err)?));
    }
    Ok(out)
}

/// The product ids an event names: its `product_id` and those of its
/// `products`, in order, without repeats.
pub fn product_ids(bundle: &Bundle, event: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for_each_product(bundle, event, &mut |p| {
        if !out.iter().any(|o| o == p.id) {
            out.push(p.id.to_string());
        }
    });
    out
}

/// A product as one event describes it, borrowed from the event.
struct Described<'a> {
    id: &'a str,
    name: Option<&'a str>,
    category: Option<&'a str>,
    price: Option<Decimal>,
    currency: Option<&'a str>,
    url: Option<&'a str>,
    image_url: Option<&'a str>,
}

/// Calls `f` with each product an event describes (its own `product_id`,
/// then its `products`), read by field name so that any event with the
/// spec's product fields counts, the project's own too.
fn for_each_product<'a>(bundle: &Bundle, event: &'a Value, f: &mut dyn FnMut(Described<'a>)) {
    let Value::Record(r) = event else {
        return;
    };
    let Some(schema) = bundle.schemas.get(r.schema as usize) else {
        return;
    };
    let mut currency = None;
    let mut products = None;
    for (field, v) in schema.fields.iter().zip(&r.fields) {
        match (field.name.as_str(), v) {
            ("currency", Value::Str(c)) if !c.is_empty() => currency = Some(&**c),
            ("products", Value::List(items)) => products = Some(items),
            _ => {}
        }
    }
    if let Some(p) = described(bundle, event, currency) {
        f(p);
    }
    for item in products.into_iter().flat_map(|items| items.iter()) {
        if let Some(p) = described(bundle, item, currency) {
            f(p);
        }
    }
}

/// The product a record with a `product_id` field describes.
fn described<'a>(
    bundle: &Bundle,
    v: &'a Value,
    currency: Option<&'a str>,
) -> Option<Described<'a>> {
    let Value::Record(r) = v else {
        return None;
    };
    let schema = bundle.schemas.get(r.schema as usize)?;
    let mut out = Described {
        id: "",
        name: None,
        category: None,
        price: None,
        currency: None,
        url: None,
        image_url: None,
    };
    for (field, v) in schema.fields.iter().zip(&r.fields) {
        let text = match v {
            Value::Str(s) if !s.is_empty() => Some(&**s),
            _ => None,
        };
        match field.name.as_str() {
            "product_id" => out.id = text.unwrap_or_default(),
            "name" => out.name = text,
            "category" => out.category = text,
            "url" => out.url = text,
            "image_url" => out.image_url = text,
            // The spec's default price is zero: a product sent without one is not free.
            "price" => match v {
                Value::Money(m) if !m.is_zero() => out.price = Some(*m),
                _ => {}
            },
            _ => {}
        }
    }
    if out.id.is_empty() {
        return None;
    }
    out.currency = out.price.and(currency);
    Some(out)
}

/// Writes `new` over `old` when it says something different.
fn update(old: &mut Option<String>, new: Option<&str>) {
    if let Some(n) = new
        && old.as_deref() != Some(n)
    {
        *old = Some(n.to_string());
    }
}

impl Learned {
    /// Learns from one event: the products it describes, and, for an
    /// order (`Order Completed`), its basket.
    pub fn learn(&mut self, bundle: &Bundle, event: &Value) {
        let mut basket: BTreeSet<&str> = BTreeSet::new();
        let products = &mut self.products;
        for_each_product(bundle, event, &mut |p| {
            basket.insert(p.id);
            if !products.contains_key(p.id) {
                products.insert(
                    p.id.to_string(),
                    Product {
                        id: p.id.to_string(),
                        in_stock: true,
                        ..Product::default()
                    },
                );
            }
            // Just made when missing; the latest event wins where it says something.
            if let Some(known) = products.get_mut(p.id) {
                update(&mut known.name, p.name);
                update(&mut known.category, p.category);
                if let Some(price) = p.price {
                    known.price = Some(price);
                    known.currency = p.currency.map(str::to_string);
                }
                update(&mut known.url, p.url);
                update(&mut known.image_url, p.image_url);
            }
        });
        let is_order = match event {
            Value::Record(r) => bundle
                .schemas
                .get(r.schema as usize)
                .is_some_and(|s| s.wire.as_deref() == Some("Order Completed")),
            _ => false,
        };
        if basket.is_empty() || !is_order {
            return;
        }
        self.orders += 1;
        for id in &basket {
            *self.ordered.entry((*id).to_string()).or_default() += 1;
        }
        if basket.len() > MAX_BASKET_PAIRS {
            return;
        }
        for a in &basket {
            let near = self.pairs.entry((*a).to_string()).or_default();
            for b in &basket {
                if a != b {
                    *near.entry((*b).to_string()).or_default() += 1;
                }
            }
        }
    }

    /// Counts reorder gaps of one order: for each product, how long
    /// since the customer last ordered it (milliseconds, positive).
    pub fn learn_gaps(&mut self, gaps: &[(String, i64)]) {
        for (id, gap) in gaps {
            if *gap <= 0 {
                continue;
            }
            self.gaps.entry(id.clone()).or_default().add(*gap);
            if let Some(c) = self.products.get(id).and_then(|p| p.category.clone()) {
                self.category_gaps.entry(c).or_default().add(*gap);
            }
        }
    }

    /// When a customer whose orders of product `id` came at `times`
    /// (milliseconds, oldest first) will likely order it again: the last
    /// plus their own mean gap, else the product's, else its category's.
    pub fn next_order(&self, file: &CatalogueFile, id: &str, times: &[i64]) -> Option<i64> {
        let last = *times.last()?;
        let gap = mean_gap(times)
            .or_else(|| self.gaps.get(id).and_then(Gaps::mean))
            .or_else(|| {
                let category = self.product(file, id)?.category?;
                self.category_gaps.get(&category).and_then(Gaps::mean)
            })?;
        last.checked_add(gap)
    }

    /// How many orders were counted.
    pub fn orders(&self) -> u64 {
        self.orders
    }

    /// How many products are known from events.
    pub fn products(&self) -> usize {
        self.products.len()
    }

    /// A product as the file (first) and the events describe it, or `None`
    /// for an id neither knows.
    pub fn product(&self, file: &CatalogueFile, id: &str) -> Option<Product> {
        match (file.products.get(id), self.products.get(id)) {
            (Some(f), Some(l)) => Some(f.clone().or(l)),
            (Some(f), None) => Some(f.clone()),
            (None, Some(l)) => Some(l.clone()),
            (None, None) => None,
        }
    }

    /// `n` products for a customer, with the source of each, as the
    /// module's documentation describes: neighbours, then the category's
    /// best sellers, then the store's, then the project's list. Never one
    /// bought, looked at, excluded or out of stock, nor one twice.
    pub fn recommend(&self, file: &CatalogueFile, ask: &Ask) -> Vec<Pick> {
        let mut out: Vec<Pick> = Vec::new();
        if ask.n == 0 {
            return out;
        }
        let mut banned: BTreeSet<String> = ask
            .looking_at
            .iter()
            .chain(&ask.bought)
            .chain(&ask.exclude)
            .cloned()
            .collect();
        let mut take = |id: &str, source: Source, out: &mut Vec<Pick>| -> bool {
            if out.len() >= ask.n || banned.contains(id) {
                return out.len() >= ask.n;
            }
            let product = match self.product(file, id) {
                Some(p) => p,
                // The project's own list may name a product no event has shown.
                None if source == Source::Fallback => Product {
                    id: id.to_string(),
                    in_stock: true,
                    ..Product::default()
                },
                None => return false,
            };
            if !product.in_stock {
                return false;
            }
            banned.insert(id.to_string());
            out.push(Pick { product, source });
            out.len() >= ask.n
        };
        // The seeds: what the customer looks at first, then what they
        // bought, most recent first.
        let mut seeds: Vec<&str> = Vec::new();
        for s in ask.looking_at.iter().chain(ask.bought.iter().rev()) {
            if !seeds.contains(&s.as_str()) {
                seeds.push(s);
            }
        }
        // Neighbours, each pair counted against both products' popularity
        // (the cosine of their order vectors).
        let mut score: BTreeMap<&str, f64> = BTreeMap::new();
        for s in &seeds {
            let Some(near) = self.pairs.get(*s) else {
                continue;
            };
            let ns = self.count(s) as f64;
            for (p, &both) in near {
                let np = self.count(p) as f64;
                *score.entry(p.as_str()).or_default() += both as f64 / (ns * np).sqrt().max(1.0);
            }
        }
        let mut ranked: Vec<(&str, f64)> = score.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.count(b.0).cmp(&self.count(a.0)))
                .then_with(|| a.0.cmp(b.0))
        });
        for (id, _) in ranked {
            if take(id, Source::CoPurchase, &mut out) {
                return out;
            }
        }
        // Best sellers, store-wide and by category.
        let mut sellers: Vec<(&str, u64)> =
            self.ordered.iter().map(|(p, &n)| (p.as_str(), n)).collect();
        sellers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut categories: Vec<String> = Vec::new();
        for s in &seeds {
            if let Some(c) = self.product(file, s).and_then(|p| p.category)
                && !categories.contains(&c)
            {
                categories.push(c);
            }
        }
        for c in &categories {
            for (id, _) in &sellers {
                let same = self
                    .product(file, id)
                    .is_some_and(|p| p.category.as_deref() == Some(c.as_str()));
                if same && take(id, Source::Category, &mut out) {
                    return out;
                }
            }
        }
        for (id, _) in &sellers {
            if take(id, Source::Popular, &mut out) {
                return out;
            }
        }
        for id in &file.fallback {
            if take(id, Source::Fallback, &mut out) {
                return out;
            }
        }
        out
    }

    /// Orders that held product `id`.
    fn count(&self, id: &str) -> u64 {
        self.ordered.get(id).copied().unwrap_or(0)
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "co_purchase" => Source::CoPurchase,
            "category" => Source::Category,
            "popular" => Source::Popular,
            "fallback" => Source::Fallback,
            other => return Err(format!("unknown source {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_quotes_and_reports_lines() {
        let text = "id,name,category,price,currency,in_stock\n\
                    p1,\"Mug, large\",Kitchen,12.50,usd,true\n\
                    p2,Kettle,Kitchen,,,no\n";
        let f = CatalogueFile::parse("c.csv", text).unwrap();
        let p1 = &f.products["p1"];
        assert_eq!(p1.name.as_deref(), Some("Mug, large"));
        assert_eq!(p1.price, Some(Decimal::new(1250, 2)));
        assert_eq!(p1.currency.as_deref(), Some("USD"));
        assert!(!f.products["p2"].in_stock);

        let bad = "id,price,currency\np1,12.5,USD\np2,twelve,USD\n";
        let e = CatalogueFile::parse("c.csv", bad).unwrap_err();
        assert_eq!(e.to_string(), "c.csv:3: price \"twelve\" is not an amount");
        let e = CatalogueFile::parse("c.csv", "id,colour\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.csv:1: unknown column \"colour\""),
            "{e}"
        );
        let e = CatalogueFile::parse("c.csv", "id,price\np1,3\n").unwrap_err();
        assert_eq!(e.to_string(), "c.csv:2: a price needs its currency");
    }

    #[test]
    fn json_lines_keep_prices_exact() {
        let text = "{\"id\": \"p1\", \"price\": 19.99, \"currency\": \"EUR\", \"in_stock\": false}\n\n\
                    {\"product_id\": 42, \"name\": \"Tea\"}\n";
        let f = CatalogueFile::parse("c.jsonl", text).unwrap();
        assert_eq!(f.products["p1"].price, Some(Decimal::new(1999, 2)));
        assert!(!f.products["p1"].in_stock);
        assert_eq!(f.products["42"].name.as_deref(), Some("Tea"));
        let e = CatalogueFile::parse("c.jsonl", "{\"id\": \"a\"}\n{\"id\": \"a\"}\n").unwrap_err();
        assert_eq!(e.to_string(), "c.jsonl:2: product \"a\" is listed twice");
        let e = CatalogueFile::parse("c.jsonl", "[1]\n").unwrap_err();
        assert_eq!(e.to_string(), "c.jsonl:1: a row must be a JSON object");
    }

    fn learned(baskets: &[&[&str]]) -> Learned {
        let mut l = Learned::default();
        for basket in baskets {
            l.orders += 1;
            for a in *basket {
                *l.ordered.entry(a.to_string()).or_default() += 1;
                l.products.entry(a.to_string()).or_insert_with(|| Product {
                    id: a.to_string(),
                    category: Some(if a.starts_with('t') { "tea" } else { "coffee" }.into()),
                    in_stock: true,
                    ..Product::default()
                });
                for b in *basket {
                    if a != b {
                        *l.pairs
                            .entry(a.to_string())
                            .or_default()
                            .entry(b.to_string())
                            .or_default() += 1;
                    }
                }
            }
        }
        l
    }

    fn ids(picks: &[Pick]) -> Vec<(&str, &str)> {
        picks
            .iter()
            .map(|p| (p.product.id.as_str(), p.source.name()))
            .collect()
    }

    #[test]
    fn neighbours_then_category_then_popular_then_the_list() {
        let l = learned(&[
            &["c1", "c2"],
            &["c1", "c2"],
            &["c1", "c3"],
            &["c4"],
            &["c4"],
            &["c4"],
            &["t1"],
        ]);
        let file = CatalogueFile {
            fallback: vec!["x9".into()],
            ..CatalogueFile::default()
        };
        let ask = Ask {
            n: 6,
            bought: vec!["c1".into()],
            ..Ask::default()
        };
        assert_eq!(
            ids(&l.recommend(&file, &ask)),
            [
                ("c2", "co_purchase"),
                ("c3", "co_purchase"),
                ("c4", "category"),
                ("t1", "popular"),
                ("x9", "fallback"),
            ]
        );
        // Out of stock and excluded products are skipped.
        let mut file = file;
        file.products.insert(
            "c2".into(),
            Product {
                id: "c2".into(),
                in_stock: false,
                ..Product::default()
            },
        );
        let ask = Ask {
            n: 2,
            bought: vec!["c1".into()],
            exclude: vec!["c3".into()],
            ..Ask::default()
        };
        assert_eq!(
            ids(&l.recommend(&file, &ask)),
            [("c4", "category"), ("t1", "popular")]
        );
    }

    #[test]
    fn a_best_seller_everywhere_does_not_crowd_out_a_true_neighbour() {
        // `pop` is in every basket; `t2` goes only with `t1`.
        let l = learned(&[
            &["t1", "t2", "pop"],
            &["t1", "t2", "pop"],
            &["t1", "pop"],
            &["a", "pop"],
            &["b", "pop"],
            &["c", "pop"],
            &["d", "pop"],
        ]);
        let ask = Ask {
            n: 1,
            looking_at: vec!["t1".into()],
            ..Ask::default()
        };
        assert_eq!(
            ids(&l.recommend(&CatalogueFile::default(), &ask)),
            [("t2", "co_purchase")]
        );
    }
}
