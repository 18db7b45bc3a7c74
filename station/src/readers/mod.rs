//! Card readers: the only place the station touches PC/SC.
//!
//! Two kinds of reader behind one abstraction, so that the relay and the
//! control loop do not care which one holds the card:
//!
//! - [`pcsc`]: PC/SC readers through pcscd (the `pcsc` crate), chosen by a
//!   name pattern (`Virtual PCD*`); readers that appear and disappear are
//!   noticed through pcscd's `\\?PnP?\Notification` pseudo-reader.
//! - [`sim`]: `sim:N` — N readers holding in-process software cards (blank
//!   VSCs made in memory), for quick runs and for benchmarks with more
//!   slots than vpcd offers. `sim:N@Dms` gives them a card-speed model:
//!   every APDU takes at least D ms, as a real card's processing does.
//!
//! The abstraction is three traits:
//!
//! - [`ReaderSource`]: the readers there are now, and a blocking wait for
//!   that list to change;
//! - [`Reader`]: one slot: a blocking wait for a card (a *different* card
//!   than the last one: pcscd's event counter), then connect;
//! - [`Card`]: a connected card, a [`CardTransport`] (transmit, reset, ATR)
//!   that knows its protocol and is released into a [`Bin`] at the end.
//!
//! Every method blocks: the control loop calls them on blocking threads.
//!
//! [`PcscReader`] is the older, direct PC/SC API (wait, connect, transmit on
//! one object) that the end-to-end harness and the benchmark use.

use std::time::Duration;

use vsc::transport::CardTransport;

pub mod pcsc;
pub mod sim;

pub use self::pcsc::{matches_pattern, PcscCard, PcscReader, PcscSlot, PcscSource};
pub use self::sim::{SimFault, SimSlot, SimSource, SimStock};

/// A reader failure, naming the reader and the operation.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("PC/SC: cannot reach pcscd (SCardEstablishContext): {0}")]
    Context(#[source] ::pcsc::Error),
    #[error("PC/SC: cannot list the readers: {0}")]
    List(#[source] ::pcsc::Error),
    #[error("PC/SC: no reader matches {pattern:?} (readers: {readers})")]
    NoReader { pattern: String, readers: String },
    #[error("PC/SC: the reader name {0:?} contains a NUL byte")]
    BadName(String),
    #[error("reader {reader:?}: {op}: {source}")]
    Op {
        reader: String,
        op: &'static str,
        #[source]
        source: ::pcsc::Error,
    },
    #[error("reader {reader:?}: no {what} within {timeout:?}")]
    Timeout {
        reader: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error(
        "reader {reader:?}: the card's answer had {bytes} byte(s), no status word: the card is lost{}",
        if *gone { " (it left the reader)" } else { "" }
    )]
    NoStatusWord {
        reader: String,
        bytes: usize,
        gone: bool,
    },
    #[error("reader {0:?}: not connected to a card")]
    NotConnected(String),
    #[error("reader {0:?}: there is no card in it")]
    NoCard(String),
    #[error("reader {0:?} does not exist (any more)")]
    Gone(String),
    #[error("sim reader {reader:?}: making a blank card: {reason}")]
    Blank { reader: String, reason: String },
    #[error("sim reader {0:?}: the reader failed (a fault injected with SimSlot::fail_reader)")]
    SimReaderFault(String),
    #[error("the reader specification {0:?} is not valid: use a PC/SC name pattern (`Virtual PCD*`), or `sim:N` (1 to 256) with an optional per-APDU card time `@Dms` (0 to 10000), e.g. `sim:8@20ms`")]
    BadSpec(String),
}

impl ReaderError {
    /// Whether the reader itself is gone (unplugged, pcscd stopped): the
    /// station reopens it rather than waiting on it.
    pub fn reader_gone(&self) -> bool {
        match self {
            ReaderError::Gone(_) => true,
            ReaderError::Context(_) => true,
            ReaderError::Op { source, .. } => matches!(
                source,
                ::pcsc::Error::UnknownReader
                    | ::pcsc::Error::ReaderUnavailable
                    | ::pcsc::Error::NoService
                    | ::pcsc::Error::ServiceStopped
                    | ::pcsc::Error::InvalidHandle
                    | ::pcsc::Error::NoReadersAvailable
            ),
            _ => false,
        }
    }
}

/// Where a card goes when the station lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bin {
    /// The keyserver reported the card personalized (Result OK).
    Pass,
    /// Anything else once a command reached the card.
    Reject,
    /// No command reached the card (the keyserver refused the request
    /// before any script): it stays as it is, for another run.
    Untouched,
}

impl Bin {
    pub fn as_str(self) -> &'static str {
        match self {
            Bin::Pass => "pass",
            Bin::Reject => "reject",
            Bin::Untouched => "untouched",
        }
    }
}

/// What the reader reports about its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub present: bool,
    /// The reader's count of insertions and removals: a different count
    /// means a different card (or the same card inserted again).
    pub event_count: u32,
    /// The card's ATR, when one is present.
    pub atr: Vec<u8>,
}

/// `SCARD_PROTOCOL_T0`, as `PersoRequest.protocol` carries it.
pub const PROTOCOL_T0: u32 = 1;
/// `SCARD_PROTOCOL_T1`.
pub const PROTOCOL_T1: u32 = 2;
/// `SCARD_PROTOCOL_RAW`: the reader passes bytes without a transmission
/// protocol.
pub const PROTOCOL_RAW: u32 = 4;

