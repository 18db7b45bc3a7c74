//! Command and response APDUs (ISO 7816-3 §12.1, ISO 7816-4 §5.1).
//!
//! | case | bytes                                   |
//! |------|-----------------------------------------|
//! | 1    | `CLA INS P1 P2`                         |
//! | 2S   | header `Le` (`00` = 256)                |
//! | 3S   | header `Lc` data                        |
//! | 4S   | header `Lc` data `Le`                   |
//! | 2E   | header `00 Le1 Le2` (`0000` = 65 536)   |
//! | 3E   | header `00 Lc1 Lc2` data                |
//! | 4E   | header `00 Lc1 Lc2` data `Le1 Le2`      |
//!
//! Lc and Le are both short or both extended; Lc is never zero. A
//! [`CommandApdu`] holds the number of expected bytes, Ne, not the Le byte.

use std::fmt;

use zeroize::Zeroize;

use super::{Instruction, StatusWord};

/// Largest data field of a short command.
pub const MAX_SHORT_LC: usize = 255;
/// Largest Ne of a short command.
pub const MAX_SHORT_NE: usize = 256;
/// Largest data field of an extended command.
pub const MAX_EXTENDED_LC: usize = 65_535;
/// Largest Ne of an extended command.
pub const MAX_EXTENDED_NE: usize = 65_536;

/// CLA bit that marks a part of a command chain that more parts follow.
pub const CLA_CHAINING: u8 = 0x10;

/// A malformed APDU or a value that cannot be encoded as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    #[error("command APDU of {0} bytes is shorter than the 4-byte header")]
    TooShort(usize),
    #[error("command APDU of {len} bytes is inconsistent with its length field (Lc {lc}, {form} form)")]
    InconsistentLength {
        len: usize,
        lc: usize,
        form: &'static str,
    },
    #[error("command APDU of 6 bytes with a zero length byte fits no case")]
    AmbiguousLength,
    #[error("extended Lc of zero is not allowed")]
    ZeroExtendedLc,
    #[error("data field of {0} bytes is longer than the 65535 an APDU can carry")]
    DataTooLong(usize),
    #[error("Ne of {0} is out of range (1..=65536)")]
    NeOutOfRange(usize),
    #[error("response APDU of {0} bytes is shorter than its 2-byte status word")]
    ResponseTooShort(usize),
}

impl ApduError {
    /// The status word a card answers a command that fails to parse with.
    pub fn status_word(&self) -> StatusWord {
        StatusWord::WrongLength
    }
}

/// Which of the ISO 7816-3 cases a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApduCase {
    /// No data, no response data.
    Case1,
    /// No data, response data expected.
    Case2,
    /// Data, no response data.
    Case3,
    /// Data and response data.
    Case4,
}

/// A command APDU. Fields are private so that every value can be encoded:
/// data is at most 65 535 bytes and Ne is 1..=65 536 when present.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommandApdu {
    cla: u8,
    ins: Instruction,
    p1: u8,
    p2: u8,
    data: Vec<u8>,
    ne: Option<usize>,
}

impl CommandApdu {
    /// A case 1 command (header only).
    pub fn new(cla: u8, ins: impl Into<Instruction>, p1: u8, p2: u8) -> Self {
        CommandApdu {
            cla,
            ins: ins.into(),
            p1,
            p2,
            data: Vec::new(),
            ne: None,
        }
    }

    /// The same command with a data field (empty data means none).
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Result<Self, ApduError> {
        let mut data = data.into();
        if data.len() > MAX_EXTENDED_LC {
            let len = data.len();
            data.zeroize();
            return Err(ApduError::DataTooLong(len));
        }
        self.data.zeroize();
        self.data = data;
        Ok(self)
    }

    /// The same command expecting up to `ne` response bytes (1..=65 536).
    pub fn with_ne(mut self, ne: usize) -> Result<Self, ApduError> {
        if ne == 0 || ne > MAX_EXTENDED_NE {
            return Err(ApduError::NeOutOfRange(ne));
        }
        self.ne = Some(ne);
        Ok(self)
    }

