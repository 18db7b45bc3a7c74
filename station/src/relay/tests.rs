use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vsc::card::blank::BlankCard;
use vsc::card::SoftCard;
use vsc::file::Protector;
use vsc::secret::AesKey;
use vsc::transport::InProcess;

use super::*;

const SELECT_ISD: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00,
];
const SELECT_PIV: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];
const GET_CPLC: &[u8] = &[0x80, 0xCA, 0x9F, 0x7F, 0x00];

/// A clock tests move by hand.
#[derive(Clone)]
struct FakeClock(Arc<Mutex<Instant>>);

impl FakeClock {
    fn new() -> Self {
        FakeClock(Arc::new(Mutex::new(Instant::now())))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

/// What a scripted card does for one call.
enum Act {
    Answer(Vec<u8>),
    /// Answers, but the call takes this long on the fake clock.
    Slow(Vec<u8>, Duration),
    Fail(TransportError),
}

/// A scripted transport: answers in order, records what it was sent.
struct Scripted {
    acts: VecDeque<Act>,
    sent: Vec<Vec<u8>>,
    resets: Vec<ResetKind>,
    clock: FakeClock,
}

impl Scripted {
    fn new(clock: &FakeClock, acts: Vec<Act>) -> Self {
        Scripted {
            acts: acts.into(),
            sent: Vec::new(),
            resets: Vec::new(),
            clock: clock.clone(),
        }
    }
    fn next(&mut self) -> Result<Vec<u8>, TransportError> {
        match self.acts.pop_front() {
            Some(Act::Answer(r)) => Ok(r),
            Some(Act::Slow(r, d)) => {
                self.clock.advance(d);
                Ok(r)
            }
            Some(Act::Fail(e)) => Err(e),
            None => panic!("the relay sent more than the test scripted"),
        }
    }
}

impl CardTransport for Scripted {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(command.to_vec());
        self.next()
    }
    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        self.resets.push(kind);
        self.next()
    }
    fn atr(&self) -> Vec<u8> {
        vec![0x3B]
    }
}

fn apdu(command: &[u8], expect: &[(u32, u32)], timeout_ms: u32) -> pb::Step {
    pb::Step {
        step: Some(pb::step::Step::Apdu(pb::Apdu {
            command: command.to_vec(),
            expect: expect
                .iter()
                .map(|&(value, mask)| pb::SwPattern { value, mask })
                .collect(),
            timeout_ms,
        })),
    }
}

fn ok(command: &[u8]) -> pb::Step {
    apdu(command, &[(0x9000, 0xFFFF)], 0)
}

fn reset(cold: bool) -> pb::Step {
    pb::Step {
        step: Some(pb::step::Step::Reset(pb::Reset { cold })),
    }
}

fn script(steps: Vec<pb::Step>) -> pb::Script {
    pb::Script { round_trip: 1, steps }
}

fn config() -> RelayConfig {
    RelayConfig {
        default_timeout: Duration::from_secs(10),
    }
}

fn soft_card(serial: u32) -> InProcess<SoftCard> {
    let kek = Protector::Kek {
        key_id: "test/1".into(),
        key: AesKey::from_slice(&[7; 32]).unwrap(),
    };
    let vsc = BlankCard::new(serial)
        .unwrap()
        .build(&kek, &mut rand::rngs::OsRng)
        .unwrap();
    InProcess::insert(SoftCard::new(vsc).unwrap())
}

