//! The PIV card application (NIST SP 800-73-4 card edge, with the common
//! Yubico extensions), as OpenSC and yubico-piv-tool expect to find it.
//!
//! # Commands
//!
//! | INS | command | answers |
//! |-----|---------|---------|
//! | `A4` | SELECT (by the dispatcher; right-truncated AID) | `61 {4F PIX, 79 {4F RID}}` |
//! | `CB` | GET DATA `3FFF`, `5C` tag list | `53 …` / `7E …`; `6A82` unknown or absent; `6982` PIN-protected without PIN |
//! | `DB` | PUT DATA `3FFF`, `5C` + `53` (or `7E`) | `9000`; `53 00` deletes; `6982` without authority |
//! | `20` | VERIFY `80`/`81`, status without data, `P1=FF` logout | `9000`, `63Cx`, `6983` |
//! | `24` | CHANGE REFERENCE DATA `80`/`81` | `9000`, `63Cx`, `6983`, `6A80` (new value's length) |
//! | `2C` | RESET RETRY COUNTER `80` (PUK + new PIN) | `9000`, `63Cx`, `6983` |
//! | `87` | GENERAL AUTHENTICATE: `9B` mutual/single authentication; sign, raw RSA, ECDH | `7C {8x …}` |
//! | `47` | GENERATE ASYMMETRIC KEY PAIR (RSA-2048, P-256) | `7F49 {…}`; `6982` without authority |
//! | `FE` | IMPORT ASYMMETRIC KEY (Yubico) | `9000`; `6A80` for a bad key |
//! | `FF` | SET MANAGEMENT KEY (Yubico; 3DES, AES-128/192/256) | `9000`; `6982` without authority |
//! | `FD` | GET VERSION (Yubico) | `05 04 03` |
//! | `F8` | GET SERIAL (Yubico) | the chip serial, 4 bytes |
//! | `F7` | GET METADATA (Yubico) for `9B`, `80`, `81` and key slots | YubiKey 5.3 format; `6A88` empty slot |
//!
//! Anything else is `6D00`; a proprietary class (`8x`) is `6E00`. Every
//! malformed data field answers `6A80`, a missing one `6700`, bad P1/P2
//! `6A86`; no command returns private key material.
//!
//! # Authority
//!
//! PUT DATA, GENERATE, IMPORT and SET MANAGEMENT KEY need the management
//! key's authentication (GENERAL AUTHENTICATE with `9B`) or the issuer's
//! authority: a command that arrived under the card's SCP03 session
//! ([`Ctx::issuer_authorized`]). The keyserver personalizes cards with
//! pre-compiled SCP03 scripts, which cannot answer a `9B` challenge.
//!
//! # Key use and the PIN
//!
//! Each key slot has SP 800-73-4's policy unless its key carries one
//! (`AA` at GENERATE or IMPORT): `9A`, `9D`, `82`–`95` need the PIN once
//! per session; `9C` needs it "always": a successful VERIFY of the PIN
//! readies exactly one use of a key with that policy (OpenSC sends VERIFY
//! just before each signature with `9C`); `9E` never needs it. Touch
//! policies are stored and reported but not enforced: a software card has
//! no button.
//!
//! Every slot may sign (ECDSA) or run the raw RSA operation (signing and
//! decrypting are the same operation on a pre-padded block); every slot but
//! `9C` may run ECDH, because the digital signature key serves signatures
//! only. An algorithm in P1 that is not the key's answers `6A80`.
//!
//! # Volatile state
//!
//! The management key's authentication, a pending `9B` witness or
//! challenge, and the readied "PIN always" use are lost on reset, power off
//! and deselection; the PIN status is the card's (shared with the file
//! system) and survives a re-SELECT of PIV, as OpenSC expects. Everything
//! persistent goes to the VSC, which the dispatcher saves after the command.

mod general_auth;
mod generate;
mod import;
mod info;
mod keys;
mod management;
mod objects;
mod pins;
mod slots;

use crate::codec::{CommandApdu, Instruction, ResponseApdu, StatusWord};
use crate::file::KeyAlgorithm;
use crate::secret::SecretBytes;

use super::app::{Application, Ctx};

pub use info::VERSION;
pub use objects::DEFAULT_DISCOVERY;

/// The PIV application's full AID.
pub const PIV_AID: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00];

/// A management key authentication step the card waits for.
#[derive(Debug)]
enum Pending {
    /// Mutual authentication: the host must return this witness.
    Witness {
        algorithm: KeyAlgorithm,
        witness: SecretBytes,
    },
    /// Single authentication: the host must return E(K, challenge).
    Challenge {
        algorithm: KeyAlgorithm,
        challenge: SecretBytes,
    },
}

/// PIV state lost on reset, power off and deselection.
#[derive(Debug, Default)]
struct Volatile {
    /// The management key was authenticated.
    management_authenticated: bool,
    /// A `9B` witness or challenge handed out and not yet answered.
    pending: Option<Pending>,
    /// A VERIFY of the PIN readied one "PIN always" key use.
    pin_always_ready: bool,
}

impl Volatile {
    /// Whether the command may administer the application: after the
    /// management key's authentication, or under the issuer's SCP03 session.
    fn administrator(&self, ctx: &Ctx<'_>) -> bool {
        self.management_authenticated || ctx.issuer_authorized()
    }
}

/// The PIV application.
#[derive(Debug, Default)]
pub struct Piv {
    vol: Volatile,
}

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
        // A re-SELECT keeps the authentication states but not a half-done
        // management key authentication.
        self.vol.pending = None;
        Ok(ResponseApdu::success(info::application_property_template()))
    }

    fn process(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        if cmd.cla() & 0x80 != 0 {
            return Err(StatusWord::ClassNotSupported);
        }
        let vol = &mut self.vol;
        match cmd.ins() {
            Instruction::GetDataOdd => objects::get_data(ctx, cmd),
            Instruction::PutDataOdd => objects::put_data(vol, ctx, cmd),
            Instruction::Verify => pins::verify(vol, ctx, cmd),
            Instruction::ChangeReferenceData => pins::change_reference_data(vol, ctx, cmd),
            Instruction::ResetRetryCounter => pins::reset_retry_counter(vol, ctx, cmd),
            Instruction::GeneralAuthenticate => general_auth::process(vol, ctx, cmd),
            Instruction::GenerateAsymmetricKeyPair => generate::process(vol, ctx, cmd),
            Instruction::ImportAsymmetricKey => import::process(vol, ctx, cmd),
            Instruction::SetManagementKey => management::set_management_key(vol, ctx, cmd),
            Instruction::GetVersion => Ok(info::version()),
            Instruction::GetSerial => Ok(info::serial(ctx)),
            Instruction::GetMetadata => info::metadata(ctx, cmd),
            _ => Err(StatusWord::InstructionNotSupported),
        }
    }

    fn reset(&mut self) {
        self.vol = Volatile::default();
    }
}
