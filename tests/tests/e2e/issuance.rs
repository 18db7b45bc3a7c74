//! The station's issue end to end, over real processes: `keyserver serve`,
//! `station run`, `vsc feeder` / `vsc serve` through pcscd and both vpcd
//! readers, and OpenSC and openssl as outside clients of the produced
//! cards. Faults: a card pulled mid-script, the station and the keyserver
//! SIGKILLed mid-job and restarted, a revoked station.
//!
//! Cards can be slowed down (a [`CardLink`] between vpcd and the card
//! delays every command, as a real card takes its time) so that a fault
//! lands in the middle of a round trip, whatever the machine's load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyserver::archive::{CardHistory, ManifestEvent};
use keyserver::ports::IssuerKeys as _;
use serde_json::Value;
use station::readers::PcscReader;
use tests::cardlink::CardLink;
use tests::harness::{
    self, Running, Scratch, CARD_WAIT, OPENSC_PKCS11, OPENSSL, PKCS11_TOOL, PKCS15_TOOL, PORT_0, PORT_1,
    READER_0, READER_1,
};
use tests::opensc::{self, openssl};
use tests::piv;
use tests::stack::{piv_escrow_csv, Keyserver, StationRun};
use vsc::codec::StatusWord;
use vsc::feeder::{read_log, Bin};
use vsc::file::{Unlock, Vsc};

/// How slow a slowed card is per command: round trip 2 (about 15
/// commands) then lasts long enough for a fault to land inside it.
const SLOW_CARD: Duration = Duration::from_millis(40);

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A card bureau on this machine: a keyserver with a piv-escrow job, an
/// enrolled station, blank stock, the readers.
struct Bureau {
    scratch: Scratch,
    ks: Keyserver,
    job: String,
    pins: BTreeMap<String, String>,
    bundle: PathBuf,
    stock: PathBuf,
    out: PathBuf,
    links: Vec<CardLink>,
}

impl Bureau {
    /// `records` records, `blanks` blank cards from serial `first`.
    fn new(job: &str, records: usize, first: u32, blanks: u32) -> Bureau {
        let scratch = Scratch::new();
        let ks = Keyserver::start(&scratch.join("keyserver"), records + 4);
        let (csv, pins) = piv_escrow_csv(job, records);
        ks.submit(job, "piv-escrow", &csv);
        let bundle = ks.enroll("desk-1");
        let stock = scratch.blank_stock("stock", first, blanks);
        let out = scratch.join("bins");
        Bureau {
            scratch,
            ks,
            job: job.into(),
            pins,
            bundle,
            stock,
            out,
            links: Vec::new(),
        }
    }

    /// `vsc feeder -v` over both readers, each card slowed by `slow`
    /// per command when given.
    fn feeder(&mut self, slow: Option<Duration>) -> Running {
        let ports = match slow {
            Some(delay) => {
                self.links = vec![CardLink::start(PORT_0, delay), CardLink::start(PORT_1, delay)];
                format!("{},{}", self.links[0].port(), self.links[1].port())
            }
            None => format!("{PORT_0}-{PORT_1}"),
        };
        self.scratch.feeder(
            &self.stock,
            &self.out,
            &["--ports", &ports, "-v"],
            vec![READER_0, READER_1],
        )
    }

    fn station(&self, readers: &str, extra: &[&str]) -> StationRun {
        let mut all = vec!["--max-backoff", "2", "--idle-exit", "120"];
        all.extend_from_slice(extra);
        StationRun::start(
            &self.bundle,
            &self.job,
            readers,
            &self.scratch.join("journal"),
            &all,
        )
    }

