//! The audit log: `DATA/audit/audit.jsonl`, a signed hash chain
//! ([`chain`]) of who did what to what and how it ended.
//!
//! An entry:
//!
//! ```text
//! {"seq":12,"time":"…","actor":"keyserver","action":"custody.unlock","subject":"keystore 3f9a…",
//!  "outcome":"ok","detail":"3 of 3 components, from files","prev":"…","sig":"…"}
//! ```
//!
//! Appends are durable when [`AuditLog::append`] returns (group commit).
//! Verification ([`verify`]) needs only `DATA/public/log-signing-key.pem`.
//!
//! **While the keystore is locked** there is no signing key: a failed
//! unlock is written, unsigned, to `DATA/audit/pending.jsonl`
//! ([`record_while_locked`]) and moved into the signed log, marked as such,
//! by the next successful unlock ([`AuditLog::open`]). Until then
//! `audit verify` lists them as notes; someone with write access to the
//! data directory could delete them, which no signature can prevent.

pub mod chain;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::chain::{Appended, ChainError, ChainLog, ChainReport, ChainSigner, ChainSpec, ChainVerifier};
use crate::keystore::{fsio, DataDir};
use crate::ports::{AuditError, AuditEvent, AuditOutcome, AuditSink};

/// The signature domain of audit entries.
pub const AUDIT_DOMAIN: &str = "cardsmith/audit-log/v1";

/// The longest `detail` kept whole; longer ones are cut, saying so.
pub const MAX_DETAIL: usize = 4096;
/// The longest `actor`, `action` or `subject` kept whole.
pub const MAX_FIELD: usize = 512;

/// The log's own fields of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBody {
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// `ok` or `failed`.
    pub outcome: String,
    pub detail: String,
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut: {} bytes in all]",
        s.get(..end).unwrap_or_default(),
        s.len()
    )
}

impl AuditBody {
    /// The body of an event, with over-long fields cut.
    pub fn from_event(e: &AuditEvent) -> Self {
        AuditBody {
            actor: cut(&e.actor, MAX_FIELD),
            action: cut(&e.action, MAX_FIELD),
            subject: cut(&e.subject, MAX_FIELD),
            outcome: match e.outcome {
                AuditOutcome::Ok => "ok",
                AuditOutcome::Failed => "failed",
            }
            .into(),
            detail: cut(&e.detail, MAX_DETAIL),
        }
    }
}

/// An entry recorded while the keystore was locked.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PendingEntry {
    time: String,
    #[serde(flatten)]
    body: AuditBody,
}

/// The audit log could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the audit log: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the log-signing public key {}: {reason}", path.display())]
    PublicKey { path: PathBuf, reason: String },
}

/// The chain description of the audit log of `data`.
pub fn spec(data: &DataDir) -> ChainSpec {
    ChainSpec {
        domain: AUDIT_DOMAIN,
        what: "the audit log",
        path: data.audit_log(),
        head_path: data.audit_head(),
    }
}

/// Reads `DATA/public/log-signing-key.pem`.
pub fn load_verifier(data: &DataDir) -> Result<ChainVerifier, AuditLogError> {
    let path = data.log_signing_key_pem();
    let pem = std::fs::read_to_string(&path).map_err(|e| AuditLogError::PublicKey {
        path: path.clone(),
        reason: format!("{e} (is this a keyserver data directory made by `keyserver init`?)"),
    })?;
    ChainVerifier::from_pem(&pem).map_err(|e| AuditLogError::PublicKey {
        path,
        reason: format!("not a P-256 public key: {e}"),
    })
}

/// The audit log, open for appending.
#[derive(Debug)]
pub struct AuditLog {
    log: ChainLog<AuditBody>,
}

