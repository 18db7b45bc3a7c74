//! Plugs a card into pcsc-lite through vsmartcard's `vpcd` driver.
//!
//! vpcd runs inside pcscd and listens on TCP port 35963 + slot; the card
//! connects as a client. Every message, both ways, is a big-endian `u16`
//! length and a payload. vpcd always speaks first; the card only answers.
//! One-byte payloads are control messages: `00` power off, `01` power on,
//! `02` reset (no reply), `04` get ATR (reply: the ATR). Anything else is a
//! command APDU; the reply is the response APDU. Closing the socket removes
//! the card from the reader.
//!
//! [`FrameDecoder`] and [`VpcdMessage`] are pure; [`serve`] and [`run`] do
//! the socket work around them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::transport::SmartCard;

/// vpcd's port for slot 0 (0x8C7B); slot n listens on this + n.
pub const DEFAULT_PORT: u16 = 35963;

/// A message from vpcd to the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpcdMessage {
    PowerOff,
    PowerOn,
    Reset,
    GetAtr,
    /// A command APDU, as bytes.
    Apdu(Vec<u8>),
}

/// A vpcd protocol violation.
#[derive(Debug, thiserror::Error)]
pub enum VpcdError {
    #[error("vpcd sent an empty message")]
    EmptyMessage,
    #[error("a vpcd frame carries at most 65535 bytes, not {0}")]
    FrameTooLong(usize),
    #[error("vpcd connection on {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
}

impl VpcdMessage {
    /// Interprets one frame's payload.
    pub fn parse(payload: &[u8]) -> Result<Self, VpcdError> {
        match payload {
            [] => Err(VpcdError::EmptyMessage),
            [0x00] => Ok(VpcdMessage::PowerOff),
            [0x01] => Ok(VpcdMessage::PowerOn),
            [0x02] => Ok(VpcdMessage::Reset),
            [0x04] => Ok(VpcdMessage::GetAtr),
            apdu => Ok(VpcdMessage::Apdu(apdu.to_vec())),
        }
    }
}

/// A frame: the payload's length as `u16` big-endian, then the payload.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, VpcdError> {
    let len = u16::try_from(payload.len()).map_err(|_| VpcdError::FrameTooLong(payload.len()))?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let (len, rest) = self.buf.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let payload = rest.get(..len)?.to_vec();
        self.buf.drain(..len + 2);
        Some(payload)
    }
}

/// What happened on the connection, for logs and for card handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpcdEvent {
    Connected,
    PowerOn,
    PowerOff,
    Reset,
    /// A command was answered: its INS and the status word.
    Apdu {
        ins: u8,
        sw: u16,
    },
    Disconnected,
}

/// What the observer wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Remove the card from the reader: close the connection.
    Eject,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// pcscd closed the socket (it stopped or restarted).
    PeerClosed,
    /// The shutdown flag was raised.
    Shutdown,
    /// The observer ejected the card.
    Ejected,
}

/// How often a blocked read wakes up to look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);

/// Serves `card` on one established connection until it closes, the
/// shutdown flag is raised, or the observer ejects the card.
pub fn serve<C: SmartCard>(
    card: &mut C,
    stream: &mut TcpStream,
    shutdown: &AtomicBool,
    observer: &mut dyn FnMut(&VpcdEvent, &mut C) -> Flow,
) -> io::Result<Ended> {
    stream.set_read_timeout(Some(POLL))?;
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    if observer(&VpcdEvent::Connected, card) == Flow::Eject {
        return Ok(Ended::Ejected);
    }
    loop {
        while let Some(payload) = decoder.next_frame() {
            let (reply, event): (Option<Vec<u8>>, Option<VpcdEvent>) = match VpcdMessage::parse(&payload) {
                Err(_) => continue,
                Ok(VpcdMessage::PowerOff) => {
                    card.power_off();
                    (None, Some(VpcdEvent::PowerOff))
                }
                Ok(VpcdMessage::PowerOn) => {
                    card.power_on();
                    (None, Some(VpcdEvent::PowerOn))
                }
                Ok(VpcdMessage::Reset) => {
                    card.reset();
                    (None, Some(VpcdEvent::Reset))
                }
                // Presence polls arrive every 400 ms: no event for them.
                Ok(VpcdMessage::GetAtr) => (Some(card.atr()), None),
                Ok(VpcdMessage::Apdu(apdu)) => {
                    let resp = card.process_apdu(&apdu);
                    let sw = resp
                        .split_last_chunk::<2>()
                        .map_or(0, |(_, sw)| u16::from_be_bytes(*sw));
                    let ins = apdu.get(1).copied().unwrap_or(0);
                    (Some(resp), Some(VpcdEvent::Apdu { ins, sw }))
                }
            };
            if let Some(reply) = reply {
                let framed = frame(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                stream.write_all(&framed)?;
            }
            if let Some(event) = event {
                if observer(&event, card) == Flow::Eject {
                    return Ok(Ended::Ejected);
                }
            }
        }
        if shutdown.load(Ordering::SeqCst) {
            return Ok(Ended::Shutdown);
        }
        quick_ack(stream);
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Ended::PeerClosed),
            Ok(n) => decoder.push(buf.get(..n).unwrap_or(&[])),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Acknowledges received segments at once.
///
/// vpcd writes each message as two `send()` calls (the length, then the
/// payload) on a socket without `TCP_NODELAY`: Nagle's algorithm holds the
/// payload until the length is acknowledged, and Linux delays that ACK by
/// up to 40 ms. Every APDU then took ~50 ms. `TCP_QUICKACK` is not sticky,
/// so it is set again before every read.
fn quick_ack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        // Best effort: without it the bridge still works, only slower.
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Connects `card` to vpcd at `host:port` and keeps it connected: when
/// pcscd is not there yet, or restarts, it retries every `retry`. Returns
/// when the shutdown flag is raised or the observer ejects the card; the
/// socket is closed on return, which removes the card from the reader.
pub fn run<C: SmartCard>(
    card: &mut C,
    host: &str,
    port: u16,
    retry: Duration,
    shutdown: &AtomicBool,
    observer: &mut dyn FnMut(&VpcdEvent, &mut C) -> Flow,
    on_wait: &mut dyn FnMut(&io::Error),
) -> io::Result<Ended> {
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return Ok(Ended::Shutdown);
        }
        match TcpStream::connect((host, port)) {
            Ok(mut stream) => {
                let ended = serve(card, &mut stream, shutdown, observer);
                // pcscd gone or card removed: the card loses power either way.
                card.power_off();
                let _ = stream.shutdown(std::net::Shutdown::Both);
                match ended {
                    Ok(Ended::PeerClosed) => {
                        if observer(&VpcdEvent::Disconnected, card) == Flow::Eject {
                            return Ok(Ended::Ejected);
                        }
                    }
                    Ok(other) => return Ok(other),
                    Err(e) => on_wait(&e),
                }
            }
            Err(e) => on_wait(&e),
        }
        sleep_unless_shutdown(retry, shutdown);
    }
}

