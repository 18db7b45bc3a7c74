//! Enrolled stations: who may connect, with which certificate, for which
//! jobs.
//!
//! A station's identity is its TLS client certificate: issued by the
//! enrollment CA (checked by TLS), subject CN = the station's name, and the
//! very certificate recorded at enrollment (SHA-256 of its DER). Revoking a
//! station, or enrolling it again, retires its certificate: its open streams
//! end and new ones are refused with `permission_denied`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

const TREE_STATIONS: &str = "stations";
const TREE_RETIRED: &str = "stations.retired";

/// Whether `name` may name a station: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot or dash.
pub fn valid_station_name(name: &str) -> bool {
    crate::jobs::valid_job_name(name)
}

/// A station registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error(
        "station name {0:?} is not valid: 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with . or -"
    )]
    BadName(String),
    #[error("job name {job:?} for station {station:?} is not valid")]
    BadJob { station: String, job: String },
    #[error("station {0:?} is not enrolled")]
    NotEnrolled(String),
    #[error("station {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("the certificate issued for station {station:?} is unreadable: {reason}")]
    Certificate { station: String, reason: String },
    #[error("the station registry could not {op}: {source}")]
    Store {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("the station registry's entry for {station:?} is corrupt: {reason}")]
    Corrupt { station: String, reason: String },
}

/// Why a connection is not an enrolled station.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the connection carries no client certificate")]
    NoCertificate,
    #[error("the client certificate is unreadable: {0}")]
    BadCertificate(String),
    #[error("the client certificate's subject has no usable common name")]
    NoName,
    #[error("station {0:?} is not enrolled")]
    NotEnrolled(String),
    #[error("station {station:?} was revoked at {at}")]
    Revoked { station: String, at: String },
    #[error(
        "station {0:?} presents a retired certificate (the station was enrolled again; use its new bundle)"
    )]
    Retired(String),
    #[error("the station registry failed: {0}")]
    Registry(String),
}

impl AuthError {
    /// The station name the refused certificate claims, if known.
    pub fn station(&self) -> Option<&str> {
        match self {
            AuthError::NotEnrolled(s) | AuthError::Retired(s) => Some(s),
            AuthError::Revoked { station, .. } => Some(station),
            _ => None,
        }
    }
}

/// An authenticated station.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Station {
    pub name: String,
    /// The jobs it may run; empty: every job.
    pub jobs: Vec<String>,
    /// SHA-256 of its certificate, hex.
    pub fingerprint: String,
}

impl Station {
    pub fn may_run(&self, job: &str) -> bool {
        self.jobs.is_empty() || self.jobs.iter().any(|j| j == job)
    }

