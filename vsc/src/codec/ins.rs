//! Instruction bytes (INS) of ISO 7816-4, GlobalPlatform and the PIV card edge.
//!
//! The same byte can mean different things under a proprietary class (CLA
//! 0x80); the names here are the usual meaning. Unknown bytes survive as
//! [`Instruction::Other`]: `u8 → Instruction → u8` is the identity.

macro_rules! instructions {
    ($( $(#[$doc:meta])* $name:ident = $byte:literal, )*) => {
        /// An instruction byte.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Instruction {
            $( $(#[$doc])* $name, )*
            /// Any other byte, kept as received.
            Other(u8),
        }

        impl From<u8> for Instruction {
            fn from(b: u8) -> Self {
                match b {
                    $( $byte => Instruction::$name, )*
                    other => Instruction::Other(other),
                }
            }
        }

        impl From<Instruction> for u8 {
            fn from(i: Instruction) -> u8 {
                match i {
                    $( Instruction::$name => $byte, )*
                    Instruction::Other(b) => b,
                }
            }
        }
    };
}

instructions! {
    /// ISO 7816-4 VERIFY (PIN / PUK).
    Verify = 0x20,
    /// ISO 7816-4 CHANGE REFERENCE DATA.
    ChangeReferenceData = 0x24,
    /// ISO 7816-4 RESET RETRY COUNTER.
    ResetRetryCounter = 0x2C,
    /// ISO 7816-4 GENERATE ASYMMETRIC KEY PAIR (PIV).
    GenerateAsymmetricKeyPair = 0x47,
    /// GlobalPlatform INITIALIZE UPDATE.
    InitializeUpdate = 0x50,
    /// GlobalPlatform EXTERNAL AUTHENTICATE (ISO: EXTERNAL/MUTUAL AUTHENTICATE).
    ExternalAuthenticate = 0x82,
    /// ISO 7816-4 GET CHALLENGE.
    GetChallenge = 0x84,
    /// ISO 7816-4 GENERAL AUTHENTICATE (PIV).
    GeneralAuthenticate = 0x87,
    /// ISO 7816-4 SELECT.
    Select = 0xA4,
    /// ISO 7816-4 READ BINARY.
    ReadBinary = 0xB0,
    /// ISO 7816-4 GET RESPONSE.
    GetResponse = 0xC0,
    /// ISO 7816-4 GET DATA (even INS; GlobalPlatform GET DATA).
    GetData = 0xCA,
    /// ISO 7816-4 GET DATA with a tag list (odd INS; PIV).
    GetDataOdd = 0xCB,
    /// ISO 7816-4 UPDATE BINARY.
    UpdateBinary = 0xD6,
    /// GlobalPlatform PUT KEY.
    PutKey = 0xD8,
    /// ISO 7816-4 PUT DATA (even INS).
    PutData = 0xDA,
    /// ISO 7816-4 PUT DATA with a tag list (odd INS; PIV).
    PutDataOdd = 0xDB,
    /// ISO 7816-9 CREATE FILE.
    CreateFile = 0xE0,
    /// GlobalPlatform STORE DATA.
    StoreData = 0xE2,
    /// ISO 7816-9 DELETE FILE / GlobalPlatform DELETE.
    Delete = 0xE4,
    /// GlobalPlatform INSTALL.
    Install = 0xE6,
    /// GlobalPlatform SET STATUS.
    SetStatus = 0xF0,
    /// GlobalPlatform GET STATUS.
    GetStatus = 0xF2,
    /// Yubico PIV GET METADATA.
    GetMetadata = 0xF7,
    /// Yubico PIV GET SERIAL.
    GetSerial = 0xF8,
    /// Yubico PIV ATTEST.
    Attest = 0xF9,
    /// Yubico PIV RESET.
    PivReset = 0xFB,
    /// Yubico PIV GET VERSION.
    GetVersion = 0xFD,
    /// Yubico PIV IMPORT ASYMMETRIC KEY.
    ImportAsymmetricKey = 0xFE,
    /// Yubico PIV SET MANAGEMENT KEY.
    SetManagementKey = 0xFF,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=u8::MAX {
            let ins = Instruction::from(b);
            assert_eq!(u8::from(ins), b, "{ins:?}");
        }
    }

    #[test]
    fn names_and_unknowns() {
        assert_eq!(Instruction::from(0xA4), Instruction::Select);
        assert_eq!(Instruction::from(0x50), Instruction::InitializeUpdate);
        assert_eq!(Instruction::from(0x01), Instruction::Other(0x01));
    }
}
