//! `station run --console` as a process: on a pipe it changes nothing
//! (JSON lines); on a terminal (a pty from util-linux `script`) it takes
//! the alternate screen, stops on `q` like Ctrl-C, gives the terminal
//! back and prints the summary lines on the normal screen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Fake, TestCa, PATIENCE};

const STATION: &str = env!("CARGO_BIN_EXE_station");
const ENTER: &str = "\x1b[?1049h";
const LEAVE: &str = "\x1b[?1049l";

fn write_bundle(ca: &TestCa, addr: std::net::SocketAddr, dir: &Path) -> PathBuf {
    let path = dir.join("desk-1.bundle");
    std::fs::write(&path, ca.bundle("desk-1", addr).to_toml().unwrap().as_bytes()).unwrap();
    path
}

fn run_args(bundle: &Path, journal: &Path) -> Vec<String> {
    [
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        "--job",
        support::JOB,
        "--readers",
        "sim:1",
        "--max-backoff",
        "1",
        "--journal",
        journal.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn on_a_pipe_console_changes_nothing_json_lines_and_the_summary() {
    let ca = TestCa::new();
    let fake = Fake::new(2);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&ca, ks.addr, dir.path());
    let out = Command::new(STATION)
        .args(run_args(&bundle, &dir.path().join("journal")))
        .arg("--console")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no terminal codes on a pipe: {stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let (events, summary) = lines.split_at(lines.len() - 4);
    for l in events {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["event"].is_string() && v["ts_ms"].is_u64(), "{l}");
    }
    assert_eq!(
        summary[..3],
        ["passed: 2", "rejected: 0", "round trips per card: 2"]
    );
    assert!(summary[3].starts_with("cards/hour: "));
    assert!(stderr.contains("--console needs a terminal"), "{stderr}");
}

#[test]
fn console_conflicts_with_json_and_no_wait_needs_console() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.bundle");
    let j = dir.path().join("j");
    for extra in [&["--console", "--json"][..], &["--no-wait"][..]] {
        let out = Command::new(STATION)
            .args(run_args(&b, &j))
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
    }
}

/// A process on a pty of 80×24 (`script`), its output collected.
struct Pty {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// The station with `args` on a pseudo-terminal (util-linux `script`,
    /// Debian package bsdutils, which `scripts/setup` installs).
    fn spawn(args: &[String]) -> Pty {
        Pty::spawn_program(STATION, args, &[])
    }

    fn spawn_program(program: &str, args: &[String], env: &[(&str, &str)]) -> Pty {
        assert!(
            Command::new("script").arg("--version").output().is_ok(),
            "the console tests need util-linux `script` for a pseudo-terminal: install bsdutils \
             (scripts/setup does)"
        );
        let quoted: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().cloned())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let cmd = format!("stty cols 80 rows 24; exec {}", quoted.join(" "));
        let mut child = Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("TERM", "xterm-256color")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn until(&self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.text().contains(what) {
            assert!(Instant::now() < deadline, "no {what:?} in:\n{:?}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, keys: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the station did not end:\n{:?}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.code().unwrap_or(-1), self.text())
    }
}

#[test]
fn on_a_terminal_q_stops_the_run_and_the_terminal_is_given_back() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens there: the console shows the countdown until `q`.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let bundle = write_bundle(&ca, addr, dir.path());
    let mut args = run_args(&bundle, &dir.path().join("journal"));
    args.extend(["--connect-timeout", "0", "--console"].map(String::from));
    let mut pty = Pty::spawn(&args);
    pty.until(ENTER);
    pty.until("retry in");
    pty.send("q");
    pty.until("Finished");
    pty.send("x");
    let (code, out) = pty.finish();
    assert_eq!(code, 0, "{out:?}");
    let leave = out.rfind(LEAVE).expect("the alternate screen is left");
    assert!(out.find(ENTER).unwrap() < leave);
    assert!(out[leave..].contains("\x1b[?25h"), "the cursor is shown again");
    let after = out[leave..].replace('\r', "");
    assert!(
        after.contains("passed: 0\nrejected: 0\nround trips per card: 0\ncards/hour: 0\n"),
        "{after:?}"
    );
}

#[test]
fn on_a_terminal_a_finished_run_closes_itself_with_no_wait() {
    let ca = TestCa::new();
    let fake = Fake::new(3);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&ca, ks.addr, dir.path());
    let mut args = run_args(&bundle, &dir.path().join("journal"));
    args.extend(["--console", "--no-wait"].map(String::from));
    let pty = Pty::spawn(&args);
    let (code, out) = pty.finish();
    assert_eq!(code, 0, "{out:?}");
    // Drawn in place: what changed between frames only.
    assert!(
        out.contains("Cardsmith station") && out.contains("desk-1"),
        "{out:?}"
    );
    assert!(out.contains("Finished") && out.contains("passed 3"), "{out:?}");
    let leave = out.rfind(LEAVE).expect("the alternate screen is left");
    let after = out[leave..].replace('\r', "");
    assert!(after.contains("passed: 3\nrejected: 0\n"), "{after:?}");
}

/// Set in the child of [`a_panic_gives_the_terminal_back`].
const PANIC_CHILD: &str = "STATION_TUI_PANIC_CHILD";

/// Run as a child on a pty: a console, then a panic in another thread
/// (as a bug in a task would).
#[test]
fn panic_child() {
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    use station::control::Stop;
    use station::tui::{run_console, ConsoleOptions};
    let (stop, _keep) = tokio::sync::watch::channel(Stop::Run);
    let console = run_console(ConsoleOptions::default(), stop).unwrap();
    console.report().event(&station::report::Event::Stopping {
        reason: "drawn-before-the-panic".into(),
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::thread::spawn(|| panic!("a bug in a task")).join();
    // The console would redraw four times a second: it must not.
    std::thread::sleep(Duration::from_millis(600));
    console.wait().unwrap();
    println!("the child is done");
}

#[test]
fn a_panic_gives_the_terminal_back() {
    let me = std::env::current_exe().unwrap();
    let args = ["--exact", "panic_child", "--nocapture", "--test-threads", "1"].map(String::from);
    let pty = Pty::spawn_program(me.to_str().unwrap(), &args, &[(PANIC_CHILD, "1")]);
    let (code, out) = pty.finish();
    assert_eq!(code, 0, "{out:?}");
    let enter = out.find(ENTER).expect("the console started");
    let leave = out.find(LEAVE).expect("the alternate screen is left");
    assert!(
        enter < leave && out[..leave].contains("drawn-before-the-panic"),
        "{out:?}"
    );
    let after = &out[leave..];
    assert!(
        after.contains("a bug in a task"),
        "the panic is readable: {after:?}"
    );
    assert!(after.contains("the child is done"), "{after:?}");
    assert!(
        !after.contains("\x1b[?25l"),
        "nothing drawn after the panic: {after:?}"
    );
    assert_eq!(out.matches(LEAVE).count(), 1, "restored once: {out:?}");
}