    /// The same command expecting as much as a short Le allows (256), or
    /// 65 536 if the data field already needs the extended form.
    pub fn with_max_ne(mut self) -> Self {
        self.ne = Some(if self.data.len() > MAX_SHORT_LC {
            MAX_EXTENDED_NE
        } else {
            MAX_SHORT_NE
        });
        self
    }

    /// The same command without Le.
    pub fn without_ne(mut self) -> Self {
        self.ne = None;
        self
    }

    /// The same command with another class byte.
    pub fn with_cla(mut self, cla: u8) -> Self {
        self.cla = cla;
        self
    }

    pub fn cla(&self) -> u8 {
        self.cla
    }
    pub fn ins(&self) -> Instruction {
        self.ins
    }
    pub fn p1(&self) -> u8 {
        self.p1
    }
    pub fn p2(&self) -> u8 {
        self.p2
    }
    /// The data field (empty when absent).
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Ne, the maximum number of response bytes expected, if any.
    pub fn ne(&self) -> Option<usize> {
        self.ne
    }

    /// Consumes the command and returns its data field.
    pub fn into_data(mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// A part of this command for a chain: same INS P1 P2, the given CLA, a
    /// slice of this command's data (so still encodable), and its Ne or none.
    pub(super) fn chain_part(&self, cla: u8, data: &[u8], with_ne: bool) -> CommandApdu {
        CommandApdu {
            cla,
            ins: self.ins,
            p1: self.p1,
            p2: self.p2,
            data: data.to_vec(),
            ne: if with_ne { self.ne } else { None },
        }
    }

    /// Whether the CLA says more parts of a chain follow.
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }

    pub fn case(&self) -> ApduCase {
        match (self.data.is_empty(), self.ne.is_some()) {
            (true, false) => ApduCase::Case1,
            (true, true) => ApduCase::Case2,
            (false, false) => ApduCase::Case3,
            (false, true) => ApduCase::Case4,
        }
    }

    /// Whether the minimal encoding needs extended length fields.
    pub fn needs_extended(&self) -> bool {
        self.data.len() > MAX_SHORT_LC || self.ne.is_some_and(|ne| ne > MAX_SHORT_NE)
    }

