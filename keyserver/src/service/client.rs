//! The admin client: the CLI's `job`, `enroll-station` and
//! `revoke-station` talk to a running keyserver through its admin socket.

use std::path::{Path, PathBuf};

use protos::pb;
use protos::pb::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

/// The admin socket could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no keyserver is running on {data} ({socket}): start `keyserver serve` first")]
    NotRunning { data: PathBuf, socket: PathBuf },
    #[error("connecting to the keyserver's admin socket {socket}: {reason}")]
    Connect { socket: PathBuf, reason: String },
}

/// The admin socket of data directory `data`.
pub fn admin_socket_path(data: &Path) -> PathBuf {
    data.join(super::ADMIN_SOCKET)
}

/// Connects to the keyserver serving `data`.
pub async fn connect(data: &Path, max_message: usize) -> Result<AdminClient<Channel>, ClientError> {
    let socket = admin_socket_path(data);
    let not_running = || ClientError::NotRunning {
        data: data.to_path_buf(),
        socket: socket.clone(),
    };
    match std::fs::symlink_metadata(&socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_running()),
        _ => {}
    }
    let path = socket.to_str().ok_or_else(|| ClientError::Connect {
        socket: socket.clone(),
        reason: "the path is not UTF-8".into(),
    })?;
    let endpoint = Endpoint::try_from(format!("unix:{path}")).map_err(|e| ClientError::Connect {
        socket: socket.clone(),
        reason: e.to_string(),
    })?;
    let channel = endpoint.connect().await.map_err(|e| {
        // A socket file nobody listens on: a keyserver that stopped uncleanly.
        let refused = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                )
            });
        if refused || std::os::unix::net::UnixStream::connect(&socket).is_err() {
            not_running()
        } else {
            ClientError::Connect {
                socket: socket.clone(),
                reason: e.to_string(),
            }
        }
    })?;
    Ok(AdminClient::new(channel)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message))
}

/// A job's status as a table row.
pub fn status_line(s: &pb::JobStatus) -> String {
    format!(
        "{:<24} {:<16} {:>7} {:>7} {:>7} {:>9} {:>6} {:>6} {:>5}",
        s.job, s.profile, s.total, s.issued, s.queued, s.in_flight, s.voided, s.max_round_trips, s.held
    )
}

/// The header of [`status_line`]'s table.
pub fn status_header() -> String {
    format!(
        "{:<24} {:<16} {:>7} {:>7} {:>7} {:>9} {:>6} {:>6} {:>5}",
        "JOB", "PROFILE", "TOTAL", "ISSUED", "QUEUED", "IN-FLIGHT", "VOIDED", "MAX-RT", "HELD"
    )
}
