//! The station's PC/SC readers (`station::readers`) against the real pcscd
//! and vpcd: listing by pattern, insertion and removal, connect, ATR,
//! transmit, warm and cold reset, disconnect; and a station that carries on
//! when pcscd restarts under it (its readers disappear and come back).

use std::time::Duration;

use station::readers::{Card, PcscReader, PcscSource, ReaderSource, PROTOCOL_T1};
use tests::harness::{self, Running, Scratch, CARD_WAIT, PORT_0, PORT_1, READER_0, READER_1};
use tests::piv;
use tests::stack::{piv_escrow_csv, Keyserver, StationRun};
use vsc::codec::{CommandApdu, StatusWord};
use vsc::transport::{exchange, CardTransport, ResetKind, TransportError};

/// A connected station card as a [`CardTransport`] for the test helpers.
struct Dyn<'a>(&'a mut dyn Card);

impl CardTransport for Dyn<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.0.transmit(command)
    }
    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        self.0.reset(kind)
    }
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
}

/// GET DATA card data (`80 CA 00 66`), sent inside the SCP03 session;
/// the status word the card gave.
fn in_session(t: &mut impl CardTransport, session: &mut vsc::scp03::HostSession) -> StatusWord {
    let c = CommandApdu::new(0x80, 0xCA, 0x00, 0x66).with_ne(256).unwrap();
    let w = session.wrap(&c).unwrap();
    exchange(t, &w.apdu, false).unwrap().sw
}

#[test]
fn pcsc_readers_list_watch_connect_transmit_reset_and_see_removal() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();

    // Listing by pattern.
    assert_eq!(
        PcscSource::new("Virtual PCD*").list().unwrap(),
        [READER_0, READER_1]
    );
    assert_eq!(PcscSource::new(READER_1).list().unwrap(), [READER_1]);
    assert!(PcscSource::new("No such reader*").list().unwrap().is_empty());

    // An empty reader: no card within the time asked.
    let mut source = PcscSource::new("Virtual PCD*");
    let mut slot = source.open(READER_0).unwrap();
    assert_eq!(slot.name(), READER_0);
    assert_eq!(slot.next_card(None, Duration::from_millis(300)).unwrap(), None);

    // Insertion: the card, its ATR.
    let card_file = scratch.blank("00006100", "a.vsc");
    let served = Running::serve(&scratch, &card_file, PORT_0);
    let first = slot.next_card(None, CARD_WAIT).unwrap().expect("a card");
    assert!(first.present);
    assert_eq!(first.atr.first(), Some(&0x3B), "{:02X?}", first.atr);
    // The same card is not "another" one.
    assert_eq!(
        slot.next_card(Some(first.event_count), Duration::from_millis(300))
            .unwrap(),
        None
    );

    // Connect, ATR, transmit.
    let mut card = slot.connect().unwrap();
    assert_eq!(card.reader(), READER_0);
    assert_eq!(card.atr(), first.atr);
    assert_eq!(card.protocol(), PROTOCOL_T1);
    // The security domain is selected after connect. A warm reset ends
    // the SCP03 session: the same wrapped command is refused afterwards.
    // So does a cold one.
    for kind in [ResetKind::Warm, ResetKind::Cold] {
        let mut t = Dyn(card.as_mut());
        let (mut session, serial) = piv::open_scp03(&mut t).unwrap();
        assert_eq!(serial, 6100);
        assert_eq!(in_session(&mut t, &mut session), StatusWord::Success, "{kind:?}");
        let atr = t.reset(kind).unwrap();
        assert_eq!(atr, first.atr, "{kind:?}: the ATR after the reset");
        assert_eq!(
            in_session(&mut t, &mut session),
            StatusWord::SecurityStatusNotSatisfied,
            "{kind:?}: the session survived the reset"
        );
    }

    let select = piv::select_piv_command().to_bytes();
    let answer = card.transmit(&select).unwrap();
    assert_eq!(
        answer.get(answer.len() - 2..),
        Some(&[0x90, 0x00][..]),
        "{answer:02X?}"
    );

    // Disconnect (released untouched: power stays), then removal.
    card.release(station::readers::Bin::Untouched).unwrap();
    drop(served);
    assert_eq!(
        slot.next_card(Some(first.event_count), Duration::from_millis(300))
            .unwrap(),
        None
    );
    assert!(!PcscReader::open(READER_0).unwrap().presence().unwrap().present);

    // Another card: a new event count, a card again.
    let b = scratch.blank("00006101", "b.vsc");
    let _served = Running::serve(&scratch, &b, PORT_0);
    let second = slot
        .next_card(Some(first.event_count), CARD_WAIT)
        .unwrap()
        .expect("the next card");
    assert_ne!(second.event_count, first.event_count);
    assert!(second.present);
}

#[test]
fn a_station_carries_on_when_pcscd_restarts_and_its_readers_come_back() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let ks = Keyserver::start(&scratch.join("keyserver"), 3);
    let (csv, _) = piv_escrow_csv("pcscd-restart", 2);
    ks.submit("pcscd-restart", "piv-escrow", &csv);
    let bundle = ks.enroll("desk-r");
    let mut station = StationRun::start(
        &bundle,
        "pcscd-restart",
        "Virtual PCD*",
        &scratch.join("journal"),
        &["--cards", "2", "--idle-exit", "120", "--max-backoff", "1"],
    );
    station.wait_until("both readers waiting", |ev| {
        [READER_0, READER_1].iter().all(|r| {
            ev.iter()
                .any(|e| e["event"] == "reader" && e["reader"] == *r && e["state"] == "waiting")
        })
    });

    // Card 1 in reader 0: passes.
    let first = scratch.blank("00006200", "c1.vsc");
    let served = Running::serve(&scratch, &first, PORT_0);
    station.wait_until("card 1 passed", |ev| {
        ev.iter().any(|e| e["event"] == "card" && e["bin"] == "pass")
    });
    drop(served);

    // pcscd goes away and comes back: the readers vanish, then return.
    let before = station.events().len();
    harness::restart_pcscd();
    station.wait_until("the readers gone, then waiting again", |ev| {
        let after = ev.get(before..).unwrap_or_default();
        [READER_0, READER_1].iter().all(|r| {
            let gone = after
                .iter()
                .position(|e| e["event"] == "reader" && e["reader"] == *r && e["state"] == "gone");
            gone.is_some_and(|g| {
                after
                    .get(g..)
                    .unwrap_or_default()
                    .iter()
                    .any(|e| e["event"] == "reader" && e["reader"] == *r && e["state"] == "waiting")
            })
        })
    });

    // Card 2, in the other reader: passes; the run ends after 2 cards.
    let second = scratch.blank("00006201", "c2.vsc");
    let _served = Running::serve(&scratch, &second, PORT_1);
    assert_eq!(station.wait(), Some(0), "{}", station.proc.describe());
    let s = station.summary();
    assert_eq!((s.passed, s.rejected), (2, 0), "{}", station.proc.describe());
    let cards = station.events_of("card");
    assert_eq!(cards[1]["reader"], READER_1);
    assert_eq!(ks.job_status("pcscd-restart").issued, 2);
}
