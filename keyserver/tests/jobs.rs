//! The job store: all-or-nothing submission with every error per row and
//! field, records consumed only when issued, idempotent requests, crash
//! recovery, sealed records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use keyserver::jobs::{CardResult, JobError, JobStore, Reservation, Submission, MAX_CARD_FAILURES};
use keyserver::ports::{CardOutcome, IssuedSecrets};
use support::engine::{FakeEngine, PROFILE};
use support::{people, records_key, scan_dir};
use vsc::secret::{AesKey, SecretBytes};

fn store() -> (tempfile::TempDir, sled::Db, JobStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let jobs = JobStore::open(&db, &records_key()).unwrap();
    (dir, db, jobs)
}

fn submit(jobs: &JobStore, job: &str, csv: &str) -> Result<u64, JobError> {
    jobs.submit(
        &FakeEngine::new(),
        &Submission {
            job,
            profile: PROFILE,
            stock: "default",
            csv: csv.as_bytes(),
        },
    )
}

fn issued() -> CardResult {
    CardResult {
        outcome: CardOutcome::Issued,
        serial: Some(1079),
        round_trips: 2,
    }
}

fn void(reason: &str) -> CardResult {
    CardResult {
        outcome: CardOutcome::Void {
            reason: reason.into(),
        },
        serial: Some(1080),
        round_trips: 1,
    }
}

fn reserved_record(r: &Reservation) -> String {
    match r {
        Reservation::InFlight(r) => r.record.id.clone(),
        Reservation::Finished(_) => panic!("not in flight"),
    }
}

#[test]
fn every_row_and_field_error_is_reported_and_nothing_is_queued() {
    let (_d, _db, jobs) = store();
    let csv = "record_id,given_name,surname,pin\n\
               r1,Ann,Lee,123456\n\
               r2,,Kim,12ab\n\
               r1,Bob,Ray,123456\n\
               ,Cy,Dee,123456\n\
               r5,Ed,Fox\n\
               r6,Flo,Gee,99999999999\n";
    let e = submit(&jobs, "people", csv).unwrap_err();
    let JobError::Invalid { job, errors } = &e else {
        panic!("{e}")
    };
    assert_eq!(job, "people");
    let got: Vec<(u64, Option<&str>)> = errors
        .errors
        .iter()
        .map(|e| (e.row, e.field.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, Some("given_name")),
            (3, Some("pin")),
            (4, Some("record_id")),
            (5, Some("record_id")),
            (6, None),
            (7, Some("pin")),
        ],
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("row 4, column \"record_id\": record id \"r1\" is already used on row 2"),
        "{text}"
    );
    assert!(
        text.contains("row 6: the row has 3 fields, the header 4"),
        "{text}"
    );
    // The PINs are never quoted.
    assert!(!text.contains("12ab") && !text.contains("99999999999"), "{text}");
    // Nothing was queued.
    assert!(matches!(
        jobs.status(Some("people")),
        Err(JobError::UnknownJob(_))
    ));
    assert!(jobs.job_names().unwrap().is_empty());
    // Fixed, it goes in whole.
    assert_eq!(submit(&jobs, "people", &people(5)).unwrap(), 5);
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!(
        (s.total, s.queued, s.issued, s.in_flight, s.voided),
        (5, 5, 0, 0, 0)
    );
}

