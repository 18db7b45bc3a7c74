//! The GlobalPlatform issuer security domain (ISD), AID `A000000151000000`
//! (Card Specification 2.3.1, chapter 11; Amendment D for SCP03).
//!
//! The ISD is the card's default application and the issuer's door into the
//! card. INITIALIZE UPDATE and EXTERNAL AUTHENTICATE are run by the
//! dispatcher (the SCP03 session belongs to the card); everything else the
//! issuer does arrives here, unwrapped:
//!
//! | command | CLA INS | needs | answers |
//! |---|---|---|---|
//! | SELECT | `00 A4 04 00` (full, partial or empty AID) | — | FCI `6F{84, A5{73, 9F65}}`; `6283` when CARD_LOCKED |
//! | GET DATA | `80 CA` / `00 CA` tag | — | the TLV (CLA `80`) or its value (CLA `00`); `6A88` |
//! | PUT KEY | `80 D8 KVN 81` | session with C-DECRYPTION | `KVN ‖ 3 × KCV`; see [`put_key`] |
//! | GET STATUS | `80 F2 80\|40\|20\|10 02\|03` | session | `E3{4F, 9F70, C5…}`; `6A88` |
//! | SET STATUS | `80 F0 80 state` | session | `9000`; `6985` for a transition the life cycle forbids |
//! | STORE DATA | `80 E2 P1 block` | session | `9000`; see [`store_data`] |
//!
//! "Session" means the command came through an open SCP03 session (any
//! level: every level has a C-MAC); without one the answer is `6982`. GP
//! commands need the proprietary class (`8x`): with `0x` they answer `6E00`.
//! Other instructions answer `6D00`.
//!
//! Life cycle: in CARD_LOCKED nothing on the card may change (PUT KEY, STORE
//! DATA answer `6985`), but SET STATUS may unlock; in TERMINATED only GET
//! DATA is processed, everything else answers `6985`.

mod card_data;
pub mod put_key;
pub mod status;
pub mod store_data;

use crate::codec::{CommandApdu, Instruction, ResponseApdu, StatusWord};

use super::app::{Application, Ctx};
use super::gp_state::{self, LifeCycle};
use super::ISD_AID;

/// The issuer security domain. Its only volatile state is a STORE DATA
/// sequence under way.
#[derive(Debug, Default)]
pub struct IssuerSecurityDomain {
    store_data: store_data::Sequence,
}

impl IssuerSecurityDomain {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The issuer's authority: the command came through an SCP03 session.
pub(crate) fn require_issuer(ctx: &Ctx<'_>) -> Result<(), StatusWord> {
    if ctx.issuer_authorized() {
        Ok(())
    } else {
        Err(StatusWord::SecurityStatusNotSatisfied)
    }
}

/// The card content may change in this life cycle state (else `6985`).
pub(crate) fn require_content_changes(ctx: &Ctx<'_>) -> Result<(), StatusWord> {
    if gp_state::life_cycle(ctx.store.vsc()).allows_content_changes() {
        Ok(())
    } else {
        Err(StatusWord::ConditionsOfUseNotSatisfied)
    }
}

impl Application for IssuerSecurityDomain {
    fn aid(&self) -> &'static [u8] {
        ISD_AID
    }

    fn select(&mut self, ctx: &mut Ctx<'_>, _cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        // Selecting the ISD ends a STORE DATA sequence (§11.11.2.2).
        self.reset();
        let fci = card_data::fci().to_bytes();
        Ok(match gp_state::life_cycle(ctx.store.vsc()) {
            LifeCycle::CardLocked => ResponseApdu::new(fci, StatusWord::FileDeactivated),
            _ => ResponseApdu::success(fci),
        })
    }

    fn process(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        self.run(ctx, cmd)
    }

    fn reset(&mut self) {
        self.store_data.reset();
    }
}

impl IssuerSecurityDomain {
    fn run(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let ins = cmd.ins();
        if ins == Instruction::GetData {
            return card_data::get_data(ctx, cmd);
        }
        let gp_command = matches!(
            ins,
            Instruction::PutKey | Instruction::GetStatus | Instruction::SetStatus | Instruction::StoreData
        );
        if !gp_command {
            return Err(StatusWord::InstructionNotSupported);
        }
        if cmd.cla() & 0x80 == 0 {
            return Err(StatusWord::ClassNotSupported);
        }
        if gp_state::life_cycle(ctx.store.vsc()) == LifeCycle::Terminated {
            return Err(StatusWord::ConditionsOfUseNotSatisfied);
        }
        match ins {
            Instruction::PutKey => put_key::run(ctx, cmd),
            Instruction::GetStatus => status::get_status(ctx, cmd),
            Instruction::SetStatus => status::set_status(ctx, cmd),
            _ => self.store_data.process(ctx, cmd),
        }
    }
}
