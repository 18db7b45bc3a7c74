//! `keyserver job …`, `enroll-station`, `revoke-station`: through the
//! running keyserver's local admin socket.
use super::{CliResult, EnrollArgs, JobCommand, RevokeArgs};

pub fn job(_c: JobCommand) -> CliResult {
    Err("keyserver job is being built".into())
}

pub fn enroll_station(_a: EnrollArgs) -> CliResult {
    Err("keyserver enroll-station is being built".into())
}

pub fn revoke_station(_a: RevokeArgs) -> CliResult {
    Err("keyserver revoke-station is being built".into())
}
