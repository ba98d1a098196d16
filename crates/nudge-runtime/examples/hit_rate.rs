//! The quality of `recommend`: hit-rate at K on a held-out part of a
//! generated history, against the store's best sellers as a baseline.
//!
//! ```sh
//! cargo run --release -p nudge-runtime --example hit_rate -- [EVENTS] [K...]
//! ```
//!
//! A browsing and ordering stream of EVENTS lines (default 400,000) from
//! `nudge-gen` (seed 1) is cut in time: the engine learns from the first
//! 80% of the lines, and each customer it knows who orders in the last
//! 20% is asked for K products at the cut (as the profile API asks, with
//! no trigger). A hit is an order whose products include one of the K.
//! The baseline asks the same of the store's K best sellers at the cut,
//! leaving out what the customer bought, as `recommend` does. Every number
//! is computed in this one run, so the ratio compares like with like.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::ingest;

/// A bundle that keeps the customers' orders as code calling `recommend` does.
const SOURCE: &str = r#"
message picks(items: list<Product>) {
  channel email
  subject "{len(items)} picks"
  body "-"
}

flow never {
  trigger order_refunded
  send picks(recommend(1))
}
"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(400_000);
    let mut ks: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if ks.is_empty() {
        ks = vec![1, 4, 10];
    }
    let mut text = Vec::new();
    nudge_gen::generate(&nudge_gen::GenConfig::new(events), &mut text).expect("a stream");
    let text = String::from_utf8(text).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() * 8 / 10;

    let bundle = nudge_test_support::build(&[("hit_rate.flow", SOURCE)]);
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    // The baseline's own view of the training part: orders per product
    // and what each id bought.
    let mut sold: BTreeMap<String, u64> = BTreeMap::new();
    let mut bought: HashMap<String, BTreeSet<String>> = HashMap::new();
    let training = std::time::Instant::now();
    for line in &lines[..cut] {
        let _ = ingest::apply_line(&mut engine, line);
        if let Some((id, products)) = order_of(line) {
            for p in &products {
                *sold.entry(p.clone()).or_default() += 1;
            }
            bought.entry(id).or_default().extend(products);
        }
        engine.sink_mut().outbox.clear();
        engine.sink_mut().records.clear();
    }
    let trained = training.elapsed();
    let learned_bytes = postcard::to_allocvec(engine.learned())
        .expect("the learned state encodes")
        .len();
    let mut best: Vec<(&String, &u64)> = sold.iter().collect();
    best.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));

    // Each known customer's first order after the cut.
    let mut next: Vec<(String, Vec<String>)> = Vec::new();
    let mut asked = BTreeSet::new();
    for line in &lines[cut..] {
        if let Some((id, products)) = order_of(line)
            && asked.insert(id.clone())
        {
            next.push((id, products));
        }
    }
    let kmax = ks.iter().copied().max().unwrap_or(1);
    let mut hits = vec![(0u64, 0u64); ks.len()];
    let mut asked_known = 0u64;
    let mut sources: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = std::time::Instant::now();
    for (id, products) in &next {
        let Some(view) = engine.profile_view_with(id, &[], Some(kmax)) else {
            continue;
        };
        asked_known += 1;
        let recs = view.recommendations.unwrap_or_default();
        let none = BTreeSet::new();
        let mine = bought.get(id).unwrap_or(&none);
        let baseline: Vec<&String> = best
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !mine.contains(*p))
            .take(kmax)
            .collect();
        for (i, &k) in ks.iter().enumerate() {
            if recs
                .iter()
                .take(k)
                .any(|r| products.contains(&r.product_id))
            {
                hits[i].0 += 1;
            }
            if baseline.iter().take(k).any(|p| products.contains(p)) {
                hits[i].1 += 1;
            }
        }
        for r in recs.iter().take(kmax) {
            *sources.entry(r.source).or_default() += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "{} lines, {} learned from ({} orders, {} products); {} customers order after the cut, {} of them known",
        lines.len(),
        cut,
        engine.learned().orders(),
        engine.learned().products(),
        next.len(),
        asked_known
    );
    println!("| K | recommend | best sellers | ratio |");
    println!("| --- | --- | --- | --- |");
    for (i, &k) in ks.iter().enumerate() {
        let rate = |h: u64| h as f64 / asked_known.max(1) as f64;
        let (r, b) = (rate(hits[i].0), rate(hits[i].1));
        let ratio = if b > 0.0 { r / b } else { f64::NAN };
        println!(
            "| {k} | {:.1}% ({}) | {:.1}% ({}) | {ratio:.2} |",
            100.0 * r,
            hits[i].0,
            100.0 * b,
            hits[i].1
        );
    }
    println!(
        "sources of the top {kmax}: {sources:?}; {:.1} µs a question",
        took.as_secs_f64() * 1e6 / asked_known.max(1) as f64
    );
    println!(
        "training part applied in {:.2} s (with the baseline's own counting); the learned state is {learned_bytes} bytes in the head",
        trained.as_secs_f64()
    );
}

/// The customer id (user, else anonymous) and product ids of an
/// `Order Completed` line.
fn order_of(line: &str) -> Option<(String, Vec<String>)> {
    if !line.contains("\"Order Completed\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let id = v["userId"].as_str().or(v["anonymousId"].as_str())?;
    let products = v["properties"]["products"]
        .as_array()?
        .iter()
        .filter_map(|p| p["product_id"].as_str().map(str::to_string))
        .collect();
    Some((id.to_string(), products))
}
