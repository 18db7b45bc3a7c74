//! A proxy on the TCP link between vpcd (pcscd's virtual reader driver) and
//! a software card (`vsc serve`, `vsc feeder`): the card connects to the
//! proxy's port (`--port P`), the proxy connects on to vpcd's port. It can
//! slow the card down — every command waits `delay` before it reaches the
//! card, the card-speed model of a real card (tens of ms per APDU) — and
//! it records the commands it relays, with when they went and when their
//! answers came, for the benchmarks (the same APDUs sent again).
//!
//! vpcd's protocol: each message is a 2-byte big-endian length and that
//! many bytes. From vpcd, a 1-byte message is a control (power off 00,
//! power on 01, reset 02, ATR request 04); anything longer is a command
//! APDU. From the card, the answers (an ATR, a response APDU). A closed
//! connection is a card taken out of the reader: when either side closes,
//! the proxy closes the other.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One command relayed to the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Which card connection (the n-th card through this proxy, from 0).
    pub card: u64,
    pub command: Vec<u8>,
    pub response: Vec<u8>,
    /// When the command reached the proxy (before the card-speed delay).
    pub sent: Instant,
    /// When the card's answer reached the proxy.
    pub answered: Instant,
}

/// A control message from vpcd (power, reset, ATR request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub card: u64,
    pub code: u8,
    pub at: Instant,
}

#[derive(Default)]
struct Log {
    exchanges: Vec<Exchange>,
    controls: Vec<Control>,
    /// Per card connection, the command waiting for its answer.
    pending: Vec<(u64, Vec<u8>, Instant)>,
}

struct Shared {
    delay: Duration,
    upstream: u16,
    stop: Arc<AtomicBool>,
    cards: AtomicU64,
    log: Mutex<Log>,
}

/// A running proxy; dropping it stops accepting (links already open stay
/// until either side closes).
pub struct CardLink {
    port: u16,
    shared: Arc<Shared>,
}

fn lock(m: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CardLink {
    /// Listens on a free loopback port; each card that connects is linked
    /// to vpcd's `upstream` port, its commands delayed by `delay`.
    pub fn start(upstream: u16, delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            delay,
            upstream,
            stop: Arc::new(AtomicBool::new(false)),
            cards: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        });
        let s = shared.clone();
        let port = crate::harness::serve_loopback("card link", shared.stop.clone(), move |card| {
            let id = s.cards.fetch_add(1, Ordering::SeqCst);
            link(card, id, &s);
        });
        CardLink { port, shared }
    }

    /// The port cards connect to (`vsc serve --port`, `vsc feeder --ports`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Commands relayed so far, with their answers.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.shared.log).exchanges.clone()
    }

    /// Control messages relayed so far.
    pub fn controls(&self) -> Vec<Control> {
        lock(&self.shared.log).controls.clone()
    }

    /// How many card connections came through.
    pub fn cards(&self) -> u64 {
        self.shared.cards.load(Ordering::SeqCst)
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        let mut log = lock(&self.shared.log);
        log.exchanges.clear();
        log.controls.clear();
    }
}

impl Drop for CardLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    // Acknowledge at once: vpcd writes the length and the payload in two
    // sends without TCP_NODELAY (see BENCHMARKS.md, "The vpcd path").
    let _ = socket2::SockRef::from(&*s).set_tcp_quickack(true);
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    let _ = socket2::SockRef::from(&*s).set_tcp_quickack(true);
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_frame(s: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    s.write_all(&out)
}

fn link(card: TcpStream, id: u64, shared: &Arc<Shared>) {
    let Ok(vpcd) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
        let _ = card.shutdown(Shutdown::Both);
        return;
    };
    let _ = card.set_nodelay(true);
    let _ = vpcd.set_nodelay(true);
    let (Ok(mut card_r), Ok(mut vpcd_w)) = (card.try_clone(), vpcd.try_clone()) else {
        return;
    };
    let (mut card_w, mut vpcd_r) = (card, vpcd);
    // Card → vpcd: answers.
    let s = shared.clone();
    let up = thread::spawn(move || {
        while let Ok(frame) = read_frame(&mut card_r) {
            let now = Instant::now();
            {
                let mut log = lock(&s.log);
                if let Some(i) = log.pending.iter().position(|(c, _, _)| *c == id) {
                    let (_, command, sent) = log.pending.remove(i);
                    log.exchanges.push(Exchange {
                        card: id,
                        command,
                        response: frame.clone(),
                        sent,
                        answered: now,
                    });
                }
            }
            if write_frame(&mut vpcd_w, &frame).is_err() {
                break;
            }
        }
        let _ = vpcd_w.shutdown(Shutdown::Both);
        let _ = card_r.shutdown(Shutdown::Both);
    });
    // vpcd → card: controls and commands (commands delayed).
    while let Ok(frame) = read_frame(&mut vpcd_r) {
        let now = Instant::now();
        if frame.len() > 1 {
            lock(&shared.log).pending.push((id, frame.clone(), now));
            if !shared.delay.is_zero() {
                thread::sleep(shared.delay);
            }
        } else {
            lock(&shared.log).controls.push(Control {
                card: id,
                code: frame.first().copied().unwrap_or(0xFF),
                at: now,
            });
        }
        if write_frame(&mut card_w, &frame).is_err() {
            break;
        }
    }
    let _ = card_w.shutdown(Shutdown::Both);
    let _ = vpcd_r.shutdown(Shutdown::Both);
    let _ = up.join();
}
