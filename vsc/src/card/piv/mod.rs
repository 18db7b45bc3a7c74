//! The PIV card application (NIST SP 800-73-4 card edge, with the common
//! Yubico extensions).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};

use super::app::{Application, Ctx};

/// The PIV application's full AID.
pub const PIV_AID: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00];

/// The PIV application.
#[derive(Debug, Default)]
pub struct Piv {}

impl Piv {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Application for Piv {
    fn aid(&self) -> &'static [u8] {
        PIV_AID
    }

    fn select(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Ok(ResponseApdu::status(StatusWord::Success))
    }

    fn process(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Err(StatusWord::InstructionNotSupported)
    }

    fn reset(&mut self) {}
}
