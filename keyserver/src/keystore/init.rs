//! `keyserver init`: components, the root KEK, every key.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::rngs::OsRng;
use rand::RngCore;
use vsc::secret::{AesKey, AesKeyLen};
use zeroize::Zeroizing;

use super::certs::{self, Ca, P256Signer};
use super::component::{self, check_value_hex, Component, MAX_CUSTODIANS};
use super::store::{Store, FORMAT};
use super::{fsio, names, pairwise, DataDir, KeystoreError, GP_TEST_KEY, GP_TEST_KVN};
use crate::audit::chain::{now_rfc3339, sha256_hex, ChainSigner};
use crate::audit::AuditLog;
use crate::ports::{AuditEvent, AuditOutcome};

/// What `init` is asked for.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// How many custodians share the root KEK (at least 2).
    pub custodians: u8,
    /// Names the TLS server certificate carries besides `localhost` and
    /// `127.0.0.1` (DNS names or IP addresses).
    pub server_names: Vec<String>,
}

/// How components reach their custodians.
pub trait ComponentDelivery {
    /// Called before any key is made, to refuse early (e.g. a file that
    /// already exists, no terminal).
    fn prepare(&mut self, custodians: u8) -> Result<(), KeystoreError>;
    /// Hands one component to its custodian.
    fn deliver(&mut self, keyserver: &str, component: &Component) -> Result<(), KeystoreError>;
    /// Undoes what was delivered after a later failure (removes files).
    fn abandon(&mut self) {}
    /// How the components were delivered, for the audit log.
    fn how(&self) -> String {
        "by the caller".into()
    }
}

/// Writes each component to its own file (`--component-out`): created
/// exclusively, mode 0600, fsynced with its directory.
#[derive(Debug)]
pub struct FileDelivery {
    paths: Vec<PathBuf>,
    written: Vec<PathBuf>,
}

impl FileDelivery {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FileDelivery {
            paths,
            written: Vec::new(),
        }
    }
}

impl ComponentDelivery for FileDelivery {
    fn prepare(&mut self, custodians: u8) -> Result<(), KeystoreError> {
        if self.paths.len() != usize::from(custodians) {
            return Err(KeystoreError::ComponentCount {
                expected: custodians,
                given: self.paths.len(),
            });
        }
        for (i, p) in self.paths.iter().enumerate() {
            if self.paths.iter().skip(i + 1).any(|q| q == p) {
                return Err(KeystoreError::Invalid {
                    what: format!("component file {}", p.display()),
                    reason: "named twice: each custodian needs a file of their own".into(),
                });
            }
            if p.exists() {
                return Err(KeystoreError::Io {
                    op: "refusing to overwrite the component file",
                    path: p.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                });
            }
        }
        Ok(())
    }

    fn deliver(&mut self, keyserver: &str, component: &Component) -> Result<(), KeystoreError> {
        let index = usize::from(component.custodian()).saturating_sub(1);
        let path = self.paths.get(index).ok_or(KeystoreError::ComponentCount {
            expected: component.of(),
            given: self.paths.len(),
        })?;
        let text = component.file_text(keyserver);
        fsio::write_new(path, text.as_bytes(), 0o600).map_err(|source| KeystoreError::Io {
            op: "writing the component file",
            path: path.clone(),
            source,
        })?;
        self.written.push(path.clone());
        Ok(())
    }

