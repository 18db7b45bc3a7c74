//! The archive of master VSCs: the escrow.
//!
//! - `DATA/archive/vsc/<serial, 8 digits>-<uid, 32 hex>.vsc`: each master
//!   VSC, written once and never again. The file is written under a
//!   temporary name in the same folder (`.<name>.<16 hex>.tmp`, created
//!   exclusively, mode 0444) and fsynced; the folder is fsynced, the
//!   manifest entry naming the file written and fsynced, and only then is
//!   the file hard-linked to its final name (refused if that name exists)
//!   and the folder fsynced again; the temporary name is removed after
//!   that. After a
//!   crash, a final name always has its entry; a file whose entry is
//!   durable but whose name is not yet gets its name when the archive is
//!   opened again, and any other temporary file is removed.
//! - `DATA/archive/manifest.jsonl`: a signed hash chain
//!   ([`crate::audit::chain`], domain `cardsmith/archive-manifest/v1`) of
//!   [`ManifestBody`] entries: `sealed` (with the file's name, size and
//!   SHA-256, the job and the record), `issued`, `void` (with the reason);
//!   `reissued` and `disabled` are reserved for reissue.
//!
//! [`Archive::seal`] returns when the file, its folder and its manifest
//! entry are durable. Concurrent seals share fsyncs: each caller fsyncs its
//! own file, and one committer fsyncs the folder and the manifest once for
//! every seal waiting (group commit).
//!
//! [`verify`] needs no custodians: it reads `DATA/public/log-signing-key.pem`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vsc::file::{SlotInfo, Uid, VscFile};

use crate::audit::chain::{
    self, ChainError, ChainLog, ChainReport, ChainSigner, ChainSpec, Envelope, Problem, Publish,
};
use crate::audit::{self as audit_mod};
use crate::keystore::{fsio, DataDir};
use crate::ports::{CardOutcome, Escrow, EscrowError, SealReceipt, SealRequest};

/// The signature domain of manifest entries.
pub const MANIFEST_DOMAIN: &str = "cardsmith/archive-manifest/v1";

/// The longest job name, record id or void reason kept.
pub const MAX_TEXT: usize = 1024;

/// What happened to a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestEvent {
    /// The master VSC was archived.
    Sealed,
    /// The real card was personalized and passed.
    Issued,
    /// The card failed after its master VSC was sealed.
    Void,
    /// A new card was personalized from the archived master VSC.
    Reissued,
    /// The card was disabled.
    Disabled,
}

impl ManifestEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestEvent::Sealed => "sealed",
            ManifestEvent::Issued => "issued",
            ManifestEvent::Void => "void",
            ManifestEvent::Reissued => "reissued",
            ManifestEvent::Disabled => "disabled",
        }
    }
}

/// The manifest's own fields of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    pub event: ManifestEvent,
    pub serial: u32,
    /// The VSC's UID, 32 lower-case hex digits.
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// `sealed`: the file's name in `vsc/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `sealed`: the file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sealed`: the file's SHA-256, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `void`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ManifestBody {
    fn event(event: ManifestEvent, serial: u32, uid: Uid) -> Self {
        ManifestBody {
            event,
            serial,
            uid: hex::encode(uid.as_bytes()),
            job: None,
            record: None,
            file: None,
            size: None,
            sha256: None,
            reason: None,
        }
    }
}

/// The archive could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the archive: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Verifier(#[from] audit_mod::AuditLogError),
    #[error("the archive has no card with serial {0:08}")]
    UnknownSerial(u32),
}

/// A card left without a known outcome ([`Archive::unfinished`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    pub serial: u32,
    pub uid: Uid,
    pub job: Option<String>,
    pub record: Option<String>,
    /// Recorded `issued` in the manifest, but its record is still in flight
    /// in the job store (else: sealed, no outcome).
    pub issued: bool,
}

/// The name of a card's file in `vsc/`.
pub fn file_name(serial: u32, uid: &Uid) -> String {
    format!("{serial:08}-{}.vsc", hex::encode(uid.as_bytes()))
}

