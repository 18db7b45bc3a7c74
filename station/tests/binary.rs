//! The `station` binary: killed with SIGKILL mid-card and started again on
//! the same journal; refused; its help. Against the fake keyserver on
//! loopback, with sim readers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use support::{CardPlan, Fake, TestCa, PATIENCE};

const STATION: &str = env!("CARGO_BIN_EXE_station");

fn write_bundle(ca: &TestCa, addr: std::net::SocketAddr, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("desk-1.bundle");
    std::fs::write(&path, ca.bundle("desk-1", addr).to_toml().unwrap().as_bytes()).unwrap();
    path
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn spawn(bundle: &Path, journal: &Path, extra: &[&str]) -> Run {
    let mut child = Command::new(STATION)
        .args(["run", "--bundle"])
        .arg(bundle)
        .args([
            "--job",
            support::JOB,
            "--readers",
            "sim:1",
            "--json",
            "--max-backoff",
            "1",
            "--journal",
        ])
        .arg(journal)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Run {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Run {
    /// Reads stdout until a line satisfies `f`.
    fn until(&mut self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = f(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "the station did not print {what}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to end; its exit code, stdout and stderr.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        let deadline = std::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the station did not end; it printed:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        (status.code().unwrap_or(-1), self.seen, err)
    }
}

fn json_events(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sigkill_mid_card_then_restart_rejects_that_card_and_continues() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldAfterFirstReply);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&ca, ks.addr, dir.path());
    let journal = dir.path().join("journal");

    let mut first = spawn(&bundle, &journal, &[]);
    first.until("the start event", |l| l.contains("\"event\":\"start\""));
    fake.until_blocking("a card held mid-card", |db| db.held == 1);
    let lost = fake.db().requests[0].request_id.clone();
    first.child.kill().unwrap(); // SIGKILL
    let _ = first.child.wait();
    fake.until_blocking("the lost card voided", |db| db.finished.contains_key(&lost));

    let second = spawn(&bundle, &journal, &["--cards", "2"]);
    let (code, lines, err) = second.finish();
    assert_eq!(code, 0, "stderr: {err}\nstdout: {lines:?}");
    let events = json_events(&lines);
    let cards: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "card").collect();
    assert_eq!(cards.len(), 3, "{events:?}");
    assert_eq!(cards[0]["request_id"], lost.as_str());
    assert_eq!(cards[0]["recovered"], true);
    assert_eq!(cards[0]["bin"], "reject");
    assert!(cards[1..]
        .iter()
        .all(|c| c["bin"] == "pass" && c["round_trips"] == 2));
    assert!(events
        .iter()
        .any(|e| e["event"] == "settled" && e["request_id"] == lost.as_str() && e["keyserver_ok"] == false));
    // The summary, exactly these lines, at the end of standard output.
    let tail: Vec<&str> = lines.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(tail[0], "passed: 2");
    assert_eq!(tail[1], "rejected: 1");
    assert_eq!(tail[2], "round trips per card: 2");
    assert!(tail[3].starts_with("cards/hour: "), "{tail:?}");
    // No request id reused.
    let db = fake.db();
    let fresh: HashSet<&String> = db
        .requests
        .iter()
        .map(|r| &r.request_id)
        .filter(|r| **r != lost)
        .collect();
    assert_eq!(fresh.len(), 2);
    assert_eq!(db.issued, 2);
    drop(db);

    // The journal, as `station journal` prints it.
    let out = Command::new(STATION)
        .args(["journal", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["request_id"], lost.as_str());
    assert_eq!(entries[0]["recovered"], true);
    assert_eq!(entries[0]["unsettled"], false);
    assert!(entries.iter().all(|e| e["state"] == "done"));
}

#[test]
fn a_revoked_station_exits_3_with_a_message_and_the_summary() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().revoked = true;
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&ca, ks.addr, dir.path());
    let run = spawn(&bundle, &dir.path().join("journal"), &[]);
    let (code, lines, err) = run.finish();
    assert_eq!(code, 3, "stderr: {err}");
    assert!(
        err.contains("refused this station") && err.contains("revoked"),
        "{err}"
    );
    assert!(lines.iter().any(|l| l == "passed: 0"), "{lines:?}");
}

#[test]
fn an_unreachable_keyserver_exits_4_after_the_connect_timeout() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let bundle = write_bundle(&ca, addr, dir.path());
    let run = spawn(&bundle, &dir.path().join("journal"), &["--connect-timeout", "1"]);
    let (code, lines, err) = run.finish();
    assert_eq!(code, 4, "stderr: {err}");
    assert!(err.contains("could not be reached"), "{err}");
    let events = json_events(&lines);
    assert!(events
        .iter()
        .any(|e| e["event"] == "keyserver" && e["state"] == "unreachable"));
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(STATION)
        .args(["run", "--bundle"])
        .arg(dir.path().join("missing.bundle"))
        .args(["--job", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the bundle"));
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in ["run", "readers", "journal"] {
        let out = Command::new(STATION).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Example"), "station {sub} --help:\n{text}");
        assert!(
            text.contains(&format!("station {sub}")),
            "station {sub} --help:\n{text}"
        );
    }
}

#[test]
fn sim_readers_are_listed() {
    let out = Command::new(STATION)
        .args(["readers", "--readers", "sim:2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "sim 0\tcard\nsim 1\tcard\n"
    );
}
