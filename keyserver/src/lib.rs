//! The card administration system: key custody, issuance profiles, master
//! VSCs, compiled SCP03 scripts, the archive, the audit log and the gRPC
//! service.
//!
//! Empty until the keyserver issue; nothing here yet.
