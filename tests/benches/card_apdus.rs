//! APDUs per second through the software card: in process (`InProcess`)
//! and through pcscd + vpcd (`PcscReader` against `vsc serve`), for a
//! trivial command (SELECT PIV) and for a P-256 signature (GENERAL
//! AUTHENTICATE with 9A after VERIFY). One run, one table.
//!
//! ```sh
//! cargo bench -p tests --bench card_apdus            # 3 s per row
//! cargo bench -p tests --bench card_apdus -- 10      # 10 s per row
//! ```
//!
//! Needs pcscd and vpcd like the end-to-end tests (it starts pcscd through
//! `scripts/pcscd` if none runs). Prints figures; asserts nothing about
//! speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tests::harness::{self, Running, Scratch, PORT_0, READER_0};
use tests::piv;
use vsc::card::blank::{BlankCard, DEFAULT_PIN};
use vsc::card::SoftCard;
use vsc::codec::{CommandApdu, StatusWord};
use vsc::file::Protector;
use vsc::secret::AesKey;
use vsc::transport::{exchange, CardTransport, InProcess};

struct Row {
    path: &'static str,
    command: &'static str,
    result: Result<(u64, Duration), String>,
}

/// Sends `cmd` for `budget` (after a short warm-up); (count, elapsed).
fn measure(
    t: &mut impl CardTransport,
    cmd: &CommandApdu,
    budget: Duration,
) -> Result<(u64, Duration), String> {
    let send = |t: &mut dyn CardTransport| -> Result<(), String> {
        let r = exchange(t, cmd, true).map_err(|e| e.to_string())?;
        if r.sw == StatusWord::Success {
            Ok(())
        } else {
            Err(format!("the card answered {}", r.sw))
        }
    };
    for _ in 0..20 {
        send(t)?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        send(t)?;
        n += 1;
    }
    Ok((n, start.elapsed()))
}

/// Makes 9A a P-256 key and verifies the PIN: what signing needs.
fn prepare_signature(t: &mut impl CardTransport) -> Result<CommandApdu, String> {
    let why = |e: piv::HostError| format!("needs the PIV application: {e}");
    piv::select_piv(t).map_err(why)?;
    piv::authenticate_management(t, &piv::default_management_key()).map_err(why)?;
    piv::generate_p256(t, 0x9A).map_err(why)?;
    piv::ok(t, "VERIFY", &piv::verify_pin_command(DEFAULT_PIN)).map_err(why)?;
    Ok(piv::sign_p256_command(0x9A, &[0x5A; 32]))
}

fn rows_for(path: &'static str, t: &mut impl CardTransport, budget: Duration) -> Vec<Row> {
    let trivial = Row {
        path,
        command: "SELECT PIV",
        result: measure(t, &piv::select_piv_command(), budget),
    };
    let sign = Row {
        path,
        command: "GENERAL AUTHENTICATE 9A (P-256 signature)",
        result: prepare_signature(t).and_then(|cmd| measure(t, &cmd, budget)),
    };
    vec![trivial, sign]
}

fn main() {
    let secs: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let budget = Duration::from_secs(secs);
    let mut rows = Vec::new();

    // In process: a blank card over an in-memory VSC.
    let protector = Protector::Kek {
        key_id: "bench/1".into(),
        key: AesKey::from_slice(&[3; 32]).unwrap(),
    };
    let vsc = BlankCard::new(9001)
        .unwrap()
        .build(&protector, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let mut t = InProcess::insert(SoftCard::with_seed(vsc, 1).unwrap());
    rows.extend(rows_for("in process", &mut t, budget));

    // Through pcscd + vpcd: `vsc serve` of a blank card file, PC/SC client.
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let card = scratch.blank("00009002", "bench.vsc");
    let _served = Running::serve(&scratch, &card, PORT_0);
    let mut reader = harness::wait_for_card(READER_0);
    reader.connect().unwrap();
    rows.extend(rows_for("pcscd + vpcd", &mut reader, budget));
    reader.disconnect().unwrap();

    println!();
    println!("| path | command | APDUs | seconds | APDUs/s | mean per APDU |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in rows {
        match r.result {
            Ok((n, d)) => {
                let rate = n as f64 / d.as_secs_f64();
                let mean_us = d.as_secs_f64() * 1e6 / n.max(1) as f64;
                println!(
                    "| {} | {} | {n} | {:.2} | {rate:.0} | {mean_us:.0} µs |",
                    r.path,
                    r.command,
                    d.as_secs_f64()
                );
            }
            Err(e) => println!("| {} | {} | – | – | n/a | {e} |", r.path, r.command),
        }
    }
}
