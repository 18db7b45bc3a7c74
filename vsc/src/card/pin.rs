//! PIN and PUK verification with retry counters, shared by the PIV
//! application and the file system.
//!
//! PIV sends a PIN as 8 bytes, padded with `FF` (`00 20 00 80 08 …`). The
//! retry counter lives in the VSC's password area and is saved before the
//! answer leaves the card; a wrong PIN answers `63Cx` (x tries left), a
//! blocked one `6983`. VERIFY without data asks for the status: `9000` when
//! verified, `63Cx` otherwise.

use crate::codec::{ResponseApdu, StatusWord};
use crate::file::PasswordRef;
use crate::secret::SecretBytes;

use super::app::Ctx;

/// Length of a padded PIV PIN or PUK.
pub const PADDED_LEN: usize = 8;

/// A PIN from its padded form: trailing `FF` bytes removed. The padded form
/// is exactly 8 bytes; what remains must be 1..=8 bytes with no `FF`.
pub fn unpad(padded: &[u8]) -> Result<SecretBytes, StatusWord> {
    if padded.len() != PADDED_LEN {
        return Err(StatusWord::IncorrectData);
    }
    let end = padded.iter().rposition(|b| *b != 0xFF).map_or(0, |i| i + 1);
    let value = padded.get(..end).unwrap_or(&[]);
    if value.is_empty() || value.contains(&0xFF) {
        return Err(StatusWord::IncorrectData);
    }
    Ok(SecretBytes::from_slice(value))
}

/// The status word for "not verified, this many tries left".
pub fn tries_left(retries: u8) -> StatusWord {
    if retries == 0 {
        StatusWord::AuthenticationMethodBlocked
    } else {
        StatusWord::VerificationFailed {
            retries: retries.min(15),
        }
    }
}

/// Checks `candidate` against the reference data `which`, counting tries.
/// On success the counter is reset and, for the PIN, the card's PIN status
/// set. Whether the value has an acceptable length for this reference is
/// checked first (`6A80`), without costing a try.
pub fn check(ctx: &mut Ctx<'_>, which: PasswordRef, candidate: &SecretBytes) -> Result<(), StatusWord> {
    let entry = ctx
        .store
        .vsc()
        .password(which)
        .ok_or(StatusWord::ReferencedDataNotFound)?;
    if entry.is_blocked() {
        return Err(StatusWord::AuthenticationMethodBlocked);
    }
    let len = candidate.len();
    if len < usize::from(entry.min_len()) || len > usize::from(entry.max_len()) {
        return Err(StatusWord::IncorrectData);
    }
    let ok = entry.check(candidate);
    let max = entry.max_retries();
    let left = entry.retries_left();
    if ok {
        if left != max {
            if let Some(e) = ctx.store.vsc_mut().password_mut(which) {
                e.reset_retries();
            }
        }
        if which == PasswordRef::Pin {
            ctx.security.pin_verified = true;
        }
        Ok(())
    } else {
        if which == PasswordRef::Pin {
            ctx.security.pin_verified = false;
        }
        let left = ctx
            .store
            .vsc_mut()
            .password_mut(which)
            .map_or(0, |e| e.decrement());
        Err(tries_left(left))
    }
}

/// VERIFY (`00 20 00 80|81`): with data, checks it; without, reports the
/// status.
pub fn verify(ctx: &mut Ctx<'_>, which: PasswordRef, data: &[u8]) -> Result<ResponseApdu, StatusWord> {
    if data.is_empty() {
        let entry = ctx
            .store
            .vsc()
            .password(which)
            .ok_or(StatusWord::ReferencedDataNotFound)?;
        if which == PasswordRef::Pin && ctx.security.pin_verified {
            return Ok(ResponseApdu::status(StatusWord::Success));
        }
        return Err(tries_left(entry.retries_left()));
    }
    let candidate = unpad(data)?;
    check(ctx, which, &candidate)?;
    Ok(ResponseApdu::status(StatusWord::Success))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpadding() {
        assert_eq!(unpad(b"123456\xFF\xFF").unwrap().expose_secret(), b"123456");
        assert_eq!(unpad(b"12345678").unwrap().expose_secret(), b"12345678");
        assert_eq!(
            unpad(b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF").unwrap_err(),
            StatusWord::IncorrectData
        );
        assert_eq!(unpad(b"12\xFF45678").unwrap_err(), StatusWord::IncorrectData);
        assert_eq!(unpad(b"123456").unwrap_err(), StatusWord::IncorrectData);
    }

    #[test]
    fn tries_left_words() {
        assert_eq!(tries_left(0), StatusWord::AuthenticationMethodBlocked);
        assert_eq!(tries_left(2), StatusWord::VerificationFailed { retries: 2 });
    }
}
