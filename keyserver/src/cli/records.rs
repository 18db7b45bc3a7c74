//! `keyserver archive …`, `keyserver audit …`.
use super::{ArchiveCommand, AuditCommand, CliResult};

pub fn archive(_c: ArchiveCommand) -> CliResult {
    Err("keyserver archive is being built".into())
}

pub fn audit(_c: AuditCommand) -> CliResult {
    Err("keyserver audit is being built".into())
}
