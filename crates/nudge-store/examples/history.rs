//! How much customer history a store's checkpoint holds: customers, the
//! events and sends stored in their histories, and the checkpoint's size.
//! Checkpoints keep their layout across builds, so this reads the store of
//! an earlier build too (see docs/benchmarks.md).
//!
//! `cargo run -p nudge-store --example history -- STORE`

use std::error::Error;
use std::path::PathBuf;

use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Bundles, Config, Machine};
use nudge_store::Store;

fn main() -> Result<(), Box<dyn Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: history STORE")?
        .into();
    let store = Store::open(&path)?;
    let bundle = store
        .deploy_through(i64::MAX)?
        .ok_or("the store holds no deploy")?;
    let bundle = Bundle::decode(&bundle)?;
    let bytes = store.checkpoint_bytes()?;
    if bytes.is_empty() {
        return Err("the store holds no checkpoint".into());
    }
    let arena = Bundles::new();
    let mut machine = Machine::new(&bundle, Config::default(), 0);
    machine.restore(&bytes, &bundle, &arena)?;
    let held = machine.history_held();
    let per = |n: u64| n as f64 / held.customers.max(1) as f64;
    println!("customers {}", held.customers);
    println!(
        "events {} ({:.2} per customer)",
        held.events,
        per(held.events)
    );
    println!("sends {} ({:.2} per customer)", held.sends, per(held.sends));
    println!(
        "checkpoint {} bytes ({:.0} per customer)",
        bytes.len(),
        per(bytes.len() as u64)
    );
    Ok(())
}
