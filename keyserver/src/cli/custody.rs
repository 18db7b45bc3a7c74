//! `keyserver init`.
use std::process::ExitCode;

use super::{CliResult, InitArgs};
use crate::keystore::{self, FileDelivery, InitOptions, TerminalDelivery};

pub fn init(args: InitArgs) -> CliResult {
    let options = InitOptions {
        custodians: args.custodians,
        server_names: Vec::new(),
    };
    let data = args.data.data;
    let to_files = !args.component_out.is_empty();
    let report = if to_files {
        keystore::init(
            &data,
            &options,
            &mut FileDelivery::new(args.component_out.clone()),
        )?
    } else {
        keystore::init(&data, &options, &mut TerminalDelivery)?
    };
    println!(
        "Keyserver {} initialized in {}.",
        report.id,
        report.data.display()
    );
    println!(
        "The root key is split among {} custodians; every one of them is needed to unlock.",
        report.custodians
    );
    for (i, check) in report.component_checks.iter().enumerate() {
        let whose = if to_files {
            args.component_out
                .get(i)
                .map(|p| format!(" (in {})", p.display()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        println!("  custodian {}: component check value {check}{whose}", i + 1);
    }
    println!("  root key check value: {}", report.root_check);
    println!("Record these fingerprints outside the data directory; `archive verify` and `audit verify` print the first:");
    println!("  log-signing key  sha256 {}", report.log_signing_fingerprint);
    println!("  issuer CA        sha256 {}", report.issuer_ca_fingerprint);
    println!("  enrollment CA    sha256 {}", report.enrollment_ca_fingerprint);
    Ok(ExitCode::SUCCESS)
}
