#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Restart consistency: a keyserver killed mid-card. The card whose master
//! VSC was sealed but whose outcome was never recorded ends `void` in the
//! manifest ("keyserver restarted before the outcome"), audited, and its
//! record is queued again by the job store: the archive and the jobs agree.

mod e2e_support;
mod issue_support;
mod support;

use std::sync::Arc;

use e2e_support::process::{self, serve_args, Serve};
use e2e_support::{blank, init_keystore, job_csv, profiles_dir};
use keyserver::archive::{self, ManifestEvent};
use keyserver::issue::Engine;
use keyserver::jobs::{JobStore, Reservation, Submission};
use keyserver::keystore::pool::PoolConfig;
use keyserver::keystore::{DataDir, Unlocked};
use keyserver::ports::{CardOutcome, Escrow, IssuerKeys, SealRequest};
use keyserver::recovery::{self, REQUEST_REASON, SEALED_REASON, UNREPORTED_REASON};
use protos::bundle::StationBundle;
use protos::pb;
use support::station::{channel_with, open_msg, run_script, TestStation};
use vsc::file::{NewVsc, Protector, Uid, Vsc};
use vsc::transport::CardTransport as _;

fn events(data: &DataDir, serial: u32) -> Vec<(ManifestEvent, Option<String>)> {
    archive::card(data, serial)
        .unwrap()
        .remove(0)
        .events
        .into_iter()
        .map(|(_, _, e, r)| (e, r))
        .collect()
}

