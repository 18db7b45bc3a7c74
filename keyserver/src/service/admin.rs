//! The `Admin` service, on the keyserver's local admin socket only.
//!
//! The socket (`DATA/admin.sock`, mode 0600) is protected by file
//! permissions; on top, a connection is served only when its peer runs as
//! the keyserver's own user or root (`SO_PEERCRED`). The audit log names
//! the caller as `admin:uid=N`.

use std::sync::Arc;

use protos::bundle::StationBundle;
use protos::pb;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::state::{job_status_pb, Shared};
use super::stations::{valid_station_name, StationError};
use crate::jobs::{JobError, Submission};

pub(crate) struct AdminService {
    pub shared: Arc<Shared>,
    /// The keyserver's user id (the socket's owner).
    pub uid: u32,
}

impl AdminService {
    fn caller<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let cred = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred);
        match cred {
            Some(c) if c.uid() == self.uid || c.uid() == 0 => Ok(format!("admin:uid={}", c.uid())),
            Some(c) => Err(Status::permission_denied(format!(
                "the admin socket serves the keyserver's user (uid {}) and root, not uid {}",
                self.uid,
                c.uid()
            ))),
            None => Err(Status::permission_denied(
                "the admin socket could not identify the caller",
            )),
        }
    }
}

fn internal(what: &str) -> impl FnOnce(tokio::task::JoinError) -> Status + '_ {
    move |_| Status::internal(format!("{what} failed (internal error)"))
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let actor = self.caller(&request)?;
        let r = request.into_inner();
        let shared = self.shared.clone();
        let (job, profile, stock) = (r.job.clone(), r.profile.clone(), r.stock.clone());
        let result = tokio::task::spawn_blocking(move || {
            shared.jobs.submit(
                shared.engine.as_ref(),
                &Submission {
                    job: &r.job,
                    profile: &r.profile,
                    stock: &r.stock,
                    csv: &r.csv,
                },
            )
        })
        .await
        .map_err(internal("job submission"))?;
        match result {
            Ok(records) => {
                tracing::info!(job = %job, profile = %profile, stock = %stock, records, "job submitted");
                self.shared
                    .audit(
                        &actor,
                        "job.submit",
                        &format!("job {job}"),
                        true,
                        format!("profile={profile} stock={stock} records={records}"),
                    )
                    .await;
                self.shared.push_job_status(&job).await;
                Ok(Response::new(pb::SubmitJobResponse {
                    records,
                    errors: Vec::new(),
                }))
            }
            Err(JobError::Invalid { errors, .. }) => {
                self.shared
                    .audit(
                        &actor,
                        "job.submit",
                        &format!("job {job}"),
                        false,
                        format!(
                            "profile={profile} stock={stock}: {} error(s), nothing queued",
                            errors.count()
                        ),
                    )
                    .await;
                let mut out: Vec<pb::SubmitError> = errors
                    .errors
                    .iter()
                    .map(|e| pb::SubmitError {
                        row: e.row,
                        field: e.field.clone().unwrap_or_default(),
                        problem: e.problem.clone(),
                    })
                    .collect();
                if errors.more > 0 {
                    out.push(pb::SubmitError {
                        row: 0,
                        field: String::new(),
                        problem: format!("… and {} more error(s)", errors.more),
                    });
                }
                Ok(Response::new(pb::SubmitJobResponse {
                    records: 0,
                    errors: out,
                }))
            }
            Err(e) => {
                self.shared
                    .audit(&actor, "job.submit", &format!("job {job}"), false, e.to_string())
                    .await;
                Err(match e {
                    JobError::JobExists(_) => Status::already_exists(e.to_string()),
                    JobError::BadJobName(_) => Status::invalid_argument(e.to_string()),
                    _ => Status::internal(e.to_string()),
                })
            }
        }
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        self.caller(&request)?;
        let job = request.into_inner().job;
        let jobs = self.shared.jobs.clone();
        let counts =
            tokio::task::spawn_blocking(move || jobs.status((!job.is_empty()).then_some(job.as_str())))
                .await
                .map_err(internal("job status"))?
                .map_err(|e| match e {
                    JobError::UnknownJob(_) => Status::not_found(e.to_string()),
                    _ => Status::internal(e.to_string()),
                })?;
        Ok(Response::new(pb::JobStatusResponse {
            jobs: counts.iter().map(job_status_pb).collect(),
        }))
    }

    async fn enroll_station(
        &self,
        request: Request<pb::EnrollStationRequest>,
    ) -> Result<Response<pb::EnrollStationResponse>, Status> {
        let actor = self.caller(&request)?;
        let r = request.into_inner();
        if !valid_station_name(&r.name) {
            return Err(Status::invalid_argument(
                StationError::BadName(r.name).to_string(),
            ));
        }
        let shared = self.shared.clone();
        let (name, jobs) = (r.name.clone(), r.jobs.clone());
        let bundle = tokio::task::spawn_blocking(move || enroll(&shared, &name, &jobs))
            .await
            .map_err(internal("station enrollment"))?;
        let jobs_text = if r.jobs.is_empty() {
            "every job".to_string()
        } else {
            r.jobs.join(", ")
        };
        match bundle {
            Ok((bundle, fingerprint)) => {
                tracing::info!(station = %r.name, jobs = %jobs_text, "station enrolled");
                self.shared
                    .audit(
                        &actor,
                        "station.enroll",
                        &r.name,
                        true,
                        format!("jobs: {jobs_text}; certificate sha256 {fingerprint}"),
                    )
                    .await;
                Ok(Response::new(pb::EnrollStationResponse {
                    bundle: bundle.as_bytes().to_vec(),
                }))
            }
            Err(e) => {
                self.shared
                    .audit(&actor, "station.enroll", &r.name, false, e.to_string())
                    .await;
                Err(match e {
                    EnrollError::Station(StationError::BadName(_) | StationError::BadJob { .. }) => {
                        Status::invalid_argument(e.to_string())
                    }
                    _ => Status::internal(e.to_string()),
                })
            }
        }
    }

    async fn export_secrets(
        &self,
        request: Request<pb::ExportSecretsRequest>,
    ) -> Result<Response<pb::ExportSecretsResponse>, Status> {
        let actor = self.caller(&request)?;
        let job = request.into_inner().job;
        let jobs = self.shared.jobs.clone();
        let j = job.clone();
        let result = tokio::task::spawn_blocking(move || jobs.issued_secrets(&j))
            .await
            .map_err(internal("the secrets export"))?;
        let subject = format!("job {job}");
        match result {
            Ok(list) => {
                let text = |v: &Option<vsc::secret::SecretBytes>| {
                    v.as_ref()
                        .map(|b| String::from_utf8_lossy(b.expose_secret()).into_owned())
                        .unwrap_or_default()
                };
                let secrets: Vec<pb::IssuedSecret> = list
                    .iter()
                    .map(|(record_id, s)| pb::IssuedSecret {
                        record_id: record_id.clone(),
                        pin: text(&s.pin),
                        puk: text(&s.puk),
                    })
                    .collect();
                let (pins, puks) = (
                    list.iter().filter(|(_, s)| s.pin.is_some()).count(),
                    list.iter().filter(|(_, s)| s.puk.is_some()).count(),
                );
                tracing::warn!(job = %job, records = list.len(), "issued PINs/PUKs exported for the PIN mailers");
                self.shared
                    .audit(
                        &actor,
                        "job.secrets.export",
                        &subject,
                        true,
                        format!("{} record(s): {pins} PIN(s), {puks} PUK(s)", list.len()),
                    )
                    .await;
                Ok(Response::new(pb::ExportSecretsResponse { secrets }))
            }
            Err(e) => {
                self.shared
                    .audit(&actor, "job.secrets.export", &subject, false, e.to_string())
                    .await;
                Err(match e {
                    JobError::UnknownJob(_) => Status::not_found(e.to_string()),
                    _ => Status::internal(e.to_string()),
                })
            }
        }
    }

    async fn revoke_station(
        &self,
        request: Request<pb::RevokeStationRequest>,
    ) -> Result<Response<pb::RevokeStationResponse>, Status> {
        let actor = self.caller(&request)?;
        let name = request.into_inner().name;
        let stations = self.shared.stations.clone();
        let n = name.clone();
        let result = tokio::task::spawn_blocking(move || stations.revoke(&n))
            .await
            .map_err(internal("station revocation"))?;
        match result {
            Ok(()) => {
                tracing::warn!(station = %name, "station revoked");
                self.shared
                    .audit(
                        &actor,
                        "station.revoke",
                        &name,
                        true,
                        "certificate revoked; open streams closed".into(),
                    )
                    .await;
                Ok(Response::new(pb::RevokeStationResponse {}))
            }
            Err(e) => {
                self.shared
                    .audit(&actor, "station.revoke", &name, false, e.to_string())
                    .await;
                Err(match e {
                    StationError::NotEnrolled(_) => Status::not_found(e.to_string()),
                    StationError::AlreadyRevoked(_) => Status::failed_precondition(e.to_string()),
                    _ => Status::internal(e.to_string()),
                })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum EnrollError {
    #[error(transparent)]
    Authority(#[from] super::authority::AuthorityError),
    #[error(transparent)]
    Station(#[from] StationError),
    #[error("the certificate issued for station {station:?} is not PEM: {reason}")]
    Pem { station: String, reason: String },
    #[error("the bundle for station {station:?}: {reason}")]
    Bundle { station: String, reason: String },
}

/// Issues the station's identity, records it, and makes its bundle.
fn enroll(shared: &Shared, name: &str, jobs: &[String]) -> Result<(Zeroizing<String>, String), EnrollError> {
    let identity = shared.authority.issue_station_identity(name)?;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(identity.cert_pem.as_bytes()).map_err(|e| EnrollError::Pem {
            station: name.to_string(),
            reason: e.to_string(),
        })?;
    shared.stations.enroll(name, &pem.contents, jobs)?;
    let key_pem = std::str::from_utf8(identity.key_pem.expose_secret()).map_err(|_| EnrollError::Bundle {
        station: name.to_string(),
        reason: "the private key is not PEM text".into(),
    })?;
    let bundle = StationBundle {
        station: name.to_string(),
        keyserver: shared.advertise.clone(),
        server_name: shared.server_name.clone(),
        jobs: jobs.to_vec(),
        certificate_pem: identity.cert_pem.clone(),
        private_key_pem: Zeroizing::new(key_pem.to_string()),
        ca_certificate_pem: identity.ca_pem.clone(),
    };
    let text = bundle.to_toml().map_err(|e| EnrollError::Bundle {
        station: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok((text, super::stations::fingerprint(&pem.contents)))
}
