//! In-memory stand-ins for the ports and an in-process station, for tests
//! and benchmarks of anything that drives a [`CardEngine`]. Nothing here is
//! durable or meant for production: keys are random per instance and live
//! in memory, the escrow forgets everything when dropped.
//!
//! - [`TestKeys`]: transport keys (the GP test keys, KVN 01, stock
//!   `default`), card keys and management keys diversified from random
//!   masters, a P-256 test CA ([`TestCa`]), an archive KEK.
//! - [`MemoryEscrow`], [`MemoryAudit`]: record what they are given, can be
//!   told to fail, and write to a shared [`EventLog`] to prove ordering.
//! - [`RsaPool`]: RSA-2048 keys made in advance, each handed out once;
//!   [`GeneratedRsa`]: generation on the spot.
//! - [`run_script`]: a transparent station over any [`CardTransport`];
//!   [`issue_card`]: one card from start to finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::OsRng;
use rand::RngCore;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use vsc::card::blank::GP_TEST_KEY;
use vsc::file::Uid;
use vsc::scp03::StaticKeys;
use vsc::secret::AesKey;
use vsc::transport::{CardTransport, ResetKind, TransportError};

use crate::ports::{
    AuditError, AuditEvent, AuditSink, CardEngine, CardOutcome, CardRequest, CertificateIssuer,
    CertificateRequest, DnAttribute, Escrow, EscrowError, ExtendedKeyUsage, Finished, IssuerKeys, KeyError,
    KeySet, KeyUsage, Next, RsaKeySource, SealReceipt, SealRequest, SubjectAltName,
};
use crate::script::{Reply, Script, Step};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A shared, ordered log of what happened where (`"escrow.seal 00001079"`,
/// `"test: script returned"`), to prove the order of events across parts.
#[derive(Clone, Debug, Default)]
pub struct EventLog(Arc<Mutex<Vec<String>>>);

impl EventLog {
    pub fn push(&self, event: impl Into<String>) {
        lock(&self.0).push(event.into());
    }

    pub fn events(&self) -> Vec<String> {
        lock(&self.0).clone()
    }
}

/// A P-256 test CA made with rcgen.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Result<TestCa, KeyError> {
        let err = |e: rcgen::Error| KeyError::Certificate {
            subject: "the test CA".into(),
            reason: e.to_string(),
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Cardsmith Test Issuer CA");
        dn.push(DnType::OrganizationName, "Cardsmith tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(TestCa {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }
}

fn oid_arcs(dotted: &str) -> Option<Vec<u64>> {
    dotted.split('.').map(|a| a.parse().ok()).collect()
}

impl CertificateIssuer for TestCa {
    fn ca_certificate_der(&self) -> &[u8] {
        &self.der
    }

    fn issue(&self, request: &CertificateRequest) -> Result<Vec<u8>, KeyError> {
        let subject_text = request
            .subject
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let err = |reason: String| KeyError::Certificate {
            subject: subject_text.clone(),
            reason,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (attr, value) in &request.subject {
            match attr {
                DnAttribute::CommonName => dn.push(DnType::CommonName, value.as_str()),
                DnAttribute::Organization => dn.push(DnType::OrganizationName, value.as_str()),
                DnAttribute::OrganizationalUnit => dn.push(DnType::OrganizationalUnitName, value.as_str()),
                DnAttribute::Country => dn.push(DnType::CountryName, value.as_str()),
                DnAttribute::SerialNumber => dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), value.as_str()),
                DnAttribute::EmailAddress => dn.push(
                    DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
                    DnValue::Ia5String(
                        value
                            .as_str()
                            .try_into()
                            .map_err(|_| err("e-mail is not IA5".into()))?,
                    ),
                ),
            }
        }
        params.distinguished_name = dn;
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        let mut serial = [0u8; 16];
        OsRng.fill_bytes(&mut serial);
        serial[0] &= 0x7F;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = request
            .key_usage
            .iter()
            .map(|u| match u {
                KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
                KeyUsage::NonRepudiation => KeyUsagePurpose::ContentCommitment,
                KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
                KeyUsage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
                KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            })
            .collect();
        for e in &request.extended_key_usage {
            params.extended_key_usages.push(match e {
                ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
                ExtendedKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
                ExtendedKeyUsage::SmartcardLogon => {
                    ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 2])
                }
                ExtendedKeyUsage::Other(oid) => ExtendedKeyUsagePurpose::Other(
                    oid_arcs(oid).ok_or_else(|| err(format!("bad OID {oid}")))?,
                ),
            });
        }
        for san in &request.subject_alt_names {
            let ia5 = |s: &str| s.try_into().map_err(|_| err(format!("{s:?} is not IA5")));
            params.subject_alt_names.push(match san {
                SubjectAltName::Email(s) => SanType::Rfc822Name(ia5(s)?),
                SubjectAltName::Dns(s) => SanType::DnsName(ia5(s)?),
                SubjectAltName::Uri(s) => SanType::URI(ia5(s)?),
            });
        }
        let spki = SubjectPublicKeyInfo::from_der(&request.subject_public_key_info)
            .map_err(|e| err(format!("the public key: {e}")))?;
        let cert = params
            .signed_by(&spki, &self.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

/// Test custody: random masters, the GP test keys as the transport set of
/// stock `default`.
pub struct TestKeys {
    stocks: BTreeMap<String, KeySet>,
    scp_master: [u8; 32],
    management_master: [u8; 32],
    card_kvn: u8,
    ca: TestCa,
    kek_id: String,
    kek: AesKey,
}

impl TestKeys {
    /// The KVN of the card key sets [`TestKeys::card_keys`] derives.
    pub const CARD_KVN: u8 = 0x30;

    pub fn new() -> Result<TestKeys, KeyError> {
        let gp = || AesKey::from_slice(&GP_TEST_KEY).map_err(|e| KeyError::Store(e.to_string()));
        let transport = KeySet {
            kvn: 0x01,
            keys: StaticKeys::new(gp()?, gp()?, gp()?).map_err(|e| KeyError::Store(e.to_string()))?,
        };
        let random = || {
            let mut k = [0u8; 32];
            OsRng.fill_bytes(&mut k);
            k
        };
        let (scp_master, management_master, kek) = (random(), random(), random());
        Ok(TestKeys {
            stocks: BTreeMap::from([("default".to_string(), transport)]),
            scp_master,
            management_master,
            card_kvn: Self::CARD_KVN,
            ca: TestCa::new()?,
            kek_id: "archive-kek/test".into(),
            kek: AesKey::from_slice(&kek).map_err(|e| KeyError::Store(e.to_string()))?,
        })
    }

    /// Adds (or replaces) a stock's transport key set.
    pub fn with_stock(mut self, stock: &str, keys: KeySet) -> Self {
        self.stocks.insert(stock.to_string(), keys);
        self
    }

    fn derive(master: &[u8; 32], label: &[u8], context: &[u8], len: usize) -> Result<AesKey, KeyError> {
        let mut h = Sha256::new();
        h.update(master);
        h.update(label);
        h.update(context);
        let out = zeroize::Zeroizing::new(h.finalize().to_vec());
        let key = out.get(..len).ok_or_else(|| KeyError::Derivation {
            what: "test key",
            reason: "too long".into(),
        })?;
        AesKey::from_slice(key).map_err(|e| KeyError::Derivation {
            what: "test key",
            reason: e.to_string(),
        })
    }
}

impl IssuerKeys for TestKeys {
    fn transport_keys(&self, stock: &str) -> Result<KeySet, KeyError> {
        self.stocks
            .get(stock)
            .cloned()
            .ok_or_else(|| KeyError::UnknownStock(stock.to_string()))
    }

    fn card_keys(&self, kdd: &[u8; 10]) -> Result<KeySet, KeyError> {
        let k = |label: &[u8]| Self::derive(&self.scp_master, label, kdd, 16);
        let keys = StaticKeys::new(k(b"enc")?, k(b"mac")?, k(b"dek")?).map_err(|e| KeyError::Derivation {
            what: "card keys",
            reason: e.to_string(),
        })?;
        Ok(KeySet {
            kvn: self.card_kvn,
            keys,
        })
    }

    fn management_key(&self, serial: u32) -> Result<AesKey, KeyError> {
        Self::derive(&self.management_master, b"piv-9b", &serial.to_be_bytes(), 24)
    }

    fn issuer(&self) -> &dyn CertificateIssuer {
        &self.ca
    }

    fn archive_kek(&self) -> (&str, &AesKey) {
        (&self.kek_id, &self.kek)
    }
}

/// A master VSC the [`MemoryEscrow`] sealed.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub serial: u32,
    pub uid: Uid,
    pub job: String,
    pub record_id: String,
    pub bytes: Vec<u8>,
    pub receipt: SealReceipt,
}

#[derive(Default)]
struct EscrowState {
    sealed: Vec<Sealed>,
    outcomes: Vec<(u32, Uid, CardOutcome)>,
}

/// An escrow in memory.
#[derive(Default)]
pub struct MemoryEscrow {
    state: Mutex<EscrowState>,
    fail_seal: AtomicBool,
    fail_record: AtomicBool,
    log: EventLog,
}

impl MemoryEscrow {
    pub fn new(log: EventLog) -> Self {
        MemoryEscrow {
            log,
            ..Default::default()
        }
    }

    /// Makes `seal` fail (as a full disk would) until told otherwise.
    pub fn fail_seal(&self, fail: bool) {
        self.fail_seal.store(fail, Ordering::SeqCst);
    }

    /// Makes `record` fail until told otherwise.
    pub fn fail_record(&self, fail: bool) {
        self.fail_record.store(fail, Ordering::SeqCst);
    }

    pub fn sealed(&self) -> Vec<Sealed> {
        lock(&self.state).sealed.clone()
    }

    pub fn outcomes(&self) -> Vec<(u32, Uid, CardOutcome)> {
        lock(&self.state).outcomes.clone()
    }
}

impl Escrow for MemoryEscrow {
    fn seal(&self, request: &SealRequest<'_>) -> Result<SealReceipt, EscrowError> {
        if self.fail_seal.load(Ordering::SeqCst) {
            self.log.push(format!("escrow.seal-failed {:08}", request.serial));
            return Err(EscrowError::Seal {
                serial: request.serial,
                reason: "the test escrow was told to fail".into(),
            });
        }
        let mut state = lock(&self.state);
        let receipt = SealReceipt {
            entry: u64::try_from(state.sealed.len()).unwrap_or(u64::MAX),
            sha256: hex::encode(Sha256::digest(request.bytes)),
        };
        state.sealed.push(Sealed {
            serial: request.serial,
            uid: request.uid,
            job: request.job.to_string(),
            record_id: request.record_id.to_string(),
            bytes: request.bytes.to_vec(),
            receipt: receipt.clone(),
        });
        self.log.push(format!("escrow.seal {:08}", request.serial));
        Ok(receipt)
    }

    fn record(&self, serial: u32, uid: Uid, outcome: &CardOutcome) -> Result<(), EscrowError> {
        if self.fail_record.load(Ordering::SeqCst) {
            return Err(EscrowError::Record {
                serial,
                reason: "the test escrow was told to fail".into(),
            });
        }
        let mut state = lock(&self.state);
        if !state.sealed.iter().any(|s| s.serial == serial && s.uid == uid) {
            return Err(EscrowError::Record {
                serial,
                reason: "no such sealed master VSC".into(),
            });
        }
        state.outcomes.push((serial, uid, outcome.clone()));
        let what = match outcome {
            CardOutcome::Issued => "issued",
            CardOutcome::Void { .. } => "void",
        };
        self.log.push(format!("escrow.{what} {serial:08}"));
        Ok(())
    }
}

/// An audit log in memory.
#[derive(Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
    fail: AtomicBool,
}

