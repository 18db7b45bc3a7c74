//! GET STATUS and SET STATUS (Card Specification §11.4, §11.10).
//!
//! **GET STATUS** `80 F2 P1 P2 Lc 4F L [AID prefix] …`, within a session:
//!
//! - P1 `80`: the ISD (the search criteria are ignored); `40`: the
//!   applications (here: PIV; the file system is not an application);
//!   `20`/`10`: executable load files (there are none: `6A88`). Other P1:
//!   `6A86`.
//! - P2 `02`: all occurrences in the GP 2.2 TLV format; `03`: next
//!   occurrences, and since the first answer holds all of them there is none
//!   (`6A88`; for P1 `80`, `6A86` as the specification wants). The deprecated
//!   format (P2 bit 2 clear) is refused with `6A86`.
//! - Data: must start with the AID search criterion `4F` (0–16 bytes; an
//!   AID matches when it starts with it); other criteria are ignored
//!   (`6A80` when `4F` is missing or the TLV malformed).
//! - Answer: `E3{4F AID, 9F70 life cycle, C5 privileges[, CC ISD AID]}` per
//!   entry; `6A88` when nothing matches.
//!
//! **SET STATUS** `80 F0 80 state`, within a session: moves the card life
//! cycle (the ISD's) along [`LifeCycle::may_become`]; a forbidden
//! transition, or the current state again, answers `6985`. SECURED also
//! needs a key set other than the card stock's transport keys, which a
//! SECURED card refuses (else the issuer would lock itself out): without one,
//! `6985`. P1 other than `80` (application life cycles) or a P2 that is no
//! card life cycle state: `6A86`.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tlv, TlvRef};
use crate::tag;

use super::super::app::Ctx;
use super::super::gp_state::{self, LifeCycle};
use super::super::piv::PIV_AID;
use super::super::ISD_AID;
use super::require_issuer;

/// The ISD's privileges (Table 11-7 to 11-9): Security Domain, Card Lock,
/// Card Terminate, Card Reset (default selected); Authorized Management,
/// Global Registry, Final Application.
pub const ISD_PRIVILEGES: [u8; 3] = [0x9C, 0x46, 0x00];
/// PIV's privileges: none.
pub const APP_PRIVILEGES: [u8; 3] = [0x00, 0x00, 0x00];
/// The application life cycle state SELECTABLE (Table 11-4).
pub const SELECTABLE: u8 = 0x07;

/// Which part of the registry GET STATUS asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusScope {
    IssuerSecurityDomain,
    Applications,
    LoadFiles,
}

/// A parsed GET STATUS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetStatus<'a> {
    pub scope: StatusScope,
    pub next: bool,
    pub aid_prefix: &'a [u8],
}

impl<'a> TryFrom<&'a CommandApdu> for GetStatus<'a> {
    type Error = StatusWord;

    fn try_from(cmd: &'a CommandApdu) -> Result<Self, StatusWord> {
        let scope = match cmd.p1() {
            0x80 => StatusScope::IssuerSecurityDomain,
            0x40 => StatusScope::Applications,
            0x20 | 0x10 => StatusScope::LoadFiles,
            _ => return Err(StatusWord::IncorrectP1P2),
        };
        let next = match cmd.p2() {
            0x02 => false,
            0x03 if scope != StatusScope::IssuerSecurityDomain => true,
            _ => return Err(StatusWord::IncorrectP1P2),
        };
        let (aid, _other_criteria) =
            TlvRef::parse_prefix(cmd.data()).map_err(|_| StatusWord::IncorrectData)?;
        if aid.tag != tag!(0x4F) || aid.value.len() > 16 {
            return Err(StatusWord::IncorrectData);
        }
        Ok(GetStatus {
            scope,
            next,
            aid_prefix: aid.value,
        })
    }
}

fn entry(aid: &[u8], life_cycle: u8, privileges: [u8; 3], associated_sd: Option<&[u8]>) -> Tlv {
    let mut fields = vec![
        Tlv::new(tag!(0x4F), aid),
        Tlv::new(tag!(0x9F70), [life_cycle]),
        Tlv::new(tag!(0xC5), privileges),
    ];
    if let Some(sd) = associated_sd {
        fields.push(Tlv::new(tag!(0xCC), sd));
    }
    Tlv::constructed(tag!(0xE3), &fields)
}

/// GET STATUS: see the module documentation.
pub fn get_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    require_issuer(ctx)?;
    let gs = GetStatus::try_from(cmd)?;
    if gs.next {
        return Err(StatusWord::ReferencedDataNotFound);
    }
    let found = match gs.scope {
        StatusScope::IssuerSecurityDomain => {
            let lc = gp_state::life_cycle(ctx.store.vsc()).to_byte();
            entry(ISD_AID, lc, ISD_PRIVILEGES, None)
        }
        StatusScope::Applications if PIV_AID.starts_with(gs.aid_prefix) => {
            entry(PIV_AID, SELECTABLE, APP_PRIVILEGES, Some(ISD_AID))
        }
        StatusScope::Applications | StatusScope::LoadFiles => {
            return Err(StatusWord::ReferencedDataNotFound);
        }
    };
    Ok(ResponseApdu::success(found.to_bytes()))
}

/// A parsed SET STATUS of the card life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetStatus {
    pub target: LifeCycle,
}

impl TryFrom<&CommandApdu> for SetStatus {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.p1() != 0x80 {
            return Err(StatusWord::IncorrectP1P2);
        }
        match LifeCycle::from_byte(cmd.p2()) {
            LifeCycle::Other(_) => Err(StatusWord::IncorrectP1P2),
            target => Ok(SetStatus { target }),
        }
    }
}

/// SET STATUS: see the module documentation.
pub fn set_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    require_issuer(ctx)?;
    let ss = SetStatus::try_from(cmd)?;
    let current = gp_state::life_cycle(ctx.store.vsc());
    if !current.may_become(ss.target) {
        return Err(StatusWord::ConditionsOfUseNotSatisfied);
    }
    if ss.target == LifeCycle::Secured && current.is_pre_issuance() {
        let sets = gp_state::keysets(ctx.store.vsc()).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
        if sets.iter().all(|s| s.factory) {
            return Err(StatusWord::ConditionsOfUseNotSatisfied);
        }
    }
    gp_state::set_life_cycle(ctx.store.vsc_mut(), ss.target).map_err(|_| StatusWord::MemoryFailure)?;
    Ok(ResponseApdu::status(StatusWord::Success))
}
