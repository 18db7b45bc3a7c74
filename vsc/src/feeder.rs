//! The feeder: software cards fed through vpcd slots the way a
//! card-personalization machine feeds plastic cards — an input hopper (the
//! stock folder of blank card files) and two output bins (pass, reject).
//!
//! Two parts:
//!
//! - [`SlotMachine`]: the pure decision logic for one card in one slot. It
//!   is fed the [`VpcdEvent`]s of the card's connection with what the card
//!   looks like after each ([`Observed`]), and clock ticks, and says when the
//!   card is done and which bin it goes to. No I/O, no clock of its own.
//! - [`Bins`]: the folders. Cards are claimed from the stock by an atomic
//!   rename into `OUT/inflight/` (two feeders or two threads never get the
//!   same card), moved to `OUT/pass/` or `OUT/reject/` when done, and every
//!   decision is appended to `OUT/log.jsonl` as one [`LogLine`].
//!
//! The rules, in order of the events:
//!
//! - A card has **started** personalization once it saved a change
//!   ([`SoftCard::writes`](crate::card::SoftCard::writes) > 0; INITIALIZE
//!   UPDATE saves its sequence counter) or answered any command other than
//!   SELECT, GET DATA and GET RESPONSE (those only read).
//! - Power off (or pcscd going away, which removes power) with life cycle
//!   SECURED → **pass**; after personalization started but not SECURED →
//!   **reject**; a card nobody started stays in its slot.
//! - `idle timeout` without a command after personalization started:
//!   SECURED → pass, otherwise → reject.
//! - The feeder stopped (Ctrl-C): SECURED → pass, started → reject, an
//!   untouched card goes back to the stock.
//! - At start, cards found in `OUT/inflight/` were left by a run that
//!   stopped abruptly: they go to reject. A card bureau never feeds a
//!   half-personalized card again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::card::LifeCycle;
use crate::codec::Instruction;
use crate::vpcd::VpcdEvent;

/// The output bin of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bin {
    Pass,
    Reject,
}

impl Bin {
    /// The bin's folder name under the output folder.
    pub fn dir_name(self) -> &'static str {
        match self {
            Bin::Pass => "pass",
            Bin::Reject => "reject",
        }
    }
}

/// Where a card goes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub bin: Bin,
    pub reason: String,
}

/// What the card looks like after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub life_cycle: LifeCycle,
    /// Commands that changed the card's persistent state.
    pub writes: u64,
}

/// The machine's answer to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep the card in the slot.
    Continue,
    /// Take the card out and put it in this bin.
    Done(Verdict),
}

/// The decision logic for one card in one slot.
#[derive(Debug, Clone)]
pub struct SlotMachine {
    idle_timeout: Option<Duration>,
    started: bool,
    secured: bool,
    life_cycle: Option<LifeCycle>,
    last_activity: Instant,
    verdict: Option<Verdict>,
}

/// Commands that only read: they do not start personalization.
fn reads_only(ins: u8) -> bool {
    matches!(
        Instruction::from(ins),
        Instruction::Select | Instruction::GetData | Instruction::GetDataOdd | Instruction::GetResponse
    )
}

fn life_cycle_name(lc: LifeCycle) -> String {
    match lc {
        LifeCycle::OpReady => "OP_READY".into(),
        LifeCycle::Initialized => "INITIALIZED".into(),
        LifeCycle::Secured => "SECURED".into(),
        LifeCycle::CardLocked => "CARD_LOCKED".into(),
        LifeCycle::Terminated => "TERMINATED".into(),
        LifeCycle::Other(b) => format!("{b:02X}"),
    }
}

impl SlotMachine {
    /// A card just inserted at `now`.
    pub fn new(now: Instant, idle_timeout: Option<Duration>) -> Self {
        SlotMachine {
            idle_timeout,
            started: false,
            secured: false,
            life_cycle: None,
            last_activity: now,
            verdict: None,
        }
    }

