//! `keyserver profile check`.
use std::path::Path;

use super::CliResult;

pub fn check(_file: &Path) -> CliResult {
    Err("keyserver profile check is being built".into())
}
