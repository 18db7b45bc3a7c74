//! `keyserver init`.
use super::{CliResult, InitArgs};

pub fn init(_args: InitArgs) -> CliResult {
    Err("keyserver init is being built".into())
}
