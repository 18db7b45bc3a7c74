//! `keyserver`: the card administration system's command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = keyserver::cli::Cli::parse();
    match keyserver::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyserver: {e:#}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(1)
        }
    }
}