    fn bin_files(&self, bin: &str) -> Vec<String> {
        let dir = self.out.join(bin);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.ends_with(".vsc"))
                    .map(|n| n.trim_end_matches(".vsc").to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn history(&self, serial: &str) -> Option<CardHistory> {
        let s: u32 = serial.parse().unwrap();
        let mut found: Vec<CardHistory> = self
            .ks
            .histories()
            .into_iter()
            .filter(|h| h.serial == s)
            .collect();
        assert!(found.len() <= 1, "card {serial} archived {} times", found.len());
        found.pop()
    }

    /// The guarantees after any fault: the job is complete, no record was
    /// issued twice, the archive holds (`archive verify`), every card the
    /// station passed has its master VSC sealed and is issued, every card
    /// in the feeder's pass bin too (see the exception below), every card
    /// in its reject bin was never issued.
    fn assert_job_complete_and_consistent(&self, records: usize, station_passed: &[String]) {
        let s = self.ks.job_status(&self.job);
        assert_eq!(
            (s.total, s.issued, s.queued, s.in_flight),
            (records as u64, records as u64, 0, 0),
            "job status {s:?}\n{}",
            self.ks.logs()
        );
        assert!(s.max_round_trips <= 3, "{s:?}");
        self.ks.archive_verify();
        self.ks.audit_verify();
        // Each record issued exactly once, each on a card sealed first.
        let mut issued_records: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for h in self.ks.histories() {
            let events: Vec<ManifestEvent> = h.events.iter().map(|e| e.2).collect();
            assert_eq!(events.first(), Some(&ManifestEvent::Sealed), "{h:?}");
            if events.contains(&ManifestEvent::Issued) {
                assert_eq!(events, [ManifestEvent::Sealed, ManifestEvent::Issued], "{h:?}");
                issued_records
                    .entry(h.record.clone().unwrap())
                    .or_default()
                    .push(h.serial);
            } else {
                assert_eq!(events, [ManifestEvent::Sealed, ManifestEvent::Void], "{h:?}");
            }
        }
        assert_eq!(issued_records.len(), records, "{issued_records:?}");
        for (record, cards) in &issued_records {
            assert_eq!(cards.len(), 1, "record {record} issued on {cards:?}");
            assert!(
                self.pins.contains_key(record),
                "{record} is not a record of the job"
            );
        }
        // The station's passed cards: sealed, issued.
        for serial in station_passed {
            let h = self
                .history(serial)
                .unwrap_or_else(|| panic!("card {serial} passed by the station is not archived"));
            assert_eq!(h.status(), Some(ManifestEvent::Issued), "{h:?}");
        }
        // The feeder's bins (it bins by the card's state: SECURED → pass).
        for serial in self.bin_files("pass") {
            let h = self
                .history(&serial)
                .unwrap_or_else(|| panic!("card {serial} in the pass bin has no master VSC in the archive"));
            if h.status() != Some(ManifestEvent::Issued) {
                // The only way a SECURED card is not issued: it finished
                // its last command while the keyserver died, before the
                // outcome was durable. The keyserver voided it at restart
                // and the station rejected it; the feeder, which sees only
                // the card's state, passed it. Its escrow is there.
                let reason = h.events.last().and_then(|e| e.3.clone()).unwrap_or_default();
                assert!(
                    reason.contains("restarted"),
                    "card {serial} in the pass bin: {h:?}"
                );
                eprintln!("note: card {serial} reached SECURED as the keyserver died: void, rejected by the station");
            }
        }
        for serial in self.bin_files("reject") {
            if let Some(h) = self.history(&serial) {
                assert_ne!(
                    h.status(),
                    Some(ManifestEvent::Issued),
                    "rejected card {serial}: {h:?}"
                );
            }
        }
    }
}

/// Passed cards' serials from the station's card events.
fn passed_serials(station: &StationRun) -> Vec<String> {
    station
        .events_of("card")
        .iter()
        .filter(|e| e["bin"] == "pass")
        .map(|e| e["card_serial"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the station reports round trip 2 on some reader after
/// `after` cards passed; that reader's name.
fn wait_for_round_trip_2(station: &mut StationRun, after: usize) -> String {
    station.wait_until("round trip 2 of a card", |ev| {
        let passed = ev
            .iter()
            .filter(|e| e["event"] == "card" && e["bin"] == "pass")
            .count();
        passed >= after
            && ev
                .last()
                .is_some_and(|e| e["event"] == "reader" && e["round_trip"] == 2)
    });
    let ev = station.events();
    ev.last().unwrap()["reader"].as_str().unwrap().to_string()
}

/// What OpenSC and openssl make of a produced card served in reader 0:
/// three certificates listed and chained to the issuer CA, signatures with
/// 9A and 9C verified against the certificates read from the card (9D, key
/// management, has no signing usage), a message encrypted to 9D (the
/// escrowed RSA key) decrypted by the card.
fn check_with_opensc(dir: &Path, pin: &str, issuer_ca: &Path) {
    let list = opensc::list_certificates();
    for name in [
        "[Certificate for PIV Authentication]",
        "[Certificate for Digital Signature]",
        "[Certificate for Key Management]",
    ] {
        assert!(list.contains(name), "{name} not listed:\n{list}");
    }
    let data = dir.join("data.txt");
    std::fs::write(&data, b"Cardsmith end-to-end: signed by a produced card\n").unwrap();
    for id in ["01", "02", "03"] {
        let (cert, public) = opensc::read_certificate(dir, id);
        let v = openssl(&["verify", "-CAfile", p(issuer_ca), p(&cert)]);
        assert!(v.trim_end().ends_with(": OK"), "{v}");
        if id == "03" {
            opensc::decrypts_on_card(dir, pin, id, &cert);
        } else {
            opensc::sign_and_verify(dir, pin, id, "ECDSA-SHA256", &public, &data);
        }
    }
}

#[test]
fn twelve_cards_through_both_readers_are_issued_escrowed_and_work_with_opensc() {
    harness::require(&[PKCS15_TOOL, PKCS11_TOOL, OPENSSL]);
    harness::require_file(OPENSC_PKCS11, "opensc-pkcs11");
    let _readers = harness::lock_readers();
    const CARDS: usize = 12;
    let mut b = Bureau::new("e2e-twelve", CARDS, 7100, CARDS as u32);
    let mut feeder = b.feeder(None);
    let mut station = b.station("Virtual PCD*", &[]);
    assert_eq!(station.wait(), Some(0), "{}", station.proc.describe());
    let summary = station.summary();
    assert_eq!(
        (summary.passed, summary.rejected),
        (CARDS as u64, 0),
        "{}",
        station.proc.describe()
    );
    assert!(summary.round_trips_per_card <= 3, "{summary:?}");
    assert_eq!(
        feeder.wait_exit(CARD_WAIT * 2),
        Some(0),
        "{:?}",
        feeder.stderr.all()
    );
    let passed = b.bin_files("pass");
    assert_eq!(passed.len(), CARDS, "{passed:?}");
    assert!(b.bin_files("reject").is_empty());
    let log = read_log(&b.out).unwrap();
    let ports: BTreeSet<Option<u16>> = log.iter().map(|l| l.port).collect();
    assert_eq!(
        ports,
        [Some(PORT_0), Some(PORT_1)].into(),
        "both readers took cards"
    );
    assert!(log.iter().all(|l| l.bin == Bin::Pass));

    // Round trips: counted by the station (the Scripts it received per
    // card) and by the keyserver (Result, job status, audit), never more
    // than 3, while each card took several times as many commands.
    let seen = station.scripts_seen_per_card();
    assert_eq!(seen.len(), CARDS);
    let cards = station.events_of("card");
    for (request, scripts) in &seen {
        assert!((1..=3).contains(scripts), "{request}: {scripts} round trips");
        let card = cards
            .iter()
            .find(|c| c["request_id"] == request.as_str())
            .unwrap();
        assert_eq!(card["round_trips"].as_u64(), Some(u64::from(*scripts)), "{card}");
    }
    let commands = feeder.stderr.all();
    for serial in &passed {
        let n = commands
            .iter()
            .filter(|l| l.contains(&format!(": {serial}: INS ")))
            .count();
        assert!(n > 3 * 3, "card {serial}: {n} commands");
    }
    assert!(b.ks.job_status(&b.job).max_round_trips <= 3);
    let audit = std::fs::read_to_string(b.ks.data.join("audit/audit.jsonl")).unwrap();
    let perso: Vec<&str> = audit.lines().filter(|l| l.contains("\"card.perso\"")).collect();
    assert_eq!(perso.len(), CARDS);
    assert!(perso
        .iter()
        .all(|l| ["round_trips=1", "round_trips=2", "round_trips=3"]
            .iter()
            .any(|r| l.contains(r))));
    b.assert_job_complete_and_consistent(CARDS, &passed_serials(&station));

    // Custody, opened in this process from the component files once the
    // keyserver stopped: the archive KEK and the cards' key derivation.
    b.ks.stop();
    let custody = b.ks.unlock();
    let (kek_id, kek) = custody.archive_kek();
    let archive_unlock = Unlock::Kek {
        key_id: kek_id.into(),
        key: kek.clone(),
    };
    let transport = custody.transport_keys("default").unwrap();
    let issuer_ca = b.ks.data.join("public/issuer-ca.pem");
    let records: BTreeMap<String, String> =
        b.ks.histories()
            .into_iter()
            .map(|h| (format!("{:08}", h.serial), h.record.unwrap()))
            .collect();
    for serial in &passed {
        let file = b.out.join("pass").join(format!("{serial}.vsc"));
        // Its public objects are its master VSC's; only the certificate
        // of the key the card generated (9C) is the card's alone.
        let card = Vsc::load(&file, &b.scratch.unlock()).unwrap();
        let h = b.history(serial).unwrap();
        let master = Vsc::load(
            &b.ks.data.join("archive/vsc").join(h.file.clone().unwrap()),
            &archive_unlock,
        )
        .unwrap_or_else(|e| panic!("card {serial}: the sealed master VSC does not open: {e}"));
        assert_eq!(master.header().attributes.origin, vsc::file::Origin::Master);
        for (id, value) in master.public_area() {
            assert_eq!(
                card.public_area().get(id),
                Some(value),
                "card {serial}: public object {id:?} differs from its master's"
            );
        }
        let extra: Vec<_> = card
            .public_area()
            .keys()
            .filter(|id| !master.public_area().contains_key(*id))
            .collect();
        assert_eq!(
            extra,
            [&vsc::file::ObjectId::Piv(0x5F_C10A)],
            "card {serial}: only the 9C certificate (5FC10A) is the card's own"
        );

        // Served as a card: the factory keys are refused, the diversified
        // keys open a session; OpenSC and openssl use it.
        let served = Running::serve(&b.scratch, &file, PORT_0);
        {
            let mut r = PcscReader::open(READER_0).unwrap();
            r.connect().unwrap();
            assert!(
                matches!(
                    piv::key_diversification_data(&mut r, transport.kvn),
                    Err(piv::HostError::Status {
                        sw: StatusWord::ReferencedDataNotFound,
                        ..
                    })
                ),
                "card {serial}: the factory keys (key version {:02X}) are refused",
                transport.kvn
            );
            assert!(
                piv::open_scp03_with(&mut r, transport.kvn, &transport.keys).is_err(),
                "card {serial}: no session with the factory keys"
            );
            // The card's own key set, derived here as the keyserver does
            // (SP 800-108 KDF over the master keys with the card's KDD).
            let kdd = piv::key_diversification_data(&mut r, keyserver::keystore::derive::CARD_KVN)
                .unwrap_or_else(|e| {
                    panic!(
                        "card {serial}: no key set {:02X}: {e}",
                        keyserver::keystore::derive::CARD_KVN
                    )
                });
            let own = custody.card_keys(&kdd).unwrap();
            piv::open_scp03_with(&mut r, own.kvn, &own.keys)
                .unwrap_or_else(|e| panic!("card {serial}: its diversified keys open no session: {e}"));
            // A reset ends the session before OpenSC comes.
            r.disconnect_with(pcsc::Disposition::ResetCard).unwrap();
        }
        let record = &records[serial];
        let dir = b.scratch.join(&format!("opensc-{serial}"));
        std::fs::create_dir_all(&dir).unwrap();
        check_with_opensc(&dir, &b.pins[record], &issuer_ca);
        drop(served);
    }
}

#[test]
fn a_card_pulled_mid_script_is_rejected_and_voided_and_the_next_card_passes() {
    let _readers = harness::lock_readers();
    let b = Bureau::new("e2e-pulled", 2, 7200, 2);
    let mut station = b.station(READER_0, &["--cards", "2"]);
    // Card A, slowed down, in reader 0: pulled (its `vsc serve` killed)
    // while the station runs round trip 2.
    let link = CardLink::start(PORT_0, SLOW_CARD);
    let card_a = b.stock.join("00007200.vsc");
    let mut args = vec![
        "serve".to_string(),
        p(&card_a).to_string(),
        "--port".into(),
        link.port().to_string(),
    ];
    args.extend(b.scratch.kek_args());
    let mut served_a = Running::vsc(&args, vec![]);
    harness::wait_for_card(READER_0);
    let reader = wait_for_round_trip_2(&mut station, 0);
    assert_eq!(reader, READER_0);
    harness::run_ok("kill", ["-KILL", &served_a.pid().to_string()]);
    served_a.wait_exit(CARD_WAIT);
    // As an operator would: card B goes in once the reader shows empty
    // (pcscd polls vpcd; a swap faster than its poll is never seen).
    PcscReader::open(READER_0)
        .unwrap()
        .wait_for_removal(CARD_WAIT)
        .unwrap();
    // Card B, whole, into the same reader.
    let mut args = vec![
        "serve".to_string(),
        p(&b.stock.join("00007201.vsc")).to_string(),
        "--port".into(),
        PORT_0.to_string(),
    ];
    args.extend(b.scratch.kek_args());
    let served_b = Running::vsc(&args, vec![READER_0]);
    harness::wait_for_card(READER_0);
    assert_eq!(
        station.wait(),
        Some(0),
        "{}\ncard B: {:?}",
        station.proc.describe(),
        served_b.stderr.all()
    );
    let s = station.summary();
    assert_eq!((s.passed, s.rejected), (1, 1), "{}", station.proc.describe());

    let cards = station.events_of("card");
    let a = &cards[0];
    assert_eq!(a["bin"], "reject");
    let reason = a["reason"].as_str().unwrap();
    assert!(
        reason.contains("the card was removed") || reason.contains("no status word"),
        "card A: {reason}"
    );
    assert_eq!(a["card_serial"], "00007200");
    assert_eq!(cards[1]["bin"], "pass");
    assert_eq!(cards[1]["card_serial"], "00007201");
    // The keyserver voided A with the station's words; its record went to
    // B.
    let h = b.history("00007200").unwrap();
    let events: Vec<ManifestEvent> = h.events.iter().map(|e| e.2).collect();
    assert_eq!(events, [ManifestEvent::Sealed, ManifestEvent::Void], "{h:?}");
    let void = h.events[1].3.clone().unwrap();
    assert!(
        void.contains("round trip 2: station: ")
            && (void.contains("the card was removed") || void.contains("no status word")),
        "{void}"
    );
    let hb = b.history("00007201").unwrap();
    assert_eq!(hb.status(), Some(ManifestEvent::Issued));
    assert_eq!(
        hb.record, h.record,
        "the void card's record was issued on the next card"
    );
    let j = b.ks.job_status(&b.job);
    assert_eq!((j.issued, j.voided, j.queued, j.in_flight), (1, 1, 1, 0), "{j:?}");
    b.ks.archive_verify();
}

#[test]
fn a_station_killed_mid_job_and_restarted_completes_the_job_without_issuing_twice() {
    let _readers = harness::lock_readers();
    const RECORDS: usize = 8;
    let mut b = Bureau::new("e2e-station-kill", RECORDS, 7300, 14);
    let mut feeder = b.feeder(Some(SLOW_CARD));
    let mut first = b.station("Virtual PCD*", &[]);
    let _ = wait_for_round_trip_2(&mut first, 2);
    first.proc.kill();
    let mut passed = passed_serials(&first);
    let killed_events = first.events();

    let mut second = b.station("Virtual PCD*", &[]);
    assert_eq!(second.wait(), Some(0), "{}", second.proc.describe());
    let s = second.summary();
    passed.extend(passed_serials(&second));
    // The requests in flight at the kill: counted rejected at restart,
    // asked again (resume) and settled with the keyserver's verdict.
    let recovered: Vec<Value> = second
        .events_of("card")
        .into_iter()
        .filter(|e| e["recovered"] == true)
        .collect();
    assert!(
        !recovered.is_empty(),
        "no request was in flight at the kill: {killed_events:?}"
    );
    assert!(recovered.iter().all(|e| e["bin"] == "reject"), "{recovered:?}");
    let settled = second.events_of("settled");
    for r in &recovered {
        let s = settled
            .iter()
            .find(|e| e["request_id"] == r["request_id"])
            .unwrap_or_else(|| panic!("request {} not settled: {settled:?}", r["request_id"]));
        assert_eq!(s["keyserver_ok"], false, "{s}");
    }
    assert!(s.rejected >= recovered.len() as u64, "{s:?}");
    feeder.interrupt();
    b.assert_job_complete_and_consistent(RECORDS, &passed);
    assert_eq!(passed.len(), RECORDS, "{passed:?}");
    drop(feeder);
}

#[test]
fn a_keyserver_killed_mid_job_and_restarted_completes_the_job_without_issuing_twice() {
    let _readers = harness::lock_readers();
    const RECORDS: usize = 8;
    let mut b = Bureau::new("e2e-keyserver-kill", RECORDS, 7400, 14);
    let mut feeder = b.feeder(Some(SLOW_CARD));
    let mut station = b.station("Virtual PCD*", &[]);
    let _ = wait_for_round_trip_2(&mut station, 2);
    b.ks.kill();
    b.ks.serve();
    assert_eq!(
        station.wait(),
        Some(0),
        "{}\n{}",
        station.proc.describe(),
        b.ks.logs()
    );
    let lost: Vec<Value> = station
        .events_of("card")
        .into_iter()
        .filter(|e| e["bin"] == "reject")
        .collect();
    assert!(!lost.is_empty(), "no card was in flight when the keyserver died");
    for e in &lost {
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains("connection to the keyserver was lost") || reason.contains("keyserver"),
            "{e}"
        );
    }
    // Each card rejected for the lost connection was asked again and its
    // recorded verdict reported.
    let settled = station.events_of("settled");
    assert!(
        !settled.is_empty(),
        "nothing settled after the keyserver came back"
    );
    // The restarted keyserver voided what was in flight.
    let restarted_voids =
        b.ks.histories()
            .into_iter()
            .filter(|h| {
                h.events
                    .last()
                    .and_then(|e| e.3.as_deref())
                    .is_some_and(|r| r.contains("restarted"))
            })
            .count();
    feeder.interrupt();
    b.assert_job_complete_and_consistent(RECORDS, &passed_serials(&station));
    let j = b.ks.job_status(&b.job);
    assert!(j.voided >= restarted_voids as u64, "{j:?}");
    drop(feeder);
}

#[test]
fn a_station_with_a_revoked_certificate_is_refused() {
    let scratch = Scratch::new();
    let ks = Keyserver::start(&scratch.join("keyserver"), 0);
    let (csv, _) = piv_escrow_csv("r", 1);
    ks.submit("e2e-revoked", "piv-escrow", &csv);
    let bundle = ks.enroll("desk-9");
    ks.cli_ok(&["revoke-station", "desk-9"]);
    let mut station = StationRun::start(
        &bundle,
        "e2e-revoked",
        "sim:1",
        &scratch.join("journal"),
        &["--connect-timeout", "60"],
    );
    assert_eq!(station.wait(), Some(3), "{}", station.proc.describe());
    let stderr = station.proc.stderr.all().join("\n");
    assert!(
        stderr.contains("the keyserver refused this station") && stderr.contains("revoked"),
        "{stderr}"
    );
    let refused = station.events_of("keyserver");
    assert!(refused.iter().any(|e| e["state"] == "refused"), "{refused:?}");
    let s = station.summary();
    assert_eq!((s.passed, s.rejected), (0, 0));
    assert_eq!(ks.job_status("e2e-revoked").queued, 1);
    let audit = std::fs::read_to_string(ks.data.join("audit/audit.jsonl")).unwrap();
    assert!(audit.contains("station.refused"), "the refusal is audited");
}
