//! Helpers the workspace's tests and benchmarks share, so that every crate
//! finds the example projects, compiles bundles and sets up throwaway
//! projects the same way.
//!
//! Only what several crates need lives here; helpers that serve one crate's
//! tests stay in that crate's `tests/common`. Everything panics on failure
//! with a message naming what failed: these run inside tests, where a panic
//! is the failure report.

pub mod compile;
pub mod dirs;
pub mod examples;
pub mod process;

pub use compile::{build, build_project, example_bundle};
pub use dirs::{copy_example, copy_project, copy_tree, path_str};
pub use examples::{example_dir, example_dirs, example_events, example_names, examples_root};
pub use process::text;
