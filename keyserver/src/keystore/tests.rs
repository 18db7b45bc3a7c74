//! Unit tests of custody with access to its internals: no key the keystore
//! holds appears in the data directory or the log output, in any encoding.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PrivateKeyParts;
use vsc::file::{NewVsc, Protector, Vsc};

use super::component::Component;
use super::pool::PoolConfig;
use super::{init, ComponentDelivery, InitOptions, KeystoreError, Unlocked};
use crate::ports::{
    AuditEvent, AuditOutcome, AuditSink, CardOutcome, Escrow, IssuerKeys, RsaKeySource, SealRequest,
};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Collect(Vec<Component>);

impl ComponentDelivery for Collect {
    fn prepare(&mut self, _: u8) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn deliver(&mut self, _: &str, c: &Component) -> Result<(), KeystoreError> {
        self.0.push(c.clone());
        Ok(())
    }
}

/// Every way the bytes could be written down: raw, hex (both cases),
/// base64 (standard and URL-safe) at each of the three alignments.
fn encodings(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut v = vec![
        bytes.to_vec(),
        hex::encode(bytes).into_bytes(),
        hex::encode_upper(bytes).into_bytes(),
    ];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for off in 0..3 {
            let e = engine.encode(&bytes[off..]);
            // The last characters depend on what follows the key.
            let core = &e.as_bytes()[..e.len().saturating_sub(4)];
            if core.len() >= 12 {
                v.push(core.to_vec());
            }
        }
    }
    v
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_key_appears_in_the_data_directory_or_the_logs() {
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The only test of this binary that installs a subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut c = Collect::default();
    init(
        &data,
        &InitOptions {
            custodians: 3,
            server_names: vec!["ks.example".into()],
        },
        &mut c,
    )
    .unwrap();
    let components = c.0;

    // A failed unlock first (recorded while locked), then the real one.
    let mut wrong = components.clone();
    wrong[1] = Component::random(2, 3);
    assert!(Unlocked::from_components(&data, &wrong).is_err());
    let u = Unlocked::from_components(&data, &components).unwrap();

    let mut needles: Vec<(String, Vec<u8>)> = u.all_key_material();
    for c in &components {
        needles.push((format!("component {}", c.custodian()), c.expose_secret().to_vec()));
        let grouped = c.grouped_hex();
        let first_line = grouped.lines().next().unwrap().to_string();
        needles.push((
            format!("component {} as grouped hex", c.custodian()),
            first_line.into_bytes(),
        ));
    }
    let kdd = [9u8; 10];
    let card = u.card_keys(&kdd).unwrap();
    needles.push(("card ENC".into(), card.keys.enc().expose_secret().to_vec()));
    needles.push(("card MAC".into(), card.keys.mac().expose_secret().to_vec()));
    needles.push(("card DEK".into(), card.keys.dek().expose_secret().to_vec()));
    needles.push((
        "management key".into(),
        u.management_key(1079).unwrap().expose_secret().to_vec(),
    ));
    let stock = u.transport_keys("default").unwrap();
    // The GP test keys are public knowledge but must not be stored in clear either.
    needles.push((
        "stock default ENC".into(),
        stock.keys.enc().expose_secret().to_vec(),
    ));

    // Use everything that writes: station identity, TLS identity, archive, audit, pool.
    let station = u.issue_station_identity("desk-1").unwrap();
    let station_pem = String::from_utf8(station.key_pem.expose_secret().to_vec()).unwrap();
    for (i, line) in station_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .enumerate()
    {
        needles.push((format!("station key PEM line {i}"), line.as_bytes().to_vec()));
    }
    let tls = u.server_identity().unwrap();
    assert!(std::str::from_utf8(tls.key_pem.expose_secret())
        .unwrap()
        .contains("PRIVATE KEY"));

    let archive = u.open_archive().unwrap();
    let protector = Protector::Kek {
        key_id: "archive-kek/1".into(),
        key: u.archive_kek().1.clone(),
    };
    for serial in 1..=5u32 {
        let v = Vsc::create(
            NewVsc::new(format!("VSC {serial:08}"), "employee-badge", 1_700_000_000),
            &protector,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let bytes = v.to_bytes(&mut rand::rngs::OsRng).unwrap();
        archive
            .seal(&SealRequest {
                serial,
                uid: v.uid(),
                job: "badges",
                record_id: &format!("r{serial}"),
                bytes: &bytes,
            })
            .unwrap();
        archive.record(serial, v.uid(), &CardOutcome::Issued).unwrap();
    }
    u.record(AuditEvent {
        actor: "admin:test".into(),
        action: "card.issue".into(),
        subject: "00000001".into(),
        outcome: AuditOutcome::Ok,
        detail: "a test".into(),
    })
    .unwrap();

    let pool = u.key_pool(PoolConfig { target: 0 }).unwrap();
    pool.fill(2).unwrap();
    let taken = pool.rsa2048().unwrap();
    needles.push(("pooled RSA d".into(), taken.d().to_bytes_be()));
    needles.push(("pooled RSA p".into(), taken.primes()[0].to_bytes_be()));
    needles.push((
        "pooled RSA PKCS#8".into(),
        taken.to_pkcs8_der().unwrap().as_bytes()[..64].to_vec(),
    ));
    let left = pool.rsa2048().unwrap();
    needles.push(("pooled RSA d (2)".into(), left.d().to_bytes_be()));
    drop(pool);
    drop(archive);
    drop(u);

    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(files.len() > 15, "{files:?}");
    let mut hay: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    let log_bytes = logs.0.lock().unwrap().clone();
    assert!(!log_bytes.is_empty(), "the logs were captured");
    hay.push(("captured log output".into(), log_bytes));

    let mut hits = Vec::new();
    for (name, key) in &needles {
        for form in encodings(key) {
            for (where_, bytes) in &hay {
                if contains(bytes, &form) {
                    hits.push(format!("{name} in {where_}"));
                }
            }
        }
    }
    assert!(hits.is_empty(), "key material found: {hits:#?}");
    assert!(needles.len() > 25);
}