impl AuditLog {
    /// Opens (or creates) `DATA/audit/audit.jsonl`, then moves the entries
    /// recorded while the keystore was locked into it.
    pub fn open(data: &DataDir, signer: Arc<ChainSigner>) -> Result<Self, AuditLogError> {
        let dir = data.audit();
        fsio::create_dir_durable(&dir, 0o750).map_err(|source| AuditLogError::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let log = AuditLog {
            log: ChainLog::open(spec(data), signer)?,
        };
        log.import_pending(&data.audit_pending())?;
        Ok(log)
    }

    fn import_pending(&self, path: &Path) -> Result<(), AuditLogError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(AuditLogError::Io {
                    op: "reading",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let body = match serde_json::from_slice::<PendingEntry>(line) {
                Ok(p) => AuditBody {
                    detail: cut(
                        &format!(
                            "{} [recorded while the keystore was locked, at {}]",
                            p.body.detail, p.time
                        ),
                        MAX_DETAIL,
                    ),
                    ..p.body
                },
                Err(e) => AuditBody {
                    actor: "keyserver".into(),
                    action: "audit.pending-unreadable".into(),
                    subject: "audit/pending.jsonl".into(),
                    outcome: "failed".into(),
                    detail: format!(
                        "a line of {} bytes (sha256 {}) is not a pending entry: {e}",
                        line.len(),
                        chain::sha256_hex(line)
                    ),
                },
            };
            self.log.append(body, None)?;
        }
        std::fs::remove_file(path)
            .and_then(|()| fsio::sync_dir(&fsio::parent_dir(path)))
            .map_err(|source| AuditLogError::Io {
                op: "removing the imported",
                path: path.to_path_buf(),
                source,
            })
    }

    /// Appends an event; returns once it is durable.
    pub fn append(&self, event: &AuditEvent) -> Result<Appended, AuditLogError> {
        Ok(self.log.append(AuditBody::from_event(event), None)?)
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.append(&event).map(|_| ()).map_err(|e| AuditError {
            action: event.action.clone(),
            subject: event.subject.clone(),
            reason: e.to_string(),
        })
    }

    /// One group commit for all of them.
    fn record_all(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let (action, subject) = (first.action.clone(), first.subject.clone());
        let bodies = events.iter().map(AuditBody::from_event).collect();
        self.log.append_all(bodies).map(|_| ()).map_err(|e| AuditError {
            action,
            subject,
            reason: e.to_string(),
        })
    }
}

/// Records an event without a signature, while the keystore is locked (a
/// failed unlock); the next [`AuditLog::open`] signs it into the log.
pub fn record_while_locked(data: &DataDir, event: &AuditEvent) -> Result<(), AuditLogError> {
    let dir = data.audit();
    fsio::create_dir_durable(&dir, 0o750).map_err(|source| AuditLogError::Io {
        op: "creating",
        path: dir.clone(),
        source,
    })?;
    let path = data.audit_pending();
    let entry = PendingEntry {
        time: chain::now_rfc3339(),
        body: AuditBody::from_event(event),
    };
    let mut line = serde_json::to_vec(&entry).map_err(|e| AuditLogError::Io {
        op: "encoding an entry for",
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    line.push(b'\n');
    let existed = path.exists();
    let io = |source| AuditLogError::Io {
        op: "appending to",
        path: path.clone(),
        source,
    };
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&path)
        .map_err(io)?;
    f.write_all(&line).and_then(|()| f.sync_data()).map_err(io)?;
    if !existed {
        fsio::sync_dir(&dir).map_err(io)?;
    }
    Ok(())
}

/// Verifies the whole audit log: chain, signatures, head; pending (unsigned)
/// entries are listed as notes.
pub fn verify(data: &DataDir) -> Result<ChainReport, AuditLogError> {
    let verifier = load_verifier(data)?;
    let mut report = chain::verify_chain::<AuditBody, _>(&spec(data), &verifier, |_, _, _| {})?;
    if let Ok(bytes) = std::fs::read(data.audit_pending()) {
        let n = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        if n > 0 {
            report.notes.push(format!(
                "{n} entries recorded while the keystore was locked wait in {} (unsigned until the next unlock)",
                data.audit_pending().display()
            ));
        }
    }
    Ok(report)
}
