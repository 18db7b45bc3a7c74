//! Key slots: the file's data-encryption key (DEK), wrapped once per
//! protector, like LUKS key slots or age recipients.

use std::fmt;

use rand::{CryptoRng, RngCore};

use super::crypto;
use super::error::VscError;
use super::model::{check_text, Uid};
use crate::secret::{AesKey, AesKeyLen, SecretBytes};

/// Most key slots in one file.
pub const MAX_SLOTS: usize = 8;
/// Bytes of Argon2id salt in a password slot.
pub const SALT_LEN: usize = 16;
/// The Argon2 variant byte of Argon2id (RFC 9106, type y = 2).
pub(crate) const ARGON2ID: u8 = 0x02;
/// The Argon2 version byte (RFC 9106: 0x13).
pub(crate) const ARGON2_VERSION: u8 = 0x13;

/// Argon2id cost parameters of a password slot.
///
/// Two sets of bounds apply. Reading a file accepts `8 * p_cost <= m_cost_kib
/// <= 1 GiB`, `1 <= t_cost <= 64`, `1 <= p_cost <= 16` and refuses anything
/// else before running Argon2, so a hostile file cannot exhaust the machine.
/// [`Argon2Params::new`] (for writing) also requires `m_cost_kib >= 8 MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl Argon2Params {
    /// Largest memory cost a reader accepts: 1 GiB, in KiB.
    pub const MAX_M_COST_KIB: u32 = 1 << 20;
    /// Smallest memory cost a writer accepts: 8 MiB, in KiB.
    pub const MIN_NEW_M_COST_KIB: u32 = 8 << 10;
    pub const MAX_T_COST: u32 = 64;
    pub const MAX_P_COST: u32 = 16;

    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 1 lane. The
    /// default of `vsc new`.
    pub const RECOMMENDED: Argon2Params = Argon2Params {
        m_cost_kib: 64 << 10,
        t_cost: 3,
        p_cost: 1,
    };

    /// Parameters for a new slot, checked against the writer's bounds.
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, VscError> {
        let p = Argon2Params {
            m_cost_kib,
            t_cost,
            p_cost,
        };
        p.check_bounds(0)
            .map_err(|e| VscError::invalid("Argon2id parameters", e.to_string()))?;
        if m_cost_kib < Self::MIN_NEW_M_COST_KIB {
            return Err(VscError::invalid(
                "Argon2id parameters",
                format!(
                    "memory cost {m_cost_kib} KiB is below the minimum of {} KiB for new slots",
                    Self::MIN_NEW_M_COST_KIB
                ),
            ));
        }
        Ok(p)
    }

    pub fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }

    pub fn t_cost(&self) -> u32 {
        self.t_cost
    }

    pub fn p_cost(&self) -> u32 {
        self.p_cost
    }

    /// Memory × passes, the work one unlock attempt costs.
    pub fn work_kib_passes(&self) -> u64 {
        u64::from(self.m_cost_kib) * u64::from(self.t_cost)
    }

    /// The most Argon2id work all password slots of one file may ask for
    /// together: 4 GiB × 1 pass (sixteen times the recommended 64 MiB × 3).
    pub const MAX_TOTAL_WORK_KIB_PASSES: u64 = 4 << 20;

    /// Built by the reader, unchecked; [`Self::check_bounds`] follows.
    pub(crate) fn from_file(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Self {
        Argon2Params {
            m_cost_kib,
            t_cost,
            p_cost,
        }
    }

    /// The reader's bounds; `index` names the slot in the error.
    pub(crate) fn check_bounds(&self, index: usize) -> Result<(), VscError> {
        let out = |param, value, min, max| VscError::KdfParamsOutOfRange {
            index,
            param,
            value,
            min,
            max,
        };
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return Err(out("p_cost (lanes)", self.p_cost, 1, Self::MAX_P_COST));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return Err(out("t_cost (passes)", self.t_cost, 1, Self::MAX_T_COST));
        }
        let m_min = 8 * self.p_cost;
        if !(m_min..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return Err(out("m_cost (KiB)", self.m_cost_kib, m_min, Self::MAX_M_COST_KIB));
        }
        Ok(())
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params::RECOMMENDED
    }
}

impl fmt::Display for Argon2Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Argon2id m={} KiB, t={}, p={}",
            self.m_cost_kib, self.t_cost, self.p_cost
        )
    }
}

/// A way to protect the file's DEK, given when a slot is added.
pub enum Protector {
    /// A password, stretched with Argon2id.
    Password {
        password: SecretBytes,
        params: Argon2Params,
    },
    /// A 256-bit key-encryption key the keyserver holds, named by `key_id`
    /// (e.g. `archive-kek/1`).
    Kek { key_id: String, key: AesKey },
}

impl fmt::Debug for Protector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protector::Password { params, .. } => write!(f, "Protector::Password({params}, [REDACTED])"),
            Protector::Kek { key_id, .. } => write!(f, "Protector::Kek({key_id:?}, [REDACTED])"),
        }
    }
}

/// What opens a file: a password, or a named KEK.
pub enum Unlock {
    Password(SecretBytes),
    Kek { key_id: String, key: AesKey },
}

