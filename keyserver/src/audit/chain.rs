//! The signed hash chain behind the archive manifest and the audit log.
//!
//! A chain is a JSON-lines file, append-only. Every line is one entry:
//!
//! ```text
//! {"seq":7,"time":"2025-01-02T03:04:05.678Z", …body fields…,"prev":"<64 hex>","sig":"<base64>"}
//! ```
//!
//! - `seq` counts from 1 without gaps.
//! - `prev` is the SHA-256 (hex) of the previous line's exact bytes
//!   (without its newline); the first entry's `prev` is 64 zeros.
//! - `sig` is an ECDSA P-256 / SHA-256 signature, fixed 64-byte `r ‖ s`,
//!   standard base64, over `domain ‖ 0x0A ‖ canonical`, where `canonical` is
//!   the line itself without the `sig` field (the same serialization,
//!   fields in the order shown) and `domain` names the log
//!   (`cardsmith/archive-manifest/v1`, `cardsmith/audit-log/v1`), so an entry
//!   of one log cannot be passed off as an entry of the other.
//! - A line must be exactly the canonical serialization of what it says
//!   (`serde_json`, no extra whitespace or fields): a verifier re-serializes
//!   it and compares bytes.
//!
//! Beside the log, a **head** file (`<name>.head`) holds the last entry's
//! `seq` and hash, signed (domain `…/head`). It is rewritten after each
//! group commit and may lag behind the log after a crash, but it never runs
//! ahead: a log shorter than its head lost entries from its end, which the
//! chain alone could not show.
//!
//! # Group commit
//!
//! [`ChainLog::append`] hands the entry to one committer thread and blocks
//! until the entry is durable. The committer takes every request waiting,
//! fsyncs the directories the requests name (the archive's `vsc/` folder,
//! where sealed files wait under temporary names), writes all their lines
//! with one `write`, fsyncs the log once, gives the files their names
//! ([`ChainLog::append_publishing`]) and fsyncs their folder once, and only
//! then answers them all. A crash leaves no file under its final name
//! without its entry; a file whose entry is durable but whose name is not
//! yet is named when the archive is opened again. While one batch is being fsynced the next one
//! gathers, so under load a batch holds many entries for the price of one
//! fsync.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keystore::certs::P256Signer;
use crate::keystore::fsio;
use crate::ports::KeyError;

/// `prev` of the first entry.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line a chain accepts (entries are far smaller).
pub const MAX_LINE: usize = 64 * 1024;

/// Most entries in one group commit.
const MAX_BATCH: usize = 4096;

/// The head is rewritten at most this often (and when the log closes).
const HEAD_INTERVAL: Duration = Duration::from_millis(200);

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// A time as RFC 3339 UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// SHA-256, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn signed_message(domain: &str, canonical: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 1 + canonical.len());
    m.extend_from_slice(domain.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(canonical);
    m
}

/// The key that signs chain entries (the keystore's `log-signing-key`),
/// held as a [`P256Signer`]; `Debug` shows only the public fingerprint.
pub struct ChainSigner {
    key: P256Signer,
    verifier: ChainVerifier,
}

impl ChainSigner {
    /// From the key's PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_der(der).map_err(|e| {
            KeyError::Generation(format!("the log-signing key is not a P-256 PKCS#8 key: {e}"))
        })?;
        Self::from_key(key)
    }

    /// From the key itself.
    pub fn from_key(key: SigningKey) -> Result<Self, KeyError> {
        let verifier = ChainVerifier::from_key(*key.verifying_key());
        Ok(ChainSigner {
            key: P256Signer::new(key)?,
            verifier,
        })
    }

    #[cfg(any(test, feature = "leak-scan"))]
    pub(crate) fn secret_scalar_for_tests(&self) -> Vec<u8> {
        self.key.key().to_bytes().to_vec()
    }

    /// The public half.
    pub fn verifier(&self) -> &ChainVerifier {
        &self.verifier
    }

    /// The base64 signature of `canonical` in `domain`.
    pub fn sign(&self, domain: &str, canonical: &[u8]) -> String {
        let msg = signed_message(domain, canonical);
        let sig = match Signature::from_der(&self.key.sign_der(&msg)) {
            Ok(sig) => sig,
            Err(_) => self.key.key().sign(&msg),
        };
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    }
}

impl fmt::Debug for ChainSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChainSigner(public {}, [REDACTED])",
            self.verifier.fingerprint()
        )
    }
}

/// The public key that checks chain entries.
#[derive(Clone)]
pub struct ChainVerifier {
    key: VerifyingKey,
    spki_der: Vec<u8>,
    /// The uncompressed point, as ring takes it.
    sec1: Vec<u8>,
}