    /// Whether personalization has started on this card.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The decision, once made.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    fn decide(&mut self, bin: Bin, reason: String) -> Step {
        let v = Verdict { bin, reason };
        self.verdict = Some(v.clone());
        Step::Done(v)
    }

    fn state_text(&self) -> String {
        self.life_cycle
            .map_or_else(|| "unknown".to_owned(), life_cycle_name)
    }

    /// Something happened on the card's connection; `card` is the card
    /// after it.
    pub fn on_event(&mut self, event: &VpcdEvent, card: Observed, now: Instant) -> Step {
        if let Some(v) = &self.verdict {
            return Step::Done(v.clone());
        }
        self.life_cycle = Some(card.life_cycle);
        self.secured = card.life_cycle == LifeCycle::Secured;
        if card.writes > 0 {
            self.started = true;
        }
        match event {
            VpcdEvent::Apdu { ins, .. } => {
                self.last_activity = now;
                if !reads_only(*ins) {
                    self.started = true;
                }
                Step::Continue
            }
            VpcdEvent::Connected | VpcdEvent::PowerOn | VpcdEvent::Reset => {
                self.last_activity = now;
                Step::Continue
            }
            VpcdEvent::PowerOff | VpcdEvent::Disconnected => {
                let how = if *event == VpcdEvent::PowerOff {
                    "powered off"
                } else {
                    "lost power (pcscd went away)"
                };
                if self.secured {
                    self.decide(Bin::Pass, format!("personalized (SECURED) and {how}"))
                } else if self.started {
                    let reason = format!(
                        "{how} after personalization started, life cycle {}",
                        self.state_text()
                    );
                    self.decide(Bin::Reject, reason)
                } else {
                    Step::Continue
                }
            }
        }
    }

    /// The clock moved on without an event.
    pub fn on_tick(&mut self, now: Instant) -> Step {
        if let Some(v) = &self.verdict {
            return Step::Done(v.clone());
        }
        let Some(limit) = self.idle_timeout else {
            return Step::Continue;
        };
        if !self.started || now.saturating_duration_since(self.last_activity) < limit {
            return Step::Continue;
        }
        let secs = limit.as_secs_f64();
        if self.secured {
            self.decide(
                Bin::Pass,
                format!("personalized (SECURED); no command for {secs} s and not powered off"),
            )
        } else {
            let reason = format!(
                "no command for {secs} s after personalization started, life cycle {}",
                self.state_text()
            );
            self.decide(Bin::Reject, reason)
        }
    }

    /// The feeder is stopping with the card still in the slot. `None`: the
    /// card was never started and goes back to the stock.
    pub fn on_stop(&mut self, card: Observed) -> Option<Verdict> {
        if let Some(v) = &self.verdict {
            return Some(v.clone());
        }
        self.life_cycle = Some(card.life_cycle);
        let started = self.started || card.writes > 0;
        let verdict = if card.life_cycle == LifeCycle::Secured {
            Verdict {
                bin: Bin::Pass,
                reason: "personalized (SECURED); the feeder stopped".into(),
            }
        } else if started {
            Verdict {
                bin: Bin::Reject,
                reason: format!(
                    "the feeder stopped after personalization started, life cycle {}",
                    self.state_text()
                ),
            }
        } else {
            return None;
        };
        self.verdict = Some(verdict.clone());
        Some(verdict)
    }
}

/// One line of `OUT/log.jsonl`: where a card went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The chip serial, eight decimal digits (or the file name's stem when
    /// the card could not be read).
    pub serial: String,
    /// The vpcd port the card was served on; `None` for a card recovered
    /// from an earlier run.
    pub port: Option<u16>,
    pub bin: Bin,
    pub reason: String,
    /// When the decision was made, RFC 3339 UTC.
    pub time: String,
    /// The card file's name in its bin.
    pub file: String,
}

