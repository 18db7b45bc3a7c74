//! `vsc serve`: one card in one vpcd reader of pcscd.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use vsc::card::SoftCard;
use vsc::vpcd::{self, Ended, Flow, VpcdEvent};

use super::{chain, Failure, UnlockArgs};

/// How often to try again while pcscd is not there.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The card's VSC file (changes are saved to it).
    file: PathBuf,
    /// vpcd's port: 35963 is 'Virtual PCD 00 00', 35964 'Virtual PCD 00 01'.
    #[arg(long, default_value_t = vpcd::DEFAULT_PORT)]
    port: u16,
    /// The host pcscd (vpcd) runs on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Log every command's INS and status word, and power events, to stderr
    /// (never data).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    unlock: UnlockArgs,
}

/// Raises the returned flag on Ctrl-C (SIGINT).
pub(crate) fn shutdown_on_signal() -> Result<Arc<AtomicBool>, Failure> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
        .map_err(|e| Failure::msg(format!("cannot handle Ctrl-C: {e}")))?;
    Ok(flag)
}

/// A line for `-v`: what vpcd did, without data.
pub(crate) fn describe(event: &VpcdEvent) -> Option<String> {
    match event {
        VpcdEvent::Apdu { ins, sw } => Some(format!("INS {ins:02X} SW {sw:04X}")),
        VpcdEvent::PowerOn => Some("power on".into()),
        VpcdEvent::PowerOff => Some("power off".into()),
        VpcdEvent::Reset => Some("reset".into()),
        VpcdEvent::Connected | VpcdEvent::Disconnected => None,
    }
}

pub(crate) fn run(a: ServeArgs) -> Result<(), Failure> {
    let unlock = a.unlock.resolve(&a.file)?;
    let mut card = SoftCard::open_file(&a.file, unlock)
        .map_err(|e| Failure::msg(format!("{}: {}", a.file.display(), chain(&e))))?;
    let shutdown = shutdown_on_signal()?;
    let serial = card.identity().serial_text();
    let at = format!("{}:{}", a.host, a.port);
    let mut connections = 0u32;
    let waiting = Cell::new(false);
    let verbose = a.verbose;
    let ended = vpcd::run(
        &mut card,
        &a.host,
        a.port,
        RETRY,
        &shutdown,
        &mut |event, _card| {
            match event {
                VpcdEvent::Connected => {
                    waiting.set(false);
                    connections += 1;
                    if connections == 1 {
                        println!("connected: card {serial} is in the reader of vpcd {at}");
                    } else {
                        println!("reconnected: card {serial} is in the reader of vpcd {at} again");
                    }
                }
                VpcdEvent::Disconnected => {
                    println!("pcscd closed the connection (stopped or restarting); card {serial} lost power");
                }
                other => {
                    if let (true, Some(line)) = (verbose, describe(other)) {
                        eprintln!("vsc: {serial}: {line}");
                    }
                }
            }
            Flow::Continue
        },
        &mut |e| {
            if !waiting.replace(true) {
                println!(
                    "waiting for pcscd: vpcd {at}: {e}; trying again every {} s",
                    RETRY.as_secs()
                );
            }
        },
    )
    .map_err(|e| Failure::msg(format!("vpcd {at}: {e}")))?;
    match ended {
        Ended::Shutdown | Ended::Ejected | Ended::PeerClosed => {
            println!(
                "removed: card {serial} taken out of the reader; {} saved",
                a.file.display()
            );
        }
    }
    Ok(())
}
