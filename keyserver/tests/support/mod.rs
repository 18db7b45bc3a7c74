//! Test support: a stand-in CA, a fake engine, an in-memory audit log, a
//! test station, and a harness that runs the service on loopback.
#![allow(dead_code)]

pub mod authority;
pub mod engine;
pub mod station;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use keyserver::jobs::JobStore;
use keyserver::ports::{AuditError, AuditEvent, AuditSink, CardEngine};
use keyserver::service::{self, Authority, Limits, Parts, RunningServer, ServerConfig, StationRegistry};
use protos::bundle::StationBundle;
use protos::pb;
use protos::pb::admin_client::AdminClient;
use rand::SeedableRng;
use tonic::transport::Channel;
use vsc::card::blank::BlankCard;
use vsc::card::SoftCard;
use vsc::file::Protector;
use vsc::secret::AesKey;
use vsc::transport::InProcess;

use authority::TestAuthority;
use engine::FakeEngine;

/// An audit log in memory.
#[derive(Default)]
pub struct MemoryAudit {
    pub events: Mutex<Vec<AuditEvent>>,
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.events.lock().unwrap().push(event);
        Ok(())
    }
}

impl MemoryAudit {
    pub fn with_action(&self, action: &str) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.action == action)
            .cloned()
            .collect()
    }

    /// Every event as one text, for scanning.
    pub fn text(&self) -> String {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{e:?}\n"))
            .collect()
    }
}

pub fn records_key() -> AesKey {
    AesKey::from_slice(&[0x5A; 32]).unwrap()
}

/// A blank software card in a simulated reader.
pub fn blank_card(serial: u32) -> InProcess<SoftCard> {
    let kek = Protector::Kek {
        key_id: "stock/test".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    };
    let vsc = BlankCard::new(serial)
        .unwrap()
        .build(&kek, &mut rand::rngs::StdRng::seed_from_u64(u64::from(serial)))
        .unwrap();
    InProcess::insert(SoftCard::with_seed(vsc, u64::from(serial)).unwrap())
}

/// Limits for tests: short waits where the tests provoke them.
pub fn test_limits() -> Limits {
    Limits {
        request_wait: Duration::from_millis(500),
        ..Limits::default()
    }
}

/// What the service runs with, when not the stand-ins (the end-to-end tests
/// after the merge pass the real engine, custody and audit log).
pub struct Custom {
    pub engine: Arc<dyn CardEngine>,
    pub authority: Arc<dyn Authority>,
    pub audit: Arc<dyn AuditSink>,
    pub records_key: AesKey,
    /// A data directory prepared by the caller (e.g. `keyserver init`).
    pub dir: Option<tempfile::TempDir>,
}