    /// The minimal encoding: short length fields unless the data or Ne need
    /// extended ones.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(self.needs_extended())
    }

    /// The encoding with extended length fields even where short ones would
    /// do (a case 1 command has no length field and is unchanged).
    pub fn to_bytes_extended(&self) -> Vec<u8> {
        self.encode(true)
    }

    fn encode(&self, extended: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 3 + self.data.len() + 3);
        out.extend_from_slice(&[self.cla, u8::from(self.ins), self.p1, self.p2]);
        // Lengths are bounded by the constructors: data ≤ 65 535, Ne ≤ 65 536.
        let lc = self.data.len();
        if extended {
            if lc > 0 {
                out.push(0);
                out.extend_from_slice(&(lc as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.ne {
                if lc == 0 {
                    out.push(0);
                }
                // 65 536 is encoded as 0000.
                out.extend_from_slice(&((ne % MAX_EXTENDED_NE) as u16).to_be_bytes());
            }
        } else {
            if lc > 0 {
                out.push(lc as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.ne {
                // 256 is encoded as 00.
                out.push((ne % MAX_SHORT_NE) as u8);
            }
        }
        out
    }

    /// Parses a command APDU of any case; inconsistent lengths are an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let (header, body) = bytes
            .split_first_chunk::<4>()
            .ok_or(ApduError::TooShort(bytes.len()))?;
        let [cla, ins, p1, p2] = *header;
        let mut cmd = CommandApdu::new(cla, ins, p1, p2);
        let len = bytes.len();
        match body {
            // Case 1.
            [] => {}
            // Case 2S.
            [le] => cmd.ne = Some(short_ne(*le)),
            // Extended forms start with a zero byte and are at least 3 bytes.
            [0, rest @ ..] if rest.len() >= 2 => {
                let (lc_or_le, rest) = rest.split_at(2);
                let value = usize::from(u16::from_be_bytes([lc_or_le[0], lc_or_le[1]]));
                if rest.is_empty() {
                    // Case 2E.
                    cmd.ne = Some(extended_ne(value));
                } else {
                    let lc = value;
                    if lc == 0 {
                        return Err(ApduError::ZeroExtendedLc);
                    }
                    let inconsistent = ApduError::InconsistentLength {
                        len,
                        lc,
                        form: "extended",
                    };
                    if rest.len() == lc {
                        // Case 3E.
                        cmd.data = rest.to_vec();
                    } else if rest.len() == lc + 2 {
                        // Case 4E.
                        let (data, le) = rest.split_at(lc);
                        cmd.data = data.to_vec();
                        cmd.ne = Some(extended_ne(usize::from(u16::from_be_bytes([le[0], le[1]]))));
                    } else {
                        return Err(inconsistent);
                    }
                }
            }
            [0, _] => return Err(ApduError::AmbiguousLength),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                if rest.len() == lc {
                    // Case 3S.
                    cmd.data = rest.to_vec();
                } else if rest.len() == lc + 1 {
                    // Case 4S.
                    let (data, le) = rest.split_at(lc);
                    cmd.data = data.to_vec();
                    cmd.ne = le.first().map(|le| short_ne(*le));
                } else {
                    return Err(ApduError::InconsistentLength {
                        len,
                        lc,
                        form: "short",
                    });
                }
            }
        }
        Ok(cmd)
    }
}

fn short_ne(le: u8) -> usize {
    if le == 0 {
        MAX_SHORT_NE
    } else {
        usize::from(le)
    }
}

fn extended_ne(le: usize) -> usize {
    if le == 0 {
        MAX_EXTENDED_NE
    } else {
        le
    }
}

/// Command data carries PINs, PUKs and imported keys: it is wiped when the
/// command is dropped.
impl Drop for CommandApdu {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl fmt::Debug for CommandApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CommandApdu {{ {:02X} {:?} {:02X} {:02X}",
            self.cla, self.ins, self.p1, self.p2
        )?;
        if !self.data.is_empty() {
            write!(f, ", {} data bytes", self.data.len())?;
        }
        if let Some(ne) = self.ne {
            write!(f, ", Ne {ne}")?;
        }
        f.write_str(" }")
    }
}

/// A response APDU: data and the status word.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResponseApdu {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl ResponseApdu {
    pub fn new(data: impl Into<Vec<u8>>, sw: StatusWord) -> Self {
        ResponseApdu {
            data: data.into(),
            sw,
        }
    }

    /// `data ‖ 9000`.
    pub fn success(data: impl Into<Vec<u8>>) -> Self {
        Self::new(data, StatusWord::Success)
    }

    /// A bare status word with no data.
    pub fn status(sw: StatusWord) -> Self {
        Self::new(Vec::new(), sw)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let (data, sw) = bytes
            .split_last_chunk::<2>()
            .ok_or(ApduError::ResponseTooShort(bytes.len()))?;
        Ok(ResponseApdu::new(data, StatusWord::from_bytes(sw[0], sw[1])))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }

    pub fn is_success(&self) -> bool {
        self.sw.is_success()
    }
}

