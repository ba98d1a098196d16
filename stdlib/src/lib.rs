//! The Nudge standard library.