impl ChainVerifier {
    fn from_key(key: VerifyingKey) -> Self {
        // Encoding a valid P-256 point as SPKI cannot fail; keep an empty DER
        // rather than panic if it ever did.
        let spki_der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let sec1 = key.to_encoded_point(false).as_bytes().to_vec();
        ChainVerifier { key, spki_der, sec1 }
    }

    /// From a SubjectPublicKeyInfo, DER.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, p256::pkcs8::spki::Error> {
        Ok(Self::from_key(VerifyingKey::from_public_key_der(der)?))
    }

    /// From a `PUBLIC KEY` PEM (as in `DATA/public/log-signing-key.pem`).
    pub fn from_pem(pem: &str) -> Result<Self, p256::pkcs8::spki::Error> {
        Ok(Self::from_key(VerifyingKey::from_public_key_pem(pem)?))
    }

    /// The `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER, hex: compare it with the
    /// value recorded at `keyserver init`.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.spki_der)
    }

    /// Whether `sig` (base64) signs `canonical` in `domain` (checked with
    /// ring: about ten times faster than `p256` here, which matters when a
    /// whole archive's manifest is verified).
    pub fn verify(&self, domain: &str, canonical: &[u8], sig: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            return false;
        };
        if raw.len() != 64 {
            return false;
        }
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &self.sec1)
            .verify(&signed_message(domain, canonical), &raw)
            .is_ok()
    }
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainVerifier({})", self.fingerprint())
    }
}

/// One entry: the chain fields around a log's own body fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<B> {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub body: B,
    pub prev: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

impl<B: Serialize> Envelope<B> {
    /// The bytes the signature covers: the entry without `sig`.
    pub fn canonical(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&UnsignedRef { env: self })
    }
}

/// Serializes an envelope as if its `sig` were empty (no clone of the body).
struct UnsignedRef<'a, B> {
    env: &'a Envelope<B>,
}

impl<B: Serialize> Serialize for UnsignedRef<'_, B> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'b, B> {
            seq: u64,
            time: &'b str,
            #[serde(flatten)]
            body: &'b B,
            prev: &'b str,
        }
        View {
            seq: self.env.seq,
            time: &self.env.time,
            body: &self.env.body,
            prev: &self.env.prev,
        }
        .serialize(s)
    }
}

/// The signed head of a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

impl Head {
    fn canonical(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            seq: u64,
            hash: &'a str,
            time: &'a str,
        }
        serde_json::to_vec(&View {
            seq: self.seq,
            hash: &self.hash,
            time: &self.time,
        })
    }
}

/// Where a chain lives and what it is called in messages.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    /// The signature domain, e.g. `cardsmith/audit-log/v1`.
    pub domain: &'static str,
    /// What the log is, for messages: `the archive manifest`.
    pub what: &'static str,
    /// The JSON-lines file.
    pub path: PathBuf,
    /// The head file.
    pub head_path: PathBuf,
}

impl ChainSpec {
    fn head_domain(&self) -> String {
        format!("{}/head", self.domain)
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// A chain could not be opened, read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{what} {}: {op}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} {}: {problem}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{what} {}: the entry was not appended: {reason}", path.display())]
    Append {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl ChainError {
    fn io(spec: &ChainSpec, op: &'static str, source: io::Error) -> Self {
        ChainError::Io {
            what: spec.what,
            path: spec.path.clone(),
            op,
            source,
        }
    }

    fn invalid(spec: &ChainSpec, problem: impl Into<String>) -> Self {
        ChainError::Invalid {
            what: spec.what,
            path: spec.path.clone(),
            problem: problem.into(),
        }
    }
}

/// A durable entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// SHA-256 of the entry's line, hex.
    pub hash: String,
}

type Reply = mpsc::SyncSender<Result<Appended, String>>;

/// A file an entry names, written under a temporary name in the same
/// directory; the committer gives it its name (a hard link, refused if the
/// name exists) only once the entry is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub temp: PathBuf,
    pub target: PathBuf,
}

struct Request<B> {
    body: B,
    sync_dir: Option<PathBuf>,
    publish: Option<Publish>,
    reply: Reply,
}

/// An open chain: appends go through its committer thread.
pub struct ChainLog<B> {
    spec: Arc<ChainSpec>,
    tx: Option<mpsc::Sender<Request<B>>>,
    committer: Option<JoinHandle<()>>,
}

impl<B> fmt::Debug for ChainLog<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainLog({})", self.spec.path.display())
    }
}

/// What the end of an existing log says.
struct Tail {
    len: u64,
    last_seq: u64,
    last_hash: String,
}