/// A failure of the feeder's folder work.
#[derive(Debug, thiserror::Error)]
pub enum FeederError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot move {} to {}: the stock and the output folder must be on one file system \
         (claiming a card is an atomic rename)",
        from.display(), to.display()
    )]
    CrossDevice { from: PathBuf, to: PathBuf },
    #[error("cannot claim {}: {} already exists", from.display(), to.display())]
    AlreadyInFlight { from: PathBuf, to: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FeederError + 'a {
    move |source| FeederError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A card taken from the stock, now in `OUT/inflight/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Where it is now.
    pub path: PathBuf,
    /// Where it came from (to put an untouched card back).
    pub from: PathBuf,
}

/// A card moved to reject at start because an earlier run left it in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub line: LogLine,
}

/// The output folder: `inflight/`, `pass/`, `reject/` and `log.jsonl`.
///
/// A running feeder holds a shared lock on `OUT/feeder.lock`, so several
/// feeders may share one output folder; the sweep of `inflight/` at start
/// happens only when no other feeder holds it.
#[derive(Debug)]
pub struct Bins {
    out: PathBuf,
    log: Mutex<File>,
    lock: File,
}

/// Linux's errno for a rename across file systems (`ErrorKind::CrossesDevices`
/// needs Rust 1.85).
const EXDEV: i32 = 18;

/// The file extension of card files.
pub const CARD_EXTENSION: &str = "vsc";

/// The reason logged for a card recovered from an earlier run.
pub const RECOVERED_REASON: &str =
    "left in flight by an earlier feeder run that stopped abruptly; a half-personalized card is never fed again";

impl Bins {
    /// Opens (creating) the output folder, and moves cards an earlier run
    /// left in flight to reject (returned, and logged).
    pub fn open(out: &Path) -> Result<(Self, Vec<Recovered>), FeederError> {
        for sub in ["inflight", "pass", "reject"] {
            let dir = out.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        }
        let lock_path = out.join("feeder.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("cannot open", &lock_path))?;
        let alone =
            fs4::fs_std::FileExt::try_lock_exclusive(&lock).map_err(io_err("cannot lock", &lock_path))?;
        let log_path = out.join("log.jsonl");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("cannot open", &log_path))?;
        let bins = Bins {
            out: out.to_path_buf(),
            log: Mutex::new(log),
            lock,
        };
        let mut recovered = Vec::new();
        if alone {
            for path in card_files(&bins.inflight())? {
                let serial = serial_of_file(&path);
                let line = bins.settle(&path, Bin::Reject, serial, None, RECOVERED_REASON)?;
                recovered.push(Recovered { line });
            }
        }
        // Exclusive → shared: no card is claimed before the shared lock is
        // held, so a feeder that wins the exclusive lock meanwhile finds
        // nothing of ours in flight.
        fs4::fs_std::FileExt::unlock(&bins.lock).map_err(io_err("cannot unlock", &lock_path))?;
        fs4::fs_std::FileExt::lock_shared(&bins.lock).map_err(io_err("cannot lock", &lock_path))?;
        Ok((bins, recovered))
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    pub fn inflight(&self) -> PathBuf {
        self.out.join("inflight")
    }

    pub fn bin(&self, bin: Bin) -> PathBuf {
        self.out.join(bin.dir_name())
    }

    /// Takes the next card (by file name) from `stock`; `None` when the
    /// stock is empty.
    pub fn claim(&self, stock: &Path) -> Result<Option<Claimed>, FeederError> {
        let inflight = self.inflight();
        for from in card_files(stock)? {
            let Some(name) = from.file_name() else { continue };
            let to = inflight.join(name);
            if to.exists() {
                // Another port of this feeder may have just taken this very
                // card: then the stock no longer has it and we move on. Both
                // files present is a card left by an earlier run.
                if !from.exists() {
                    continue;
                }
                return Err(FeederError::AlreadyInFlight { from, to });
            }
            match fs::rename(&from, &to) {
                Ok(()) => {
                    sync_dir(&inflight)?;
                    return Ok(Some(Claimed { path: to, from }));
                }
                // Someone else took it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(EXDEV) => {
                    return Err(FeederError::CrossDevice { from, to })
                }
                Err(e) => return Err(io_err("cannot claim", &from)(e)),
            }
        }
        Ok(None)
    }

    /// Puts an untouched card back into the stock.
    pub fn unclaim(&self, card: &Claimed) -> Result<(), FeederError> {
        fs::rename(&card.path, &card.from).map_err(io_err("cannot put back", &card.path))?;
        if let Some(dir) = card.from.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Moves a card into its bin (never over another card's file) and
    /// appends the decision to the log.
    pub fn settle(
        &self,
        card: &Path,
        bin: Bin,
        serial: String,
        port: Option<u16>,
        reason: &str,
    ) -> Result<LogLine, FeederError> {
        let dir = self.bin(bin);
        let dest = free_name(&dir, card);
        fs::rename(card, &dest).map_err(io_err("cannot move", card))?;
        sync_dir(&dir)?;
        let line = LogLine {
            serial,
            port,
            bin,
            reason: reason.to_owned(),
            time: rfc3339(SystemTime::now()),
            file: dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        self.append(&line)?;
        Ok(line)
    }

    fn append(&self, line: &LogLine) -> Result<(), FeederError> {
        let path = self.out.join("log.jsonl");
        let mut text = serde_json::to_string(line)
            .map_err(|e| io_err("cannot encode a line of", &path)(io::Error::other(e)))?;
        text.push('\n');
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.write_all(text.as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(io_err("cannot append to", &path))
    }
}

/// Reads `OUT/log.jsonl`.
pub fn read_log(out: &Path) -> Result<Vec<LogLine>, FeederError> {
    let path = out.join("log.jsonl");
    let text = fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| io_err("a bad line in", &path)(io::Error::new(io::ErrorKind::InvalidData, e)))
        })
        .collect()
}

/// The card files (`*.vsc`) of a folder, by name.
pub fn card_files(dir: &Path) -> Result<Vec<PathBuf>, FeederError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let entry = entry.map_err(io_err("cannot list", dir))?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && path.extension().is_some_and(|e| e == CARD_EXTENSION) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The serial a card file holds in its public area (no key needed), else
/// the file name's stem.
pub fn serial_of_file(path: &Path) -> String {
    let from_card = crate::file::VscFile::inspect_path(path).ok().and_then(|seen| {
        seen.public_area_unauthenticated
            .get(&crate::file::ObjectId::Named("card/serial".into()))
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(|b| format!("{:08}", u32::from_be_bytes(b)))
    });
    from_card.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// `dir/<name of card>`, or `dir/<stem>.<n>.vsc` if that is taken.
fn free_name(dir: &Path, card: &Path) -> PathBuf {
    let name = card.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let first = dir.join(&name);
    if !first.exists() {
        return first;
    }
    let stem = card
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (1u32..)
        .map(|n| dir.join(format!("{stem}.{n}.{CARD_EXTENSION}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn sync_dir(dir: &Path) -> Result<(), FeederError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync", dir))
}

/// `2025-11-22T11:03:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    crate::clock::Utc::from_system(t).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn card(lc: LifeCycle, writes: u64) -> Observed {
        Observed {
            life_cycle: lc,
            writes,
        }
    }

    fn blank() -> Observed {
        card(LifeCycle::OpReady, 0)
    }

    fn apdu(ins: u8) -> VpcdEvent {
        VpcdEvent::Apdu { ins, sw: 0x9000 }
    }

    #[test]
    fn an_untouched_card_stays_through_power_cycles() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, Some(T));
        for e in [
            VpcdEvent::Connected,
            VpcdEvent::PowerOn,
            apdu(0xA4),
            apdu(0xCB),
            apdu(0xCA),
            apdu(0xC0),
            VpcdEvent::PowerOff,
            VpcdEvent::Disconnected,
            VpcdEvent::Connected,
        ] {
            assert_eq!(m.on_event(&e, blank(), t0), Step::Continue, "{e:?}");
        }
        assert!(!m.started());
        assert_eq!(m.on_tick(t0 + T * 10), Step::Continue);
        assert_eq!(m.on_stop(blank()), None);
    }

    #[test]
    fn secured_then_powered_off_passes() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&VpcdEvent::PowerOn, blank(), t0);
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t0);
        assert!(m.started());
        m.on_event(&apdu(0x82), card(LifeCycle::OpReady, 1), t0);
        m.on_event(&apdu(0xF0), card(LifeCycle::Secured, 2), t0);
        let Step::Done(v) = m.on_event(&VpcdEvent::PowerOff, card(LifeCycle::Secured, 2), t0) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Pass);
        assert!(v.reason.contains("SECURED"), "{}", v.reason);
        // Sticky.
        assert_eq!(m.verdict(), Some(&v));
        assert_eq!(m.on_tick(t0), Step::Done(v));
    }

    #[test]
    fn started_then_powered_off_is_rejected() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t0);
        let Step::Done(v) = m.on_event(&VpcdEvent::PowerOff, card(LifeCycle::OpReady, 1), t0) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Reject);
        assert!(v.reason.contains("OP_READY"), "{}", v.reason);
    }

    #[test]
    fn any_command_but_reads_starts_personalization_even_without_writes() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        // A VERIFY that changed nothing persistent.
        m.on_event(&apdu(0x20), blank(), t0);
        assert!(m.started());
        assert!(matches!(
            m.on_event(&VpcdEvent::PowerOff, blank(), t0),
            Step::Done(Verdict { bin: Bin::Reject, .. })
        ));
    }

    #[test]
    fn a_write_alone_starts_it() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0xA4), card(LifeCycle::OpReady, 1), t0);
        assert!(m.started());
    }

    #[test]
    fn pcscd_going_away_removes_power() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0xF0), card(LifeCycle::Secured, 1), t0);
        let Step::Done(v) = m.on_event(&VpcdEvent::Disconnected, card(LifeCycle::Secured, 1), t0) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Pass);
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t0);
        let Step::Done(v) = m.on_event(&VpcdEvent::Disconnected, card(LifeCycle::OpReady, 1), t0) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Reject);
    }

    #[test]
    fn idle_timeout_counts_from_the_last_activity_once_started() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, Some(T));
        // Not started: never times out.
        assert_eq!(m.on_tick(t0 + T * 3), Step::Continue);
        let t1 = t0 + T * 3;
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t1);
        assert_eq!(m.on_tick(t1 + T - Duration::from_secs(1)), Step::Continue);
        let t2 = t1 + T - Duration::from_secs(1);
        m.on_event(&apdu(0x82), card(LifeCycle::OpReady, 1), t2);
        assert_eq!(m.on_tick(t2 + T - Duration::from_secs(1)), Step::Continue);
        let Step::Done(v) = m.on_tick(t2 + T) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Reject);
        assert!(v.reason.contains("30 s"), "{}", v.reason);
    }

    #[test]
    fn idle_timeout_of_a_secured_card_passes_it() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, Some(T));
        m.on_event(&apdu(0xF0), card(LifeCycle::Secured, 1), t0);
        let Step::Done(v) = m.on_tick(t0 + T) else {
            panic!("no verdict")
        };
        assert_eq!(v.bin, Bin::Pass);
    }

    #[test]
    fn no_idle_timeout_without_the_option() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t0);
        assert_eq!(m.on_tick(t0 + T * 100), Step::Continue);
    }

    #[test]
    fn stopping_the_feeder() {
        let t0 = Instant::now();
        let mut m = SlotMachine::new(t0, None);
        assert_eq!(m.on_stop(blank()), None);
        let mut m = SlotMachine::new(t0, None);
        m.on_event(&apdu(0x50), card(LifeCycle::OpReady, 1), t0);
        assert_eq!(m.on_stop(card(LifeCycle::OpReady, 1)).unwrap().bin, Bin::Reject);
        let mut m = SlotMachine::new(t0, None);
        assert_eq!(m.on_stop(card(LifeCycle::Secured, 3)).unwrap().bin, Bin::Pass);
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, name).unwrap();
        p
    }

    #[test]
    fn claim_settle_unclaim_and_log() {
        let t = tempfile::tempdir().unwrap();
        let stock = t.path().join("stock");
        let out = t.path().join("out");
        fs::create_dir_all(&stock).unwrap();
        touch(&stock, "00000002.vsc");
        touch(&stock, "00000001.vsc");
        touch(&stock, "notes.txt");
        touch(&stock, "00000003.vsc.tmp");
        let (bins, recovered) = Bins::open(&out).unwrap();
        assert!(recovered.is_empty());
        let a = bins.claim(&stock).unwrap().unwrap();
        assert_eq!(a.path, out.join("inflight/00000001.vsc"));
        let b = bins.claim(&stock).unwrap().unwrap();
        assert_eq!(b.path, out.join("inflight/00000002.vsc"));
        assert_eq!(bins.claim(&stock).unwrap(), None);
        bins.unclaim(&b).unwrap();
        assert!(stock.join("00000002.vsc").exists());
        let line = bins
            .settle(&a.path, Bin::Pass, "00000001".into(), Some(35963), "fine")
            .unwrap();
        assert_eq!(line.file, "00000001.vsc");
        assert!(out.join("pass/00000001.vsc").exists());
        // The same name again does not overwrite.
        let again = touch(&out.join("inflight"), "00000001.vsc");
        let line2 = bins
            .settle(&again, Bin::Pass, "00000001".into(), Some(35964), "again")
            .unwrap();
        assert_eq!(line2.file, "00000001.1.vsc");
        assert_eq!(read_log(&out).unwrap(), vec![line, line2]);
    }

    #[test]
    fn ports_claiming_at_once_each_get_a_different_card_and_no_error() {
        for _ in 0..20 {
            let t = tempfile::tempdir().unwrap();
            let stock = t.path().join("stock");
            let out = t.path().join("out");
            fs::create_dir_all(&stock).unwrap();
            for i in 0..8 {
                touch(&stock, &format!("{i:08}.vsc"));
            }
            let (bins, _) = Bins::open(&out).unwrap();
            let bins = std::sync::Arc::new(bins);
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (bins, stock) = (bins.clone(), stock.clone());
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        while let Some(c) = bins.claim(&stock).unwrap() {
                            got.push(c.path);
                        }
                        got
                    })
                })
                .collect();
            let mut all: Vec<PathBuf> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 8);
        }
    }

    #[test]
    fn a_card_both_in_stock_and_in_flight_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let stock = t.path().join("stock");
        let out = t.path().join("out");
        fs::create_dir_all(&stock).unwrap();
        let (bins, _) = Bins::open(&out).unwrap();
        touch(&stock, "00000001.vsc");
        touch(&out.join("inflight"), "00000001.vsc");
        assert!(matches!(
            bins.claim(&stock),
            Err(FeederError::AlreadyInFlight { .. })
        ));
    }

    #[test]
    fn cards_left_in_flight_go_to_reject_at_start() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        fs::create_dir_all(out.join("inflight")).unwrap();
        touch(&out.join("inflight"), "00000007.vsc");
        let (_bins, recovered) = Bins::open(&out).unwrap();
        assert_eq!(recovered.len(), 1);
        let line = &recovered[0].line;
        assert_eq!(
            (line.serial.as_str(), line.port, line.bin),
            ("00000007", None, Bin::Reject)
        );
        assert!(out.join("reject/00000007.vsc").exists());
        assert_eq!(read_log(&out).unwrap(), vec![line.clone()]);
    }

    #[test]
    fn a_second_feeder_on_the_same_output_leaves_live_cards_alone() {
        let t = tempfile::tempdir().unwrap();
        let stock = t.path().join("stock");
        let out = t.path().join("out");
        fs::create_dir_all(&stock).unwrap();
        touch(&stock, "00000001.vsc");
        let (first, _) = Bins::open(&out).unwrap();
        let claimed = first.claim(&stock).unwrap().unwrap();
        let (_second, recovered) = Bins::open(&out).unwrap();
        assert!(recovered.is_empty());
        assert!(claimed.path.exists());
    }

    #[test]
    fn two_claimers_never_get_the_same_card() {
        let t = tempfile::tempdir().unwrap();
        let stock = t.path().join("stock");
        fs::create_dir_all(&stock).unwrap();
        for i in 0..40 {
            touch(&stock, &format!("{i:08}.vsc"));
        }
        let (a, _) = Bins::open(&t.path().join("a")).unwrap();
        let (b, _) = Bins::open(&t.path().join("b")).unwrap();
        let take = |bins: &Bins| {
            let mut got = Vec::new();
            while let Some(c) = bins.claim(&stock).unwrap() {
                got.push(c.path.file_name().unwrap().to_owned());
            }
            got
        };
        let (ga, gb) = std::thread::scope(|s| {
            let ha = s.spawn(|| take(&a));
            let hb = s.spawn(|| take(&b));
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let mut all: Vec<_> = ga.iter().chain(gb.iter()).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40);
        assert_eq!(ga.len() + gb.len(), 40);
    }
}
