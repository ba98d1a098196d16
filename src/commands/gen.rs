//! `nudge gen`: write a realistic, deterministic stream of Segment calls for
//! benchmarks and tests.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use nudge_gen::{
    GenConfig, PURCHASE_DAYS, PurchaseConfig, default_customers, default_start, parse_start,
    purchase_customers,
};

use super::Status;

/// Arguments of `nudge gen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many lines to write.
    #[arg(long, value_name = "N")]
    pub events: u64,
    /// What the stream looks like: `sessions` (browsing, carts, orders and
    /// messaging feedback, about 670 bytes a line) or `purchases` (an order
    /// export: an identify and a few orders per customer over eighteen
    /// months, about 200 bytes a line).
    #[arg(long, value_enum, default_value_t = Shape::Sessions)]
    pub shape: Shape,
    /// How many shoppers; one per 40 events by default (one per 3 for `purchases`).
    #[arg(long, value_name = "N")]
    pub customers: Option<u32>,
    /// Seeds every random choice: the same options give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// When the stream begins: RFC 3339 or a date; 2026-01-05T00:00:00Z by default.
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// About how many days the stream spans; 30 by default (548 for `purchases`).
    #[arg(long, value_name = "D")]
    pub days: Option<u32>,
    /// The fraction of lines (0 to 1) written malformed on purpose, for dead-letter tests.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub bad_rate: f64,
    /// Where to write the lines; standard output by default.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The kinds of stream `nudge gen` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Browsing sessions of a shop's visitors.
    Sessions,
    /// A store's order history.
    Purchases,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let start = match args.start.as_deref().map(parse_start).transpose() {
        Ok(t) => t.unwrap_or_else(default_start),
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let config = match args.shape {
        Shape::Sessions => Config::Sessions(GenConfig {
            seed: args.seed,
            customers: args
                .customers
                .unwrap_or_else(|| default_customers(args.events)),
            events: args.events,
            start,
            days: args.days.unwrap_or(30),
            bad_rate: args.bad_rate,
        }),
        Shape::Purchases if args.bad_rate != 0.0 => {
            eprintln!("error: --bad-rate applies to --shape sessions only");
            return Status::Failure;
        }
        Shape::Purchases => Config::Purchases(PurchaseConfig {
            seed: args.seed,
            customers: args
                .customers
                .unwrap_or_else(|| purchase_customers(args.events)),
            events: args.events,
            start,
            days: args.days.unwrap_or(PURCHASE_DAYS),
        }),
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    let result = match &args.output {
        Some(path) => match File::create(path) {
            Ok(mut file) => config.write(&mut file),
            Err(e) => {
                eprintln!("error: cannot create {}: {e}", path.display());
                return Status::Failure;
            }
        },
        None => config.write(&mut io::stdout().lock()),
    };
    match result {
        Ok(stats) => {
            let mut err = io::stderr().lock();
            let _ = write!(err, "{}", stats.table());
            Status::Ok
        }
        // A closed pipe (`nudge gen ... | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Status::Ok,
        Err(e) => {
            let to = args
                .output
                .as_ref()
                .map_or("standard output".to_string(), |p| p.display().to_string());
            eprintln!("error: cannot write to {to}: {e}");
            Status::Failure
        }
    }
}

/// The settings of one kind of stream.
enum Config {
    Sessions(GenConfig),
    Purchases(PurchaseConfig),
}

impl Config {
    fn validate(&self) -> Result<(), nudge_gen::ConfigError> {
        match self {
            Config::Sessions(c) => c.validate(),
            Config::Purchases(c) => c.validate(),
        }
    }

    fn write(&self, out: &mut impl Write) -> io::Result<nudge_gen::GenStats> {
        match self {
            Config::Sessions(c) => nudge_gen::generate(c, out),
            Config::Purchases(c) => nudge_gen::generate_purchases(c, out),
        }
    }
}
