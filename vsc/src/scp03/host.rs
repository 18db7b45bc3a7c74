//! The host half of SCP03, shaped for a keyserver that compiles a whole
//! script first and checks the card's replies later.
//!
//! 1. Send [`InitializeUpdate::to_command`](super::InitializeUpdate::to_command)
//!    and parse the reply with
//!    [`InitializeUpdateResponse::from_response`](super::InitializeUpdateResponse::from_response).
//!    Parsing needs no key: the keyserver reads the card's identity (KDD, KVN)
//!    from it and only then derives the card's static keys.
//! 2. [`HostSession::open`] verifies the card cryptogram and returns EXTERNAL
//!    AUTHENTICATE and the session.
//! 3. [`HostSession::wrap`] each command in order; keep each
//!    [`ResponseContext`].
//! 4. [`HostSession::unwrap`] each response with its context, in any order.
//!    A failed check ends the session: its keys are zeroized and every later
//!    call returns [`Scp03Error::SessionEnded`].

use std::fmt;

use super::block::Block;
use super::commands::{ExternalAuthenticate, InitializeUpdateResponse, CLA_GP_SM};
use super::cryptogram::{card_cryptogram, cryptograms_equal, host_cryptogram, pseudo_random_card_challenge};
use super::keys::{SessionKeys, StaticKeys};
use super::mac::{c_mac, indicates_any_secure_messaging, is_first_interindustry, r_mac, sw_is_protected};
use super::mac::{MacHeader, CLA_SM, MAC_LEN};
use super::wrap::{decrypt_response, encrypt_command, max_plain_command_len};
use super::{Scp03Error, SecurityLevel};
use crate::codec::{CommandApdu, Instruction, ResponseApdu, MAX_EXTENDED_NE, MAX_SHORT_LC, MAX_SHORT_NE};

/// What checking the response to one wrapped command needs: the command's
/// number (its encryption counter) and its full C-MAC.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseContext {
    command: u64,
    c_mac: Block,
}

impl ResponseContext {
    /// The number of the command in the session, from 1 (its encryption
    /// counter).
    pub fn command_number(&self) -> u64 {
        self.command
    }
}

impl fmt::Debug for ResponseContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseContext {{ command #{} }}", self.command)
    }
}

/// A secured command and what checking its response needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedCommand {
    pub apdu: CommandApdu,
    pub expect: ResponseContext,
}

/// An open secure channel session, host side.
pub struct HostSession {
    /// `None` once the session has ended; dropping zeroizes the keys.
    keys: Option<SessionKeys>,
    level: SecurityLevel,
    chain: Block,
    /// The counter of the last wrapped command (0 before the first).
    counter: u64,
}

