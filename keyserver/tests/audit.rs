#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit log: concurrent durable appends, verification, tampering.

mod custody_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use custody_support::*;
use keyserver::audit::chain::ChainReport;
use keyserver::audit::{self, MAX_DETAIL};
use keyserver::keystore::DataDir;
use keyserver::ports::{AuditEvent, AuditOutcome, AuditSink};

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: format!("station-{}", i % 3),
        action: "card.issue".into(),
        subject: format!("{:08}", i),
        outcome: if i % 7 == 0 {
            AuditOutcome::Failed
        } else {
            AuditOutcome::Ok
        },
        detail: format!("job badges, record r{i}"),
    }
}

fn log(data: &Path) -> PathBuf {
    data.join("audit/audit.jsonl")
}

#[test]
fn concurrent_appends_are_durable_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    let before = lines(&log(&data)).len();
    let sink = u.audit();
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let sink = &sink;
                s.spawn(move || {
                    (0..50)
                        .map(|i| sink.append(&event(t * 50 + i)).unwrap().seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(seqs.iter().collect::<HashSet<_>>().len(), 400);
    let first = before as u64 + 1;
    assert_eq!(seqs.iter().min(), Some(&first));
    assert_eq!(seqs.iter().max(), Some(&(first + 399)));

    // Through the port, and a detail too long to keep whole.
    let mut long = event(1);
    long.detail = "x".repeat(3 * MAX_DETAIL);
    u.record(long).unwrap();
    drop(sink);
    drop(u);

    let r = audit::verify(&DataDir::new(&data)).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.lines, before as u64 + 401);
    let last = lines(&log(&data)).pop().unwrap();
    assert!(
        last.contains(&format!("[cut: {} bytes in all]", 3 * MAX_DETAIL)),
        "{last}"
    );

    let (code, out) = run_cli(&["audit", "verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");
}

/// A data directory whose audit log has init's entries plus ten events,
/// copied; `tamper` changes the copy; the copy is verified.
fn tampered(tamper: impl FnOnce(&Path)) -> (ChainReport, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    for i in 0..10 {
        u.audit().append(&event(i)).unwrap();
    }
    drop(u);
    assert!(audit::verify(&DataDir::new(&data)).unwrap().problems.is_empty());
    let copy = dir.path().join("copy");
    copy_tree(&data, &copy);
    tamper(&copy);
    let r = audit::verify(&DataDir::new(&copy)).unwrap();
    assert!(!r.problems.is_empty(), "the change was not noticed");
    (r, copy, dir)
}

fn places(r: &ChainReport) -> Vec<String> {
    r.problems.iter().map(|p| p.place.clone()).collect()
}

fn what<'a>(r: &'a ChainReport, place: &str) -> &'a str {
    &r.problems
        .iter()
        .find(|p| p.place == place)
        .unwrap_or_else(|| panic!("nothing at {place}: {:#?}", r.problems))
        .what
}

#[test]
fn an_edited_line_is_reported() {
    let (r, copy, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        let edited = l[5].replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"");
        assert_ne!(edited, l[5]);
        l[5] = edited;
        write_lines(&log(data), &l);
    });
    assert_eq!(
        places(&r),
        ["audit.jsonl line 6 (seq 6)", "audit.jsonl line 7 (seq 7)"]
    );
    assert!(what(&r, "audit.jsonl line 6 (seq 6)").contains("signature does not verify"));
    assert!(what(&r, "audit.jsonl line 7 (seq 7)").contains("prev is not the hash of line 6"));
    let (code, out) = run_cli(&["audit", "verify", "--data", copy.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.jsonl line 6 (seq 6)"), "{out}");
}

#[test]
fn a_removed_line_is_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        l.remove(8);
        write_lines(&log(data), &l);
    });
    assert_eq!(places(&r), ["audit.jsonl line 9 (seq 10)"]);
    let w = what(&r, "audit.jsonl line 9 (seq 10)");
    assert!(
        w.contains("entry 9 is missing before it") && w.contains("prev"),
        "{w}"
    );
}

#[test]
fn reordered_lines_are_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        l.swap(2, 3);
        write_lines(&log(data), &l);
    });
    assert_eq!(
        places(&r),
        [
            "audit.jsonl line 3 (seq 4)",
            "audit.jsonl line 4 (seq 3)",
            "audit.jsonl line 5 (seq 5)"
        ]
    );
}

#[test]
fn an_inserted_line_is_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        let forged = l[4].replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"");
        assert_ne!(forged, l[4]);
        l.insert(5, forged);
        write_lines(&log(data), &l);
    });
    let w = what(&r, "audit.jsonl line 6 (seq 5)");
    assert!(
        w.contains("where 6 was expected") && w.contains("signature does not verify"),
        "{w}"
    );
}

#[test]
fn a_broken_signature_is_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        let n = l.len();
        let line = &mut l[n - 1];
        let at = line.rfind("\"sig\":\"").unwrap() + 12;
        let c = line.as_bytes()[at];
        line.replace_range(at..at + 1, if c == b'Q' { "R" } else { "Q" });
        write_lines(&log(data), &l);
    });
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    assert!(r.problems[0].what.contains("signature does not verify"));
    // The head records the original last line.
    assert_eq!(r.problems[1].place, "audit.head");
}

#[test]
fn a_cut_off_end_is_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut l = lines(&log(data));
        l.truncate(l.len() - 2);
        write_lines(&log(data), &l);
    });
    assert_eq!(places(&r), ["audit.head"]);
    assert!(r.problems[0].what.contains("removed from its end"));
}

#[test]
fn a_torn_last_line_is_reported() {
    let (r, _c, _d) = tampered(|data| {
        let mut bytes = std::fs::read(log(data)).unwrap();
        bytes.truncate(bytes.len() - 20);
        std::fs::write(log(data), bytes).unwrap();
    });
    assert!(
        r.problems.iter().any(|p| p.what.contains("incomplete")),
        "{:#?}",
        r.problems
    );
}

#[test]
fn events_recorded_together_keep_their_order_while_others_append() {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    let sink = u.audit();
    std::thread::scope(|s| {
        // Another writer, single events, at the same time.
        let other = s.spawn(|| {
            for i in 0..100 {
                sink.append(&event(10_000 + i)).unwrap();
            }
        });
        for batch in 0..20 {
            let events: Vec<AuditEvent> = (0..5).map(|i| event(batch * 5 + i)).collect();
            sink.record_all(events).unwrap();
        }
        other.join().unwrap();
    });
    u.record_all(Vec::new()).unwrap();
    let subjects: Vec<String> = lines(&log(&data))
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "card.issue")
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .filter(|s| s.as_str() < "00010000")
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("{i:08}")).collect();
    assert_eq!(subjects, expected);
    let report = audit::verify(&DataDir::new(&data)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
