//! The `nudge` command: a thin shell over the compiler library.

// A host meets bad input, broken files and closed pipes every day: it
// answers each with an error, never a panic. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::ColorWhen;

// Replays allocate a small value per property of every event; mimalloc
// makes those allocations markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Code-first marketing automation: check, format and run `.flow` journeys.
#[derive(Parser)]
#[command(name = "nudge", version, about, propagate_version = true)]
struct Cli {
    /// When to colour output: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value_t = ColorWhen::Auto,
        hide_possible_values = true
    )]
    color: ColorWhen,
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
    /// Set up cluster mode's stream and PostgreSQL schema.
    Cluster(commands::cluster::Args),
    /// Run a cluster's partition worker: lease partitions, run the engine, deliver.
    Worker(commands::worker::Args),
    /// Export the project's `[[alerts]]` as Prometheus alerting rules.
    Alerts(commands::alerts::Args),
    /// Run the project's `test` blocks on the virtual clock.
    Test(commands::test::Args),
    /// Show everything that happened to one customer, from the run's trace.
    Explain(commands::explain::Args),
    /// Per-flow funnel, send outcomes by reason, conversions, revenue and lift.
    Report(commands::report::Args),
    /// Turn the audience feeds into hashed upload files for Meta or Google.
    Audiences(commands::audiences::Args),
    /// Look after a durable store: compact its log of calls.
    Store(commands::store::Args),
    /// Write a realistic, deterministic stream of Segment calls.
    Gen(commands::r#gen::Args),
    /// Work on events files: sort one by event time, in bounded memory.
    Events(commands::events::Args),
    /// Run the language server on stdin and stdout (for editors).
    Lsp(commands::lsp::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::docs::CompletionsArgs),
    /// Print the man page (roff) of `nudge` and its subcommands.
    Man(commands::docs::ManArgs),
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // clap prints help and usage errors while parsing, before the flag's
    // value is known, so `--color` is read ahead for them.
    let color = commands::color_flag(&args).unwrap_or(ColorWhen::Auto);
    let matches = Cli::command()
        .color(color.clap_choice())
        .get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    commands::set_color(cli.color);
    // The server and the language server talk over sockets and pipes whose
    // peers may go away; they handle that as an error. Every other command
    // writes a report, and a reader that stops early (`| head`) should end
    // it quietly, as with other Unix tools.
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Lsp(_) | Command::Worker(_)
    ) {
        commands::default_sigpipe();
    }
    let status = match cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Fmt(args) => commands::fmt::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Disasm(args) => commands::disasm::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Cluster(args) => commands::cluster::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Alerts(args) => commands::alerts::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Audiences(args) => commands::audiences::run(args),
        Command::Store(args) => commands::store::run(args),
        Command::Gen(args) => commands::r#gen::run(args),
        Command::Events(args) => commands::events::run(args),
        Command::Lsp(args) => commands::lsp::run(args),
        Command::Completions(args) => commands::docs::completions(args, &mut Cli::command()),
        Command::Man(args) => commands::docs::man(args, Cli::command()),
    };
    ExitCode::from(status as u8)
}