impl HostSession {
    /// Opens a session from the card's INITIALIZE UPDATE response.
    ///
    /// Checks that the card supports `level`; in pseudo-random mode, when
    /// `aid_for_challenge_check` is given, that the card challenge is the one
    /// derived from the sequence counter and that AID; derives the session
    /// keys; verifies the card cryptogram. Returns EXTERNAL AUTHENTICATE (with
    /// the host cryptogram and its C-MAC over the zero chaining value), whose
    /// response is a bare `9000`, and the session.
    pub fn open(
        keys: &StaticKeys,
        host_challenge: [u8; 8],
        response: &InitializeUpdateResponse,
        level: SecurityLevel,
        aid_for_challenge_check: Option<&[u8]>,
    ) -> Result<(CommandApdu, HostSession), Scp03Error> {
        let unsupported = |missing| Scp03Error::LevelNotSupportedByCard {
            level,
            missing,
            i: response.i_param,
        };
        if level.r_mac() && !response.r_mac_supported() {
            return Err(unsupported("R-MAC"));
        }
        if level.r_encryption() && !response.r_enc_supported() {
            return Err(unsupported("R-ENCRYPTION"));
        }
        if let (Some(aid), Some(seq)) = (aid_for_challenge_check, response.sequence_counter) {
            let expected = pseudo_random_card_challenge(keys.enc(), seq, aid);
            if !cryptograms_equal(&expected, &response.card_challenge) {
                return Err(Scp03Error::CardChallengeMismatch(seq));
            }
        }
        let session = SessionKeys::derive(keys, &host_challenge, &response.card_challenge);
        let expected = card_cryptogram(session.s_mac(), &host_challenge, &response.card_challenge);
        if !cryptograms_equal(&expected, &response.card_cryptogram) {
            return Err(Scp03Error::CardCryptogramMismatch);
        }
        let host_cryptogram = host_cryptogram(session.s_mac(), &host_challenge, &response.card_challenge);
        let header = MacHeader {
            cla: CLA_GP_SM,
            ins: Instruction::ExternalAuthenticate,
            p1: level.to_byte(),
            p2: 0x00,
        };
        let m = c_mac(session.s_mac(), &[0; 16], header, &host_cryptogram, false);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&m[..MAC_LEN]);
        let command = ExternalAuthenticate {
            level,
            host_cryptogram,
            mac,
        }
        .to_command();
        let session = HostSession {
            keys: Some(session),
            level,
            chain: m,
            counter: 0,
        };
        Ok((command, session))
    }

    /// Secures the next command: encrypts its data (C-DECRYPTION levels, when
    /// it has data), appends the C-MAC chained to the previous command, and
    /// sets the secure messaging bit of CLA. The secured APDU is extended when
    /// its data field (with the C-MAC) is longer than 255 bytes or the
    /// original Ne is more than 256; a command with Ne then asks for 65 536
    /// bytes, otherwise for 256, leaving room for the R-MAC and padding.
    ///
    /// CLA must be a first interindustry or `8x` class without secure
    /// messaging bits. A refused command leaves the session unchanged.
    pub fn wrap(&mut self, cmd: &CommandApdu) -> Result<WrappedCommand, Scp03Error> {
        let keys = self.keys.as_ref().ok_or(Scp03Error::SessionEnded)?;
        let cla = cmd.cla();
        if !is_first_interindustry(cla) || indicates_any_secure_messaging(cla) {
            return Err(Scp03Error::UnsupportedCla(cla));
        }
        let max = max_plain_command_len(self.level.c_decryption());
        if cmd.data().len() > max {
            return Err(Scp03Error::CommandTooLong {
                len: cmd.data().len(),
                max,
                level: self.level,
            });
        }
        let counter = self.counter.checked_add(1).ok_or(Scp03Error::CounterExhausted)?;
        let mut data = if self.level.c_decryption() && !cmd.data().is_empty() {
            encrypt_command(keys.s_enc(), counter, cmd.data())
        } else {
            cmd.data().to_vec()
        };
        // Extended when the secured data field or Ne needs it; the MACed Lc'
        // takes the same form as the APDU (as GlobalPlatformPro does).
        let extended = data.len() + MAC_LEN > MAX_SHORT_LC || cmd.ne().is_some_and(|ne| ne > MAX_SHORT_NE);
        let secured_cla = cla | CLA_SM;
        let header = MacHeader {
            cla: secured_cla,
            ins: cmd.ins(),
            p1: cmd.p1(),
            p2: cmd.p2(),
        };
        let m = c_mac(keys.s_mac(), &self.chain, header, &data, extended);
        data.extend_from_slice(&m[..MAC_LEN]);
        let mut apdu = CommandApdu::new(secured_cla, cmd.ins(), cmd.p1(), cmd.p2()).with_data(data)?;
        if cmd.ne().is_some() {
            apdu = apdu.with_ne(if extended { MAX_EXTENDED_NE } else { MAX_SHORT_NE })?;
        }
        self.counter = counter;
        self.chain = m;
        Ok(WrappedCommand {
            apdu,
            expect: ResponseContext {
                command: counter,
                c_mac: m,
            },
        })
    }

    /// Checks and removes the protection of the response to the command that
    /// `ctx` came with: at R-MAC levels, a `9000`/`62xx`/`63xx` response must
    /// carry a valid R-MAC (and, at level 33, its data is decrypted); any
    /// other status word must come bare. At levels without R-MAC the response
    /// is returned as it is.
    ///
    /// A failure ends the session and zeroizes its keys.
    pub fn unwrap(&mut self, ctx: &ResponseContext, resp: &ResponseApdu) -> Result<ResponseApdu, Scp03Error> {
        let keys = self.keys.as_ref().ok_or(Scp03Error::SessionEnded)?;
        let result = check_response(keys, self.level, ctx, resp);
        if result.is_err() {
            self.end();
        }
        result
    }

    /// Ends the session and zeroizes its keys.
    pub fn end(&mut self) {
        self.keys = None;
        self.chain = [0; 16];
    }

    /// The level the session was opened at.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// How many commands have been wrapped.
    pub fn commands_wrapped(&self) -> u64 {
        self.counter
    }

    /// Whether the session has ended (after a failure or [`HostSession::end`]).
    pub fn is_ended(&self) -> bool {
        self.keys.is_none()
    }

    /// Whether the session keys are still held (false once ended).
    pub fn has_session_keys(&self) -> bool {
        self.keys.is_some()
    }
}

impl fmt::Debug for HostSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSession")
            .field("level", &self.level)
            .field("commands_wrapped", &self.counter)
            .field("ended", &self.is_ended())
            .finish_non_exhaustive()
    }
}

fn check_response(
    keys: &SessionKeys,
    level: SecurityLevel,
    ctx: &ResponseContext,
    resp: &ResponseApdu,
) -> Result<ResponseApdu, Scp03Error> {
    let command = ctx.command;
    if !level.r_mac() {
        return Ok(resp.clone());
    }
    if !sw_is_protected(resp.sw) {
        if !resp.data.is_empty() {
            return Err(Scp03Error::UnexpectedResponseData {
                command,
                sw: resp.sw,
                len: resp.data.len(),
            });
        }
        return Ok(resp.clone());
    }
    let len = resp.data.len();
    let Some(split) = len.checked_sub(MAC_LEN) else {
        return Err(Scp03Error::RMacMissing { command, len });
    };
    let (data, mac) = resp.data.split_at(split);
    let expected = r_mac(keys.s_rmac(), &ctx.c_mac, data, resp.sw);
    if !cryptograms_equal(&expected, mac) {
        return Err(Scp03Error::RMacMismatch { command });
    }
    if level.r_encryption() && !data.is_empty() {
        let plain = decrypt_response(keys.s_enc(), command, data).ok_or(Scp03Error::ResponseDecryption {
            command,
            len: data.len(),
        })?;
        return Ok(ResponseApdu::new(plain.to_vec(), resp.sw));
    }
    Ok(ResponseApdu::new(data, resp.sw))
}
