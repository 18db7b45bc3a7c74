//! The card half of SCP03: a state machine for one application session on
//! one logical channel.
//!
//! ```text
//!            INITIALIZE UPDATE          EXTERNAL AUTHENTICATE ok
//!   Idle ─────────────────────▶ Initialized ─────────────────────▶ Open(level)
//!    ▲  ▲                          │ any failure                      │ any secure
//!    │  └──────────────────────────┘                                  │ messaging failure
//!    │ reset() / new INITIALIZE UPDATE                                ▼
//!    └──────────────────────────────────────────────────────────── Aborted
//! ```
//!
//! The application's dispatcher routes INITIALIZE UPDATE (INS `50`) to
//! [`Scp03Card::process_initialize_update`], EXTERNAL AUTHENTICATE (INS `82`)
//! to [`Scp03Card::process_external_authenticate`], and every other command
//! through [`Scp03Card::unwrap_command`], then its response through
//! [`Scp03Card::wrap_response`]. It calls [`Scp03Card::reset`] on power off,
//! reset, and SELECT of another application.
//!
//! # Commands without secure messaging
//!
//! Following Amd D §5.6 (protocol rules):
//!
//! - With no session (Idle, or between INITIALIZE UPDATE and EXTERNAL
//!   AUTHENTICATE), a command whose CLA does not indicate secure messaging is
//!   returned as it is with [`Protection::None`]. **The application must
//!   refuse privileged commands that arrive with `Protection::None`** (PUT KEY,
//!   personalization writes, …): only it knows which commands need a session.
//!   A command that does indicate secure messaging is refused with `6982`,
//!   since there are no keys to verify it.
//! - While a session is open, every command must be secured at the session's
//!   level. One without the secure messaging bit is refused with `6982` and
//!   aborts the session, like any MAC, padding or length failure.
//! - After an abort, every command is refused with `6982` until
//!   [`Scp03Card::reset`] or a new INITIALIZE UPDATE.

use std::fmt;

use rand::{CryptoRng, RngCore};

use super::block::Block;
use super::commands::{
    ExternalAuthenticate, InitializeUpdate, InitializeUpdateResponse, I_PSEUDO_RANDOM, I_R_ENC, I_R_MAC,
    SCP03_ID,
};
use super::cryptogram::{
    card_cryptogram, cryptograms_equal, host_cryptogram, pseudo_random_card_challenge, MAX_SEQUENCE_COUNTER,
};
use super::keys::{SessionKeys, StaticKeys};
use super::mac::{
    c_mac, channel, indicates_any_secure_messaging, is_secure_messaging, r_mac, sw_is_protected,
};
use super::mac::{MacHeader, CLA_SM, MAC_LEN};
use super::wrap::{decrypt_command, encrypt_response};
use super::SecurityLevel;
use crate::codec::{CommandApdu, ResponseApdu, StatusWord};

/// One keyset as the card stores it. The card increments
/// `sequence_counter` before each pseudo-random challenge; the caller
/// persists the keysets after INITIALIZE UPDATE, before the response leaves
/// the card. (A counter that goes back repeats a card challenge, and with a
/// repeated host challenge the whole session, so old commands would replay.)
#[derive(Clone, Debug)]
pub struct CardKeySet {
    pub kvn: u8,
    pub keys: StaticKeys,
    /// The 24-bit sequence counter; 0 for a new or replaced keyset.
    pub sequence_counter: u32,
}

/// How the card makes its challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeMode {
    /// Derived from Key-ENC, the sequence counter and the AID (`i & 10`).
    PseudoRandom,
    /// Drawn from the random generator.
    Random,
}

/// Which response protection the card offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseSupport {
    /// Neither R-MAC nor R-ENCRYPTION.
    None,
    /// R-MAC (`i & 20`).
    RMac,
    /// R-MAC and R-ENCRYPTION (`i & 60`).
    RMacREnc,
}

/// The card's SCP03 options, announced in `i`. The default is
/// pseudo-random challenges with R-MAC and R-ENCRYPTION: `i = 70`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CardOptions {
    pub challenge: ChallengeMode,
    pub responses: ResponseSupport,
}

impl Default for CardOptions {
    fn default() -> Self {
        CardOptions {
            challenge: ChallengeMode::PseudoRandom,
            responses: ResponseSupport::RMacREnc,
        }
    }
}