impl<B> ChainLog<B>
where
    B: Serialize + DeserializeOwned + Send + 'static,
{
    /// Opens (or creates) the log. An incomplete last line — a write that a
    /// crash interrupted, never acknowledged — is moved to
    /// `<name>.torn-<unix ns>` beside the log and cut off. The last entry must
    /// be signed by `signer`'s key, and the head must not be ahead of the
    /// log.
    pub fn open(spec: ChainSpec, signer: Arc<ChainSigner>) -> Result<Self, ChainError> {
        let existed = spec.path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&spec.path)
            .map_err(|e| ChainError::io(&spec, "opening", e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ChainError::invalid(
                    &spec,
                    "it is open for appending elsewhere (another keyserver on this data directory?)",
                ))
            }
            Err(e) => return Err(ChainError::io(&spec, "locking", e)),
        }
        if !existed {
            fsio::sync_dir(&fsio::parent_dir(&spec.path))
                .map_err(|e| ChainError::io(&spec, "making the new file durable", e))?;
        }
        let tail = read_tail::<B>(&spec, &mut file, signer.verifier())?;
        let head = read_head(&spec, signer.verifier())?;
        if let Some(head) = &head {
            if head.seq > tail.last_seq {
                return Err(ChainError::invalid(
                    &spec,
                    format!(
                        "the log ends at entry {} but its signed head says {}: entries were removed \
                         from its end; run the verify command before using this data directory",
                        tail.last_seq, head.seq
                    ),
                ));
            }
            if head.seq == tail.last_seq && head.hash != tail.last_hash {
                return Err(ChainError::invalid(
                    &spec,
                    format!(
                        "entry {} differs from the one its signed head records; run the verify command",
                        head.seq
                    ),
                ));
            }
        }
        let mut committer = Committer {
            spec: Arc::new(spec),
            signer,
            file,
            len: tail.len,
            next_seq: tail.last_seq + 1,
            prev: tail.last_hash,
            head_seq: head.map(|h| h.seq).unwrap_or(0),
            head_written: None,
            poisoned: None,
            _body: std::marker::PhantomData,
        };
        committer.write_head();
        let spec = committer.spec.clone();
        let (tx, rx) = mpsc::channel::<Request<B>>();
        let committer = std::thread::Builder::new()
            .name(format!("commit {}", spec.file_name()))
            .spawn(move || committer.run(rx))
            .map_err(|e| ChainError::io(&spec, "starting its committer thread", e))?;
        Ok(ChainLog {
            spec,
            tx: Some(tx),
            committer: Some(committer),
        })
    }

    /// Appends `body` as the next entry and returns once it is durable. With
    /// `sync_dir`, that directory is fsynced before the entry is written.
    pub fn append(&self, body: B, sync_dir: Option<&Path>) -> Result<Appended, ChainError> {
        self.submit(body, sync_dir.map(Path::to_path_buf), None)
    }

    /// Appends `body`, which names the file `publish.temp` will become:
    /// the temporary name's directory is fsynced, the entry written and
    /// fsynced, then the file linked to `publish.target` (refused before the
    /// entry is written if that name exists) and the directory fsynced
    /// again. Returns when all of it is durable. On a refusal or a failure
    /// before the entry is durable, the temporary file is removed.
    pub fn append_publishing(&self, body: B, publish: Publish) -> Result<Appended, ChainError> {
        let dir = fsio::parent_dir(&publish.temp);
        self.submit(body, Some(dir), Some(publish))
    }

    /// Appends `bodies` as the next entries, in order, and returns once all
    /// are durable: they are queued together, so the committer usually
    /// makes them durable with one fsync. Stops at the first refusal (the
    /// entries queued before it may be durable).
    pub fn append_all(&self, bodies: Vec<B>) -> Result<Vec<Appended>, ChainError> {
        let closed = || ChainError::Append {
            what: self.spec.what,
            path: self.spec.path.clone(),
            reason: "the log is closed".into(),
        };
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        let mut answers = Vec::with_capacity(bodies.len());
        for body in bodies {
            let (reply, answer) = mpsc::sync_channel(1);
            tx.send(Request {
                body,
                sync_dir: None,
                publish: None,
                reply,
            })
            .map_err(|_| closed())?;
            answers.push(answer);
        }
        answers
            .into_iter()
            .map(|answer| {
                answer
                    .recv()
                    .map_err(|_| closed())?
                    .map_err(|reason| ChainError::Append {
                        what: self.spec.what,
                        path: self.spec.path.clone(),
                        reason,
                    })
            })
            .collect()
    }

    fn submit(
        &self,
        body: B,
        sync_dir: Option<PathBuf>,
        publish: Option<Publish>,
    ) -> Result<Appended, ChainError> {
        let closed = || ChainError::Append {
            what: self.spec.what,
            path: self.spec.path.clone(),
            reason: "the log is closed".into(),
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(Request {
            body,
            sync_dir,
            publish,
            reply,
        })
        .map_err(|_| closed())?;
        answer
            .recv()
            .map_err(|_| closed())?
            .map_err(|reason| ChainError::Append {
                what: self.spec.what,
                path: self.spec.path.clone(),
                reason,
            })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }
}

