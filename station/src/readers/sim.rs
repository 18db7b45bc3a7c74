//! `sim:N` readers: slots holding in-process software cards.
//!
//! Each slot holds one blank card from a shared [`SimStock`]: a
//! [`SoftCard`] over a blank VSC made in memory ([`BlankCard`]: OP_READY,
//! the stock's GlobalPlatform test keys as key set 01, a unique serial).
//! When the station releases a card into the pass or reject bin, the slot
//! keeps it in that bin and the next blank card is inserted (a new event
//! count, as pcscd would report). A card released `Untouched` stays in
//! its slot.
//!
//! Tests reach the slots through [`SimSource::slots`]: they can arm a
//! fault for the next card ([`SimFault`]: removed or mute at its n-th
//! command) and look into the bins.
//!
//! # The card-speed model
//!
//! A software card answers most APDUs in microseconds; a real card takes
//! milliseconds to tens of milliseconds per APDU (its CPU, EEPROM writes,
//! on-card key generation, the T=1 exchange at the reader's baud rate).
//! [`SimSource::with_apdu_delay`] (`--readers sim:N@Dms`) makes every APDU
//! of its cards take at least D: the card's thread sleeps D before the
//! software card processes the command (resets and power changes are not
//! delayed). Sleeping costs no CPU, so N such readers behave like N real
//! cards working in parallel, which is what a bureau's station sees:
//! throughput bound by the cards, not by the station's CPU. The default,
//! 0, runs the software card at full speed (CPU-bound).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use vsc::card::blank::BlankCard;
use vsc::card::{LifeCycle, SoftCard};
use vsc::file::Protector;
use vsc::secret::{AesKey, AesKeyLen};
use vsc::transport::{CardTransport, ResetKind, SmartCard, TransportError};

use super::{Bin, Card, Presence, Reader, ReaderError, ReaderSource, PROTOCOL_T1};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Blank cards for sim readers: unique serials, made on demand.
pub struct SimStock {
    next_serial: AtomicU32,
    /// Cards left (`None`: no end).
    left: Mutex<Option<u64>>,
    protector: Protector,
}

impl std::fmt::Debug for SimStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStock")
            .field("next_serial", &self.next_serial)
            .field("left", &*lock(&self.left))
            .finish_non_exhaustive()
    }
}

impl SimStock {
    /// A stock of `limit` cards (`None`: endless) whose serials start at a
    /// random 8-digit number, so two runs against one keyserver do not
    /// repeat serials.
    pub fn new(limit: Option<u64>) -> Result<Arc<Self>, String> {
        let first = rand::thread_rng().gen_range(10_000_000..80_000_000);
        Self::starting_at(first, limit)
    }

    /// A stock whose first serial is `first`.
    pub fn starting_at(first: u32, limit: Option<u64>) -> Result<Arc<Self>, String> {
        let key = AesKey::random(&mut rand::rngs::OsRng, AesKeyLen::Aes256);
        Ok(Arc::new(SimStock {
            next_serial: AtomicU32::new(first),
            left: Mutex::new(limit),
            protector: Protector::Kek {
                key_id: "sim-stock/1".into(),
                key,
            },
        }))
    }

    /// The next blank card, or `None` when the stock is used up.
    fn take(&self) -> Result<Option<(u32, SoftCard)>, String> {
        {
            let mut left = lock(&self.left);
            match &mut *left {
                Some(0) => return Ok(None),
                Some(n) => *n -= 1,
                None => {}
            }
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let vsc = BlankCard::new(serial)
            .and_then(|b| b.build(&self.protector, &mut rand::rngs::OsRng))
            .map_err(|e| e.to_string())?;
        let card = SoftCard::new(vsc).map_err(|e| e.to_string())?;
        Ok(Some((serial, card)))
    }

    /// Cards left (`None`: no end).
    pub fn left(&self) -> Option<u64> {
        *lock(&self.left)
    }
}

/// A fault for a sim card, counted in commands sent to it (1: the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// The card leaves the reader when its n-th command arrives (that
    /// command gets no answer: "card removed").
    RemoveAt(u32),
    /// The card stops answering at its n-th command: the call blocks until
    /// [`SimSlot::unmute`] (then the card answers `6F00`).
    MuteAt(u32),
}

