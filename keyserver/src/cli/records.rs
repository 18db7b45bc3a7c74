//! `keyserver archive …`, `keyserver audit …`: read the archive and the
//! audit log without the custodians.
use std::process::ExitCode;

use super::{ArchiveCommand, AuditCommand, CliResult};
use crate::archive;
use crate::audit;
use crate::audit::chain::ChainReport;
use crate::keystore::DataDir;

/// Problems printed before "… and N more".
const SHOWN: usize = 200;

fn print_findings(report: &ChainReport) {
    for note in &report.notes {
        println!("  note: {note}");
    }
    if report.problems.is_empty() {
        return;
    }
    println!("{} problem(s):", report.problems.len());
    for p in report.problems.iter().take(SHOWN) {
        println!("  {p}");
    }
    if report.problems.len() > SHOWN {
        println!("  … and {} more", report.problems.len() - SHOWN);
    }
}

fn head_text(report: &ChainReport) -> String {
    match &report.head {
        Some(h) => format!("signed head at entry {} ({})", h.seq, h.time),
        None => "no head".into(),
    }
}

pub fn archive(c: ArchiveCommand) -> CliResult {
    match c {
        ArchiveCommand::List(d) => {
            let data = DataDir::new(d.data);
            let (cards, skipped) = archive::cards(&data)?;
            println!(
                "{:<10} {:<32} {:<9} {:<24} {:<16} RECORD",
                "SERIAL", "UID", "STATUS", "SEALED", "JOB"
            );
            for c in &cards {
                let sealed = c
                    .events
                    .iter()
                    .find(|e| e.2 == archive::ManifestEvent::Sealed)
                    .map(|e| e.1.as_str())
                    .unwrap_or("-");
                println!(
                    "{:<10} {:<32} {:<9} {:<24} {:<16} {}",
                    format!("{:08}", c.serial),
                    c.uid,
                    c.status().map(|s| s.as_str()).unwrap_or("-"),
                    sealed,
                    c.job.as_deref().unwrap_or("-"),
                    c.record.as_deref().unwrap_or("-")
                );
            }
            println!(
                "{} card(s){}. Read from the manifest without checking it: run `keyserver archive verify`.",
                cards.len(),
                if skipped > 0 {
                    format!(", {skipped} unreadable line(s) skipped")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        ArchiveCommand::Show { serial, data } => {
            let data = DataDir::new(data.data);
            let serial: u32 = serial
                .trim()
                .parse()
                .map_err(|_| format!("{serial:?} is not a card serial (digits, e.g. 00001079)"))?;
            let mut ok = true;
            for c in archive::card(&data, serial)? {
                println!("Card {:08}, VSC UID {}", c.serial, c.uid);
                println!(
                    "  job {}, record {}",
                    c.job.as_deref().unwrap_or("-"),
                    c.record.as_deref().unwrap_or("-")
                );
                for (seq, time, event, reason) in &c.events {
                    match reason {
                        Some(r) => println!("  #{seq:<8} {time}  {}: {r}", event.as_str()),
                        None => println!("  #{seq:<8} {time}  {}", event.as_str()),
                    }
                }
                let Some(file) = &c.file else {
                    println!("  no sealed file");
                    ok = false;
                    continue;
                };
                let path = data.archive_vsc().join(file);
                println!("  file {}", path.display());
                match vsc::file::VscFile::inspect_path(&path) {
                    Ok(seen) => {
                        let h = &seen.header;
                        println!("    format {}.{}", seen.format_version.0, seen.format_version.1);
                        println!(
                            "    label {:?}, type {:?}, state {:?}",
                            h.label, h.card_type, h.attributes.state
                        );
                        let chips = if h.attributes.chip_serials.is_empty() {
                            "none".to_string()
                        } else {
                            h.attributes
                                .chip_serials
                                .iter()
                                .map(hex::encode_upper)
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        println!(
                            "    created {} (unix), origin {:?}, chip serials {chips}",
                            h.attributes.created_at, h.attributes.origin
                        );
                        println!(
                            "    protected by {}",
                            seen.slots
                                .iter()
                                .map(|s| s.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        println!(
                            "    {} public data object(s) (integrity-checked, not authenticated)",
                            seen.public_area_unauthenticated.len()
                        );
                    }
                    Err(e) => {
                        println!("    cannot be inspected: {e}");
                        ok = false;
                    }
                }
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        ArchiveCommand::Verify(d) => {
            let data = DataDir::new(d.data);
            let report = archive::verify(&data)?;
            println!(
                "Archive manifest {}: {} line(s), {}; checked with the log-signing key sha256 {}",
                data.manifest().display(),
                report.chain.lines,
                head_text(&report.chain),
                report.verifier_fingerprint
            );
            println!("  {} sealed file(s), {} intact", report.sealed, report.files_ok);
            print_findings(&report.chain);
            if report.is_ok() {
                println!("OK: every file and the whole chain hold.");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("FAILED: see the problems above.");
                Ok(ExitCode::from(1))
            }
        }
    }
}

pub fn audit(c: AuditCommand) -> CliResult {
    match c {
        AuditCommand::Verify(d) => {
            let data = DataDir::new(d.data);
            let verifier = audit::load_verifier(&data)?;
            let report = audit::verify(&data)?;
            println!(
                "Audit log {}: {} line(s), {}; checked with the log-signing key sha256 {}",
                data.audit_log().display(),
                report.lines,
                head_text(&report),
                verifier.fingerprint()
            );
            print_findings(&report);
            if report.problems.is_empty() {
                println!("OK: the whole chain holds.");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("FAILED: see the problems above.");
                Ok(ExitCode::from(1))
            }
        }
    }
}
