//! `keyserver serve`: unlock, open the stores, build the engine, serve
//! stations (mutual TLS) and the admin socket until SIGINT/SIGTERM.
//!
//! Integration points with custody (`keystore`) and issuance (`issue`) are
//! marked `MERGE:`; they are wired when those branches are merged.
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{CliResult, ServeArgs};
use crate::jobs::JobStore;
use crate::ports::{AuditSink, CardEngine};
use crate::service::{self, Authority, Limits, Parts, ServerConfig, StationRegistry};

/// The sled database of the job store and the station registry, in the
/// data directory.
pub const SERVICE_DB: &str = "service.sled";

/// `keyserver serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeCliError {
    #[error("--listen {0:?} is not an address (host:port, e.g. 127.0.0.1:7443)")]
    Listen(String),
    #[error("the data directory {0} does not exist or is not a directory (create it with `keyserver init`)")]
    NoData(PathBuf),
    #[error("opening the service database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("opening the job store: {0}")]
    Jobs(#[from] crate::jobs::JobError),
    #[error("opening the station registry: {0}")]
    Stations(#[from] service::stations::StationError),
    #[error("{0}")]
    Integration(&'static str),
    #[error(transparent)]
    Serve(#[from] service::ServeError),
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("listening for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Logs: JSON lines when standard output is not a terminal, text otherwise;
/// `RUST_LOG` sets the filter (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if std::io::stdout().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

pub fn serve(args: ServeArgs) -> CliResult {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeCliError::Runtime)?;
    runtime.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// What custody and issuance provide the service.
struct Unlocked {
    authority: Arc<dyn Authority>,
    audit: Arc<dyn AuditSink>,
    records_key: vsc::secret::AesKey,
    engine: Arc<dyn CardEngine>,
}

/// MERGE: custody and the engine.
///
/// ```text
/// let unlocked = keystore::Unlocked::open(data, unlock_files_or_terminal)?;   // custody
/// let audit = audit::Log::open(data, &unlocked)?;                             // audit
/// let escrow = archive::Archive::open(data, &unlocked)?;                      // archive
/// let profiles = profile::load_dir(profiles)?;                                // profiles
/// let engine = issue::Engine::new(profiles, unlocked.clone(), escrow, audit.clone(), rsa_pool);
/// Unlocked { authority: unlocked (implements service::Authority), audit,
///            records_key: unlocked.records_key(), engine }
/// ```
fn unlock(_data: &Path, _unlock: &[PathBuf], _profiles: &Path) -> Result<Unlocked, ServeCliError> {
    Err(ServeCliError::Integration(
        "keyserver serve needs custody (keystore::Unlocked) and the issuance engine (issue::Engine), \
         which are not merged into this build yet",
    ))
}

/// Opens the service's database: the job store and the station registry.
/// MERGE: custody may hand over its sled database instead.
fn open_stores(
    data: &Path,
    records_key: &vsc::secret::AesKey,
) -> Result<(JobStore, StationRegistry), ServeCliError> {
    let path = data.join(SERVICE_DB);
    let db = sled::open(&path).map_err(|source| ServeCliError::Db {
        path: path.clone(),
        source,
    })?;
    // A newly created database: make its directory entries durable.
    let _ = std::fs::File::open(data).and_then(|d| d.sync_all());
    let _ = std::fs::File::open(&path).and_then(|d| d.sync_all());
    Ok((JobStore::open(&db, records_key)?, StationRegistry::open(&db)?))
}

async fn run(args: ServeArgs) -> Result<(), ServeCliError> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| ServeCliError::Listen(args.listen.clone()))?;
    let data = args.data.data.clone();
    if !data.is_dir() {
        return Err(ServeCliError::NoData(data));
    }
    let profiles = args.profiles.clone().unwrap_or_else(|| data.join("profiles"));
    let unlocked = unlock(&data, &args.unlock, &profiles)?;
    let (jobs, stations) = open_stores(&data, &unlocked.records_key)?;
    drop(unlocked.records_key);
    let parts = Parts {
        engine: unlocked.engine,
        authority: unlocked.authority,
        audit: unlocked.audit,
        jobs: Arc::new(jobs),
        stations: Arc::new(stations),
    };
    let config = ServerConfig {
        listen,
        advertise: args.advertise.clone(),
        admin_socket: service::client::admin_socket_path(&data),
        limits: Limits::default(),
    };
    let server = service::start(config, parts).await?;
    println!(
        "keyserver ready: listening on {} (stations, mutual TLS); admin socket {}",
        server.local_addr(),
        server.admin_socket().display()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeCliError::Signals)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = term.recv() => tracing::info!("SIGTERM"),
    }
    server.shutdown().await?;
    Ok(())
}
