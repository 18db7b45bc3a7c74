//! Runs one `Script` on one card, transparently.
//!
//! - Every APDU step's command bytes go to the card exactly as the
//!   keyserver sent them, and every response comes back exactly as the
//!   card sent it, status word included. Nothing is rewritten: no GET
//!   RESPONSE after `61xx`, no resend after `6Cxx`, no chaining. The
//!   keyserver puts Le in its commands (extended Le where a response may be
//!   long), so responses come back whole; a `61xx` the card answers
//!   anyway is simply relayed for the keyserver to act on.
//! - A `Reset` step is the only step the relay interprets: warm or cold
//!   reset; its response entry is empty and the ATR after it is recorded in
//!   `atrs_after_reset`.
//! - Execution stops at the first status word the step does not expect
//!   (`sw & mask == value & mask` for none of its patterns — an empty list
//!   lets no status word through): `stopped_at` is that step, whose
//!   response is the last one in the reply. A step of no known kind stops
//!   the script the same way, with an empty response.
//! - Each step has a time limit (`timeout_ms`, or the station's default for
//!   0). A card that does not answer in time, leaves the reader or whose
//!   reader fails ends the script: the reply says `card_removed` with the
//!   reason (`card_lost_reason`: removed, timeout, reader failed) and the
//!   station's words for it (`card_lost_detail`), and [`Relayed::lost`]
//!   says the same; the station then treats the card as failed.
//!
//! The logic is pure: it talks to a [`Bounded`] card and reads a
//! [`Clock`]. Any [`CardTransport`] is a `Bounded` card whose calls cannot
//! be interrupted (a late answer is still caught by the clock and treated
//! as a timeout); a [`Watchdog`] runs a reader's card on a thread of its
//! own so a PC/SC call that blocks can be given up on in time.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use protos::pb;
use vsc::transport::{CardTransport, ResetKind, TransportError};

use crate::readers::{Bin, Card, ReaderError};

/// Where the relay reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A card whose calls can be given a time limit.
pub trait Bounded {
    fn transmit_within(&mut self, command: &[u8], limit: Duration) -> Result<Vec<u8>, TransportError>;
    fn reset_within(&mut self, kind: ResetKind, limit: Duration) -> Result<Vec<u8>, TransportError>;
}

/// A transport in this thread: the call runs to its end; the relay's clock
/// check after it turns a late answer into a timeout.
impl<T: CardTransport + ?Sized> Bounded for T {
    fn transmit_within(&mut self, command: &[u8], _limit: Duration) -> Result<Vec<u8>, TransportError> {
        self.transmit(command)
    }

    fn reset_within(&mut self, kind: ResetKind, _limit: Duration) -> Result<Vec<u8>, TransportError> {
        self.reset(kind)
    }
}

/// The station's settings for running scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// The limit of a step whose `timeout_ms` is 0, and of a reset.
    pub default_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            default_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the card is lost for this script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardLost {
    #[error("the card was removed at step {step}")]
    Removed { step: usize },
    #[error("the card did not answer step {step} within {limit:?}")]
    Timeout { step: usize, limit: Duration },
    #[error("the reader failed at step {step}: {reason}")]
    Reader { step: usize, reason: String },
}

/// What running a script gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    /// The reply for the keyserver.
    pub reply: pb::Reply,
    /// Set when the card was lost (then `reply.card_removed` is set too).
    pub lost: Option<CardLost>,
    /// APDUs sent to the card (whether or not they were answered).
    pub commands_sent: usize,
}