impl CardOptions {
    /// The `i` parameter (Amd D Table 5-1).
    pub fn i_param(&self) -> u8 {
        let challenge = match self.challenge {
            ChallengeMode::PseudoRandom => I_PSEUDO_RANDOM,
            ChallengeMode::Random => 0,
        };
        let responses = match self.responses {
            ResponseSupport::None => 0,
            ResponseSupport::RMac => I_R_MAC,
            ResponseSupport::RMacREnc => I_R_MAC | I_R_ENC,
        };
        challenge | responses
    }

    fn supports(&self, level: SecurityLevel) -> bool {
        match self.responses {
            ResponseSupport::None => !level.r_mac(),
            ResponseSupport::RMac => !level.r_encryption(),
            ResponseSupport::RMacREnc => true,
        }
    }
}

/// How an unwrapped command was protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// The command came without secure messaging, outside a session. The
    /// application must refuse privileged commands with this protection.
    None,
    /// The command's C-MAC verified (and its data was decrypted) at this level.
    Secured(SecurityLevel),
}

/// Where the card's session stands, for callers and tests to observe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardSessionState {
    /// No session.
    Idle,
    /// INITIALIZE UPDATE done; waiting for EXTERNAL AUTHENTICATE.
    Initialized,
    /// A session is open at this level.
    Open(SecurityLevel),
    /// The session was aborted after a failure; commands are refused until a
    /// reset or a new INITIALIZE UPDATE.
    Aborted,
}

struct Pending {
    keys: SessionKeys,
    host_cryptogram: [u8; 8],
    channel: u8,
    kvn: u8,
}

/// What wrapping the response to the last unwrapped command needs.
struct Answer {
    counter: u64,
    c_mac: Block,
}

struct Open {
    keys: SessionKeys,
    /// The key set the session was opened with.
    kvn: u8,
    level: SecurityLevel,
    chain: Block,
    /// The counter of the last verified command (0 right after EXTERNAL
    /// AUTHENTICATE).
    counter: u64,
    channel: u8,
    answer: Option<Answer>,
}

impl Open {
    /// Verifies and removes the protection of `cmd`. Any error aborts the
    /// session (done by the caller), so a partial update does not matter.
    fn unwrap(&mut self, cmd: &CommandApdu) -> Option<CommandApdu> {
        let cla = cmd.cla();
        if !is_secure_messaging(cla) || channel(cla) != self.channel {
            return None;
        }
        let data = cmd.data();
        let (data_prime, mac) = data.split_at(data.len().checked_sub(MAC_LEN)?);
        let header = MacHeader {
            cla,
            ins: cmd.ins(),
            p1: cmd.p1(),
            p2: cmd.p2(),
        };
        let m = c_mac(
            self.keys.s_mac(),
            &self.chain,
            header,
            data_prime,
            cmd.needs_extended(),
        );
        if !cryptograms_equal(&m[..MAC_LEN], mac) {
            return None;
        }
        let counter = self.counter.checked_add(1)?;
        let plain = if self.level.c_decryption() && !data_prime.is_empty() {
            // An empty field encrypted (one block of pure padding, as yubikit
            // sends it) decrypts to empty data.
            decrypt_command(self.keys.s_enc(), counter, data_prime)?
        } else {
            zeroize::Zeroizing::new(data_prime.to_vec())
        };
        let mut out = CommandApdu::new(cla & !CLA_SM, cmd.ins(), cmd.p1(), cmd.p2())
            .with_data(plain.to_vec())
            .ok()?;
        if let Some(ne) = cmd.ne() {
            out = out.with_ne(ne).ok()?;
        }
        self.chain = m;
        self.counter = counter;
        self.answer = Some(Answer { counter, c_mac: m });
        Some(out)
    }

    fn wrap(&mut self, resp: ResponseApdu) -> ResponseApdu {
        let Some(answer) = self.answer.take() else {
            return resp;
        };
        if !self.level.r_mac() {
            return resp;
        }
        if !sw_is_protected(resp.sw) {
            return ResponseApdu::status(resp.sw);
        }
        let mut data = if self.level.r_encryption() && !resp.data.is_empty() {
            encrypt_response(self.keys.s_enc(), answer.counter, &resp.data)
        } else {
            resp.data
        };
        let mac = r_mac(self.keys.s_rmac(), &answer.c_mac, &data, resp.sw);
        data.extend_from_slice(&mac);
        ResponseApdu::new(data, resp.sw)
    }
}

enum State {
    Idle,
    Initialized(Pending),
    Open(Open),
    Aborted,
}

