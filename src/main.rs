//! The `nudge` command: a thin shell over the compiler library.

mod commands;
mod config;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Replays allocate a small value per property of every event; mimalloc
// makes those allocations markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Code-first marketing automation: check, format and run `.flow` journeys.
#[derive(Parser)]
#[command(name = "nudge", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and type-check a project; report problems.
    Check(commands::check::Args),
    /// Rewrite `.flow` files in the canonical layout.
    Fmt(commands::fmt::Args),
    /// Compile a project to a versioned bytecode bundle.
    Build(commands::build::Args),
    /// List a bytecode bundle with its source lines.
    Disasm(commands::disasm::Args),
    /// Replay recorded events through a project on a virtual clock.
    Run(commands::run::Args),
    /// Ingest Segment calls over HTTP (or stdin) into the durable engine, on the wall clock.
    Serve(commands::serve::Args),
    /// Run the project's `test` blocks on the virtual clock.
    Test(commands::test::Args),
    /// Show everything that happened to one customer, from the run's trace.
    Explain(commands::explain::Args),
    /// Per-flow funnel, send outcomes by reason, conversions, revenue and lift.
    Report(commands::report::Args),
    /// Write a realistic, deterministic stream of Segment calls.
    Gen(commands::r#gen::Args),
    /// Run the language server on stdin and stdout (for editors).
    Lsp(commands::lsp::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Fmt(args) => commands::fmt::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Disasm(args) => commands::disasm::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Gen(args) => commands::r#gen::run(args),
        Command::Lsp(args) => commands::lsp::run(args),
    };
    ExitCode::from(status as u8)
}
