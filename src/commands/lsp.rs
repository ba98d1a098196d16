//! `nudge lsp`: the language server, speaking the Language Server Protocol on stdio.

use super::Status;

/// Arguments of `nudge lsp`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Accepted for editors that pass it by default; stdio is the only transport.
    #[arg(long)]
    pub stdio: bool,
}

/// Runs the server until the editor asks it to exit.
pub fn run(_args: Args) -> Status {
    match nudge_lsp::run_stdio() {
        Ok(nudge_lsp::server::Ending::Clean) => Status::Ok,
        // `exit` without `shutdown`: the protocol asks for exit code 1.
        Ok(nudge_lsp::server::Ending::WithoutShutdown) => Status::Problems,
        Err(err) => {
            eprintln!("error: nudge lsp: {err}");
            Status::Failure
        }
    }
}
