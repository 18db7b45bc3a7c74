//! ISO 7816-4 status words (SW1 SW2).
//!
//! Every 16-bit value maps to exactly one [`StatusWord`] and back: values this
//! module has no name for survive as [`StatusWord::Other`]. Families that carry
//! a number in SW2 (61xx, 6Cxx, 63Cx) keep it.

use std::fmt;

/// A status word as the card returns it at the end of every response.
///
/// `StatusWord::from(u16)` followed by `u16::from` is the identity for all
/// 65 536 values. Construct `Other(_)` only for values without a name; the
/// canonical form of a named value is its variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusWord {
    /// 9000: normal processing.
    Success,
    /// 61xx: `n` more response bytes are available with GET RESPONSE (0 means 256).
    BytesRemaining(u8),
    /// 6281: part of the returned data may be corrupted.
    DataMayBeCorrupted,
    /// 6282: end of file or record reached before Le bytes were read.
    EndOfData,
    /// 6283: the selected file is deactivated.
    FileDeactivated,
    /// 6300: authentication failed (GlobalPlatform EXTERNAL AUTHENTICATE).
    AuthenticationFailed,
    /// 63Cx: verification failed, `retries` tries left (0..=15).
    VerificationFailed { retries: u8 },
    /// 6581: memory failure.
    MemoryFailure,
    /// 6700: wrong length (Lc or Le).
    WrongLength,
    /// 6881: logical channel not supported.
    LogicalChannelNotSupported,
    /// 6882: secure messaging not supported.
    SecureMessagingNotSupported,
    /// 6883: the last command of a chain was expected.
    LastCommandOfChainExpected,
    /// 6884: command chaining not supported.
    ChainingNotSupported,
    /// 6982: security status not satisfied.
    SecurityStatusNotSatisfied,
    /// 6983: authentication method blocked.
    AuthenticationMethodBlocked,
    /// 6984: reference data not usable.
    ReferenceDataNotUsable,
    /// 6985: conditions of use not satisfied.
    ConditionsOfUseNotSatisfied,
    /// 6986: command not allowed (no current EF).
    CommandNotAllowed,
    /// 6987: expected secure messaging data objects missing.
    SecureMessagingObjectsMissing,
    /// 6988: incorrect secure messaging data objects.
    SecureMessagingObjectsIncorrect,
    /// 6A80: incorrect parameters in the command data field.
    IncorrectData,
    /// 6A81: function not supported.
    FunctionNotSupported,
    /// 6A82: file or application not found.
    FileNotFound,
    /// 6A83: record not found.
    RecordNotFound,
    /// 6A84: not enough memory space in the file.
    NotEnoughMemory,
    /// 6A86: incorrect parameters P1-P2.
    IncorrectP1P2,
    /// 6A87: Lc inconsistent with P1-P2.
    LcInconsistentWithP1P2,
    /// 6A88: referenced data or reference data not found.
    ReferencedDataNotFound,
    /// 6A89: file already exists.
    FileAlreadyExists,
    /// 6B00: wrong parameters P1-P2.
    WrongP1P2,
    /// 6Cxx: wrong Le; resend with Le = `n` (0 means 256).
    WrongLe(u8),
    /// 6D00: instruction code not supported or invalid.
    InstructionNotSupported,
    /// 6E00: class not supported.
    ClassNotSupported,
    /// 6F00: no precise diagnosis.
    NoPreciseDiagnosis,
    /// Any other value, kept as it was received.
    Other(u16),
}

impl StatusWord {
    /// SW1 SW2 as two bytes.
    pub fn to_bytes(self) -> [u8; 2] {
        u16::from(self).to_be_bytes()
    }

    /// The status word from SW1 and SW2.
    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        Self::from(u16::from_be_bytes([sw1, sw2]))
    }

    /// SW1.
    pub fn sw1(self) -> u8 {
        self.to_bytes()[0]
    }

    /// SW2.
    pub fn sw2(self) -> u8 {
        self.to_bytes()[1]
    }

    /// 9000.
    pub fn is_success(self) -> bool {
        self == StatusWord::Success
    }

    /// Normal processing or a warning (90xx, 61xx, 62xx, 63xx): the command
    /// was executed, though perhaps with a caveat.
    pub fn is_success_or_warning(self) -> bool {
        matches!(self.sw1(), 0x90 | 0x61 | 0x62 | 0x63)
    }
}