/// A card that left a sim slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binned {
    pub serial: u32,
    pub life_cycle: LifeCycle,
    /// Commands it received.
    pub commands: u32,
    /// Whether an SCP03 session was still open once the card was released
    /// (a release powers the card off, which ends any session).
    pub session_open_after_release: bool,
}

struct InSlot {
    serial: u32,
    card: SoftCard,
    fault: Option<SimFault>,
    commands: u32,
    powered: bool,
}

impl InSlot {
    fn binned(&self, session_open: bool) -> Binned {
        Binned {
            serial: self.serial,
            life_cycle: self.card.life_cycle(),
            commands: self.commands,
            session_open_after_release: session_open,
        }
    }
}

struct SlotState {
    card: Option<InSlot>,
    event_count: u32,
    /// Faults for the next cards inserted, in order.
    faults: VecDeque<SimFault>,
    muted: bool,
    pass: Vec<Binned>,
    reject: Vec<Binned>,
    /// Cards that left on their own (a [`SimFault::RemoveAt`]).
    removed: Vec<Binned>,
    /// Set when a blank could not be made.
    stock_error: Option<String>,
    /// How many more times waiting for a card fails as a reader error.
    reader_faults: u32,
}

/// One sim reader's slot, shared by the reader, its connected card and
/// tests.
pub struct SimSlot {
    name: String,
    stock: Arc<SimStock>,
    /// The least time each APDU takes (the card-speed model).
    apdu_delay: Duration,
    state: Mutex<SlotState>,
    changed: Condvar,
}

impl std::fmt::Debug for SimSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSlot")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SimSlot {
    fn new(name: String, stock: Arc<SimStock>, apdu_delay: Duration) -> Arc<Self> {
        let slot = Arc::new(SimSlot {
            name,
            stock,
            apdu_delay,
            state: Mutex::new(SlotState {
                card: None,
                event_count: 0,
                faults: VecDeque::new(),
                muted: false,
                pass: Vec::new(),
                reject: Vec::new(),
                removed: Vec::new(),
                stock_error: None,
                reader_faults: 0,
            }),
            changed: Condvar::new(),
        });
        slot.insert_next(&mut lock(&slot.state));
        slot
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn insert_next(&self, st: &mut SlotState) {
        if st.card.is_some() {
            return;
        }
        match self.stock.take() {
            Ok(Some((serial, card))) => {
                let fault = st.faults.pop_front();
                st.card = Some(InSlot {
                    serial,
                    card,
                    fault,
                    commands: 0,
                    powered: false,
                });
                st.event_count = st.event_count.wrapping_add(1);
            }
            Ok(None) => {}
            Err(e) => st.stock_error = Some(e),
        }
        self.changed.notify_all();
    }

    /// Makes the reader itself fail the next `times` times the station
    /// waits on it for a card (as a PC/SC reader whose driver errors): the
    /// station marks it failed and retries it after a pause.
    pub fn fail_reader(&self, times: u32) {
        lock(&self.state).reader_faults = times;
        self.changed.notify_all();
    }

    /// Arms `fault` for the next card inserted into this slot (or the card
    /// in it now, if no command reached it yet).
    pub fn fault_next(&self, fault: SimFault) {
        let mut st = lock(&self.state);
        match &mut st.card {
            Some(c) if c.commands == 0 && c.fault.is_none() => c.fault = Some(fault),
            _ => st.faults.push_back(fault),
        }
    }

    /// Lets a card muted by [`SimFault::MuteAt`] answer again.
    pub fn unmute(&self) {
        let mut st = lock(&self.state);
        st.muted = false;
        self.changed.notify_all();
    }

    /// Whether a card is muted now.
    pub fn is_muted(&self) -> bool {
        lock(&self.state).muted
    }

    /// The cards in the pass bin.
    pub fn passed(&self) -> Vec<Binned> {
        lock(&self.state).pass.clone()
    }

    /// The cards in the reject bin.
    pub fn rejected(&self) -> Vec<Binned> {
        lock(&self.state).reject.clone()
    }

    /// The cards that left the slot on their own.
    pub fn removed(&self) -> Vec<Binned> {
        lock(&self.state).removed.clone()
    }

    /// The serial of the card in the slot now.
    pub fn current_serial(&self) -> Option<u32> {
        lock(&self.state).card.as_ref().map(|c| c.serial)
    }

    fn gone(&self) -> TransportError {
        TransportError::CardRemoved
    }
}

