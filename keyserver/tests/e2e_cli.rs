#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The CLI proof: the real `keyserver` binary from `init` to `audit
//! verify`, with `serve` in the background and a station (the test station
//! in this process, with the bundle `enroll-station` wrote) issuing cards
//! through it. Each command's output and exit code as an administrator
//! sees them.

mod e2e_support;
mod issue_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use e2e_support::process::{self, run, Serve};
use e2e_support::{blank, issue_all, job_csv, profiles_dir};
use protos::bundle::StationBundle;
use protos::pb;
use support::station::TestStation;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn d(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn every_subcommand_has_an_example() {
    for sub in [
        vec!["init"],
        vec!["serve"],
        vec!["profile", "check"],
        vec!["job", "submit"],
        vec!["job", "status"],
        vec!["job", "mailers"],
        vec!["enroll-station"],
        vec!["revoke-station"],
        vec!["archive", "list"],
        vec!["archive", "show"],
        vec!["archive", "verify"],
        vec!["audit", "verify"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let ran = run(&args);
        assert_eq!(ran.code, 0, "{sub:?} --help: {}", ran.text());
        assert!(ran.stdout.contains("Example"), "{sub:?} --help: {}", ran.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_init_to_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b) = (dir.path().join("custodian-1"), dir.path().join("custodian-2"));

    // init: two components, each in its own file (0600), fingerprints shown.
    let ran = process::init(&data, &a, &b);
    assert!(ran.stdout.contains("initialized in"), "{}", ran.text());
    assert!(ran.stdout.contains("custodian 1: component check value"));
    assert!(ran.stdout.contains("custodian 2: component check value"));
    assert!(ran.stdout.contains("log-signing key  sha256 "));
    assert_eq!(mode(&a), 0o600);
    assert_eq!(mode(&b), 0o600);
    // init puts no profiles anywhere: the administrator does.
    assert!(!data.join("profiles").exists());
    let again = run(&[
        "init",
        "--data",
        &d(&data),
        "--custodians",
        "2",
        "--component-out",
        &d(&dir.path().join("x")),
        "--component-out",
        &d(&dir.path().join("y")),
    ]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already holds"), "{}", again.text());

    // serve refuses clearly: no profiles; a component given twice.
    let ran = run(&[
        "serve",
        "--data",
        &d(&data),
        "--unlock",
        &d(&a),
        "--unlock",
        &d(&b),
    ]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("the profiles directory") && ran.stderr.contains("--profiles DIR"),
        "{}",
        ran.text()
    );
    let profiles = d(&profiles_dir());
    let ran = run(&[
        "serve",
        "--data",
        &d(&data),
        "--unlock",
        &d(&a),
        "--unlock",
        &d(&a),
        "--profiles",
        &profiles,
    ]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("given twice"), "{}", ran.text());

    // The administrator puts the profiles in DATA/profiles; serve in the
    // background reads them there (and keeps the default RSA pool).
    std::fs::create_dir(data.join("profiles")).unwrap();
    for p in ["employee-badge.toml", "piv-escrow.toml"] {
        std::fs::copy(profiles_dir().join(p), data.join("profiles").join(p)).unwrap();
    }
    let args: Vec<String> = [
        "--data",
        &d(&data),
        "--unlock",
        &d(&a),
        "--unlock",
        &d(&b),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let serve = tokio::task::block_in_place(|| Serve::start(&args));
    assert!(serve.ready.contains("listening on 127.0.0.1:"), "{}", serve.ready);
    assert!(serve.ready.contains("admin.sock"), "{}", serve.ready);
    let admin_sock = data.join("admin.sock");
    assert_eq!(mode(&admin_sock), 0o600);

    // job submit: a bad file queues nothing; a good one is queued.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "record_id,given_name,surname,email,employee_id,department,street,city,account\n\
         r1,Ada,Lovelace,not-an-email,123456,R&D,Street,City,GB33BUKB20201555555555\n",
    )
    .unwrap();
    let ran = run(&[
        "job",
        "submit",
        &d(&bad),
        "--profile",
        "employee-badge",
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.stderr.contains("nothing was queued"), "{}", ran.text());
    assert!(ran.stderr.contains("row 2, column \"email\""), "{}", ran.text());
    let people = dir.path().join("people.csv");
    std::fs::write(&people, job_csv("employee-badge", "p", 3).0).unwrap();
    let ran = run(&[
        "job",
        "submit",
        &d(&people),
        "--profile",
        "employee-badge",
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        ran.stdout.trim(),
        "job people: 3 records queued (profile employee-badge, stock default)"
    );
    let ran = run(&["job", "status", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("JOB"), "{}", ran.stdout);
    assert!(
        lines[0].trim_end().ends_with("VOIDED MAX-RT  HELD"),
        "{}",
        ran.stdout
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cols,
        ["people", "employee-badge", "3", "0", "3", "0", "0", "0", "0"]
    );

    // enroll-station: a bundle, mode 0600, never overwritten.
    let bundle_path = dir.path().join("desk-1.bundle");
    let ran = run(&[
        "enroll-station",
        "desk-1",
        "--out",
        &d(&bundle_path),
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("station desk-1 enrolled"), "{}", ran.stdout);
    assert_eq!(mode(&bundle_path), 0o600);
    let ran = run(&[
        "enroll-station",
        "desk-1",
        "--out",
        &d(&bundle_path),
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("never overwritten"), "{}", ran.text());

    // A station with that bundle issues the job's three cards.
    let bundle = StationBundle::parse(&std::fs::read_to_string(&bundle_path).unwrap()).unwrap();
    assert_eq!(bundle.keyserver, serve.address());
    let station = Arc::new(TestStation::connect(&bundle).await.unwrap());
    let serials = [4_400_001u32, 4_400_002, 4_400_003];
    let mut issued = issue_all(
        &station,
        "people",
        "cli",
        serials.iter().map(|s| blank(*s)).collect(),
        3,
    )
    .await;
    for c in &issued {
        assert_eq!(c.result.outcome, pb::Outcome::Ok as i32, "{}", c.result.reason);
        assert_eq!(c.round_trips, 2);
    }
    let ran = run(&["job", "status", "people", "--data", &d(&data)]);
    assert_eq!(ran.code, 0);
    let cols: Vec<&str> = ran.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        cols,
        ["people", "employee-badge", "3", "3", "0", "0", "0", "2", "0"]
    );

    // job mailers: the PINs and PUKs the keyserver generated, for the PIN
    // mailers; each PIN opens its card.
    let mailers = dir.path().join("mailers.csv");
    let ran = run(&[
        "job",
        "mailers",
        "people",
        "--out",
        &d(&mailers),
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("the PIN/PUK of 3 issued record(s) written to"),
        "{}",
        ran.stdout
    );
    assert_eq!(mode(&mailers), 0o600);
    let text = std::fs::read_to_string(&mailers).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("record_id,pin,puk"));
    let rows: std::collections::BTreeMap<String, (String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].to_string(), (f[1].to_string(), f[2].to_string()))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    let list = run(&["archive", "list", "--data", &d(&data)]).stdout;
    for (serial, c) in serials.iter().zip(issued.iter_mut()) {
        let line = list
            .lines()
            .find(|l| l.starts_with(&format!("{serial:08} ")))
            .unwrap_or_else(|| panic!("{serial:08} not listed: {list}"));
        let record = line.split_whitespace().last().unwrap();
        let (pin, puk) = &rows[record];
        assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
        assert!(puk.len() == 8 && puk.bytes().all(|b| b.is_ascii_digit()), "{puk}");
        issue_support::reset(&mut c.card);
        issue_support::select_piv(&mut c.card);
        assert_eq!(
            issue_support::verify_pin(&mut c.card, pin.as_bytes()),
            vsc::codec::StatusWord::Success,
            "card {serial:08}: the exported PIN"
        );
    }
    let ran = run(&[
        "job",
        "mailers",
        "people",
        "--out",
        &d(&mailers),
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.stderr.contains("never overwrites"), "{}", ran.text());
    let elsewhere = dir.path().join("nope.csv");
    let ran = run(&[
        "job",
        "mailers",
        "nope",
        "--out",
        &d(&elsewhere),
        "--data",
        &d(&data),
    ]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.stderr.contains("there is no job \"nope\""), "{}", ran.text());
    assert!(!elsewhere.exists());

    // archive list | show | verify, audit verify: no custodian needed.
    let ran = run(&["archive", "list", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for s in serials {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{s:08} ")))
            .unwrap_or_else(|| panic!("{s:08} not listed: {}", ran.stdout));
        assert!(line.contains(" issued ") && line.contains("people"), "{line}");
    }
    assert!(ran.stdout.contains("3 card(s)."), "{}", ran.stdout);
    let ran = run(&["archive", "show", "04400002", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for want in [
        "Card 04400002, VSC UID ",
        "job people, record p",
        "sealed",
        "issued",
        "label \"VSC 04400002\", type \"employee-badge\"",
        "origin Master",
        "protected by",
        "archive-kek/1",
    ] {
        assert!(ran.stdout.contains(want), "{want:?} in {}", ran.stdout);
    }
    let ran = run(&["archive", "show", "12345678", "--data", &d(&data)]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("no card with serial 12345678"),
        "{}",
        ran.text()
    );
    let ran = run(&["archive", "verify", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("3 sealed file(s), 3 intact"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("OK: every file and the whole chain hold."));
    let ran = run(&["audit", "verify", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("OK: the whole chain holds."),
        "{}",
        ran.stdout
    );

    // revoke-station: refused from then on.
    let ran = run(&["revoke-station", "desk-1", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("station desk-1 revoked"), "{}", ran.stdout);
    let refused = TestStation::connect(&bundle).await.err().unwrap();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let ran = run(&["revoke-station", "desk-9", "--data", &d(&data)]);
    assert_eq!(ran.code, 1, "{}", ran.text());

    // profile check: the shipped profiles are valid; a broken one is not.
    let ran = run(&["profile", "check", &d(&profiles_dir().join("piv-escrow.toml"))]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("profile \"piv-escrow\" is valid"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("round trips per card: 3"), "{}", ran.stdout);
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    let broken = dir.path().join("broken/piv-escrow.toml");
    let text = std::fs::read_to_string(profiles_dir().join("piv-escrow.toml"))
        .unwrap()
        .replace("algorithm = \"rsa2048\"", "algorithm = \"rsa1024\"");
    std::fs::write(&broken, text).unwrap();
    let ran = run(&["profile", "check", &d(&broken)]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stderr.contains("broken/piv-escrow.toml:")
            && ran.stderr.contains("slot[2].algorithm: \"rsa1024\""),
        "{}",
        ran.text()
    );
    assert!(ran.stderr.contains("1 error(s)"), "{}", ran.text());

    // SIGINT: a clean stop, the admin socket removed; the admin commands
    // then say no keyserver runs; verification still works.
    let stopped = serve.signal("INT");
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        stopped.stdout.contains("keyserver stopped cleanly"),
        "{}",
        stopped.stdout
    );
    assert!(!admin_sock.exists());
    let ran = run(&["job", "status", "--data", &d(&data)]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("no keyserver is running"), "{}", ran.text());
    let ran = run(&["audit", "verify", "--data", &d(&data)]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    for action in [
        "custody.unlock",
        "keyserver.start",
        "keyserver.stop",
        "station.revoke",
        "job.secrets.export",
    ] {
        assert!(
            audit.contains(&format!("\"action\":\"{action}\"")),
            "{action} is audited"
        );
    }
    // The export is audited by count, never with the values.
    for (_, puk) in rows.values() {
        assert!(!audit.contains(puk.as_str()), "a PUK in the audit log");
    }
    // The logs are JSON lines (standard output is not a terminal).
    let json_lines = stopped
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .inspect(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        })
        .count();
    assert!(json_lines > 5, "{}", stopped.stdout);
}