/// The chain description of the manifest of `data`.
pub fn spec(data: &DataDir) -> ChainSpec {
    ChainSpec {
        domain: MANIFEST_DOMAIN,
        what: "the archive manifest",
        path: data.manifest(),
        head_path: data.manifest_head(),
    }
}

fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        return Err(format!(
            "the {what} has {} bytes; at most {MAX_TEXT} are kept",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("the {what} contains a control character"));
    }
    Ok(())
}

/// The archive, open for sealing.
#[derive(Debug)]
pub struct Archive {
    vsc_dir: PathBuf,
    log: ChainLog<ManifestBody>,
}

impl Archive {
    /// Opens (or creates) `DATA/archive` and finishes what a crash
    /// interrupted: a file whose `sealed` entry is durable but which still
    /// has its temporary name gets its name; any other temporary file (never
    /// acknowledged) is removed.
    pub fn open(data: &DataDir, signer: Arc<ChainSigner>) -> Result<Self, ArchiveError> {
        let vsc_dir = data.archive_vsc();
        fsio::create_dir_durable(&vsc_dir, 0o755).map_err(|source| ArchiveError::Io {
            op: "creating",
            path: vsc_dir.clone(),
            source,
        })?;
        let log = ChainLog::open(spec(data), signer)?;
        let archive = Archive { vsc_dir, log };
        archive.recover(&data.manifest())?;
        Ok(archive)
    }

    fn recover(&self, manifest: &Path) -> Result<(), ArchiveError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Io { op, path, source }
        };
        let temps: Vec<(PathBuf, Option<String>)> = fs::read_dir(&self.vsc_dir)
            .map_err(io("listing", &self.vsc_dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                fsio::is_temp_name(&name).then(|| (e.path(), target_of_temp(&name)))
            })
            .collect();
        if temps.is_empty() {
            return Ok(());
        }
        let recent = recent_sealed_files(manifest).map_err(io("reading the end of", manifest))?;
        for (temp, target) in temps {
            match target.filter(|t| recent.contains(t)) {
                Some(t) if !self.vsc_dir.join(&t).exists() => {
                    fs::hard_link(&temp, self.vsc_dir.join(&t)).map_err(io("naming", &temp))?;
                    tracing::warn!(file = %t, "a sealed file got its name after an interruption");
                }
                _ => tracing::warn!(
                    file = %temp.display(),
                    "removing what an interrupted seal left (never acknowledged)"
                ),
            }
            fs::remove_file(&temp).map_err(io("removing", &temp))?;
        }
        fsio::sync_dir(&self.vsc_dir).map_err(io("syncing", &self.vsc_dir))
    }

    /// The cards whose outcome a stopped keyserver never told anyone: every
    /// card sealed without a later `issued` or `void` entry (stopped between
    /// seal and outcome), and every card recorded `issued` whose (job,
    /// record) is in `unacknowledged` — the records the job store still has
    /// in flight, so the station was never told the card is good. Call it
    /// at start, before any card is issued; [`crate::recovery`] voids them.
    pub fn unfinished(
        &self,
        unacknowledged: &HashSet<(String, String)>,
    ) -> Result<Vec<Unfinished>, ArchiveError> {
        let (cards, _) = cards_at(self.log.path())?;
        Ok(cards
            .into_iter()
            .filter_map(|c| {
                let last = c.status()?;
                let pending = match (&c.job, &c.record) {
                    (Some(j), Some(r)) => unacknowledged.contains(&(j.clone(), r.clone())),
                    _ => false,
                };
                let issued = match last {
                    ManifestEvent::Sealed => false,
                    ManifestEvent::Issued if pending => true,
                    _ => return None,
                };
                let uid = hex::decode(&c.uid)
                    .ok()
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
                    .map(Uid::from_bytes)?;
                Some(Unfinished {
                    serial: c.serial,
                    uid,
                    job: c.job,
                    record: c.record,
                    issued,
                })
            })
            .collect())
    }

    /// Where a card's master VSC is (or would be) archived.
    pub fn path_of(&self, serial: u32, uid: &Uid) -> PathBuf {
        self.vsc_dir.join(file_name(serial, uid))
    }

    /// Writes the file under a temporary name beside its final one
    /// (created exclusively, mode 0444) and fsyncs it.
    fn write_temp(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let temp = self
            .vsc_dir
            .join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let written = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        match written {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(format!("writing {}: {e}", temp.display()))
            }
        }
    }
}

