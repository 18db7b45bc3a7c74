#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The leak scan (issue text): "a test issues a batch and scans the data
//! directory and the logs for every key's bytes (raw, hex, base64): 0
//! hits". Every key custody holds (the root KEK and the custodians'
//! components too), every card's escrowed private keys (read back from the
//! master VSCs with the archive KEK), every card's SCP03 and management
//! keys, the records key, the PINs and PUKs, the station's private key.
//!
//! Once in process (the service's tracing output captured at debug level,
//! the keyserver's own at trace), once with the real binary (its standard
//! output and error at the default level).

mod e2e_support;
mod issue_support;
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use e2e_support::leaks::{self, assert_clean, Scanner, Secret};
use e2e_support::process::{self, serve_args, Serve};
use e2e_support::{blank, issue_all, job_csv, Stack};
use keyserver::jobs::JobStore;
use keyserver::keystore::component::read_component_file;
use keyserver::keystore::Unlocked;
use protos::bundle::StationBundle;
use protos::pb;
use support::station::TestStation;

/// The tracing output of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,keyserver=trace"))
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .init();
    captured
}

/// The PINs and PUKs of a job's issued cards (the random ones from the job
/// output), and the record PINs and account numbers the CSV carried.
fn job_secrets(jobs: &JobStore, job: &str, csv: &str) -> Vec<Secret> {
    let mut out = Vec::new();
    for (id, s) in jobs.issued_secrets(job).unwrap() {
        if let Some(pin) = s.pin {
            out.push((format!("{job}/{id} PIN"), pin.expose_secret().to_vec()));
        }
        if let Some(puk) = s.puk {
            out.push((format!("{job}/{id} PUK"), puk.expose_secret().to_vec()));
        }
    }
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        for (name, value) in header.iter().zip(&cols) {
            if *name == "pin" || *name == "account" {
                out.push((format!("{job}/{} {name}", cols[0]), value.as_bytes().to_vec()));
            }
        }
    }
    out
}

