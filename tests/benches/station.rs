//! The station's speed, over real processes (`keyserver serve`, `station
//! run`, `vsc feeder`, pcscd and vpcd), the piv-escrow profile:
//!
//! 1. cards/hour with 1 and 2 vpcd readers and 1, 2, 4 and 8 sim readers,
//!    and the scaling efficiency (cards/hour with N readers ÷ N × one
//!    reader);
//! 2. relay overhead: each card's time through station + keyserver vs. the
//!    same APDUs (recorded on the vpcd link) sent directly over PC/SC to a
//!    pristine copy of the same blank card;
//! 3. round trips: the station with a 50 ms network round trip to the
//!    keyserver (a delaying proxy) vs. a one-APDU-per-message relay over
//!    the same network (the recorded APDUs, each paying the 50 ms).
//!
//! Cards run at a card-speed model: every APDU takes at least D ms (a
//! proxy on the vpcd link, `sim:N@Dms` for sim readers), D = 0 (software
//! cards as fast as the CPU allows) and D = 20 (a real card's pace).
//!
//! ```sh
//! cargo bench -p tests --bench station                 # D = 0 and 20, 6 cards per reader
//! cargo bench -p tests --bench station -- 20 10        # D = 20 only, 10 cards per reader
//! ```
//!
//! Needs pcscd and vpcd (started through `scripts/pcscd` when none runs).
//! Prints figures; asserts only that the work was done (every card passed,
//! every replayed APDU answered with the recorded status word).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tests::cardlink::{CardLink, Exchange};
use tests::harness::{self, Running, Scratch, PORT_0, PORT_1, READER_0};
use tests::netdelay::NetDelay;
use tests::stack::{piv_escrow_csv, Keyserver, StationRun, PATIENCE};
use vsc::codec::ResponseApdu;
use vsc::scp03::InitializeUpdateResponse;

/// A keyserver with one piv-escrow job of `records` records (its RSA pool
/// full before the clock starts), a station enrolled, blank stock and a
/// pristine copy of it.
struct Desk {
    scratch: Scratch,
    ks: Keyserver,
    job: String,
    bundle: PathBuf,
    stock: PathBuf,
    pristine: PathBuf,
    out: PathBuf,
}

