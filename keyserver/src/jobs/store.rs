//! The job store: jobs, records, station requests and job output in sled.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use vsc::secret::{AesKey, SecretBytes};
use zeroize::Zeroizing;

use super::csv_input::{read_records, RowErrors};
use super::seal::{record_aad, secrets_aad, SealError, Sealer};
use super::{valid_job_name, valid_key_part};
use crate::ports::{CardEngine, CardOutcome, IssuedSecrets};
use crate::record::Record;

const TREE_JOBS: &str = "jobs.meta";
const TREE_RECORDS: &str = "jobs.records";
const TREE_QUEUE: &str = "jobs.queue";
const TREE_REQUESTS: &str = "jobs.requests";
const TREE_OUTPUT: &str = "jobs.output";

/// A job store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {job:?} was not submitted: {errors}")]
    Invalid { job: String, errors: RowErrors },
    #[error(
        "job name {0:?} is not valid: 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with . or -"
    )]
    BadJobName(String),
    #[error("job {0:?} already exists (submit the new records under another job name)")]
    JobExists(String),
    #[error("there is no job {0:?}")]
    UnknownJob(String),
    #[error("job {job:?} has no queued record left")]
    NoQueuedRecord { job: String },
    #[error("station {station:?} request {request_id:?} is not valid: {reason}")]
    BadRequest {
        station: String,
        request_id: String,
        reason: String,
    },
    #[error(
        "station {station:?} already used request id {request_id:?} for job {reserved_job:?}, not {job:?}"
    )]
    RequestForOtherJob {
        station: String,
        request_id: String,
        job: String,
        reserved_job: String,
    },
    #[error("station {station:?} has no request {request_id:?}")]
    UnknownRequest { station: String, request_id: String },
    #[error("station {station:?} request {request_id:?} is not in flight: its card is already done")]
    NotInFlight { station: String, request_id: String },
    #[error("the job store could not {op}: {source}")]
    Store {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("the job store's entry for {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("the sealed fields of {what}: {source}")]
    Seal {
        what: String,
        #[source]
        source: SealError,
    },
}

fn store(op: &'static str) -> impl FnOnce(sled::Error) -> JobError {
    move |source| JobError::Store { op, source }
}

fn tx_error(op: &'static str) -> impl FnOnce(TransactionError<JobError>) -> JobError {
    move |e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(source) => JobError::Store { op, source },
    }
}

/// What a job's CSV is submitted as.
#[derive(Debug)]
pub struct Submission<'a> {
    pub job: &'a str,
    pub profile: &'a str,
    pub stock: &'a str,
    pub csv: &'a [u8],
}

/// A job's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub job: String,
    pub profile: String,
    pub stock: String,
    pub total: u64,
    pub issued: u64,
    /// Cards voided (each void puts its record back in the queue, until
    /// the record is held).
    pub voided: u64,
    pub queued: u64,
    pub in_flight: u64,
    /// Records held after [`MAX_CARD_FAILURES`] failed cards: not queued
    /// again (correct the record and submit it in a new job).
    pub held: u64,
    /// The most round trips any card of the job took.
    pub max_round_trips: u32,
}

/// After this many of its cards failed (voided when the card itself
/// failed: removed, refused, an error — not a keyserver restart or a
/// station that vanished), a record is held rather than queued again, so
/// that one bad record cannot use up the card stock.
pub const MAX_CARD_FAILURES: u32 = 3;

/// A record reserved for a station's request. (Its `Debug` leaves out the
/// record's fields: they hold secrets.)
#[derive(Clone)]
pub struct Reserved {
    pub job: String,
    pub profile: String,
    pub stock: String,
    pub reader: String,
    pub atr: Vec<u8>,
    /// The record, opened (its fields are the cardholder's data).
    pub record: Record,
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved")
            .field("job", &self.job)
            .field("profile", &self.profile)
            .field("stock", &self.stock)
            .field("reader", &self.reader)
            .field("record", &self.record.id)
            .finish_non_exhaustive()
    }
}

/// The recorded end of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub job: String,
    pub record_id: String,
    pub issued: bool,
    /// The record is held: this void was its last allowed failure.
    pub held: bool,
    pub reason: String,
    pub serial: Option<u32>,
    pub round_trips: u32,
}

/// What a station's request maps to.
#[derive(Clone, Debug)]
pub enum Reservation {
    /// A record is in flight for it.
    InFlight(Reserved),
    /// Its card is done.
    Finished(Recorded),
}

