#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Key custody: init, unlock, split knowledge, wrapped keys, derivation.

mod custody_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use custody_support::*;
use keyserver::keystore::component::{self, Component};
use keyserver::keystore::derive::{self, Scp03Masters};
use keyserver::keystore::{self, aead, FileDelivery, InitOptions, KeystoreError, Unlocked};
use keyserver::ports::{IssuerKeys, KeySet};
use vsc::secret::AesKey;

fn opts(n: u8) -> InitOptions {
    InitOptions {
        custodians: n,
        server_names: Vec::new(),
    }
}

#[test]
fn init_refuses_fewer_than_two_custodians() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for n in [0u8, 1] {
        let e = keystore::init(&data, &opts(n), &mut Collect::default()).unwrap_err();
        assert!(matches!(e, KeystoreError::TooFewCustodians(m) if m == n), "{e:?}");
        assert!(
            e.to_string()
                .contains("a one-component setup is refused: split knowledge needs at least two custodians"),
            "{e}"
        );
    }
    assert!(!data.exists(), "nothing is created when init is refused");

    // Through the command line too.
    let c1 = dir.path().join("c1");
    let (code, out) = run_cli(&[
        "init",
        "--data",
        data.to_str().unwrap(),
        "--custodians",
        "1",
        "--component-out",
        c1.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a one-component setup is refused"), "{out}");
    assert!(!c1.exists() && !data.exists());
}

#[test]
fn component_files_are_private_exclusive_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, files) = init_with_files(dir.path(), 3);
    for (i, f) in files.iter().enumerate() {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(f).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with('#') && first.contains(&format!("custodian {} of 3", i + 1)),
            "{first}"
        );
        assert!(text.contains("SECRET"), "{text}");
    }

    // A component file that exists already is never overwritten, and init
    // refuses before it makes anything.
    let other = tempfile::tempdir().unwrap();
    let taken = other.path().join("c2");
    std::fs::write(&taken, "someone else's").unwrap();
    let data = other.path().join("data");
    let e = keystore::init(
        &data,
        &opts(2),
        &mut FileDelivery::new(vec![other.path().join("c1"), taken.clone()]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "someone else's");
    assert!(!data.exists() && !other.path().join("c1").exists());

    // One file per custodian, no more, no less.
    let e = keystore::init(
        &data,
        &opts(3),
        &mut FileDelivery::new(vec![other.path().join("x")]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("1 component files were given for 3 custodians"),
        "{e}"
    );
}

#[test]
fn init_refuses_an_initialized_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = init_in_memory(dir.path(), 2);
    let e = keystore::init(&data, &opts(2), &mut Collect::default()).unwrap_err();
    assert!(
        matches!(
            e,
            KeystoreError::AlreadyInitialized { .. } | KeystoreError::NotEmpty { .. }
        ),
        "{e:?}"
    );
}

/// What an unlocked keystore derives, to compare across restarts.
fn fingerprint(u: &Unlocked) -> Vec<Vec<u8>> {
    let kdd = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let keys = u.card_keys(&kdd).unwrap();
    let stock = u.transport_keys("default").unwrap();
    vec![
        keys.keys.enc().expose_secret().to_vec(),
        keys.keys.mac().expose_secret().to_vec(),
        keys.keys.dek().expose_secret().to_vec(),
        u.management_key(1079).unwrap().expose_secret().to_vec(),
        u.issuer().ca_certificate_der().to_vec(),
        u.archive_kek().1.expose_secret().to_vec(),
        u.records_key().expose_secret().to_vec(),
        u.enrollment_ca_pem().as_bytes().to_vec(),
        stock.keys.enc().expose_secret().to_vec(),
    ]
}