impl<B> Drop for ChainLog<B> {
    fn drop(&mut self) {
        // Closing the channel lets the committer finish what is queued,
        // write the head, and end.
        self.tx = None;
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

fn read_head(spec: &ChainSpec, verifier: &ChainVerifier) -> Result<Option<Head>, ChainError> {
    let bytes = match std::fs::read(&spec.head_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ChainError::io(spec, "reading its head file", e)),
    };
    let head: Head = serde_json::from_slice(&bytes).map_err(|e| {
        ChainError::invalid(
            spec,
            format!("its head file {} is unreadable: {e}", spec.head_path.display()),
        )
    })?;
    let canonical = head
        .canonical()
        .map_err(|e| ChainError::invalid(spec, format!("its head: {e}")))?;
    if !verifier.verify(&spec.head_domain(), &canonical, &head.sig) {
        return Err(ChainError::invalid(
            spec,
            format!(
                "the signature of its head file {} does not verify",
                spec.head_path.display()
            ),
        ));
    }
    Ok(Some(head))
}

/// Reads the last complete line, cutting off (and keeping aside) a torn one.
fn read_tail<B: Serialize + DeserializeOwned>(
    spec: &ChainSpec,
    file: &mut File,
    verifier: &ChainVerifier,
) -> Result<Tail, ChainError> {
    let len = file
        .metadata()
        .map_err(|e| ChainError::io(spec, "reading its size", e))?
        .len();
    if len == 0 {
        return Ok(Tail {
            len: 0,
            last_seq: 0,
            last_hash: GENESIS_PREV.into(),
        });
    }
    let window_len = len.min(2 * MAX_LINE as u64 + 2);
    let window_start = len - window_len;
    let mut window = vec![0u8; window_len as usize];
    file.seek(SeekFrom::Start(window_start))
        .and_then(|_| file.read_exact(&mut window))
        .map_err(|e| ChainError::io(spec, "reading its last entry", e))?;

    let mut end = window.len();
    if window.last() != Some(&b'\n') {
        // A torn write: keep the bytes aside, then cut them off.
        let cut = match window.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if window_start == 0 => 0,
            None => {
                return Err(ChainError::invalid(
                    spec,
                    "its last line is longer than any entry",
                ))
            }
        };
        let torn = window.get(cut..).unwrap_or_default();
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let mut aside = spec.path.clone().into_os_string();
        aside.push(format!(".torn-{nanos}"));
        let aside = PathBuf::from(aside);
        fsio::write_new(&aside, torn, 0o400)
            .map_err(|e| ChainError::io(spec, "keeping its torn last line aside", e))?;
        let keep = window_start + cut as u64;
        file.set_len(keep)
            .and_then(|()| file.sync_all())
            .map_err(|e| ChainError::io(spec, "cutting off its torn last line", e))?;
        tracing::warn!(
            log = %spec.path.display(),
            kept_aside = %aside.display(),
            bytes = torn.len(),
            "an incomplete last line (an interrupted write, never acknowledged) was cut off"
        );
        end = cut;
        if keep == 0 {
            return Ok(Tail {
                len: 0,
                last_seq: 0,
                last_hash: GENESIS_PREV.into(),
            });
        }
    }
    let body = window.get(..end.saturating_sub(1)).unwrap_or_default();
    let start = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if window_start == 0 => 0,
        None => {
            return Err(ChainError::invalid(
                spec,
                "its last line is longer than any entry",
            ))
        }
    };
    let line = body.get(start..).unwrap_or_default();
    let env: Envelope<B> = serde_json::from_slice(line)
        .map_err(|e| ChainError::invalid(spec, format!("its last entry is unreadable: {e}")))?;
    let canonical = env
        .canonical()
        .map_err(|e| ChainError::invalid(spec, format!("its last entry: {e}")))?;
    if !verifier.verify(spec.domain, &canonical, &env.sig) {
        return Err(ChainError::invalid(
            spec,
            format!(
                "its last entry (seq {}) is not signed by this keyserver's log-signing key; run the verify command",
                env.seq
            ),
        ));
    }
    Ok(Tail {
        len: window_start + end as u64,
        last_seq: env.seq,
        last_hash: sha256_hex(line),
    })
}