impl MemoryAudit {
    pub fn events(&self) -> Vec<AuditEvent> {
        lock(&self.events).clone()
    }

    /// The events with this action.
    pub fn actions(&self, action: &str) -> Vec<AuditEvent> {
        self.events().into_iter().filter(|e| e.action == action).collect()
    }

    pub fn fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuditError {
                action: event.action,
                subject: event.subject,
                reason: "the test audit log was told to fail".into(),
            });
        }
        lock(&self.events).push(event);
        Ok(())
    }
}

/// RSA-2048 generated on the spot (slow: tenths of a second per key).
pub struct GeneratedRsa;

impl RsaKeySource for GeneratedRsa {
    fn rsa2048(&self) -> Result<rsa::RsaPrivateKey, KeyError> {
        rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| KeyError::Generation(e.to_string()))
    }
}

/// RSA-2048 keys made in advance; each is handed out once.
#[derive(Default)]
pub struct RsaPool {
    keys: Mutex<Vec<rsa::RsaPrivateKey>>,
}

impl RsaPool {
    /// A pool of `n` new keys.
    pub fn generate(n: usize) -> Result<RsaPool, KeyError> {
        let keys = (0..n)
            .map(|_| GeneratedRsa.rsa2048())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RsaPool {
            keys: Mutex::new(keys),
        })
    }

    /// A pool of these keys.
    pub fn from_keys(keys: Vec<rsa::RsaPrivateKey>) -> RsaPool {
        RsaPool {
            keys: Mutex::new(keys),
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.keys).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RsaKeySource for RsaPool {
    fn rsa2048(&self) -> Result<rsa::RsaPrivateKey, KeyError> {
        lock(&self.keys)
            .pop()
            .ok_or_else(|| KeyError::Generation("the RSA key pool is empty".into()))
    }
}

/// A transparent station: runs each step on `card` in order, records every
/// response, stops at the first status word the step does not expect; a
/// reset step resets the card and records its ATR (and an empty response).
/// A transport failure is reported as a removed card.
pub fn run_script(card: &mut dyn CardTransport, script: &Script) -> Reply {
    let mut reply = Reply::default();
    for (i, step) in script.steps.iter().enumerate() {
        match step {
            Step::Apdu { command, expect, .. } => {
                let response = match card.transmit(command) {
                    Ok(r) => r,
                    Err(TransportError::CardRemoved) | Err(_) => {
                        reply.card_removed = true;
                        return reply;
                    }
                };
                let sw = match response.as_slice() {
                    [.., a, b] => u16::from_be_bytes([*a, *b]),
                    _ => 0,
                };
                reply.responses.push(response);
                if !expect.iter().any(|p| p.matches(sw)) {
                    reply.stopped_at = Some(i);
                    return reply;
                }
            }
            Step::Reset { cold } => {
                let kind = if *cold { ResetKind::Cold } else { ResetKind::Warm };
                match card.reset(kind) {
                    Ok(atr) => {
                        reply.atrs_after_reset.push(atr);
                        reply.responses.push(Vec::new());
                    }
                    Err(_) => {
                        reply.card_removed = true;
                        return reply;
                    }
                }
            }
        }
    }
    reply
}

/// Issues one card: starts it, runs every script on `card` through
/// [`run_script`], passes each reply through `tamper` (round trip number
/// from 1, the reply) before the engine sees it, until the engine is done.
pub fn issue_card(
    engine: &dyn CardEngine,
    request: CardRequest,
    card: &mut dyn CardTransport,
    mut tamper: impl FnMut(u32, &mut Reply),
) -> Finished {
    let (mut session, mut script) = match engine.start(request) {
        Ok(s) => s,
        Err(finished) => return finished,
    };
    let mut round = 1;
    loop {
        let mut reply = run_script(card, &script);
        tamper(round, &mut reply);
        match session.on_reply(reply) {
            Next::Script(next) => {
                script = next;
                round += 1;
            }
            Next::Done(finished) => return finished,
        }
    }
}
