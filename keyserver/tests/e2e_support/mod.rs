//! The whole keyserver in process, as `keyserver serve` wires it: custody
//! initialized and unlocked in a temporary data directory, the audit log,
//! the archive, the RSA key pool, the engine over the shipped profiles, and
//! the service on loopback with mutual TLS; the test station drives blank
//! software cards. And the checks an issued card must pass, against the
//! real parts.
//!
//! A test file using it declares `mod support; mod issue_support; mod
//! e2e_support;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod leaks;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyserver::archive::{self, Archive, CardHistory, ManifestEvent};
use keyserver::audit::AuditLog;
use keyserver::issue::Engine;
use keyserver::keystore::component::Component;
use keyserver::keystore::pool::{KeyPool, PoolConfig};
use keyserver::keystore::{self, ComponentDelivery, DataDir, InitOptions, KeystoreError, Unlocked};
use keyserver::ports::IssuerKeys;
use keyserver::profile::{KeyPolicy, Profile};
use keyserver::service::Limits;
use protos::pb;
use vsc::card::LifeCycle;
use vsc::codec::StatusWord;
use vsc::file::{Unlock, Vsc};
use vsc::transport::InProcess;

use crate::issue_support::{
    cert_object_tag, certificate_der, check_chain, cmd, get_object, metadata_public_key, open_scp, reset,
    select_piv, send, spki_of_public_objects, verify_pin, Card,
};
use crate::support::station::TestStation;
use crate::support::{Custom, Harness};

/// The shipped profiles.
pub fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

/// Keeps the custodians' components in memory.
#[derive(Default)]
pub struct Collect(pub Vec<Component>);

impl ComponentDelivery for Collect {
    fn prepare(&mut self, _custodians: u8) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn deliver(&mut self, _keyserver: &str, component: &Component) -> Result<(), KeystoreError> {
        self.0.push(component.clone());
        Ok(())
    }
}

/// Initializes a keystore in `dir` for 2 custodians and returns their
/// components.
pub fn init_keystore(dir: &Path) -> Vec<Component> {
    let mut delivery = Collect::default();
    keystore::init(
        dir,
        &InitOptions {
            custodians: 2,
            server_names: Vec::new(),
        },
        &mut delivery,
    )
    .unwrap();
    delivery.0
}

/// The real keyserver, serving on loopback.
pub struct Stack {
    pub harness: Harness,
    pub components: Vec<Component>,
    pub unlocked: Arc<Unlocked>,
    pub audit: Arc<AuditLog>,
    pub archive: Arc<Archive>,
    pub pool: Arc<KeyPool>,
    pub engine: Arc<Engine>,
}

