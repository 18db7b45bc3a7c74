//! The independent SCP03 host written in Python from the specification
//! (`tests/scp03_host.py`) against the software card, in process: the script
//! writes command APDUs as hex lines, this test hands them to the card and
//! writes the responses back.
//!
//! The script must be runnable: `python3` (or `$CARDSMITH_PYTHON`) with the
//! `cryptography` package (`scripts/setup` installs Debian's). If it is
//! missing the test fails, it does not skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod isd_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

use isd_support::*;
use vsc::card::{gp_state, LifeCycle};
use vsc::transport::CardTransport;

fn python() -> String {
    std::env::var("CARDSMITH_PYTHON").unwrap_or_else(|_| "python3".into())
}

struct Run {
    status: ExitStatus,
    stderr: String,
    commands: usize,
}

/// Runs the script with `args` against `t`; `tamper` flips the last data
/// byte of the response to that command (1-based).
fn run_script(t: &mut Card, args: &[&str], tamper: Option<usize>) -> Run {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scp03_host.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg("--stdio")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {script}: {e}. The independent SCP03 host needs python3 \
                 with the cryptography package (scripts/setup installs them).",
                python()
            )
        });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut to_script = child.stdin.take().unwrap();
    let from_script = BufReader::new(child.stdout.take().unwrap());
    let mut commands = 0;
    for line in from_script.lines() {
        let line = line.unwrap();
        let apdu = hex::decode(line.trim()).unwrap_or_else(|e| panic!("the script sent {line:?}: {e}"));
        commands += 1;
        let mut response = t.transmit(&apdu).unwrap();
        if tamper == Some(commands) && response.len() > 2 {
            let at = response.len() - 3;
            response[at] ^= 0x01;
        }
        if writeln!(to_script, "{}", hex::encode_upper(&response)).is_err() {
            break;
        }
    }
    drop(to_script);
    let status = child.wait().unwrap();
    let stderr = err_reader.join().unwrap();
    Run {
        status,
        stderr,
        commands,
    }
}

#[test]
fn the_python_host_rotates_the_keys_and_secures_the_card() {
    let mut t = card(300);
    let run = run_script(
        &mut t,
        &["--new-keys", "00112233445566778899AABBCCDDEEFF,0F1E2D3C4B5A69788796A5B4C3D2E1F0,8899AABBCCDDEEFF0011223344556677"],
        None,
    );
    assert!(
        run.status.success(),
        "the Python host failed ({}):\n{}",
        run.status,
        run.stderr
    );
    assert!(run.stderr.contains("self-test passed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("refused by the SECURED card (6A88)"),
        "{}",
        run.stderr
    );
    // SELECT, GET DATA; INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, GET DATA,
    // GET STATUS, PUT KEY, SET STATUS × 2, GET STATUS; the new session: 2 +
    // GET STATUS, GET DATA; INITIALIZE UPDATE refused.
    assert_eq!(run.commands, 15);
    // What the card says, seen from this side.
    assert_eq!(t.card().life_cycle(), LifeCycle::Secured);
    let sets = gp_state::keysets(t.card().vsc()).unwrap();
    let summary: Vec<(u8, bool, u32)> = sets
        .iter()
        .map(|s| (s.set.kvn, s.factory, s.set.sequence_counter))
        .collect();
    // The stock's set was used once; the new one once, by the reopened session.
    assert_eq!(summary, [(0x01, true, 1), (0x30, false, 1)]);
    let new = keys_of(
        &hex::decode("00112233445566778899AABBCCDDEEFF").unwrap(),
        &hex::decode("0F1E2D3C4B5A69788796A5B4C3D2E1F0").unwrap(),
        &hex::decode("8899AABBCCDDEEFF0011223344556677").unwrap(),
    );
    // The Rust host opens a session with the keys the Python host loaded.
    open_with(
        &mut t,
        0x30,
        &new,
        vsc::scp03::SecurityLevel::All,
        vsc::card::ISD_AID,
    )
    .unwrap();
}

#[test]
fn the_python_host_with_random_keys_at_level_13() {
    let mut t = card(301);
    let run = run_script(&mut t, &["--level", "13", "--new-kvn", "2A"], None);
    assert!(run.status.success(), "the Python host failed:\n{}", run.stderr);
    assert_eq!(t.card().life_cycle(), LifeCycle::Secured);
    let kvns: Vec<u8> = gp_state::keysets(t.card().vsc())
        .unwrap()
        .iter()
        .map(|s| s.set.kvn)
        .collect();
    assert_eq!(kvns, [0x01, 0x2A]);
}

#[test]
fn the_python_host_fails_loudly() {
    // A tampered R-MAC (the 5th command is the first secured GET DATA).
    let mut t = card(302);
    let run = run_script(&mut t, &[], Some(5));
    assert!(!run.status.success());
    assert!(run.stderr.contains("R-MAC does not verify"), "{}", run.stderr);
    assert_eq!(t.card().life_cycle(), LifeCycle::OpReady);
    // A card that is already SECURED refuses the stock's keys.
    let mut vsc = blank(303);
    gp_state::set_life_cycle(&mut vsc, LifeCycle::Secured).unwrap();
    let mut t = vsc::transport::InProcess::insert(vsc::card::SoftCard::with_seed(vsc, 3).unwrap());
    let run = run_script(&mut t, &[], None);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("FAILED: INITIALIZE UPDATE with KVN 01 answered 6A88"),
        "{}",
        run.stderr
    );
    // A wrong Key-ENC: the card challenge is not the pseudo-random one.
    let mut t = card(304);
    let run = run_script(&mut t, &["--keys", "000102030405060708090A0B0C0D0E0F"], None);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains("card challenge is not the pseudo-random one"),
        "{}",
        run.stderr
    );
    // A wrong Key-MAC: the card cryptogram does not verify.
    let test_key = hex::encode_upper(vsc::card::blank::GP_TEST_KEY);
    let keys = format!("{test_key},000102030405060708090A0B0C0D0E0F,{test_key}");
    let run = run_script(&mut t, &["--keys", &keys], None);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains("card cryptogram does not verify"),
        "{}",
        run.stderr
    );
}