    /// The jobs it may run, in words.
    pub fn jobs_text(&self) -> String {
        if self.jobs.is_empty() {
            "every job".to_string()
        } else {
            self.jobs.join(", ")
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StationEntry {
    fingerprint: String,
    jobs: Vec<String>,
    enrolled: i64,
    revoked: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct RetiredEntry {
    station: String,
    /// Unix time it was retired.
    at: i64,
    /// Revoked (rather than replaced by a new enrollment).
    revoked: bool,
}

/// A listed station.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationInfo {
    pub name: String,
    pub jobs: Vec<String>,
    pub revoked: bool,
}

/// The enrolled stations, in sled.
pub struct StationRegistry {
    db: sled::Db,
    stations: sled::Tree,
    retired: sled::Tree,
    /// Per station: bumped whenever its certificate is retired.
    epochs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl std::fmt::Debug for StationRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationRegistry").finish_non_exhaustive()
    }
}

/// SHA-256 of a certificate, hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// The subject common name of a DER certificate.
pub fn common_name(cert_der: &[u8]) -> Result<String, AuthError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| AuthError::BadCertificate(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or(AuthError::NoName)?;
    if !valid_station_name(cn) {
        return Err(AuthError::NoName);
    }
    Ok(cn.to_string())
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl StationRegistry {
    pub fn open(db: &sled::Db) -> Result<Self, StationError> {
        let tree = |name| {
            db.open_tree(name).map_err(|source| StationError::Store {
                op: "open its trees",
                source,
            })
        };
        Ok(StationRegistry {
            db: db.clone(),
            stations: tree(TREE_STATIONS)?,
            retired: tree(TREE_RETIRED)?,
            epochs: Mutex::new(HashMap::new()),
        })
    }

    fn store(op: &'static str) -> impl FnOnce(sled::Error) -> StationError {
        move |source| StationError::Store { op, source }
    }

    fn entry(&self, name: &str) -> Result<Option<StationEntry>, StationError> {
        match self.stations.get(name).map_err(Self::store("read a station"))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StationError::Corrupt {
                    station: name.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    fn bump(&self, name: &str) {
        let mut epochs = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = epochs.get(name) {
            tx.send_modify(|e| *e += 1);
            if tx.receiver_count() == 0 {
                epochs.remove(name);
            }
        }
    }

    /// Writes station `name`'s entry, flushes it to disk, then ends the
    /// station's open streams.
    fn put(
        &self,
        name: &str,
        entry: &StationEntry,
        record_op: &'static str,
        flush_op: &'static str,
    ) -> Result<(), StationError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StationError::Corrupt {
            station: name.to_string(),
            reason: e.to_string(),
        })?;
        self.stations
            .insert(name, bytes)
            .map_err(Self::store(record_op))?;
        self.db.flush().map_err(Self::store(flush_op))?;
        self.bump(name);
        Ok(())
    }

    fn retire(&self, name: &str, fingerprint: &str, revoked: bool) -> Result<(), StationError> {
        let entry = RetiredEntry {
            station: name.to_string(),
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            revoked,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| StationError::Corrupt {
            station: name.to_string(),
            reason: e.to_string(),
        })?;
        self.retired
            .insert(fingerprint, bytes)
            .map_err(Self::store("retire a certificate"))?;
        Ok(())
    }

    /// Records station `name` with the certificate it was just issued and
    /// the jobs it may run (empty: all). A station enrolled again gets the
    /// new certificate; the old one is retired (its streams end).
    pub fn enroll(&self, name: &str, cert_der: &[u8], jobs: &[String]) -> Result<(), StationError> {
        if !valid_station_name(name) {
            return Err(StationError::BadName(name.to_string()));
        }
        if let Some(job) = jobs.iter().find(|j| !crate::jobs::valid_job_name(j)) {
            return Err(StationError::BadJob {
                station: name.to_string(),
                job: job.clone(),
            });
        }
        let cn = common_name(cert_der).map_err(|e| StationError::Certificate {
            station: name.to_string(),
            reason: e.to_string(),
        })?;
        if cn != name {
            return Err(StationError::Certificate {
                station: name.to_string(),
                reason: format!("its subject CN is {cn:?}"),
            });
        }
        if let Some(old) = self.entry(name)? {
            if old.revoked.is_none() {
                self.retire(name, &old.fingerprint, false)?;
            }
        }
        let entry = StationEntry {
            fingerprint: fingerprint(cert_der),
            jobs: jobs.to_vec(),
            enrolled: time::OffsetDateTime::now_utc().unix_timestamp(),
            revoked: None,
        };
        self.put(name, &entry, "record a station", "make the enrollment durable")
    }

    /// Revokes station `name`: its certificate is refused from now on and
    /// its open streams end.
    pub fn revoke(&self, name: &str) -> Result<(), StationError> {
        let Some(mut entry) = self.entry(name)? else {
            return Err(StationError::NotEnrolled(name.to_string()));
        };
        if entry.revoked.is_some() {
            return Err(StationError::AlreadyRevoked(name.to_string()));
        }
        entry.revoked = Some(time::OffsetDateTime::now_utc().unix_timestamp());
        self.retire(name, &entry.fingerprint, true)?;
        self.put(name, &entry, "record a revocation", "make the revocation durable")
    }

    /// Every station.
    pub fn list(&self) -> Result<Vec<StationInfo>, StationError> {
        let mut out = Vec::new();
        for kv in self.stations.iter() {
            let (k, v) = kv.map_err(Self::store("list stations"))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let e: StationEntry = serde_json::from_slice(&v).map_err(|e| StationError::Corrupt {
                station: name.clone(),
                reason: e.to_string(),
            })?;
            out.push(StationInfo {
                name,
                jobs: e.jobs,
                revoked: e.revoked.is_some(),
            });
        }
        Ok(out)
    }

    /// The station a client certificate (DER, the end-entity first)
    /// belongs to, if it is enrolled, current and not revoked.
    pub fn authenticate(&self, cert_der: &[u8]) -> Result<Station, AuthError> {
        let name = common_name(cert_der)?;
        let fp = fingerprint(cert_der);
        let entry = self
            .entry(&name)
            .map_err(|e| AuthError::Registry(e.to_string()))?
            .ok_or_else(|| AuthError::NotEnrolled(name.clone()))?;
        if entry.fingerprint == fp {
            if let Some(at) = entry.revoked {
                return Err(AuthError::Revoked {
                    station: name,
                    at: when(at),
                });
            }
            return Ok(Station {
                name,
                jobs: entry.jobs,
                fingerprint: fp,
            });
        }
        match self
            .retired
            .get(&fp)
            .map_err(|e| AuthError::Registry(e.to_string()))?
            .and_then(|v| serde_json::from_slice::<RetiredEntry>(&v).ok())
        {
            Some(r) if r.revoked => Err(AuthError::Revoked {
                station: name,
                at: when(r.at),
            }),
            Some(_) => Err(AuthError::Retired(name)),
            // Issued by the CA but never recorded (e.g. an enrollment that
            // failed half-way): not this station's certificate.
            None => Err(AuthError::Retired(name)),
        }
    }

    /// Whether station `name` still holds the certificate with
    /// `fingerprint`, unrevoked (a connected station, checked again after
    /// its certificate was retired).
    pub fn authenticate_fingerprint(&self, name: &str, fingerprint: &str) -> Result<(), AuthError> {
        let entry = self
            .entry(name)
            .map_err(|e| AuthError::Registry(e.to_string()))?
            .ok_or_else(|| AuthError::NotEnrolled(name.to_string()))?;
        if entry.fingerprint != fingerprint {
            return Err(AuthError::Retired(name.to_string()));
        }
        match entry.revoked {
            Some(at) => Err(AuthError::Revoked {
                station: name.to_string(),
                at: when(at),
            }),
            None => Ok(()),
        }
    }

    /// A receiver that changes whenever station `name`'s certificate is
    /// retired (revoked or replaced): streams then authenticate again.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<u64> {
        let mut epochs = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        epochs
            .entry(name.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}
