//! The keyserver ↔ station protocol (`perso.proto`), compiled at build time
//! by protox (no system `protoc` needed) and re-exported as [`pb`].

/// The generated messages, the `Keyserver` service (stations) and the
/// `Admin` service (the keyserver's local admin socket).
#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod pb {
    tonic::include_proto!("cardsmith.perso.v1");
}

pub mod bundle;
