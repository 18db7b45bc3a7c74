//! The data-object file system: the seed's public and private areas as EFs
//! under the MF (`3F00`).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};

use super::app::{Application, Ctx};

/// The file system application (selected by FID, not AID).
#[derive(Debug, Default)]
pub struct FileSystem {}

impl FileSystem {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Application for FileSystem {
    fn aid(&self) -> &'static [u8] {
        &[]
    }

    fn select(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Err(StatusWord::FileNotFound)
    }

    fn process(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Err(StatusWord::InstructionNotSupported)
    }

    fn reset(&mut self) {}
}
