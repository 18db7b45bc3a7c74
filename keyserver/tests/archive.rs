#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The archive: durable, concurrent seals; verification; tampering reported
//! precisely.

mod custody_support;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use custody_support::*;
use keyserver::archive::{self, ArchiveReport};
use keyserver::keystore::DataDir;
use keyserver::ports::{CardOutcome, Escrow, IssuerKeys, SealRequest};
use vsc::file::Uid;

#[test]
fn concurrent_seals_are_durable_read_only_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    let kek = u.archive_kek().1.clone();
    let archive = u.open_archive().unwrap();
    const THREADS: u32 = 8;
    const EACH: u32 = 16;
    let receipts: Vec<(u32, Uid, u64, String, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let archive = &archive;
                let kek = &kek;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..EACH {
                        let serial = 1000 + t * EACH + i;
                        let (uid, bytes) = master_vsc(kek, &format!("VSC {serial:08}"));
                        let r = archive
                            .seal(&SealRequest {
                                serial,
                                uid,
                                job: "badges-2025",
                                record_id: &format!("row-{serial}"),
                                bytes: &bytes,
                            })
                            .unwrap();
                        let outcome = if serial % 5 == 0 {
                            CardOutcome::Void {
                                reason: "card removed during personalization".into(),
                            }
                        } else {
                            CardOutcome::Issued
                        };
                        archive.record(serial, uid, &outcome).unwrap();
                        out.push((serial, uid, r.entry, r.sha256, bytes));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let n = (THREADS * EACH) as usize;
    assert_eq!(receipts.len(), n);
    assert_eq!(
        receipts.iter().map(|r| r.2).collect::<HashSet<_>>().len(),
        n,
        "entries are unique"
    );
    for (serial, uid, _, sha, bytes) in &receipts {
        let path = archive.path_of(*serial, uid);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "{}", path.display());
        assert_eq!(&std::fs::read(&path).unwrap(), bytes);
        assert_eq!(sha, &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)));
    }
    drop(archive);
    drop(u);

    let dd = DataDir::new(&data);
    let report = archive::verify(&dd).unwrap();
    assert!(report.is_ok(), "{:#?}", report.chain.problems);
    assert_eq!((report.sealed, report.files_ok), (n as u64, n as u64));
    assert_eq!(report.chain.lines, 2 * n as u64);
    assert_eq!(report.chain.head.as_ref().unwrap().seq, 2 * n as u64);

    let (code, out) = run_cli(&["archive", "verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");
    let (code, out) = run_cli(&["archive", "list", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{n} card(s)")), "{out}");
    assert!(out.contains("00001005") && out.contains("void"), "{out}");
    let (code, out) = run_cli(&["archive", "show", "00001001", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("sealed") && out.contains("issued") && out.contains("row-1001"),
        "{out}"
    );
    assert!(out.contains("label \"VSC 00001001\""), "{out}");
    let (code, out) = run_cli(&["archive", "show", "4242", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no card with serial 00004242"), "{out}");
}

#[test]
fn seals_that_break_the_rules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, u) = unlocked(dir.path());
    let kek = u.archive_kek().1.clone();
    let archive = u.open_archive().unwrap();
    let (uid, bytes) = master_vsc(&kek, "VSC 00000001");
    let req = |serial, uid, bytes| SealRequest {
        serial,
        uid,
        job: "j",
        record_id: "r",
        bytes,
    };
    archive.seal(&req(1, uid, &bytes)).unwrap();

    // Never rewritten.
    let (_, other) = master_vsc(&kek, "VSC 00000001");
    let e = archive.seal(&req(1, uid, &bytes)).unwrap_err().to_string();
    assert!(e.contains("00000001") && e.contains("never rewritten"), "{e}");
    assert_eq!(std::fs::read(archive.path_of(1, &uid)).unwrap(), bytes);
    let _ = other;

    // Not a VSC; another VSC's UID; not under the archive KEK.
    let e = archive.seal(&req(2, uid, b"not a vsc")).unwrap_err().to_string();
    assert!(e.contains("not a valid VSC"), "{e}");
    let (uid3, bytes3) = master_vsc(&kek, "VSC 00000003");
    let e = archive.seal(&req(3, uid, &bytes3)).unwrap_err().to_string();
    assert!(e.contains("UID"), "{e}");
    let other_kek = vsc::secret::AesKey::from_slice(&[7; 32]).unwrap();
    let mut rng = rand::rngs::OsRng;
    let v = vsc::file::Vsc::create(
        vsc::file::NewVsc::new("x", "t", 1),
        &vsc::file::Protector::Kek {
            key_id: "someone-else/1".into(),
            key: other_kek,
        },
        &mut rng,
    )
    .unwrap();
    let e = archive
        .seal(&req(4, v.uid(), &v.to_bytes(&mut rng).unwrap()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("archive KEK"), "{e}");
    let e = archive
        .seal(&SealRequest {
            serial: 3,
            uid: uid3,
            job: "j\nforged",
            record_id: "r",
            bytes: &bytes3,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("control character"), "{e}");
    drop(archive);
    drop(u);
    // Nothing refused left a trace.
    let report = archive::verify(&DataDir::new(dir.path().join("data"))).unwrap();
    assert!(report.is_ok(), "{:#?}", report.chain.problems);
    assert_eq!(report.sealed, 1);
}

/// A small archive: cards 1..=4 sealed, then 1 issued and 2 void: six
/// manifest lines. Returns the data directory and the file names in seal order.
fn base(dir: &Path) -> (PathBuf, Vec<String>) {
    let (data, u) = unlocked(dir);
    let kek = u.archive_kek().1.clone();
    let archive = u.open_archive().unwrap();
    let mut names = Vec::new();
    let mut uids = Vec::new();
    for serial in 1..=4u32 {
        let (uid, bytes) = master_vsc(&kek, &format!("VSC {serial:08}"));
        archive
            .seal(&SealRequest {
                serial,
                uid,
                job: "badges",
                record_id: &format!("r{serial}"),
                bytes: &bytes,
            })
            .unwrap();
        names.push(archive::file_name(serial, &uid));
        uids.push(uid);
    }
    archive.record(1, uids[0], &CardOutcome::Issued).unwrap();
    archive
        .record(
            2,
            uids[1],
            &CardOutcome::Void {
                reason: "wrong ATR".into(),
            },
        )
        .unwrap();
    drop(archive);
    drop(u);
    assert!(archive::verify(&DataDir::new(&data)).unwrap().is_ok());
    (data, names)
}

/// Builds the base archive, copies it, lets `tamper` change the copy, verifies it.
fn tampered(tamper: impl FnOnce(&Path, &[String])) -> (ArchiveReport, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (data, names) = base(dir.path());
    let copy = dir.path().join("copy");
    copy_tree(&data, &copy);
    tamper(&copy, &names);
    let report = archive::verify(&DataDir::new(&copy)).unwrap();
    assert!(!report.is_ok(), "the change was not noticed");
    (report, copy, dir)
}

fn places(r: &ArchiveReport) -> Vec<String> {
    r.chain.problems.iter().map(|p| p.place.clone()).collect()
}

fn problem<'a>(r: &'a ArchiveReport, place: &str) -> &'a str {
    &r.chain
        .problems
        .iter()
        .find(|p| p.place == place)
        .unwrap_or_else(|| panic!("no problem at {place}: {:#?}", r.chain.problems))
        .what
}

fn manifest(data: &Path) -> PathBuf {
    data.join("archive/manifest.jsonl")
}

#[test]
fn a_changed_file_byte_is_reported_on_that_file() {
    let (r, copy, _d) = tampered(|data, names| {
        let p = data.join("archive/vsc").join(&names[2]);
        let mut b = std::fs::read(&p).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x01;
        force_write(&p, &b);
    });
    let f = format!("vsc/{}", vsc_name(&r, 2));
    assert_eq!(places(&r), std::slice::from_ref(&f));
    let what = problem(&r, &f);
    assert!(what.contains("SHA-256") && what.contains("changed"), "{what}");
    assert!(what.contains("not a consistent VSC"), "{what}");

    let (code, out) = run_cli(&["archive", "verify", "--data", copy.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&f) && out.contains("FAILED"), "{out}");
}

/// The file name of the `i`-th sealed card (0-based) as the report names it.
fn vsc_name(r: &ArchiveReport, i: u32) -> String {
    let serial = format!("{:08}-", i + 1);
    r.chain
        .problems
        .iter()
        .find_map(|p| p.place.strip_prefix("vsc/").filter(|n| n.starts_with(&serial)))
        .map(str::to_string)
        .unwrap_or_default()
}

#[test]
fn a_removed_file_is_reported_with_its_manifest_line() {
    let (r, _copy, _d) = tampered(|data, names| {
        std::fs::remove_file(data.join("archive/vsc").join(&names[1])).unwrap();
    });
    let f = format!("vsc/{}", vsc_name(&r, 1));
    assert_eq!(places(&r), std::slice::from_ref(&f));
    let what = problem(&r, &f);
    assert!(
        what.contains("missing") && what.contains("manifest.jsonl line 2 (seq 2)"),
        "{what}"
    );
}

#[test]
fn an_added_file_is_reported() {
    let (r, _copy, _d) = tampered(|data, names| {
        let dir = data.join("archive/vsc");
        std::fs::copy(
            dir.join(&names[0]),
            dir.join("00000099-00112233445566778899aabbccddeeff.vsc"),
        )
        .unwrap();
    });
    assert_eq!(places(&r), ["vsc/00000099-00112233445566778899aabbccddeeff.vsc"]);
    assert!(r.chain.problems[0].what.contains("added"));
}

#[test]
fn a_writable_file_is_reported() {
    let (r, _copy, _d) = tampered(|data, names| {
        let p = data.join("archive/vsc").join(&names[3]);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    });
    assert_eq!(r.chain.problems.len(), 1, "{:#?}", r.chain.problems);
    assert!(r.chain.problems[0].what.contains("writable (mode 0644)"));
}

#[test]
fn an_edited_manifest_line_is_reported_on_that_line() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        l[2] = l[2].replace("\"record\":\"r3\"", "\"record\":\"r9\"");
        write_lines(&manifest(data), &l);
    });
    assert_eq!(
        places(&r),
        ["manifest.jsonl line 3 (seq 3)", "manifest.jsonl line 4 (seq 4)"]
    );
    assert!(problem(&r, "manifest.jsonl line 3 (seq 3)").contains("signature does not verify"));
    assert!(problem(&r, "manifest.jsonl line 4 (seq 4)").contains("prev is not the hash of line 3"));
}

