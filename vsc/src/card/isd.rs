//! The GlobalPlatform issuer security domain (ISD), AID `A000000151000000`.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};

use super::app::{Application, Ctx};
use super::ISD_AID;

/// The issuer security domain.
#[derive(Debug, Default)]
pub struct IssuerSecurityDomain {}

impl IssuerSecurityDomain {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Application for IssuerSecurityDomain {
    fn aid(&self) -> &'static [u8] {
        ISD_AID
    }

    fn select(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Ok(ResponseApdu::status(StatusWord::Success))
    }

    fn process(&mut self, _ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        Err(StatusWord::InstructionNotSupported)
    }

    fn reset(&mut self) {}
}
