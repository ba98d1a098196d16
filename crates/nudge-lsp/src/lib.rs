//! The Nudge language server.
//!
//! The protocol-independent core works on byte offsets and plain data:
//! [`world`] holds the projects, the open documents and their analyses, and
//! one module per feature ([`completion`], [`hover`], [`navigate`],
//! [`outline`], [`semantic`], [`actions`], [`inlay`]) answers questions about
//! a file of an analysed project ([`runner`] runs a `test` block for the
//! code lens). [`server`] is the thin shell that speaks the Language Server
//! Protocol and converts UTF-16 positions at the boundary: its message loop
//! applies edits and analyses, and hands requests to worker threads that
//! answer them from shared analyses ([`answer`]), stopping when told to
//! ([`cancel`]).

pub mod actions;
pub mod answer;
pub mod cancel;
pub mod completion;
pub mod hover;
pub mod inlay;
pub mod lines;
pub mod lookup;
pub mod navigate;
pub mod outline;
pub mod runner;
pub mod semantic;
pub mod server;
pub mod signature;
pub mod structure;
pub mod transport;
pub mod uri;
pub mod world;

pub use server::{run, run_stdio};
pub use world::{Snapshot, World};
