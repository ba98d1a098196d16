//! `nudge audiences export`: the audience feeds of a run as the hashed
//! customer-list files Meta and Google take in their upload screens.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nudge_channels::{AudienceChange, PhoneRules, Platform, UploadLists, write_upload_csv};
use nudge_runtime::record::Membership;

use super::Status;

/// Arguments of `nudge audiences`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with the audience feeds.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Write each audience's net additions and removals as upload files.
    Export(ExportArgs),
}

/// Arguments of `nudge audiences export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The project whose `.nudge/audiences` feeds to read; the current directory by default.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// The platform: `meta` (Custom Audiences) or `google` (Customer Match).
    #[arg(long, value_name = "PLATFORM")]
    pub format: String,
    /// The folder to write to; `PATH/.nudge/audiences/upload` by default.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The country calling code of phone numbers written without one (such
    /// as 49); `[channels.audience] phone_country_code` by default.
    #[arg(long, value_name = "CODE")]
    pub phone_country_code: Option<String>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    match args.action {
        Action::Export(a) => export(a),
    }
}

fn export(args: ExportArgs) -> Status {
    let Some(platform) = Platform::from_name(&args.format) else {
        eprintln!(
            "error: --format {:?}: expected `meta` or `google`",
            args.format
        );
        return Status::Failure;
    };
    let root = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let code = match args.phone_country_code.clone() {
        Some(c) => Some(c),
        None => match nudge_host::config::Config::load(&root) {
            Ok(c) => c
                .channels
                .get("audience")
                .and_then(|s| s.phone_country_code.clone()),
            Err(e) => {
                eprint!("{}", e.render(super::use_color(&std::io::stderr())));
                return Status::Failure;
            }
        },
    };
    let rules = PhoneRules {
        default_calling_code: code,
    };
    if let Err(e) = rules.check() {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    let feeds = root.join(".nudge").join("audiences");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&feeds) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", feeds.display());
            eprintln!("help: `nudge run` or `nudge serve` writes the audience feeds there");
            return Status::Failure;
        }
    };
    files.sort();
    let out = args.out.unwrap_or_else(|| feeds.join("upload"));
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        return Status::Failure;
    }
    let mut status = Status::Ok;
    for file in files {
        let changes = match read_feed(&file) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                status = Status::Failure;
                continue;
            }
        };
        let Some(audience) = changes.first().map(|c| c.audience.clone()) else {
            continue;
        };
        let lists = UploadLists::from_changes(platform, &rules, &changes);
        let stem = file
            .file_stem()
            .map_or_else(|| audience.clone(), |s| s.to_string_lossy().into_owned());
        for (kind, members) in [("add", &lists.add), ("remove", &lists.remove)] {
            let path = out.join(format!("{stem}.{}.{kind}.csv", platform.name()));
            if let Err(e) = write_csv(&path, platform, members) {
                eprintln!("error: cannot write {}: {e}", path.display());
                status = Status::Failure;
            }
        }
        println!(
            "{audience}: {} to add, {} to remove, {} unmatched",
            lists.add.len(),
            lists.remove.len(),
            lists.unmatched.len()
        );
        for (customer, why) in &lists.unmatched {
            eprintln!("  unmatched {customer}: {why}");
        }
    }
    println!("upload files: {}", out.display());
    status
}

/// The changes of one audience feed, in order.
fn read_feed(path: &Path) -> Result<Vec<AudienceChange>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut changes = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let m: Membership = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not an audience change: {e}", path.display(), i + 1))?;
        changes.push(m.to_change());
    }
    Ok(changes)
}

fn write_csv(
    path: &Path,
    platform: Platform,
    members: &[nudge_channels::MatchKeys],
) -> std::io::Result<()> {
    let mut f = BufWriter::new(std::fs::File::create(path)?);
    write_upload_csv(platform, members, &mut f)?;
    f.flush()
}