/// A connected card.
pub trait Card: CardTransport + Send {
    /// The reader it is in.
    fn reader(&self) -> &str;
    /// The protocol in use ([`PROTOCOL_T0`], [`PROTOCOL_T1`]).
    fn protocol(&self) -> u32;
    /// Lets go of the card. `Pass` and `Reject` end every session on it
    /// (PC/SC: disconnect with power off, so no secure channel stays open
    /// and a feeder bins the card); `Untouched` leaves it as it is. A sim
    /// reader moves the card into that bin and inserts the next blank.
    fn release(self: Box<Self>, bin: Bin) -> Result<(), ReaderError>;
}

/// One card slot.
pub trait Reader: Send {
    fn name(&self) -> &str;
    /// Whether event counts mean the same after the station restarts
    /// (pcscd's do while pcscd runs; a sim reader's start over).
    fn counts_survive_restart(&self) -> bool;
    /// Waits at most `timeout` for a card whose event count is not
    /// `after` (`None`: any card). `Ok(None)`: none came in time.
    fn next_card(&mut self, after: Option<u32>, timeout: Duration) -> Result<Option<Presence>, ReaderError>;
    /// Connects to the card in the slot.
    fn connect(&mut self) -> Result<Box<dyn Card>, ReaderError>;
}

/// The readers a station watches.
pub trait ReaderSource: Send {
    /// For messages: "PC/SC readers matching \"Virtual PCD*\"", "4 sim readers".
    fn describe(&self) -> String;
    /// The names of the readers there are now.
    fn list(&mut self) -> Result<Vec<String>, ReaderError>;
    /// Waits at most `timeout` for the list of readers to change (it may
    /// return early without a change).
    fn wait_for_change(&mut self, timeout: Duration) -> Result<(), ReaderError>;
    /// Opens one reader of the list.
    fn open(&mut self, name: &str) -> Result<Box<dyn Reader>, ReaderError>;
}

/// The most sim readers a station runs (a keyserver takes at most 256
/// readers in a Hello).
pub const MAX_SIM_READERS: usize = 256;

/// The longest per-APDU card time a `sim:N@Dms` spec may ask for.
pub const MAX_SIM_APDU_DELAY_MS: u64 = 10_000;

/// `sim:N` or `sim:N@Dms`: the number of readers and the time every APDU
/// takes in their cards (zero: as fast as the software card runs).
pub fn parse_sim_spec(spec: &str) -> Result<Option<(usize, Duration)>, ReaderError> {
    let Some(rest) = spec.strip_prefix("sim:") else {
        return Ok(None);
    };
    let bad = || ReaderError::BadSpec(spec.to_owned());
    let (n, delay) = match rest.split_once('@') {
        None => (rest, Duration::ZERO),
        Some((n, d)) => {
            let ms: u64 = d.strip_suffix("ms").ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if ms > MAX_SIM_APDU_DELAY_MS {
                return Err(bad());
            }
            (n, Duration::from_millis(ms))
        }
    };
    let n: usize = n.parse().map_err(|_| bad())?;
    if !(1..=MAX_SIM_READERS).contains(&n) {
        return Err(bad());
    }
    Ok(Some((n, delay)))
}

/// The readers named by a `--readers` value: `sim:N[@Dms]`, or a PC/SC
/// name pattern (`*` wildcards).
pub fn source_from_spec(spec: &str) -> Result<Box<dyn ReaderSource>, ReaderError> {
    match parse_sim_spec(spec)? {
        Some((n, delay)) => {
            let stock = SimStock::new(None).map_err(|e| ReaderError::Blank {
                reader: spec.to_owned(),
                reason: e,
            })?;
            Ok(Box::new(SimSource::with_apdu_delay(n, stock, delay)))
        }
        None if spec.is_empty() || spec.contains('\0') => Err(ReaderError::BadSpec(spec.to_owned())),
        None => Ok(Box::new(PcscSource::new(spec))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(source_from_spec("sim:0").is_err());
        assert!(source_from_spec("sim:x").is_err());
        assert!(source_from_spec("").is_err());
        let mut s = source_from_spec("sim:3").unwrap();
        assert_eq!(s.list().unwrap(), vec!["sim 0", "sim 1", "sim 2"]);
        assert_eq!(
            parse_sim_spec("sim:8@20ms").unwrap(),
            Some((8, Duration::from_millis(20)))
        );
        assert_eq!(parse_sim_spec("sim:2").unwrap(), Some((2, Duration::ZERO)));
        assert_eq!(parse_sim_spec("sim:1@0ms").unwrap(), Some((1, Duration::ZERO)));
        assert_eq!(parse_sim_spec("Virtual PCD*").unwrap(), None);
        for bad in [
            "sim:8@20",
            "sim:8@ms",
            "sim:8@-1ms",
            "sim:8@10001ms",
            "sim:0@5ms",
            "sim:@5ms",
        ] {
            assert!(parse_sim_spec(bad).is_err(), "{bad}");
        }
        let mut s = source_from_spec("sim:2@5ms").unwrap();
        assert_eq!(s.list().unwrap(), vec!["sim 0", "sim 1"]);
        let p = source_from_spec("Virtual PCD*").unwrap();
        assert!(p.describe().contains("Virtual PCD*"));
    }
}
