//! The whole system as processes: the `keyserver`, `station` and `vsc`
//! binaries built from the sources under test, a keyserver initialized and
//! serving in a scratch directory (two custodians, their components in
//! files), a station run with its JSON events collected, jobs as CSV
//! files, and what the tests read back from the outside (job status, the
//! archive) or, once the keyserver stopped, from custody opened in process
//! with the component files (the archive KEK, the cards' diversified
//! SCP03 keys).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use crate::harness::Proc;
use crate::harness::{root, run, text};

/// How long a process may take to get ready or to end before the test
/// calls it hung (a guard, never a speed check).
pub const PATIENCE: Duration = Duration::from_secs(180);

/// The three binaries, built from the sources under test.
#[derive(Debug)]
pub struct Bins {
    pub vsc: PathBuf,
    pub keyserver: PathBuf,
    pub station: PathBuf,
}

/// Builds `vsc`, `keyserver` and `station` once per test process with the
/// running test's cargo and profile, into its target folder (under `cargo
/// test --workspace` they are built already and this only checks).
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = crate::harness::build_binaries(&[
            ("vsc", "vsc"),
            ("keyserver", "keyserver"),
            ("station", "station"),
        ]);
        Bins {
            vsc: dir.join("vsc"),
            keyserver: dir.join("keyserver"),
            station: dir.join("station"),
        }
    })
}

/// A free loopback port (bound, then released: a keyserver restarted on it
/// keeps the address its stations' bundles name).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind loopback: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// A keyserver made with `keyserver init` (two custodians, components in
/// files) in `dir`, serving on a fixed loopback port.
pub struct Keyserver {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub components: Vec<PathBuf>,
    pub port: u16,
    pub rsa_pool: usize,
    pub serve: Option<Proc>,
    /// Every `serve` run's output, oldest first (kept across restarts).
    pub past: Vec<String>,
}

/// One row of `keyserver job status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRow {
    pub total: u64,
    pub issued: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub voided: u64,
    pub max_round_trips: u32,
    pub held: u64,
}

/// One row of `keyserver archive list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    pub serial: String,
    pub uid: String,
    pub status: String,
    pub job: String,
    pub record: String,
}

impl Keyserver {
    /// `keyserver init` in `dir/data`, then `serve` (RSA pool of
    /// `rsa_pool` keys, the shipped profiles).
    pub fn start(dir: &Path, rsa_pool: usize) -> Keyserver {
        let data = dir.join("data");
        let components = vec![
            dir.join("custodian-1.component"),
            dir.join("custodian-2.component"),
        ];
        let mut args = vec![
            "init".to_string(),
            "--data".into(),
            data.display().to_string(),
            "--custodians".into(),
            "2".into(),
        ];
        for c in &components {
            args.push("--component-out".into());
            args.push(c.display().to_string());
        }
        let out = run(&bins().keyserver.display().to_string(), &args);
        assert!(out.status.success(), "keyserver init: {}", text(&out));
        let mut ks = Keyserver {
            dir: dir.to_path_buf(),
            data,
            components,
            port: free_port(),
            rsa_pool,
            serve: None,
            past: Vec::new(),
        };
        ks.serve();
        ks
    }