impl From<u16> for StatusWord {
    fn from(v: u16) -> Self {
        use StatusWord::*;
        let [sw1, sw2] = v.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => Success,
            (0x61, n) => BytesRemaining(n),
            (0x62, 0x81) => DataMayBeCorrupted,
            (0x62, 0x82) => EndOfData,
            (0x62, 0x83) => FileDeactivated,
            (0x63, 0x00) => AuthenticationFailed,
            (0x63, n) if n & 0xF0 == 0xC0 => VerificationFailed { retries: n & 0x0F },
            (0x65, 0x81) => MemoryFailure,
            (0x67, 0x00) => WrongLength,
            (0x68, 0x81) => LogicalChannelNotSupported,
            (0x68, 0x82) => SecureMessagingNotSupported,
            (0x68, 0x83) => LastCommandOfChainExpected,
            (0x68, 0x84) => ChainingNotSupported,
            (0x69, 0x82) => SecurityStatusNotSatisfied,
            (0x69, 0x83) => AuthenticationMethodBlocked,
            (0x69, 0x84) => ReferenceDataNotUsable,
            (0x69, 0x85) => ConditionsOfUseNotSatisfied,
            (0x69, 0x86) => CommandNotAllowed,
            (0x69, 0x87) => SecureMessagingObjectsMissing,
            (0x69, 0x88) => SecureMessagingObjectsIncorrect,
            (0x6A, 0x80) => IncorrectData,
            (0x6A, 0x81) => FunctionNotSupported,
            (0x6A, 0x82) => FileNotFound,
            (0x6A, 0x83) => RecordNotFound,
            (0x6A, 0x84) => NotEnoughMemory,
            (0x6A, 0x86) => IncorrectP1P2,
            (0x6A, 0x87) => LcInconsistentWithP1P2,
            (0x6A, 0x88) => ReferencedDataNotFound,
            (0x6A, 0x89) => FileAlreadyExists,
            (0x6B, 0x00) => WrongP1P2,
            (0x6C, n) => WrongLe(n),
            (0x6D, 0x00) => InstructionNotSupported,
            (0x6E, 0x00) => ClassNotSupported,
            (0x6F, 0x00) => NoPreciseDiagnosis,
            _ => Other(v),
        }
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> u16 {
        use StatusWord::*;
        match sw {
            Success => 0x9000,
            BytesRemaining(n) => 0x6100 | u16::from(n),
            DataMayBeCorrupted => 0x6281,
            EndOfData => 0x6282,
            FileDeactivated => 0x6283,
            AuthenticationFailed => 0x6300,
            VerificationFailed { retries } => 0x63C0 | u16::from(retries & 0x0F),
            MemoryFailure => 0x6581,
            WrongLength => 0x6700,
            LogicalChannelNotSupported => 0x6881,
            SecureMessagingNotSupported => 0x6882,
            LastCommandOfChainExpected => 0x6883,
            ChainingNotSupported => 0x6884,
            SecurityStatusNotSatisfied => 0x6982,
            AuthenticationMethodBlocked => 0x6983,
            ReferenceDataNotUsable => 0x6984,
            ConditionsOfUseNotSatisfied => 0x6985,
            CommandNotAllowed => 0x6986,
            SecureMessagingObjectsMissing => 0x6987,
            SecureMessagingObjectsIncorrect => 0x6988,
            IncorrectData => 0x6A80,
            FunctionNotSupported => 0x6A81,
            FileNotFound => 0x6A82,
            RecordNotFound => 0x6A83,
            NotEnoughMemory => 0x6A84,
            IncorrectP1P2 => 0x6A86,
            LcInconsistentWithP1P2 => 0x6A87,
            ReferencedDataNotFound => 0x6A88,
            FileAlreadyExists => 0x6A89,
            WrongP1P2 => 0x6B00,
            WrongLe(n) => 0x6C00 | u16::from(n),
            InstructionNotSupported => 0x6D00,
            ClassNotSupported => 0x6E00,
            NoPreciseDiagnosis => 0x6F00,
            Other(v) => v,
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = u16::from(*self);
        match self {
            StatusWord::Other(_) => write!(f, "{v:04X}"),
            named => write!(f, "{v:04X} ({named:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_u16_round_trips() {
        for v in 0..=u16::MAX {
            let sw = StatusWord::from(v);
            assert_eq!(u16::from(sw), v, "{sw:?}");
            assert_eq!(StatusWord::from_bytes(sw.sw1(), sw.sw2()), sw);
        }
    }

    #[test]
    fn families_keep_their_number() {
        assert_eq!(StatusWord::from(0x6110), StatusWord::BytesRemaining(0x10));
        assert_eq!(StatusWord::from(0x6C20), StatusWord::WrongLe(0x20));
        assert_eq!(
            StatusWord::from(0x63C2),
            StatusWord::VerificationFailed { retries: 2 }
        );
        assert_eq!(StatusWord::from(0x6300), StatusWord::AuthenticationFailed);
        assert_eq!(StatusWord::from(0x63F1), StatusWord::Other(0x63F1));
        assert_eq!(StatusWord::from(0x9001), StatusWord::Other(0x9001));
    }

    #[test]
    fn display_names_and_hex() {
        assert_eq!(StatusWord::FileNotFound.to_string(), "6A82 (FileNotFound)");
        assert_eq!(StatusWord::Other(0x9ABC).to_string(), "9ABC");
        assert!(StatusWord::VerificationFailed { retries: 1 }.is_success_or_warning());
        assert!(!StatusWord::SecurityStatusNotSatisfied.is_success_or_warning());
    }
}