struct Committer<B> {
    spec: Arc<ChainSpec>,
    signer: Arc<ChainSigner>,
    file: File,
    len: u64,
    next_seq: u64,
    prev: String,
    head_seq: u64,
    head_written: Option<Instant>,
    poisoned: Option<String>,
    _body: std::marker::PhantomData<fn(B)>,
}

impl<B: Serialize> Committer<B> {
    fn run(mut self, rx: mpsc::Receiver<Request<B>>) {
        loop {
            let first = match rx.recv_timeout(HEAD_INTERVAL) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.write_head();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            if self.head_written.is_none_or(|t| t.elapsed() >= HEAD_INTERVAL) {
                self.write_head();
            }
        }
        self.write_head();
    }

    fn commit(&mut self, batch: Vec<Request<B>>) {
        if let Some(p) = &self.poisoned {
            for r in batch {
                if let Some(p) = &r.publish {
                    let _ = std::fs::remove_file(&p.temp);
                }
                let _ = r.reply.send(Err(p.clone()));
            }
            return;
        }
        // The directories first: what the entries refer to (the files under
        // their temporary names) must be durable before the entries are.
        let dirs: BTreeSet<&PathBuf> = batch.iter().filter_map(|r| r.sync_dir.as_ref()).collect();
        let mut failed_dirs = Vec::new();
        for d in dirs {
            if let Err(e) = fsio::sync_dir(d) {
                failed_dirs.push((d.clone(), format!("fsync of directory {}: {e}", d.display())));
            }
        }
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut pending: Vec<(Reply, Option<Publish>, Appended)> = Vec::with_capacity(batch.len());
        let mut targets: BTreeSet<PathBuf> = BTreeSet::new();
        let (seq0, prev0) = (self.next_seq, self.prev.clone());
        for r in batch {
            let refuse = |r: Request<B>, why: String| {
                if let Some(p) = &r.publish {
                    let _ = std::fs::remove_file(&p.temp);
                }
                let _ = r.reply.send(Err(why));
            };
            if let Some((_, why)) = failed_dirs.iter().find(|(d, _)| Some(d) == r.sync_dir.as_ref()) {
                let why = why.clone();
                refuse(r, why);
                continue;
            }
            // Only this thread publishes names, so this check cannot race.
            if let Some(p) = &r.publish {
                if targets.contains(&p.target) || std::fs::symlink_metadata(&p.target).is_ok() {
                    let why = format!("{} exists already: it is never rewritten", p.target.display());
                    refuse(r, why);
                    continue;
                }
                targets.insert(p.target.clone());
            }
            match self.line(r.body) {
                Ok((line, hash)) => {
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    pending.push((
                        r.reply,
                        r.publish,
                        Appended {
                            seq: self.next_seq,
                            hash: hash.clone(),
                        },
                    ));
                    self.next_seq += 1;
                    self.prev = hash;
                }
                Err(e) => {
                    if let Some(p) = &r.publish {
                        let _ = std::fs::remove_file(&p.temp);
                    }
                    let _ = r.reply.send(Err(format!("the entry could not be encoded: {e}")));
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let why = format!("writing and syncing {} entries: {e}", pending.len());
            // Undo a partial write, so the log stays a valid chain.
            let undone = self.file.set_len(self.len).and_then(|()| self.file.sync_all());
            self.next_seq = seq0;
            self.prev = prev0;
            if let Err(e2) = undone {
                self.poisoned = Some(format!(
                    "the log is unusable since a failed write ({why}) could not be undone ({e2}); \
                     restart the keyserver"
                ));
            }
            for (reply, publish, _) in pending {
                if let Some(p) = publish {
                    let _ = std::fs::remove_file(&p.temp);
                }
                let _ = reply.send(Err(why.clone()));
            }
            return;
        }
        self.len += buf.len() as u64;

        // The entries are durable: give their files their names, make the
        // names durable, then answer.
        let mut results = Vec::with_capacity(pending.len());
        let mut publish_dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let mut unlink_after = Vec::new();
        for (reply, publish, appended) in pending {
            let Some(p) = publish else {
                results.push((reply, Ok(appended), None));
                continue;
            };
            let result = match std::fs::hard_link(&p.temp, &p.target) {
                Ok(()) => {
                    publish_dirs.insert(fsio::parent_dir(&p.target));
                    // The temporary name goes only once the final one is
                    // durable: a filesystem without a journal may otherwise
                    // keep the removal and lose the link.
                    unlink_after.push(p.temp.clone());
                    Ok(appended)
                }
                Err(e) => Err(format!(
                    "the entry is durable, but its file could not be given its name {} ({e}); \
                     the keyserver completes this when it opens the archive again",
                    p.target.display()
                )),
            };
            results.push((reply, result, Some(p.target)));
        }
        let mut dir_errors = Vec::new();
        for d in &publish_dirs {
            if let Err(e) = fsio::sync_dir(d) {
                dir_errors.push((d.clone(), e.to_string()));
            }
        }
        for (reply, result, target) in results {
            let failed_dir = target
                .as_ref()
                .and_then(|t| dir_errors.iter().find(|(d, _)| *d == fsio::parent_dir(t)));
            let result = match (result, failed_dir) {
                (Ok(_), Some((d, e))) => Err(format!(
                    "the entry is durable, but the fsync of {} after naming its file failed: {e}",
                    d.display()
                )),
                (result, _) => result,
            };
            let _ = reply.send(result);
        }
        if dir_errors.is_empty() {
            // Leftovers (a crash before these removals are durable) are
            // removed when the archive is opened.
            for t in unlink_after {
                let _ = std::fs::remove_file(t);
            }
        }
    }

    /// The signed line for the next entry, and its hash.
    fn line(&self, body: B) -> Result<(Vec<u8>, String), serde_json::Error> {
        let mut env = Envelope {
            seq: self.next_seq,
            time: now_rfc3339(),
            body,
            prev: self.prev.clone(),
            sig: String::new(),
        };
        let canonical = env.canonical()?;
        env.sig = self.signer.sign(self.spec.domain, &canonical);
        let line = serde_json::to_vec(&env)?;
        let hash = sha256_hex(&line);
        Ok((line, hash))
    }

    fn write_head(&mut self) {
        let seq = self.next_seq - 1;
        if seq == self.head_seq || self.poisoned.is_some() {
            return;
        }
        let mut head = Head {
            seq,
            hash: self.prev.clone(),
            time: now_rfc3339(),
            sig: String::new(),
        };
        let Ok(canonical) = head.canonical() else {
            return;
        };
        head.sig = self.signer.sign(&self.spec.head_domain(), &canonical);
        let written = serde_json::to_vec(&head)
            .map_err(io::Error::other)
            .and_then(|bytes| fsio::write_replace(&self.spec.head_path, &bytes, 0o644, false));
        match written {
            Ok(()) => {
                self.head_seq = seq;
                self.head_written = Some(Instant::now());
            }
            Err(e) => tracing::warn!(
                head = %self.spec.head_path.display(),
                error = %e,
                "the log's head could not be written (the log itself is intact)"
            ),
        }
    }
}

/// Something a verification found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `manifest.jsonl line 5 (seq 5)`, `vsc/00001079-….vsc`.
    pub place: String,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.what)
    }
}

