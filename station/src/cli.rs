//! The `station` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use protos::bundle::StationBundle;
use tokio::sync::watch;

use crate::control::{self, RunConfig, Stop};
use crate::journal::{self, Journal};
use crate::readers;
use crate::relay::RelayConfig;
use crate::report::{JsonLines, Progress, Report};
use crate::tui::{self, ConsoleOptions};

/// Exit code: the command line is wrong, or a file could not be read.
pub const EXIT_USAGE: u8 = 2;

/// Cardsmith's station: contacts cards in readers and relays the
/// keyserver's scripts to them, unchanged. It holds no key.
#[derive(Parser, Debug)]
#[command(name = "station", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Personalize the cards put into the readers, for one job.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// List the readers a --readers value names, and whether a card is in each.
    #[command(after_help = "Example:\n  station readers --readers 'Virtual PCD*'\n\n\
        One line per reader: its name, a tab, `card` or `empty`.")]
    Readers {
        /// A PC/SC reader name pattern (`*` matches any text) or `sim:N[@Dms]`.
        #[arg(long, value_name = "PATTERN", default_value = "*")]
        readers: String,
    },
    /// Print the journal's requests, one JSON object per line.
    #[command(
        after_help = "Example:\n  station journal --journal /var/lib/cardsmith/station-desk-1\n\n\
        Each line is one request: its id, reader, job, state (in_flight or done), the bin, the \
        station's reason, the keyserver's verdict when known, and whether it is still unsettled \
        (closed without the keyserver's Result). The station must not be running on that journal."
    )]
    Journal {
        /// The journal directory.
        #[arg(long, value_name = "DIR")]
        journal: PathBuf,
    },
}

const RUN_HELP: &str = "Examples:\n  \
  station run --bundle desk-1.bundle --job people-2025 --readers 'Virtual PCD*'\n  \
  station run --bundle desk-1.bundle --job people-2025 --readers sim:4 --cards 100 --idle-exit 30\n  \
  station run --bundle desk-1.bundle --job people-2025 --readers sim:8@20ms --cards 400\n  \
station run --bundle desk-1.bundle --job people-2025 --readers 'Virtual PCD*' --console\n\n\
On a terminal, one line per reader (reader, cards passed, rejected, cards/hour, what it does) \
is refreshed in place; otherwise (or with --json) each event is one JSON object per line on \
standard output (`event`: start, keyserver, reader, card, settled, job_status, refused, \
stopping, summary). Logs go to standard error (RUST_LOG sets the level).\n\n\
With --console (on a terminal), the operator console takes the screen instead: the keyserver \
link and its retry countdown, the job's totals, one row per reader (status, passed, rejected, \
cards/hour, last card), a log of card results and refusals. Keys: q (or Ctrl-C) stops as \
Ctrl-C does below, arrows select a reader, PgUp/PgDn scroll the log, ? shows the help. The \
final screen stays until a key is pressed (not with --no-wait, nor without a terminal on \
standard input); the four summary lines follow on the normal screen. Without a terminal on \
standard output, --console changes nothing: JSON lines. Log lines asked for with RUST_LOG would \
draw over the console: send standard error to a file (2>station.log).\n\n\
`--readers sim:N` runs N in-process software cards instead of PC/SC readers (trials, \
benchmarks); `sim:N@Dms` makes each of their APDUs take at least D ms, the pace of a real \
card (default 0: as fast as the software card runs, so the station's CPU is the limit).\n\n\
At the end, four lines: `passed: N`, `rejected: N`, `round trips per card: N` (the most any \
card took) and `cards/hour: N` (passed cards per hour, from the first card's start to the last \
card's end).\n\n\
The run ends when the keyserver reports the job done or without a record left, after --cards \
cards, after --idle-exit seconds without a card, or on Ctrl-C / SIGTERM (cards in flight are \
finished; a second Ctrl-C rejects them).\n\n\
Every request is journaled (durably) before it is sent. After a crash, the requests that were \
in flight are counted rejected and the keyserver is asked for their recorded result; a card the \
keyserver recorded as issued is reported (`settled`, keyserver_ok true): it is good.\n\n\
Exit status: 0 done; 1 a failure (journal, readers); 2 bad arguments or bundle; 3 the keyserver \
refused this station (revoked) or the job; 4 the keyserver was not reachable within \
--connect-timeout.";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The station bundle (`keyserver enroll-station … --out FILE`).
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The job to run.
    #[arg(long, value_name = "JOB")]
    pub job: String,
    /// The keyserver, `https://host:port` (default: the bundle's).
    #[arg(long, value_name = "URL")]
    pub keyserver: Option<String>,
    /// A PC/SC reader name pattern (`*` matches any text), or `sim:N` for N
    /// readers holding in-process software cards (`sim:N@Dms`: each APDU
    /// takes at least D ms, a real card's pace).
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    pub readers: String,
    /// The journal directory (default: $XDG_STATE_HOME/cardsmith/station-NAME,
    /// else ./station-journal).
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Stop after N cards passed or rejected.
    #[arg(long, value_name = "N")]
    pub cards: Option<u64>,
    /// Stop after this many seconds without a card.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
    /// Give up (exit 4) when the keyserver cannot be reached within this
    /// many seconds at start; 0 waits for ever. Later losses are always
    /// retried.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub connect_timeout: u64,
    /// How long a card may take per command when the script does not say.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub step_timeout: u64,
    /// The longest pause between attempts to reach the keyserver.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub max_backoff: u64,
    /// JSON lines even on a terminal.
    #[arg(long)]
    pub json: bool,
    /// The full-screen operator console on a terminal (q stops the run
    /// like Ctrl-C; ? shows the keys).
    #[arg(long, conflicts_with = "json")]
    pub console: bool,
    /// With --console: close the console as soon as the run ends, without
    /// waiting for a key.
    #[arg(long, requires = "console")]
    pub no_wait: bool,
}