impl Desk {
    fn new(job: &str, records: usize, first: u32, blanks: u32) -> Desk {
        let scratch = Scratch::new();
        let ks = Keyserver::start(&scratch.join("keyserver"), records + 2);
        // The pool fills in the background; wait for it so that every
        // run draws warm keys (see BENCHMARKS.md, keyserver).
        let deadline = Instant::now() + PATIENCE;
        while !ks.serve.as_ref().is_some_and(|p| {
            (p.stdout.all().iter())
                .chain(p.stderr.all().iter())
                .any(|l| l.contains("RSA key pool refilled"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the RSA pool never filled: {}",
                ks.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (csv, _) = piv_escrow_csv(job, records);
        ks.submit(job, "piv-escrow", &csv);
        let bundle = ks.enroll("bench-desk");
        let (stock, pristine) = if blanks > 0 {
            (
                scratch.blank_stock("stock", first, blanks),
                scratch.blank_stock("pristine", first, blanks),
            )
        } else {
            (scratch.join("stock"), scratch.join("pristine"))
        };
        let out = scratch.join("bins");
        Desk {
            scratch,
            ks,
            job: job.into(),
            bundle,
            stock,
            pristine,
            out,
        }
    }

    fn station(&self, readers: &str, cards: usize, extra: &[&str]) -> StationRun {
        let n = cards.to_string();
        let mut all = vec!["--cards", &n, "--max-backoff", "2", "--idle-exit", "120"];
        all.extend_from_slice(extra);
        StationRun::start(
            &self.bundle,
            &self.job,
            readers,
            &self.scratch.join("journal"),
            &all,
        )
    }

    fn feeder(&self, ports: &[u16]) -> Running {
        let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        self.scratch
            .feeder(&self.stock, &self.out, &["--ports", &ports], vec![])
    }
}

/// One run's outcome.
struct Run {
    cards_per_hour: u64,
    /// Per passed card: (serial, seconds from request to settled).
    cards: Vec<(String, f64)>,
}

fn finish(mut station: StationRun, cards: usize) -> Run {
    assert_eq!(station.wait(), Some(0), "{}", station.proc.describe());
    let s = station.summary();
    assert_eq!(
        (s.passed, s.rejected),
        (cards as u64, 0),
        "{}",
        station.proc.describe()
    );
    let cards = station
        .events_of("card")
        .iter()
        .map(|e| {
            (
                e["card_serial"].as_str().unwrap_or_default().to_string(),
                e["seconds"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    Run {
        cards_per_hour: s.cards_per_hour,
        cards,
    }
}

/// `readers` vpcd readers, every APDU slowed to `card` by a proxy that
/// also records them. The run and each reader's recordings.
fn vpcd_run(
    readers: usize,
    per_reader: usize,
    card: Duration,
    extra: &[&str],
    ks_port: Option<u16>,
) -> (Run, Desk, Vec<CardLink>) {
    let cards = readers * per_reader;
    let desk = Desk::new(&format!("bench-vpcd{readers}"), cards, 8_000_000, cards as u32);
    let links: Vec<CardLink> = [PORT_0, PORT_1]
        .iter()
        .take(readers)
        .map(|p| CardLink::start(*p, card))
        .collect();
    let mut feeder = desk.feeder(&links.iter().map(CardLink::port).collect::<Vec<_>>());
    let pattern = if readers == 1 { READER_0 } else { "Virtual PCD*" };
    let url = ks_port.map(|p| format!("https://127.0.0.1:{p}"));
    let mut all: Vec<&str> = extra.to_vec();
    if let Some(u) = &url {
        all.extend_from_slice(&["--keyserver", u]);
    }
    let station = desk.station(pattern, cards, &all);
    let run = finish(station, cards);
    feeder.interrupt();
    (run, desk, links)
}

fn sim_run(readers: usize, per_reader: usize, card: Duration) -> Run {
    let cards = readers * per_reader;
    let desk = Desk::new(&format!("bench-sim{readers}"), cards, 0, 0);
    let station = desk.station(&format!("sim:{readers}@{}ms", card.as_millis()), cards, &[]);
    finish(station, cards)
}

/// The recorded exchanges of each card by serial (from the key
/// diversification data INITIALIZE UPDATE returned, as `piv::open_scp03`
/// reads it: its last 4 bytes).
fn recordings(link: &CardLink) -> Vec<(String, Vec<Exchange>)> {
    let all = link.exchanges();
    let mut ids: Vec<u64> = all.iter().map(|e| e.card).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let ex: Vec<Exchange> = all.iter().filter(|e| e.card == id).cloned().collect();
            let iu = ex.iter().find(|e| e.command.get(1) == Some(&0x50))?;
            let response = ResponseApdu::parse(&iu.response).ok()?;
            let kdd = InitializeUpdateResponse::from_response(&response)
                .ok()?
                .key_diversification_data;
            let [.., a, b, c, d] = kdd;
            let serial = u32::from_be_bytes([a, b, c, d]);
            Some((format!("{serial:08}"), ex))
        })
        .collect()
}

/// Sends `exchanges`' commands to a pristine copy of the card through a
/// link slowing every APDU to `per_apdu`; the time from the first command
/// to the last answer. Every answer must end with the recorded status
/// word.
fn replay(scratch: &Scratch, card: &Path, exchanges: &[Exchange], per_apdu: Duration) -> Duration {
    let link = CardLink::start(PORT_0, per_apdu);
    let mut args = vec![
        "serve".to_string(),
        card.to_str().unwrap().to_string(),
        "--port".into(),
        link.port().to_string(),
    ];
    args.extend(scratch.kek_args());
    let served = Running::vsc(&args, vec![READER_0]);
    let mut r = harness::wait_for_card(READER_0);
    r.connect().unwrap();
    let start = Instant::now();
    for (i, e) in exchanges.iter().enumerate() {
        let answer = r.transmit_apdu(&e.command).unwrap();
        assert_eq!(
            answer.get(answer.len().saturating_sub(2)..),
            e.response.get(e.response.len().saturating_sub(2)..),
            "replaying {}: command {i} ({:02X?}…) answered differently",
            card.display(),
            e.command.get(..4)
        );
    }
    let took = start.elapsed();
    r.disconnect_with(pcsc::Disposition::UnpowerCard).unwrap();
    drop(served);
    drop(link);
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Station time vs. direct replay, per card, for a vpcd run.
fn relay_figures(desk: &Desk, run: &Run, link: &CardLink, per_apdu: Duration) -> (f64, f64, usize) {
    let rec = recordings(link);
    assert_eq!(rec.len(), run.cards.len(), "one recording per card");
    let mut direct = Vec::new();
    let mut apdus = 0;
    for (serial, ex) in &rec {
        let card = desk.pristine.join(format!("{serial}.vsc"));
        direct.push(replay(&desk.scratch, &card, ex, per_apdu).as_secs_f64());
        apdus = apdus.max(ex.len());
    }
    let relayed = median(run.cards.iter().map(|c| c.1).collect());
    (relayed, median(direct), apdus)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let delays: Vec<u64> = match args.first().and_then(|a| a.parse().ok()) {
        Some(d) => vec![d],
        None => vec![0, 20],
    };
    let per_reader: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(6);
    harness::ensure_pcscd();
    let _readers = harness::lock_readers();
    println!("station benchmark: piv-escrow cards, {per_reader} cards per reader, one run per row");

    for d in &delays {
        let card = Duration::from_millis(*d);
        println!();
        println!("== card-speed model: every APDU takes at least {d} ms");
        println!(
            "{:<14} {:>7} {:>11} {:>12} {:>11}",
            "readers", "cards", "cards/hour", "s/card (med)", "efficiency"
        );
        let (v1, desk1, links1) = vpcd_run(1, per_reader, card, &[], None);
        let (v2, _desk2, _links2) = vpcd_run(2, per_reader, card, &[], None);
        let row = |name: &str, r: &Run, base: &Run, n: usize| {
            let eff = r.cards_per_hour as f64 / (n as f64 * base.cards_per_hour as f64);
            println!(
                "{:<14} {:>7} {:>11} {:>12.3} {:>11.2}",
                name,
                r.cards.len(),
                r.cards_per_hour,
                median(r.cards.iter().map(|c| c.1).collect()),
                eff
            );
        };
        row("vpcd 1", &v1, &v1, 1);
        row("vpcd 2", &v2, &v1, 2);
        let s1 = sim_run(1, per_reader, card);
        row("sim 1", &s1, &s1, 1);
        for n in [2, 4, 8] {
            let s = sim_run(n, per_reader, card);
            row(&format!("sim {n}"), &s, &s1, n);
        }

        // Relay overhead, from the vpcd-1 run's recordings.
        let (relayed, direct, apdus) = relay_figures(&desk1, &v1, &links1[0], card);
        println!(
            "relay overhead: {relayed:.3} s per card through station + keyserver vs {direct:.3} s for the \
             same {apdus} APDUs sent directly over PC/SC (median): {:.2}×",
            relayed / direct
        );
        drop(desk1);
    }

    // Round trips with a 50 ms network round trip to the keyserver.
    let card = Duration::from_millis(*delays.last().unwrap_or(&20));
    let cards = per_reader.min(6);
    {
        let desk = Desk::new("bench-rtt", cards, 9_000_000, cards as u32);
        let net = NetDelay::start(desk.ks.port, Duration::from_millis(25));
        let link = CardLink::start(PORT_0, card);
        let mut feeder = desk.feeder(&[link.port()]);
        let url = format!("https://127.0.0.1:{}", net.port());
        let station = desk.station(READER_0, cards, &["--keyserver", &url]);
        let run = finish(station, cards);
        feeder.interrupt();
        let round_trips = 3;
        let rec = recordings(&link);
        let mut one_apdu = Vec::new();
        let mut apdus = 0;
        for (serial, ex) in &rec {
            let c = desk.pristine.join(format!("{serial}.vsc"));
            one_apdu.push(replay(&desk.scratch, &c, ex, card + Duration::from_millis(50)).as_secs_f64());
            apdus = apdus.max(ex.len());
        }
        println!();
        println!(
            "== a 50 ms network round trip between station and keyserver, cards at {} ms per APDU",
            card.as_millis()
        );
        println!(
            "station + keyserver ({round_trips} script round trips per card): {:.3} s per card (median of {})",
            median(run.cards.iter().map(|c| c.1).collect()),
            run.cards.len()
        );
        println!(
            "one APDU per message ({apdus} network round trips per card): {:.3} s per card (median of {})",
            median(one_apdu),
            rec.len()
        );
    }
}
