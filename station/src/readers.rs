//! PC/SC readers through pcscd (the `pcsc` crate): the only place the
//! station touches PC/SC.
//!
//! A [`PcscReader`] is one named reader. It waits for a card
//! (`SCardGetStatusChange`), connects in shared mode with T=1 or T=0, and
//! then is a [`CardTransport`]: transmit, warm reset (`SCARD_RESET_CARD`),
//! cold reset (`SCARD_UNPOWER_CARD`), the ATR.
//!
//! ```no_run
//! use std::time::Duration;
//! use station::readers::PcscReader;
//! use vsc::transport::CardTransport;
//!
//! let name = PcscReader::list("Virtual PCD*")?.remove(0);
//! let mut reader = PcscReader::open(&name)?;
//! reader.wait_for_card(Duration::from_secs(10))?;
//! reader.connect()?;
//! let response = reader.transmit(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use vsc::transport::{CardTransport, ResetKind, TransportError};

/// A PC/SC failure, naming the reader and the operation.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("PC/SC: cannot reach pcscd (SCardEstablishContext): {0}")]
    Context(#[source] pcsc::Error),
    #[error("PC/SC: cannot list the readers: {0}")]
    List(#[source] pcsc::Error),
    #[error("PC/SC: no reader matches {pattern:?} (readers: {readers})")]
    NoReader { pattern: String, readers: String },
    #[error("PC/SC: the reader name {0:?} contains a NUL byte")]
    BadName(String),
    #[error("reader {reader:?}: {op}: {source}")]
    Op {
        reader: String,
        op: &'static str,
        #[source]
        source: pcsc::Error,
    },
    #[error("reader {reader:?}: no {what} within {timeout:?}")]
    Timeout {
        reader: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("reader {0:?}: not connected to a card")]
    NotConnected(String),
}

/// What the reader reports about its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub present: bool,
    /// pcscd's count of insertions and removals in this reader: a different
    /// count means a different card (or the same card inserted again).
    pub event_count: u32,
    /// The card's ATR, when one is present.
    pub atr: Vec<u8>,
}

/// One PC/SC reader, and the card in it once connected.
pub struct PcscReader {
    ctx: Context,
    name: String,
    cname: CString,
    card: Option<Card>,
    atr: Vec<u8>,
}

impl std::fmt::Debug for PcscReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscReader")
            .field("name", &self.name)
            .field("connected", &self.card.is_some())
            .finish_non_exhaustive()
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| tail.get(i..).is_some_and(|t| matches_pattern(rest, t)))
        }
    }
}

fn establish() -> Result<Context, ReaderError> {
    Context::establish(Scope::User).map_err(ReaderError::Context)
}

