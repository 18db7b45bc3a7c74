//! Cards per second issued by one keyserver, wired as `keyserver serve`
//! wires it — custody, the durable archive and audit log (every seal and
//! outcome fsynced, group commit), the RSA key pool, the engine, the job
//! store, the service over mutual TLS on loopback — to in-process software
//! cards driven by the test station, several cards in flight.
//!
//! ```text
//! cargo bench -p keyserver --bench issuance -- [BADGES] [PIVS] [IN_FLIGHT] [DIR]
//! ```
//!
//! Defaults: 2000 employee badges (also one at a time, and half as many
//! with 4 and 8 in flight), 100 PIV cards, 32 cards in flight, data
//! under `target/bench-data` (the disk the keyserver's data would be on;
//! not a tmpfs, where fsync costs nothing). Not a test: figures go in
//! BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyserver::issue::{Engine, TimingReport};
use keyserver::keystore::component::Component;
use keyserver::keystore::pool::{KeyPool, PoolConfig};
use keyserver::keystore::{self, pairwise, ComponentDelivery, InitOptions, KeystoreError, Unlocked};
use keyserver::service::Limits;
use protos::pb;
use support::station::TestStation;
use support::{Custom, Harness};
use vsc::card::SoftCard;
use vsc::transport::{CardTransport, InProcess, ResetKind, TransportError};

struct Collect(Vec<Component>);