/// How a card ended, as the store records it.
#[derive(Debug)]
pub struct CardResult {
    pub outcome: CardOutcome,
    pub serial: Option<u32>,
    pub round_trips: u32,
}

/// A request left in flight (voided by [`JobStore::void_in_flight`] or
/// [`JobStore::void_stale`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleRequest {
    pub station: String,
    pub request_id: String,
    pub job: String,
    pub record_id: String,
}

#[derive(Serialize, Deserialize)]
struct JobMeta {
    profile: String,
    stock: String,
    created: i64,
    total: u64,
    issued: u64,
    voided: u64,
    queued: u64,
    in_flight: u64,
    max_round_trips: u32,
    /// Records held (absent in job stores written before holding existed).
    #[serde(default)]
    held: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum RecordState {
    Queued,
    /// Too many of its cards failed: not queued again.
    Held {
        reason: String,
    },
    InFlight {
        station: String,
        request_id: String,
    },
    Issued {
        station: String,
        request_id: String,
        serial: Option<u32>,
    },
}

#[derive(Serialize, Deserialize)]
struct RecordEntry {
    seq: u64,
    #[serde(flatten)]
    state: RecordState,
    voids: u32,
    /// The fields, sealed (base64).
    sealed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum RequestState {
    InFlight,
    Finished {
        issued: bool,
        reason: String,
        serial: Option<u32>,
        round_trips: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct RequestEntry {
    job: String,
    record_id: String,
    reader: String,
    atr: String,
    reserved: i64,
    #[serde(flatten)]
    state: RequestState,
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn queue_key(job: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(job.len() + 9);
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(job: &str) -> Vec<u8> {
    let mut k = job.as_bytes().to_vec();
    k.push(0);
    k
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn decode<T: for<'de> Deserialize<'de>>(what: impl FnOnce() -> String, bytes: &[u8]) -> Result<T, JobError> {
    serde_json::from_slice(bytes).map_err(|e| JobError::Corrupt {
        what: what(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(what: impl FnOnce() -> String, value: &T) -> Result<Vec<u8>, JobError> {
    serde_json::to_vec(value).map_err(|e| JobError::Corrupt {
        what: what(),
        reason: e.to_string(),
    })
}

fn abort(e: JobError) -> ConflictableTransactionError<JobError> {
    ConflictableTransactionError::Abort(e)
}

fn tx_get<T: for<'de> Deserialize<'de>>(
    tree: &TransactionalTree,
    key: &[u8],
    what: impl Fn() -> String,
) -> Result<Option<T>, ConflictableTransactionError<JobError>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => decode(&what, &v).map(Some).map_err(abort),
    }
}

fn tx_put<T: Serialize>(
    tree: &TransactionalTree,
    key: &[u8],
    value: &T,
    what: impl Fn() -> String,
) -> Result<(), ConflictableTransactionError<JobError>> {
    let bytes = encode(&what, value).map_err(abort)?;
    tree.insert(key, bytes)?;
    Ok(())
}

/// Jobs, records, station requests and job output, in sled.
pub struct JobStore {
    db: sled::Db,
    jobs: sled::Tree,
    records: sled::Tree,
    queue: sled::Tree,
    requests: sled::Tree,
    output: sled::Tree,
    sealer: Sealer,
    /// Serializes every change (reservation scans the queue outside a
    /// transaction).
    write: Mutex<()>,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore").finish_non_exhaustive()
    }
}

impl JobStore {
    /// Opens the store's trees in `db`; `records_key` (AES-256, from
    /// custody) seals the records' fields and the job output.
    pub fn open(db: &sled::Db, records_key: &AesKey) -> Result<Self, JobError> {
        let sealer = Sealer::new(records_key).map_err(|source| JobError::Seal {
            what: "the job store".into(),
            source,
        })?;
        let tree = |name: &'static str| db.open_tree(name).map_err(store("open its trees"));
        Ok(JobStore {
            db: db.clone(),
            jobs: tree(TREE_JOBS)?,
            records: tree(TREE_RECORDS)?,
            queue: tree(TREE_QUEUE)?,
            requests: tree(TREE_REQUESTS)?,
            output: tree(TREE_OUTPUT)?,
            sealer,
            write: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves sled consistent (every
        // change is one transaction): the guard is still usable.
        self.write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn flush(&self, op: &'static str) -> Result<(), JobError> {
        self.db.flush().map(|_| ()).map_err(store(op))
    }

    /// Checks every row of a CSV file and queues its records as a new job,
    /// all in one transaction, or nothing. Returns the number of records.
    pub fn submit(&self, engine: &dyn CardEngine, s: &Submission<'_>) -> Result<u64, JobError> {
        if !valid_job_name(s.job) {
            return Err(JobError::BadJobName(s.job.to_string()));
        }
        if self.jobs.contains_key(s.job).map_err(store("look up a job"))? {
            return Err(JobError::JobExists(s.job.to_string()));
        }
        if !valid_key_part(s.stock) {
            let mut errors = RowErrors::default();
            errors.errors.push(super::RowError {
                row: 0,
                field: None,
                problem: format!("stock name {:?} is not valid", s.stock),
            });
            return Err(JobError::Invalid {
                job: s.job.to_string(),
                errors,
            });
        }
        let records = read_records(engine, s.profile, s.csv).map_err(|errors| JobError::Invalid {
            job: s.job.to_string(),
            errors,
        })?;

        // Seal before the transaction (a retried transaction reuses them).
        let mut sealed = Vec::with_capacity(records.len());
        for (seq, r) in records.iter().enumerate() {
            let plain = Zeroizing::new(encode(|| format!("record {:?}", r.id), &r.fields)?);
            let blob = self
                .sealer
                .seal(&record_aad(s.job, &r.id), &plain)
                .map_err(|source| JobError::Seal {
                    what: format!("job {:?} record {:?}", s.job, r.id),
                    source,
                })?;
            let entry = RecordEntry {
                seq: seq as u64,
                state: RecordState::Queued,
                voids: 0,
                sealed: B64.encode(blob),
            };
            sealed.push((r.id.as_str(), seq as u64, entry));
        }
        let total = records.len() as u64;
        let meta = JobMeta {
            profile: s.profile.to_string(),
            stock: s.stock.to_string(),
            created: now(),
            total,
            issued: 0,
            voided: 0,
            queued: total,
            in_flight: 0,
            max_round_trips: 0,
            held: 0,
        };

        let _guard = self.lock();
        (&self.jobs, &self.records, &self.queue)
            .transaction(|(jobs, recs, queue)| {
                if jobs.get(s.job)?.is_some() {
                    return Err(abort(JobError::JobExists(s.job.to_string())));
                }
                tx_put(jobs, s.job.as_bytes(), &meta, || format!("job {:?}", s.job))?;
                for (id, seq, entry) in &sealed {
                    tx_put(recs, &key2(s.job, id), entry, || format!("record {id:?}"))?;
                    queue.insert(queue_key(s.job, *seq), id.as_bytes())?;
                }
                Ok(())
            })
            .map_err(tx_error("queue the job's records"))?;
        self.flush("make the job durable")?;
        Ok(total)
    }

    /// The names of every job.
    pub fn job_names(&self) -> Result<Vec<String>, JobError> {
        let mut names = Vec::new();
        for kv in self.jobs.iter() {
            let (k, _) = kv.map_err(store("list jobs"))?;
            names.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(names)
    }

    /// One job's progress, or every job's (`None`).
    pub fn status(&self, job: Option<&str>) -> Result<Vec<JobCounts>, JobError> {
        let counts = |name: &str, bytes: &[u8]| -> Result<JobCounts, JobError> {
            let m: JobMeta = decode(|| format!("job {name:?}"), bytes)?;
            Ok(JobCounts {
                job: name.to_string(),
                profile: m.profile,
                stock: m.stock,
                total: m.total,
                issued: m.issued,
                voided: m.voided,
                queued: m.queued,
                in_flight: m.in_flight,
                held: m.held,
                max_round_trips: m.max_round_trips,
            })
        };
        match job {
            Some(name) => {
                let v = self
                    .jobs
                    .get(name)
                    .map_err(store("read a job"))?
                    .ok_or_else(|| JobError::UnknownJob(name.to_string()))?;
                Ok(vec![counts(name, &v)?])
            }
            None => {
                let mut all = Vec::new();
                for kv in self.jobs.iter() {
                    let (k, v) = kv.map_err(store("list jobs"))?;
                    all.push(counts(&String::from_utf8_lossy(&k), &v)?);
                }
                Ok(all)
            }
        }
    }

    fn open_record(&self, job: &str, record_id: &str, entry: &RecordEntry) -> Result<Record, JobError> {
        let what = || format!("job {job:?} record {record_id:?}");
        let blob = B64.decode(&entry.sealed).map_err(|e| JobError::Corrupt {
            what: what(),
            reason: e.to_string(),
        })?;
        let plain = self
            .sealer
            .open(&record_aad(job, record_id), &blob)
            .map_err(|source| JobError::Seal { what: what(), source })?;
        // (No decoder message: it could quote a field.)
        let fields = serde_json::from_slice(&plain).map_err(|_| JobError::Corrupt {
            what: what(),
            reason: "its opened fields are not a field map".into(),
        })?;
        Ok(Record {
            id: record_id.to_string(),
            fields,
        })
    }

    fn reservation(
        &self,
        station: &str,
        request_id: &str,
        entry: RequestEntry,
    ) -> Result<Reservation, JobError> {
        match entry.state {
            RequestState::Finished {
                issued,
                reason,
                serial,
                round_trips,
            } => Ok(Reservation::Finished(Recorded {
                job: entry.job,
                record_id: entry.record_id,
                issued,
                // (What the station is told again needs only the outcome.)
                held: false,
                reason,
                serial,
                round_trips,
            })),
            RequestState::InFlight => {
                let what = || format!("station {station:?} request {request_id:?}");
                let meta: JobMeta = match self.jobs.get(&entry.job).map_err(store("read a job"))? {
                    Some(v) => decode(what, &v)?,
                    None => return Err(JobError::UnknownJob(entry.job)),
                };
                let rec: RecordEntry = match self
                    .records
                    .get(key2(&entry.job, &entry.record_id))
                    .map_err(store("read a record"))?
                {
                    Some(v) => decode(what, &v)?,
                    None => {
                        return Err(JobError::Corrupt {
                            what: what(),
                            reason: format!("its record {:?} is missing", entry.record_id),
                        })
                    }
                };
                let record = self.open_record(&entry.job, &entry.record_id, &rec)?;
                Ok(Reservation::InFlight(Reserved {
                    atr: hex::decode(&entry.atr).unwrap_or_default(),
                    job: entry.job,
                    profile: meta.profile,
                    stock: meta.stock,
                    reader: entry.reader,
                    record,
                }))
            }
        }
    }

    /// What a station's request maps to, if anything.
    pub fn lookup(&self, station: &str, request_id: &str) -> Result<Option<Reservation>, JobError> {
        let Some(v) = self
            .requests
            .get(key2(station, request_id))
            .map_err(store("read a request"))?
        else {
            return Ok(None);
        };
        let entry: RequestEntry = decode(|| format!("station {station:?} request {request_id:?}"), &v)?;
        self.reservation(station, request_id, entry).map(Some)
    }

    /// Reserves the next queued record of `job` for (station, request id);
    /// the same request again gets the same reservation or its recorded
    /// result. Returns whether a new reservation was made.
    pub fn reserve(
        &self,
        station: &str,
        request_id: &str,
        job: &str,
        reader: &str,
        atr: &[u8],
    ) -> Result<(Reservation, bool), JobError> {
        let bad = |reason: &str| JobError::BadRequest {
            station: station.to_string(),
            request_id: request_id.to_string(),
            reason: reason.to_string(),
        };
        if !valid_key_part(station) {
            return Err(bad(
                "the station name is empty, too long or has control characters",
            ));
        }
        if !valid_key_part(request_id) {
            return Err(bad("the request id is empty, too long or has control characters"));
        }
        let _guard = self.lock();
        let rkey = key2(station, request_id);
        if let Some(v) = self.requests.get(&rkey).map_err(store("read a request"))? {
            let entry: RequestEntry = decode(|| format!("station {station:?} request {request_id:?}"), &v)?;
            if entry.job != job {
                return Err(JobError::RequestForOtherJob {
                    station: station.to_string(),
                    request_id: request_id.to_string(),
                    job: job.to_string(),
                    reserved_job: entry.job,
                });
            }
            return Ok((self.reservation(station, request_id, entry)?, false));
        }
        if !self.jobs.contains_key(job).map_err(store("look up a job"))? {
            return Err(JobError::UnknownJob(job.to_string()));
        }
        let Some(first) = self.queue.scan_prefix(prefix(job)).next() else {
            return Err(JobError::NoQueuedRecord { job: job.to_string() });
        };
        let (qkey, rid) = first.map_err(store("read the queue"))?;
        let record_id = String::from_utf8(rid.to_vec()).map_err(|e| JobError::Corrupt {
            what: format!("job {job:?} queue"),
            reason: e.to_string(),
        })?;
        // Open the record before anything changes: a record that does not
        // open (wrong records key, corruption) is never reserved.
        let what_rec = || format!("job {job:?} record {record_id:?}");
        let entry: RecordEntry = match self
            .records
            .get(key2(job, &record_id))
            .map_err(store("read a record"))?
        {
            Some(v) => decode(what_rec, &v)?,
            None => {
                return Err(JobError::Corrupt {
                    what: what_rec(),
                    reason: "queued but missing".into(),
                })
            }
        };
        let record = self.open_record(job, &record_id, &entry)?;
        let meta: JobMeta = match self.jobs.get(job).map_err(store("read a job"))? {
            Some(v) => decode(|| format!("job {job:?}"), &v)?,
            None => return Err(JobError::UnknownJob(job.to_string())),
        };
        let request = RequestEntry {
            job: job.to_string(),
            record_id: record_id.clone(),
            reader: reader.to_string(),
            atr: hex::encode(atr),
            reserved: now(),
            state: RequestState::InFlight,
        };
        (&self.jobs, &self.records, &self.queue, &self.requests)
            .transaction(|(jobs, recs, queue, reqs)| {
                let what_job = || format!("job {job:?}");
                let what_rec = || format!("job {job:?} record {record_id:?}");
                let mut meta: JobMeta = tx_get(jobs, job.as_bytes(), what_job)?
                    .ok_or_else(|| abort(JobError::UnknownJob(job.into())))?;
                let rk = key2(job, &record_id);
                let mut rec: RecordEntry = tx_get(recs, &rk, what_rec)?.ok_or_else(|| {
                    abort(JobError::Corrupt {
                        what: what_rec(),
                        reason: "queued but missing".into(),
                    })
                })?;
                if !matches!(rec.state, RecordState::Queued) {
                    return Err(abort(JobError::Corrupt {
                        what: what_rec(),
                        reason: "in the queue but not queued".into(),
                    }));
                }
                rec.state = RecordState::InFlight {
                    station: station.to_string(),
                    request_id: request_id.to_string(),
                };
                meta.queued = meta.queued.saturating_sub(1);
                meta.in_flight += 1;
                queue.remove(qkey.as_ref())?;
                tx_put(recs, &rk, &rec, what_rec)?;
                tx_put(jobs, job.as_bytes(), &meta, what_job)?;
                tx_put(reqs, &rkey, &request, || {
                    format!("station {station:?} request {request_id:?}")
                })?;
                Ok(())
            })
            .map_err(tx_error("reserve a record"))?;
        self.flush("make the reservation durable")?;
        let reserved = Reserved {
            job: job.to_string(),
            profile: meta.profile,
            stock: meta.stock,
            reader: reader.to_string(),
            atr: atr.to_vec(),
            record,
        };
        Ok((Reservation::InFlight(reserved), true))
    }

    /// Records how a request's card ended: its record is issued, or voided
    /// and queued again. The generated secrets, if any, are sealed into the
    /// job output. Fails if the request is not in flight (a card is never
    /// counted twice).
    pub fn finish(
        &self,
        station: &str,
        request_id: &str,
        result: &CardResult,
        secrets: Option<&IssuedSecrets>,
    ) -> Result<Recorded, JobError> {
        let _guard = self.lock();
        self.finish_locked(station, request_id, result, secrets, true)
    }

    /// `card_failed`: a void counts against the record (the card itself
    /// failed), see [`MAX_CARD_FAILURES`].
    fn finish_locked(
        &self,
        station: &str,
        request_id: &str,
        result: &CardResult,
        secrets: Option<&IssuedSecrets>,
        card_failed: bool,
    ) -> Result<Recorded, JobError> {
        let rkey = key2(station, request_id);
        let what_req = || format!("station {station:?} request {request_id:?}");
        let Some(v) = self.requests.get(&rkey).map_err(store("read a request"))? else {
            return Err(JobError::UnknownRequest {
                station: station.to_string(),
                request_id: request_id.to_string(),
            });
        };
        let entry: RequestEntry = decode(what_req, &v)?;
        if !matches!(entry.state, RequestState::InFlight) {
            return Err(JobError::NotInFlight {
                station: station.to_string(),
                request_id: request_id.to_string(),
            });
        }
        let job = entry.job.clone();
        let record_id = entry.record_id.clone();
        let issued = matches!(result.outcome, CardOutcome::Issued);
        let reason = match &result.outcome {
            CardOutcome::Issued => String::new(),
            CardOutcome::Void { reason } => reason.clone(),
        };
        let sealed_secrets = match (issued, secrets) {
            (true, Some(s)) if s.pin.is_some() || s.puk.is_some() => {
                let plain = encode_secrets(s);
                Some(
                    self.sealer
                        .seal(&secrets_aad(&job, &record_id), &plain)
                        .map_err(|source| JobError::Seal {
                            what: format!("the issued secrets of job {job:?} record {record_id:?}"),
                            source,
                        })?,
                )
            }
            _ => None,
        };
        let held = std::cell::Cell::new(false);
        let finished = RequestEntry {
            state: RequestState::Finished {
                issued,
                reason: reason.clone(),
                serial: result.serial,
                round_trips: result.round_trips,
            },
            ..entry
        };
        (
            &self.jobs,
            &self.records,
            &self.queue,
            &self.requests,
            &self.output,
        )
            .transaction(|(jobs, recs, queue, reqs, output)| {
                let what_job = || format!("job {job:?}");
                let what_rec = || format!("job {job:?} record {record_id:?}");
                let mut meta: JobMeta = tx_get(jobs, job.as_bytes(), what_job)?
                    .ok_or_else(|| abort(JobError::UnknownJob(job.clone())))?;
                let rk = key2(&job, &record_id);
                let mut rec: RecordEntry = tx_get(recs, &rk, what_rec)?.ok_or_else(|| {
                    abort(JobError::Corrupt {
                        what: what_rec(),
                        reason: "reserved but missing".into(),
                    })
                })?;
                meta.in_flight = meta.in_flight.saturating_sub(1);
                meta.max_round_trips = meta.max_round_trips.max(result.round_trips);
                if issued {
                    meta.issued += 1;
                    rec.state = RecordState::Issued {
                        station: station.to_string(),
                        request_id: request_id.to_string(),
                        serial: result.serial,
                    };
                    if let Some(blob) = &sealed_secrets {
                        output.insert(rk.as_slice(), blob.as_slice())?;
                    }
                } else {
                    meta.voided += 1;
                    if card_failed {
                        rec.voids = rec.voids.saturating_add(1);
                    }
                    if card_failed && rec.voids >= MAX_CARD_FAILURES {
                        meta.held += 1;
                        rec.state = RecordState::Held {
                            reason: reason.clone(),
                        };
                    } else {
                        meta.queued += 1;
                        rec.state = RecordState::Queued;
                        queue.insert(queue_key(&job, rec.seq), record_id.as_bytes())?;
                    }
                }
                held.set(matches!(rec.state, RecordState::Held { .. }));
                tx_put(recs, &rk, &rec, what_rec)?;
                tx_put(jobs, job.as_bytes(), &meta, what_job)?;
                tx_put(reqs, &rkey, &finished, what_req)?;
                Ok(())
            })
            .map_err(tx_error("record a card's end"))?;
        self.flush("make the card's end durable")?;
        Ok(Recorded {
            job,
            record_id,
            issued,
            held: held.get(),
            reason,
            serial: result.serial,
            round_trips: result.round_trips,
        })
    }

    fn in_flight(&self) -> Result<Vec<(StaleRequest, i64)>, JobError> {
        let mut out = Vec::new();
        for kv in self.requests.iter() {
            let (k, v) = kv.map_err(store("list requests"))?;
            let mut parts = k.splitn(2, |b| *b == 0);
            let station = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let request_id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let entry: RequestEntry = decode(|| format!("station {station:?} request {request_id:?}"), &v)?;
            if matches!(entry.state, RequestState::InFlight) {
                out.push((
                    StaleRequest {
                        station,
                        request_id,
                        job: entry.job,
                        record_id: entry.record_id,
                    },
                    entry.reserved,
                ));
            }
        }
        Ok(out)
    }

    /// Every request in flight now (at start: what a stopped keyserver left).
    pub fn in_flight_requests(&self) -> Result<Vec<StaleRequest>, JobError> {
        let _guard = self.lock();
        Ok(self.in_flight()?.into_iter().map(|(r, _)| r).collect())
    }

    /// Voids every request in flight with `reason` and queues its record
    /// again: at start, for what a crashed keyserver left behind.
    pub fn void_in_flight(&self, reason: &str) -> Result<Vec<StaleRequest>, JobError> {
        self.void_where(reason, |_, _| true)
    }

    /// Voids requests reserved at or before `reserved_before` (unix
    /// seconds) that no card session serves (`running` holds those that
    /// are): a station that reserved and never opened the card.
    pub fn void_stale(
        &self,
        reason: &str,
        reserved_before: i64,
        running: &HashSet<(String, String)>,
    ) -> Result<Vec<StaleRequest>, JobError> {
        self.void_where(reason, |r, at| {
            at <= reserved_before && !running.contains(&(r.station.clone(), r.request_id.clone()))
        })
    }

    fn void_where(
        &self,
        reason: &str,
        select: impl Fn(&StaleRequest, i64) -> bool,
    ) -> Result<Vec<StaleRequest>, JobError> {
        let _guard = self.lock();
        let mut voided = Vec::new();
        for (r, at) in self.in_flight()? {
            if !select(&r, at) {
                continue;
            }
            let result = CardResult {
                outcome: CardOutcome::Void {
                    reason: reason.to_string(),
                },
                serial: None,
                round_trips: 0,
            };
            // A restart or a vanished station is not the record's fault.
            self.finish_locked(&r.station, &r.request_id, &result, None, false)?;
            voided.push(r);
        }
        Ok(voided)
    }

    /// The secrets generated for the issued records of `job` (for PIN
    /// mailers), opened. The caller audits the export.
    pub fn issued_secrets(&self, job: &str) -> Result<Vec<(String, IssuedSecrets)>, JobError> {
        if !self.jobs.contains_key(job).map_err(store("look up a job"))? {
            return Err(JobError::UnknownJob(job.to_string()));
        }
        let mut out = Vec::new();
        for kv in self.output.scan_prefix(prefix(job)) {
            let (k, v) = kv.map_err(store("read the job output"))?;
            let record_id = String::from_utf8_lossy(k.get(job.len() + 1..).unwrap_or_default()).into_owned();
            let what = || format!("the issued secrets of job {job:?} record {record_id:?}");
            let plain = self
                .sealer
                .open(&secrets_aad(job, &record_id), &v)
                .map_err(|source| JobError::Seal { what: what(), source })?;
            let secrets = decode_secrets(&plain).ok_or_else(|| JobError::Corrupt {
                what: what(),
                reason: "malformed".into(),
            })?;
            out.push((record_id, secrets));
        }
        Ok(out)
    }
}

const TAG_PIN: u8 = 1;
const TAG_PUK: u8 = 2;

/// `tag ‖ len (2, big-endian) ‖ value` for the PIN and the PUK.
fn encode_secrets(s: &IssuedSecrets) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    for (tag, value) in [(TAG_PIN, &s.pin), (TAG_PUK, &s.puk)] {
        if let Some(v) = value {
            let bytes = v.expose_secret();
            let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            out.push(tag);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
        }
    }
    out
}

fn decode_secrets(mut bytes: &[u8]) -> Option<IssuedSecrets> {
    let mut s = IssuedSecrets { pin: None, puk: None };
    while let Some((&tag, rest)) = bytes.split_first() {
        let (len, rest) = rest.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([*len.first()?, *len.get(1)?]));
        let (value, rest) = rest.split_at_checked(len)?;
        let v = Some(SecretBytes::from_slice(value));
        match tag {
            TAG_PIN => s.pin = v,
            TAG_PUK => s.puk = v,
            _ => return None,
        }
        bytes = rest;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_encoding_round_trips() {
        let s = IssuedSecrets {
            pin: Some(SecretBytes::from_slice(b"482913")),
            puk: Some(SecretBytes::from_slice(b"77120934")),
        };
        let e = encode_secrets(&s);
        let d = decode_secrets(&e).unwrap();
        assert_eq!(d.pin.unwrap().expose_secret(), b"482913");
        assert_eq!(d.puk.unwrap().expose_secret(), b"77120934");
        assert!(decode_secrets(&[1, 0]).is_none());
        assert!(decode_secrets(&[9, 0, 0]).is_none());
    }
}
