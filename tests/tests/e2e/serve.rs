//! `vsc serve` through pcscd: the card as PC/SC sees it, a pcscd restart,
//! Ctrl-C.

use std::time::Duration;

use station::readers::PcscReader;
use tests::harness::{self, Running, Scratch, CARD_WAIT, PORT_0, PORT_1, READER_0, READER_1};
use tests::piv;
use vsc::card::gp_state;
use vsc::card::identity::DEFAULT_ATR;
use vsc::codec::StatusWord;
use vsc::file::Vsc;
use vsc::transport::{exchange, CardTransport, ResetKind};

/// The sequence counter of the stock key set (INITIALIZE UPDATE saves it:
/// a persistent change a client makes through pcscd).
fn sequence_counter(scratch: &Scratch, card: &std::path::Path) -> u32 {
    let vsc = Vsc::load(card, &scratch.unlock()).unwrap();
    gp_state::keysets(&vsc).unwrap()[0].set.sequence_counter
}

#[test]
fn pcscd_sees_the_served_card_in_either_reader() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let a = scratch.blank("00002001", "a.vsc");
    let b = scratch.blank("00002002", "b.vsc");
    let _sa = Running::serve(&scratch, &a, PORT_0);
    let _sb = Running::serve(&scratch, &b, PORT_1);
    let names = PcscReader::list("Virtual PCD*").unwrap();
    assert!(names.iter().any(|n| n == READER_0), "{names:?}");
    assert!(names.iter().any(|n| n == READER_1), "{names:?}");
    for (reader, serial) in [(READER_0, 2001), (READER_1, 2002)] {
        let mut r = PcscReader::open(reader).unwrap();
        r.connect().unwrap();
        assert_eq!(r.atr(), DEFAULT_ATR.to_vec());
        // The card behind each reader is the one served on its port.
        let (_session, got) = piv::open_scp03(&mut r).unwrap();
        assert_eq!(got, serial, "{reader}");
        // Resets clear the secure channel; the ATR comes again.
        assert_eq!(r.reset(ResetKind::Warm).unwrap(), DEFAULT_ATR.to_vec());
        assert_eq!(r.reset(ResetKind::Cold).unwrap(), DEFAULT_ATR.to_vec());
        let sw = exchange(&mut r, &piv::select_piv_command(), true).unwrap().sw;
        assert_ne!(sw, StatusWord::FileNotFound);
        r.disconnect().unwrap();
    }
}

#[test]
fn serve_survives_a_pcscd_restart_and_ctrl_c_removes_the_card_with_the_file_saved() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let card = scratch.blank("00002003", "card.vsc");
    let mut served = Running::serve(&scratch, &card, PORT_0);
    assert!(served.stdout.wait_for("connected: card 00002003", 1, CARD_WAIT));

    let mut r = harness::wait_for_card(READER_0);
    r.connect().unwrap();
    piv::open_scp03(&mut r).unwrap();
    r.disconnect().unwrap();
    drop(r);
    assert_eq!(sequence_counter(&scratch, &card), 1, "saved before the response");

    harness::restart_pcscd();
    assert!(
        served.stdout.wait_for("reconnected: card 00002003", 1, CARD_WAIT),
        "no reconnection after the pcscd restart: {:?} {:?}",
        served.stdout.all(),
        served.stderr.all()
    );
    let lines = served.stdout.all();
    assert!(
        lines.iter().any(|l| l.starts_with("pcscd closed the connection")),
        "{lines:?}"
    );

    let mut r = harness::wait_for_card(READER_0);
    r.connect().unwrap();
    piv::open_scp03(&mut r).unwrap();
    r.disconnect().unwrap();

    assert_eq!(served.interrupt(), Some(0), "{:?}", served.stderr.all());
    assert!(served
        .stdout
        .wait_for("removed: card 00002003", 1, Duration::from_secs(5)));
    r.wait_for_removal(CARD_WAIT).unwrap();
    assert_eq!(sequence_counter(&scratch, &card), 2);
}