fn sleep_unless_shutdown(total: Duration, shutdown: &AtomicBool) {
    let mut left = total;
    while !left.is_zero() && !shutdown.load(Ordering::SeqCst) {
        let step = left.min(POLL);
        std::thread::sleep(step);
        left = left.saturating_sub(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let msgs: Vec<Vec<u8>> = vec![vec![0x04], vec![0x00, 0xA4, 0x04, 0x00], vec![0xAA; 300]];
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(frame(m).unwrap());
        }
        for split in 1..stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(split) {
                d.push(chunk);
                while let Some(f) = d.next_frame() {
                    got.push(f);
                }
            }
            assert_eq!(got, msgs);
        }
        assert!(matches!(
            frame(&vec![0; 65536]),
            Err(VpcdError::FrameTooLong(65536))
        ));
    }

    #[test]
    fn control_messages() {
        assert_eq!(VpcdMessage::parse(&[0]).unwrap(), VpcdMessage::PowerOff);
        assert_eq!(VpcdMessage::parse(&[1]).unwrap(), VpcdMessage::PowerOn);
        assert_eq!(VpcdMessage::parse(&[2]).unwrap(), VpcdMessage::Reset);
        assert_eq!(VpcdMessage::parse(&[4]).unwrap(), VpcdMessage::GetAtr);
        assert_eq!(VpcdMessage::parse(&[3]).unwrap(), VpcdMessage::Apdu(vec![3]));
        assert!(VpcdMessage::parse(&[]).is_err());
    }

    #[derive(Default)]
    struct Counter {
        on: usize,
        off: usize,
    }

    impl SmartCard for Counter {
        fn power_on(&mut self) -> Vec<u8> {
            self.on += 1;
            self.atr()
        }
        fn power_off(&mut self) {
            self.off += 1;
        }
        fn reset(&mut self) -> Vec<u8> {
            self.atr()
        }
        fn atr(&self) -> Vec<u8> {
            vec![0x3B, 0x80, 0x80, 0x01, 0x01]
        }
        fn process_apdu(&mut self, _apdu: &[u8]) -> Vec<u8> {
            vec![0x90, 0x00]
        }
    }

    /// A fake vpcd on loopback speaks first, as the driver does.
    #[test]
    fn serves_a_fake_vpcd() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let read_frame = |s: &mut TcpStream| {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).unwrap();
                let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut payload).unwrap();
                payload
            };
            s.write_all(&frame(&[0x01]).unwrap()).unwrap();
            s.write_all(&frame(&[0x04]).unwrap()).unwrap();
            let atr = read_frame(&mut s);
            s.write_all(&frame(&[0x00, 0xA4, 0x04, 0x00]).unwrap()).unwrap();
            let resp = read_frame(&mut s);
            s.write_all(&frame(&[0x00]).unwrap()).unwrap();
            (atr, resp)
        });
        let shutdown = AtomicBool::new(false);
        let mut card = Counter::default();
        let mut events = Vec::new();
        let ended = run(
            &mut card,
            "127.0.0.1",
            port,
            Duration::from_millis(10),
            &shutdown,
            &mut |e, _| {
                events.push(e.clone());
                if *e == VpcdEvent::PowerOff {
                    Flow::Eject
                } else {
                    Flow::Continue
                }
            },
            &mut |_| {},
        )
        .unwrap();
        let (atr, resp) = server.join().unwrap();
        assert_eq!(ended, Ended::Ejected);
        assert_eq!(atr, vec![0x3B, 0x80, 0x80, 0x01, 0x01]);
        assert_eq!(resp, vec![0x90, 0x00]);
        assert_eq!(
            events,
            vec![
                VpcdEvent::Connected,
                VpcdEvent::PowerOn,
                VpcdEvent::Apdu {
                    ins: 0xA4,
                    sw: 0x9000
                },
                VpcdEvent::PowerOff
            ]
        );
        assert_eq!(card.on, 1);
    }
}
