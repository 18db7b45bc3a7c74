//! The gRPC service stations talk to (mutual TLS), and the local admin
//! socket.
//!
//! - Stations: `Keyserver.Control` (one per station) and `Keyserver.Perso`
//!   (one per card) over TLS with client certificates. A station is who its
//!   certificate says ([`stations`]): issued by the enrollment CA, subject
//!   CN = its name, the very certificate recorded at enrollment, not
//!   revoked. Everything else is refused with `permission_denied`.
//! - The admin socket `DATA/admin.sock` (mode 0600, the keyserver's user
//!   and root only): the `Admin` service — submit jobs, job status, enroll
//!   and revoke stations. Never on the TLS port.
//!
//! [`start`] runs both; [`RunningServer::shutdown`] stops them, voiding the
//! cards in personalization.

mod admin;
pub mod authority;
pub mod client;
mod control;
pub mod convert;
mod perso;
mod server;
mod state;
pub mod stations;

pub use authority::{Authority, AuthorityError, ServerIdentity, StationIdentity};
pub use convert::Limits;
pub use server::{server_name, start, Parts, RunningServer, ServeError, ServerConfig};
pub use stations::{Station, StationRegistry};

/// The admin socket's file name in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";