#[test]
fn commands_and_responses_pass_unchanged() {
    let clock = FakeClock::new();
    // Odd bytes on purpose: a 61xx the relay must not follow with GET
    // RESPONSE, a malformed command, a long response.
    let odd = vec![0xFF, 0x00];
    let long: Vec<u8> = (0..=255u8).cycle().take(4000).chain([0x90, 0x00]).collect();
    let mut card = Scripted::new(
        &clock,
        vec![
            Act::Answer(vec![0x01, 0x02, 0x61, 0x10]),
            Act::Answer(vec![0x6D, 0x00]),
            Act::Answer(long.clone()),
        ],
    );
    let s = script(vec![
        apdu(SELECT_PIV, &[(0x6100, 0xFF00)], 0),
        apdu(&odd, &[(0x6D00, 0xFFFF)], 0),
        ok(&[
            0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00, 0x00,
        ]),
    ]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(out.lost, None);
    assert_eq!(out.commands_sent, 3);
    assert_eq!(
        card.sent,
        vec![
            SELECT_PIV.to_vec(),
            odd,
            vec![0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00, 0x00]
        ]
    );
    assert_eq!(
        out.reply,
        pb::Reply {
            responses: vec![vec![0x01, 0x02, 0x61, 0x10], vec![0x6D, 0x00], long],
            atrs_after_reset: vec![],
            stopped_at: None,
            ..Default::default()
        }
    );
}

#[test]
fn the_script_stops_at_the_first_unexpected_status_word() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(
        &clock,
        vec![Act::Answer(vec![0x90, 0x00]), Act::Answer(vec![0x6A, 0x82])],
    );
    let s = script(vec![ok(SELECT_ISD), ok(SELECT_PIV), ok(GET_CPLC)]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(out.reply.stopped_at, Some(1));
    assert_eq!(out.reply.responses, vec![vec![0x90, 0x00], vec![0x6A, 0x82]]);
    assert!(!out.reply.card_removed);
    assert_eq!(out.lost, None);
    // The third command never reached the card.
    assert_eq!(card.sent.len(), 2);
}

#[test]
fn patterns_match_with_their_masks_and_an_empty_list_lets_nothing_through() {
    let p = |value, mask| pb::SwPattern { value, mask };
    assert!(expected(&[p(0x6100, 0xFF00)], Some(0x6110)));
    assert!(!expected(&[p(0x6100, 0xFF00)], Some(0x6210)));
    assert!(expected(&[p(0x9000, 0xFFFF), p(0x63C0, 0xFFF0)], Some(0x63C2)));
    assert!(expected(&[p(0, 0)], Some(0x6F00)));
    assert!(!expected(&[], Some(0x9000)));
    assert!(!expected(&[p(0, 0)], None));
    // A response without a status word stops the script.
    let clock = FakeClock::new();
    let mut card = Scripted::new(&clock, vec![Act::Answer(vec![0x90])]);
    let out = run_script(
        &mut card,
        &clock,
        &script(vec![ok(SELECT_ISD), ok(SELECT_PIV)]),
        &config(),
    );
    assert_eq!(out.reply.stopped_at, Some(0));
    assert_eq!(out.reply.responses, vec![vec![0x90]]);
}

#[test]
fn a_removed_card_ends_the_script_with_card_removed() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(
        &clock,
        vec![
            Act::Answer(vec![0x90, 0x00]),
            Act::Fail(TransportError::CardRemoved),
        ],
    );
    let s = script(vec![ok(SELECT_ISD), ok(GET_CPLC), ok(SELECT_PIV)]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert!(out.reply.card_removed);
    assert_eq!(out.reply.card_lost_reason, pb::CardLostReason::Removed as i32);
    assert_eq!(out.reply.card_lost_detail, "the card was removed at step 1");
    assert_eq!(out.reply.stopped_at, None);
    assert_eq!(out.reply.responses, vec![vec![0x90, 0x00]]);
    assert_eq!(out.lost, Some(CardLost::Removed { step: 1 }));
    assert_eq!(card.sent.len(), 2);
}

#[test]
fn a_reader_failure_is_a_lost_card() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(&clock, vec![Act::Fail(TransportError::Reader("gone".into()))]);
    let out = run_script(&mut card, &clock, &script(vec![ok(SELECT_ISD)]), &config());
    assert!(out.reply.card_removed);
    assert_eq!(
        out.reply.card_lost_reason,
        pb::CardLostReason::ReaderFailed as i32
    );
    assert!(
        out.reply.card_lost_detail.contains("the reader failed at step 0")
            && out.reply.card_lost_detail.contains("gone"),
        "{:?}",
        out.reply.card_lost_detail
    );
    assert!(matches!(out.lost, Some(CardLost::Reader { step: 0, .. })));
}

#[test]
fn a_late_answer_is_a_timeout_and_is_not_relayed() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(
        &clock,
        vec![
            Act::Slow(vec![0x90, 0x00], Duration::from_millis(900)),
            Act::Slow(vec![0x90, 0x00], Duration::from_millis(1500)),
        ],
    );
    let s = script(vec![
        apdu(SELECT_ISD, &[(0x9000, 0xFFFF)], 1000),
        apdu(GET_CPLC, &[(0x9000, 0xFFFF)], 1000),
        ok(SELECT_PIV),
    ]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(
        out.lost,
        Some(CardLost::Timeout {
            step: 1,
            limit: Duration::from_secs(1)
        })
    );
    assert!(out.reply.card_removed);
    assert_eq!(out.reply.card_lost_reason, pb::CardLostReason::Timeout as i32);
    assert_eq!(
        out.reply.card_lost_detail,
        "the card did not answer step 1 within 1s"
    );
    assert_eq!(out.reply.responses, vec![vec![0x90, 0x00]]);
    assert_eq!(card.sent.len(), 2);
}

