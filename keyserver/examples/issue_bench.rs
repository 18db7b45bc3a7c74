//! A quick benchmark of the issuance engine (not a test): cards per second
//! for both shipped profiles with the in-memory escrow, where the engine's
//! time goes, and RSA-2048 generation against `openssl genrsa 2048` in the
//! same run.
//!
//! ```text
//! cargo run --release -p keyserver --example issue_bench -- [BADGES] [PIV_CARDS] [THREADS]
//! ```
//!
//! Blank cards are made before the clock starts; the software cards'
//! own time (what a real card would spend) is measured apart from the
//! engine's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyserver::issue::testing::{run_script, GeneratedRsa, MemoryAudit, MemoryEscrow, RsaPool, TestKeys};
use keyserver::issue::Engine;
use keyserver::ports::{CardEngine, CardOutcome, CardRequest, Next, RsaKeySource};
use keyserver::record::Record;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::BlankCard;
use vsc::card::SoftCard;
use vsc::file::Protector;
use vsc::secret::AesKey;
use vsc::transport::{CardTransport, InProcess};

type Card = InProcess<SoftCard>;

fn record(profile: &str, n: usize) -> Record {
    let mut f: BTreeMap<String, String> = [
        ("given_name", "Ada"),
        ("surname", "Lovelace"),
        ("email", "ada@example.org"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    f.insert("employee_id".into(), format!("{:06}", 100_000 + n));
    if profile == "employee-badge" {
        f.insert("street".into(), "12 St James's Square".into());
        f.insert("city".into(), "London".into());
        f.insert("account".into(), "GB33BUKB20201555555555".into());
    } else {
        f.insert("pin".into(), "24681357".into());
    }
    Record {
        id: format!("{profile}-{n}"),
        fields: f,
    }
}

fn blanks(first: u32, n: usize) -> Vec<Card> {
    let kek = Protector::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    };
    let mut rng = StdRng::seed_from_u64(u64::from(first));
    (0..n)
        .map(|i| {
            let serial = first + u32::try_from(i).unwrap();
            let vsc = BlankCard::new(serial).unwrap().build(&kek, &mut rng).unwrap();
            InProcess::insert(SoftCard::new(vsc).unwrap())
        })
        .collect()
}

/// Issues every card on `threads` threads; returns (wall, engine time, card time).
fn run(engine: &Engine, profile: &str, cards: Vec<Card>, threads: usize) -> (Duration, Duration, Duration) {
    let per = cards.len().div_ceil(threads);
    let mut chunks: Vec<Vec<(usize, Card)>> = Vec::new();
    for (i, c) in cards.into_iter().enumerate() {
        if i % per == 0 {
            chunks.push(Vec::new());
        }
        chunks.last_mut().unwrap().push((i, c));
    }
    let start = Instant::now();
    let results: Vec<(Duration, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let (mut engine_time, mut card_time) = (Duration::ZERO, Duration::ZERO);
                    for (i, mut card) in chunk {
                        let request = CardRequest {
                            request_id: format!("r{i}"),
                            station: "bench".into(),
                            reader: "sim".into(),
                            atr: card.atr(),
                            job: "bench".into(),
                            profile: profile.into(),
                            stock: "default".into(),
                            record: record(profile, i),
                        };
                        let t = Instant::now();
                        let (mut session, mut script) = engine.start(request).unwrap();
                        engine_time += t.elapsed();
                        loop {
                            let t = Instant::now();
                            let reply = run_script(&mut card, &script);
                            card_time += t.elapsed();
                            let t = Instant::now();
                            let next = session.on_reply(reply);
                            engine_time += t.elapsed();
                            match next {
                                Next::Script(s) => script = s,
                                Next::Done(f) => {
                                    assert_eq!(f.outcome, CardOutcome::Issued);
                                    break;
                                }
                            }
                        }
                    }
                    (engine_time, card_time)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    let engine_time = results.iter().map(|r| r.0).sum();
    let card_time = results.iter().map(|r| r.1).sum();
    (wall, engine_time, card_time)
}

fn engine(rsa: Arc<dyn RsaKeySource>) -> Engine {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    Engine::from_dir(
        &dir,
        Arc::new(TestKeys::new().unwrap()),
        Arc::new(MemoryEscrow::default()),
        Arc::new(MemoryAudit::default()),
        rsa,
    )
    .unwrap()
}

fn report(
    profile: &str,
    n: usize,
    threads: usize,
    e: &Engine,
    (wall, engine_time, card_time): (Duration, Duration, Duration),
) {
    let per_card = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    println!(
        "{profile}: {n} cards on {threads} thread(s) in {:.2} s = {:.0} cards/s (wall, software cards included)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    println!(
        "  engine CPU {:.2} ms/card ({:.0} cards/s per core), software card {:.2} ms/card",
        per_card(engine_time),
        n as f64 / engine_time.as_secs_f64(),
        per_card(card_time)
    );
    let t = e.timings();
    for (phase, d) in &t.phases {
        println!("    {phase:<40} {:>7.3} ms/card", per_card(*d));
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let badges = args.first().copied().unwrap_or(400);
    let pivs = args.get(1).copied().unwrap_or(20);
    let threads = args.get(2).copied().unwrap_or(2);
    println!(
        "issue_bench: {} build, {threads} thread(s), in-memory escrow and audit\n",
        if cfg!(debug_assertions) {
            "debug (dependencies optimized)"
        } else {
            "release"
        }
    );

    for t in [1, threads] {
        let e = engine(Arc::new(GeneratedRsa));
        let cards = blanks(10_000, badges);
        let r = run(&e, "employee-badge", cards, t);
        report("employee-badge", badges, t, &e, r);
    }

    // RSA-2048: the pool is filled before the run (timed here).
    let t = Instant::now();
    let pool = RsaPool::generate(pivs).unwrap();
    let rust_rsa = t.elapsed();
    let e = engine(Arc::new(pool));
    let cards = blanks(20_000, pivs);
    let r = run(&e, "piv-escrow", cards, threads);
    report("piv-escrow (RSA from a pre-filled pool)", pivs, threads, &e, r);

    println!("\nRSA-2048 key generation, same run:");
    println!(
        "  rsa crate (RsaPrivateKey::new): {pivs} keys in {:.2} s = {:.0} ms/key",
        rust_rsa.as_secs_f64(),
        rust_rsa.as_secs_f64() * 1000.0 / pivs as f64
    );
    let k = pivs.min(20);
    let t = Instant::now();
    for _ in 0..k {
        let out = Command::new("openssl")
            .args(["genrsa", "-out", "/dev/null", "2048"])
            .output()
            .expect("openssl genrsa could not be run (is openssl installed?)");
        assert!(
            out.status.success(),
            "openssl genrsa failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let openssl = t.elapsed();
    println!(
        "  openssl genrsa 2048 (process per key): {k} keys in {:.2} s = {:.0} ms/key",
        openssl.as_secs_f64(),
        openssl.as_secs_f64() * 1000.0 / k as f64
    );
    let _ = GeneratedRsa.rsa2048();
}
