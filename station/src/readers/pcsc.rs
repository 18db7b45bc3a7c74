//! PC/SC readers through pcscd (the `pcsc` crate).
//!
//! - [`PcscSource`]: the readers whose names match a pattern (`*`
//!   wildcards); [`ReaderSource::wait_for_change`] waits on pcscd's
//!   `\\?PnP?\Notification` pseudo-reader, so readers plugged in or
//!   removed while the station runs are noticed.
//! - [`PcscSlot`]: one reader as a [`Reader`](super::Reader): waits for a
//!   card other than the last one (pcscd's event counter,
//!   `SCardGetStatusChange`), connects in shared mode (T=1 or T=0).
//! - [`PcscCard`]: the connected card, a [`CardTransport`]: transmit
//!   (`SCardTransmit`, bytes unchanged both ways), warm reset
//!   (`SCARD_RESET_CARD`), cold reset (`SCARD_UNPOWER_CARD`), the ATR;
//!   released with power off.
//!
//! A [`PcscReader`] is the direct API on one named reader (wait, connect,
//! transmit on one object), used by the end-to-end harness and the
//! benchmark:
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

use super::{Bin, Presence, ReaderError, ReaderSource, PROTOCOL_RAW, PROTOCOL_T0, PROTOCOL_T1};

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
        presence_of(state)
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
        read_atr(card)
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
        transmit(card, &self.name, command)
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

fn presence_of(state: &ReaderState) -> Presence {
    let present = state.event_state().contains(State::PRESENT);
    Presence {
        present,
        event_count: state.event_count(),
        atr: if present { state.atr().to_vec() } else { Vec::new() },
    }
}

fn read_atr(card: &Card) -> Result<Vec<u8>, pcsc::Error> {
    Ok(card.status2_owned()?.atr().to_vec())
}

/// `SCardTransmit`: the response exactly as the card sent it.
/// SCardTransmit. An answer without a status word is no card's answer
/// (ISO/IEC 7816-4: every response ends with SW1 SW2): the card is lost.
/// vpcd gives one when the card's connection closes mid-command, before
/// pcscd has noticed the card is gone; a reader could after a glitch.
fn transmit(card: &Card, reader: &str, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
    let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    let n = card
        .transmit(command, &mut buf)
        .map_err(op_error(reader, "SCardTransmit"))?
        .len();
    buf.truncate(n);
    if n < 2 {
        let gone = match card.status2_owned() {
            Err(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard) => true,
            Err(_) => false,
            Ok(s) => !s.status().contains(pcsc::Status::PRESENT),
        };
        return Err(ReaderError::NoStatusWord {
            reader: reader.to_owned(),
            bytes: n,
            gone,
        });
    }
    Ok(buf)
}

fn protocol_number(card: &Card) -> u32 {
    match card.status2_owned().ok().and_then(|s| s.protocol2()) {
        Some(pcsc::Protocol::T0) => PROTOCOL_T0,
        Some(pcsc::Protocol::RAW) => PROTOCOL_RAW,
        // T=1, or unknown (then T=1 is what shared mode negotiated first).
        _ => PROTOCOL_T1,
    }
}

fn op_error<'a>(reader: &'a str, op: &'static str) -> impl FnOnce(pcsc::Error) -> ReaderError + 'a {
    move |source| ReaderError::Op {
        reader: reader.to_owned(),
        op,
        source,
    }
}

/// The PC/SC readers whose names match a pattern.
pub struct PcscSource {
    pattern: String,
    ctx: Option<Context>,
    pnp: Option<ReaderState>,
}

impl std::fmt::Debug for PcscSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscSource")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

impl PcscSource {
    /// Readers matching `pattern` (`*` wildcards). pcscd is contacted at
    /// the first call, not here.
    pub fn new(pattern: &str) -> Self {
        PcscSource {
            pattern: pattern.to_owned(),
            ctx: None,
            pnp: None,
        }
    }

    fn ctx(&mut self) -> Result<&Context, ReaderError> {
        if self.ctx.is_none() {
            self.ctx = Some(establish()?);
            self.pnp = None;
        }
        self.ctx.as_ref().ok_or(ReaderError::Gone("pcscd".into()))
    }

    /// Forgets the context after pcscd went away: the next call makes a new one.
    fn on_error(&mut self, e: &pcsc::Error) {
        if matches!(
            e,
            pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::InvalidHandle
        ) {
            self.ctx = None;
            self.pnp = None;
        }
    }
}

impl ReaderSource for PcscSource {
    fn describe(&self) -> String {
        format!("PC/SC readers matching {:?}", self.pattern)
    }

    fn list(&mut self) -> Result<Vec<String>, ReaderError> {
        let listed = self.ctx()?.list_readers_owned();
        let all: Vec<String> = match listed {
            Ok(r) => r.iter().map(|n| n.to_string_lossy().into_owned()).collect(),
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => {
                self.on_error(&e);
                return Err(ReaderError::List(e));
            }
        };
        Ok(all
            .into_iter()
            .filter(|n| matches_pattern(&self.pattern, n))
            .collect())
    }