#[test]
fn a_removed_manifest_line_is_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        l.remove(3); // the sealed entry of card 4
        write_lines(&manifest(data), &l);
    });
    let what = problem(&r, "manifest.jsonl line 4 (seq 5)");
    assert!(what.contains("entry 4 is missing before it"), "{what}");
    assert!(what.contains("prev is not the hash of line 3"), "{what}");
    // Card 4's file is now named by no entry.
    assert!(r
        .chain
        .problems
        .iter()
        .any(|p| p.place.starts_with("vsc/00000004-") && p.what.contains("added")));
    assert_eq!(r.chain.problems.len(), 2, "{:#?}", r.chain.problems);
}

#[test]
fn reordered_manifest_lines_are_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        l.swap(4, 5);
        write_lines(&manifest(data), &l);
    });
    let w5 = problem(&r, "manifest.jsonl line 5 (seq 6)");
    assert!(w5.contains("entry 5 is missing") && w5.contains("prev"), "{w5}");
    let w6 = problem(&r, "manifest.jsonl line 6 (seq 5)");
    assert!(w6.contains("sequence number 5 where 7 was expected"), "{w6}");
}

#[test]
fn an_inserted_manifest_line_is_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        let copy = l[1].clone();
        l.insert(2, copy); // card 2's sealed entry, replayed
        write_lines(&manifest(data), &l);
    });
    // The replayed line is the one reported: its number, its prev, the file it seals again.
    assert_eq!(places(&r), ["manifest.jsonl line 3 (seq 2)"]);
    let w = problem(&r, "manifest.jsonl line 3 (seq 2)");
    assert!(w.contains("sequence number 2 where 3 was expected"), "{w}");
    assert!(w.contains("prev is not the hash of line 2"), "{w}");
    assert!(w.contains("seals vsc/00000002-") && w.contains("again"), "{w}");
}