#[test]
fn header_errors_name_each_column() {
    let (_d, _db, jobs) = store();
    let e = submit(&jobs, "j", "given_name,nickname,given_name\nA,B,C\n").unwrap_err();
    let text = e.to_string();
    for expected in [
        "column \"nickname\": unknown column",
        "column \"given_name\": column 3 repeats column 1",
        "column \"record_id\": missing column",
        "column \"surname\": missing column",
        "column \"pin\": missing column",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let e = submit(&jobs, "j", "").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = submit(&jobs, "j", "record_id,given_name,surname,pin\n").unwrap_err();
    assert!(e.to_string().contains("no rows"), "{e}");
    let e = jobs
        .submit(
            &FakeEngine::new(),
            &Submission {
                job: "j",
                profile: "nope",
                stock: "default",
                csv: people(1).as_bytes(),
            },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown profile \"nope\" (known: test-piv)"),
        "{e}"
    );
    let e = submit(&jobs, "bad name", &people(1)).unwrap_err();
    assert!(matches!(e, JobError::BadJobName(_)), "{e}");
    let bad_utf8 = b"record_id,given_name,surname,pin\nr1,\xff\xfe,X,123456\n";
    let e = jobs
        .submit(
            &FakeEngine::new(),
            &Submission {
                job: "j",
                profile: PROFILE,
                stock: "default",
                csv: bad_utf8,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("row 2: field 2 is not valid UTF-8"), "{e}");
}

#[test]
fn a_job_name_is_used_once() {
    let (_d, _db, jobs) = store();
    submit(&jobs, "people", &people(2)).unwrap();
    let e = submit(&jobs, "people", &people(2)).unwrap_err();
    assert!(matches!(e, JobError::JobExists(_)), "{e}");
    // A spreadsheet's byte order mark is fine.
    assert_eq!(
        submit(&jobs, "bom", &format!("\u{feff}{}", people(2))).unwrap(),
        2
    );
    assert_eq!(jobs.status(Some("people")).unwrap()[0].total, 2);
}

#[test]
fn records_are_consumed_only_when_issued() {
    let (_d, _db, jobs) = store();
    submit(&jobs, "people", &people(3)).unwrap();
    let (r, fresh) = jobs
        .reserve("desk-1", "a", "people", "reader 0", &[0x3B])
        .unwrap();
    assert!(fresh);
    assert_eq!(reserved_record(&r), "r1");
    let Reservation::InFlight(res) = &r else {
        unreachable!()
    };
    assert_eq!(res.record.field("pin"), Some("739101"));
    assert_eq!(
        (res.profile.as_str(), res.stock.as_str(), res.atr.as_slice()),
        (PROFILE, "default", &[0x3B][..])
    );
    let (r, _) = jobs.reserve("desk-1", "b", "people", "reader 1", &[]).unwrap();
    assert_eq!(reserved_record(&r), "r2");
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!((s.queued, s.in_flight), (1, 2));

    // r1 void: back to the queue, first in line.
    let rec = jobs.finish("desk-1", "a", &void("card refused"), None).unwrap();
    assert!(!rec.issued);
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!((s.queued, s.in_flight, s.voided, s.issued), (2, 1, 1, 0));
    // r2 issued.
    let rec = jobs.finish("desk-1", "b", &issued(), None).unwrap();
    assert!(rec.issued && rec.record_id == "r2");
    let (r, _) = jobs.reserve("desk-1", "c", "people", "", &[]).unwrap();
    assert_eq!(reserved_record(&r), "r1");
    jobs.finish("desk-1", "c", &issued(), None).unwrap();
    let (r, _) = jobs.reserve("desk-1", "d", "people", "", &[]).unwrap();
    assert_eq!(reserved_record(&r), "r3");
    jobs.finish("desk-1", "d", &issued(), None).unwrap();
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!(
        (
            s.total,
            s.issued,
            s.queued,
            s.in_flight,
            s.voided,
            s.max_round_trips
        ),
        (3, 3, 0, 0, 1, 2)
    );
    let e = jobs.reserve("desk-1", "e", "people", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::NoQueuedRecord { .. }), "{e}");
    let e = jobs.reserve("desk-1", "f", "nope", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::UnknownJob(_)), "{e}");
}

#[test]
fn requests_are_idempotent_and_never_counted_twice() {
    let (_d, _db, jobs) = store();
    submit(&jobs, "people", &people(2)).unwrap();
    let (r1, fresh1) = jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
    let (r2, fresh2) = jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
    assert!(fresh1 && !fresh2);
    assert_eq!(reserved_record(&r1), reserved_record(&r2));
    // The same request id from another station is another request.
    let (r3, _) = jobs.reserve("desk-2", "a", "people", "", &[]).unwrap();
    assert_eq!(reserved_record(&r3), "r2");
    jobs.finish("desk-1", "a", &issued(), None).unwrap();
    let e = jobs.finish("desk-1", "a", &issued(), None).unwrap_err();
    assert!(matches!(e, JobError::NotInFlight { .. }), "{e}");
    let (again, fresh) = jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
    assert!(!fresh);
    let Reservation::Finished(rec) = again else {
        panic!()
    };
    assert!(rec.issued && rec.serial == Some(1079) && rec.round_trips == 2);
    let e = jobs.reserve("desk-1", "a", "other", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::RequestForOtherJob { .. }), "{e}");
    let e = jobs.finish("desk-9", "zz", &issued(), None).unwrap_err();
    assert!(matches!(e, JobError::UnknownRequest { .. }), "{e}");
    assert_eq!(jobs.status(Some("people")).unwrap()[0].issued, 1);
    let e = jobs.reserve("desk-1", "bad\u{0}", "people", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::BadRequest { .. }), "{e}");
}

#[test]
fn a_crash_leaves_in_flight_records_that_the_next_start_voids_and_requeues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        let jobs = JobStore::open(&db, &records_key()).unwrap();
        submit(&jobs, "people", &people(3)).unwrap();
        jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
        jobs.reserve("desk-1", "b", "people", "", &[]).unwrap();
        jobs.finish("desk-1", "b", &issued(), None).unwrap();
        jobs.reserve("desk-2", "c", "people", "", &[]).unwrap();
        // No shutdown: the process "dies" here (every step was flushed).
    }
    let db = sled::open(&path).unwrap();
    let jobs = JobStore::open(&db, &records_key()).unwrap();
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!((s.issued, s.in_flight, s.queued), (1, 2, 0));
    let mut voided = jobs.void_in_flight("keyserver restarted").unwrap();
    voided.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let ids: Vec<(&str, &str, &str)> = voided
        .iter()
        .map(|v| (v.station.as_str(), v.request_id.as_str(), v.record_id.as_str()))
        .collect();
    assert_eq!(ids, vec![("desk-1", "a", "r1"), ("desk-2", "c", "r3")]);
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!((s.issued, s.in_flight, s.queued, s.voided), (1, 0, 2, 2));
    let Some(Reservation::Finished(rec)) = jobs.lookup("desk-1", "a").unwrap() else {
        panic!()
    };
    assert!(!rec.issued && rec.reason == "keyserver restarted");
    assert!(jobs.void_in_flight("again").unwrap().is_empty());
}

