//! The end-to-end harness: pcscd, the `vsc` binary, served cards, the vpcd
//! readers, outside tools.
//!
//! # pcscd
//!
//! [`lock_readers`] runs `scripts/pcscd start --auto-exit` (the project's
//! rules: reuse a pcscd running with `config/reader.conf.d`, refuse loudly
//! if another pcscd runs). `scripts/test` starts pcscd before `cargo test`
//! and stops it afterwards (a trap), so the harness reuses that one. When a
//! developer runs `cargo test` alone, the harness starts pcscd itself with
//! `-x` (auto-exit): it quits after 60 s without PC/SC clients, so it does
//! not outlive the test run by more than a minute, and no process of the
//! test run has to outlive the tests to stop it.
//!
//! # The `vsc` binary
//!
//! `env!("CARGO_BIN_EXE_vsc")` exists only in the `vsc` package's own
//! tests. [`vsc_bin`] runs `cargo build -p vsc --bin vsc` once per test
//! process, with the cargo and the profile of the running test, into the
//! running test's target folder: the binary is always the one built from
//! the sources under test (never a stale one), and under `cargo test
//! --workspace` it is already built, so the call only checks. Cargo holds
//! its build lock only while compiling, not while tests run, so the nested
//! build does not wait on the outer one.
//!
//! # The readers
//!
//! There are two vpcd readers per pcscd. Every test that uses them holds
//! [`ReadersLock`]: a process-wide mutex (tests of one binary run in
//! parallel threads) and an advisory lock on `target/pcscd/readers.lock`
//! (test binaries, benchmarks and developers' runs may overlap).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use station::readers::PcscReader;

/// The reader of vpcd slot 0 (port 35963).
pub const READER_0: &str = "Virtual PCD 00 00";
/// The reader of vpcd slot 1 (port 35964).
pub const READER_1: &str = "Virtual PCD 00 01";
pub const PORT_0: u16 = 35963;
pub const PORT_1: u16 = 35964;

/// The reader name of a vpcd port.
pub fn reader_of(port: u16) -> &'static str {
    if port == PORT_1 {
        READER_1
    } else {
        READER_0
    }
}

/// How long to wait for pcscd to see a card come or go (it polls every
/// 400 ms); generous for a loaded 2-core machine. A bound, not a speed
/// assertion.
pub const CARD_WAIT: Duration = Duration::from_secs(30);

/// OpenSC's PKCS#11 module.
pub const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// vsmartcard's vpcd driver, as `config/reader.conf.d` names it.
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// The workspace root.
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// An outside program the tests need, and the Debian package it comes in.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const PCSCD: Tool = Tool {
    program: "pcscd",
    package: "pcscd",
};
pub const PKCS15_TOOL: Tool = Tool {
    program: "pkcs15-tool",
    package: "opensc",
};
pub const PKCS11_TOOL: Tool = Tool {
    program: "pkcs11-tool",
    package: "opensc",
};
pub const YUBICO_PIV_TOOL: Tool = Tool {
    program: "yubico-piv-tool",
    package: "yubico-piv-tool",
};
pub const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
};
/// Debian's Python, which python3-pyscard and python3-cryptography belong
/// to (a `python3` earlier on PATH, e.g. pyenv's, lacks them).
pub const PYTHON3: Tool = Tool {
    program: "/usr/bin/python3",
    package: "python3 python3-pyscard python3-cryptography",
};

fn on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fails the test, loudly, when a program is missing.
pub fn require(tools: &[Tool]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| on_path(t.program).is_none())
        .map(|t| format!("{} (Debian package {})", t.program, t.package))
        .collect();
    assert!(
        missing.is_empty(),
        "end-to-end test needs {}; run scripts/setup (this test never skips)",
        missing.join(", ")
    );
}

/// Fails the test, loudly, when a file (a driver, a module) is missing.
pub fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "end-to-end test needs {path} (Debian package {package}); run scripts/setup (this test never skips)"
    );
}