/// `https://host:port` or `host:port` → `host:port`.
pub fn keyserver_address(s: &str) -> Result<String, String> {
    if s.starts_with("http://") {
        return Err(format!(
            "{s}: the keyserver is reached with TLS only: use https://host:port"
        ));
    }
    let rest = s.strip_prefix("https://").unwrap_or(s).trim_end_matches('/');
    let ok = !rest.is_empty()
        && !rest.contains('/')
        && rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if ok {
        Ok(rest.to_owned())
    } else {
        Err(format!("{s}: expected https://host:port"))
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("station: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// Logs on standard error: JSON lines beside JSON events (default level
/// `warn`); beside the progress view, nothing unless RUST_LOG asks (the
/// view and the final message say what matters, and log lines would tear
/// the view).
fn init_logs(json: bool) {
    let default = if json { "warn" } else { "off" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Readers { readers } => list_readers(&readers),
        Command::Journal { journal } => print_journal(&journal),
    }
}

fn list_readers(spec: &str) -> ExitCode {
    let mut source = match readers::source_from_spec(spec) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let names = match source.list() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("station: {e}");
            return ExitCode::FAILURE;
        }
    };
    for name in names {
        let state = match source.open(&name) {
            Ok(mut r) => match r.next_card(None, Duration::ZERO) {
                Ok(Some(_)) => "card".to_owned(),
                Ok(None) => "empty".to_owned(),
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        };
        println!("{name}\t{state}");
    }
    ExitCode::SUCCESS
}

fn print_journal(dir: &std::path::Path) -> ExitCode {
    let j = match Journal::open_existing(dir) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("station: {e}");
            return ExitCode::FAILURE;
        }
    };
    match j.entries() {
        Ok(entries) => {
            for e in entries {
                match serde_json::to_string(&e) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("station: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("station: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let json = args.json || !std::io::stdout().is_terminal();
    init_logs(json);
    let text = match std::fs::read_to_string(&args.bundle) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read the bundle {}: {e}", args.bundle.display())),
    };
    let bundle = match StationBundle::parse(&text) {
        Ok(b) => b,
        Err(e) => return usage(format!("{}: {e}", args.bundle.display())),
    };
    let keyserver = match keyserver_address(args.keyserver.as_deref().unwrap_or(&bundle.keyserver)) {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    let source = match readers::source_from_spec(&args.readers) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let dir = args
        .journal
        .clone()
        .unwrap_or_else(|| journal::default_dir(&bundle.station));
    let journal = match Journal::open(&dir, &bundle.station) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("station: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cfg = RunConfig::new(bundle, &args.job);
    cfg.keyserver = keyserver;
    cfg.cards = args.cards;
    cfg.idle_exit = args.idle_exit.map(Duration::from_secs);
    cfg.connect_timeout = (args.connect_timeout > 0).then(|| Duration::from_secs(args.connect_timeout));
    cfg.relay = RelayConfig {
        default_timeout: Duration::from_secs(args.step_timeout.max(1)),
    };
    cfg.backoff.max = Duration::from_secs(args.max_backoff.max(1));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("station: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    if args.console && json {
        tracing::warn!("--console needs a terminal on standard output: JSON lines instead");
    }
    let mut console = None;
    let report: Arc<dyn Report> = if json {
        Arc::new(JsonLines::new(std::io::stdout()))
    } else if args.console {
        let options = ConsoleOptions {
            wait_for_key: !args.no_wait && std::io::stdin().is_terminal(),
            ..ConsoleOptions::default()
        };
        match tui::run_console(options, stop_tx.clone()) {
            Ok(c) => {
                let r = c.report();
                console = Some(c);
                r
            }
            Err(e) => {
                eprintln!("station: the console cannot start ({e}): the progress view instead");
                Arc::new(Progress::new(std::io::stdout()))
            }
        }
    } else {
        Arc::new(Progress::new(std::io::stdout()))
    };
    let outcome = runtime.block_on(async move {
        tokio::spawn(signals(stop_tx));
        control::run(cfg, journal, source, report, stop_rx).await
    });
    // Blocking threads still waiting on readers must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // The console gives the terminal back before the summary is printed.
    if let Some(c) = console {
        if let Err(e) = c.wait() {
            eprintln!("station: the console failed: {e}");
        }
    }
    print!("{}", outcome.summary.lines());
    match outcome.error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("station: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Ctrl-C or SIGTERM: drain; again: abort (never less than the console's
/// quit key asked already).
async fn signals(stop: watch::Sender<Stop>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut count = 0;
    loop {
        let got = match &mut term {
            Some(t) => tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                r = t.recv() => r.is_some(),
            },
            None => tokio::signal::ctrl_c().await.is_ok(),
        };
        if !got {
            // No signal handling possible: keep the sender alive.
            std::future::pending::<()>().await;
        }
        count += 1;
        tui::request_stop(&stop, if count == 1 { Stop::Drain } else { Stop::Abort });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_every_subcommand_has_an_example() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Example"),
                "{} --help has no example",
                sub.get_name()
            );
        }
    }

    #[test]
    fn keyserver_addresses() {
        assert_eq!(
            keyserver_address("https://ks.example:7443").unwrap(),
            "ks.example:7443"
        );
        assert_eq!(keyserver_address("127.0.0.1:7443/").unwrap(), "127.0.0.1:7443");
        assert!(keyserver_address("http://ks:1").is_err());
        assert!(keyserver_address("https://ks").is_err());
        assert!(keyserver_address("https://ks:1/x").is_err());
        assert!(keyserver_address("").is_err());
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "station",
            "run",
            "--bundle",
            "b.bundle",
            "--job",
            "people",
            "--readers",
            "sim:4",
            "--cards",
            "10",
            "--idle-exit",
            "5",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run");
        };
        assert_eq!(a.readers, "sim:4");
        assert_eq!(a.cards, Some(10));
        assert_eq!(a.idle_exit, Some(5));
        assert_eq!(a.connect_timeout, 120);
    }
}
