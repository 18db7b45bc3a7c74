//! C-MAC and R-MAC (Amd D §6.2.4, §6.2.5).
//!
//! C-MAC: `m = CMAC(S-MAC, chain ‖ CLA' INS P1 P2 Lc' ‖ data')`; the command
//! carries `m[..8]` and `m` becomes the next chaining value. `CLA'` is the
//! class byte with the logical channel cleared, bit b4 (`08`) cleared and bit
//! b3 (`04`) set; `Lc' = |data'| + 8`, in the 3-byte extended form when the
//! secured APDU uses extended lengths; Le is not MACed.
//!
//! R-MAC: `CMAC(S-RMAC, chain ‖ data' ‖ SW1 SW2)[..8]` where `chain` is the
//! full C-MAC of the command being answered; it does not change the chain.

use super::block::{cmac, Block};
use crate::codec::{Instruction, StatusWord};
use crate::secret::AesKey;

/// Length of a C-MAC or R-MAC on the wire (S8 mode).
pub(crate) const MAC_LEN: usize = 8;

/// The class bit (b3) for GlobalPlatform proprietary secure messaging.
pub(crate) const CLA_SM: u8 = 0x04;

/// Whether `cla` is a first interindustry (or proprietary `8x`/`Ax`) class
/// byte: bit b7 clear. Only these carry SCP03 secure messaging here; classes
/// with b7 set (logical channels 4–19) are not supported.
pub(crate) fn is_first_interindustry(cla: u8) -> bool {
    cla & 0x40 == 0
}

/// Whether `cla` indicates GlobalPlatform secure messaging (b4 b3 = `01`).
pub(crate) fn is_secure_messaging(cla: u8) -> bool {
    is_first_interindustry(cla) && cla & 0x0C == CLA_SM
}

/// Whether `cla` indicates any secure messaging (b4 or b3 set), ours or not.
pub(crate) fn indicates_any_secure_messaging(cla: u8) -> bool {
    is_first_interindustry(cla) && cla & 0x0C != 0
}

/// The logical channel (0–3) of a first interindustry class byte.
pub(crate) fn channel(cla: u8) -> u8 {
    cla & 0x03
}

/// `CLA'`: logical channel cleared, b4 cleared, b3 set.
pub(crate) fn mac_cla(cla: u8) -> u8 {
    (cla & 0xF0) | CLA_SM
}

/// The header of a secured command as it enters the C-MAC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MacHeader {
    pub cla: u8,
    pub ins: Instruction,
    pub p1: u8,
    pub p2: u8,
}

/// The full 16-byte C-MAC of a secured command whose data field before the
/// MAC is `data_prime`. `extended` says whether the secured APDU uses the
/// extended length fields (then `Lc'` is MACed as `00 Lc1 Lc2`).
pub(crate) fn c_mac(
    s_mac: &AesKey,
    chain: &Block,
    header: MacHeader,
    data_prime: &[u8],
    extended: bool,
) -> Block {
    // Callers bound the secured data field to 65 535 bytes.
    let lc = u16::try_from(data_prime.len() + MAC_LEN).unwrap_or(u16::MAX);
    let mut head = Vec::with_capacity(7);
    head.extend_from_slice(&[mac_cla(header.cla), u8::from(header.ins), header.p1, header.p2]);
    if extended {
        head.push(0);
        head.extend_from_slice(&lc.to_be_bytes());
    } else {
        head.push(lc.to_be_bytes()[1]);
    }
    cmac(s_mac, &[chain, &head, data_prime])
}

/// Whether a response with this status word gets an R-MAC (and R-ENC): only
/// `9000` and the warnings `62xx` and `63xx`. Every other status word is an
/// error and is returned bare.
pub(crate) fn sw_is_protected(sw: StatusWord) -> bool {
    sw.is_success() || matches!(sw.sw1(), 0x62 | 0x63)
}

/// The R-MAC of a response: `CMAC(S-RMAC, chain ‖ data' ‖ SW)[..8]`.
pub(crate) fn r_mac(
    s_rmac: &AesKey,
    command_c_mac: &Block,
    data_prime: &[u8],
    sw: StatusWord,
) -> [u8; MAC_LEN] {
    let m = cmac(s_rmac, &[command_c_mac, data_prime, &sw.to_bytes()]);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&m[..MAC_LEN]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn class_bytes() {
        assert_eq!(mac_cla(0x80), 0x84);
        assert_eq!(mac_cla(0x00), 0x04);
        assert_eq!(mac_cla(0x87), 0x84);
        assert_eq!(mac_cla(0x0C | 0x01), 0x04);
        assert_eq!(mac_cla(0x90), 0x94);
        assert!(is_secure_messaging(0x84) && is_secure_messaging(0x05));
        assert!(!is_secure_messaging(0x80) && !is_secure_messaging(0x0C) && !is_secure_messaging(0xC4));
        assert!(indicates_any_secure_messaging(0x08) && !indicates_any_secure_messaging(0x83));
        assert_eq!(channel(0x86), 2);
    }

    #[test]
    fn status_words_that_get_an_r_mac() {
        let protected: Vec<u16> = [
            0x9000, 0x6282, 0x6300, 0x63C2, 0x9001, 0x6A82, 0x6982, 0x6110, 0x6700,
        ]
        .into_iter()
        .filter(|&v| sw_is_protected(StatusWord::from(v)))
        .collect();
        assert_eq!(protected, [0x9000, 0x6282, 0x6300, 0x63C2]);
    }

    #[test]
    fn c_mac_covers_header_length_form_and_chain() {
        let k = AesKey::from_slice(&[7; 16]).unwrap();
        let h = MacHeader {
            cla: 0x84,
            ins: Instruction::from(0xE2),
            p1: 0,
            p2: 0,
        };
        let base = c_mac(&k, &[0; 16], h, b"data", false);
        assert_ne!(base, c_mac(&k, &[0; 16], h, b"data", true));
        assert_ne!(base, c_mac(&k, &[1; 16], h, b"data", false));
        assert_ne!(
            base,
            c_mac(&k, &[0; 16], MacHeader { p2: 1, ..h }, b"data", false)
        );
        // The channel bits are not MACed.
        assert_eq!(
            base,
            c_mac(&k, &[0; 16], MacHeader { cla: 0x85, ..h }, b"data", false)
        );
        // The layout: chain ‖ 84 E2 00 00 0C ‖ data.
        let mut input = vec![0u8; 16];
        input.extend([0x84, 0xE2, 0, 0, 12]);
        input.extend(b"data");
        assert_eq!(base, cmac(&k, &[&input]));
    }
}