/// The card half of SCP03. Session keys live only in the `Initialized` and
/// `Open` states; every transition out of them drops (and so zeroizes) them.
pub struct Scp03Card {
    options: CardOptions,
    state: State,
}

impl Default for Scp03Card {
    fn default() -> Self {
        Scp03Card::new(CardOptions::default())
    }
}

impl Scp03Card {
    pub fn new(options: CardOptions) -> Self {
        Scp03Card {
            options,
            state: State::Idle,
        }
    }

    pub fn options(&self) -> CardOptions {
        self.options
    }

    /// INITIALIZE UPDATE. Ends any current session first (Amd D §5.6), then
    /// picks the keyset (KVN `00`: the first one; unknown: `6A88`), makes the
    /// card challenge (pseudo-random: increments the keyset's sequence counter
    /// first, `6985` once it has reached `FFFFFF`), derives the session keys
    /// and answers with the card cryptogram. The caller persists `keysets`
    /// afterwards. `aid` is the AID of the application running the secure
    /// channel (part of the pseudo-random challenge); `rng` is used only for
    /// random challenges.
    pub fn process_initialize_update(
        &mut self,
        cmd: &CommandApdu,
        keysets: &mut [CardKeySet],
        kdd: &[u8; 10],
        aid: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<ResponseApdu, StatusWord> {
        self.state = State::Idle;
        let iu = InitializeUpdate::try_from(cmd)?;
        let keyset = if iu.kvn == 0 {
            keysets.first_mut()
        } else {
            keysets.iter_mut().find(|k| k.kvn == iu.kvn)
        }
        .ok_or(StatusWord::ReferencedDataNotFound)?;
        let (card_challenge, sequence_counter) = match self.options.challenge {
            ChallengeMode::PseudoRandom => {
                if keyset.sequence_counter >= MAX_SEQUENCE_COUNTER {
                    return Err(StatusWord::ConditionsOfUseNotSatisfied);
                }
                keyset.sequence_counter += 1;
                let seq = keyset.sequence_counter;
                (
                    pseudo_random_card_challenge(keyset.keys.enc(), seq, aid),
                    Some(seq),
                )
            }
            ChallengeMode::Random => {
                let mut c = [0u8; 8];
                rng.fill_bytes(&mut c);
                (c, None)
            }
        };
        let keys = SessionKeys::derive(&keyset.keys, &iu.host_challenge, &card_challenge);
        let response = InitializeUpdateResponse {
            key_diversification_data: *kdd,
            kvn: keyset.kvn,
            scp_id: SCP03_ID,
            i_param: self.options.i_param(),
            card_challenge,
            card_cryptogram: card_cryptogram(keys.s_mac(), &iu.host_challenge, &card_challenge),
            sequence_counter,
        };
        let host_cryptogram = host_cryptogram(keys.s_mac(), &iu.host_challenge, &card_challenge);
        self.state = State::Initialized(Pending {
            keys,
            host_cryptogram,
            channel: channel(cmd.cla()),
            kvn: keyset.kvn,
        });
        Ok(ResponseApdu::success(response.to_bytes()))
    }

    /// EXTERNAL AUTHENTICATE. Without a preceding INITIALIZE UPDATE: `6985`.
    /// A malformed command answers as [`ExternalAuthenticate::try_from`] says;
    /// a level the card does not offer: `6A86`; a wrong host cryptogram:
    /// `6300`; a wrong C-MAC (computed over the zero chaining value): `6982`.
    /// Every failure discards the INITIALIZE UPDATE (a new one is needed).
    /// Success opens the session and answers a bare `9000` (no R-MAC); the
    /// encryption counter is not advanced.
    pub fn process_external_authenticate(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let pending = match std::mem::replace(&mut self.state, State::Idle) {
            State::Initialized(p) => p,
            State::Idle => return Err(StatusWord::ConditionsOfUseNotSatisfied),
            State::Open(_) | State::Aborted => {
                self.state = State::Aborted;
                return Err(StatusWord::ConditionsOfUseNotSatisfied);
            }
        };
        let ea = ExternalAuthenticate::try_from(cmd)?;
        if channel(cmd.cla()) != pending.channel {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        if !self.options.supports(ea.level) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if !cryptograms_equal(&ea.host_cryptogram, &pending.host_cryptogram) {
            return Err(StatusWord::AuthenticationFailed);
        }
        let header = MacHeader {
            cla: cmd.cla(),
            ins: cmd.ins(),
            p1: cmd.p1(),
            p2: cmd.p2(),
        };
        let m = c_mac(
            pending.keys.s_mac(),
            &[0; 16],
            header,
            &ea.host_cryptogram,
            cmd.needs_extended(),
        );
        if !cryptograms_equal(&m[..MAC_LEN], &ea.mac) {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        self.state = State::Open(Open {
            keys: pending.keys,
            kvn: pending.kvn,
            level: ea.level,
            chain: m,
            counter: 0,
            channel: pending.channel,
            answer: None,
        });
        Ok(ResponseApdu::success(Vec::new()))
    }

    /// Verifies and removes the secure messaging of a command (see the module
    /// documentation for commands without it). Any failure answers `6982`,
    /// and if a session was open it is aborted and its keys zeroized.
    pub fn unwrap_command(&mut self, cmd: &CommandApdu) -> Result<(CommandApdu, Protection), StatusWord> {
        match &mut self.state {
            State::Aborted => Err(StatusWord::SecurityStatusNotSatisfied),
            State::Idle | State::Initialized(_) => {
                if indicates_any_secure_messaging(cmd.cla()) {
                    Err(StatusWord::SecurityStatusNotSatisfied)
                } else {
                    Ok((cmd.clone(), Protection::None))
                }
            }
            State::Open(open) => match open.unwrap(cmd) {
                Some(plain) => Ok((plain, Protection::Secured(open.level))),
                None => Err(self.abort_session()),
            },
        }
    }

    /// [`Scp03Card::unwrap_command`] on the raw bytes of a command. Bytes that
    /// do not parse as an APDU answer `6982` and abort an open session (they
    /// cannot be a correctly secured command); outside a session they answer
    /// as the codec says (`6700`).
    pub fn unwrap_command_bytes(&mut self, raw: &[u8]) -> Result<(CommandApdu, Protection), StatusWord> {
        match CommandApdu::parse(raw) {
            Ok(cmd) => self.unwrap_command(&cmd),
            Err(e) => match self.state {
                State::Open(_) | State::Aborted => Err(self.abort_session()),
                State::Idle | State::Initialized(_) => Err(e.status_word()),
            },
        }
    }

    /// Protects the response to the command last returned by
    /// [`Scp03Card::unwrap_command`] with [`Protection::Secured`]: at R-MAC
    /// levels a `9000`/`62xx`/`63xx` response gets its data encrypted (level
    /// 33, when there is data) and an R-MAC; any other status word is returned
    /// bare, its data dropped. Other responses pass unchanged.
    pub fn wrap_response(&mut self, resp: ResponseApdu) -> ResponseApdu {
        match &mut self.state {
            State::Open(open) => open.wrap(resp),
            _ => resp,
        }
    }

    /// Ends the session and zeroizes its keys: power off, reset, SELECT of
    /// another application. A new session starts with INITIALIZE UPDATE.
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Aborts the session after a security failure the application found
    /// itself, zeroizing its keys; until [`Scp03Card::reset`] or a new
    /// INITIALIZE UPDATE every command is refused. Returns `6982` to answer
    /// with. Without an open session only a pending INITIALIZE UPDATE is
    /// discarded.
    pub fn abort_session(&mut self) -> StatusWord {
        self.state = match self.state {
            State::Open(_) | State::Aborted => State::Aborted,
            State::Idle | State::Initialized(_) => State::Idle,
        };
        StatusWord::SecurityStatusNotSatisfied
    }

    pub fn state(&self) -> CardSessionState {
        match &self.state {
            State::Idle => CardSessionState::Idle,
            State::Initialized(_) => CardSessionState::Initialized,
            State::Open(o) => CardSessionState::Open(o.level),
            State::Aborted => CardSessionState::Aborted,
        }
    }

    /// The level of the open session, if any.
    pub fn security_level(&self) -> Option<SecurityLevel> {
        match &self.state {
            State::Open(o) => Some(o.level),
            _ => None,
        }
    }

    /// The key version number of the key set the open session was opened
    /// with, if a session is open. Its static Key-DEK decrypts sensitive data
    /// such as the keys of PUT KEY (SCP03 has no session DEK).
    pub fn session_kvn(&self) -> Option<u8> {
        match &self.state {
            State::Open(o) => Some(o.kvn),
            _ => None,
        }
    }

    /// Whether session keys are held (after INITIALIZE UPDATE and while open).
    pub fn has_session_keys(&self) -> bool {
        matches!(self.state, State::Initialized(_) | State::Open(_))
    }
}

impl fmt::Debug for Scp03Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scp03Card")
            .field("options", &self.options)
            .field("state", &self.state())
            .finish()
    }
}
