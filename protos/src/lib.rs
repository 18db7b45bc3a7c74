//! The keyserver ↔ station protocol (`perso.proto`), compiled once and
//! re-exported as `pb`.
//!
//! Empty until the keyserver issue defines the service; nothing here yet.
