//! The real `keyserver` binary: one-shot commands, and `serve` in the
//! background (its standard output and error captured).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `serve` may take to say it is ready before the test calls it
/// hung (a guard, not a timing assertion).
pub const READY_PATIENCE: Duration = Duration::from_secs(180);

pub const BIN: &str = env!("CARGO_BIN_EXE_keyserver");

/// A finished one-shot command.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Both streams, for messages.
    pub fn text(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `keyserver <args>` to its end.
pub fn run(args: &[&str]) -> Ran {
    let out = Command::new(BIN).args(args).output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `keyserver init` with two custodians whose components go to `a` and `b`.
pub fn init(data: &Path, a: &Path, b: &Path) -> Ran {
    let ran = run(&[
        "init",
        "--data",
        &data.display().to_string(),
        "--custodians",
        "2",
        "--component-out",
        &a.display().to_string(),
        "--component-out",
        &b.display().to_string(),
    ]);
    assert_eq!(ran.code, 0, "init: {}", ran.text());
    ran
}

/// `keyserver serve`, running.
pub struct Serve {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The ready line.
    pub ready: String,
}

/// How `serve` ended, with everything it wrote.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Serve {
    /// Starts `keyserver serve <args>` and waits for its ready line; panics
    /// with its output if it ends first.
    pub fn start(args: &[String]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<Option<String>>();
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        let t1 = std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("keyserver ready:") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Some(line.clone()));
                    }
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(None);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let ready = match ready_rx.recv_timeout(READY_PATIENCE) {
            Ok(Some(line)) => line,
            other => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let _ = t1.join();
                let _ = t2.join();
                panic!(
                    "keyserver serve never said it was ready ({}; {status}):\nstdout:\n{}\nstderr:\n{}",
                    if other.is_err() { "hung" } else { "ended" },
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap()
                );
            }
        };
        Serve {
            child,
            stdout,
            stderr,
            readers: vec![t1, t2],
            ready,
        }
    }

    /// Where stations connect, from the ready line.
    pub fn address(&self) -> String {
        self.ready
            .strip_prefix("keyserver ready: listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string()
    }

    /// What it wrote so far (standard output: the ready line and the JSON
    /// log lines).
    pub fn stdout_now(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn finish(mut self) -> Stopped {
        let status = self.child.wait().unwrap();
        for t in self.readers.drain(..) {
            t.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Stopped {
            status,
            stdout,
            stderr,
        }
    }

    /// SIGKILL: the keyserver dies on the spot, as in a power cut.
    pub fn kill(mut self) -> Stopped {
        self.child.kill().unwrap();
        self.finish()
    }

    /// SIGTERM (or SIGINT): a clean stop.
    pub fn signal(self, signal: &str) -> Stopped {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
        self.finish()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A test that panicked leaves no keyserver behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The arguments of `serve` for data directory `data`, components `a` and
/// `b`, the shipped profiles, any free loopback port, a small RSA pool (the
/// default, 64 keys, would keep a core busy for the test's whole run).
pub fn serve_args(data: &Path, a: &Path, b: &Path) -> Vec<String> {
    [
        "--data",
        &data.display().to_string(),
        "--unlock",
        &a.display().to_string(),
        "--unlock",
        &b.display().to_string(),
        "--profiles",
        &super::profiles_dir().display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--rsa-pool",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