impl fmt::Debug for ResponseApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResponseApdu {{ {} data bytes, {} }}",
            self.data.len(),
            self.sw
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn parses_every_case() {
        let c1 = CommandApdu::parse(&hex("00A40400")).unwrap();
        assert_eq!(c1.case(), ApduCase::Case1);

        let c2s = CommandApdu::parse(&hex("00CA9F7F00")).unwrap();
        assert_eq!((c2s.case(), c2s.ne()), (ApduCase::Case2, Some(256)));

        let c3s = CommandApdu::parse(&hex("00A4040005A000000308")).unwrap();
        assert_eq!(
            (c3s.case(), c3s.data()),
            (ApduCase::Case3, &hex("A000000308")[..])
        );

        let c4s = CommandApdu::parse(&hex("00A4040005A00000030810")).unwrap();
        assert_eq!((c4s.case(), c4s.ne()), (ApduCase::Case4, Some(16)));

        let c2e = CommandApdu::parse(&hex("00B00000 000000")).unwrap();
        assert_eq!((c2e.case(), c2e.ne()), (ApduCase::Case2, Some(65536)));

        let mut long = hex("00DB3FFF 000100");
        long.extend(vec![0xAB; 256]);
        let c3e = CommandApdu::parse(&long).unwrap();
        assert_eq!((c3e.case(), c3e.data().len()), (ApduCase::Case3, 256));
        long.extend([0x01, 0x00]);
        let c4e = CommandApdu::parse(&long).unwrap();
        assert_eq!((c4e.case(), c4e.ne()), (ApduCase::Case4, Some(256)));
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        assert_eq!(CommandApdu::parse(&hex("00A404")), Err(ApduError::TooShort(3)));
        assert!(matches!(
            CommandApdu::parse(&hex("00A4040005A0000003")),
            Err(ApduError::InconsistentLength { lc: 5, .. })
        ));
        assert!(matches!(
            CommandApdu::parse(&hex("00A4040002A0000003")),
            Err(ApduError::InconsistentLength { .. })
        ));
        assert_eq!(
            CommandApdu::parse(&hex("00A4040000AA")),
            Err(ApduError::AmbiguousLength)
        );
        assert_eq!(
            CommandApdu::parse(&hex("00A40400000000AA")),
            Err(ApduError::ZeroExtendedLc)
        );
        assert!(matches!(
            CommandApdu::parse(&hex("00A4040000000201")),
            Err(ApduError::InconsistentLength { form: "extended", .. })
        ));
    }

    #[test]
    fn builder_picks_extended_when_needed() {
        let short = CommandApdu::new(0x00, 0xCB, 0x3F, 0xFF)
            .with_data(vec![1; 255])
            .unwrap()
            .with_ne(256)
            .unwrap();
        assert!(!short.needs_extended());
        assert_eq!(short.to_bytes().len(), 4 + 1 + 255 + 1);

        let ext = short.clone().with_data(vec![1; 256]).unwrap();
        assert!(ext.needs_extended());
        let bytes = ext.to_bytes();
        assert_eq!(&bytes[4..7], &[0x00, 0x01, 0x00]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0x01, 0x00]);

        let big_ne = CommandApdu::new(0, 0xB0, 0, 0).with_ne(65536).unwrap();
        assert_eq!(big_ne.to_bytes(), hex("00B00000000000"));
        assert_eq!(CommandApdu::parse(&big_ne.to_bytes()).unwrap(), big_ne);
    }

    #[test]
    fn forced_extended_round_trips() {
        let cmd = CommandApdu::new(0x80, 0x50, 0, 0)
            .with_data(vec![7; 8])
            .unwrap()
            .with_ne(256)
            .unwrap();
        assert_eq!(CommandApdu::parse(&cmd.to_bytes_extended()).unwrap(), cmd);
    }

    #[test]
    fn constructors_refuse_unencodable_values() {
        let c = CommandApdu::new(0, 0, 0, 0);
        assert_eq!(
            c.clone().with_data(vec![0; 65536]),
            Err(ApduError::DataTooLong(65536))
        );
        assert_eq!(c.clone().with_ne(0), Err(ApduError::NeOutOfRange(0)));
        assert_eq!(c.with_ne(65537), Err(ApduError::NeOutOfRange(65537)));
    }

    #[test]
    fn response_round_trip() {
        let r = ResponseApdu::parse(&hex("0102 6A82")).unwrap();
        assert_eq!(r, ResponseApdu::new(vec![1, 2], StatusWord::FileNotFound));
        assert_eq!(r.to_bytes(), hex("01026A82"));
        assert_eq!(ResponseApdu::parse(&[0x90]), Err(ApduError::ResponseTooShort(1)));
    }
}