/// The final name a temporary name `.<name>.<16 hex>.tmp` stands for.
fn target_of_temp(temp: &str) -> Option<String> {
    let inner = temp.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, tag) = inner.rsplit_once('.')?;
    (tag.len() == 16 && tag.chars().all(|c| c.is_ascii_hexdigit())).then(|| name.to_string())
}

/// The files the last `sealed` entries name (the manifest's last 8 MiB:
/// far more than one group commit writes).
fn recent_sealed_files(manifest: &Path) -> io::Result<HashSet<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match fs::File::open(manifest) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(8 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    Ok(tail
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Envelope<ManifestBody>>(l).ok())
        .filter(|e| e.body.event == ManifestEvent::Sealed)
        .filter_map(|e| e.body.file)
        .collect())
}

impl Escrow for Archive {
    fn seal(&self, request: &SealRequest<'_>) -> Result<SealReceipt, EscrowError> {
        let err = |reason: String| EscrowError::Seal {
            serial: request.serial,
            reason,
        };
        check_text("job name", request.job).map_err(err)?;
        check_text("record id", request.record_id).map_err(err)?;
        let seen = VscFile::inspect(request.bytes)
            .map_err(|e| err(format!("the bytes are not a valid VSC: {e}")))?;
        if seen.header.uid != request.uid {
            return Err(err(format!(
                "the VSC's UID {} is not the request's {}",
                seen.header.uid, request.uid
            )));
        }
        if !seen
            .slots
            .iter()
            .any(|s| matches!(s, SlotInfo::Kek { key_id } if key_id.starts_with("archive-kek/")))
        {
            return Err(err(
                "the master VSC is not protected by the archive KEK (no archive-kek slot)".into(),
            ));
        }
        let name = file_name(request.serial, &request.uid);
        let target = self.vsc_dir.join(&name);
        if fs::symlink_metadata(&target).is_ok() {
            return Err(err(format!(
                "{} exists already: an archived master VSC is never rewritten",
                target.display()
            )));
        }
        let sha256 = chain::sha256_hex(request.bytes);
        let temp = self.write_temp(&name, request.bytes).map_err(err)?;
        let mut body = ManifestBody::event(ManifestEvent::Sealed, request.serial, request.uid);
        body.job = Some(request.job.to_string());
        body.record = Some(request.record_id.to_string());
        body.file = Some(name);
        body.size = Some(request.bytes.len() as u64);
        body.sha256 = Some(sha256.clone());
        // The committer names the file once its entry is durable (and
        // removes the temporary file if the entry is refused).
        let appended = self
            .log
            .append_publishing(body, Publish { temp, target })
            .map_err(|e| err(e.to_string()))?;
        Ok(SealReceipt {
            entry: appended.seq,
            sha256,
        })
    }

    fn record(&self, serial: u32, uid: Uid, outcome: &CardOutcome) -> Result<(), EscrowError> {
        let err = |reason: String| EscrowError::Record { serial, reason };
        let body = match outcome {
            CardOutcome::Issued => ManifestBody::event(ManifestEvent::Issued, serial, uid),
            CardOutcome::Void { reason } => {
                let mut b = ManifestBody::event(ManifestEvent::Void, serial, uid);
                let mut r: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                if r.len() > MAX_TEXT {
                    let mut end = MAX_TEXT;
                    while !r.is_char_boundary(end) {
                        end -= 1;
                    }
                    r.truncate(end);
                    r.push_str("… [cut]");
                }
                b.reason = Some(r);
                b
            }
        };
        self.log
            .append(body, None)
            .map(|_| ())
            .map_err(|e| err(e.to_string()))
    }
}

/// What `archive verify` found.
#[derive(Clone, Debug, Default)]
pub struct ArchiveReport {
    pub chain: ChainReport,
    /// Sealed entries.
    pub sealed: u64,
    /// Files that passed every check.
    pub files_ok: u64,
    /// The fingerprint of the key the manifest was checked against.
    pub verifier_fingerprint: String,
}