impl ComponentDelivery for Collect {
    fn prepare(&mut self, _: u8) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn deliver(&mut self, _: &str, c: &Component) -> Result<(), KeystoreError> {
        self.0.push(c.clone());
        Ok(())
    }
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

/// A software card that counts the time its runtime spends (what a real
/// card would spend, not the keyserver).
struct TimedCard {
    card: InProcess<SoftCard>,
    spent: Arc<AtomicU64>,
}

impl TimedCard {
    fn add(&self, since: Instant) {
        self.spent
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

impl CardTransport for TimedCard {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let t = Instant::now();
        let r = self.card.transmit(command);
        self.add(t);
        r
    }

    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        let t = Instant::now();
        let r = self.card.reset(kind);
        self.add(t);
        r
    }

    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
}

/// The keyserver, wired like `keyserver serve`.
struct Keyserver {
    harness: Harness,
    engine: Arc<Engine>,
    pool: Arc<KeyPool>,
    station: Arc<TestStation>,
    _unlocked: Arc<Unlocked>,
}

async fn keyserver(base: &Path, pool_target: usize) -> Keyserver {
    std::fs::create_dir_all(base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut delivery = Collect(Vec::new());
    keystore::init(
        dir.path(),
        &InitOptions {
            custodians: 2,
            server_names: Vec::new(),
        },
        &mut delivery,
    )
    .unwrap();
    let unlocked = Arc::new(Unlocked::from_components(dir.path(), &delivery.0).unwrap());
    let audit = unlocked.audit();
    let archive = Arc::new(unlocked.open_archive().unwrap());
    let pool = Arc::new(unlocked.key_pool(PoolConfig { target: pool_target }).unwrap());
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let engine = Arc::new(
        Engine::from_dir(&profiles, unlocked.clone(), archive, audit.clone(), pool.clone()).unwrap(),
    );
    let harness = Harness::start_custom(
        Limits::default(),
        Custom {
            engine: engine.clone(),
            authority: unlocked.clone(),
            audit,
            records_key: unlocked.records_key().clone(),
            dir: Some(dir),
        },
    )
    .await;
    let bundle = harness.enroll("bench", &[]).await;
    let station = Arc::new(TestStation::connect(&bundle).await.unwrap());
    Keyserver {
        harness,
        engine,
        pool,
        station,
        _unlocked: unlocked,
    }
}

fn csv(profile: &str, job: &str, n: usize) -> String {
    let mut s = match profile {
        "employee-badge" => {
            String::from("record_id,given_name,surname,email,employee_id,department,street,city,account\n")
        }
        _ => String::from("record_id,given_name,surname,email,employee_id,department,pin\n"),
    };
    for i in 1..=n {
        if profile == "employee-badge" {
            s.push_str(&format!(
                "{job}-{i},Ada,Lovelace,ada{i}@example.org,{:07},Analytics,12 St James's Square,London,GB33BUKB20201555555555\n",
                1_000_000 + i
            ));
        } else {
            s.push_str(&format!(
                "{job}-{i},Grace,Hopper,grace{i}@example.org,{:07},Research,24681357\n",
                1_000_000 + i
            ));
        }
    }
    s
}

fn blanks(first: u32, n: usize, spent: &Arc<AtomicU64>) -> Vec<TimedCard> {
    (0..n)
        .map(|i| {
            let serial = first + u32::try_from(i).unwrap();
            let card = support::blank_card(serial);
            TimedCard {
                card,
                spent: spent.clone(),
            }
        })
        .collect()
}

/// One measured run.
struct Run {
    cards: usize,
    wall: Duration,
    cpu: Duration,
    card_cpu: Duration,
    engine: TimingReport,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.cards as f64 / self.wall.as_secs_f64()
    }
}

fn diff(after: &TimingReport, before: &TimingReport) -> TimingReport {
    TimingReport {
        phases: after
            .phases
            .iter()
            .zip(&before.phases)
            .map(|((name, a), (_, b))| (*name, a.saturating_sub(*b)))
            .collect(),
    }
}

/// Submits a job of `n` cards and issues them, `in_flight` at a time.
async fn run(ks: &Keyserver, profile: &str, job: &str, n: usize, in_flight: usize, first: u32) -> Run {
    let r = ks
        .harness
        .submit_profile(job, profile, &csv(profile, job, n))
        .await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let spent = Arc::new(AtomicU64::new(0));
    let cards = blanks(first, n, &spent);
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let before = ks.engine.timings();
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut set = tokio::task::JoinSet::new();
    for (i, mut card) in cards.into_iter().enumerate() {
        let (station, job, sem) = (ks.station.clone(), job.to_string(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let run = station
                .issue_with(&format!("{job}-{i}"), &job, &mut card, |_, _| {})
                .await
                .unwrap();
            assert_eq!(
                run.result.outcome,
                pb::Outcome::Ok as i32,
                "{}",
                run.result.reason
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let (wall, cpu) = (t0.elapsed(), cpu_time() - c0);
    let status = ks.harness.status(job).await;
    assert_eq!((status.issued, status.voided), (n as u64, 0));
    Run {
        cards: n,
        wall,
        cpu,
        card_cpu: Duration::from_nanos(spent.load(Ordering::Relaxed)),
        engine: diff(&ks.engine.timings(), &before),
    }
}

fn report(what: &str, r: &Run, in_flight: usize) {
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.cards as f64;
    println!(
        "| {what} | {} | {in_flight} | {:.2} | **{:.0}** | {:.2} | {:.2} |",
        r.cards,
        r.wall.as_secs_f64(),
        r.per_second(),
        per(r.cpu),
        per(r.card_cpu),
    );
}

/// Where one card's time goes, from a run with one card at a time (no
/// contention: the engine's phases are its thread's wall time, the seal and
/// the outcome include their fsync waits).
fn phases(what: &str, r: &Run) {
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.cards as f64;
    println!(
        "\n{what}, one card at a time: where a card's {:.2} ms go\n",
        per(r.wall)
    );
    println!("| part | ms/card |\n|---|---:|");
    for (name, d) in &r.engine.phases {
        println!("| engine: {name} | {:.3} |", per(*d));
    }
    println!("| engine, total | {:.3} |", per(r.engine.total()));
    println!(
        "| the software card's runtime (what a real card spends) | {:.3} |",
        per(r.card_cpu)
    );
    println!(
        "| the rest: station, gRPC + TLS, job store (reserve, finish), service audit | {:.3} |",
        per(r.wall.saturating_sub(r.engine.total() + r.card_cpu))
    );
}

fn header() {
    println!("| run | cards | in flight | wall s | cards/s | process CPU ms/card | in the card runtime (wall) ms/card |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    format!(
        "{} × {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let badges: usize = args.first().map_or(2000, |a| a.parse().unwrap());
    let pivs: usize = args.get(1).map_or(100, |a| a.parse().unwrap());
    let in_flight: usize = args.get(2).map_or(32, |a| a.parse().unwrap());
    let base = args.get(3).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"),
        PathBuf::from,
    );
    println!(
        "issuance bench: {} build, {}, data under {}; load average at start {}\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine(),
        base.display(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // employee-badge: all P-256.
        let ks = keyserver(&base, 0).await;
        let warm = run(&ks, "employee-badge", "warmup", 50, in_flight, 100_000).await;
        let _ = warm;
        header();
        let one = run(&ks, "employee-badge", "badge-1", 200.min(badges), 1, 200_000).await;
        report("employee-badge, one card at a time", &one, 1);
        let mut first = 300_000;
        for k in [4, 8] {
            let r = run(&ks, "employee-badge", &format!("badge-{k}"), badges / 2, k, first).await;
            report("employee-badge", &r, k);
            first += 100_000;
        }
        let many = run(&ks, "employee-badge", "badge-n", badges, in_flight, 900_000).await;
        report("employee-badge", &many, in_flight);
        let mut ks = ks;
        ks.harness.stop().await;

        if pivs == 0 {
            phases("employee-badge", &one);
            return;
        }
        // piv-escrow: RSA-2048 from a warm pool, then generated on the spot.
        let ks = keyserver(&base, 0).await;
        let sequential = 20.min(pivs);
        let t = Instant::now();
        std::thread::scope(|s| {
            for share in [(pivs + sequential) / 2, (pivs + sequential).div_ceil(2)] {
                let pool = &ks.pool;
                s.spawn(move || pool.fill(share).unwrap());
            }
        });
        let fill = t.elapsed();
        let keys = ks.pool.len();
        assert_eq!(keys, pivs + sequential);
        let piv_one = run(&ks, "piv-escrow", "piv-1", sequential, 1, 400_000).await;
        report("piv-escrow, warm RSA pool, one card at a time", &piv_one, 1);
        let pooled = run(&ks, "piv-escrow", "piv-pool", pivs, in_flight, 500_000).await;
        report("piv-escrow, warm RSA pool", &pooled, in_flight);
        let stats = ks.pool.stats();
        assert_eq!((stats.taken, stats.on_demand, stats.ready), (keys as u64, 0, 0));
        let spot = run(&ks, "piv-escrow", "piv-spot", pivs, in_flight, 600_000).await;
        report("piv-escrow, RSA generated on the spot (pool empty)", &spot, in_flight);
        assert_eq!(ks.pool.stats().on_demand, pivs as u64);

        phases("employee-badge", &one);
        phases("piv-escrow (warm pool)", &piv_one);

        println!("\nRSA-2048 key generation, same run:\n");
        println!("| generator | keys | s | ms/key (wall) |\n|---|---:|---:|---:|");
        println!(
            "| key pool fill: rsa crate + pairwise check + wrap + durable insert, 2 threads | {keys} | {:.2} | {:.0} |",
            fill.as_secs_f64(),
            fill.as_secs_f64() * 1000.0 / keys as f64
        );
        let k = 20;
        let t = Instant::now();
        for _ in 0..k {
            pairwise::generate_rsa2048().unwrap();
        }
        let rust = t.elapsed();
        println!(
            "| rsa crate + pairwise check, 1 thread | {k} | {:.2} | {:.0} |",
            rust.as_secs_f64(),
            rust.as_secs_f64() * 1000.0 / k as f64
        );
        let t = Instant::now();
        for _ in 0..k {
            let out = Command::new("openssl")
                .args(["genrsa", "-out", "/dev/null", "2048"])
                .output()
                .expect("openssl genrsa could not be run (is openssl installed?)");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let openssl = t.elapsed();
        println!(
            "| openssl genrsa 2048, a process per key, 1 at a time | {k} | {:.2} | {:.0} |",
            openssl.as_secs_f64(),
            openssl.as_secs_f64() * 1000.0 / k as f64
        );
        // What starting a process costs, to compare the generation alone.
        let t = Instant::now();
        for _ in 0..k {
            let out = Command::new("openssl").arg("version").output().unwrap();
            assert!(out.status.success());
        }
        let spawn = t.elapsed();
        let openssl = openssl.saturating_sub(spawn);
        println!(
            "| openssl genrsa 2048 less the cost of a process (`openssl version`: {:.1} ms) | {k} | {:.2} | {:.0} |",
            spawn.as_secs_f64() * 1000.0 / k as f64,
            openssl.as_secs_f64(),
            openssl.as_secs_f64() * 1000.0 / k as f64
        );
        println!(
            "\nratios: badge {:.1}× piv-escrow with a warm pool; warm pool {:.1}× on the spot; rsa crate {:.2}× openssl per key",
            many.per_second() / pooled.per_second(),
            pooled.per_second() / spot.per_second(),
            rust.as_secs_f64() / openssl.as_secs_f64()
        );
        let mut ks = ks;
        ks.harness.stop().await;
    });
}