/// The scanner finds what it should (a scan that finds nothing proves
/// nothing otherwise).
fn self_test(scanner_secrets: &[Secret]) {
    let scanner = Scanner::new(scanner_secrets);
    let (label, secret) = scanner_secrets.last().unwrap();
    let planted = format!("xx {} yy", hex::encode(secret));
    let hits = scanner.scan("planted", planted.as_bytes());
    assert!(
        hits.iter().any(|h| &h.secret == label),
        "the scanner missed a planted secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_leaves_no_key_in_the_data_directory_or_the_logs() {
    let logs = capture_logs();
    let mut stack = Stack::start(3).await;
    let bundle = stack.harness.enroll("desk-1", &[]).await;
    let station = Arc::new(TestStation::connect(&bundle).await.unwrap());

    let (badge_csv, _) = job_csv("employee-badge", "b", 6);
    stack.submit("badges", "employee-badge", &badge_csv).await;
    let (piv_csv, _) = job_csv("piv-escrow", "v", 4);
    stack.submit("pivs", "piv-escrow", &piv_csv).await;
    let badges = issue_all(
        &station,
        "badges",
        "b",
        (0..6).map(|i| blank(610_000 + i)).collect(),
        3,
    )
    .await;
    let pivs = issue_all(
        &station,
        "pivs",
        "v",
        (0..4).map(|i| blank(620_000 + i)).collect(),
        2,
    )
    .await;
    for c in badges.iter().chain(&pivs) {
        assert_eq!(c.result.outcome, pb::Outcome::Ok as i32, "{}", c.result.reason);
    }
    // And a card voided by a flipped bit (its master is archived too).
    let (csv, _) = job_csv("employee-badge", "x", 1);
    stack.submit("flip", "employee-badge", &csv).await;
    let mut card = blank(630_000);
    let run = station
        .issue_with("flip", "flip", &mut card, |rt, reply| {
            if rt == 2 {
                reply.responses.last_mut().unwrap()[1] ^= 0x80;
            }
        })
        .await
        .unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Failed as i32);
    drop(station);
    stack.harness.stop().await;

    let mut secrets = leaks::custody_secrets(&stack.unlocked, &stack.components);
    secrets.extend(leaks::card_secrets(stack.data(), &stack.unlocked));
    secrets.extend(job_secrets(&stack.harness.jobs, "badges", &badge_csv));
    secrets.extend(job_secrets(&stack.harness.jobs, "pivs", &piv_csv));
    secrets.extend(leaks::station_key("desk-1", &bundle.private_key_pem));
    // 11 cards archived, each with escrowed keys, SCP03 keys, a management key.
    assert!(secrets.len() > 150, "{} secrets", secrets.len());
    self_test(&secrets);
    let scanner = Scanner::new(&secrets);

    let (mut hits, read) = scanner.scan_dir(stack.data());
    assert!(read > 100_000, "the data directory holds {read} bytes");
    let logs = logs.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&logs);
    assert!(
        text.contains("\"card done\"") && text.contains("keystore unlocked"),
        "the logs were captured: {} bytes",
        logs.len()
    );
    hits.extend(scanner.scan("the service's logs", &logs));
    assert_clean(&hits);
    eprintln!(
        "leak scan: {} secrets, {} bytes of data directory and {} bytes of logs: 0 hits",
        scanner.secrets(),
        read,
        logs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_leaks_nothing_to_its_output_or_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b) = (dir.path().join("custodian-1"), dir.path().join("custodian-2"));
    let init = process::init(&data, &a, &b);
    let serve = tokio::task::block_in_place(|| Serve::start(&serve_args(&data, &a, &b)));

    let mut admin = keyserver::service::client::connect(&data, 64 << 20)
        .await
        .unwrap();
    let (badge_csv, _) = job_csv("employee-badge", "b", 3);
    let (piv_csv, _) = job_csv("piv-escrow", "v", 2);
    for (job, profile, csv) in [
        ("badges", "employee-badge", &badge_csv),
        ("pivs", "piv-escrow", &piv_csv),
    ] {
        let r = admin
            .submit_job(pb::SubmitJobRequest {
                job: job.into(),
                profile: profile.into(),
                stock: "default".into(),
                csv: csv.as_bytes().to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    let bundle = admin
        .enroll_station(pb::EnrollStationRequest {
            name: "desk-1".into(),
            jobs: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle;
    drop(admin);
    let bundle = StationBundle::parse(std::str::from_utf8(&bundle).unwrap()).unwrap();
    let station = Arc::new(TestStation::connect(&bundle).await.unwrap());
    let badges = issue_all(
        &station,
        "badges",
        "b",
        (0..3).map(|i| blank(710_000 + i)).collect(),
        3,
    )
    .await;
    let pivs = issue_all(
        &station,
        "pivs",
        "v",
        (0..2).map(|i| blank(720_000 + i)).collect(),
        2,
    )
    .await;
    for c in badges.iter().chain(&pivs) {
        assert_eq!(c.result.outcome, pb::Outcome::Ok as i32, "{}", c.result.reason);
    }
    drop(station);
    let stopped = serve.signal("TERM");
    assert!(stopped.status.success(), "{stopped:?}");

    // Custody's keys, from the components the custodians hold.
    let components = [&a, &b].map(|f| read_component_file(f).unwrap().component);
    let unlocked = Unlocked::from_component_files(&data, &[a.clone(), b.clone()]).unwrap();
    let mut secrets = leaks::custody_secrets(&unlocked, &components);
    secrets.extend(leaks::card_secrets(&data, &unlocked));
    {
        let db = sled::open(data.join("service.sled")).unwrap();
        let jobs = JobStore::open(&db, unlocked.records_key()).unwrap();
        secrets.extend(job_secrets(&jobs, "badges", &badge_csv));
        secrets.extend(job_secrets(&jobs, "pivs", &piv_csv));
    }
    secrets.extend(leaks::station_key("desk-1", &bundle.private_key_pem));
    self_test(&secrets);
    let scanner = Scanner::new(&secrets);
    drop(unlocked);

    let (mut hits, read) = scanner.scan_dir(&data);
    assert!(read > 100_000);
    assert!(stopped.stdout.contains("\"card done\""), "{}", stopped.stdout);
    hits.extend(scanner.scan("serve's standard output", stopped.stdout.as_bytes()));
    hits.extend(scanner.scan("serve's standard error", stopped.stderr.as_bytes()));
    hits.extend(scanner.scan("init's output", init.text().as_bytes()));
    assert_clean(&hits);
}
