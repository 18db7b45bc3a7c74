//! The station's local journal: every request, durably, before it leaves.
//!
//! A sled database in one directory (`--journal DIR`), locked by one
//! station process at a time (`DIR/LOCK`, an advisory lock). Two trees:
//!
//! - `meta`: `station` (the bundle's station name; a journal belongs to one
//!   station), `instance` (16 random hex digits made when the journal was
//!   created), `next_seq` (u64, big-endian);
//! - `requests`: one JSON [`Entry`] per request, keyed by its request id
//!   `<instance>-<seq, 10 digits>`: ids never repeat within a journal,
//!   and a new journal (a deleted directory) has a new instance, so a
//!   station never reuses a request id the keyserver has seen — the
//!   keyserver answers a known request id with that request's recorded
//!   Result, which must never be taken for a new card's.
//!
//! An entry is written (and made durable: sled's flush, then fsync of every
//! file and directory of the journal — sled's flush alone uses
//! `sync_file_range`, which is not durable) **before** its PersoRequest is
//! sent, and again when the card is done. At start, entries still in
//! flight belong to a run that stopped abruptly: [`Journal::recover`]
//! closes them as rejected and *unsettled*; the control loop asks the
//! keyserver for their recorded Result once connected and notes it
//! ([`Journal::settle`]).
//!
//! The journal holds no key and no cardholder data: reader, job, protocol,
//! ATR, the card's serial and the keyserver's reason.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::readers::Bin;

const TREE_META: &str = "meta";
const TREE_REQUESTS: &str = "requests";
const KEY_STATION: &[u8] = b"station";
const KEY_INSTANCE: &[u8] = b"instance";
const KEY_NEXT_SEQ: &[u8] = b"next_seq";

/// The journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {dir}: {op}: {source}")]
    Io {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("journal {dir} is in use by another station process")]
    Locked { dir: PathBuf },
    #[error("journal {dir} belongs to station {journal:?}, not {station:?}: give this station a journal of its own (--journal)")]
    OtherStation {
        dir: PathBuf,
        journal: String,
        station: String,
    },
    #[error("journal {dir}: {op}: {source}")]
    Store {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("journal {dir}: {what} is damaged: {reason}")]
    Corrupt {
        dir: PathBuf,
        what: String,
        reason: String,
    },
    #[error("journal {dir}: no request {request_id:?}")]
    NoRequest { dir: PathBuf, request_id: String },
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Sent (or about to be): the card's end is not known yet.
    InFlight,
    /// The card is in its bin.
    Done,
}

/// What the keyserver recorded for a request (its Result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The keyserver issued the card (`OUTCOME_OK`).
    pub ok: bool,
    pub reason: String,
    pub card_serial: String,
    pub round_trips: u32,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub request_id: String,
    pub seq: u64,
    pub reader: String,
    pub job: String,
    pub protocol: u32,
    /// The ATR, hex.
    pub atr: String,
    /// pcscd's event count for the card (PC/SC readers only): at a restart,
    /// the same count in the same reader is the same card.
    pub event_count: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub opened_ms: u64,
    pub state: EntryState,
    pub bin: Option<Bin>,
    /// Why the card went where it went (the keyserver's reason, or the
    /// station's).
    pub reason: String,
    pub closed_ms: Option<u64>,
    /// The keyserver's Result, once known.
    pub keyserver: Option<Verdict>,
    /// Closed without the keyserver's Result (the station stopped, the
    /// connection was lost): it is asked for again.
    pub unsettled: bool,
    /// Closed at a restart after the station stopped abruptly.
    pub recovered: bool,
}

/// A request about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub reader: String,
    pub job: String,
    pub protocol: u32,
    pub atr: Vec<u8>,
    pub event_count: Option<u32>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub bin: Bin,
    pub reason: String,
    pub keyserver: Option<Verdict>,
}

/// The open journal.
pub struct Journal {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    requests: sled::Tree,
    instance: String,
    station: String,
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("station", &self.station)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsync of every file under `dir`, then of each directory.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            match File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                // sled may remove a file meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    sync_dir(dir)
}

fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        create_dir_durable(&parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(&parent)
}

