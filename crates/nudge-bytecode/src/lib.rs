//! The Nudge bytecode bundle: what `nudge build` writes and the runtime runs.
//!
//! A [`Bundle`] holds a whole project in executable form: the schemas of
//! events, records and the profile, the constants and code of every top-level
//! `let`, segment, message and flow, each flow's header rules as data, the
//! policy, and a source position for every instruction. The runtime needs
//! nothing else: not the sources, not the compiler.
//!
//! Code is for a stack machine. Each flow, message, let and segment is a
//! [`Unit`]: a constant pool and a list of [`Block`]s. Block 0 of a flow holds
//! its steps; predicates, lambdas and the `on exit` steps are further blocks.
//! Jumps stay inside a block, so a sleeping instance's place is
//! `(flow, block, instruction)` plus its first [`Flow::locals`] local slots.
//!
//! The layout and every instruction are described in `docs/bytecode.md`.

mod bundle;
mod disasm;
mod escape;
mod evolve;
mod instr;
mod refs;
mod retention;
mod value;
mod wire;

pub use bundle::*;
pub use disasm::disassemble;
pub use escape::{Escape, LINK_NAMES, PREFERENCES_URL_MARK, UNSUBSCRIBE_URL_MARK};
pub use evolve::{Conflict, GONE, GONE_FIELD, Layout, Rebased, SchemaDiff, type_text};
pub use instr::Instr;
pub use retention::{Readers, Retention, constant_windows};
pub use value::{
    Record, Type, Value, civil_from_days, format_duration, format_duration_ms, format_instant,
    format_instant_ms, format_money, format_money_in,
};
pub use wire::{DecodeError, FORMAT_VERSION, MAGIC};