    /// `keyserver serve` (again), waiting for its ready line.
    pub fn serve(&mut self) {
        assert!(self.serve.is_none(), "the keyserver is already serving");
        let mut args = vec![
            "serve".to_string(),
            "--data".into(),
            self.data.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--profiles".into(),
            root().join("profiles").display().to_string(),
            "--rsa-pool".into(),
            self.rsa_pool.to_string(),
        ];
        for c in &self.components {
            args.push("--unlock".into());
            args.push(c.display().to_string());
        }
        let mut p = Proc::spawn(&bins().keyserver, &args, &[("RUST_LOG", "info")]);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if p.stdout.all().iter().any(|l| l.starts_with("keyserver ready:")) {
                break;
            }
            assert!(
                p.running(),
                "keyserver serve ended before it was ready: {}",
                p.describe()
            );
            assert!(
                Instant::now() < deadline,
                "keyserver serve is not ready: {}",
                p.describe()
            );
            thread::sleep(Duration::from_millis(50));
        }
        self.serve = Some(p);
    }

    /// The station-facing address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn keep_output(&mut self) {
        if let Some(p) = &self.serve {
            self.past.push(p.describe());
        }
    }

    /// SIGTERM (a clean stop) and wait.
    pub fn stop(&mut self) {
        self.keep_output();
        if let Some(mut p) = self.serve.take() {
            p.signal("TERM");
            let code = p.wait(PATIENCE);
            assert_eq!(code, Some(0), "keyserver serve stopped badly: {}", p.describe());
        }
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        self.keep_output();
        if let Some(mut p) = self.serve.take() {
            p.kill();
        }
    }

    /// Runs `keyserver ARGS --data DATA`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        all.push("--data".into());
        all.push(self.data.display().to_string());
        run(&bins().keyserver.display().to_string(), &all)
    }

    /// Runs `keyserver ARGS --data DATA`, which must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "keyserver {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `csv` and submits it as `job` for `profile`.
    pub fn submit(&self, job: &str, profile: &str, csv: &str) {
        let path = self.dir.join(format!("{job}.csv"));
        std::fs::write(&path, csv).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let p = path.display().to_string();
        self.cli_ok(&["job", "submit", &p, "--job", job, "--profile", profile]);
    }

    /// Enrolls a station (all jobs); its bundle's path.
    pub fn enroll(&self, name: &str) -> PathBuf {
        let out = self.dir.join(format!("{name}.bundle"));
        let o = out.display().to_string();
        self.cli_ok(&["enroll-station", name, "--out", &o]);
        out
    }

    /// `keyserver job status JOB`, parsed.
    pub fn job_status(&self, job: &str) -> JobRow {
        let out = self.cli_ok(&["job", "status", job]);
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(job))
            .unwrap_or_else(|| panic!("job status shows no job {job}:\n{out}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        let n = |i: usize| -> u64 {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("job status row {row:?}: column {i}"))
        };
        JobRow {
            total: n(2),
            issued: n(3),
            queued: n(4),
            in_flight: n(5),
            voided: n(6),
            max_round_trips: u32::try_from(n(7)).unwrap_or(u32::MAX),
            held: n(8),
        }
    }

    /// `keyserver archive list`, parsed (one row per card).
    pub fn archive_list(&self) -> Vec<ArchiveRow> {
        let out = self.cli_ok(&["archive", "list"]);
        out.lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|s| s.len() == 8 && s.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let get = |i: usize| f.get(i).map(|s| (*s).to_string()).unwrap_or_default();
                ArchiveRow {
                    serial: get(0),
                    uid: get(1),
                    status: get(2),
                    job: get(f.len().saturating_sub(2)),
                    record: get(f.len().saturating_sub(1)),
                }
            })
            .collect()
    }

    /// `keyserver archive verify` must say OK.
    pub fn archive_verify(&self) -> String {
        let out = self.cli_ok(&["archive", "verify"]);
        assert!(out.contains("OK: every file and the whole chain hold"), "{out}");
        out
    }

    /// `keyserver audit verify` must say OK.
    pub fn audit_verify(&self) -> String {
        let out = self.cli_ok(&["audit", "verify"]);
        assert!(out.contains("OK"), "{out}");
        out
    }

    /// The archive's history of each card, from the manifest (no custody
    /// needed).
    pub fn histories(&self) -> Vec<keyserver::archive::CardHistory> {
        keyserver::archive::cards(&keyserver::keystore::DataDir::new(&self.data))
            .unwrap_or_else(|e| panic!("reading the archive manifest: {e}"))
            .0
    }

    /// Custody unlocked in this process from the component files (the
    /// keyserver must have stopped: the keystore is locked while it runs).
    pub fn unlock(&self) -> keyserver::keystore::Unlocked {
        assert!(
            self.serve.is_none(),
            "stop the keyserver before opening its keystore"
        );
        keyserver::keystore::Unlocked::from_component_files(&self.data, &self.components)
            .unwrap_or_else(|e| panic!("unlocking custody with the component files: {e}"))
    }

    /// Every `serve` run's output, for messages.
    pub fn logs(&self) -> String {
        let mut s = self.past.join("\n");
        if let Some(p) = &self.serve {
            s.push('\n');
            s.push_str(&p.describe());
        }
        s
    }
}

