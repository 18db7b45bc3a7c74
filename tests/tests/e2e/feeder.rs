//! `vsc feeder` through pcscd: cards fed through both vpcd readers into
//! pass and reject bins, and what happens when the feeder stops.

use std::path::Path;
use std::time::{Duration, Instant};

use station::readers::{PcscReader, Presence};
use tests::harness::{self, Running, Scratch, CARD_WAIT, READER_0, READER_1};
use tests::piv;
use vsc::feeder::{read_log, Bin};

fn stock(scratch: &Scratch, first: u32, count: u32) -> std::path::PathBuf {
    scratch.blank_stock("stock", first, count)
}

fn feeder(scratch: &Scratch, stock: &Path, out: &Path) -> Running {
    feeder_with(scratch, stock, out, &["--ports", "35963-35964"])
}

fn feeder_with(scratch: &Scratch, stock: &Path, out: &Path, extra: &[&str]) -> Running {
    scratch.feeder(stock, out, extra, vec![READER_0, READER_1])
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

/// What the test client does with a card.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// Opens SCP03 with the stock keys, adds an issuer key set (PUT KEY)
    /// and sends SET STATUS SECURED.
    Personalize,
    /// Opens SCP03, then walks away.
    Abandon,
}

/// Serves cards as they come into either reader until `plan` is done;
/// returns (serial, what was done) per card.
fn client(plan: &[Client]) -> Vec<(u32, Client)> {
    let readers = [
        PcscReader::open(READER_0).unwrap(),
        PcscReader::open(READER_1).unwrap(),
    ];
    let mut last: [Option<Presence>; 2] = [None, None];
    let mut done = Vec::new();
    let deadline = Instant::now() + CARD_WAIT * 4;
    while done.len() < plan.len() {
        assert!(Instant::now() < deadline, "the feeder stopped feeding: {done:?}");
        for (i, reader) in readers.iter().enumerate() {
            let Some(&what) = plan.get(done.len()) else { break };
            let p = reader.presence().unwrap();
            let fresh = p.present && last[i].as_ref().is_none_or(|l| l.event_count != p.event_count);
            if !fresh {
                continue;
            }
            let mut r = PcscReader::open(reader.name()).unwrap();
            r.connect().unwrap();
            let (mut session, serial) = piv::open_scp03(&mut r).unwrap();
            if what == Client::Personalize {
                piv::personalize_minimal(&mut r, &mut session)
                    .unwrap_or_else(|e| panic!("personalizing {serial:08}: {e}"));
            }
            r.disconnect().unwrap();
            done.push((serial, what));
            last[i] = Some(p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done
}

#[test]
fn four_cards_through_two_readers_three_pass_one_rejected() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let stock = stock(&scratch, 3000, 4);
    let out = scratch.join("out");
    let mut f = feeder(&scratch, &stock, &out);
    let plan = [
        Client::Personalize,
        Client::Abandon,
        Client::Personalize,
        Client::Personalize,
    ];
    let done = client(&plan);

    assert_eq!(f.wait_exit(CARD_WAIT * 2), Some(0), "{:?}", f.stderr.all());
    let summary = f.stdout.all().join("\n");
    assert!(summary.contains("3 passed, 1 rejected"), "{summary}");
    assert!(names(&stock).is_empty());
    assert!(names(&out.join("inflight")).is_empty());
    let abandoned = format!("{:08}", done[1].0);
    let mut passed: Vec<String> = done
        .iter()
        .filter(|(_, w)| *w == Client::Personalize)
        .map(|(s, _)| format!("{s:08}.vsc"))
        .collect();
    passed.sort();
    assert_eq!(names(&out.join("pass")), passed);
    assert_eq!(names(&out.join("reject")), [format!("{abandoned}.vsc")]);

    let log = read_log(&out).unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    for line in &log {
        assert!([35963, 35964].map(Some).contains(&line.port), "{line:?}");
        if line.serial == abandoned {
            assert_eq!(line.bin, Bin::Reject, "{line:?}");
            assert!(
                line.reason.contains("powered off after personalization started"),
                "{line:?}"
            );
        } else {
            assert_eq!(line.bin, Bin::Pass, "{line:?}");
            assert!(line.reason.contains("SECURED"), "{line:?}");
        }
    }
    // One progress line per card.
    let progress = f.stderr.all();
    assert_eq!(
        progress.iter().filter(|l| l.contains(" → ")).count(),
        4,
        "{progress:?}"
    );
}

#[test]
fn the_feeder_recovers_cards_left_in_flight_and_stops_cleanly() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let stock = stock(&scratch, 4000, 3);
    let out = scratch.join("out");
    // A crash of an earlier run left a card in flight.
    std::fs::create_dir_all(out.join("inflight")).unwrap();
    std::fs::rename(stock.join("00004002.vsc"), out.join("inflight/00004002.vsc")).unwrap();

    let mut f = feeder(&scratch, &stock, &out);
    // Both readers get a card; one is abandoned after SCP03 started.
    let done = client(&[Client::Abandon]);
    let rejected = format!("{:08}", done[0].0);
    // The rejected card's reader is free and the stock is empty; the other
    // card is untouched and stays in its reader.
    let deadline = Instant::now() + CARD_WAIT;
    while !names(&out.join("reject")).contains(&format!("{rejected}.vsc")) {
        assert!(Instant::now() < deadline, "{:?}", f.stderr.all());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.interrupt(), Some(0), "{:?}", f.stderr.all());

    let untouched: Vec<String> = ["00004000.vsc", "00004001.vsc"]
        .into_iter()
        .filter(|n| *n != format!("{rejected}.vsc"))
        .map(String::from)
        .collect();
    assert_eq!(
        names(&stock),
        untouched,
        "an untouched card goes back to the stock"
    );
    assert!(names(&out.join("inflight")).is_empty());
    assert_eq!(names(&out.join("reject")), {
        let mut r = vec!["00004002.vsc".to_owned(), format!("{rejected}.vsc")];
        r.sort();
        r
    });
    let log = read_log(&out).unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    let recovered = log.iter().find(|l| l.serial == "00004002").unwrap();
    assert_eq!((recovered.port, recovered.bin), (None, Bin::Reject));
    assert!(recovered.reason.contains("earlier feeder run"), "{recovered:?}");
    let stderr = f.stderr.all();
    assert!(
        stderr.iter().any(|l| l.contains("00004002 → reject (recovered)")),
        "{stderr:?}"
    );
    let summary = f.stdout.all().join("\n");
    assert!(summary.contains("0 passed, 1 rejected, 1 recovered"), "{summary}");
}

#[test]
fn a_card_left_half_done_is_rejected_after_the_idle_timeout() {
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let stock = stock(&scratch, 4100, 1);
    let out = scratch.join("out");
    let mut f = feeder_with(
        &scratch,
        &stock,
        &out,
        &["--ports", "35963", "--idle-timeout", "2"],
    );
    // The client opens SCP03 and then holds the card without a command.
    let mut r = harness::wait_for_card(READER_0);
    r.connect().unwrap();
    piv::open_scp03(&mut r).unwrap();
    // The feeder takes the card out; with the stock empty it is done.
    assert_eq!(f.wait_exit(CARD_WAIT), Some(0), "{:?}", f.stderr.all());
    drop(r);
    assert_eq!(names(&out.join("reject")), ["00004100.vsc"]);
    let log = read_log(&out).unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0].bin, log[0].port), (Bin::Reject, Some(35963)));
    assert!(log[0].reason.contains("no command for 2 s"), "{:?}", log[0]);
}
