//! `vsc feeder`: a stack of card files fed through vpcd readers into pass
//! and reject bins. The decisions are [`vsc::feeder::SlotMachine`]'s; this
//! is the threads and the printing around it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use vsc::card::SoftCard;
use vsc::feeder::{serial_of_file, Bin, Bins, Claimed, Observed, SlotMachine, Step, Verdict};
use vsc::file::Unlock;
use vsc::vpcd::{self, Flow};

use super::serve::{describe, shutdown_on_signal, RETRY};
use super::{chain, secrets, Failure, UnlockArgs};

/// How often the clock is looked at (idle timeouts, Ctrl-C).
const TICK: Duration = Duration::from_millis(100);

#[derive(Args)]
pub(crate) struct FeederArgs {
    /// vpcd ports, one card each: a range (35963-35964) or a list (35963,35964).
    #[arg(long, value_name = "PORTS", default_value = "35963-35964")]
    ports: String,
    /// The host pcscd (vpcd) runs on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The input hopper: a folder of blank card files (*.vsc).
    #[arg(long, value_name = "DIR")]
    stock: PathBuf,
    /// The output folder: inflight/, pass/, reject/ and log.jsonl.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Reject a card that started personalization and then saw no command
    /// for this many seconds.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Log every command's INS and status word to stderr (never data).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    unlock: UnlockArgs,
}

fn parse_ports(s: &str) -> Result<Vec<u16>, Failure> {
    let bad = || Failure::msg(format!("--ports {s:?}: expected FIRST-LAST or P1,P2,…"));
    let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
    let ports: Vec<u16> = if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (port(a)?, port(b)?);
        if b < a || b - a >= 16 {
            return Err(bad());
        }
        (a..=b).collect()
    } else {
        s.split(',').map(port).collect::<Result<_, _>>()?
    };
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != ports.len() || ports.is_empty() {
        return Err(bad());
    }
    Ok(ports)
}

/// One reader: the card's decision logic while a card is in it, and the
/// flag that takes the card out.
struct Slot {
    port: u16,
    machine: Mutex<Option<SlotMachine>>,
    stop: AtomicBool,
}

impl Slot {
    fn machine(&self) -> MutexGuard<'_, Option<SlotMachine>> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every slot thread shares.
struct Feeder<'a> {
    bins: &'a Bins,
    stock: &'a Path,
    unlock: &'a Unlock,
    host: &'a str,
    idle_timeout: Option<Duration>,
    verbose: bool,
    shutdown: &'a AtomicBool,
    passed: AtomicU32,
    rejected: AtomicU32,
}

pub(crate) fn run(a: FeederArgs) -> Result<(), Failure> {
    let ports = parse_ports(&a.ports)?;
    if !a.stock.is_dir() {
        return Err(Failure::msg(format!(
            "--stock {}: not a folder",
            a.stock.display()
        )));
    }
    let unlock = a.unlock.resolve(&a.stock)?;
    let shutdown = shutdown_on_signal()?;
    let (bins, recovered) = Bins::open(&a.out).map_err(|e| Failure::msg(chain(&e)))?;
    for r in &recovered {
        eprintln!(
            "feeder: {} → reject (recovered): {}",
            r.line.serial, r.line.reason
        );
    }
    let feeder = Feeder {
        bins: &bins,
        stock: &a.stock,
        unlock: &unlock,
        host: &a.host,
        idle_timeout: a.idle_timeout.map(Duration::from_secs),
        verbose: a.verbose,
        shutdown: &shutdown,
        passed: AtomicU32::new(0),
        rejected: AtomicU32::new(0),
    };
    let slots: Vec<Slot> = ports
        .iter()
        .map(|&port| Slot {
            port,
            machine: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
        .collect();
    let results: Vec<Result<(), Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .iter()
            .map(|slot| {
                let feeder = &feeder;
                s.spawn(move || feeder.feed(slot))
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            let now = Instant::now();
            for slot in &slots {
                // The flag is set under the machine's lock, so it is always
                // about the card the machine belongs to.
                let mut machine = slot.machine();
                let timed_out = machine
                    .as_mut()
                    .is_some_and(|m| matches!(m.on_tick(now), Step::Done(_)));
                if timed_out || shutdown.load(Ordering::SeqCst) {
                    slot.stop.store(true, Ordering::SeqCst);
                }
            }
            std::thread::sleep(TICK);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Failure::msg("a slot thread panicked")))
            })
            .collect()
    });
    let (passed, rejected) = (
        feeder.passed.load(Ordering::SeqCst),
        feeder.rejected.load(Ordering::SeqCst),
    );
    let stopped = if shutdown.load(Ordering::SeqCst) {
        " (stopped by a signal)"
    } else {
        ""
    };
    println!(
        "feeder: {passed} passed, {rejected} rejected, {} recovered from an earlier run into reject{stopped}; \
         log {}",
        recovered.len(),
        a.out.join("log.jsonl").display()
    );
    results.into_iter().collect()
}

