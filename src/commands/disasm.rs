//! `nudge disasm`: list a bytecode bundle for people.

use std::path::PathBuf;

use nudge_compiler::bytecode::{Bundle, disassemble};

use super::Status;

/// Arguments of `nudge disasm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A bundle written by `nudge build`.
    pub file: PathBuf,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let bytes = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return Status::Failure;
        }
    };
    let bundle = match Bundle::decode(&bytes) {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Status::Failure;
        }
    };
    // Source lines are quoted when the files are still where they were built.
    let source = |path: &str| {
        nudge_compiler::lower::stdlib_text(path)
            .map(str::to_string)
            .or_else(|| std::fs::read_to_string(path).ok())
    };
    print!("{}", disassemble(&bundle, &source));
    Status::Ok
}