#[test]
fn timeout_zero_means_the_station_default() {
    let clock = FakeClock::new();
    let slow = || Act::Slow(vec![0x90, 0x00], Duration::from_secs(5));
    let mut card = Scripted::new(&clock, vec![slow()]);
    let s = script(vec![ok(SELECT_ISD)]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(out.lost, None, "5 s is within the default of 10 s");
    let mut card = Scripted::new(&clock, vec![slow()]);
    let short = RelayConfig {
        default_timeout: Duration::from_secs(2),
    };
    let out = run_script(&mut card, &clock, &s, &short);
    assert!(matches!(out.lost, Some(CardLost::Timeout { step: 0, .. })));
    // A transport that enforces the limit itself says Timeout.
    let mut card = Scripted::new(
        &clock,
        vec![Act::Fail(TransportError::Timeout(Duration::from_secs(2)))],
    );
    let out = run_script(&mut card, &clock, &s, &short);
    assert!(matches!(out.lost, Some(CardLost::Timeout { step: 0, .. })));
}

#[test]
fn resets_are_interpreted_and_their_atrs_recorded() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(
        &clock,
        vec![
            Act::Answer(vec![0x90, 0x00]),
            Act::Answer(vec![0x3B, 0x01]),
            Act::Answer(vec![0x90, 0x00]),
            Act::Answer(vec![0x3B, 0x02]),
        ],
    );
    let s = script(vec![ok(SELECT_ISD), reset(false), ok(SELECT_ISD), reset(true)]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(card.resets, vec![ResetKind::Warm, ResetKind::Cold]);
    assert_eq!(card.sent.len(), 2);
    assert_eq!(
        out.reply.responses,
        vec![vec![0x90, 0x00], vec![], vec![0x90, 0x00], vec![]]
    );
    assert_eq!(
        out.reply.atrs_after_reset,
        vec![vec![0x3B, 0x01], vec![0x3B, 0x02]]
    );
    // A reset that fails loses the card.
    let mut card = Scripted::new(&clock, vec![Act::Fail(TransportError::CardRemoved)]);
    let out = run_script(&mut card, &clock, &script(vec![reset(true)]), &config());
    assert_eq!(out.lost, Some(CardLost::Removed { step: 0 }));
    assert!(out.reply.responses.is_empty());
    assert!(out.reply.atrs_after_reset.is_empty());
}

#[test]
fn a_step_of_no_known_kind_stops_the_script() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(&clock, vec![Act::Answer(vec![0x90, 0x00])]);
    let s = script(vec![ok(SELECT_ISD), pb::Step { step: None }, ok(SELECT_ISD)]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(out.reply.stopped_at, Some(1));
    assert_eq!(out.reply.responses, vec![vec![0x90, 0x00], vec![]]);
    assert_eq!(card.sent.len(), 1);
}

#[test]
fn an_empty_script_gets_an_empty_reply() {
    let clock = FakeClock::new();
    let mut card = Scripted::new(&clock, vec![]);
    let out = run_script(&mut card, &clock, &script(vec![]), &config());
    assert_eq!(out.reply, pb::Reply::default());
}

/// Records what an inner transport answered.
struct Recording<T> {
    inner: T,
    answers: Vec<Vec<u8>>,
}

impl<T: CardTransport> CardTransport for Recording<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let r = self.inner.transmit(command)?;
        self.answers.push(r.clone());
        Ok(r)
    }
    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        self.inner.reset(kind)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
}