#[test]
fn unlock_with_the_component_files_works_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = init_with_files(dir.path(), 3);
    let first = {
        let u = Unlocked::from_component_files(&data, &files).unwrap();
        assert_eq!(u.archive_kek().0, "archive-kek/1");
        let stock = u.transport_keys("default").unwrap();
        assert_eq!(stock.kvn, 0x01);
        assert_eq!(stock.keys.enc().expose_secret(), &keystore::GP_TEST_KEY);
        assert!(u.transport_keys("nonesuch").is_err());
        fingerprint(&u)
    };
    // A restart: the data directory reopened, the files in another order.
    let reversed: Vec<_> = files.iter().rev().cloned().collect();
    let u = Unlocked::from_component_files(&data, &reversed).unwrap();
    assert_eq!(fingerprint(&u), first);
    drop(u);

    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches("\"action\":\"custody.unlock\"").count(),
        2,
        "{audit}"
    );
    assert!(audit.contains("\"action\":\"custody.init\""));
    assert!(audit.contains("\"action\":\"key.generate\""));
}

#[test]
fn a_wrong_component_names_its_custodian() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = init_with_files(dir.path(), 3);

    // Custodian 2's file with another (well-formed) component and its own check line.
    let original = std::fs::read_to_string(&files[1]).unwrap();
    let id = original
        .lines()
        .find_map(|l| l.strip_prefix("keyserver: "))
        .unwrap()
        .to_string();
    std::fs::write(&files[1], Component::random(2, 3).file_text(&id).as_bytes()).unwrap();
    let e = Unlocked::from_component_files(&data, &files).unwrap_err();
    assert!(
        matches!(e, KeystoreError::WrongComponent { custodian: 2, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("custodian 2's component is wrong"), "{msg}");
    assert!(msg.contains(&files[1].display().to_string()), "{msg}");

    // A typo the file's own check line catches.
    let mut typo = original.clone();
    let at = typo.find("component: ").unwrap() + "component: ".len();
    let d = typo.as_bytes()[at];
    typo.replace_range(at..at + 1, if d == b'0' { "1" } else { "0" });
    std::fs::write(&files[1], &typo).unwrap();
    let e = Unlocked::from_component_files(&data, &files)
        .unwrap_err()
        .to_string();
    assert!(e.contains("c2") && e.contains("mistyped"), "{e}");

    // The wrong number of files.
    std::fs::write(&files[1], &original).unwrap();
    let e = Unlocked::from_component_files(&data, &files[..2]).unwrap_err();
    assert!(
        matches!(
            e,
            KeystoreError::ComponentCount {
                expected: 3,
                given: 2
            }
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .contains("2 component files were given for 3 custodians"));
    // The same custodian twice.
    let twice = vec![files[0].clone(), files[0].clone(), files[2].clone()];
    let e = Unlocked::from_component_files(&data, &twice)
        .unwrap_err()
        .to_string();
    assert!(e.contains("custodian 1's component was given twice"), "{e}");

    // A component of another keyserver.
    let other = tempfile::tempdir().unwrap();
    let (_, other_files) = init_with_files(other.path(), 3);
    let mixed = vec![files[0].clone(), other_files[1].clone(), files[2].clone()];
    let e = Unlocked::from_component_files(&data, &mixed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("belongs to keyserver"), "{e}");

    // Every failure waits (unsigned) for the next unlock, which signs it into the log.
    let u = Unlocked::from_component_files(&data, &files).unwrap();
    drop(u);
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    let failed: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"outcome\":\"failed\"") && l.contains("custody.unlock"))
        .collect();
    assert_eq!(failed.len(), 5, "{audit}");
    assert!(failed[0].contains("\"subject\":\"custodian 2\""), "{}", failed[0]);
    assert!(failed
        .iter()
        .all(|l| l.contains("recorded while the keystore was locked")));
    assert!(!data.join("audit/pending.jsonl").exists());
    let report = keyserver::audit::verify(&keyserver::keystore::DataDir::new(&data)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn fewer_than_all_components_unwrap_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, components) = init_in_memory(dir.path(), 3);

    // Through the API: refused before anything is tried.
    let e = Unlocked::from_components(&data, &components[..2]).unwrap_err();
    assert!(
        matches!(
            e,
            KeystoreError::ComponentCount {
                expected: 3,
                given: 2
            }
        ),
        "{e:?}"
    );

    // Directly against the stored ciphertexts: every proper subset of the
    // components, combined, unwraps none of the keys; all of them unwrap all.
    let db = sled::open(data.join("keystore")).unwrap();
    let keys = db.open_tree("keys").unwrap();
    let wrapped: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (String::from_utf8(k.to_vec()).unwrap(), v.to_vec())
        })
        .collect();
    assert!(wrapped.len() >= 12, "{}", wrapped.len());
    for mask in 1u8..7 {
        let subset: Vec<Component> = components
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| c.clone())
            .collect();
        let kek = component::combine(&subset);
        for (name, blob) in &wrapped {
            let r = aead::unwrap(&kek, name, blob);
            assert!(
                matches!(r, Err(aead::UnwrapError::Authentication { .. })),
                "{name} with components {mask:03b}"
            );
        }
    }
    let root = component::combine(&components);
    for (name, blob) in &wrapped {
        aead::unwrap(&root, name, blob).unwrap();
        // Bound to its name: it does not unwrap as another key.
        assert!(aead::unwrap(&root, "records-key-elsewhere", blob).is_err());
    }
}

