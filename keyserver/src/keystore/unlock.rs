//! The unlocked keystore: what `keyserver serve` holds after the custodians
//! combined their components.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use vsc::scp03::StaticKeys;
use vsc::secret::{AesKey, SecretBytes};
use zeroize::Zeroizing;

use super::certs::{self, Ca, IssuerCa, P256Signer};
use super::component::{self, check_value_hex, read_component_file, Component, MAX_CUSTODIANS};
use super::derive::{self, Scp03Masters};
use super::pool::{KeyPool, PoolConfig};
use super::store::{Store, FORMAT};
use super::{check_name, names, pairwise, DataDir, KeystoreError};
use crate::archive::Archive;
use crate::audit::chain::{sha256_hex, ChainSigner};
use crate::audit::{self, AuditLog};
use crate::ports::{AuditEvent, AuditOutcome, AuditSink, CertificateIssuer, IssuerKeys, KeyError, KeySet};

/// A station's TLS client identity, made by the enrollment CA.
#[derive(Debug)]
pub struct StationIdentity {
    pub name: String,
    /// The certificate's serial number, hex (for revocation lists).
    pub serial: String,
    pub not_after: time::OffsetDateTime,
    pub cert_pem: String,
    /// The station's private key, PKCS#8 PEM.
    pub key_pem: SecretBytes,
    /// The enrollment CA's certificate, which also certifies the keyserver.
    pub ca_pem: String,
}

/// The keyserver's TLS server identity.
#[derive(Debug)]
pub struct TlsIdentity {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: SecretBytes,
    /// The CA that certifies stations (for client verification) and this
    /// certificate.
    pub ca_pem: String,
}

/// The unlocked keystore. Every key is held in a zeroizing type; `Debug`
/// shows none of them.
pub struct Unlocked {
    data: DataDir,
    id: String,
    store: Store,
    root: AesKey,
    masters: Scp03Masters,
    stocks: RwLock<BTreeMap<String, KeySet>>,
    piv_mgmt: AesKey,
    issuer: IssuerCa,
    archive_kek: AesKey,
    signer: Arc<ChainSigner>,
    enrollment: Ca,
    server_key: SigningKey,
    server_cert_der: Vec<u8>,
    records_key: AesKey,
    pool_key: AesKey,
    audit: Arc<AuditLog>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Unlocked(keyserver {}, {}, [REDACTED keys])",
            self.id,
            self.data.root().display()
        )
    }
}

/// Custody's record of an unlock attempt that failed, written while locked.
fn audit_failure(data: &DataDir, subject: &str, detail: &str) {
    let ev = AuditEvent {
        actor: "keyserver".into(),
        action: "custody.unlock".into(),
        subject: subject.into(),
        outcome: AuditOutcome::Failed,
        detail: detail.into(),
    };
    if let Err(e) = audit::record_while_locked(data, &ev) {
        tracing::error!(error = %e, "a failed unlock could not be recorded for the audit log");
    }
}

/// What the locked keystore says about its custodians.
struct Custody {
    store: Store,
    id: String,
    custodians: u8,
    checks: Vec<[u8; 3]>,
    root_check: [u8; 3],
}