impl Stack {
    /// Initializes a keystore (2 custodians) in a fresh temporary data
    /// directory, unlocks it and serves, with an RSA pool of `rsa_pool`
    /// keys (refilled in the background).
    pub async fn start(rsa_pool: usize) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let components = init_keystore(dir.path());
        let unlocked = Arc::new(Unlocked::from_components(dir.path(), &components).unwrap());
        let audit = unlocked.audit();
        let archive = Arc::new(unlocked.open_archive().unwrap());
        let pool = Arc::new(unlocked.key_pool(PoolConfig { target: rsa_pool }).unwrap());
        let engine = Arc::new(
            Engine::from_dir(
                &profiles_dir(),
                unlocked.clone(),
                archive.clone(),
                audit.clone(),
                pool.clone(),
            )
            .unwrap(),
        );
        let harness = Harness::start_custom(
            Limits::default(),
            Custom {
                engine: engine.clone(),
                authority: unlocked.clone(),
                audit: audit.clone(),
                records_key: unlocked.records_key().clone(),
                dir: Some(dir),
            },
        )
        .await;
        Stack {
            harness,
            components,
            unlocked,
            audit,
            archive,
            pool,
            engine,
        }
    }

    pub fn data(&self) -> &Path {
        self.harness.data()
    }

    pub fn data_dir(&self) -> DataDir {
        DataDir::new(self.data())
    }

    pub fn profile(&self, id: &str) -> Profile {
        self.engine.profile(id).unwrap().clone()
    }

    /// A station enrolled through the admin socket (its identity from
    /// custody's enrollment CA), connected over mutual TLS.
    pub async fn station(&self, name: &str) -> Arc<TestStation> {
        let bundle = self.harness.enroll(name, &[]).await;
        Arc::new(TestStation::connect(&bundle).await.unwrap())
    }

    /// Submits a job through the admin socket, as `keyserver job submit`
    /// does; panics on any refusal.
    pub async fn submit(&self, job: &str, profile: &str, csv: &str) {
        let r = self.harness.submit_profile(job, profile, csv).await;
        assert!(r.errors.is_empty(), "job {job} refused: {:?}", r.errors);
    }

    /// The archive's history of the card with `serial` (exactly one).
    pub fn history(&self, serial: u32) -> CardHistory {
        let mut found = archive::card(&self.data_dir(), serial).unwrap();
        assert_eq!(found.len(), 1, "card {serial:08} was archived once");
        found.remove(0)
    }

    /// The card's sealed master VSC, opened with the archive KEK.
    pub fn master(&self, serial: u32) -> Vsc {
        let h = self.history(serial);
        let path = self.data_dir().archive_vsc().join(h.file.unwrap());
        let (id, kek) = self.unlocked.archive_kek();
        Vsc::load(
            &path,
            &Unlock::Kek {
                key_id: id.into(),
                key: kek.clone(),
            },
        )
        .unwrap()
    }

    /// The PIN each record's card got: from the record (`pin` field) or
    /// generated (sealed in the job output).
    pub fn pins(&self, job: &str, records: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = records
            .iter()
            .map(|(id, pin)| (id.clone(), pin.as_bytes().to_vec()))
            .collect();
        for (id, secrets) in self.harness.jobs.issued_secrets(job).unwrap() {
            if let Some(pin) = secrets.pin {
                out.insert(id, pin.expose_secret().to_vec());
            }
        }
        out
    }

    /// Everything an issued card must be (see the checks inline).
    pub fn verify_card(&self, card: &mut Card, profile: &Profile, pin: &[u8]) {
        let serial = card.card().identity().serial();
        reset(card);
        assert_eq!(card.card().life_cycle(), LifeCycle::Secured, "card {serial:08}");
        // The archive: sealed then issued, nothing else.
        let h = self.history(serial);
        let events: Vec<ManifestEvent> = h.events.iter().map(|e| e.2).collect();
        assert_eq!(
            events,
            [ManifestEvent::Sealed, ManifestEvent::Issued],
            "card {serial:08}"
        );
        let master = self.master(serial);
        // The escrowed keys are the master's own (generated for it); keys
        // the card generates are not on it.
        for slot in &profile.slots {
            let entry = master.secret_key(&vsc::file::KeyRef::PivSlot(slot.slot));
            match slot.policy {
                KeyPolicy::Escrow => assert_eq!(
                    entry.map(|e| e.attributes.origin),
                    Some(vsc::file::KeyOrigin::GeneratedOnMaster),
                    "card {serial:08} slot {:02X}",
                    slot.slot
                ),
                KeyPolicy::Card => assert!(entry.is_none()),
            }
        }
        assert_eq!(master.header().card_type, profile.id);
        assert_eq!(master.header().attributes.origin, vsc::file::Origin::Master);
        let mut master_card = InProcess::insert(vsc::card::SoftCard::new(master).unwrap());

        // The issuer CA, as published in DATA/public (what relying parties
        // trust), is the one custody signs with.
        let pem = std::fs::read_to_string(self.data_dir().issuer_ca_pem()).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(ca.contents, self.unlocked.issuer().ca_certificate_der());

        select_piv(card);
        select_piv(&mut master_card);
        for slot in &profile.slots {
            let object = get_object(card, cert_object_tag(slot.slot)).unwrap();
            let spki = check_chain(&certificate_der(&object), &ca.contents);
            let card_key = metadata_public_key(card, slot.slot).unwrap();
            assert_eq!(
                spki_of_public_objects(&card_key),
                spki,
                "card {serial:08} slot {:02X}: the certificate is for the card's key",
                slot.slot
            );
            match slot.policy {
                KeyPolicy::Escrow => {
                    assert_eq!(
                        metadata_public_key(&mut master_card, slot.slot).unwrap(),
                        card_key,
                        "card {serial:08} slot {:02X}: the card's key is the master VSC's",
                        slot.slot
                    );
                    assert_eq!(
                        get_object(&mut master_card, cert_object_tag(slot.slot)).unwrap(),
                        object
                    );
                }
                KeyPolicy::Card => assert_eq!(
                    metadata_public_key(&mut master_card, slot.slot),
                    Err(StatusWord::ReferencedDataNotFound),
                    "card {serial:08} slot {:02X}: a card-generated key is not on the master",
                    slot.slot
                ),
            }
        }
        // Data objects: the CHUID in clear; the Printed Information after
        // the PIN, with the cardholder's name; the same on the master.
        let chuid = get_object(card, 0x5F_C102).unwrap();
        assert_eq!(chuid.first(), Some(&0x30), "a CHUID starts with its FASC-N");
        assert_eq!(get_object(&mut master_card, 0x5F_C102).unwrap(), chuid);
        assert_eq!(
            get_object(card, 0x5F_C109).err(),
            Some(StatusWord::SecurityStatusNotSatisfied),
            "Printed Information needs the PIN"
        );
        // The PIN works (on the card and on its master); a wrong one does not.
        let mut wrong = pin.to_vec();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            verify_pin(card, &wrong),
            StatusWord::VerificationFailed { .. }
        ));
        assert_eq!(
            verify_pin(card, pin),
            StatusWord::Success,
            "card {serial:08}: the PIN"
        );
        assert_eq!(verify_pin(&mut master_card, pin), StatusWord::Success);
        let printed = get_object(card, 0x5F_C109).unwrap();
        assert_eq!(get_object(&mut master_card, 0x5F_C109).unwrap(), printed);

        if profile.id == "employee-badge" {
            self.verify_badge_files(card, pin);
        }

        // The SCP03 keys were rotated: the card's own diversified keys open
        // a session; the factory (transport) keys are refused.
        let card_keys = self.unlocked.card_keys(&card.card().identity().kdd()).unwrap();
        assert!(open_scp(card, card_keys.kvn, &card_keys.keys).is_ok());
        let transport = self.unlocked.transport_keys("default").unwrap();
        assert_eq!(
            open_scp(card, transport.kvn, &transport.keys).err(),
            Some(StatusWord::ReferencedDataNotFound),
            "card {serial:08}: the factory keys are refused"
        );
        // The management key is the diversified AES-192 key, not a default.
        reset(card);
        select_piv(card);
        let r = send(card, &cmd(0x00, 0xF7, 0x00, 0x9B, &[]));
        assert_eq!(r.sw, StatusWord::Success);
        assert_eq!(&r.data[..3], &[0x01, 0x01, 0x0A], "management key: AES-192");
        reset(card);
    }

    /// employee-badge: the address in a public EF (read without PIN), the
    /// account in a private EF (after the PIN).
    fn verify_badge_files(&self, card: &mut Card, pin: &[u8]) {
        reset(card);
        let read = |card: &mut Card, path: [u8; 4]| {
            let r = send(card, &cmd(0x00, 0xA4, 0x08, 0x0C, &path));
            assert_eq!(r.sw, StatusWord::Success);
            let r = send(card, &cmd(0x00, 0xB0, 0x00, 0x00, &[]));
            (r.sw, r.data)
        };
        let (sw, address) = read(card, [0x50, 0x00, 0x50, 0x01]);
        assert_eq!(sw, StatusWord::Success);
        assert!(
            address.starts_with(b"Given"),
            "{}",
            String::from_utf8_lossy(&address)
        );
        assert_eq!(
            read(card, [0x50, 0x00, 0x50, 0x02]).0,
            StatusWord::SecurityStatusNotSatisfied,
            "the account needs the PIN"
        );
        select_piv(card);
        assert_eq!(verify_pin(card, pin), StatusWord::Success);
        let (sw, account) = read(card, [0x50, 0x00, 0x50, 0x02]);
        assert_eq!(sw, StatusWord::Success);
        assert!(
            account.starts_with(b"GB33"),
            "{}",
            String::from_utf8_lossy(&account)
        );
    }

    /// `archive verify` and `audit verify` (the library behind the CLI).
    pub fn verify_logs(&self) {
        let report = archive::verify(&self.data_dir()).unwrap();
        assert!(report.is_ok(), "archive verify: {:#?}", report.chain.problems);
        assert_eq!(report.sealed, report.files_ok);
        let audit = keyserver::audit::verify(&self.data_dir()).unwrap();
        assert!(audit.problems.is_empty(), "audit verify: {:#?}", audit.problems);
    }

    /// The signed audit log's entries, as JSON values.
    pub fn audit_entries(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.data_dir().audit_log())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A blank software card of the `default` stock (GP test keys, KVN 01).
