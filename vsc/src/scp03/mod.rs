//! GlobalPlatform SCP03 (Card Specification 2.3 Amendment D), host and card
//! halves. Pure: no I/O; randomness only where the caller passes a generator.
//!
//! # The protocol in brief
//!
//! 1. **INITIALIZE UPDATE** `80 50 KVN 00 08 <host challenge>`: the card picks
//!    the keyset, makes a card challenge (random, or pseudo-random from its
//!    sequence counter and the AID), derives the session keys S-ENC, S-MAC and
//!    S-RMAC from the static Key-ENC and Key-MAC with the SP 800-108 CMAC KDF
//!    ([`kdf`]) and context `host challenge ‖ card challenge`, and answers
//!    `KDD ‖ KVN ‖ 03 ‖ i ‖ card challenge ‖ card cryptogram [‖ counter]`.
//! 2. **EXTERNAL AUTHENTICATE** `84 82 SL 00 10 <host cryptogram> <C-MAC>`:
//!    the host has checked the card cryptogram and proves itself with the
//!    host cryptogram; the C-MAC uses the zero chaining value. Success opens
//!    the session at security level SL ([`SecurityLevel`]).
//! 3. **Secured commands**: CLA gets bit `04`; the data is encrypted with
//!    S-ENC (C-DECRYPTION levels; ICV from the command counter, ISO padding);
//!    a C-MAC over the previous C-MAC, the header and the data is appended, so
//!    the commands form one chain the card accepts only in order.
//! 4. **Secured responses** (R-MAC levels): `9000`, `62xx` and `63xx`
//!    responses carry an R-MAC bound to the command's C-MAC, and at level 33
//!    their data is encrypted; error status words come bare.
//!
//! Any verification failure ends the session on that side and zeroizes its
//! keys. Only S8 mode (8-byte challenges, cryptograms and MACs) is
//! implemented; a card in S16 mode is recognised and refused.
//!
//! # Halves
//!
//! - [`HostSession`] (the keyserver): open, wrap a whole script, check the
//!   responses later with each command's [`ResponseContext`].
//! - [`Scp03Card`] (the software card): the state machine behind a security
//!   domain or application; see its module for how commands without secure
//!   messaging are treated.

mod block;
mod card;
mod commands;
mod cryptogram;
mod dek;
mod error;
mod host;
pub mod kdf;
mod keys;
mod level;
mod mac;
mod wrap;

pub use card::{
    CardKeySet, CardOptions, CardSessionState, ChallengeMode, Protection, ResponseSupport, Scp03Card,
};
pub use commands::{
    ExternalAuthenticate, InitializeUpdate, InitializeUpdateResponse, CLA_GP, CLA_GP_SM, I_PSEUDO_RANDOM,
    I_R_ENC, I_R_MAC, I_S16, SCP03_ID,
};
pub use cryptogram::{
    card_cryptogram, cryptograms_equal, host_cryptogram, pseudo_random_card_challenge, MAX_SEQUENCE_COUNTER,
};
pub use dek::{
    decrypt_sensitive_data, encrypt_sensitive_data, key_check_value, put_key_component, KEY_TYPE_AES,
};
pub use error::Scp03Error;
pub use host::{HostSession, ResponseContext, WrappedCommand};
pub use kdf::{DerivationConstant, OutputLen};
pub use keys::{SessionKeys, StaticKeys};
pub use level::SecurityLevel;