fn open_custody(data: &DataDir) -> Result<Custody, KeystoreError> {
    let path = data.keystore();
    if !path.is_dir() {
        return Err(KeystoreError::NotInitialized {
            path: data.root().to_path_buf(),
        });
    }
    let store = Store::open(&path)?;
    match store.meta_str("state")?.as_deref() {
        Some("complete") => {}
        Some(_) => return Err(KeystoreError::InitInterrupted { path }),
        None => {
            return Err(KeystoreError::NotInitialized {
                path: data.root().to_path_buf(),
            })
        }
    }
    let damaged = |what: &str, reason: &str| KeystoreError::Damaged {
        what: what.into(),
        reason: reason.into(),
    };
    let format = store.meta("format")?.unwrap_or_default();
    if format != FORMAT.to_be_bytes() {
        return Err(damaged("the keystore format", "this keyserver reads format 1"));
    }
    let id = store
        .meta_str("id")?
        .ok_or_else(|| damaged("the keyserver id", "missing"))?;
    let custodians = store
        .meta("custodians")?
        .and_then(|v| v.first().copied())
        .filter(|n| (2..=MAX_CUSTODIANS).contains(n))
        .ok_or_else(|| damaged("the custodian count", "missing or out of range"))?;
    let check = |key: &str| -> Result<[u8; 3], KeystoreError> {
        store
            .meta(key)?
            .and_then(|v| <[u8; 3]>::try_from(v.as_slice()).ok())
            .ok_or_else(|| damaged(key, "missing"))
    };
    let checks = (1..=custodians)
        .map(|i| check(&format!("check/{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let root_check = check("check/root")?;
    Ok(Custody {
        store,
        id,
        custodians,
        checks,
        root_check,
    })
}

impl Custody {
    /// Checks one component against its custodian's check value.
    fn check(&self, data: &DataDir, c: &Component, from: &str) -> Result<(), KeystoreError> {
        let expected = self
            .checks
            .get(usize::from(c.custodian()).saturating_sub(1))
            .copied()
            .unwrap_or_default();
        let given = c.check_value();
        if bool::from(subtle::ConstantTimeEq::ct_eq(&given[..], &expected[..])) {
            return Ok(());
        }
        let e = KeystoreError::WrongComponent {
            custodian: c.custodian(),
            from: from.into(),
            given: check_value_hex(given),
            expected: check_value_hex(expected),
        };
        audit_failure(data, &format!("custodian {}", c.custodian()), &e.to_string());
        Err(e)
    }
}

fn p256_key(store: &Store, root: &AesKey, name: &str) -> Result<SigningKey, KeystoreError> {
    let der = store.get_key(root, name)?;
    let key = SigningKey::from_pkcs8_der(der.expose_secret()).map_err(|e| KeystoreError::Damaged {
        what: name.into(),
        reason: format!("not a P-256 PKCS#8 key: {e}"),
    })?;
    pairwise::check_p256(&key)?;
    Ok(key)
}

fn aes_key(store: &Store, root: &AesKey, name: &str) -> Result<AesKey, KeystoreError> {
    let b = store.get_key(root, name)?;
    AesKey::from_slice(b.expose_secret()).map_err(|e| KeystoreError::Damaged {
        what: name.into(),
        reason: e.to_string(),
    })
}

fn parse_stock(name: &str, bytes: &SecretBytes) -> Result<KeySet, KeystoreError> {
    let damaged = |reason: String| KeystoreError::Damaged {
        what: format!("transport key set {name}"),
        reason,
    };
    let b = bytes.expose_secret();
    let (kvn, keys) = b.split_first().ok_or_else(|| damaged("empty".into()))?;
    if keys.is_empty() || keys.len() % 3 != 0 {
        return Err(damaged(format!("{} key bytes are not three keys", keys.len())));
    }
    let l = keys.len() / 3;
    let k = |i: usize| {
        keys.get(i * l..(i + 1) * l)
            .ok_or_else(|| damaged("short".into()))
            .and_then(|s| AesKey::from_slice(s).map_err(|e| damaged(e.to_string())))
    };
    let keys = StaticKeys::new(k(0)?, k(1)?, k(2)?).map_err(|e| damaged(e.to_string()))?;
    Ok(KeySet { kvn: *kvn, keys })
}

fn encode_stock(set: &KeySet) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(vec![set.kvn]);
    v.extend_from_slice(set.keys.enc().expose_secret());
    v.extend_from_slice(set.keys.mac().expose_secret());
    v.extend_from_slice(set.keys.dek().expose_secret());
    v
}

impl Unlocked {
    /// Unlocks with one component file per custodian (`--unlock FILE`), in
    /// any order.
    pub fn from_component_files(data: &Path, files: &[PathBuf]) -> Result<Self, KeystoreError> {
        let dd = DataDir::new(data);
        let custody = open_custody(&dd)?;
        if files.len() != usize::from(custody.custodians) {
            let e = KeystoreError::ComponentCount {
                expected: custody.custodians,
                given: files.len(),
            };
            audit_failure(&dd, &format!("keystore {}", custody.id), &e.to_string());
            return Err(e);
        }
        let mut by_custodian: BTreeMap<u8, (PathBuf, Component)> = BTreeMap::new();
        for f in files {
            let read = read_component_file(f).map_err(KeystoreError::from);
            let file = match read {
                Ok(file) => file,
                Err(e) => {
                    audit_failure(&dd, &format!("component file {}", f.display()), &e.to_string());
                    return Err(e);
                }
            };
            let c = file.component;
            let refuse = |e: KeystoreError| {
                audit_failure(&dd, &format!("custodian {}", c.custodian()), &e.to_string());
                Err(e)
            };
            if file.keyserver != custody.id {
                return refuse(KeystoreError::OtherKeyserver {
                    file: f.clone(),
                    found: file.keyserver,
                    expected: custody.id.clone(),
                });
            }
            if c.of() != custody.custodians {
                return refuse(KeystoreError::CustodianCountMismatch {
                    file: f.clone(),
                    of: c.of(),
                    expected: custody.custodians,
                });
            }
            if let Some((other, _)) = by_custodian.get(&c.custodian()) {
                return refuse(KeystoreError::DuplicateCustodian {
                    custodian: c.custodian(),
                    files: vec![other.clone(), f.clone()],
                });
            }
            custody.check(&dd, &c, &format!(" (file {})", f.display()))?;
            by_custodian.insert(c.custodian(), (f.clone(), c));
        }
        let components: Vec<Component> = by_custodian.into_values().map(|(_, c)| c).collect();
        Self::finish(dd, custody, &components, "from component files")
    }

    /// Unlocks by asking each custodian for their component on the terminal
    /// (input hidden; three tries each).
    pub fn from_prompt(data: &Path) -> Result<Self, KeystoreError> {
        let dd = DataDir::new(data);
        let custody = open_custody(&dd)?;
        if !std::io::stdin().is_terminal() {
            return Err(KeystoreError::NoTerminalToUnlock);
        }
        let n = custody.custodians;
        let mut components = Vec::with_capacity(usize::from(n));
        for i in 1..=n {
            let mut tries = 0;
            loop {
                tries += 1;
                let typed = Zeroizing::new(
                    rpassword::prompt_password(format!(
                        "Keyserver {}: custodian {i} of {n}, enter your component (64 hex digits, input hidden): ",
                        custody.id
                    ))
                    .map_err(KeystoreError::Terminal)?,
                );
                let checked = Component::parse_hex(i, n, &typed)
                    .map_err(KeystoreError::from)
                    .and_then(|c| custody.check(&dd, &c, " (typed)").map(|()| c));
                match checked {
                    Ok(c) => {
                        eprintln!(
                            "Custodian {i}: check value {} matches.",
                            check_value_hex(c.check_value())
                        );
                        components.push(c);
                        break;
                    }
                    Err(e) if tries < 3 => eprintln!("{e}. Try again."),
                    Err(e) => return Err(e),
                }
            }
        }
        Self::finish(dd, custody, &components, "typed on the terminal")
    }

    /// Unlocks with components in hand (custodian numbers taken from them).
    pub fn from_components(data: &Path, components: &[Component]) -> Result<Self, KeystoreError> {
        let dd = DataDir::new(data);
        let custody = open_custody(&dd)?;
        if components.len() != usize::from(custody.custodians) {
            let e = KeystoreError::ComponentCount {
                expected: custody.custodians,
                given: components.len(),
            };
            audit_failure(&dd, &format!("keystore {}", custody.id), &e.to_string());
            return Err(e);
        }
        let mut seen = Vec::new();
        for c in components {
            if c.custodian() == 0 || c.custodian() > custody.custodians || seen.contains(&c.custodian()) {
                let e = KeystoreError::Invalid {
                    what: format!("custodian {}'s component", c.custodian()),
                    reason: format!("given twice or not one of custodians 1..={}", custody.custodians),
                };
                audit_failure(&dd, &format!("custodian {}", c.custodian()), &e.to_string());
                return Err(e);
            }
            seen.push(c.custodian());
            custody.check(&dd, c, "")?;
        }
        Self::finish(dd, custody, components, "from components given to the library")
    }

    fn finish(
        dd: DataDir,
        custody: Custody,
        components: &[Component],
        how: &str,
    ) -> Result<Self, KeystoreError> {
        let root = component::combine(components);
        let given = component::check_value(&root);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&given[..], &custody.root_check[..])) {
            let e = KeystoreError::RootMismatch {
                given: check_value_hex(given),
                expected: check_value_hex(custody.root_check),
            };
            audit_failure(&dd, &format!("keystore {}", custody.id), &e.to_string());
            return Err(e);
        }
        let unlocked = Self::unwrap_all(&dd, custody, root);
        let unlocked = match unlocked {
            Ok(u) => u,
            Err(e) => {
                audit_failure(&dd, "keystore", &e.to_string());
                return Err(e);
            }
        };
        unlocked.audit.append(&AuditEvent {
            actor: "keyserver".into(),
            action: "custody.unlock".into(),
            subject: format!("keystore {}", unlocked.id),
            outcome: AuditOutcome::Ok,
            detail: format!("{} of {} components, {how}", components.len(), components.len()),
        })?;
        tracing::info!(keyserver = %unlocked.id, "keystore unlocked");
        Ok(unlocked)
    }

    fn unwrap_all(dd: &DataDir, custody: Custody, root: AesKey) -> Result<Self, KeystoreError> {
        let store = custody.store;
        let masters = Scp03Masters {
            enc: aes_key(&store, &root, names::SCP03_ENC)?,
            mac: aes_key(&store, &root, names::SCP03_MAC)?,
            dek: aes_key(&store, &root, names::SCP03_DEK)?,
        };
        let mut stocks = BTreeMap::new();
        for name in store.key_names()? {
            if let Some(stock) = name.strip_prefix(names::STOCK_PREFIX) {
                let set = parse_stock(stock, &store.get_key(&root, &name)?)?;
                stocks.insert(stock.to_string(), set);
            }
        }
        let issuer_key = p256_key(&store, &root, names::ISSUER_CA)?;
        let issuer = IssuerCa::new(Ca::new(
            store.get_public("issuer-ca")?,
            P256Signer::new(issuer_key)?,
        )?);
        let enrollment_key = p256_key(&store, &root, names::ENROLLMENT_CA)?;
        let enrollment = Ca::new(
            store.get_public("enrollment-ca")?,
            P256Signer::new(enrollment_key)?,
        )?;
        let signer = Arc::new(ChainSigner::from_key(p256_key(
            &store,
            &root,
            names::LOG_SIGNING,
        )?)?);
        let audit = Arc::new(AuditLog::open(dd, signer.clone())?);
        Ok(Unlocked {
            data: dd.clone(),
            id: custody.id,
            masters,
            stocks: RwLock::new(stocks),
            piv_mgmt: aes_key(&store, &root, names::PIV_MGMT)?,
            issuer,
            archive_kek: aes_key(&store, &root, names::ARCHIVE_KEK)?,
            signer,
            enrollment,
            server_key: p256_key(&store, &root, names::TLS_SERVER)?,
            server_cert_der: store.get_public("server-cert")?,
            records_key: aes_key(&store, &root, names::RECORDS)?,
            pool_key: aes_key(&store, &root, names::POOL)?,
            audit,
            store,
            root,
        })
    }

    /// The keyserver id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// The audit log (custody writes to it too).
    pub fn audit(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// The key that signs the archive manifest and the audit log.
    pub fn signer(&self) -> Arc<ChainSigner> {
        self.signer.clone()
    }

    /// Opens the archive (`DATA/archive`) for sealing.
    pub fn open_archive(&self) -> Result<Archive, KeystoreError> {
        Ok(Archive::open(&self.data, self.signer.clone())?)
    }

    /// Starts the RSA key pool with its background refill.
    pub fn key_pool(&self, config: PoolConfig) -> Result<KeyPool, KeystoreError> {
        let tree = self
            .store
            .db
            .open_tree("rsa-pool")
            .map_err(self.store.err("opening the RSA key pool"))?;
        KeyPool::start(
            tree,
            self.store.path().to_path_buf(),
            self.pool_key.clone(),
            self.audit.clone(),
            config,
        )
    }

    /// The AES-256 key the jobs store encrypts record fields with.
    pub fn records_key(&self) -> &AesKey {
        &self.records_key
    }

    /// The issuer CA certificate, PEM.
    pub fn issuer_ca_pem(&self) -> &str {
        self.issuer.ca().cert_pem()
    }

    /// The enrollment CA certificate, PEM: stations' client certificates are
    /// verified against it.
    pub fn enrollment_ca_pem(&self) -> &str {
        self.enrollment.cert_pem()
    }

    /// The keyserver's TLS server certificate and key.
    pub fn server_identity(&self) -> Result<TlsIdentity, KeystoreError> {
        let key_pem = self
            .server_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeystoreError::Wrap {
                name: names::TLS_SERVER.into(),
                reason: format!("PEM encoding: {e}"),
            })?;
        Ok(TlsIdentity {
            cert_pem: certs::cert_pem(&self.server_cert_der),
            key_pem: SecretBytes::from_slice(key_pem.as_bytes()),
            ca_pem: self.enrollment.cert_pem().to_string(),
        })
    }

    /// A new key and certificate for station `name` (TLS client, CN = name),
    /// from the enrollment CA. The key is generated here, pairwise-checked,
    /// and not kept.
    pub fn issue_station_identity(&self, name: &str) -> Result<StationIdentity, KeystoreError> {
        check_name("station", name)?;
        let key = pairwise::generate_p256()?;
        let der = self.enrollment.sign_p256_end_entity(
            name,
            &key,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            Vec::new(),
            certs::STATION_VALIDITY_DAYS,
        )?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|e| KeyError::Certificate {
            subject: name.into(),
            reason: e.to_string(),
        })?;
        let serial = hex::encode(x509.raw_serial());
        let not_after = x509.validity().not_after.to_datetime();
        let key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeystoreError::Wrap {
                name: format!("station {name}'s key"),
                reason: format!("PEM encoding: {e}"),
            })?;
        self.audit.append(&AuditEvent {
            actor: "keyserver".into(),
            action: "key.generate".into(),
            subject: format!("station {name}"),
            outcome: AuditOutcome::Ok,
            detail: format!(
                "P-256 TLS client key, pairwise-checked, handed out and not kept; certificate serial {serial}, \
                 sha256 {}, valid until {not_after}",
                sha256_hex(&der)
            ),
        })?;
        Ok(StationIdentity {
            name: name.into(),
            serial,
            not_after,
            cert_pem: certs::cert_pem(&der),
            key_pem: SecretBytes::from_slice(key_pem.as_bytes()),
            ca_pem: self.enrollment.cert_pem().to_string(),
        })
    }

    /// The card stocks with a transport key set.
    pub fn stocks(&self) -> Vec<String> {
        self.stocks
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers the transport key set of a new card stock (wrapped, stored
    /// durably, audited). An existing stock is never replaced.
    pub fn add_stock(&self, name: &str, set: &KeySet) -> Result<(), KeystoreError> {
        check_name("stock", name)?;
        let key_name = format!("{}{name}", names::STOCK_PREFIX);
        let mut stocks = self.stocks.write().map_err(|_| KeystoreError::Invalid {
            what: format!("stock {name}"),
            reason: "the stock table is unusable after a panic".into(),
        })?;
        if stocks.contains_key(name) {
            return Err(KeystoreError::Invalid {
                what: format!("stock {name}"),
                reason: "it exists already; stocks are never replaced".into(),
            });
        }
        self.store.put_key(&self.root, &key_name, &encode_stock(set))?;
        self.store.flush()?;
        stocks.insert(name.to_string(), set.clone());
        self.audit.append(&AuditEvent {
            actor: "keyserver".into(),
            action: "key.import".into(),
            subject: key_name,
            outcome: AuditOutcome::Ok,
            detail: format!(
                "transport key set of card stock {name}: KVN {:02X}, {}-bit keys",
                set.kvn,
                set.keys.key_len().bytes() * 8
            ),
        })?;
        Ok(())
    }

    /// Every key's bytes this keystore holds, for tests that scan files and
    /// logs for leaks. Only in the crate's own tests and with the
    /// `leak-scan` feature (which the integration tests turn on); a build
    /// that serves never has it.
    #[cfg(any(test, feature = "leak-scan"))]
    pub fn all_key_material(&self) -> Vec<(String, Vec<u8>)> {
        use p256::elliptic_curve::PrimeField;
        let mut v = vec![
            ("root".to_string(), self.root.expose_secret().to_vec()),
            (names::SCP03_ENC.into(), self.masters.enc.expose_secret().to_vec()),
            (names::SCP03_MAC.into(), self.masters.mac.expose_secret().to_vec()),
            (names::SCP03_DEK.into(), self.masters.dek.expose_secret().to_vec()),
            (names::PIV_MGMT.into(), self.piv_mgmt.expose_secret().to_vec()),
            (
                names::ARCHIVE_KEK.into(),
                self.archive_kek.expose_secret().to_vec(),
            ),
            (names::RECORDS.into(), self.records_key.expose_secret().to_vec()),
            (names::POOL.into(), self.pool_key.expose_secret().to_vec()),
        ];
        for (name, key) in [
            (names::ISSUER_CA, self.issuer.ca().signer_key()),
            (names::ENROLLMENT_CA, self.enrollment.signer_key()),
            (names::TLS_SERVER, &self.server_key),
        ] {
            v.push((name.into(), key.as_nonzero_scalar().to_repr().to_vec()));
        }
        v.push((names::LOG_SIGNING.into(), self.signer.secret_scalar_for_tests()));
        v
    }
}

impl IssuerKeys for Unlocked {
    fn transport_keys(&self, stock: &str) -> Result<KeySet, KeyError> {
        self.stocks
            .read()
            .ok()
            .and_then(|s| s.get(stock).cloned())
            .ok_or_else(|| KeyError::UnknownStock(stock.into()))
    }

    fn card_keys(&self, kdd: &[u8; 10]) -> Result<KeySet, KeyError> {
        derive::card_keys(&self.masters, kdd)
    }

    fn management_key(&self, serial: u32) -> Result<AesKey, KeyError> {
        derive::management_key(&self.piv_mgmt, serial)
    }

    fn issuer(&self) -> &dyn CertificateIssuer {
        &self.issuer
    }

    fn archive_kek(&self) -> (&str, &AesKey) {
        (names::ARCHIVE_KEK, &self.archive_kek)
    }
}

/// Audit sink access for the service: the same log custody writes to.
impl AuditSink for Unlocked {
    fn record(&self, event: AuditEvent) -> Result<(), crate::ports::AuditError> {
        self.audit.record(event)
    }

    fn record_all(&self, events: Vec<AuditEvent>) -> Result<(), crate::ports::AuditError> {
        self.audit.record_all(events)
    }
}

/// The service's TLS: the keyserver's server identity, the enrollment CA
/// that certifies stations, and new station identities from it.
impl crate::service::Authority for Unlocked {
    fn server_identity(&self) -> Result<crate::service::ServerIdentity, crate::service::AuthorityError> {
        let id = Unlocked::server_identity(self)
            .map_err(|e| crate::service::AuthorityError::Server(e.to_string()))?;
        Ok(crate::service::ServerIdentity {
            cert_pem: id.cert_pem,
            key_pem: id.key_pem,
        })
    }

    fn client_ca_pem(&self) -> Result<String, crate::service::AuthorityError> {
        Ok(self.enrollment_ca_pem().to_string())
    }

    fn issue_station_identity(
        &self,
        name: &str,
    ) -> Result<crate::service::StationIdentity, crate::service::AuthorityError> {
        let id = Unlocked::issue_station_identity(self, name).map_err(|e| {
            crate::service::AuthorityError::Station {
                station: name.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(crate::service::StationIdentity {
            cert_pem: id.cert_pem,
            key_pem: id.key_pem,
            ca_pem: id.ca_pem,
        })
    }
}