pub fn blank(serial: u32) -> Card {
    crate::issue_support::blank(serial)
}

/// How a card went.
pub struct Issued {
    pub request_id: String,
    pub card: Card,
    pub done: pb::PersoDone,
    pub result: pb::Result,
    pub round_trips: u32,
}

/// Issues `cards` for `job` through `station`, `in_flight` cards at a time
/// (each its own request and Perso stream); returns them in order.
pub async fn issue_all(
    station: &Arc<TestStation>,
    job: &str,
    prefix: &str,
    cards: Vec<Card>,
    in_flight: usize,
) -> Vec<Issued> {
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut set = tokio::task::JoinSet::new();
    for (i, mut card) in cards.into_iter().enumerate() {
        let (station, job, sem) = (station.clone(), job.to_string(), sem.clone());
        let request_id = format!("{prefix}-{i}");
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let run = station
                .issue_with(&request_id, &job, &mut card, |_, _| {})
                .await
                .unwrap();
            (
                i,
                Issued {
                    request_id,
                    card,
                    done: run.done,
                    result: run.result,
                    round_trips: run.round_trips,
                },
            )
        });
    }
    let mut out: Vec<(usize, Issued)> = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, c)| c).collect()
}

/// A CSV for `profile` with `n` records `<prefix>1`…; returns it and each
/// record's PIN when the record carries one.
pub fn job_csv(profile: &str, prefix: &str, n: usize) -> (String, BTreeMap<String, String>) {
    let mut pins = BTreeMap::new();
    let mut s = match profile {
        "employee-badge" => {
            String::from("record_id,given_name,surname,email,employee_id,department,street,city,account\n")
        }
        "piv-escrow" => String::from("record_id,given_name,surname,email,employee_id,department,pin\n"),
        other => panic!("no CSV for profile {other}"),
    };
    for i in 1..=n {
        let id = format!("{prefix}{i}");
        match profile {
            "employee-badge" => s.push_str(&format!(
                "{id},Given{i},Surname{i},p{i}@example.org,{:06},Analytics,{i} St James's Square,London,GB33BUKB2020155555{i:04}\n",
                100_000 + i
            )),
            _ => {
                let pin = format!("{:08}", 24_681_357 + 7 * i);
                s.push_str(&format!(
                    "{id},Given{i},Surname{i},p{i}@example.org,{:05},Research,{pin}\n",
                    50_000 + i
                ));
                pins.insert(id, pin);
            }
        }
    }
    (s, pins)
}