#[test]
fn a_software_card_answers_through_the_relay_exactly() {
    let clock = SystemClock;
    let mut card = Recording {
        inner: soft_card(4242),
        answers: Vec::new(),
    };
    let atr = card.atr();
    let s = script(vec![
        ok(SELECT_ISD),
        ok(GET_CPLC),
        reset(true),
        ok(SELECT_ISD),
        reset(false),
        apdu(SELECT_PIV, &[(0x9000, 0xFFFF), (0x6100, 0xFF00)], 5000),
        // Not a known AID: 6A82 stops the script.
        ok(&[0x00, 0xA4, 0x04, 0x00, 0x03, 0xA0, 0x00, 0x09, 0x00]),
        ok(SELECT_ISD),
    ]);
    let out = run_script(&mut card, &clock, &s, &config());
    assert_eq!(out.lost, None);
    assert_eq!(out.reply.stopped_at, Some(6));
    assert_eq!(out.reply.atrs_after_reset, vec![atr.clone(), atr]);
    let mut expected_responses = card.answers.clone();
    expected_responses.insert(2, vec![]);
    expected_responses.insert(4, vec![]);
    assert_eq!(out.reply.responses, expected_responses);
    assert_eq!(status_word(&out.reply.responses[1]), Some(0x9000));
    assert!(
        out.reply.responses[1].len() > 2,
        "the CPLC came back with its data"
    );
    assert_eq!(status_word(&out.reply.responses[6]), Some(0x6A82));
}

/// A card whose transmit blocks until the test lets it go.
struct Stuck {
    gate: Gate,
    released: Arc<Mutex<Option<Bin>>>,
}

impl CardTransport for Stuck {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if command.first() == Some(&0xFF) {
            let (m, c) = &*self.gate;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
        }
        Ok(vec![0x90, 0x00])
    }
    fn reset(&mut self, _kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        Ok(vec![0x3B, 0x00])
    }
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x00]
    }
}

impl Card for Stuck {
    fn reader(&self) -> &str {
        "stuck"
    }
    fn protocol(&self) -> u32 {
        2
    }
    fn release(self: Box<Self>, bin: Bin) -> Result<(), ReaderError> {
        *self.released.lock().unwrap() = Some(bin);
        Ok(())
    }
}

type Gate = Arc<(Mutex<bool>, std::sync::Condvar)>;

fn stuck() -> (Stuck, Gate, Arc<Mutex<Option<Bin>>>) {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let released = Arc::new(Mutex::new(None));
    (
        Stuck {
            gate: gate.clone(),
            released: released.clone(),
        },
        gate,
        released,
    )
}

fn wait_for_release(released: &Mutex<Option<Bin>>) -> Bin {
    loop {
        if let Some(b) = *released.lock().unwrap() {
            return b;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_watchdog_gives_up_on_a_card_that_blocks_and_releases_it_later() {
    let (card, gate, released) = stuck();
    let mut w = Watchdog::new(Box::new(card)).unwrap();
    assert_eq!(w.reader(), "stuck");
    assert_eq!(w.protocol(), 2);
    assert_eq!(
        w.transmit_within(SELECT_ISD, Duration::from_secs(30)).unwrap(),
        vec![0x90, 0x00]
    );
    let s = script(vec![
        ok(SELECT_ISD),
        apdu(&[0xFF, 0, 0, 0], &[(0x9000, 0xFFFF)], 50),
        ok(SELECT_ISD),
    ]);
    let out = run_script(&mut w, &SystemClock, &s, &config());
    assert!(matches!(out.lost, Some(CardLost::Timeout { step: 1, .. })));
    assert!(out.reply.card_removed);
    assert_eq!(out.reply.responses, vec![vec![0x90, 0x00]]);
    assert!(w.is_spent());
    // Spent: later calls fail at once.
    assert!(w.transmit_within(SELECT_ISD, Duration::from_secs(30)).is_err());
    // Releasing does not wait for the stuck call…
    w.release(Bin::Reject).unwrap();
    assert_eq!(*released.lock().unwrap(), None);
    // …the card thread releases the card once the call returns.
    let (m, c) = &*gate;
    *m.lock().unwrap() = true;
    c.notify_all();
    assert_eq!(wait_for_release(&released), Bin::Reject);
}

#[test]
fn a_watchdog_releases_into_the_bin_asked_and_rejects_when_dropped() {
    let (card, _gate, released) = stuck();
    let mut w = Watchdog::new(Box::new(card)).unwrap();
    assert_eq!(
        w.reset_within(ResetKind::Cold, Duration::from_secs(30)).unwrap(),
        vec![0x3B, 0x00]
    );
    w.release(Bin::Pass).unwrap();
    assert_eq!(*released.lock().unwrap(), Some(Bin::Pass));

    let (card, _gate, released) = stuck();
    let w = Watchdog::new(Box::new(card)).unwrap();
    drop(w);
    assert_eq!(wait_for_release(&released), Bin::Reject);
}
