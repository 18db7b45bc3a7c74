//! The PIN (`80`) and PUK (`81`): VERIFY, CHANGE REFERENCE DATA, RESET
//! RETRY COUNTER. Values travel padded to 8 bytes with `FF`; the checking,
//! counting and saving is [`crate::card::pin`]'s.
//!
//! - VERIFY `00 20 00 80|81 08 value`: `9000`, `63Cx` (x tries left) or
//!   `6983` (blocked). Without data it reports the status: `9000` when the
//!   PIN is verified, `63Cx` otherwise. `00 20 FF 80` without data resets
//!   the PIN status (SP 800-73-4 logout, sent by OpenSC).
//! - CHANGE REFERENCE DATA `00 24 00 80|81 10 old(8) new(8)`: the old value
//!   must verify (the try counts); the new one must satisfy the length
//!   policy, checked first and without costing a try (`6A80`).
//! - RESET RETRY COUNTER `00 2C 00 80 10 PUK(8) newPIN(8)`: the PUK's tries
//!   count; success sets the PIN and restores its tries. The PIN status is
//!   cleared: whatever was verified was the old PIN.
//!
//! A successful VERIFY of the PIN with data also readies the "PIN always"
//! use of the digital signature key (one use per verification).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};
use crate::file::PasswordRef;
use crate::secret::SecretBytes;

use super::super::app::Ctx;
use super::super::pin::{self, PADDED_LEN};
use super::Volatile;

/// Which reference data P2 names: `80` the PIN, `81` the PUK. Others (the
/// global PIN `00`, OCC `96`, pairing code `98`) this card does not have.
fn reference(p2: u8) -> Result<PasswordRef, StatusWord> {
    match p2 {
        0x80 => Ok(PasswordRef::Pin),
        0x81 => Ok(PasswordRef::Puk),
        _ => Err(StatusWord::ReferencedDataNotFound),
    }
}

/// A parsed VERIFY.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verify {
    /// Without data: report the status.
    Status(PasswordRef),
    /// With data: check the (padded) value.
    Check(PasswordRef, Vec<u8>),
    /// `P1 = FF`: forget the PIN status.
    Reset(PasswordRef),
}

impl TryFrom<&CommandApdu> for Verify {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let which = reference(cmd.p2())?;
        let data = cmd.data();
        match (cmd.p1(), data.is_empty()) {
            (0x00, true) => Ok(Verify::Status(which)),
            (0x00, false) => Ok(Verify::Check(which, data.to_vec())),
            (0xFF, true) => Ok(Verify::Reset(which)),
            (0xFF, false) => Err(StatusWord::WrongLength),
            _ => Err(StatusWord::IncorrectP1P2),
        }
    }
}

pub(super) fn verify(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    match Verify::try_from(cmd)? {
        Verify::Status(which) => pin::verify(ctx, which, &[]),
        Verify::Reset(which) => {
            if which == PasswordRef::Pin {
                ctx.security.pin_verified = false;
                vol.pin_always_ready = false;
            }
            Ok(ResponseApdu::status(StatusWord::Success))
        }
        Verify::Check(which, data) => {
            let result = pin::verify(ctx, which, &data);
            if which == PasswordRef::Pin {
                vol.pin_always_ready = result.is_ok();
            }
            result
        }
    }
}

/// Two padded values: the current one (PIN, PUK) and the new one.
#[derive(Debug)]
pub(super) struct TwoValues {
    which: PasswordRef,
    current: SecretBytes,
    new: SecretBytes,
}

fn two_values(cmd: &CommandApdu, which: PasswordRef) -> Result<TwoValues, StatusWord> {
    if cmd.p1() != 0x00 {
        return Err(StatusWord::IncorrectP1P2);
    }
    let data = cmd.data();
    if data.is_empty() {
        return Err(StatusWord::WrongLength);
    }
    let Some((current, new)) = data.split_first_chunk::<PADDED_LEN>() else {
        return Err(StatusWord::IncorrectData);
    };
    Ok(TwoValues {
        which,
        current: pin::unpad(current)?,
        new: pin::unpad(new)?,
    })
}

/// CHANGE REFERENCE DATA for the PIN or PUK.
pub(super) struct ChangeReferenceData(TwoValues);

impl TryFrom<&CommandApdu> for ChangeReferenceData {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let which = reference(cmd.p2())?;
        two_values(cmd, which).map(ChangeReferenceData)
    }
}

/// RESET RETRY COUNTER: the PUK and a new PIN.
pub(super) struct ResetRetryCounter(TwoValues);

impl TryFrom<&CommandApdu> for ResetRetryCounter {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.p2() != 0x80 {
            return Err(StatusWord::ReferencedDataNotFound);
        }
        two_values(cmd, PasswordRef::Puk).map(ResetRetryCounter)
    }
}

/// Whether `value` fits the length policy of `which`.
fn fits_policy(ctx: &Ctx<'_>, which: PasswordRef, value: &SecretBytes) -> Result<(), StatusWord> {
    let entry = ctx
        .store
        .vsc()
        .password(which)
        .ok_or(StatusWord::ReferencedDataNotFound)?;
    let len = value.len();
    if len < usize::from(entry.min_len()) || len > usize::from(entry.max_len()) {
        return Err(StatusWord::IncorrectData);
    }
    Ok(())
}

/// Sets a new value (fresh verifier, all tries restored).
fn set(ctx: &mut Ctx<'_>, which: PasswordRef, value: &SecretBytes) -> Result<(), StatusWord> {
    let rng = &mut *ctx.rng;
    let entry = ctx
        .store
        .vsc_mut()
        .password_mut(which)
        .ok_or(StatusWord::ReferencedDataNotFound)?;
    entry.set(value, rng).map_err(|_| StatusWord::IncorrectData)
}

pub(super) fn change_reference_data(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let ChangeReferenceData(v) = ChangeReferenceData::try_from(cmd)?;
    fits_policy(ctx, v.which, &v.new)?;
    let checked = pin::check(ctx, v.which, &v.current);
    if v.which == PasswordRef::Pin {
        vol.pin_always_ready = false;
    }
    checked?;
    set(ctx, v.which, &v.new)?;
    Ok(ResponseApdu::status(StatusWord::Success))
}

pub(super) fn reset_retry_counter(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let ResetRetryCounter(v) = ResetRetryCounter::try_from(cmd)?;
    fits_policy(ctx, PasswordRef::Pin, &v.new)?;
    pin::check(ctx, PasswordRef::Puk, &v.current)?;
    set(ctx, PasswordRef::Pin, &v.new)?;
    ctx.security.pin_verified = false;
    vol.pin_always_ready = false;
    Ok(ResponseApdu::status(StatusWord::Success))
}
