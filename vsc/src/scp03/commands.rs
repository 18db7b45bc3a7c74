//! INITIALIZE UPDATE and EXTERNAL AUTHENTICATE as typed values (Card Spec
//! Tables E-7 and E-10; Amd D §7.1).
//!
//! The card side parses commands with `TryFrom<&CommandApdu>`, whose error is
//! the status word to answer. The host side parses the INITIALIZE UPDATE
//! response with a typed [`Scp03Error`]. Only S8 mode (8-byte challenges,
//! cryptograms and MACs) is supported; S16 is detected and refused.

use crate::codec::{CommandApdu, Instruction, ResponseApdu, StatusWord};

use super::{Scp03Error, SecurityLevel};

/// The secure channel protocol identifier of SCP03.
pub const SCP03_ID: u8 = 0x03;

/// `i` bit: the card challenge is pseudo-random (and the response carries the
/// sequence counter).
pub const I_PSEUDO_RANDOM: u8 = 0x10;
/// `i` bit: R-MAC is supported.
pub const I_R_MAC: u8 = 0x20;
/// `i` bit: R-ENCRYPTION is supported (with R-MAC: `i & 0x60 == 0x60`).
pub const I_R_ENC: u8 = 0x40;
/// `i` bit: S16 mode (Amd D v1.2), not supported here.
pub const I_S16: u8 = 0x01;

/// CLA of INITIALIZE UPDATE on the basic channel.
pub const CLA_GP: u8 = 0x80;
/// CLA of EXTERNAL AUTHENTICATE (and of secured GlobalPlatform commands) on
/// the basic channel.
pub const CLA_GP_SM: u8 = 0x84;

/// Builds a command whose data is known to fit (at most a few dozen bytes).
fn fixed_command(cla: u8, ins: Instruction, p1: u8, p2: u8, data: &[u8], ne: Option<usize>) -> CommandApdu {
    let cmd = CommandApdu::new(cla, ins, p1, p2).with_data(data.to_vec());
    let cmd = match (cmd, ne) {
        (Ok(c), None) => Ok(c),
        (Ok(c), Some(ne)) => c.with_ne(ne),
        (Err(e), _) => Err(e),
    };
    match cmd {
        Ok(c) => c,
        // Callers pass at most 16 bytes of data and Ne 256.
        Err(e) => unreachable!("fixed-size command does not encode: {e}"),
    }
}

/// INITIALIZE UPDATE: `80 50 KVN 00 08 <host challenge> 00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitializeUpdate {
    /// Key version number; `00` asks for the first available keyset.
    pub kvn: u8,
    pub host_challenge: [u8; 8],
}

impl InitializeUpdate {
    pub fn new(kvn: u8, host_challenge: [u8; 8]) -> Self {
        InitializeUpdate { kvn, host_challenge }
    }

    /// The command on the basic channel, asking for up to 256 bytes.
    pub fn to_command(&self) -> CommandApdu {
        fixed_command(
            CLA_GP,
            Instruction::InitializeUpdate,
            self.kvn,
            0x00,
            &self.host_challenge,
            Some(256),
        )
    }
}

impl TryFrom<&CommandApdu> for InitializeUpdate {
    type Error = StatusWord;

    /// Card side. CLA must be `80`–`83` (`6E00`), INS `50` (`6D00`), P2 `00`
    /// (`6A86`), and the data an 8-byte host challenge (`6700`; this is also
    /// how a card refuses the 16-byte challenge of S16 mode).
    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.cla() & !0x03 != CLA_GP {
            return Err(StatusWord::ClassNotSupported);
        }
        if cmd.ins() != Instruction::InitializeUpdate {
            return Err(StatusWord::InstructionNotSupported);
        }
        if cmd.p2() != 0x00 {
            return Err(StatusWord::IncorrectP1P2);
        }
        let host_challenge: [u8; 8] = cmd.data().try_into().map_err(|_| StatusWord::WrongLength)?;
        Ok(InitializeUpdate {
            kvn: cmd.p1(),
            host_challenge,
        })
    }
}