/// Runs a command; its output. Panics if it cannot start.
pub fn run<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"))
}

/// Runs a command that must succeed; its stdout. Panics with the whole
/// output otherwise.
pub fn run_ok<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = run(program, &args);
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(args: &[&str]) -> Output {
    let path = root().join("scripts/pcscd");
    Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

/// Makes sure pcscd runs with the project's configuration (reusing one, or
/// starting one that exits by itself when idle). Panics with the helper's
/// words if it cannot.
pub fn ensure_pcscd() {
    require(&[PCSCD]);
    require_file(VPCD_DRIVER, "vsmartcard-vpcd");
    let out = script(&["start", "--auto-exit"]);
    assert!(
        out.status.success(),
        "pcscd is needed and scripts/pcscd could not start it:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Restarts the pcscd `scripts/pcscd` started (the one the tests use).
pub fn restart_pcscd() {
    let out = script(&["restart"]);
    assert!(
        out.status.success(),
        "scripts/pcscd restart failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `cargo` command for a nested build, without the variables `cargo
/// test` sets for the running test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`,
/// …): build scripts that track one of them (ring's tracks
/// `CARGO_MANIFEST_DIR`) would otherwise see it change and rebuild half
/// the tree, once in the nested build and again in the next outer one.
pub fn nested_cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        let set_for_the_test = matches!(
            k,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        ) || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_");
        if set_for_the_test {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The `vsc` binary built from the sources under test (see the module
/// documentation).
pub fn vsc_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_vsc)
}

fn build_vsc() -> PathBuf {
    build_binaries(&[("vsc", "vsc")]).join("vsc")
}

/// Builds the binaries `(package, binary)` with the running test's cargo
/// and profile into its target folder (under `cargo test --workspace` they
/// are built already and this only checks); the folder they are in.
pub fn build_binaries(bins: &[(&str, &str)]) -> PathBuf {
    // The running test or bench is <target>/<profile dir>/deps/<name>-<hash>.
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot locate the running test: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test location {}", exe.display()));
    let target = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("unexpected test location {}", exe.display()));
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("unexpected test location {}", exe.display()),
    };
    let mut cmd = nested_cargo();
    cmd.args(["build", "--quiet", "--profile", profile]);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let names: Vec<&str> = bins.iter().map(|(_, b)| *b).collect();
    let out = cmd
        .arg("--target-dir")
        .arg(target)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {names:?}: {e}"));
    assert!(
        out.status.success(),
        "building {names:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in &names {
        let bin = profile_dir.join(name);
        assert!(
            bin.is_file(),
            "cargo built {name} but {} is not there",
            bin.display()
        );
    }
    profile_dir.to_path_buf()
}

/// Exclusive use of the two vpcd readers (see the module documentation).
/// Taking it makes sure pcscd runs.
pub struct ReadersLock {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// Takes the readers for this test; blocks while another test has them.
pub fn lock_readers() -> ReadersLock {
    static READERS: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the readers
    // are fine (every served card is removed on drop).
    let guard = READERS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = root().join("target/pcscd");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join("readers.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    fs4::fs_std::FileExt::lock_exclusive(&file)
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    ensure_pcscd();
    // A card nobody in this run put there (a `vsc serve` or `vsc feeder`
    // left connected to vpcd by hand) would answer in place of the test's
    // card: say so instead of running against it.
    for (reader, port) in [(READER_0, PORT_0), (READER_1, PORT_1)] {
        let r = PcscReader::open(reader).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = r.wait_for_removal(Duration::from_secs(5)) {
            panic!(
                "reader {reader:?} holds a card that no test put there ({e}): is a `vsc serve` or \
                 `vsc feeder` from elsewhere connected to vpcd port {port}? Stop it and run again."
            );
        }
    }
    ReadersLock {
        _file: file,
        _guard: guard,
    }
}

/// Waits for a card in `reader`; panics after [`CARD_WAIT`].
pub fn wait_for_card(reader: &str) -> PcscReader {
    let r = PcscReader::open(reader).unwrap_or_else(|e| panic!("{e}"));
    r.wait_for_card(CARD_WAIT)
        .unwrap_or_else(|e| panic!("pcscd does not show a card in {reader:?}: {e}"));
    r
}

/// Scratch space with the stock KEK in it.
pub struct Scratch {
    dir: tempfile::TempDir,
}

/// The KEK id card files in the tests are protected with.
pub const KEK_ID: &str = "stock/1";

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary folder: {e}"));
        std::fs::write(dir.path().join("stock.kek"), "11".repeat(32))
            .unwrap_or_else(|e| panic!("cannot write the KEK: {e}"));
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--kek-file F --kek-id ID` for the card files made here.
    pub fn kek_args(&self) -> Vec<String> {
        vec![
            "--kek-file".into(),
            self.join("stock.kek").to_string_lossy().into_owned(),
            "--kek-id".into(),
            KEK_ID.into(),
        ]
    }

    /// The KEK as an unlock, to open the files in the test.
    pub fn unlock(&self) -> vsc::file::Unlock {
        vsc::file::Unlock::Kek {
            key_id: KEK_ID.into(),
            key: vsc::secret::AesKey::from_slice(&[0x11; 32]).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Runs `vsc` with these arguments, which must succeed.
    pub fn vsc(&self, args: &[&str]) -> String {
        run_ok(&vsc_bin().to_string_lossy(), args)
    }

    /// A blank card `serial` (decimal) as `<name>`.
    /// `vsc feeder --stock STOCK --out OUT EXTRA…` with the scratch KEK;
    /// `readers` are the readers to see empty once it is dropped.
    pub fn feeder(&self, stock: &Path, out: &Path, extra: &[&str], readers: Vec<&'static str>) -> Running {
        let mut args: Vec<String> = vec![
            "feeder".into(),
            "--stock".into(),
            stock.to_string_lossy().into_owned(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_string()));
        args.extend(self.kek_args());
        Running::vsc(&args, readers)
    }

    /// `count` blank cards from serial `first` (`vsc blank --serials`) in
    /// the new folder `dir` of the scratch space; the folder.
    pub fn blank_stock(&self, dir: &str, first: u32, count: u32) -> PathBuf {
        let out = self.join(dir);
        let range = format!("{first:08}-{:08}", first + count.saturating_sub(1));
        let out_text = out.to_string_lossy().into_owned();
        let mut args = vec!["blank", "--serials", &range, "--out-dir", &out_text];
        let kek = self.kek_args();
        args.extend(kek.iter().map(String::as_str));
        self.vsc(&args);
        out
    }

    pub fn blank(&self, serial: &str, name: &str) -> PathBuf {
        let out = self.join(name);
        let mut args: Vec<String> = vec![
            "blank".into(),
            "--serial".into(),
            serial.into(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ];
        args.extend(self.kek_args());
        run_ok(&vsc_bin().to_string_lossy(), &args);
        out
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Lines a child printed, collected by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Collects the lines of `stream` on a thread of its own.
    pub fn collect(&self, stream: impl std::io::Read + Send + 'static) {
        let lines = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until a line starts with `prefix` at least `count` times.
    pub fn wait_for(&self, prefix: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.all().iter().filter(|l| l.starts_with(prefix)).count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `vsc serve` or `vsc feeder` child process. Dropping it kills the
/// process and waits for it, then for pcscd to see its reader(s) empty.
pub struct Running {
    proc: Proc,
    readers: Vec<&'static str>,
}

impl std::ops::Deref for Running {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Running {
    /// Starts `vsc <args>`; `readers` are the readers it serves.
    pub fn vsc(args: &[String], readers: Vec<&'static str>) -> Self {
        Running {
            proc: Proc::spawn(vsc_bin(), args, &[]),
            readers,
        }
    }

    /// `vsc serve FILE --port P` with the scratch KEK, and waits until
    /// pcscd shows the card.
    pub fn serve(scratch: &Scratch, card: &Path, port: u16) -> Self {
        let mut args = vec![
            "serve".to_owned(),
            card.to_string_lossy().into_owned(),
            "--port".into(),
            port.to_string(),
            "-v".into(),
        ];
        args.extend(scratch.kek_args());
        let r = Running::vsc(&args, vec![reader_of(port)]);
        wait_for_card(reader_of(port));
        r
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit; the exit code.
    pub fn interrupt(&mut self) -> Option<i32> {
        self.proc.signal("INT");
        self.wait_exit(CARD_WAIT)
    }

    /// Waits for the process to end by itself; its exit code (`None`:
    /// killed by a signal). Panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.wait(timeout)
    }
}

/// A child process with its output collected; killed when dropped.
pub struct Proc {
    child: Option<Child>,
    pub stdout: Lines,
    pub stderr: Lines,
    what: String,
}

impl Proc {
    pub fn spawn(program: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {args:?}: {e}", program.display()));
        let stdout = Lines::default();
        let stderr = Lines::default();
        if let Some(s) = child.stdout.take() {
            stdout.collect(s);
        }
        if let Some(s) = child.stderr.take() {
            stderr.collect(s);
        }
        Proc {
            child: Some(child),
            stdout,
            stderr,
            what: format!("{} {}", program.display(), args.join(" ")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) to this process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let out = run("kill", [format!("-{name}"), pid]);
        assert!(out.status.success(), "kill -{name} {}: {}", self.what, text(&out));
    }

    /// SIGKILL, and the process reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the end; the exit code (`None`: ended by a signal).
    /// Panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let (stdout, stderr) = (self.stdout.clone(), self.stderr.clone());
        wait_child(&mut self.child, &self.what, timeout, || {
            format!(
                "stdout (last 30): {:?}\nstderr (last 30): {:?}",
                last(&stdout.all(), 30),
                last(&stderr.all(), 30)
            )
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{}\nstdout (last 40): {:#?}\nstderr (last 40): {:#?}",
            self.what,
            last(&self.stdout.all(), 40),
            last(&self.stderr.all(), 40)
        )
    }
}

/// A finished command's exit status and output, for messages.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn last(v: &[String], n: usize) -> Vec<String> {
    v[v.len().saturating_sub(n)..].to_vec()
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Listens on a free loopback port until `stop` is set, handing each
/// connection (blocking) to `handle` on a thread of its own; the port.
/// `what` names the listener in a failure.
pub fn serve_loopback(
    what: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("{what}: cannot listen on loopback: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what}: no local address: {e}"))
        .port();
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let handle = Arc::new(handle);
    thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let handle = handle.clone();
                    thread::spawn(move || handle(conn));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    port
}

/// Waits at most `timeout` for `child` to end, then takes it; its exit
/// code (`None`: ended by a signal). Panics after `timeout` with
/// `what` and `output()`, or if it was waited for already.
pub fn wait_child(
    child: &mut Option<Child>,
    what: &str,
    timeout: Duration,
    output: impl Fn() -> String,
) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let Some(c) = child.as_mut() else {
        panic!("{what} was already waited for")
    };
    loop {
        match c.try_wait() {
            Ok(Some(status)) => {
                *child = None;
                // Let the collector threads drain the pipes.
                thread::sleep(Duration::from_millis(200));
                return status.code();
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => panic!("{what} did not end within {timeout:?}\n{}", output()),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.proc.kill();
        // The next test must not see this card still "present": wait until
        // pcscd noticed the removal (best effort: no panic in drop).
        for reader in &self.readers {
            if let Ok(r) = PcscReader::open(reader) {
                let _ = r.wait_for_removal(CARD_WAIT);
            }
        }
    }
}
