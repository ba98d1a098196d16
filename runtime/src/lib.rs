//! The Nudge runtime. Today it holds the event side: reading Segment calls
//! (with a dead letter for every line it cannot use), joining identities into
//! customers, and dropping repeated messages. The VM that executes compiled
//! bundles builds on these.

pub mod dedupe;
pub mod identity;
pub mod segment;
