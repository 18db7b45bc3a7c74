//! Measures what durable escrow costs on this machine: fsync of a new file,
//! of a directory and of an appended line; then cards per second through the
//! whole escrow path (seal + `issued` + one audit entry per card) with N
//! threads; then RSA pool takes per second.
//!
//! ```sh
//! cargo run -p keyserver --example seal_bench [-- DIR [fsync|seal|pool|all] [THREADS]]
//! ```
//!
//! DIR (default: a temporary folder under `target/`) should be on the
//! filesystem the keyserver's data directory will use.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyserver::keystore::component::Component;
use keyserver::keystore::pool::PoolConfig;
use keyserver::keystore::{self, ComponentDelivery, InitOptions, KeystoreError, Unlocked};
use keyserver::ports::{AuditEvent, AuditOutcome, CardOutcome, Escrow, IssuerKeys, SealRequest};
use vsc::file::{DataObject, NewVsc, ObjectId, Protector, Uid, Vsc};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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

/// A new keystore in `data` (2 custodians, components kept in memory),
/// unlocked.
fn init_unlocked(data: &Path) -> Res<Unlocked> {
    let mut c = Collect(Vec::new());
    keystore::init(
        data,
        &InitOptions {
            custodians: 2,
            server_names: Vec::new(),
        },
        &mut c,
    )?;
    Ok(Unlocked::from_components(data, &c.0)?)
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

fn summary(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let at = |q: f64| {
        xs.get(((xs.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "median {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} runs)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        xs.len()
    )
}

fn fsync_costs(dir: &Path) -> Res<()> {
    let d = dir.join("fsync");
    std::fs::create_dir_all(&d)?;
    let dir_handle = std::fs::File::open(&d)?;
    let (mut file, mut dirs, mut appends) = (Vec::new(), Vec::new(), Vec::new());
    let mut log = OpenOptions::new().append(true).create(true).open(d.join("log"))?;
    let payload = vec![0x5Au8; 6000];
    for i in 0..200 {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(d.join(format!("f{i}")))?;
        f.write_all(&payload)?;
        let t = Instant::now();
        f.sync_all()?;
        file.push(t.elapsed());
        let t = Instant::now();
        dir_handle.sync_all()?;
        dirs.push(t.elapsed());
        log.write_all(&[b'x'; 400])?;
        let t = Instant::now();
        log.sync_data()?;
        appends.push(t.elapsed());
    }
    println!("fsync of a new 6 KB file:      {}", summary(file));
    println!("fsync of its directory:        {}", summary(dirs));
    println!("fdatasync of a 400-byte append: {}", summary(appends));
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

fn master_vscs(kek: &vsc::secret::AesKey, n: usize) -> Res<Vec<(Uid, Vec<u8>)>> {
    let mut rng = rand::rngs::OsRng;
    let protector = Protector::Kek {
        key_id: "archive-kek/1".into(),
        key: kek.clone(),
    };
    (0..n)
        .map(|i| {
            let mut v = Vsc::create(
                NewVsc::new(format!("VSC {i:08}"), "employee-badge", 1_700_000_000),
                &protector,
                &mut rng,
            )?;
            // About the size of a badge's master VSC: certificates and keys.
            v.put_public(DataObject::new(ObjectId::Piv(0x5FC105), vec![0xA5; 2500]))?;
            v.put_public(DataObject::new(ObjectId::Piv(0x5FC10A), vec![0x5A; 2500]))?;
            let bytes = v.to_bytes(&mut rng)?;
            Ok((v.uid(), bytes))
        })
        .collect()
}

fn signing_cost() -> Res<()> {
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let signer = keyserver::audit::chain::ChainSigner::from_key(key)?;
    let t = Instant::now();
    let mut sig = String::new();
    for i in 0..1000 {
        sig = signer.sign("bench", format!("entry {i}").as_bytes());
    }
    let sign = t.elapsed() / 1000;
    let t = Instant::now();
    for _ in 0..1000 {
        if !signer.verifier().verify("bench", b"entry 999", &sig) {
            return Err("a signature did not verify".into());
        }
    }
    println!(
        "ECDSA P-256 entry signature: sign {:.0} us, verify {:.0} us",
        sign.as_secs_f64() * 1e6,
        (t.elapsed() / 1000).as_secs_f64() * 1e6
    );
    Ok(())
}

fn seal_rate(root: &Path, threads: usize, per_thread: usize) -> Res<()> {
    let dir = root.join(format!("seal-{threads}"));
    let data = dir.join("data");
    let u = init_unlocked(&data)?;
    let archive = u.open_archive()?;
    let audit = u.audit();
    let cards = master_vscs(u.archive_kek().1, threads * per_thread)?;
    let size = cards.first().map(|c| c.1.len()).unwrap_or(0);
    let cpu0 = cpu_time();
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = cards
            .chunks(per_thread)
            .enumerate()
            .map(|(t, chunk)| {
                let (archive, audit) = (&archive, &audit);
                s.spawn(move || -> Vec<Duration> {
                    let mut lat = Vec::new();
                    for (i, (uid, bytes)) in chunk.iter().enumerate() {
                        let serial = (t * per_thread + i) as u32 + 1;
                        let t0 = Instant::now();
                        let sealed = archive.seal(&SealRequest {
                            serial,
                            uid: *uid,
                            job: "bench",
                            record_id: "r",
                            bytes,
                        });
                        lat.push(t0.elapsed());
                        if let Err(e) = sealed {
                            eprintln!("seal failed: {e}");
                            continue;
                        }
                        let _ = archive.record(serial, *uid, &CardOutcome::Issued);
                        let _ = audit.append(&AuditEvent {
                            actor: "bench".into(),
                            action: "card.issue".into(),
                            subject: format!("{serial:08}"),
                            outcome: AuditOutcome::Ok,
                            detail: String::new(),
                        });
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let n = threads * per_thread;
    println!(
        "{threads:>3} threads: {:>6.0} cards/s ({n} cards of {size} bytes: seal + issued + audit entry each), \
         CPU {:.2} ms a card; seal latency {}",
        n as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / n as f64,
        summary(latencies)
    );
    drop(archive);
    drop(audit);
    drop(u);
    let report = keyserver::archive::verify(&keystore::DataDir::new(&data))?;
    if !report.is_ok() {
        println!(
            "   the archive does NOT verify: {:?}",
            report.chain.problems.first()
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn pool_rate(root: &Path) -> Res<()> {
    let dir = root.join("pool");
    let data = dir.join("data");
    let u = init_unlocked(&data)?;
    let pool = u.key_pool(PoolConfig { target: 0 })?;
    let t = Instant::now();
    pool.fill(20)?;
    println!(
        "RSA-2048 generation + pairwise check + wrap + store: {:.0} ms a key",
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    );
    let mut takes = Vec::new();
    while let Some(t) = {
        let t0 = Instant::now();
        pool.take()?.map(|_| t0.elapsed())
    } {
        takes.push(t);
    }
    println!("pool take (pop + durable flush + unwrap): {}", summary(takes));
    drop(pool);
    drop(u);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() -> Res<()> {
    let root: PathBuf = match std::env::args().nth(1) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/seal-bench"),
    };
    let only = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    std::fs::create_dir_all(&root)?;
    println!("in {}", root.display());
    if only == "all" || only == "fsync" {
        fsync_costs(&root)?;
        signing_cost()?;
    }
    if only == "all" || only == "seal" {
        let counts: Vec<usize> = match std::env::args().nth(3) {
            Some(t) => vec![t.parse()?],
            None => vec![1, 2, 4, 8, 16, 32, 64],
        };
        for threads in counts {
            seal_rate(&root, threads, (800 / threads).max(25))?;
        }
    }
    if only == "all" || only == "pool" {
        pool_rate(&root)?;
    }
    Ok(())
}
