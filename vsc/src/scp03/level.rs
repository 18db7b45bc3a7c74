//! The security level of a session: P1 of EXTERNAL AUTHENTICATE (Amd D
//! Table 7-3).

use std::fmt;

use super::Scp03Error;

/// A security level this project opens. Every level includes C-MAC;
/// `00` (no secure messaging) exists in the specification but is not a level
/// this project opens, so it is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SecurityLevel {
    /// `01`: C-MAC.
    CMac = 0x01,
    /// `03`: C-DECRYPTION and C-MAC.
    CDecCMac = 0x03,
    /// `11`: C-MAC and R-MAC.
    CMacRMac = 0x11,
    /// `13`: C-DECRYPTION, C-MAC and R-MAC.
    CDecCMacRMac = 0x13,
    /// `33`: C-DECRYPTION, C-MAC, R-MAC and R-ENCRYPTION.
    All = 0x33,
}

impl SecurityLevel {
    /// Every level, weakest first.
    pub const ALL_LEVELS: [SecurityLevel; 5] = [
        SecurityLevel::CMac,
        SecurityLevel::CDecCMac,
        SecurityLevel::CMacRMac,
        SecurityLevel::CDecCMacRMac,
        SecurityLevel::All,
    ];

    /// The P1 byte.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// Commands carry a C-MAC (always true for the levels this type holds).
    pub fn c_mac(self) -> bool {
        self.to_byte() & 0x01 != 0
    }

    /// Command data fields are encrypted.
    pub fn c_decryption(self) -> bool {
        self.to_byte() & 0x02 != 0
    }

    /// Responses carry an R-MAC.
    pub fn r_mac(self) -> bool {
        self.to_byte() & 0x10 != 0
    }

    /// Response data fields are encrypted.
    pub fn r_encryption(self) -> bool {
        self.to_byte() & 0x20 != 0
    }
}

impl TryFrom<u8> for SecurityLevel {
    type Error = Scp03Error;

    fn try_from(b: u8) -> Result<Self, Scp03Error> {
        Ok(match b {
            0x01 => SecurityLevel::CMac,
            0x03 => SecurityLevel::CDecCMac,
            0x11 => SecurityLevel::CMacRMac,
            0x13 => SecurityLevel::CDecCMacRMac,
            0x33 => SecurityLevel::All,
            other => return Err(Scp03Error::InvalidSecurityLevel(other)),
        })
    }
}

impl From<SecurityLevel> for u8 {
    fn from(l: SecurityLevel) -> u8 {
        l.to_byte()
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.to_byte())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_five_levels_parse() {
        let valid: Vec<u8> = (0..=u8::MAX)
            .filter(|&b| SecurityLevel::try_from(b).is_ok())
            .collect();
        assert_eq!(valid, [0x01, 0x03, 0x11, 0x13, 0x33]);
        assert_eq!(
            SecurityLevel::try_from(0x00),
            Err(Scp03Error::InvalidSecurityLevel(0x00))
        );
        for l in SecurityLevel::ALL_LEVELS {
            assert_eq!(SecurityLevel::try_from(u8::from(l)).unwrap(), l);
            assert!(l.c_mac());
        }
    }

    #[test]
    fn flags() {
        let l = SecurityLevel::All;
        assert!(l.c_decryption() && l.r_mac() && l.r_encryption());
        let l = SecurityLevel::CMacRMac;
        assert!(!l.c_decryption() && l.r_mac() && !l.r_encryption());
        let l = SecurityLevel::CDecCMac;
        assert!(l.c_decryption() && !l.r_mac());
        assert_eq!(SecurityLevel::CDecCMacRMac.to_string(), "13");
    }
}
