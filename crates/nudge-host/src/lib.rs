//! The host of the Nudge engine: what stands between the engine, a state
//! machine with no IO, and the world. It owns the store, the clock, the
//! delivery of sends through the channel plugins and the output files
//! (trace, audience feeds, dead letters), and is shared by `nudge run` and
//! `nudge serve`, which only parse their arguments and print.

// A panic in the host loses a batch that was on its way to disk or to a
// provider: every fallible path returns an error instead. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod alerts;
pub mod breaker;
pub mod config;
pub mod dead;
pub mod durable;
pub mod feeds;
pub mod live;
pub mod metrics;
pub mod retry;
pub mod run;
pub mod setup;
pub mod watch;
