//! Reading passwords and KEKs from files or the terminal.

use std::io::IsTerminal;
use std::path::Path;

use vsc::file::Unlock;
use vsc::secret::{AesKey, SecretBytes};
use zeroize::Zeroizing;

use super::Failure;

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Failure::msg(format!("cannot read the {what} file {}: {e}", path.display())))
}

/// The first line of `path`, its line ending removed. Empty is an error.
pub(crate) fn password_from_file(path: &Path) -> Result<SecretBytes, Failure> {
    let bytes = read_secret_file(path, "password")?;
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(Failure::msg(format!(
            "the password file {} is empty (its first line is the password)",
            path.display()
        )));
    }
    Ok(SecretBytes::from_slice(line))
}

/// A 256-bit KEK: 32 raw bytes, or 64 hex digits (surrounding whitespace
/// ignored).
pub(crate) fn kek_from_file(path: &Path) -> Result<AesKey, Failure> {
    let bytes = read_secret_file(path, "KEK")?;
    let bad = || {
        Failure::msg(format!(
            "the KEK file {} must hold 32 raw bytes or 64 hex digits",
            path.display()
        ))
    };
    if bytes.len() == 32 {
        return AesKey::from_slice(&bytes).map_err(|_| bad());
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?.trim();
    if text.len() != 64 {
        return Err(bad());
    }
    let raw = Zeroizing::new(hex::decode(text).map_err(|_| bad())?);
    AesKey::from_slice(&raw).map_err(|_| bad())
}

/// A password typed on the terminal; an error if there is none.
pub(crate) fn prompt_password(prompt: &str, confirm: bool) -> Result<SecretBytes, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::msg(
            "a password is needed: give --password-file FILE (or --kek-file FILE --kek-id ID where \
             accepted); there is no terminal to ask on",
        ));
    }
    let read = |p: &str| {
        rpassword::prompt_password(p)
            .map(|s| Zeroizing::new(s.into_bytes()))
            .map_err(|e| Failure::msg(format!("cannot read the password: {e}")))
    };
    let first = read(prompt)?;
    if first.is_empty() {
        return Err(Failure::msg("the password is empty"));
    }
    if confirm {
        let again = read("Repeat the password: ")?;
        if *again != *first {
            return Err(Failure::msg("the passwords differ"));
        }
    }
    Ok(SecretBytes::from_slice(&first))
}

/// A second copy of an unlock (one per card the feeder opens).
pub(crate) fn clone_unlock(u: &Unlock) -> Unlock {
    match u {
        Unlock::Password(p) => Unlock::Password(p.clone()),
        Unlock::Kek { key_id, key } => Unlock::Kek {
            key_id: key_id.clone(),
            key: key.clone(),
        },
    }
}