#[test]
fn a_changed_wrapped_key_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (data, components) = init_in_memory(dir.path(), 2);
    {
        let db = sled::open(data.join("keystore")).unwrap();
        let keys = db.open_tree("keys").unwrap();
        let mut v = keys.get("archive-kek/1").unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        keys.insert("archive-kek/1", v).unwrap();
        db.flush().unwrap();
    }
    let e = Unlocked::from_components(&data, &components).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("damaged") && msg.contains("archive-kek/1"), "{msg}");
}

fn vectors() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/derivation-vectors.txt"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn key(hex_str: &str) -> AesKey {
    AesKey::from_slice(&hex::decode(hex_str).unwrap()).unwrap()
}

#[test]
fn derivation_matches_the_independent_vectors() {
    let v = vectors();
    let get = |name: &str| v.iter().find(|l| l[0] == name).unwrap()[1].clone();
    let masters = Scp03Masters {
        enc: key(&get("master-enc")),
        mac: key(&get("master-mac")),
        dek: key(&get("master-dek")),
    };
    let mgmt = key(&get("master-mgmt"));
    let mut cards = 0;
    let mut mgmts = 0;
    for l in &v {
        match l[0].as_str() {
            "card" => {
                let kdd: [u8; 10] = hex::decode(&l[1]).unwrap().try_into().unwrap();
                let KeySet { kvn, keys } = derive::card_keys(&masters, &kdd).unwrap();
                assert_eq!(kvn, 0x30);
                assert_eq!(
                    hex::encode(keys.enc().expose_secret()),
                    l[2],
                    "ENC for KDD {}",
                    l[1]
                );
                assert_eq!(
                    hex::encode(keys.mac().expose_secret()),
                    l[3],
                    "MAC for KDD {}",
                    l[1]
                );
                assert_eq!(
                    hex::encode(keys.dek().expose_secret()),
                    l[4],
                    "DEK for KDD {}",
                    l[1]
                );
                cards += 1;
            }
            "mgmt" => {
                let serial: u32 = l[1].parse().unwrap();
                let k = derive::management_key(&mgmt, serial).unwrap();
                assert_eq!(k.expose_secret().len(), 24);
                assert_eq!(hex::encode(k.expose_secret()), l[2], "serial {serial}");
                mgmts += 1;
            }
            _ => {}
        }
    }
    assert_eq!((cards, mgmts), (4, 4));
}

#[test]
fn card_and_management_keys_are_per_card_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, u) = unlocked(dir.path());
    let a = [0u8, 0, 0x10, 0x79, 0, 0, 0, 0, 0, 1];
    let b = [0u8, 0, 0x10, 0x79, 0, 0, 0, 0, 0, 2];
    let ka = u.card_keys(&a).unwrap();
    let ka2 = u.card_keys(&a).unwrap();
    let kb = u.card_keys(&b).unwrap();
    assert_eq!(ka.keys.enc(), ka2.keys.enc());
    assert_eq!(ka.keys.mac(), ka2.keys.mac());
    assert_eq!(ka.keys.dek(), ka2.keys.dek());
    assert_ne!(ka.keys.enc(), kb.keys.enc());
    assert_ne!(ka.keys.mac(), kb.keys.mac());
    assert_ne!(ka.keys.dek(), kb.keys.dek());
    assert_ne!(ka.keys.enc(), ka.keys.mac());
    assert_eq!(ka.keys.enc().expose_secret().len(), 16);
    assert_eq!(u.management_key(7).unwrap(), u.management_key(7).unwrap());
    assert_ne!(u.management_key(7).unwrap(), u.management_key(8).unwrap());

    // Another keystore derives other keys for the same card.
    let other = tempfile::tempdir().unwrap();
    let (_d2, u2) = unlocked(other.path());
    assert_ne!(u2.card_keys(&a).unwrap().keys.enc(), ka.keys.enc());
}