/// The default journal directory for `station`:
/// `$XDG_STATE_HOME/cardsmith/station-<name>` (or
/// `~/.local/state/cardsmith/…`), else `./station-journal`.
pub fn default_dir(station: &str) -> PathBuf {
    let safe: String = station
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match state {
        Some(s) => s.join("cardsmith").join(format!("station-{safe}")),
        None => PathBuf::from("station-journal"),
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir` for `station`.
    pub fn open(dir: &Path, station: &str) -> Result<Self, JournalError> {
        Self::open_as(dir, Some(station))
    }

    fn open_as(dir: &Path, station: Option<&str>) -> Result<Self, JournalError> {
        let io_err = |op: &'static str| {
            let dir = dir.to_path_buf();
            move |source| JournalError::Io { dir, op, source }
        };
        create_dir_durable(dir).map_err(io_err("create the directory"))?;
        let lock_path = dir.join("LOCK");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open the lock file"))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => {
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("lock")(e)),
        }
        let store = |op: &'static str| {
            let dir = dir.to_path_buf();
            move |source| JournalError::Store { dir, op, source }
        };
        let db = sled::Config::new()
            .path(dir.join("db"))
            .open()
            .map_err(store("open the database"))?;
        let meta = db.open_tree(TREE_META).map_err(store("open its trees"))?;
        let requests = db.open_tree(TREE_REQUESTS).map_err(store("open its trees"))?;
        let text = |key: &[u8]| -> Result<Option<String>, JournalError> {
            match meta.get(key).map_err(store("read its identity"))? {
                None => Ok(None),
                Some(v) => String::from_utf8(v.to_vec())
                    .map(Some)
                    .map_err(|e| JournalError::Corrupt {
                        dir: dir.to_path_buf(),
                        what: String::from_utf8_lossy(key).into_owned(),
                        reason: e.to_string(),
                    }),
            }
        };
        let station = match (text(KEY_STATION)?, station) {
            (Some(s), Some(want)) if s != want => {
                return Err(JournalError::OtherStation {
                    dir: dir.to_path_buf(),
                    journal: s,
                    station: want.to_owned(),
                })
            }
            (Some(s), _) => s,
            (None, Some(want)) => {
                meta.insert(KEY_STATION, want.as_bytes())
                    .map_err(store("record its station"))?;
                want.to_owned()
            }
            (None, None) => {
                return Err(JournalError::Corrupt {
                    dir: dir.to_path_buf(),
                    what: "its identity".into(),
                    reason: "it names no station".into(),
                })
            }
        };
        let instance = match text(KEY_INSTANCE)? {
            Some(i) => i,
            None => {
                let i = hex::encode(rand::random::<[u8; 8]>());
                meta.insert(KEY_INSTANCE, i.as_bytes())
                    .map_err(store("record its instance"))?;
                i
            }
        };
        let journal = Journal {
            dir: dir.to_path_buf(),
            db,
            meta,
            requests,
            instance,
            station,
            _lock: lock,
        };
        journal.durable("make its identity durable")?;
        Ok(journal)
    }

    /// Opens an existing journal, whatever station it belongs to (to read
    /// it).
    pub fn open_existing(dir: &Path) -> Result<Self, JournalError> {
        if !dir.join("db").is_dir() {
            return Err(JournalError::Io {
                dir: dir.to_path_buf(),
                op: "open",
                source: io::Error::new(io::ErrorKind::NotFound, "there is no journal in this directory"),
            });
        }
        Self::open_as(dir, None)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn station(&self) -> &str {
        &self.station
    }

    /// Makes everything written so far durable.
    fn durable(&self, op: &'static str) -> Result<(), JournalError> {
        self.db.flush().map_err(|source| JournalError::Store {
            dir: self.dir.clone(),
            op,
            source,
        })?;
        sync_tree(&self.dir).map_err(|source| JournalError::Io {
            dir: self.dir.clone(),
            op,
            source,
        })
    }

    fn store_err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> JournalError + '_ {
        move |source| JournalError::Store {
            dir: self.dir.clone(),
            op,
            source,
        }
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<Entry, JournalError> {
        serde_json::from_slice(value).map_err(|e| JournalError::Corrupt {
            dir: self.dir.clone(),
            what: format!("request {}", String::from_utf8_lossy(key)),
            reason: e.to_string(),
        })
    }

    fn encode(entry: &Entry) -> Vec<u8> {
        // An Entry of strings and numbers always serializes.
        serde_json::to_vec(entry).unwrap_or_default()
    }

    /// Records a new request under a new request id, durably.
    pub fn begin(&self, request: NewRequest) -> Result<Entry, JournalError> {
        let instance = self.instance.clone();
        let result = (&self.meta, &self.requests).transaction(|(meta, requests)| {
            let seq = match meta.get(KEY_NEXT_SEQ)? {
                Some(v) => <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .unwrap_or(1),
                None => 1,
            };
            meta.insert(KEY_NEXT_SEQ, &seq.saturating_add(1).to_be_bytes())?;
            let entry = Entry {
                request_id: format!("{instance}-{seq:010}"),
                seq,
                reader: request.reader.clone(),
                job: request.job.clone(),
                protocol: request.protocol,
                atr: hex::encode(&request.atr),
                event_count: request.event_count,
                opened_ms: now_ms(),
                state: EntryState::InFlight,
                bin: None,
                reason: String::new(),
                closed_ms: None,
                keyserver: None,
                unsettled: false,
                recovered: false,
            };
            requests.insert(entry.request_id.as_bytes(), Self::encode(&entry))?;
            Ok(entry)
        });
        let entry = result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(()) => JournalError::Corrupt {
                dir: self.dir.clone(),
                what: "the request counter".into(),
                reason: "transaction aborted".into(),
            },
            sled::transaction::TransactionError::Storage(source) => JournalError::Store {
                dir: self.dir.clone(),
                op: "record a request",
                source,
            },
        })?;
        self.durable("make a request durable")?;
        Ok(entry)
    }

    fn update(
        &self,
        request_id: &str,
        op: &'static str,
        f: impl Fn(&mut Entry),
    ) -> Result<Entry, JournalError> {
        let key = request_id.as_bytes();
        let Some(old) = self.requests.get(key).map_err(self.store_err(op))? else {
            return Err(JournalError::NoRequest {
                dir: self.dir.clone(),
                request_id: request_id.to_owned(),
            });
        };
        let mut entry = self.decode(key, &old)?;
        f(&mut entry);
        self.requests
            .insert(key, Self::encode(&entry))
            .map_err(self.store_err(op))?;
        self.durable(op)?;
        Ok(entry)
    }

    /// Records how a request ended, durably. Without the keyserver's
    /// verdict the entry is unsettled.
    pub fn close(&self, request_id: &str, closing: &Closing) -> Result<Entry, JournalError> {
        self.update(request_id, "record a card's end", |e| {
            e.state = EntryState::Done;
            e.bin = Some(closing.bin);
            e.reason = closing.reason.clone();
            e.closed_ms = Some(now_ms());
            e.unsettled = closing.keyserver.is_none();
            e.keyserver = closing.keyserver.clone();
        })
    }

    /// Records the keyserver's verdict for an unsettled request.
    pub fn settle(&self, request_id: &str, verdict: &Verdict) -> Result<Entry, JournalError> {
        self.update(request_id, "record a settled request", |e| {
            e.keyserver = Some(verdict.clone());
            e.unsettled = false;
        })
    }

    /// Every request, in the order they were made.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        for kv in self.requests.iter() {
            let (k, v) = kv.map_err(self.store_err("read the requests"))?;
            out.push(self.decode(&k, &v)?);
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Closes every request still in flight (left by a run that stopped
    /// abruptly) as rejected and unsettled; returns them.
    pub fn recover(&self) -> Result<Vec<Entry>, JournalError> {
        let open: Vec<Entry> = self
            .entries()?
            .into_iter()
            .filter(|e| e.state == EntryState::InFlight)
            .collect();
        let mut out = Vec::with_capacity(open.len());
        for e in open {
            out.push(self.update(&e.request_id, "close a request left in flight", |e| {
                e.state = EntryState::Done;
                e.bin = Some(Bin::Reject);
                e.reason = "the station stopped while the card was in flight".into();
                e.closed_ms = Some(now_ms());
                e.unsettled = true;
                e.recovered = true;
            })?);
        }
        Ok(out)
    }

    /// The requests closed without the keyserver's verdict.
    pub fn unsettled(&self) -> Result<Vec<Entry>, JournalError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.state == EntryState::Done && e.unsettled)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(reader: &str) -> NewRequest {
        NewRequest {
            reader: reader.into(),
            job: "people".into(),
            protocol: 2,
            atr: vec![0x3B, 0x80],
            event_count: Some(3),
        }
    }

    #[test]
    fn requests_get_new_ids_that_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (a, b, instance) = {
            let j = Journal::open(&path, "desk-1").unwrap();
            let a = j.begin(req("r0")).unwrap();
            let b = j.begin(req("r1")).unwrap();
            assert_eq!(a.seq, 1);
            assert_eq!(b.seq, 2);
            assert_eq!(a.state, EntryState::InFlight);
            assert_eq!(a.atr, "3b80");
            (a, b, j.instance.clone())
        };
        assert!(a.request_id.starts_with(&instance));
        assert_ne!(a.request_id, b.request_id);
        let j = Journal::open(&path, "desk-1").unwrap();
        let c = j.begin(req("r0")).unwrap();
        assert_eq!(c.seq, 3);
        assert_eq!(j.entries().unwrap().len(), 3);
        // A new journal elsewhere has another instance: no id is reused.
        let other = Journal::open(&dir.path().join("k"), "desk-1").unwrap();
        let d = other.begin(req("r0")).unwrap();
        assert_ne!(d.request_id, a.request_id);
    }

    #[test]
    fn one_process_one_station_per_journal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "desk-1").unwrap();
        assert!(matches!(
            Journal::open(dir.path(), "desk-1"),
            Err(JournalError::Locked { .. })
        ));
        drop(j);
        assert!(matches!(
            Journal::open(dir.path(), "desk-2"),
            Err(JournalError::OtherStation { .. })
        ));
    }

    #[test]
    fn close_recover_and_settle() {
        let dir = tempfile::tempdir().unwrap();
        let (done, open) = {
            let j = Journal::open(dir.path(), "desk-1").unwrap();
            let done = j.begin(req("r0")).unwrap();
            let v = Verdict {
                ok: true,
                reason: String::new(),
                card_serial: "00001234".into(),
                round_trips: 2,
            };
            let closed = j
                .close(
                    &done.request_id,
                    &Closing {
                        bin: Bin::Pass,
                        reason: "issued".into(),
                        keyserver: Some(v),
                    },
                )
                .unwrap();
            assert_eq!(closed.state, EntryState::Done);
            assert!(!closed.unsettled);
            let open = j.begin(req("r1")).unwrap();
            (done, open)
        };
        let j = Journal::open(dir.path(), "desk-1").unwrap();
        let recovered = j.recover().unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].request_id, open.request_id);
        assert_eq!(recovered[0].bin, Some(Bin::Reject));
        assert!(recovered[0].unsettled && recovered[0].recovered);
        assert!(j.recover().unwrap().is_empty());
        let unsettled = j.unsettled().unwrap();
        assert_eq!(unsettled.len(), 1);
        let v = Verdict {
            ok: false,
            reason: "the card was removed".into(),
            card_serial: String::new(),
            round_trips: 1,
        };
        let settled = j.settle(&open.request_id, &v).unwrap();
        assert_eq!(settled.keyserver, Some(v));
        assert!(j.unsettled().unwrap().is_empty());
        let all = j.entries().unwrap();
        assert_eq!(all[0].request_id, done.request_id);
        assert_eq!(all[0].bin, Some(Bin::Pass));
        assert!(matches!(
            j.settle("nope", &all[0].keyserver.clone().unwrap()),
            Err(JournalError::NoRequest { .. })
        ));
    }

    #[test]
    fn the_default_directory_names_the_station() {
        let d = default_dir("desk 1/x");
        assert!(d.ends_with("station-desk_1_x") || d == Path::new("station-journal"));
    }
}