/// The data of the INITIALIZE UPDATE response (Amd D Table 7-2):
/// `KDD(10) ‖ KVN ‖ 03 ‖ i ‖ card challenge(8) ‖ card cryptogram(8) ‖
/// [sequence counter(3)]`, 29 or 32 bytes.
///
/// Parsing needs no key, so a host can read the card's identity (the key
/// diversification data and KVN) before it derives the card's static keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitializeUpdateResponse {
    pub key_diversification_data: [u8; 10],
    /// The version of the keyset the card used (never `00`).
    pub kvn: u8,
    /// The secure channel protocol, `03` in every parsed response.
    pub scp_id: u8,
    /// The `i` parameter: see [`I_PSEUDO_RANDOM`], [`I_R_MAC`], [`I_R_ENC`].
    pub i_param: u8,
    pub card_challenge: [u8; 8],
    pub card_cryptogram: [u8; 8],
    /// The 24-bit sequence counter, present exactly when `i` announces a
    /// pseudo-random challenge.
    pub sequence_counter: Option<u32>,
}

impl InitializeUpdateResponse {
    /// Parses the data field of the response.
    pub fn parse(data: &[u8]) -> Result<Self, Scp03Error> {
        let len = data.len();
        let short = || Scp03Error::InitializeUpdateLength(len);
        let (kdd, rest) = data.split_first_chunk::<10>().ok_or_else(short)?;
        let (&[kvn, scp_id, i], rest) = rest.split_first_chunk::<3>().ok_or_else(short)?;
        if scp_id != SCP03_ID {
            return Err(Scp03Error::NotScp03(scp_id));
        }
        if i & I_S16 != 0 {
            return Err(Scp03Error::S16Unsupported(i));
        }
        if len != 29 && len != 32 {
            return Err(short());
        }
        let pseudo_random = i & I_PSEUDO_RANDOM != 0;
        if pseudo_random != (len == 32) {
            return Err(Scp03Error::SequenceCounterPresence { len, i });
        }
        let (card_challenge, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let (card_cryptogram, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let sequence_counter = match *rest {
            [] => None,
            [a, b, c] => Some(u32::from_be_bytes([0, a, b, c])),
            _ => return Err(short()),
        };
        Ok(InitializeUpdateResponse {
            key_diversification_data: *kdd,
            kvn,
            scp_id,
            i_param: i,
            card_challenge: *card_challenge,
            card_cryptogram: *card_cryptogram,
            sequence_counter,
        })
    }

    /// Parses a whole response: the status word must be `9000`.
    pub fn from_response(resp: &ResponseApdu) -> Result<Self, Scp03Error> {
        if !resp.sw.is_success() {
            return Err(Scp03Error::InitializeUpdateStatus(resp.sw));
        }
        Self::parse(&resp.data)
    }

    /// The data field (the card side's answer). The sequence counter is
    /// written as its low 24 bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.key_diversification_data);
        out.extend_from_slice(&[self.kvn, self.scp_id, self.i_param]);
        out.extend_from_slice(&self.card_challenge);
        out.extend_from_slice(&self.card_cryptogram);
        if let Some(seq) = self.sequence_counter {
            out.extend_from_slice(&seq.to_be_bytes()[1..]);
        }
        out
    }

    /// Whether the card challenge is pseudo-random (`i & 10`).
    pub fn pseudo_random_challenge(&self) -> bool {
        self.i_param & I_PSEUDO_RANDOM != 0
    }

    /// Whether the card supports R-MAC (`i & 20`).
    pub fn r_mac_supported(&self) -> bool {
        self.i_param & I_R_MAC != 0
    }

    /// Whether the card supports R-ENCRYPTION (`i & 60 == 60`).
    pub fn r_enc_supported(&self) -> bool {
        self.i_param & (I_R_MAC | I_R_ENC) == I_R_MAC | I_R_ENC
    }
}

impl TryFrom<&ResponseApdu> for InitializeUpdateResponse {
    type Error = Scp03Error;