#[test]
fn stocks_can_be_added_never_replaced_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, components) = init_in_memory(dir.path(), 2);
    let set = KeySet {
        kvn: 0x02,
        keys: vsc::scp03::StaticKeys::new(
            key(&"11".repeat(16)),
            key(&"22".repeat(16)),
            key(&"33".repeat(16)),
        )
        .unwrap(),
    };
    {
        let u = Unlocked::from_components(&data, &components).unwrap();
        u.add_stock("acme-2025", &set).unwrap();
        assert!(u
            .add_stock("acme-2025", &set)
            .unwrap_err()
            .to_string()
            .contains("never replaced"));
        assert!(u.add_stock("../x", &set).is_err());
    }
    let u = Unlocked::from_components(&data, &components).unwrap();
    assert_eq!(u.stocks(), vec!["acme-2025".to_string(), "default".to_string()]);
    let got = u.transport_keys("acme-2025").unwrap();
    assert_eq!(got.kvn, 2);
    assert_eq!(got.keys.mac().expose_secret(), &[0x22; 16]);
}

#[test]
fn unlock_refuses_without_a_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let e = Unlocked::from_component_files(&dir.path().join("nothing"), &[]).unwrap_err();
    assert!(matches!(e, KeystoreError::NotInitialized { .. }), "{e:?}");
    assert!(e.to_string().contains("keyserver init"), "{e}");
}

/// Runs in a child process of this test binary whose stdin is not a terminal.
#[test]
fn unlock_from_the_prompt_needs_a_terminal() {
    if let Ok(data) = std::env::var("CARDSMITH_PROMPT_CHILD") {
        let e = Unlocked::from_prompt(Path::new(&data)).unwrap_err();
        println!("CHILD-ERROR: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = init_in_memory(dir.path(), 2);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unlock_from_the_prompt_needs_a_terminal",
            "--nocapture",
        ])
        .env("CARDSMITH_PROMPT_CHILD", &data)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CHILD-ERROR: no terminal to ask the custodians; pass --unlock FILE for each"),
        "{text}"
    );
}

#[test]
fn init_on_the_terminal_needs_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .args(["init", "--data", data.to_str().unwrap(), "--custodians", "2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no terminal to show the custodians their components; pass --component-out FILE"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was made");
}

/// Fails on the second custodian, as a ceremony cut short would.
struct FailSecond(usize);

impl keystore::ComponentDelivery for FailSecond {
    fn prepare(&mut self, _: u8) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn deliver(&mut self, _: &str, _: &Component) -> Result<(), KeystoreError> {
        self.0 += 1;
        if self.0 == 2 {
            return Err(KeystoreError::Terminal(std::io::Error::other(
                "the custodian left",
            )));
        }
        Ok(())
    }
}

#[test]
fn an_interrupted_init_is_unusable_and_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = keystore::init(&data, &opts(3), &mut FailSecond(0)).unwrap_err();
    assert!(e.to_string().contains("the custodian left"), "{e}");
    let e = Unlocked::from_components(&data, &[]).unwrap_err();
    assert!(matches!(e, KeystoreError::InitInterrupted { .. }), "{e:?}");
    assert!(!data.join("audit/audit.jsonl").exists());

    let mut c = Collect::default();
    keystore::init(&data, &opts(2), &mut c).unwrap();
    Unlocked::from_components(&data, &c.0).unwrap();
}