impl Drop for Keyserver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A piv-escrow CSV of `n` records `<prefix>-NN`; returns it and each
/// record's PIN.
pub fn piv_escrow_csv(prefix: &str, n: usize) -> (String, std::collections::BTreeMap<String, String>) {
    const NAMES: [(&str, &str); 8] = [
        ("Ada", "Lovelace"),
        ("Alan", "Turing"),
        ("Grace", "Hopper"),
        ("Edsger", "Dijkstra"),
        ("Barbara", "Liskov"),
        ("Donald", "Knuth"),
        ("Frances", "Allen"),
        ("Radia", "Perlman"),
    ];
    let mut pins = std::collections::BTreeMap::new();
    let mut s = String::from("record_id,given_name,surname,email,employee_id,department,pin\n");
    for i in 1..=n {
        let (g, f) = NAMES[(i - 1) % NAMES.len()];
        let id = format!("{prefix}-{i:02}");
        let pin = format!("{:06}", (i * 7919 + 271_828) % 1_000_000);
        s.push_str(&format!(
            "{id},{g},{f},{}.{}{i}@example.org,{},Research,{pin}\n",
            g.to_lowercase(),
            f.to_lowercase(),
            70_000 + i
        ));
        pins.insert(id, pin);
    }
    (s, pins)
}

/// A `station run` process with its JSON events.
pub struct StationRun {
    pub proc: Proc,
}

/// The four summary lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub rejected: u64,
    pub round_trips_per_card: u32,
    pub cards_per_hour: u64,
}

impl StationRun {
    /// `station run --bundle B --job J --readers R --journal DIR --json
    /// EXTRA…`.
    pub fn start(bundle: &Path, job: &str, readers: &str, journal: &Path, extra: &[&str]) -> StationRun {
        let mut args = vec![
            "run".to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
            "--job".into(),
            job.into(),
            "--readers".into(),
            readers.into(),
            "--journal".into(),
            journal.display().to_string(),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_string()));
        StationRun {
            proc: Proc::spawn(&bins().station, &args, &[("RUST_LOG", "info")]),
        }
    }

    /// The JSON events so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.proc
            .stdout
            .all()
            .iter()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The events of one kind (`card`, `reader`, `settled`, …).
    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// Waits until `f` holds for the events so far; panics after
    /// [`PATIENCE`] or if the station ends first.
    pub fn wait_until(&mut self, what: &str, f: impl Fn(&[serde_json::Value]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if f(&self.events()) {
                return;
            }
            assert!(
                self.proc.running(),
                "the station ended before {what}: {}",
                self.proc.describe()
            );
            assert!(
                Instant::now() < deadline,
                "the station never showed {what}: {}",
                self.proc.describe()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the end; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.proc.wait(PATIENCE)
    }

    /// The summary lines, once it ended.
    pub fn summary(&self) -> Summary {
        let lines = self.proc.stdout.all();
        let get = |key: &str| -> u64 {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no summary line {key:?}: {}", self.proc.describe()))
        };
        Summary {
            passed: get("passed: "),
            rejected: get("rejected: "),
            round_trips_per_card: u32::try_from(get("round trips per card: ")).unwrap_or(u32::MAX),
            cards_per_hour: get("cards/hour: "),
        }
    }

    /// Per card (by request id): the round trips the station itself saw
    /// (each Script is one `reader` event with its `round_trip`), counted
    /// between a reader's card events.
    pub fn scripts_seen_per_card(&self) -> Vec<(String, u32)> {
        let mut current: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for e in self.events() {
            let reader = e["reader"].as_str().unwrap_or_default().to_string();
            match e["event"].as_str() {
                Some("reader") if e["round_trip"].is_u64() => *current.entry(reader).or_default() += 1,
                Some("card") if e["recovered"] == false => {
                    let n = current.remove(&reader).unwrap_or(0);
                    out.push((e["request_id"].as_str().unwrap_or_default().to_string(), n));
                }
                _ => {}
            }
        }
        out
    }
}