/// The status word at the end of a response, if it has one.
pub fn status_word(response: &[u8]) -> Option<u16> {
    match response {
        [.., a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Whether `sw` lets the script go on past a step expecting `expect`.
pub fn expected(expect: &[pb::SwPattern], sw: Option<u16>) -> bool {
    let Some(sw) = sw else {
        return false;
    };
    let sw = u32::from(sw);
    expect.iter().any(|p| sw & p.mask == p.value & p.mask)
}

impl CardLost {
    /// The protocol's word for it.
    pub fn reason(&self) -> pb::CardLostReason {
        match self {
            CardLost::Removed { .. } => pb::CardLostReason::Removed,
            CardLost::Timeout { .. } => pb::CardLostReason::Timeout,
            CardLost::Reader { .. } => pb::CardLostReason::ReaderFailed,
        }
    }
}

/// Marks `reply`: the card was lost, and why (`card_removed` stays set for
/// keyservers older than `card_lost_reason`).
pub fn mark_lost(reply: &mut pb::Reply, lost: &CardLost) {
    reply.card_removed = true;
    reply.card_lost_reason = lost.reason() as i32;
    reply.card_lost_detail = lost.to_string();
}

/// A reply for a script the station cannot run because it no longer holds
/// the card (`why` in words).
pub fn not_held(why: &str) -> pb::Reply {
    pb::Reply {
        card_removed: true,
        card_lost_reason: pb::CardLostReason::NotHeld as i32,
        card_lost_detail: why.to_owned(),
        ..Default::default()
    }
}

fn limit_of(timeout_ms: u32, config: &RelayConfig) -> Duration {
    if timeout_ms == 0 {
        config.default_timeout
    } else {
        Duration::from_millis(u64::from(timeout_ms))
    }
}

fn lost_of(e: TransportError, step: usize, limit: Duration) -> CardLost {
    match e {
        TransportError::CardRemoved => CardLost::Removed { step },
        TransportError::Timeout(_) => CardLost::Timeout { step, limit },
        other => CardLost::Reader {
            step,
            reason: other.to_string(),
        },
    }
}

/// Runs `script` on `card`; see the module documentation for the rules.
pub fn run_script<B: Bounded + ?Sized>(
    card: &mut B,
    clock: &dyn Clock,
    script: &pb::Script,
    config: &RelayConfig,
) -> Relayed {
    let mut out = Relayed {
        reply: pb::Reply::default(),
        lost: None,
        commands_sent: 0,
    };
    let lose = |out: &mut Relayed, lost: CardLost| {
        tracing::debug!(%lost, "card lost during the script");
        mark_lost(&mut out.reply, &lost);
        out.lost = Some(lost);
    };
    for (i, step) in script.steps.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        match &step.step {
            Some(pb::step::Step::Apdu(apdu)) => {
                let limit = limit_of(apdu.timeout_ms, config);
                let started = clock.now();
                out.commands_sent += 1;
                let answer = card.transmit_within(&apdu.command, limit);
                let took = clock.now().saturating_duration_since(started);
                let response = match answer {
                    Ok(_) if took > limit => {
                        lose(&mut out, CardLost::Timeout { step: i, limit });
                        return out;
                    }
                    Ok(r) => r,
                    Err(e) => {
                        lose(&mut out, lost_of(e, i, limit));
                        return out;
                    }
                };
                let sw = status_word(&response);
                tracing::debug!(
                    step = i,
                    ins = %apdu.command.get(1).map_or_else(|| "--".to_owned(), |b| format!("{b:02X}")),
                    sw = %sw.map_or_else(|| "none".to_owned(), |s| format!("{s:04X}")),
                    "apdu"
                );
                out.reply.responses.push(response);
                if !expected(&apdu.expect, sw) {
                    out.reply.stopped_at = Some(index);
                    return out;
                }
            }
            Some(pb::step::Step::Reset(reset)) => {
                let kind = if reset.cold {
                    ResetKind::Cold
                } else {
                    ResetKind::Warm
                };
                let limit = config.default_timeout;
                let started = clock.now();
                let answer = card.reset_within(kind, limit);
                let took = clock.now().saturating_duration_since(started);
                match answer {
                    Ok(_) if took > limit => {
                        lose(&mut out, CardLost::Timeout { step: i, limit });
                        return out;
                    }
                    Ok(atr) => {
                        tracing::debug!(step = i, ?kind, "reset");
                        out.reply.responses.push(Vec::new());
                        out.reply.atrs_after_reset.push(atr);
                    }
                    Err(e) => {
                        lose(&mut out, lost_of(e, i, limit));
                        return out;
                    }
                }
            }
            None => {
                tracing::warn!(step = i, "a script step of no known kind: the script stops there");
                out.reply.responses.push(Vec::new());
                out.reply.stopped_at = Some(index);
                return out;
            }
        }
    }
    out
}

enum Job {
    Transmit(Vec<u8>),
    Reset(ResetKind),
    Release(Bin),
}

type Answer = Result<Vec<u8>, TransportError>;

/// A connected card on a thread of its own, so that a call that blocks
/// (PC/SC transmit) can be given up on when its time is over. Once a call
/// timed out the watchdog is spent: every later call fails, and releasing
/// it is queued behind the stuck call (the card thread releases the card
/// when that call returns). Dropping it releases the card into the reject
/// bin.
pub struct Watchdog {
    reader: String,
    protocol: u32,
    atr: Vec<u8>,
    jobs: Option<mpsc::Sender<Job>>,
    answers: mpsc::Receiver<Answer>,
    spent: bool,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("reader", &self.reader)
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

/// How long releasing a healthy card may take before the station moves on.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

impl Watchdog {
    /// Moves `card` onto its own thread.
    pub fn new(card: Box<dyn Card>) -> Result<Self, ReaderError> {
        let reader = card.reader().to_owned();
        let protocol = card.protocol();
        let atr = card.atr();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        let name = reader.clone();
        std::thread::Builder::new()
            .name(format!("card {reader}"))
            .spawn(move || card_thread(card, &name, &job_rx, &answer_tx))
            .map_err(|e| ReaderError::Blank {
                reader: reader.clone(),
                reason: format!("cannot start the card's thread: {e}"),
            })?;
        Ok(Watchdog {
            reader,
            protocol,
            atr,
            jobs: Some(jobs),
            answers,
            spent: false,
        })
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// The ATR read at connection or after the last reset.
    pub fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    /// Whether a call timed out (the card is given up on).
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    fn call(&mut self, job: Job, limit: Duration) -> Answer {
        if self.spent {
            return Err(TransportError::Reader(format!(
                "reader {:?}: the card stopped answering earlier",
                self.reader
            )));
        }
        let Some(jobs) = &self.jobs else {
            return Err(TransportError::Reader(format!(
                "reader {:?}: released",
                self.reader
            )));
        };
        if jobs.send(job).is_err() {
            self.spent = true;
            return Err(TransportError::Reader(format!(
                "reader {:?}: the card's thread ended",
                self.reader
            )));
        }
        match self.answers.recv_timeout(limit) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.spent = true;
                Err(TransportError::Timeout(limit))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.spent = true;
                Err(TransportError::Reader(format!(
                    "reader {:?}: the card's thread ended",
                    self.reader
                )))
            }
        }
    }

    /// Lets go of the card into `bin`. A spent watchdog queues the release
    /// and returns at once.
    pub fn release(mut self, bin: Bin) -> Result<(), ReaderError> {
        let Some(jobs) = self.jobs.take() else {
            return Ok(());
        };
        if jobs.send(Job::Release(bin)).is_err() || self.spent {
            return Ok(());
        }
        match self.answers.recv_timeout(RELEASE_WAIT) {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(ReaderError::Blank {
                reader: self.reader.clone(),
                reason: format!("releasing the card: {e}"),
            }),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Job::Release(Bin::Reject));
        }
    }
}

fn card_thread(
    card: Box<dyn Card>,
    reader: &str,
    jobs: &mpsc::Receiver<Job>,
    answers: &mpsc::Sender<Answer>,
) {
    let mut card = Some(card);
    while let Ok(job) = jobs.recv() {
        let Some(c) = card.as_mut() else {
            break;
        };
        let answer = match job {
            Job::Transmit(command) => c.transmit(&command),
            Job::Reset(kind) => c.reset(kind),
            Job::Release(bin) => {
                let result = match card.take() {
                    Some(c) => c.release(bin).map(|()| Vec::new()).map_err(|e| {
                        tracing::warn!(reader, error = %e, "releasing the card failed");
                        TransportError::Reader(e.to_string())
                    }),
                    None => Ok(Vec::new()),
                };
                let _ = answers.send(result);
                break;
            }
        };
        // Nobody may wait any more (the call timed out): that is fine.
        let _ = answers.send(answer);
    }
    if let Some(c) = card.take() {
        if let Err(e) = c.release(Bin::Reject) {
            tracing::warn!(reader, error = %e, "releasing the card failed");
        }
    }
}

impl Bounded for Watchdog {
    fn transmit_within(&mut self, command: &[u8], limit: Duration) -> Result<Vec<u8>, TransportError> {
        self.call(Job::Transmit(command.to_vec()), limit)
    }

    fn reset_within(&mut self, kind: ResetKind, limit: Duration) -> Result<Vec<u8>, TransportError> {
        let atr = self.call(Job::Reset(kind), limit)?;
        self.atr = atr.clone();
        Ok(atr)
    }
}

#[cfg(test)]
mod tests;