impl ArchiveReport {
    pub fn is_ok(&self) -> bool {
        self.chain.problems.is_empty()
    }
}

/// Checks one sealed file against its entry.
fn check_file(vsc_dir: &Path, body: &ManifestBody, line: &str) -> Vec<String> {
    let mut what = Vec::new();
    let Some(name) = &body.file else {
        return vec![format!("the sealed entry at {line} names no file")];
    };
    let path = vsc_dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return vec![format!("missing: it was sealed at {line} and has been removed")];
        }
        Err(e) => return vec![format!("cannot be read: {e}")],
    };
    if !meta.file_type().is_file() {
        return vec!["is not a regular file".into()];
    }
    if meta.mode() & 0o222 != 0 {
        what.push(format!(
            "is writable (mode {:04o}); sealed files are 0444",
            meta.mode() & 0o7777
        ));
    }
    if Some(meta.len()) != body.size {
        what.push(format!(
            "is {} bytes; the manifest ({line}) recorded {}",
            meta.len(),
            body.size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no size".into())
        ));
    }
    let bytes = match VscFile::read(&path) {
        Ok(b) => b,
        Err(e) => {
            what.push(format!("cannot be read: {e}"));
            return what;
        }
    };
    let digest = chain::sha256_hex(&bytes);
    if Some(&digest) != body.sha256.as_ref() {
        what.push(format!(
            "its SHA-256 is {digest}; the manifest ({line}) recorded {}: the file was changed",
            body.sha256.as_deref().unwrap_or("none")
        ));
    }
    match VscFile::inspect(&bytes) {
        Ok(seen) => {
            let uid = hex::encode(seen.header.uid.as_bytes());
            if uid != body.uid {
                what.push(format!(
                    "holds the VSC with UID {uid}; the manifest ({line}) says {}",
                    body.uid
                ));
            }
        }
        Err(e) => what.push(format!("is not a consistent VSC: {e}")),
    }
    what
}

/// Re-checks the whole archive: the manifest's chain (sequence, prev hashes,
/// signatures, head), every sealed file (present, read-only, size, SHA-256,
/// VSC consistency, UID), that outcomes refer to sealed cards, and that no
/// file is in `vsc/` without a sealed entry.
pub fn verify(data: &DataDir) -> Result<ArchiveReport, ArchiveError> {
    let verifier = audit_mod::load_verifier(data)?;
    let vsc_dir = data.archive_vsc();
    let mut referenced: HashMap<String, String> = HashMap::new();
    let mut sealed_cards: HashSet<(u32, String)> = HashSet::new();
    let mut sealed = 0u64;
    let mut files_ok = 0u64;
    let mut file_problems: Vec<Problem> = Vec::new();
    let mut chain =
        chain::verify_chain::<ManifestBody, _>(&spec(data), &verifier, |place, env, problems| {
            let b = &env.body;
            match b.event {
                ManifestEvent::Sealed => {
                    sealed += 1;
                    let expected = Uid::from_bytes(
                        hex::decode(&b.uid)
                            .ok()
                            .and_then(|v| <[u8; 16]>::try_from(v).ok())
                            .unwrap_or_default(),
                    );
                    let expected_name = file_name(b.serial, &expected);
                    match &b.file {
                        Some(f) if *f != expected_name || f.contains('/') => problems.push(Problem {
                            place: place.into(),
                            what: format!(
                                "names the file {f:?}; card {:08} with UID {} is {expected_name}",
                                b.serial, b.uid
                            ),
                        }),
                        Some(f) => {
                            if let Some(first) = referenced.get(f) {
                                problems.push(Problem {
                                    place: place.into(),
                                    what: format!("seals vsc/{f} again (first sealed at {first})"),
                                });
                            } else {
                                referenced.insert(f.clone(), place.to_string());
                                let what = check_file(&vsc_dir, b, place);
                                if what.is_empty() {
                                    files_ok += 1;
                                }
                                for w in what {
                                    file_problems.push(Problem {
                                        place: format!("vsc/{f}"),
                                        what: w,
                                    });
                                }
                            }
                        }
                        None => problems.push(Problem {
                            place: place.into(),
                            what: "a sealed entry without a file".into(),
                        }),
                    }
                    if b.sha256.is_none() || b.size.is_none() {
                        problems.push(Problem {
                            place: place.into(),
                            what: "a sealed entry without size or SHA-256".into(),
                        });
                    }
                    sealed_cards.insert((b.serial, b.uid.clone()));
                }
                event => {
                    if !sealed_cards.contains(&(b.serial, b.uid.clone())) {
                        problems.push(Problem {
                            place: place.into(),
                            what: format!(
                                "records {} for card {:08} (UID {}), which no earlier entry sealed",
                                event.as_str(),
                                b.serial,
                                b.uid
                            ),
                        });
                    }
                }
            }
        })?;
    chain.problems.extend(file_problems);
    chain.problems = chain::merge_by_place(std::mem::take(&mut chain.problems));

    // Files nobody sealed.
    match fs::read_dir(&vsc_dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if referenced.contains_key(&name) {
                    continue;
                }
                if fsio::is_temp_name(&name) {
                    chain.notes.push(format!(
                        "vsc/{name}: left by an interrupted seal (never acknowledged; the keyserver removes it when it starts)"
                    ));
                } else {
                    chain.problems.push(Problem {
                        place: format!("vsc/{name}"),
                        what: "added: no sealed entry of the manifest names this file".into(),
                    });
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && referenced.is_empty() => {}
        Err(e) => {
            return Err(ArchiveError::Io {
                op: "listing",
                path: vsc_dir,
                source: e,
            })
        }
    }
    Ok(ArchiveReport {
        chain,
        sealed,
        files_ok,
        verifier_fingerprint: verifier.fingerprint(),
    })
}

/// One archived card, as the manifest tells it (not verified: see [`verify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardHistory {
    pub serial: u32,
    pub uid: String,
    pub file: Option<String>,
    pub job: Option<String>,
    pub record: Option<String>,
    /// `(seq, time, event, reason)`, oldest first.
    pub events: Vec<(u64, String, ManifestEvent, Option<String>)>,
}