/// `N` sim readers named `sim 0` … `sim N-1`.
#[derive(Debug)]
pub struct SimSource {
    slots: Vec<Arc<SimSlot>>,
}

impl SimSource {
    pub fn new(n: usize, stock: Arc<SimStock>) -> Self {
        Self::with_apdu_delay(n, stock, Duration::ZERO)
    }

    /// `n` readers whose cards take at least `apdu_delay` per APDU (see
    /// the module documentation).
    pub fn with_apdu_delay(n: usize, stock: Arc<SimStock>, apdu_delay: Duration) -> Self {
        SimSource {
            slots: (0..n)
                .map(|i| SimSlot::new(format!("sim {i}"), stock.clone(), apdu_delay))
                .collect(),
        }
    }

    /// The slots, for tests and tools.
    pub fn slots(&self) -> Vec<Arc<SimSlot>> {
        self.slots.clone()
    }
}

impl ReaderSource for SimSource {
    fn describe(&self) -> String {
        let n = self.slots.len();
        let readers = if n == 1 {
            "1 sim reader".to_owned()
        } else {
            format!("{n} sim readers")
        };
        match self.slots.first().map(|s| s.apdu_delay) {
            Some(d) if !d.is_zero() => format!("{readers} ({} ms per APDU)", d.as_millis()),
            _ => readers,
        }
    }

    fn list(&mut self) -> Result<Vec<String>, ReaderError> {
        Ok(self.slots.iter().map(|s| s.name.clone()).collect())
    }

    fn wait_for_change(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        // Sim readers never come or go.
        std::thread::sleep(timeout);
        Ok(())
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Reader>, ReaderError> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ReaderError::Gone(name.to_owned()))?;
        Ok(Box::new(SimReader { slot: slot.clone() }))
    }
}

/// A sim slot as a [`Reader`].
#[derive(Debug)]
pub struct SimReader {
    slot: Arc<SimSlot>,
}

impl Reader for SimReader {
    fn name(&self) -> &str {
        &self.slot.name
    }

    fn counts_survive_restart(&self) -> bool {
        false
    }