/// The service on loopback with real mutual TLS, by default with the fake
/// engine, the stand-in CA and an in-memory audit log.
pub struct Harness {
    pub dir: tempfile::TempDir,
    /// The stand-ins (unused by the service when started with [`Custom`]).
    pub authority: Arc<TestAuthority>,
    pub audit: Arc<MemoryAudit>,
    pub engine: Arc<FakeEngine>,
    pub jobs: Arc<JobStore>,
    pub stations: Arc<StationRegistry>,
    pub db: sled::Db,
    pub limits: Limits,
    parts_engine: Arc<dyn CardEngine>,
    parts_authority: Arc<dyn Authority>,
    parts_audit: Arc<dyn AuditSink>,
    server: Option<RunningServer>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(test_limits()).await
    }

    pub async fn start_with(limits: Limits) -> Self {
        Self::build(limits, None).await
    }

    /// The service with the real parts.
    pub async fn start_custom(limits: Limits, custom: Custom) -> Self {
        Self::build(limits, Some(custom)).await
    }

    async fn build(limits: Limits, custom: Option<Custom>) -> Self {
        let authority = Arc::new(TestAuthority::new("Cardsmith test enrollment CA"));
        let audit: Arc<MemoryAudit> = Arc::default();
        let engine = Arc::new(FakeEngine::new());
        let custom = custom.unwrap_or_else(|| Custom {
            engine: engine.clone(),
            authority: authority.clone(),
            audit: audit.clone(),
            records_key: records_key(),
            dir: None,
        });
        let Custom {
            engine: parts_engine,
            authority: parts_authority,
            audit: parts_audit,
            records_key: key,
            dir,
        } = custom;
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let db = sled::open(dir.path().join("service.sled")).unwrap();
        let mut h = Harness {
            authority,
            audit,
            engine,
            jobs: Arc::new(JobStore::open(&db, &key).unwrap()),
            stations: Arc::new(StationRegistry::open(&db).unwrap()),
            db,
            dir,
            limits,
            parts_engine,
            parts_authority,
            parts_audit,
            server: None,
        };
        h.serve().await;
        h
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join(service::ADMIN_SOCKET)
    }

    /// (Re)starts the service over the same stores.
    pub async fn serve(&mut self) {
        assert!(self.server.is_none(), "already serving");
        let parts = Parts {
            engine: self.parts_engine.clone(),
            authority: self.parts_authority.clone(),
            audit: self.parts_audit.clone(),
            jobs: self.jobs.clone(),
            stations: self.stations.clone(),
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            admin_socket: self.admin_socket(),
            limits: self.limits.clone(),
        };
        self.server = Some(service::start(config, parts).await.unwrap());
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("not serving")
    }

    pub fn addr(&self) -> String {
        self.server().local_addr().to_string()
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        service::client::connect(self.data(), 64 << 20).await.unwrap()
    }

    /// Enrolls a station through the admin socket; its bundle.
    pub async fn enroll(&self, name: &str, jobs: &[&str]) -> StationBundle {
        let r = self
            .admin()
            .await
            .enroll_station(pb::EnrollStationRequest {
                name: name.into(),
                jobs: jobs.iter().map(|j| j.to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        StationBundle::parse(std::str::from_utf8(&r.bundle).unwrap()).unwrap()
    }

    pub async fn submit(&self, job: &str, csv: &str) -> pb::SubmitJobResponse {
        self.submit_profile(job, engine::PROFILE, csv).await
    }

    pub async fn submit_profile(&self, job: &str, profile: &str, csv: &str) -> pb::SubmitJobResponse {
        self.admin()
            .await
            .submit_job(pb::SubmitJobRequest {
                job: job.into(),
                profile: profile.into(),
                stock: "default".into(),
                csv: csv.as_bytes().to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn status(&self, job: &str) -> pb::JobStatus {
        self.admin()
            .await
            .job_status(pb::JobStatusRequest { job: job.into() })
            .await
            .unwrap()
            .into_inner()
            .jobs
            .remove(0)
    }

    pub async fn revoke(&self, name: &str) {
        self.admin()
            .await
            .revoke_station(pb::RevokeStationRequest { name: name.into() })
            .await
            .unwrap();
    }
}

/// A CSV of `n` people: record ids `r1`…, PINs `7391xx`.
pub fn people(n: usize) -> String {
    let mut s = String::from("record_id,given_name,surname,pin\n");
    for i in 1..=n {
        s.push_str(&format!("r{i},Given{i},Surname{i},7391{i:02}\n"));
    }
    s
}

/// Every way a secret could show up in bytes: raw, hex (both cases),
/// base64 at each alignment.
pub fn needles(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for pad in 0..3 {
        let mut b = vec![0u8; pad];
        b.extend_from_slice(secret);
        let enc = base64::engine::general_purpose::STANDARD.encode(&b);
        // Skip the characters that also depend on the padding bytes and the
        // tail that depends on what follows.
        let skip = (pad * 4).div_ceil(3);
        let keep = (secret.len() * 4) / 3;
        let enc = enc.as_bytes();
        if let Some(mid) = enc.get(skip..(skip + keep).saturating_sub(1).min(enc.len())) {
            if mid.len() >= 4 {
                out.push(mid.to_vec());
            }
        }
    }
    out
}

/// How many times any form of `secret` occurs in the files under `dir`.
pub fn scan_dir(dir: &Path, secret: &[u8]) -> usize {
    let needles = needles(secret);
    let mut hits = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                for n in &needles {
                    hits += bytes.windows(n.len()).filter(|w| w == &n.as_slice()).count();
                }
            }
        }
    }
    hits
}
