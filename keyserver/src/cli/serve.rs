//! `keyserver serve`.
use super::{CliResult, ServeArgs};

pub fn serve(_args: ServeArgs) -> CliResult {
    Err("keyserver serve is being built".into())
}