impl PcscReader {
    /// The names of the readers matching `pattern` (`*` wildcards), in
    /// pcscd's order.
    pub fn list(pattern: &str) -> Result<Vec<String>, ReaderError> {
        let ctx = establish()?;
        let all: Vec<String> = match ctx.list_readers_owned() {
            Ok(r) => r.iter().map(|n| n.to_string_lossy().into_owned()).collect(),
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(ReaderError::List(e)),
        };
        let found: Vec<String> = all
            .iter()
            .filter(|n| matches_pattern(pattern, n))
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(ReaderError::NoReader {
                pattern: pattern.to_owned(),
                readers: if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                },
            });
        }
        Ok(found)
    }

    /// The reader named `name` (not connected yet).
    pub fn open(name: &str) -> Result<Self, ReaderError> {
        let cname = CString::new(name).map_err(|_| ReaderError::BadName(name.to_owned()))?;
        Ok(PcscReader {
            ctx: establish()?,
            name: name.to_owned(),
            cname,
            card: None,
            atr: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn op(&self, op: &'static str) -> impl FnOnce(pcsc::Error) -> ReaderError + '_ {
        move |source| ReaderError::Op {
            reader: self.name.clone(),
            op,
            source,
        }
    }

    fn presence_of(state: &ReaderState) -> Presence {
        let present = state.event_state().contains(State::PRESENT);
        Presence {
            present,
            event_count: state.event_count(),
            atr: if present { state.atr().to_vec() } else { Vec::new() },
        }
    }

    /// The reader's state now.
    pub fn presence(&self) -> Result<Presence, ReaderError> {
        let mut states = [ReaderState::new(self.cname.clone(), State::UNAWARE)];
        self.ctx
            .get_status_change(Duration::ZERO, &mut states)
            .map_err(self.op("SCardGetStatusChange"))?;
        Ok(Self::presence_of(&states[0]))
    }

    /// Waits until `done` holds for the reader's state, at most `timeout`.
    fn wait_until(
        &self,
        timeout: Duration,
        what: &'static str,
        done: impl Fn(&Presence) -> bool,
    ) -> Result<Presence, ReaderError> {
        let deadline = Instant::now() + timeout;
        let mut states = [ReaderState::new(self.cname.clone(), State::UNAWARE)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctx.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    return Err(ReaderError::Timeout {
                        reader: self.name.clone(),
                        what,
                        timeout,
                    })
                }
                Err(e) => return Err(self.op("SCardGetStatusChange")(e)),
            }
            let p = Self::presence_of(&states[0]);
            if done(&p) {
                return Ok(p);
            }
            states[0].sync_current_state();
        }
    }

    /// Waits until a card is in the reader.
    pub fn wait_for_card(&self, timeout: Duration) -> Result<Presence, ReaderError> {
        self.wait_until(timeout, "card", |p| p.present)
    }

    /// Waits until the reader is empty.
    pub fn wait_for_removal(&self, timeout: Duration) -> Result<Presence, ReaderError> {
        self.wait_until(timeout, "card removal", |p| !p.present)
    }

    /// Waits until a card other than the one seen in `since` is in the
    /// reader (pcscd counted an insertion or removal since).
    pub fn wait_for_another_card(
        &self,
        since: &Presence,
        timeout: Duration,
    ) -> Result<Presence, ReaderError> {
        self.wait_until(timeout, "other card", |p| {
            p.present && p.event_count != since.event_count
        })
    }

    /// Connects to the card in the reader (shared, T=1 or T=0) and reads its
    /// ATR.
    pub fn connect(&mut self) -> Result<(), ReaderError> {
        let card = self
            .ctx
            .connect(&self.cname, ShareMode::Shared, Protocols::ANY)
            .map_err(self.op("SCardConnect"))?;
        self.atr = Self::read_atr(&card).map_err(self.op("SCardStatus"))?;
        self.card = Some(card);
        Ok(())
    }

    fn read_atr(card: &Card) -> Result<Vec<u8>, pcsc::Error> {
        Ok(card.status2_owned()?.atr().to_vec())
    }

    pub fn is_connected(&self) -> bool {
        self.card.is_some()
    }

    /// Lets go of the card, leaving it as it is (pcscd powers it off once
    /// no client uses it).
    pub fn disconnect(&mut self) -> Result<(), ReaderError> {
        self.disconnect_with(Disposition::LeaveCard)
    }

    /// Lets go of the card with a disposition (leave, reset, unpower).
    pub fn disconnect_with(&mut self, disposition: Disposition) -> Result<(), ReaderError> {
        match self.card.take() {
            None => Ok(()),
            Some(card) => card
                .disconnect(disposition)
                .map_err(|(_, e)| self.op("SCardDisconnect")(e)),
        }
    }

    fn card(&self) -> Result<&Card, ReaderError> {
        self.card
            .as_ref()
            .ok_or_else(|| ReaderError::NotConnected(self.name.clone()))
    }

    /// Sends one APDU; the response bytes as the card sent them.
    pub fn transmit_apdu(&self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let card = self.card()?;
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let n = card
            .transmit(command, &mut buf)
            .map_err(self.op("SCardTransmit"))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }

    /// Warm (`SCARD_RESET_CARD`) or cold (`SCARD_UNPOWER_CARD`) reset by
    /// reconnecting; returns the new ATR.
    pub fn reset_card(&mut self, kind: ResetKind) -> Result<Vec<u8>, ReaderError> {
        let disposition = match kind {
            ResetKind::Warm => Disposition::ResetCard,
            ResetKind::Cold => Disposition::UnpowerCard,
        };
        let name = self.name.clone();
        let card = self
            .card
            .as_mut()
            .ok_or(ReaderError::NotConnected(name.clone()))?;
        let op = |op, source| ReaderError::Op {
            reader: name.clone(),
            op,
            source,
        };
        card.reconnect(ShareMode::Shared, Protocols::ANY, disposition)
            .map_err(|e| op("SCardReconnect", e))?;
        self.atr = Self::read_atr(card).map_err(|e| op("SCardStatus", e))?;
        Ok(self.atr.clone())
    }
}

impl From<ReaderError> for TransportError {
    fn from(e: ReaderError) -> Self {
        match e {
            ReaderError::Op {
                source: pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard,
                ..
            } => TransportError::CardRemoved,
            other => TransportError::Reader(other.to_string()),
        }
    }
}

impl CardTransport for PcscReader {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.transmit_apdu(command)?)
    }

    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        Ok(self.reset_card(kind)?)
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn patterns() {
        assert!(matches_pattern("Virtual PCD*", "Virtual PCD 00 00"));
        assert!(matches_pattern("Virtual PCD 00 01", "Virtual PCD 00 01"));
        assert!(!matches_pattern("Virtual PCD 00 01", "Virtual PCD 00 00"));
        assert!(matches_pattern("*PCD*01", "Virtual PCD 00 01"));
        assert!(matches_pattern("*", ""));
        assert!(!matches_pattern("Yubico*", "Virtual PCD 00 00"));
        assert!(matches_pattern("V*l*D*", "Virtual PCD 00 00"));
    }
}