impl Unlock {
    pub(crate) fn describe(&self) -> String {
        match self {
            Unlock::Password(_) => "a password".into(),
            Unlock::Kek { key_id, .. } => format!("KEK {key_id:?}"),
        }
    }
}

impl fmt::Debug for Unlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unlock::Password(_) => f.write_str("Unlock::Password([REDACTED])"),
            Unlock::Kek { key_id, .. } => write!(f, "Unlock::Kek({key_id:?}, [REDACTED])"),
        }
    }
}

/// What a slot says about itself, readable without any key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotInfo {
    Password { params: Argon2Params },
    Kek { key_id: String },
}

impl fmt::Display for SlotInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotInfo::Password { params } => write!(f, "password ({params})"),
            SlotInfo::Kek { key_id } => write!(f, "KEK {key_id:?}"),
        }
    }
}

/// The protector-specific part of a slot: its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Password {
        params: Argon2Params,
        salt: [u8; SALT_LEN],
    },
    Kek {
        key_id: String,
    },
}

/// One key slot as stored: descriptor, nonce, the wrapped DEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeySlot {
    pub(crate) kind: SlotKind,
    pub(crate) nonce: [u8; crypto::NONCE_LEN],
    /// AES-256-GCM of the DEK: 32 bytes and the 16-byte tag.
    pub(crate) wrapped: Vec<u8>,
}

/// Bytes of a wrapped DEK.
pub(crate) const WRAPPED_LEN: usize = crypto::KEY_LEN + crypto::GCM_TAG_LEN;

impl KeySlot {
    pub(crate) fn info(&self) -> SlotInfo {
        match &self.kind {
            SlotKind::Password { params, .. } => SlotInfo::Password { params: *params },
            SlotKind::Kek { key_id } => SlotInfo::Kek {
                key_id: key_id.clone(),
            },
        }
    }

    /// The associated data of the wrap: label, UID, encoded descriptor.
    fn aad(uid: &Uid, kind: &SlotKind) -> Vec<u8> {
        let mut aad = crypto::SLOT_AAD_LABEL.to_vec();
        aad.extend_from_slice(uid.as_bytes());
        aad.extend_from_slice(&super::encode::slot_descriptor(kind));
        aad
    }

    /// A new slot wrapping `dek` for `protector`.
    pub(crate) fn wrap(
        dek: &SecretBytes,
        uid: &Uid,
        protector: &Protector,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<KeySlot, VscError> {
        let (kind, wrapping_key) = match protector {
            Protector::Password { password, params } => {
                if password.is_empty() {
                    return Err(VscError::invalid("password", "must not be empty"));
                }
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                let key = crypto::argon2id(password, &salt, params.m_cost_kib, params.t_cost, params.p_cost)
                    .map_err(|e| VscError::invalid("Argon2id parameters", e))?;
                (
                    SlotKind::Password {
                        params: *params,
                        salt,
                    },
                    key,
                )
            }
            Protector::Kek { key_id, key } => {
                check_text(key_id).map_err(|p| VscError::invalid("KEK id", p))?;
                if key.key_len() != AesKeyLen::Aes256 {
                    return Err(VscError::invalid(
                        "KEK",
                        "a key-encryption key is AES-256 (32 bytes)",
                    ));
                }
                (
                    SlotKind::Kek {
                        key_id: key_id.clone(),
                    },
                    SecretBytes::from_slice(key.expose_secret()),
                )
            }
        };
        let mut nonce = [0u8; crypto::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let wrapped = crypto::seal(&wrapping_key, &nonce, &Self::aad(uid, &kind), dek.expose_secret())
            .ok_or_else(|| VscError::invalid("wrapping key", "AES-256-GCM refused the key"))?;
        Ok(KeySlot { kind, nonce, wrapped })
    }

    /// Tries to unwrap the DEK with `unlock`. `None`: this slot is not for
    /// that kind of unlock (or another KEK id). `Some(None)`: it is, but the
    /// secret did not open it.
    pub(crate) fn try_unwrap(
        &self,
        uid: &Uid,
        unlock: &Unlock,
    ) -> Result<Option<Option<SecretBytes>>, VscError> {
        let key = match (&self.kind, unlock) {
            (SlotKind::Password { params, salt }, Unlock::Password(pw)) => {
                crypto::argon2id(pw, salt, params.m_cost_kib, params.t_cost, params.p_cost)
                    .map_err(|e| VscError::invalid("Argon2id", e))?
            }
            (SlotKind::Kek { key_id }, Unlock::Kek { key_id: want, key }) if key_id == want => {
                if key.key_len() != AesKeyLen::Aes256 {
                    return Err(VscError::invalid(
                        "KEK",
                        "a key-encryption key is AES-256 (32 bytes)",
                    ));
                }
                SecretBytes::from_slice(key.expose_secret())
            }
            _ => return Ok(None),
        };
        let dek = crypto::open(&key, &self.nonce, &Self::aad(uid, &self.kind), &self.wrapped)
            .filter(|d| d.len() == crypto::KEY_LEN)
            .map(SecretBytes::from);
        Ok(Some(dek))
    }
}