fn audit_entries(data: &DataDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.audit_log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify_logs(data: &DataDir) {
    let report = archive::verify(data).unwrap();
    assert!(report.is_ok(), "archive verify: {:#?}", report.chain.problems);
    let audit = keyserver::audit::verify(data).unwrap();
    assert!(audit.problems.is_empty(), "audit verify: {:#?}", audit.problems);
}

async fn job_status(data: &std::path::Path, job: &str) -> pb::JobStatus {
    keyserver::service::client::connect(data, 64 << 20)
        .await
        .unwrap()
        .job_status(pb::JobStatusRequest { job: job.into() })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .remove(0)
}

async fn next_script(perso: &mut support::station::RawPerso) -> pb::Script {
    match perso.next().await.unwrap() {
        Some(pb::PersoDown {
            msg: Some(pb::perso_down::Msg::Script(s)),
        }) => s,
        other => panic!("expected a script, got {other:?}"),
    }
}

/// The real binary, killed with SIGKILL once round trip 2 reached the
/// station (so the master VSC is sealed) and before the reply: restarted,
/// it voids the card in the manifest and the job store alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyserver_killed_between_seal_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b) = (dir.path().join("custodian-1"), dir.path().join("custodian-2"));
    process::init(&data, &a, &b);
    let args = serve_args(&data, &a, &b);
    let serve = tokio::task::block_in_place(|| Serve::start(&args));

    let mut admin = keyserver::service::client::connect(&data, 64 << 20)
        .await
        .unwrap();
    let (csv, _) = job_csv("employee-badge", "k", 2);
    let r = admin
        .submit_job(pb::SubmitJobRequest {
            job: "restart".into(),
            profile: "employee-badge".into(),
            stock: "default".into(),
            csv: csv.into_bytes(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let bundle = admin
        .enroll_station(pb::EnrollStationRequest {
            name: "desk-1".into(),
            jobs: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle;
    let bundle = StationBundle::parse(std::str::from_utf8(&bundle).unwrap()).unwrap();
    drop(admin);
    let station = TestStation::connect(&bundle).await.unwrap();

    // Round trip 1 answered; round trip 2 arrives: the master VSC is sealed.
    let serial = 9_000_001;
    let mut card = blank(serial);
    let mut perso = station.raw_perso().await.unwrap();
    station.request_atr("r1", "restart", card.atr()).await;
    perso.send(open_msg("r1")).await;
    let script = next_script(&mut perso).await;
    assert_eq!(script.round_trip, 1);
    perso
        .send(pb::perso_up::Msg::Reply(run_script(&mut card, &script)))
        .await;
    let script = next_script(&mut perso).await;
    assert_eq!(script.round_trip, 2);

    // Killed now: sealed, no outcome.
    let killed = serve.kill();
    assert!(!killed.status.success());
    drop((perso, station));
    let dd = DataDir::new(&data);
    assert_eq!(events(&dd, serial), [(ManifestEvent::Sealed, None)]);

    // Restarted: void in the manifest, audited, the record queued again.
    let serve = tokio::task::block_in_place(|| Serve::start(&args));
    assert_eq!(
        events(&dd, serial),
        [
            (ManifestEvent::Sealed, None),
            (ManifestEvent::Void, Some(SEALED_REASON.to_string()))
        ]
    );
    assert_eq!(SEALED_REASON, "keyserver restarted before the outcome");
    let entries = audit_entries(&dd);
    let card_void = entries
        .iter()
        .find(|e| e["action"] == "card.void" && e["subject"] == format!("card {serial:08}").as_str())
        .unwrap_or_else(|| panic!("no card.void for the card: {entries:#?}"));
    assert!(card_void["detail"]
        .as_str()
        .unwrap()
        .contains("job=restart record=k"));
    assert!(card_void["detail"].as_str().unwrap().contains(SEALED_REASON));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "card.void" && e["subject"] == "request desk-1/r1"));
    assert!(serve.stdout_now().contains("left without an outcome"));
    verify_logs(&dd);

    let s = job_status(&data, "restart").await;
    assert_eq!(
        (s.total, s.issued, s.voided, s.queued, s.in_flight),
        (2, 0, 1, 2, 0)
    );

    // The station, back (the keyserver listens on a new port), asks about
    // its request again: the recorded end.
    let channel = channel_with(
        &serve.address(),
        &bundle.server_name,
        &bundle.ca_certificate_pem,
        Some((&bundle.certificate_pem, &bundle.private_key_pem)),
    )
    .await
    .unwrap();
    let station = Arc::new(TestStation::over(channel, "desk-1").await.unwrap());
    let mut perso = station.raw_perso().await.unwrap();
    perso.send(open_msg("r1")).await;
    let (_, done) = perso.end().await;
    let done = done.unwrap();
    assert_eq!(done.outcome, pb::Outcome::Failed as i32);
    assert_eq!(done.reason, REQUEST_REASON);

    // Both records are issued on new cards.
    let issued = e2e_support::issue_all(
        &station,
        "restart",
        "again",
        vec![blank(serial + 1), blank(serial + 2)],
        2,
    )
    .await;
    assert!(issued.iter().all(|c| c.result.outcome == pb::Outcome::Ok as i32));
    let s = job_status(&data, "restart").await;
    assert_eq!(
        (s.total, s.issued, s.voided, s.queued, s.in_flight),
        (2, 2, 1, 0, 0)
    );
    // A clean stop: exit 0, the admin socket removed.
    let stopped = serve.signal("TERM");
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(!data.join("admin.sock").exists());
    assert_eq!(events(&dd, serial + 1).last().unwrap().0, ManifestEvent::Issued);
    verify_logs(&dd);
}

/// A small master VSC protected by the archive KEK.
fn master_bytes(kek: &vsc::secret::AesKey, label: &str) -> (Uid, Vec<u8>) {
    let mut rng = rand::rngs::OsRng;
    let v = Vsc::create(
        NewVsc::new(label, "employee-badge", 1_700_000_000),
        &Protector::Kek {
            key_id: "archive-kek/1".into(),
            key: kek.clone(),
        },
        &mut rng,
    )
    .unwrap();
    let bytes = v.to_bytes(&mut rng).unwrap();
    (v.uid(), bytes)
}

/// Every window a crash can hit, settled by the library: in flight before
/// the seal; sealed without outcome; `issued` in the archive but killed
/// before the job store heard (the station was never told: void too); done
/// in both (untouched). A second run settles nothing more.
#[test]
fn recovery_settles_every_crash_window() {
    let dir = tempfile::tempdir().unwrap();
    let components = init_keystore(dir.path());
    let dd = DataDir::new(dir.path());
    let db_path = dir.path().join("service.sled");
    let (serial_b, serial_c, serial_d) = (501, 502, 503);
    {
        let u = Arc::new(Unlocked::from_components(dir.path(), &components).unwrap());
        let archive = Arc::new(u.open_archive().unwrap());
        let pool = Arc::new(u.key_pool(PoolConfig { target: 0 }).unwrap());
        let engine = Engine::from_dir(&profiles_dir(), u.clone(), archive.clone(), u.audit(), pool).unwrap();
        let db = sled::open(&db_path).unwrap();
        let jobs = JobStore::open(&db, u.records_key()).unwrap();
        let (csv, _) = job_csv("employee-badge", "w", 4);
        jobs.submit(
            &engine,
            &Submission {
                job: "j",
                profile: "employee-badge",
                stock: "default",
                csv: csv.as_bytes(),
            },
        )
        .unwrap();
        let reserve = |request: &str| match jobs.reserve("desk-1", request, "j", "sim 0", &[]).unwrap() {
            (Reservation::InFlight(r), true) => r.record.id,
            other => panic!("{other:?}"),
        };
        let _a = reserve("a");
        let (rb, rc, rd) = (reserve("b"), reserve("c"), reserve("d"));
        let (_, kek) = u.archive_kek();
        for (serial, record) in [(serial_b, &rb), (serial_c, &rc), (serial_d, &rd)] {
            let (uid, bytes) = master_bytes(kek, record);
            archive
                .seal(&SealRequest {
                    serial,
                    uid,
                    job: "j",
                    record_id: record,
                    bytes: &bytes,
                })
                .unwrap();
            if serial != serial_b {
                archive.record(serial, uid, &CardOutcome::Issued).unwrap();
            }
        }
        jobs.finish(
            "desk-1",
            "d",
            &keyserver::jobs::CardResult {
                outcome: CardOutcome::Issued,
                serial: Some(serial_d),
                round_trips: 2,
            },
            None,
        )
        .unwrap();
        // Everything dropped here, as in a crash after these writes.
    }

    let u = Unlocked::from_components(dir.path(), &components).unwrap();
    let archive = u.open_archive().unwrap();
    let db = sled::open(&db_path).unwrap();
    let jobs = JobStore::open(&db, u.records_key()).unwrap();
    let audit = u.audit();
    let recovered = recovery::after_restart(&archive, &jobs, audit.as_ref()).unwrap();
    let mut settled: Vec<(u32, bool)> = recovered.cards.iter().map(|c| (c.serial, c.issued)).collect();
    settled.sort_unstable();
    assert_eq!(settled, [(serial_b, false), (serial_c, true)]);
    let mut requests: Vec<&str> = recovered.requests.iter().map(|r| r.request_id.as_str()).collect();
    requests.sort_unstable();
    assert_eq!(requests, ["a", "b", "c"]);

    assert_eq!(
        events(&dd, serial_b),
        [
            (ManifestEvent::Sealed, None),
            (ManifestEvent::Void, Some(SEALED_REASON.into()))
        ]
    );
    assert_eq!(
        events(&dd, serial_c),
        [
            (ManifestEvent::Sealed, None),
            (ManifestEvent::Issued, None),
            (ManifestEvent::Void, Some(UNREPORTED_REASON.into()))
        ]
    );
    assert_eq!(
        events(&dd, serial_d),
        [(ManifestEvent::Sealed, None), (ManifestEvent::Issued, None)]
    );
    let s = jobs.status(Some("j")).unwrap().remove(0);
    assert_eq!(
        (s.total, s.issued, s.voided, s.queued, s.in_flight),
        (4, 1, 3, 3, 0)
    );
    let entries = audit_entries(&dd);
    let voids: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "card.void")
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(voids.len(), 5, "{voids:?}");
    for s in [
        format!("card {serial_b:08}"),
        format!("card {serial_c:08}"),
        "request desk-1/a".into(),
        "request desk-1/b".into(),
        "request desk-1/c".into(),
    ] {
        assert!(voids.contains(&s.as_str()), "{s} in {voids:?}");
    }
    verify_logs(&dd);

    // Nothing is left to settle.
    let again = recovery::after_restart(&archive, &jobs, audit.as_ref()).unwrap();
    assert!(again.cards.is_empty() && again.requests.is_empty());
}