#[test]
fn a_forged_entry_is_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        let last = l.last().unwrap().clone();
        let prev = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(last.as_bytes()));
        l.push(format!(
            "{{\"seq\":7,\"time\":\"2025-01-01T00:00:00.000Z\",\"event\":\"issued\",\"serial\":3,\"uid\":\"{}\",\"prev\":\"{prev}\",\"sig\":\"{}\"}}",
            "00".repeat(16),
            "A".repeat(88)
        ));
        write_lines(&manifest(data), &l);
    });
    let w = problem(&r, "manifest.jsonl line 7 (seq 7)");
    assert!(w.contains("signature does not verify"), "{w}");
}

#[test]
fn a_broken_signature_is_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        let at = l[4].find("\"sig\":\"").unwrap() + 10;
        let c = l[4].as_bytes()[at];
        l[4].replace_range(at..at + 1, if c == b'A' { "B" } else { "A" });
        write_lines(&manifest(data), &l);
    });
    assert_eq!(
        places(&r),
        ["manifest.jsonl line 5 (seq 5)", "manifest.jsonl line 6 (seq 6)"]
    );
    assert!(problem(&r, "manifest.jsonl line 5 (seq 5)").contains("signature does not verify"));
}

#[test]
fn a_cut_off_end_of_the_manifest_is_reported() {
    let (r, _copy, _d) = tampered(|data, _| {
        let mut l = lines(&manifest(data));
        l.pop();
        write_lines(&manifest(data), &l);
    });
    assert_eq!(places(&r), ["manifest.head"]);
    assert!(
        r.chain.problems[0].what.contains("removed from its end"),
        "{:?}",
        r.chain.problems
    );
}

