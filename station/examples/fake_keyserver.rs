//! The station tests' fake keyserver on loopback, to try `station run`
//! (and its `--console`) by hand without a real keyserver:
//!
//! ```text
//! cargo run -p station --example fake_keyserver -- DIR [RECORDS] [--revoked]
//! ```
//!
//! Writes `DIR/desk-1.bundle` for station `desk-1`, prints the command to
//! run against it, and serves job `people` (RECORDS records, default 20)
//! until killed. `--revoked` refuses the station.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let revoked = args.iter().any(|a| a == "--revoked");
    let mut plain = args.iter().filter(|a| !a.starts_with("--"));
    let dir = PathBuf::from(plain.next().map_or("fake-keyserver", String::as_str));
    let records = plain.next().map_or(20, |n| n.parse().expect("RECORDS: a number"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = support::TestCa::new();
    let fake = support::Fake::new(records);
    fake.db().revoked = revoked;
    let running = fake.start(&ca, 0);
    let bundle = dir.join("desk-1.bundle");
    std::fs::write(&bundle, ca.bundle("desk-1", running.addr).to_toml().unwrap()).unwrap();
    println!(
        "fake keyserver on {} ({records} records for job {})",
        running.addr,
        support::JOB
    );
    println!(
        "station run --bundle {} --job {} --readers sim:2 --journal {} --console",
        bundle.display(),
        support::JOB,
        dir.join("journal").display()
    );
    loop {
        std::thread::park();
    }
}