impl CardHistory {
    /// The latest event.
    pub fn status(&self) -> Option<ManifestEvent> {
        self.events.last().map(|e| e.2)
    }
}

/// Every card in the manifest, in the order they were sealed. Lines that
/// are not entries are skipped and counted.
pub fn cards(data: &DataDir) -> Result<(Vec<CardHistory>, usize), ArchiveError> {
    cards_at(&data.manifest())
}

fn cards_at(path: &Path) -> Result<(Vec<CardHistory>, usize), ArchiveError> {
    let path = path.to_path_buf();
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => {
            return Err(ArchiveError::Io {
                op: "reading",
                path,
                source,
            })
        }
    };
    let mut order = Vec::new();
    let mut by_card: BTreeMap<(u32, String), CardHistory> = BTreeMap::new();
    let mut skipped = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(env) = serde_json::from_slice::<Envelope<ManifestBody>>(line) else {
            skipped += 1;
            continue;
        };
        let b = env.body;
        let key = (b.serial, b.uid.clone());
        let card = by_card.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            CardHistory {
                serial: b.serial,
                uid: b.uid.clone(),
                file: None,
                job: None,
                record: None,
                events: Vec::new(),
            }
        });
        if b.event == ManifestEvent::Sealed {
            card.file = b.file.clone();
            card.job = b.job.clone();
            card.record = b.record.clone();
        }
        card.events.push((env.seq, env.time, b.event, b.reason));
    }
    Ok((
        order.into_iter().filter_map(|k| by_card.remove(&k)).collect(),
        skipped,
    ))
}

/// The cards with `serial` (more than one after a reissue with a new UID).
pub fn card(data: &DataDir, serial: u32) -> Result<Vec<CardHistory>, ArchiveError> {
    let found: Vec<CardHistory> = cards(data)?
        .0
        .into_iter()
        .filter(|c| c.serial == serial)
        .collect();
    if found.is_empty() {
        return Err(ArchiveError::UnknownSerial(serial));
    }
    Ok(found)
}
