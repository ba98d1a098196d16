//! The Nudge runtime: runs compiled bundles against customer calls.
//!
//! Calls come in as Segment JSON lines ([`segment`]), are checked against
//! the bundle's schemas ([`decode`]), joined into customers ([`identity`]),
//! deduplicated ([`dedupe`]) and applied by the [`engine`], which runs flow
//! code in the VM, keeps timers ([`timers`]) and decides every send. The
//! engine's state machine does no IO: it returns its effects as data, which
//! a host hands to a sink ([`driver`]).
//! [`replay`] drives the engine over a file on a virtual clock.

// The engine runs what hosts feed it for days: a call, a bundle or a
// checkpoint it cannot use is an error or a skipped item with a reason,
// never a panic. Tables read by numbers the bundle's validation or the
// engine's own bookkeeping guarantees go through a few accessors, each
// with one marked exception that says what guarantees it. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

/// Thompson sampling for splits that optimise, shared with reports.
pub use nudge_vm::bandit;
pub mod catalogue;
pub mod decode;
pub mod dedupe;
pub mod driver;
pub mod engine;
mod fast;
pub mod identity;
pub mod ingest;
pub mod millis;
pub mod output;
mod queue;
pub mod record;
pub mod replay;
pub mod segment;
pub mod sort;
pub mod stats;
pub mod timers;
pub mod window;
pub mod zone;
