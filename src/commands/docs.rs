//! `nudge completions` and `nudge man`: shell completions and the man page,
//! generated from the command definitions so they cannot drift from them.

use std::io::Write;

use super::Status;

/// Arguments of `nudge completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `nudge man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write `nudge.1` and one `nudge-SUBCOMMAND.1` page per subcommand
    /// into this directory instead of printing `nudge.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Prints the completion script of `cmd` for the chosen shell.
pub fn completions(args: CompletionsArgs, cmd: &mut clap::Command) -> Status {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, cmd, "nudge", &mut out);
    write_stdout(&out)
}

/// Prints the man page of `cmd`, or writes it and its subcommands' pages
/// into a directory.
pub fn man(args: ManArgs, cmd: clap::Command) -> Status {
    match args.dir {
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                eprintln!("error: cannot render the man page: {e}");
                return Status::Failure;
            }
            write_stdout(&out)
        }
        Some(dir) => {
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(cmd, &dir))
            {
                eprintln!(
                    "error: cannot write the man pages to {}: {e}",
                    dir.display()
                );
                return Status::Failure;
            }
            Status::Ok
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Status {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Status::Ok,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            Status::Failure
        }
    }
}
