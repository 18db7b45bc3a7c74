//! `keyserver job …` (submit, status, mailers), `enroll-station`, `revoke-station`: through the
//! running keyserver's local admin socket (`DATA/admin.sock`).
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use protos::pb;

use super::{CliResult, EnrollArgs, JobCommand, RevokeArgs};
use crate::service::client;
use crate::service::Limits;

/// An admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("{op}: the keyserver refused: {message}")]
    Refused { op: String, message: String },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {file}: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the job name cannot be taken from {0}: give --job NAME")]
    NoJobName(String),
    #[error("starting the client runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn runtime() -> Result<tokio::runtime::Runtime, AdminCliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminCliError::Runtime)
}

fn refused(op: impl Into<String>) -> impl FnOnce(tonic::Status) -> AdminCliError {
    let op = op.into();
    move |s| AdminCliError::Refused {
        op,
        message: s.message().to_string(),
    }
}

pub fn job(c: JobCommand) -> CliResult {
    match c {
        JobCommand::Submit {
            csv,
            profile,
            job,
            stock,
            data,
        } => {
            let job = match job {
                Some(j) => j,
                None => csv
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| AdminCliError::NoJobName(csv.display().to_string()))?,
            };
            let bytes = std::fs::read(&csv).map_err(|source| AdminCliError::Read {
                file: csv.display().to_string(),
                source,
            })?;
            let response = runtime()?.block_on(async {
                let mut admin = client::connect(&data.data, Limits::default().max_admin_message).await?;
                admin
                    .submit_job(pb::SubmitJobRequest {
                        job: job.clone(),
                        profile: profile.clone(),
                        stock: stock.clone(),
                        csv: bytes,
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(refused(format!("submitting job {job:?}")))
            })?;
            if response.errors.is_empty() {
                println!(
                    "job {job}: {} records queued (profile {profile}, stock {stock})",
                    response.records
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{}: {} error(s), nothing was queued:",
                    csv.display(),
                    response.errors.len()
                );
                for e in &response.errors {
                    eprintln!("  {}", submit_error_text(e));
                }
                Ok(ExitCode::from(1))
            }
        }
        JobCommand::Status { job, data } => {
            let response = runtime()?.block_on(async {
                let mut admin = client::connect(&data.data, Limits::default().max_admin_message).await?;
                admin
                    .job_status(pb::JobStatusRequest {
                        job: job.clone().unwrap_or_default(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(refused("job status"))
            })?;
            if response.jobs.is_empty() {
                println!("no jobs");
            } else {
                println!("{}", client::status_header());
                for s in &response.jobs {
                    println!("{}", client::status_line(s));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Mailers { job, out, data } => mailers(&job, &out, &data.data),
    }
}

/// `keyserver job mailers`: the export as CSV into a new 0600 file.
fn mailers(job: &str, out: &Path, data: &Path) -> CliResult {
    let file = out.display().to_string();
    if out.exists() {
        return Err(AdminCliError::Write {
            file,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists; an export never overwrites a file (move it away first)",
            ),
        }
        .into());
    }
    let response = runtime()?.block_on(async {
        let mut admin = client::connect(data, Limits::default().max_admin_message).await?;
        admin
            .export_secrets(pb::ExportSecretsRequest { job: job.to_string() })
            .await
            .map(tonic::Response::into_inner)
            .map_err(refused(format!("exporting the PINs and PUKs of job {job:?}")))
    })?;
    let mut csv = zeroize::Zeroizing::new(String::from("record_id,pin,puk\n"));
    for s in &response.secrets {
        csv.push_str(&csv_field(&s.record_id));
        csv.push(',');
        csv.push_str(&s.pin);
        csv.push(',');
        csv.push_str(&s.puk);
        csv.push('\n');
    }
    // The response's copies go as soon as the file is written.
    let mut response = response;
    for s in &mut response.secrets {
        zeroize::Zeroize::zeroize(&mut s.pin);
        zeroize::Zeroize::zeroize(&mut s.puk);
    }
    write_secret_file(out, csv.as_bytes()).map_err(|source| AdminCliError::Write {
        file: file.clone(),
        source,
    })?;
    println!(
        "job {job}: the PIN/PUK of {} issued record(s) written to {file} (mode 0600). It holds them in \
         clear: print the mailers on a trusted machine, then destroy the file.",
        response.secrets.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// One submission error as the CLI prints it.
pub fn submit_error_text(e: &pb::SubmitError) -> String {
    match (e.row, e.field.as_str()) {
        (0, "") => e.problem.clone(),
        (0, f) => format!("column {f:?}: {}", e.problem),
        (r, "") => format!("row {r}: {}", e.problem),
        (r, f) => format!("row {r}, column {f:?}: {}", e.problem),
    }
}

/// Writes `bytes` to a new file `path`, mode 0600, fsyncing the file and
/// its directory. An existing file is not overwritten.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

pub fn enroll_station(a: EnrollArgs) -> CliResult {
    let file = a.out.display().to_string();
    if a.out.exists() {
        return Err(AdminCliError::Write {
            file,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists; a bundle is never overwritten (move it away first)",
            ),
        }
        .into());
    }
    let response = runtime()?.block_on(async {
        let mut admin = client::connect(&a.data.data, Limits::default().max_admin_message).await?;
        admin
            .enroll_station(pb::EnrollStationRequest {
                name: a.name.clone(),
                jobs: a.jobs.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(refused(format!("enrolling station {:?}", a.name)))
    })?;
    let bundle = zeroize::Zeroizing::new(response.bundle);
    write_secret_file(&a.out, &bundle).map_err(|source| AdminCliError::Write {
        file: file.clone(),
        source,
    })?;
    println!(
        "station {} enrolled; its bundle is {file} (mode 0600: it holds the station's private key — hand it \
         to the station over a trusted path, then delete this copy)",
        a.name
    );
    Ok(ExitCode::SUCCESS)
}

pub fn revoke_station(a: RevokeArgs) -> CliResult {
    runtime()?.block_on(async {
        let mut admin = client::connect(&a.data.data, Limits::default().max_admin_message).await?;
        admin
            .revoke_station(pb::RevokeStationRequest { name: a.name.clone() })
            .await
            .map_err(refused(format!("revoking station {:?}", a.name)))
    })?;
    println!(
        "station {} revoked: its certificate is refused and its open streams are closed",
        a.name
    );
    Ok(ExitCode::SUCCESS)
}
