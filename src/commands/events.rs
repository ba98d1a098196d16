//! `nudge events sort`: an events file sorted by event time, in bounded
//! memory, for a file too far out of order for the reorder window of
//! `nudge run`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use nudge_runtime::sort::{self, Summary};

use super::Status;

/// Arguments of `nudge events`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the events.
    #[command(subcommand)]
    pub action: Action,
}

/// The actions of `nudge events`.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Sort Segment JSON lines by event time (equal times keep file order),
    /// spilling sorted runs to temporary files when they exceed --memory.
    Sort(SortArgs),
}

/// Arguments of `nudge events sort`.
#[derive(clap::Args, Debug)]
pub struct SortArgs {
    /// The events file (Segment JSON lines); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Where the sorted lines go; standard output by default (or `-`). It
    /// may be the input itself: it is replaced once the sort is complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Memory for lines held before a sorted run is written to disk (the
    /// merge's read buffers take at most as much again): bytes, or with K,
    /// M, G (KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub memory: usize,
    /// Where sorted runs are written while sorting (a directory of their
    /// own, removed at the end); the output's directory by default, the
    /// current directory when writing to standard output.
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let Action::Sort(args) = args.action;
    sort_command(&args)
}

fn sort_command(args: &SortArgs) -> Status {
    let output = args.output.as_deref().filter(|p| !is_stdio(p));
    let dir = args.temp_dir.clone().unwrap_or_else(|| {
        output
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let options = sort::Options {
        budget: args.memory,
        dir,
    };
    let shown = if is_stdio(&args.input) {
        "standard input".to_string()
    } else {
        args.input.display().to_string()
    };
    let sorted = if is_stdio(&args.input) {
        sort::sort(io::stdin().lock(), &options)
    } else {
        match File::open(&args.input) {
            Ok(f) => sort::sort(BufReader::with_capacity(1 << 20, f), &options),
            Err(e) => {
                eprintln!("error: cannot read events from {shown}: {e}");
                return Status::Failure;
            }
        }
    };
    let sorted = match sorted {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot sort events from {shown}: {e}");
            return Status::Failure;
        }
    };
    let written = match output {
        None => sorted.write_to(&mut BufWriter::with_capacity(1 << 20, io::stdout().lock())),
        Some(path) => write_replacing(path, sorted),
    };
    match written {
        Ok(summary) => {
            eprintln!("{}", describe(&summary, args.memory));
            Status::Ok
        }
        // A closed pipe (`nudge events sort ... | head`) is the reader's choice.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Status::Ok,
        Err(e) => {
            let to = output.map_or("standard output".to_string(), |p| p.display().to_string());
            eprintln!("error: cannot write sorted events to {to}: {e}");
            Status::Failure
        }
    }
}

/// True for `-`, standard input or output.
fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes the sorted lines to a file beside `path`, then moves it over
/// `path`: a failed sort leaves no half-written output, and the input
/// may be the output.
fn write_replacing(path: &Path, sorted: sort::Sorted) -> io::Result<Summary> {
    let name = path
        .file_name()
        .map_or_else(|| "events".into(), |n| n.to_string_lossy().into_owned());
    let partial = path.with_file_name(format!(".{name}.sorting-{}", std::process::id()));
    let written = (|| {
        let file = File::create(&partial)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let summary = sorted.write_to(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)?;
        Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// The summary line on standard error.
fn describe(s: &Summary, budget: usize) -> String {
    let mut text = format!("sorted {} lines by time", s.lines);
    if s.untimed > 0 {
        text.push_str(&format!(
            "; {} without a readable time kept after the lines before them (a replay refuses them)",
            s.untimed
        ));
    }
    if s.blank > 0 {
        text.push_str(&format!("; {} blank lines dropped", s.blank));
    }
    if s.runs > 0 {
        text.push_str(&format!(
            "; {} runs of at most {} spilled to disk ({} bytes written and read back)",
            s.runs,
            show_size(budget),
            s.spilled
        ));
    }
    text
}

/// A size as the `--memory` flags take it.
pub(super) fn show_size(bytes: usize) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Reads a size: bytes, or a whole number with K, M or G (powers of 1,024;
/// `KiB`, `MB` and the like are read the same).
pub(super) fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{text:?} is not a size: a number of bytes, or with K, M or G such as 64M"
            ));
        }
    };
    let n: usize = number.parse().map_err(|_| {
        format!("{text:?} is not a size: a number of bytes, or with K, M or G such as 64M")
    })?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("the size must be more than 0".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_in_powers_of_1024() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512 KB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1.5G").unwrap_err().contains("not a size"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(show_size(64 << 20), "64M");
        assert_eq!(show_size(1000), "1000 bytes");
    }
}