    fn wait_for_change(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        let ctx = self.ctx()?.clone();
        // pcscd keeps the number of readers in the upper bits of the
        // pseudo-reader's state: the first call (UNAWARE) returns at once,
        // the next ones when a reader came or went.
        let pnp = self
            .pnp
            .get_or_insert_with(|| ReaderState::new(pnp_name(), State::UNAWARE));
        match ctx.get_status_change(timeout, std::slice::from_mut(pnp)) {
            Ok(()) => {
                pnp.sync_current_state();
                Ok(())
            }
            Err(pcsc::Error::Timeout) => Ok(()),
            Err(e) => {
                self.on_error(&e);
                Err(op_error("\\\\?PnP?\\Notification", "SCardGetStatusChange")(e))
            }
        }
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn super::Reader>, ReaderError> {
        Ok(Box::new(PcscSlot::open(name)?))
    }
}

fn pnp_name() -> CString {
    pcsc::PNP_NOTIFICATION().to_owned()
}

/// One PC/SC reader as a [`super::Reader`].
pub struct PcscSlot {
    ctx: Context,
    name: String,
    cname: CString,
}

impl std::fmt::Debug for PcscSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscSlot")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PcscSlot {
    /// The reader named `name`, with its own PC/SC context.
    pub fn open(name: &str) -> Result<Self, ReaderError> {
        let cname = CString::new(name).map_err(|_| ReaderError::BadName(name.to_owned()))?;
        Ok(PcscSlot {
            ctx: establish()?,
            name: name.to_owned(),
            cname,
        })
    }
}

impl super::Reader for PcscSlot {
    fn name(&self) -> &str {
        &self.name
    }

    fn counts_survive_restart(&self) -> bool {
        true
    }

    fn next_card(&mut self, after: Option<u32>, timeout: Duration) -> Result<Option<Presence>, ReaderError> {
        let deadline = Instant::now() + timeout;
        let mut states = [ReaderState::new(self.cname.clone(), State::UNAWARE)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctx.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => return Ok(None),
                Err(e) => return Err(op_error(&self.name, "SCardGetStatusChange")(e)),
            }
            let [state] = &mut states;
            let ev = state.event_state();
            if ev.intersects(State::UNKNOWN | State::UNAVAILABLE) {
                return Err(ReaderError::Gone(self.name.clone()));
            }
            let p = presence_of(state);
            // A mute card (no ATR) is not one to connect to.
            let usable = p.present && !ev.contains(State::MUTE);
            if usable && Some(p.event_count) != after {
                return Ok(Some(p));
            }
            if left.is_zero() {
                return Ok(None);
            }
            state.sync_current_state();
        }
    }

    fn connect(&mut self) -> Result<Box<dyn super::Card>, ReaderError> {
        let card = self
            .ctx
            .connect(&self.cname, ShareMode::Shared, Protocols::ANY)
            .map_err(op_error(&self.name, "SCardConnect"))?;
        let atr = read_atr(&card).map_err(op_error(&self.name, "SCardStatus"))?;
        let protocol = protocol_number(&card);
        Ok(Box::new(PcscCard {
            name: self.name.clone(),
            card: Some(card),
            atr,
            protocol,
            lost: false,
        }))
    }
}

/// A card connected through PC/SC.
pub struct PcscCard {
    name: String,
    card: Option<Card>,
    atr: Vec<u8>,
    protocol: u32,
    /// A command or reset failed: the card stopped answering or left.
    lost: bool,
}

impl std::fmt::Debug for PcscCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscCard")
            .field("reader", &self.name)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl PcscCard {
    fn card(&self) -> Result<&Card, ReaderError> {
        self.card
            .as_ref()
            .ok_or_else(|| ReaderError::NotConnected(self.name.clone()))
    }
}

impl CardTransport for PcscCard {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self.card()?;
        let answer = transmit(card, &self.name, command);
        self.lost |= answer.is_err();
        Ok(answer?)
    }

    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        let disposition = match kind {
            ResetKind::Warm => Disposition::ResetCard,
            ResetKind::Cold => Disposition::UnpowerCard,
        };
        let card = self
            .card
            .as_mut()
            .ok_or_else(|| ReaderError::NotConnected(self.name.clone()))?;
        let reset = card
            .reconnect(ShareMode::Shared, Protocols::ANY, disposition)
            .map_err(op_error(&self.name, "SCardReconnect"))
            .and_then(|()| read_atr(card).map_err(op_error(&self.name, "SCardStatus")));
        self.lost |= reset.is_err();
        self.atr = reset?;
        Ok(self.atr.clone())
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
}

impl super::Card for PcscCard {
    fn reader(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> u32 {
        self.protocol
    }

    fn release(mut self: Box<Self>, bin: Bin) -> Result<(), ReaderError> {
        let Some(card) = self.card.take() else {
            return Ok(());
        };
        let disposition = match bin {
            // A card that stopped answering is left as it is: powering it
            // down can only fail, and when pcscd has not yet seen the card
            // go, pcsc-lite 1.9.9 then stops polling the reader (no new
            // card shows) until this process closes its context — seen
            // with vpcd, where a pulled card answers with no bytes at all.
            // Taking the card out powers the slot down anyway.
            _ if self.lost => Disposition::LeaveCard,
            // Power off: no secure channel stays open, and a feeder (or the
            // operator) sees the card is done.
            Bin::Pass | Bin::Reject => Disposition::UnpowerCard,
            Bin::Untouched => Disposition::LeaveCard,
        };
        match card.disconnect(disposition) {
            Ok(()) => Ok(()),
            // Gone already: nothing left to release.
            Err((_, pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard)) => Ok(()),
            Err((_, e)) => Err(op_error(&self.name, "SCardDisconnect")(e)),
        }
    }
}

impl From<ReaderError> for TransportError {
    fn from(e: ReaderError) -> Self {
        match e {
            ReaderError::Op {
                source: pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard,
                ..
            } => TransportError::CardRemoved,
            ReaderError::NoStatusWord { gone: true, .. } => TransportError::CardRemoved,
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
