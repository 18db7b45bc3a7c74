//! The VSC container: header, five areas, encryption, integrity, atomic save.
//!
//! A VSC (virtual smart card, seeds 000–002) is a software card with the
//! logical structure and content of a real one, kept in one file that must
//! stay readable for decades. The format is specified byte by byte in
//! `vsc/src/file/FORMAT.md`, rendered here as [`format`](mod@format); that text is the
//! contract, this code one implementation of it.
//!
//! - The **unique identifier** (16 random bytes) lives in the [`Header`],
//!   with label, type, [`Attributes`] (state, origin, creation time, chip
//!   serials), the structure of the areas and the file hierarchy with access
//!   conditions ([`Df`], [`Ef`]).
//! - The **public area** holds data objects in clear. Without a key,
//!   [`VscFile::inspect`] checks it for integrity only: anyone can recompute
//!   a SHA-256. [`Vsc::open`] with a key also authenticates it.
//! - The **private**, **secret key** and **password** areas are encrypted
//!   with AES-256-GCM under keys derived from the file's random DEK.
//! - The DEK is wrapped in one or more **key slots**: a password
//!   ([`Protector::Password`], Argon2id) or a keyserver KEK
//!   ([`Protector::Kek`]).
//!
//! Opening runs the whole consistency check before anything is returned;
//! every failure is a specific [`VscError`]. Saving is atomic and durable
//! ([`Vsc::save`]).
//!
//! ```
//! use vsc::file::{NewVsc, Protector, Unlock, Vsc, VscFile, DataObject, ObjectId};
//! use vsc::secret::AesKey;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand::rngs::OsRng;
//! let kek = AesKey::from_slice(&[7; 32])?;
//! let protector = Protector::Kek { key_id: "archive-kek/1".into(), key: kek.clone() };
//! let mut card = Vsc::create(NewVsc::new("VSC 00001079", "piv-basic", 1_700_000_000), &protector, &mut rng)?;
//! card.put_public(DataObject::new(ObjectId::Piv(0x5FC102), b"chuid".to_vec()))?;
//! let bytes = card.to_bytes(&mut rng)?;
//!
//! let seen = VscFile::inspect(&bytes)?; // no key: integrity, not authenticity
//! assert_eq!(seen.header.label, "VSC 00001079");
//! let opened = Vsc::open(&bytes, &Unlock::Kek { key_id: "archive-kek/1".into(), key: kek })?;
//! assert_eq!(opened.public_area().len(), 1);
//! # Ok(()) }
//! ```

/// The VSC file format, version 1.0 (the text of `FORMAT.md`).
pub mod format {
    #![doc = include_str!("FORMAT.md")]
}

mod container;
mod crypto;
mod encode;
mod error;
mod model;
mod save;
mod slots;
mod tlvio;

#[cfg(test)]
mod tests;

pub use container::{
    Inspection, NewVsc, Vsc, VscFile, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, MAX_FILE_SIZE, PREFIX_LEN,
    TRAILER_LEN,
};
pub use encode::AreaStructure;
pub use error::{AreaId, ContentError, IoOp, Section, VscError};
pub use model::{
    AccessRule, Attributes, DataObject, Df, Ef, EfArea, Header, KeyAlgorithm, KeyAttributes, KeyOrigin,
    KeyRef, Node, ObjectId, Origin, PasswordEntry, PasswordRef, PinPolicy, SecretKeyEntry, State,
    TouchPolicy, Uid, MAX_CHIP_SERIALS, MAX_DF_DEPTH, MAX_NODES, MAX_PATH_LEN, MAX_SERIAL_LEN, MAX_TEXT_LEN,
    MF_FID,
};
pub use slots::{Argon2Params, Protector, SlotInfo, Unlock, MAX_SLOTS, SALT_LEN};