#[test]
fn an_outcome_for_an_unsealed_card_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    let archive = u.open_archive().unwrap();
    archive
        .record(77, Uid::from_bytes([1; 16]), &CardOutcome::Issued)
        .unwrap();
    drop(archive);
    drop(u);
    let r = archive::verify(&DataDir::new(&data)).unwrap();
    assert_eq!(places(&r), ["manifest.jsonl line 1 (seq 1)"]);
    assert!(r.chain.problems[0].what.contains("which no earlier entry sealed"));
}

#[test]
fn reopening_finishes_what_a_crash_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (data, components) = init_in_memory(dir.path(), 2);
    let vsc_dir = data.join("archive/vsc");
    let (published, unacknowledged) = {
        let u = keyserver::keystore::Unlocked::from_components(&data, &components).unwrap();
        let kek = u.archive_kek().1.clone();
        let archive = u.open_archive().unwrap();
        let (uid, bytes) = master_vsc(&kek, "VSC 00000001");
        archive
            .seal(&SealRequest {
                serial: 1,
                uid,
                job: "j",
                record_id: "r1",
                bytes: &bytes,
            })
            .unwrap();
        let (uid2, bytes2) = master_vsc(&kek, "VSC 00000002");
        (
            (archive::file_name(1, &uid), bytes),
            (archive::file_name(2, &uid2), bytes2),
        )
    };
    // A crash after the entry was durable but before the file had its name …
    std::fs::rename(
        vsc_dir.join(&published.0),
        vsc_dir.join(format!(".{}.0123456789abcdef.tmp", published.0)),
    )
    .unwrap();
    // … and one before its entry was written.
    let stray = vsc_dir.join(format!(".{}.fedcba9876543210.tmp", unacknowledged.0));
    std::fs::write(&stray, &unacknowledged.1).unwrap();

    let dd = DataDir::new(&data);
    let r = archive::verify(&dd).unwrap();
    assert!(
        !r.is_ok(),
        "the unnamed file is missing until the archive is reopened"
    );
    assert_eq!(
        r.chain
            .notes
            .iter()
            .filter(|n| n.contains("interrupted seal"))
            .count(),
        2
    );

    let u = keyserver::keystore::Unlocked::from_components(&data, &components).unwrap();
    drop(u.open_archive().unwrap());
    drop(u);
    assert_eq!(std::fs::read(vsc_dir.join(&published.0)).unwrap(), published.1);
    assert!(!stray.exists());
    let names: Vec<_> = std::fs::read_dir(&vsc_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let r = archive::verify(&dd).unwrap();
    assert!(
        r.is_ok() && r.chain.notes.is_empty(),
        "{:#?} {:?}",
        r.chain.problems,
        r.chain.notes
    );
}