    fn try_from(resp: &ResponseApdu) -> Result<Self, Scp03Error> {
        Self::from_response(resp)
    }
}

/// EXTERNAL AUTHENTICATE: `84 82 SL 00 10 <host cryptogram 8> <C-MAC 8>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalAuthenticate {
    pub level: SecurityLevel,
    pub host_cryptogram: [u8; 8],
    /// The C-MAC, computed with the zero chaining value.
    pub mac: [u8; 8],
}

impl ExternalAuthenticate {
    /// The command on the basic channel (no Le).
    pub fn to_command(&self) -> CommandApdu {
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&self.host_cryptogram);
        data[8..].copy_from_slice(&self.mac);
        fixed_command(
            CLA_GP_SM,
            Instruction::ExternalAuthenticate,
            self.level.to_byte(),
            0x00,
            &data,
            None,
        )
    }
}

impl TryFrom<&CommandApdu> for ExternalAuthenticate {
    type Error = StatusWord;

    /// Card side. CLA must be `84`–`87` (`6E00`), INS `82` (`6D00`), P1 one of
    /// the five levels and P2 `00` (`6A86`), the data 16 bytes (`6700`).
    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.cla() & !0x03 != CLA_GP_SM {
            return Err(StatusWord::ClassNotSupported);
        }
        if cmd.ins() != Instruction::ExternalAuthenticate {
            return Err(StatusWord::InstructionNotSupported);
        }
        let level = SecurityLevel::try_from(cmd.p1()).map_err(|_| StatusWord::IncorrectP1P2)?;
        if cmd.p2() != 0x00 {
            return Err(StatusWord::IncorrectP1P2);
        }
        let data: &[u8; 16] = cmd.data().try_into().map_err(|_| StatusWord::WrongLength)?;
        let (host_cryptogram, mac) = data.split_at(8);
        Ok(ExternalAuthenticate {
            level,
            host_cryptogram: host_cryptogram.try_into().map_err(|_| StatusWord::WrongLength)?,
            mac: mac.try_into().map_err(|_| StatusWord::WrongLength)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn initialize_update_encoding() {
        let c = InitializeUpdate::new(0x30, [1, 2, 3, 4, 5, 6, 7, 8]).to_command();
        assert_eq!(c.to_bytes(), h("80 50 30 00 08 0102030405060708 00"));
        assert_eq!(
            InitializeUpdate::try_from(&c).unwrap(),
            InitializeUpdate::new(0x30, [1, 2, 3, 4, 5, 6, 7, 8])
        );
    }

    #[test]
    fn initialize_update_refusals() {
        let ok = InitializeUpdate::new(0, [0; 8]).to_command();
        assert!(InitializeUpdate::try_from(&ok.clone().with_cla(0x81)).is_ok());
        assert_eq!(
            InitializeUpdate::try_from(&ok.clone().with_cla(0x00)),
            Err(StatusWord::ClassNotSupported)
        );
        let p2 = CommandApdu::parse(&h("80 50 00 01 08 0000000000000000")).unwrap();
        assert_eq!(InitializeUpdate::try_from(&p2), Err(StatusWord::IncorrectP1P2));
        let s16 = CommandApdu::parse(&h("80 50 00 00 10 00000000000000000000000000000000")).unwrap();
        assert_eq!(InitializeUpdate::try_from(&s16), Err(StatusWord::WrongLength));
        let ins = CommandApdu::parse(&h("80 52 00 00 08 0000000000000000")).unwrap();
        assert_eq!(
            InitializeUpdate::try_from(&ins),
            Err(StatusWord::InstructionNotSupported)
        );
    }

    fn response(i: u8, seq: bool) -> Vec<u8> {
        let mut d = h("00010203040506070809 30 03");
        d.push(i);
        d.extend(h("1111111111111111 2222222222222222"));
        if seq {
            d.extend(h("00002A"));
        }
        d
    }

    #[test]
    fn response_parses_both_lengths() {
        let r = InitializeUpdateResponse::parse(&response(0x70, true)).unwrap();
        assert_eq!(
            r.key_diversification_data,
            *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"
        );
        assert_eq!((r.kvn, r.scp_id, r.i_param), (0x30, 3, 0x70));
        assert_eq!(r.card_challenge, [0x11; 8]);
        assert_eq!(r.card_cryptogram, [0x22; 8]);
        assert_eq!(r.sequence_counter, Some(42));
        assert!(r.pseudo_random_challenge() && r.r_mac_supported() && r.r_enc_supported());
        assert_eq!(r.to_bytes(), response(0x70, true));

        let r = InitializeUpdateResponse::parse(&response(0x20, false)).unwrap();
        assert_eq!(r.sequence_counter, None);
        assert!(r.r_mac_supported() && !r.r_enc_supported() && !r.pseudo_random_challenge());
        assert_eq!(r.to_bytes(), response(0x20, false));
    }

    #[test]
    fn response_refusals_say_what_is_wrong() {
        let e = InitializeUpdateResponse::parse(&response(0x00, false)[..28]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "INITIALIZE UPDATE response: 28 bytes, expected 29 or 32"
        );
        assert_eq!(
            InitializeUpdateResponse::parse(&[0; 5]),
            Err(Scp03Error::InitializeUpdateLength(5))
        );
        let mut scp02 = response(0x00, false);
        scp02[11] = 0x02;
        assert_eq!(
            InitializeUpdateResponse::parse(&scp02),
            Err(Scp03Error::NotScp03(2))
        );
        // S16: 16-byte challenge and cryptogram, 45 bytes.
        let mut s16 = h("00010203040506070809 30 03 71");
        s16.extend([0u8; 32]);
        s16.extend([0u8; 3]);
        let e = InitializeUpdateResponse::parse(&s16).unwrap_err();
        assert_eq!(e, Scp03Error::S16Unsupported(0x71));
        assert!(e.to_string().contains("S16"));
        assert_eq!(
            InitializeUpdateResponse::parse(&response(0x70, false)),
            Err(Scp03Error::SequenceCounterPresence { len: 29, i: 0x70 })
        );
        assert_eq!(
            InitializeUpdateResponse::parse(&response(0x60, true)),
            Err(Scp03Error::SequenceCounterPresence { len: 32, i: 0x60 })
        );
        let refused = ResponseApdu::status(StatusWord::ReferencedDataNotFound);
        assert_eq!(
            InitializeUpdateResponse::try_from(&refused),
            Err(Scp03Error::InitializeUpdateStatus(
                StatusWord::ReferencedDataNotFound
            ))
        );
    }

    #[test]
    fn external_authenticate_encoding_and_refusals() {
        let ea = ExternalAuthenticate {
            level: SecurityLevel::All,
            host_cryptogram: [0xAA; 8],
            mac: [0xBB; 8],
        };
        let c = ea.to_command();
        assert_eq!(
            c.to_bytes(),
            h("84 82 33 00 10 AAAAAAAAAAAAAAAA BBBBBBBBBBBBBBBB")
        );
        assert_eq!(ExternalAuthenticate::try_from(&c).unwrap(), ea);
        let bad = |hex: &str| ExternalAuthenticate::try_from(&CommandApdu::parse(&h(hex)).unwrap());
        let data = "AAAAAAAAAAAAAAAA BBBBBBBBBBBBBBBB";
        assert_eq!(
            bad(&format!("80 82 33 00 10 {data}")),
            Err(StatusWord::ClassNotSupported)
        );
        assert_eq!(
            bad(&format!("84 82 00 00 10 {data}")),
            Err(StatusWord::IncorrectP1P2)
        );
        assert_eq!(
            bad(&format!("84 82 02 00 10 {data}")),
            Err(StatusWord::IncorrectP1P2)
        );
        assert_eq!(
            bad(&format!("84 82 33 01 10 {data}")),
            Err(StatusWord::IncorrectP1P2)
        );
        assert_eq!(
            bad("84 82 33 00 08 AAAAAAAAAAAAAAAA"),
            Err(StatusWord::WrongLength)
        );
        assert_eq!(
            bad(&format!("84 88 33 00 10 {data}")),
            Err(StatusWord::InstructionNotSupported)
        );
    }
}