    fn how(&self) -> String {
        format!(
            "as files ({})",
            self.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn abandon(&mut self) {
        for p in self.written.drain(..) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Shows each component on the terminal to its custodian alone: the screen
/// is cleared between custodians, and each custodian types the component
/// back to confirm it was recorded correctly.
#[derive(Debug, Default)]
pub struct TerminalDelivery;

const CLEAR: &str = "\x1b[2J\x1b[3J\x1b[H";

fn wait_for_enter(prompt: &str) -> Result<(), KeystoreError> {
    let mut out = std::io::stdout();
    write!(out, "{prompt}")
        .and_then(|()| out.flush())
        .map_err(KeystoreError::Terminal)?;
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(KeystoreError::Terminal)?;
    Ok(())
}

fn clear_screen() -> Result<(), KeystoreError> {
    let mut out = std::io::stdout();
    // Scroll the old text away, then clear screen and scroll-back.
    write!(out, "{}{CLEAR}", "\n".repeat(100))
        .and_then(|()| out.flush())
        .map_err(KeystoreError::Terminal)
}

impl ComponentDelivery for TerminalDelivery {
    fn how(&self) -> String {
        "on the terminal, each confirmed by its custodian".into()
    }

    fn prepare(&mut self, _custodians: u8) -> Result<(), KeystoreError> {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            Ok(())
        } else {
            Err(KeystoreError::NoTerminalToInit)
        }
    }

    fn deliver(&mut self, keyserver: &str, component: &Component) -> Result<(), KeystoreError> {
        let (c, n) = (component.custodian(), component.of());
        loop {
            clear_screen()?;
            wait_for_enter(&format!(
                "Keyserver {keyserver}: custodian {c} of {n}.\n\
                 Everyone else, look away. Custodian {c}, press Enter to see your component."
            ))?;
            let grouped = component.grouped_hex();
            let mut out = std::io::stdout();
            let shown = write!(
                out,
                "\n  Root key component of custodian {c} of {n} (keyserver {keyserver}):\n\n"
            )
            .and_then(|()| {
                for line in grouped.lines() {
                    writeln!(out, "    {line}")?;
                }
                writeln!(
                    out,
                    "\n  Check value: {}\n\n  Write it down and keep it where only you can reach it.",
                    check_value_hex(component.check_value())
                )
            });
            shown.map_err(KeystoreError::Terminal)?;
            wait_for_enter("  Press Enter when you have written it down; the screen will be cleared.")?;
            clear_screen()?;
            let typed = rpassword::prompt_password(format!(
                "Custodian {c}: type your component back to confirm (input hidden): "
            ))
            .map_err(KeystoreError::Terminal)?;
            let typed = Zeroizing::new(typed);
            match Component::parse_hex(c, n, &typed) {
                Ok(back) if back.expose_secret() == component.expose_secret() => {
                    println!("Custodian {c}: confirmed.");
                    wait_for_enter("Press Enter to hand over to the next custodian.")?;
                    clear_screen()?;
                    return Ok(());
                }
                _ => {
                    wait_for_enter(&format!(
                        "That is not the component shown. Press Enter to see it again, custodian {c}."
                    ))?;
                }
            }
        }
    }
}

/// What `init` made.
#[derive(Clone, Debug)]
pub struct InitReport {
    pub data: PathBuf,
    /// The keyserver id (16 hex digits).
    pub id: String,
    pub custodians: u8,
    /// Each custodian's component check value.
    pub component_checks: Vec<String>,
    /// The root KEK's check value.
    pub root_check: String,
    /// SHA-256 of the log-signing key's SubjectPublicKeyInfo.
    pub log_signing_fingerprint: String,
    /// SHA-256 of the issuer CA certificate.
    pub issuer_ca_fingerprint: String,
    /// SHA-256 of the enrollment CA certificate.
    pub enrollment_ca_fingerprint: String,
}

/// The public summary written to `DATA/public/keyserver.json`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct PublicSummary {
    pub id: String,
    pub created: String,
    pub custodians: u8,
    pub log_signing_key_sha256: String,
    pub issuer_ca_sha256: String,
    pub enrollment_ca_sha256: String,
}

fn random_aes256() -> AesKey {
    AesKey::random(&mut OsRng, AesKeyLen::Aes256)
}

fn pkcs8(key: &p256::ecdsa::SigningKey, name: &str) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    key.to_pkcs8_der()
        .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
        .map_err(|e| KeystoreError::Wrap {
            name: name.into(),
            reason: format!("PKCS#8 encoding: {e}"),
        })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeystoreError + 'a {
    move |source| KeystoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a keystore in `data`: see the module documentation. Components go
/// out through `delivery`; the keystore counts as initialized only once all
/// of them were delivered.
pub fn init(
    data: &Path,
    options: &InitOptions,
    delivery: &mut dyn ComponentDelivery,
) -> Result<InitReport, KeystoreError> {
    let n = options.custodians;
    if n < 2 {
        return Err(KeystoreError::TooFewCustodians(n));
    }
    if n > MAX_CUSTODIANS {
        return Err(KeystoreError::TooManyCustodians(n));
    }
    let dd = DataDir::new(data);
    for (path, what) in [
        (dd.manifest(), "an archive manifest"),
        (dd.audit_log(), "an audit log"),
    ] {
        if path.exists() {
            return Err(KeystoreError::NotEmpty { path, what });
        }
    }
    let server_sans = certs::server_sans(&options.server_names)?;
    delivery.prepare(n)?;

    fsio::create_dir_durable(data, 0o750).map_err(io_err("creating the data directory", data))?;
    let ks = dd.keystore();
    fsio::create_dir_durable(&ks, 0o700).map_err(io_err("creating", &ks))?;
    let store = Store::open(&ks)?;
    match store.meta_str("state")?.as_deref() {
        Some("complete") => return Err(KeystoreError::AlreadyInitialized { path: ks }),
        Some(_) => {
            // An init that stopped before every custodian had a component:
            // nothing in it was ever usable.
            for tree in [&store.meta, &store.keys, &store.public] {
                tree.clear().map_err(store.err("clearing an interrupted init"))?;
            }
        }
        None => {}
    }

    let mut id_bytes = [0u8; 8];
    OsRng.fill_bytes(&mut id_bytes);
    let id = hex::encode(id_bytes);
    let created = now_rfc3339();

    let components: Vec<Component> = (1..=n).map(|i| Component::random(i, n)).collect();
    let root = component::combine(&components);

    // Every key, checked.
    let scp03 = [random_aes256(), random_aes256(), random_aes256()];
    let piv_mgmt = random_aes256();
    let archive_kek = random_aes256();
    let records = random_aes256();
    let pool = random_aes256();
    let issuer_key = pairwise::generate_p256()?;
    let log_key = pairwise::generate_p256()?;
    let enrollment_key = pairwise::generate_p256()?;
    let server_key = pairwise::generate_p256()?;

    let issuer_signer = P256Signer::new(issuer_key.clone())?;
    let issuer_der = certs::self_signed_ca(&format!("Cardsmith Issuer CA {id}"), &issuer_signer)?;
    let enrollment_signer = P256Signer::new(enrollment_key.clone())?;
    let enrollment_der = certs::self_signed_ca(&format!("Cardsmith Enrollment CA {id}"), &enrollment_signer)?;
    let enrollment = Ca::new(enrollment_der.clone(), enrollment_signer)?;
    let server_der = enrollment.sign_p256_end_entity(
        &format!("Cardsmith keyserver {id}"),
        &server_key,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        server_sans,
        certs::SERVER_VALIDITY_DAYS,
    )?;
    let signer = Arc::new(ChainSigner::from_key(log_key.clone())?);

    // Stored, still `pending`.
    store.set_meta("state", b"pending")?;
    store.set_meta("format", &FORMAT.to_be_bytes())?;
    store.set_meta("id", id.as_bytes())?;
    store.set_meta("custodians", &[n])?;
    store.set_meta("created", created.as_bytes())?;
    for c in &components {
        store.set_meta(&format!("check/{}", c.custodian()), &c.check_value())?;
    }
    store.set_meta("check/root", &component::check_value(&root))?;
    let server_names = serde_json::to_vec(&options.server_names).unwrap_or_default();
    store.set_meta("server-names", &server_names)?;
    let mut stock = Zeroizing::new(vec![GP_TEST_KVN]);
    for _ in 0..3 {
        stock.extend_from_slice(&GP_TEST_KEY);
    }
    let aes: [(&str, &AesKey); 7] = [
        (names::SCP03_ENC, &scp03[0]),
        (names::SCP03_MAC, &scp03[1]),
        (names::SCP03_DEK, &scp03[2]),
        (names::PIV_MGMT, &piv_mgmt),
        (names::ARCHIVE_KEK, &archive_kek),
        (names::RECORDS, &records),
        (names::POOL, &pool),
    ];
    for (name, key) in aes {
        store.put_key(&root, name, key.expose_secret())?;
    }
    store.put_key(
        &root,
        &format!("{}{}", names::STOCK_PREFIX, names::DEFAULT_STOCK),
        &stock,
    )?;
    for (name, key) in [
        (names::ISSUER_CA, &issuer_key),
        (names::LOG_SIGNING, &log_key),
        (names::ENROLLMENT_CA, &enrollment_key),
        (names::TLS_SERVER, &server_key),
    ] {
        store.put_key(&root, name, &pkcs8(key, name)?)?;
    }
    store.put_public("issuer-ca", &issuer_der)?;
    store.put_public("enrollment-ca", &enrollment_der)?;
    store.put_public("server-cert", &server_der)?;
    store.flush()?;

    // The ceremony.
    for c in &components {
        if let Err(e) = delivery.deliver(&id, c) {
            delivery.abandon();
            return Err(e);
        }
    }

    // Public material, then the keystore counts as initialized.
    let public = dd.public();
    fsio::create_dir_durable(&public, 0o755).map_err(io_err("creating", &public))?;
    let log_public_pem = log_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeystoreError::Wrap {
            name: names::LOG_SIGNING.into(),
            reason: format!("public key PEM: {e}"),
        })?;
    let summary = PublicSummary {
        id: id.clone(),
        created,
        custodians: n,
        log_signing_key_sha256: signer.verifier().fingerprint(),
        issuer_ca_sha256: sha256_hex(&issuer_der),
        enrollment_ca_sha256: sha256_hex(&enrollment_der),
    };
    let summary_json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    for (path, bytes) in [
        (dd.issuer_ca_pem(), certs::cert_pem(&issuer_der).into_bytes()),
        (
            dd.enrollment_ca_pem(),
            certs::cert_pem(&enrollment_der).into_bytes(),
        ),
        (dd.server_cert_pem(), certs::cert_pem(&server_der).into_bytes()),
        (dd.log_signing_key_pem(), log_public_pem.into_bytes()),
        (dd.keyserver_json(), summary_json),
    ] {
        fsio::write_replace(&path, &bytes, 0o644, true).map_err(io_err("writing", &path))?;
    }
    store.set_meta("state", b"complete")?;
    store.flush()?;
    fsio::sync_dir(data).map_err(io_err("syncing", data))?;

    // The audit log's first entries.
    let audit = AuditLog::open(&dd, signer.clone())?;
    let ev = |action: &str, subject: &str, detail: String| AuditEvent {
        actor: "keyserver".into(),
        action: action.into(),
        subject: subject.into(),
        outcome: AuditOutcome::Ok,
        detail,
    };
    audit.append(&ev(
        "custody.init",
        &format!("keystore {id}"),
        format!(
            "root key split among {n} custodians (N of N); component check values {}; root check value {}; \
             components delivered {}",
            components
                .iter()
                .map(|c| format!("{}:{}", c.custodian(), check_value_hex(c.check_value())))
                .collect::<Vec<_>>()
                .join(" "),
            check_value_hex(component::check_value(&root)),
            delivery.how()
        ),
    ))?;
    for (name, what) in [
        (names::SCP03_ENC, "AES-256 random".to_string()),
        (names::SCP03_MAC, "AES-256 random".into()),
        (names::SCP03_DEK, "AES-256 random".into()),
        (names::PIV_MGMT, "AES-256 random".into()),
        (names::ARCHIVE_KEK, "AES-256 random".into()),
        (names::RECORDS, "AES-256 random".into()),
        (names::POOL, "AES-256 random".into()),
        (
            "stock/default",
            "the GlobalPlatform test key set 40..4F, KVN 01 (imported, not generated)".into(),
        ),
        (
            names::ISSUER_CA,
            format!(
                "P-256, pairwise-checked; certificate sha256 {}",
                sha256_hex(&issuer_der)
            ),
        ),
        (
            names::LOG_SIGNING,
            format!(
                "P-256, pairwise-checked; public key sha256 {}",
                signer.verifier().fingerprint()
            ),
        ),
        (
            names::ENROLLMENT_CA,
            format!(
                "P-256, pairwise-checked; certificate sha256 {}",
                sha256_hex(&enrollment_der)
            ),
        ),
        (
            names::TLS_SERVER,
            format!(
                "P-256, pairwise-checked; certificate sha256 {}",
                sha256_hex(&server_der)
            ),
        ),
    ] {
        audit.append(&ev("key.generate", name, what))?;
    }
    drop(audit);

    Ok(InitReport {
        data: data.to_path_buf(),
        id,
        custodians: n,
        component_checks: components
            .iter()
            .map(|c| check_value_hex(c.check_value()))
            .collect(),
        root_check: check_value_hex(component::check_value(&root)),
        log_signing_fingerprint: signer.verifier().fingerprint(),
        issuer_ca_fingerprint: sha256_hex(&issuer_der),
        enrollment_ca_fingerprint: sha256_hex(&enrollment_der),
    })
}