/// Joins the problems found at one place into one, in the order the places
/// were first reported.
pub fn merge_by_place(problems: Vec<Problem>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::with_capacity(problems.len());
    for p in problems {
        match out.iter_mut().find(|q| q.place == p.place) {
            Some(q) => {
                q.what.push_str("; ");
                q.what.push_str(&p.what);
            }
            None => out.push(p),
        }
    }
    out
}

/// What a verification of a chain found.
#[derive(Clone, Debug, Default)]
pub struct ChainReport {
    /// Lines read.
    pub lines: u64,
    /// The last sequence number read.
    pub last_seq: u64,
    /// The signed head, if there is one.
    pub head: Option<Head>,
    pub problems: Vec<Problem>,
    /// Facts worth knowing that are not faults.
    pub notes: Vec<String>,
}

/// Reads one line of at most [`MAX_LINE`] bytes: `(bytes without newline,
/// had a newline, was too long)`, or `None` at the end.
fn read_line_bounded(r: &mut impl BufRead) -> io::Result<Option<(Vec<u8>, bool, bool)>> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some((line, true, false)));
    }
    if line.len() > MAX_LINE {
        // Skip the rest of the long line.
        let mut rest = Vec::new();
        let m = r.read_until(b'\n', &mut rest)?;
        return Ok(Some((line, m > 0 && rest.last() == Some(&b'\n'), true)));
    }
    Ok(Some((line, false, false)))
}

