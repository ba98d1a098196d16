//! Reads the decision trace a Nudge run writes (`.nudge/trace.jsonl`) and
//! turns it into what people ask of it: the story of one customer
//! ([`explain`]) and the funnel of every flow ([`report`]).

pub mod explain;
pub mod html;
pub mod identity;
pub mod money;
pub mod report;
pub mod stats;
pub mod trace;

pub use explain::{SendState, Timeline, UnknownCustomer};
pub use identity::Identities;
pub use report::{FlowSpec, Report, Scope};
pub use trace::{Entry, OrderFacts, Trace, TraceError};
