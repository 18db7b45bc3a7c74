//! The `keyserver` binary's admin commands against a running service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use protos::bundle::StationBundle;
use support::{people, Harness};

async fn keyserver(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyserver"))
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str], data: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.push("--data".into());
    v.push(data.display().to_string());
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_submit_and_status() {
    let h = Harness::start().await;
    let csv = h.data().join("people.csv");
    std::fs::write(
        &csv,
        "record_id,given_name,surname,pin\nr1,Ann,Lee,123456\nr2,,Kim,12ab\nr2,B,C,123456\n",
    )
    .unwrap();
    let out = keyserver(args(
        &["job", "submit", csv.to_str().unwrap(), "--profile", "test-piv"],
        h.data(),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("3 error(s), nothing was queued"), "{err}");
    assert!(err.contains("row 3, column \"given_name\": is required"), "{err}");
    assert!(
        err.contains("row 3, column \"pin\": must be 6 to 8 digits"),
        "{err}"
    );
    assert!(
        err.contains("row 4, column \"record_id\": record id \"r2\" is already used on row 3"),
        "{err}"
    );
    assert!(!err.contains("12ab"), "{err}");
    assert!(h.jobs.job_names().unwrap().is_empty());
    assert_eq!(h.audit.with_action("job.submit").len(), 1);

    std::fs::write(&csv, people(4)).unwrap();
    let out = keyserver(args(
        &["job", "submit", csv.to_str().unwrap(), "--profile", "test-piv"],
        h.data(),
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("job people: 4 records queued (profile test-piv, stock default)"));
    let out = keyserver(args(
        &[
            "job",
            "submit",
            csv.to_str().unwrap(),
            "--profile",
            "test-piv",
            "--job",
            "second",
            "--stock",
            "gold",
        ],
        h.data(),
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(h.jobs.status(Some("second")).unwrap()[0].stock, "gold");
    // The same job name again is refused.
    let out = keyserver(args(
        &["job", "submit", csv.to_str().unwrap(), "--profile", "test-piv"],
        h.data(),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("job \"people\" already exists"),
        "{}",
        text(&out.stderr)
    );

    let out = keyserver(args(&["job", "status"], h.data())).await;
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(
        table.contains("IN-FLIGHT") && table.contains("VOIDED") && table.contains("HELD"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("people ")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        vec!["people", "test-piv", "4", "0", "4", "0", "0", "0", "0"]
    );
    let out = keyserver(args(&["job", "status", "nope"], h.data())).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("there is no job \"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_and_revoke_station() {
    let h = Harness::start().await;
    let bundle = h.data().join("desk-1.bundle");
    let out = keyserver(args(
        &[
            "enroll-station",
            "desk-1",
            "--out",
            bundle.to_str().unwrap(),
            "--job",
            "batch",
        ],
        h.data(),
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let b = StationBundle::parse(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    assert_eq!(
        (b.station.as_str(), b.jobs.clone()),
        ("desk-1", vec!["batch".to_string()])
    );
    assert!(!text(&out.stdout).contains("PRIVATE KEY"));
    // Never overwritten.
    let out = keyserver(args(
        &["enroll-station", "desk-1", "--out", bundle.to_str().unwrap()],
        h.data(),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("never overwritten"),
        "{}",
        text(&out.stderr)
    );
    let out = keyserver(args(&["revoke-station", "desk-1"], h.data())).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(support::station::TestStation::connect(&b).await.is_err());
    let out = keyserver(args(&["revoke-station", "desk-7"], h.data())).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("station \"desk-7\" is not enrolled"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_say_when_no_keyserver_runs() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["job", "status"],
        vec!["revoke-station", "desk-1"],
        vec!["enroll-station", "desk-1", "--out", "/nonexistent-dir/x.bundle"],
    ] {
        let out = keyserver(args(&cmd, dir.path())).await;
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "no keyserver is running on {} ({}/admin.sock): start `keyserver serve` first",
                dir.path().display(),
                dir.path().display()
            )),
            "{err}"
        );
    }
    // A stale socket file (a keyserver that died) reads the same.
    let _stale = std::os::unix::net::UnixListener::bind(dir.path().join("admin.sock")).unwrap();
    drop(_stale);
    let out = keyserver(args(&["job", "status"], dir.path())).await;
    assert!(
        text(&out.stderr).contains("no keyserver is running"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_checks_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyserver(args(&["serve", "--listen", "nonsense"], dir.path())).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--listen \"nonsense\" is not an address"),
        "{}",
        text(&out.stderr)
    );
    let missing = dir.path().join("missing");
    let out = keyserver(args(&["serve"], &missing)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
}