    fn next_card(&mut self, after: Option<u32>, timeout: Duration) -> Result<Option<Presence>, ReaderError> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.slot.state);
        loop {
            if st.reader_faults > 0 {
                st.reader_faults -= 1;
                return Err(ReaderError::SimReaderFault(self.slot.name.clone()));
            }
            if let Some(e) = st.stock_error.take() {
                return Err(ReaderError::Blank {
                    reader: self.slot.name.clone(),
                    reason: e,
                });
            }
            if let Some(c) = &st.card {
                if after != Some(st.event_count) {
                    return Ok(Some(Presence {
                        present: true,
                        event_count: st.event_count,
                        atr: c.card.atr(),
                    }));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            st = self
                .slot
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn connect(&mut self) -> Result<Box<dyn Card>, ReaderError> {
        let mut st = lock(&self.slot.state);
        let count = st.event_count;
        let c = st
            .card
            .as_mut()
            .ok_or_else(|| ReaderError::NoCard(self.slot.name.clone()))?;
        let atr = c.card.power_on();
        c.powered = true;
        Ok(Box::new(SimCard {
            slot: self.slot.clone(),
            event_count: count,
            atr,
        }))
    }
}

/// A card connected in a sim slot.
#[derive(Debug)]
pub struct SimCard {
    slot: Arc<SimSlot>,
    /// The slot's event count when connected: a different one means this
    /// card left.
    event_count: u32,
    atr: Vec<u8>,
}

impl SimCard {
    fn with_card<T>(&self, f: impl FnOnce(&mut InSlot) -> T) -> Result<T, TransportError> {
        let mut st = lock(&self.slot.state);
        if st.event_count != self.event_count {
            return Err(self.slot.gone());
        }
        st.card.as_mut().map(f).ok_or_else(|| self.slot.gone())
    }
}

impl CardTransport for SimCard {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let slot = self.slot.clone();
        // The card-speed model: the card works on the command (outside
        // the slot's lock: tests look into the slot meanwhile).
        if !slot.apdu_delay.is_zero() {
            std::thread::sleep(slot.apdu_delay);
        }
        let mut st = lock(&slot.state);
        if st.event_count != self.event_count {
            return Err(slot.gone());
        }
        let Some(c) = st.card.as_mut() else {
            return Err(slot.gone());
        };
        c.commands = c.commands.saturating_add(1);
        match c.fault {
            Some(SimFault::RemoveAt(n)) if c.commands >= n => {
                if let Some(mut c) = st.card.take() {
                    c.card.power_off();
                    let open = c.card.secure_channel_open();
                    st.removed.push(c.binned(open));
                }
                st.event_count = st.event_count.wrapping_add(1);
                slot.changed.notify_all();
                return Err(slot.gone());
            }
            Some(SimFault::MuteAt(n)) if c.commands == n => {
                st.muted = true;
                while st.muted {
                    st = slot.changed.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                return Ok(vec![0x6F, 0x00]);
            }
            _ => {}
        }
        if !c.powered {
            return Err(TransportError::Reader(format!(
                "sim reader {:?}: the card is not powered",
                slot.name
            )));
        }
        Ok(c.card.process_apdu(command))
    }

    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        let atr = self.with_card(|c| match kind {
            ResetKind::Warm => c.card.reset(),
            ResetKind::Cold => {
                c.card.power_off();
                c.card.power_on()
            }
        })?;
        self.atr = atr.clone();
        Ok(atr)
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
}

impl Card for SimCard {
    fn reader(&self) -> &str {
        &self.slot.name
    }

    fn protocol(&self) -> u32 {
        PROTOCOL_T1
    }

    fn release(self: Box<Self>, bin: Bin) -> Result<(), ReaderError> {
        let slot = self.slot.clone();
        let mut st = lock(&slot.state);
        let ours = st.event_count == self.event_count;
        if !ours {
            // The card left on its own: the next one goes in.
            slot.insert_next(&mut st);
            return Ok(());
        }
        match bin {
            Bin::Untouched => {
                if let Some(c) = st.card.as_mut() {
                    c.card.power_off();
                    c.powered = false;
                }
                slot.changed.notify_all();
            }
            Bin::Pass | Bin::Reject => {
                if let Some(mut c) = st.card.take() {
                    c.card.power_off();
                    let open = c.card.secure_channel_open();
                    let b = c.binned(open);
                    if bin == Bin::Pass {
                        st.pass.push(b);
                    } else {
                        st.reject.push(b);
                    }
                }
                st.event_count = st.event_count.wrapping_add(1);
                slot.insert_next(&mut st);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELECT_ISD: &[u8] = &[
        0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00,
    ];

    fn sw(r: &[u8]) -> u16 {
        match r {
            [.., a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        }
    }

    #[test]
    fn a_slot_holds_a_card_and_the_next_one_comes_after_binning() {
        let stock = SimStock::starting_at(1000, Some(3)).unwrap();
        let mut src = SimSource::new(2, stock.clone());
        assert_eq!(src.list().unwrap(), vec!["sim 0", "sim 1"]);
        let mut r = src.open("sim 0").unwrap();
        assert!(!r.counts_survive_restart());
        let p = r.next_card(None, Duration::ZERO).unwrap().unwrap();
        assert!(p.present);
        // The same card is not "another" card.
        assert_eq!(r.next_card(Some(p.event_count), Duration::ZERO).unwrap(), None);
        let mut card = r.connect().unwrap();
        assert_eq!(card.reader(), "sim 0");
        assert_eq!(card.protocol(), PROTOCOL_T1);
        assert_eq!(card.atr(), p.atr);
        assert_eq!(sw(&card.transmit(SELECT_ISD).unwrap()), 0x9000);
        card.release(Bin::Pass).unwrap();
        let slot = &src.slots()[0];
        let passed = slot.passed();
        assert_eq!(passed.len(), 1);
        assert_eq!(passed[0].commands, 1);
        assert_eq!(passed[0].life_cycle, LifeCycle::OpReady);
        // The next card: a new serial and event count.
        let q = r.next_card(Some(p.event_count), Duration::ZERO).unwrap().unwrap();
        assert_ne!(q.event_count, p.event_count);
        assert_ne!(slot.current_serial(), Some(passed[0].serial));
        // Untouched stays in the slot.
        let card = r.connect().unwrap();
        card.release(Bin::Untouched).unwrap();
        assert_eq!(r.next_card(Some(q.event_count), Duration::ZERO).unwrap(), None);
        assert!(r.next_card(None, Duration::ZERO).unwrap().is_some());
        // The stock runs out: 3 cards, two slots took 2, the third is in
        // slot 0; rejecting it leaves slot 0 empty.
        assert_eq!(stock.left(), Some(0));
        r.connect().unwrap().release(Bin::Reject).unwrap();
        assert_eq!(r.next_card(None, Duration::ZERO).unwrap(), None);
        assert_eq!(slot.rejected().len(), 1);
    }

    #[test]
    fn serials_are_unique_across_slots() {
        let stock = SimStock::starting_at(5000, None).unwrap();
        let src = SimSource::new(4, stock);
        let mut serials: Vec<u32> = src.slots().iter().filter_map(|s| s.current_serial()).collect();
        serials.sort_unstable();
        serials.dedup();
        assert_eq!(serials.len(), 4);
    }

    #[test]
    fn a_removed_card_reports_removal_and_the_next_card_follows_release() {
        let stock = SimStock::starting_at(7000, None).unwrap();
        let mut src = SimSource::new(1, stock);
        let slot = src.slots()[0].clone();
        slot.fault_next(SimFault::RemoveAt(2));
        let mut r = src.open("sim 0").unwrap();
        let p = r.next_card(None, Duration::ZERO).unwrap().unwrap();
        let mut card = r.connect().unwrap();
        assert_eq!(sw(&card.transmit(SELECT_ISD).unwrap()), 0x9000);
        assert!(matches!(
            card.transmit(SELECT_ISD),
            Err(TransportError::CardRemoved)
        ));
        assert!(matches!(
            card.reset(ResetKind::Warm),
            Err(TransportError::CardRemoved)
        ));
        assert_eq!(r.next_card(None, Duration::ZERO).unwrap(), None);
        card.release(Bin::Reject).unwrap();
        assert_eq!(slot.removed().len(), 1);
        assert!(slot.rejected().is_empty());
        let q = r.next_card(Some(p.event_count), Duration::ZERO).unwrap().unwrap();
        assert!(q.present);
    }

    #[test]
    fn a_slow_sim_reader_still_answers_every_apdu() {
        let stock = SimStock::starting_at(9500, None).unwrap();
        let mut src = SimSource::with_apdu_delay(1, stock, Duration::from_millis(30));
        assert!(src.describe().contains("30 ms per APDU"), "{}", src.describe());
        let mut r = src.open("sim 0").unwrap();
        let mut card = r.connect().unwrap();
        for _ in 0..3 {
            assert_eq!(sw(&card.transmit(SELECT_ISD).unwrap()), 0x9000);
        }
        card.release(Bin::Pass).unwrap();
        assert_eq!(src.slots()[0].passed()[0].commands, 3);
    }

    #[test]
    fn a_mute_card_blocks_until_unmuted() {
        let stock = SimStock::starting_at(9000, None).unwrap();
        let mut src = SimSource::new(1, stock);
        let slot = src.slots()[0].clone();
        slot.fault_next(SimFault::MuteAt(1));
        let mut r = src.open("sim 0").unwrap();
        let mut card = r.connect().unwrap();
        let t = std::thread::spawn(move || card.transmit(SELECT_ISD).map(|r| sw(&r)));
        while !slot.is_muted() {
            std::thread::yield_now();
        }
        slot.unmute();
        assert_eq!(t.join().unwrap().unwrap(), 0x6F00);
    }
}