#[test]
fn stale_reservations_are_voided_unless_running() {
    let (_d, _db, jobs) = store();
    submit(&jobs, "people", &people(2)).unwrap();
    jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
    jobs.reserve("desk-1", "b", "people", "", &[]).unwrap();
    let running: HashSet<(String, String)> = [("desk-1".to_string(), "b".to_string())].into();
    // Nothing is older than an hour ago.
    let hour_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
    assert!(jobs.void_stale("x", hour_ago, &running).unwrap().is_empty());
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    let v = jobs.void_stale("never opened", now, &running).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].request_id, "a");
}

#[test]
fn records_and_issued_secrets_are_sealed() {
    let (dir, db, jobs) = store();
    submit(&jobs, "people", &people(3)).unwrap();
    jobs.reserve("desk-1", "a", "people", "", &[]).unwrap();
    let secrets = IssuedSecrets {
        pin: Some(SecretBytes::from_slice(b"604219")),
        puk: Some(SecretBytes::from_slice(b"55190377")),
    };
    jobs.finish("desk-1", "a", &issued(), Some(&secrets)).unwrap();
    db.flush().unwrap();
    for i in 1..=3 {
        assert_eq!(scan_dir(dir.path(), format!("7391{i:02}").as_bytes()), 0);
    }
    assert_eq!(scan_dir(dir.path(), b"604219"), 0);
    assert_eq!(scan_dir(dir.path(), b"55190377"), 0);
    let out = jobs.issued_secrets("people").unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "r1");
    assert_eq!(out[0].1.pin.as_ref().unwrap().expose_secret(), b"604219");
    assert_eq!(out[0].1.puk.as_ref().unwrap().expose_secret(), b"55190377");

    // The scan would see a secret written in clear (control).
    db.open_tree("control")
        .unwrap()
        .insert("k", &b"xx604219xx"[..])
        .unwrap();
    db.flush().unwrap();
    assert!(scan_dir(dir.path(), b"604219") > 0);

    // Another records key opens nothing.
    drop(jobs);
    let wrong = JobStore::open(&db, &AesKey::from_slice(&[1; 32]).unwrap()).unwrap();
    let e = wrong.reserve("desk-1", "b", "people", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::Seal { .. }), "{e}");
    // … and reserves nothing.
    assert!(wrong.lookup("desk-1", "b").unwrap().is_none());
    assert_eq!(wrong.status(Some("people")).unwrap()[0].in_flight, 0);
    assert!(JobStore::open(&db, &AesKey::from_slice(&[1; 16]).unwrap()).is_err());
}

#[test]
fn a_record_whose_cards_keep_failing_is_held_not_queued_again() {
    let (_d, _db, jobs) = store();
    submit(&jobs, "people", &people(2)).unwrap();
    // A keyserver restart or a vanished station is not the record's
    // fault: those voids do not count.
    jobs.reserve("desk-1", "restart", "people", "", &[]).unwrap();
    jobs.void_in_flight("keyserver restarted").unwrap();
    // r1's cards fail, one after another.
    for attempt in 1..=MAX_CARD_FAILURES {
        let id = format!("fail-{attempt}");
        let (r, _) = jobs.reserve("desk-1", &id, "people", "", &[]).unwrap();
        assert_eq!(reserved_record(&r), "r1");
        let rec = jobs
            .finish("desk-1", &id, &void("the card refused PUT DATA"), None)
            .unwrap();
        assert!(!rec.issued);
        assert_eq!(rec.held, attempt == MAX_CARD_FAILURES, "attempt {attempt}");
    }
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!(
        (s.total, s.issued, s.queued, s.in_flight, s.voided, s.held),
        (2, 0, 1, 0, 1 + u64::from(MAX_CARD_FAILURES), 1)
    );
    // r1 is held: the next card gets r2, then nothing is left.
    let (r, _) = jobs.reserve("desk-1", "next", "people", "", &[]).unwrap();
    assert_eq!(reserved_record(&r), "r2");
    jobs.finish("desk-1", "next", &issued(), None).unwrap();
    let e = jobs.reserve("desk-1", "more", "people", "", &[]).unwrap_err();
    assert!(matches!(e, JobError::NoQueuedRecord { .. }), "{e}");
    let s = &jobs.status(Some("people")).unwrap()[0];
    assert_eq!((s.issued, s.queued, s.in_flight, s.held), (1, 0, 0, 1));
}