/// Verifies a whole chain: canonical form, sequence numbers, `prev` hashes,
/// signatures, the head; `each` adds the log's own checks per entry.
pub fn verify_chain<B, F>(
    spec: &ChainSpec,
    verifier: &ChainVerifier,
    mut each: F,
) -> Result<ChainReport, ChainError>
where
    B: Serialize + DeserializeOwned,
    F: FnMut(&str, &Envelope<B>, &mut Vec<Problem>),
{
    let name = spec.file_name();
    let mut report = ChainReport::default();
    let head = match read_head(spec, verifier) {
        Ok(h) => h,
        Err(ChainError::Invalid { problem, .. }) => {
            report.problems.push(Problem {
                place: spec
                    .head_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                what: problem,
            });
            None
        }
        Err(e) => return Err(e),
    };
    let file = match File::open(&spec.path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(ChainError::io(spec, "opening", e)),
    };
    let mut head_line_hash: Option<String> = None;
    if let Some(file) = file {
        let mut reader = BufReader::new(file);
        let mut prev_hash = GENESIS_PREV.to_string();
        let mut expected = 1u64;
        let mut line_no = 0u64;
        while let Some((line, newline, too_long)) =
            read_line_bounded(&mut reader).map_err(|e| ChainError::io(spec, "reading", e))?
        {
            line_no += 1;
            let place = format!("{name} line {line_no}");
            if too_long {
                report.problems.push(Problem {
                    place,
                    what: format!("longer than {MAX_LINE} bytes: not an entry"),
                });
                prev_hash = String::new();
                expected += 1;
                continue;
            }
            if !newline {
                report.problems.push(Problem {
                    place,
                    what: "incomplete (no newline at its end): a write was interrupted, or the line was cut"
                        .into(),
                });
                continue;
            }
            let hash = sha256_hex(&line);
            let env: Envelope<B> = match serde_json::from_slice(&line) {
                Ok(env) => env,
                Err(e) => {
                    report.problems.push(Problem {
                        place,
                        what: format!("not a valid entry ({e})"),
                    });
                    prev_hash = hash;
                    expected += 1;
                    continue;
                }
            };
            let place = format!("{name} line {line_no} (seq {})", env.seq);
            let mut what = Vec::new();
            if env.seq != expected {
                if env.seq > expected {
                    if env.seq == expected + 1 {
                        what.push(format!("entry {expected} is missing before it"));
                    } else {
                        what.push(format!(
                            "entries {expected}..={} are missing before it",
                            env.seq - 1
                        ));
                    }
                } else {
                    what.push(format!(
                        "sequence number {} where {expected} was expected: a line was duplicated, moved or inserted",
                        env.seq
                    ));
                }
            }
            if env.prev != prev_hash {
                if line_no == 1 {
                    what.push("its prev is not the genesis value: the log's first entries are gone".into());
                } else {
                    what.push(format!("its prev is not the hash of line {}", line_no - 1));
                }
            }
            match (env.canonical(), serde_json::to_vec(&env)) {
                (Ok(canonical), Ok(reserialized)) => {
                    if reserialized != line {
                        what.push("not in canonical form: the line was edited".into());
                    }
                    if !verifier.verify(spec.domain, &canonical, &env.sig) {
                        what.push(
                            "its signature does not verify: the entry was changed, or not written by this keyserver"
                                .into(),
                        );
                    }
                }
                (Err(e), _) | (_, Err(e)) => what.push(format!("cannot be re-encoded: {e}")),
            }
            if !what.is_empty() {
                report.problems.push(Problem {
                    place: place.clone(),
                    what: what.join("; "),
                });
            }
            each(&place, &env, &mut report.problems);
            if head.as_ref().is_some_and(|h| h.seq == env.seq) {
                head_line_hash = Some(hash.clone());
            }
            report.last_seq = env.seq;
            expected = env.seq + 1;
            prev_hash = hash;
            report.lines = line_no;
        }
        report.lines = line_no;
    }
    let head_name = spec
        .head_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match &head {
        Some(h) if h.seq > report.last_seq => report.problems.push(Problem {
            place: head_name,
            what: format!(
                "the signed head (written {}) records {} entries but {name} ends at entry {}: entries were removed from its end",
                h.time, h.seq, report.last_seq
            ),
        }),
        Some(h) if h.seq > 0 && head_line_hash.as_deref() != Some(h.hash.as_str()) => {
            report.problems.push(Problem {
                place: head_name,
                what: format!(
                    "entry {} in {name} is not the one the signed head (written {}) records",
                    h.seq, h.time
                ),
            })
        }
        Some(h) if h.seq < report.last_seq => report.notes.push(format!(
            "the head records {} of {} entries (it is rewritten shortly after each commit)",
            h.seq, report.last_seq
        )),
        None if report.lines > 0 && !report.problems.iter().any(|p| p.place == head_name) => {
            report.problems.push(Problem {
                place: head_name,
                what: "the signed head file is missing".into(),
            })
        }
        _ => {}
    }
    report.head = head;
    report.problems = merge_by_place(std::mem::take(&mut report.problems));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Body {
        what: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        n: Option<u32>,
    }

    fn signer() -> Arc<ChainSigner> {
        Arc::new(ChainSigner::from_key(SigningKey::random(&mut rand::rngs::OsRng)).unwrap())
    }

    fn spec(dir: &Path) -> ChainSpec {
        ChainSpec {
            domain: "cardsmith/test/v1",
            what: "the test log",
            path: dir.join("t.jsonl"),
            head_path: dir.join("t.head"),
        }
    }

    fn body(i: u32) -> Body {
        Body {
            what: format!("e{i}"),
            n: (i % 2 == 0).then_some(i),
        }
    }

    #[test]
    fn canonical_is_the_line_without_sig() {
        let env = Envelope {
            seq: 1,
            time: "t".into(),
            body: body(2),
            prev: GENESIS_PREV.into(),
            sig: "S".into(),
        };
        let c = String::from_utf8(env.canonical().unwrap()).unwrap();
        let l = String::from_utf8(serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!(format!("{}{}", &c[..c.len() - 1], ",\"sig\":\"S\"}"), l);
        assert!(
            c.starts_with("{\"seq\":1,\"time\":\"t\",\"what\":\"e2\",\"n\":2,\"prev\":"),
            "{c}"
        );
    }

    #[test]
    fn appends_chain_and_verify_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        {
            let log = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap();
            for i in 0..5 {
                assert_eq!(
                    log.append(body(i), Some(dir.path())).unwrap().seq,
                    u64::from(i) + 1
                );
            }
        }
        {
            let log = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap();
            assert_eq!(log.append(body(9), None).unwrap().seq, 6);
        }
        let r = verify_chain::<Body, _>(&spec(dir.path()), s.verifier(), |_, _, _| {}).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.lines, r.last_seq), (6, 6));
        assert_eq!(r.head.unwrap().seq, 6);
    }

    #[test]
    fn a_torn_last_line_is_kept_aside_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        drop(
            ChainLog::<Body>::open(spec(dir.path()), s.clone())
                .unwrap()
                .append(body(1), None),
        );
        let p = spec(dir.path()).path;
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":2,\"ti").unwrap();
        drop(f);
        let r = verify_chain::<Body, _>(&spec(dir.path()), s.verifier(), |_, _, _| {}).unwrap();
        assert!(r.problems[0].what.contains("incomplete"), "{:?}", r.problems);
        let log = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap();
        assert_eq!(log.append(body(2), None).unwrap().seq, 2);
        drop(log);
        let torn: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(torn.len(), 1);
        assert_eq!(std::fs::read(torn[0].path()).unwrap(), b"{\"seq\":2,\"ti");
        let r = verify_chain::<Body, _>(&spec(dir.path()), s.verifier(), |_, _, _| {}).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn another_key_cannot_continue_the_log() {
        let dir = tempfile::tempdir().unwrap();
        drop(
            ChainLog::<Body>::open(spec(dir.path()), signer())
                .unwrap()
                .append(body(1), None),
        );
        let e = ChainLog::<Body>::open(spec(dir.path()), signer()).unwrap_err();
        assert!(e.to_string().contains("not signed by this keyserver"), "{e}");
    }

    #[test]
    fn one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let log = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap();
        let e = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap_err();
        assert!(e.to_string().contains("open for appending elsewhere"), "{e}");
        drop(log);
        ChainLog::<Body>::open(spec(dir.path()), s).unwrap();
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        FlipByte { line: usize, at: usize, bit: u8 },
        Delete(usize),
        Swap(usize, usize),
        Duplicate(usize),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(line, at, bit)| Mutation::FlipByte {
                line,
                at,
                bit
            }),
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
            any::<usize>().prop_map(Mutation::Duplicate),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever one edit does to a closed log, verification notices.
        #[test]
        fn any_single_edit_is_noticed(n in 1usize..12, m in mutation()) {
            let dir = tempfile::tempdir().unwrap();
            let s = signer();
            {
                let log = ChainLog::<Body>::open(spec(dir.path()), s.clone()).unwrap();
                for i in 0..n {
                    log.append(body(i as u32), None).unwrap();
                }
            }
            let path = spec(dir.path()).path;
            let text = std::fs::read(&path).unwrap();
            let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
            match m {
                Mutation::FlipByte { line, at, bit } => {
                    let l = &mut lines[line % n];
                    let i = at % l.len();
                    l[i] ^= 1 << bit;
                }
                Mutation::Delete(i) => {
                    lines.remove(i % n);
                }
                Mutation::Swap(a, b) => {
                    let (a, b) = (a % n, b % n);
                    proptest::prop_assume!(a != b);
                    lines.swap(a, b);
                }
                Mutation::Duplicate(i) => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
            }
            let mut out = lines.join(&b'\n');
            out.push(b'\n');
            proptest::prop_assume!(out != text);
            std::fs::write(&path, out).unwrap();
            let r = verify_chain::<Body, _>(&spec(dir.path()), s.verifier(), |_, _, _| {}).unwrap();
            proptest::prop_assert!(!r.problems.is_empty());
        }
    }

    #[test]
    fn time_format() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_000_000).unwrap();
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