impl Feeder<'_> {
    /// Feeds cards into one slot until the stock is empty or the feeder
    /// stops.
    fn feed(&self, slot: &Slot) -> Result<(), Failure> {
        let fail = |e: vsc::feeder::FeederError| Failure::msg(format!("port {}: {}", slot.port, chain(&e)));
        while !self.shutdown.load(Ordering::SeqCst) {
            let Some(claimed) = self.bins.claim(self.stock).map_err(fail)? else {
                return Ok(());
            };
            match self.serve_one(slot, &claimed) {
                Ok(Some(verdict)) => {
                    self.settle(slot, &claimed.path, verdict.0, &verdict.1)
                        .map_err(fail)?;
                }
                Ok(None) => {
                    self.bins.unclaim(&claimed).map_err(fail)?;
                    eprintln!(
                        "feeder: port {}: {} untouched, back to the stock",
                        slot.port,
                        serial_of_file(&claimed.from)
                    );
                }
                Err(reason) => {
                    let v = Verdict {
                        bin: Bin::Reject,
                        reason,
                    };
                    self.settle(slot, &claimed.path, serial_of_file(&claimed.path), &v)
                        .map_err(fail)?;
                }
            }
        }
        Ok(())
    }

    /// Serves one card until it is decided (`Some`) or the feeder stops with
    /// the card untouched (`None`). An error is why the card could not be
    /// served at all.
    fn serve_one(&self, slot: &Slot, claimed: &Claimed) -> Result<Option<(String, Verdict)>, String> {
        let mut card = SoftCard::open_file(&claimed.path, secrets::clone_unlock(self.unlock))
            .map_err(|e| format!("the card file cannot be opened as a card: {}", chain(&e)))?;
        let serial = card.identity().serial_text();
        {
            let mut machine = slot.machine();
            *machine = Some(SlotMachine::new(Instant::now(), self.idle_timeout));
            slot.stop
                .store(self.shutdown.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        let mut waiting = false;
        let ended = vpcd::run(
            &mut card,
            self.host,
            slot.port,
            RETRY,
            &slot.stop,
            &mut |event, card| {
                if let (true, Some(line)) = (self.verbose, describe(event)) {
                    eprintln!("feeder: port {}: {serial}: {line}", slot.port);
                }
                let seen = Observed {
                    life_cycle: card.life_cycle(),
                    writes: card.writes(),
                };
                match slot
                    .machine()
                    .as_mut()
                    .map(|m| m.on_event(event, seen, Instant::now()))
                {
                    Some(Step::Done(_)) => Flow::Eject,
                    _ => Flow::Continue,
                }
            },
            &mut |e| {
                if !waiting {
                    waiting = true;
                    eprintln!(
                        "feeder: port {}: waiting for pcscd: vpcd {}:{}: {e}",
                        slot.port, self.host, slot.port
                    );
                }
            },
        );
        let seen = Observed {
            life_cycle: card.life_cycle(),
            writes: card.writes(),
        };
        drop(card);
        let machine = slot.machine().take();
        let verdict = machine.and_then(|mut m| m.on_stop(seen));
        match (ended, verdict) {
            (_, Some(v)) => Ok(Some((serial, v))),
            (Ok(_), None) => Ok(None),
            (Err(e), None) => Err(format!("the vpcd connection failed: {e}")),
        }
    }

    fn settle(
        &self,
        slot: &Slot,
        card: &Path,
        serial: String,
        v: &Verdict,
    ) -> Result<(), vsc::feeder::FeederError> {
        let line = self
            .bins
            .settle(card, v.bin, serial, Some(slot.port), &v.reason)?;
        let count = match v.bin {
            Bin::Pass => &self.passed,
            Bin::Reject => &self.rejected,
        };
        count.fetch_add(1, Ordering::SeqCst);
        eprintln!(
            "feeder: port {}: {} → {}: {}",
            slot.port,
            line.serial,
            v.bin.dir_name(),
            v.reason
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ports;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("35963-35964").unwrap(), vec![35963, 35964]);
        assert_eq!(parse_ports("35964,35963").unwrap(), vec![35964, 35963]);
        assert_eq!(parse_ports("35963").unwrap(), vec![35963]);
        for bad in ["", "a-b", "35964-35963", "1-100", "35963,35963"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
