//! File control parameters: what SELECT returns and what CREATE FILE takes
//! (ISO 7816-4 §7.4.3, Table 12; ISO 7816-9 CREATE FILE).
//!
//! # FCP returned by SELECT
//!
//! ```text
//! EF: 62 { 80 02 <bytes in the file>  81 02 <bytes allocated>  82 01 01
//!          83 02 <FID>  85 01 <area>  8A 01 05  8C 03 03 <SC update> <SC read> }
//! DF: 62 { 82 01 38  83 02 <FID>  [84 <DF name>]  8A 01 05 }
//! ```
//!
//! An EF holds a data object of up to its allocated size: `80` is how many
//! bytes READ BINARY delivers now, `81` how many UPDATE BINARY may fill
//! (sizes above `FFFF` take 4 bytes). `8A 05`: operational, activated.
//!
//! # CREATE FILE
//!
//! `00 E0 00 00 Lc 62 L { … }` with, for a transparent EF (all required):
//!
//! | tag | value |
//! |---|---|
//! | `82` | `01`: working EF, transparent |
//! | `83` | the FID, 2 bytes (not `3F00`, `3FFF`, `FFFF`) |
//! | `80` | the size to allocate, 1–4 bytes, at most [`MAX_EF_SIZE`] |
//! | `85` | the area (proprietary; the VSC format's area ids): `03` public, `04` private |
//! | `8C` | the access rules, in ISO 7816-4's compact form (below) |
//!
//! and for a DF: `82 01 38`, `83` the FID, optionally `84` a DF name of 1–16
//! bytes. Any other tag, a tag twice, or a tag that does not belong to the
//! kind of file answers `6A80`.
//!
//! **Access rules (`8C`).** An access mode byte, then one security condition
//! byte per bit set in it, from bit 7 down to bit 1 (ISO 7816-4 §5.4.3.1).
//! Only bit 2 (UPDATE BINARY) and bit 1 (READ BINARY) may be set; an
//! operation whose bit is clear is never allowed. Security conditions:
//!
//! | SC | rule |
//! |---|---|
//! | `00` | always |
//! | `10` (or `90`) | after the PIN was verified (user authentication, no SE) |
//! | `FF` | never |
//!
//! So `8C 03 03 FF 00` is "read always, update never", `8C 03 03 FF 10`
//! "read after PIN, update never". Other SC bytes answer `6A80`.

use crate::codec::{CommandApdu, StatusWord, Tag, Tlv, TlvRef};
use crate::file::{AccessRule, Df, Ef, EfArea, Node};
use crate::tag;

/// The largest EF CREATE FILE makes: READ BINARY and UPDATE BINARY address
/// 15-bit offsets.
pub const MAX_EF_SIZE: u32 = 0x7FFF;

/// File descriptor byte of a transparent working EF.
pub const DESCRIPTOR_EF: u8 = 0x01;
/// File descriptor byte of a DF.
pub const DESCRIPTOR_DF: u8 = 0x38;
/// Life cycle status "operational, activated".
const ACTIVATED: u8 = 0x05;
/// Access mode bits of the compact security attribute.
pub const AM_READ: u8 = 0x01;
pub const AM_UPDATE: u8 = 0x02;

/// The security condition byte of a rule.
pub fn sc_byte(rule: AccessRule) -> u8 {
    match rule {
        AccessRule::Always => 0x00,
        AccessRule::Pin => 0x10,
        AccessRule::Never => 0xFF,
    }
}

fn rule_of(sc: u8) -> Option<AccessRule> {
    match sc {
        0x00 => Some(AccessRule::Always),
        0x10 | 0x90 => Some(AccessRule::Pin),
        0xFF => Some(AccessRule::Never),
        _ => None,
    }
}

/// The VSC format's area ids.
pub fn area_byte(area: EfArea) -> u8 {
    match area {
        EfArea::Public => 0x03,
        EfArea::Private => 0x04,
    }
}

fn size_bytes(n: u32) -> Vec<u8> {
    match u16::try_from(n) {
        Ok(small) => small.to_be_bytes().to_vec(),
        Err(_) => n.to_be_bytes().to_vec(),
    }
}

/// The FCP of an EF whose content has `content_len` bytes.
pub fn ef_fcp(ef: &Ef, content_len: usize) -> Tlv {
    let len = u32::try_from(content_len).unwrap_or(u32::MAX);
    Tlv::constructed(
        tag!(0x62),
        &[
            Tlv::new(tag!(0x80), size_bytes(len)),
            Tlv::new(tag!(0x81), size_bytes(ef.size)),
            Tlv::new(tag!(0x82), [DESCRIPTOR_EF]),
            Tlv::new(tag!(0x83), ef.fid.to_be_bytes()),
            Tlv::new(tag!(0x85), [area_byte(ef.area)]),
            Tlv::new(tag!(0x8A), [ACTIVATED]),
            Tlv::new(
                tag!(0x8C),
                [AM_UPDATE | AM_READ, sc_byte(ef.update), sc_byte(ef.read)],
            ),
        ],
    )
}

/// The FCP of a DF.
pub fn df_fcp(df: &Df) -> Tlv {
    let mut fields = vec![
        Tlv::new(tag!(0x82), [DESCRIPTOR_DF]),
        Tlv::new(tag!(0x83), df.fid.to_be_bytes()),
    ];
    if let Some(name) = &df.name {
        fields.push(Tlv::new(tag!(0x84), name.clone()));
    }
    fields.push(Tlv::new(tag!(0x8A), [ACTIVATED]));
    Tlv::constructed(tag!(0x62), &fields)
}

/// A parsed CREATE FILE: the new node, without children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateFile {
    pub node: Node,
}

/// Why a CREATE FILE's data is refused.
fn bad() -> StatusWord {
    StatusWord::IncorrectData
}

fn fixed<const N: usize>(t: &TlvRef<'_>) -> Result<[u8; N], StatusWord> {
    <[u8; N]>::try_from(t.value).map_err(|_| bad())
}

/// Parses the access rules `8C AM SC…`: (read, update).
fn access_rules(value: &[u8]) -> Result<(AccessRule, AccessRule), StatusWord> {
    let (am, scs) = value.split_first().ok_or_else(bad)?;
    if am & !(AM_READ | AM_UPDATE) != 0 || scs.len() != am.count_ones() as usize {
        return Err(bad());
    }
    let mut scs = scs.iter();
    // SC bytes come from the highest access mode bit down.
    let update = if am & AM_UPDATE != 0 {
        scs.next().copied().and_then(rule_of).ok_or_else(bad)?
    } else {
        AccessRule::Never
    };
    let read = if am & AM_READ != 0 {
        scs.next().copied().and_then(rule_of).ok_or_else(bad)?
    } else {
        AccessRule::Never
    };
    Ok((read, update))
}

impl TryFrom<&CommandApdu> for CreateFile {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if (cmd.p1(), cmd.p2()) != (0, 0) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let fcp = TlvRef::parse_single(cmd.data()).map_err(|_| bad())?;
        if fcp.tag != tag!(0x62) {
            return Err(bad());
        }
        let mut seen: Vec<Tag> = Vec::new();
        let (mut descriptor, mut fid, mut size, mut name, mut area, mut rules) =
            (None, None, None, None, None, None);
        for t in fcp.children().map_err(|_| bad())? {
            if seen.contains(&t.tag) {
                return Err(bad());
            }
            seen.push(t.tag);
            match t.tag.raw() {
                0x82 => descriptor = Some(fixed::<1>(&t)?[0]),
                0x83 => fid = Some(u16::from_be_bytes(fixed::<2>(&t)?)),
                0x80 => {
                    if t.value.is_empty() || t.value.len() > 4 {
                        return Err(bad());
                    }
                    let n = t.value.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
                    if n > MAX_EF_SIZE {
                        return Err(StatusWord::NotEnoughMemory);
                    }
                    size = Some(n);
                }
                0x84 => {
                    if t.value.is_empty() || t.value.len() > 16 {
                        return Err(bad());
                    }
                    name = Some(t.value.to_vec());
                }
                0x85 => {
                    area = Some(match fixed::<1>(&t)? {
                        [0x03] => EfArea::Public,
                        [0x04] => EfArea::Private,
                        _ => return Err(bad()),
                    })
                }
                0x8C => rules = Some(access_rules(t.value)?),
                _ => return Err(bad()),
            }
        }
        let fid = fid.ok_or_else(bad)?;
        if matches!(fid, 0x3F00 | 0x3FFF | 0xFFFF) {
            return Err(bad());
        }
        let node = match descriptor {
            Some(DESCRIPTOR_EF) => {
                let (Some(size), Some(area), Some((read, update)), None) = (size, area, rules, name) else {
                    return Err(bad());
                };
                Node::Ef(Ef {
                    fid,
                    area,
                    read,
                    update,
                    size,
                })
            }
            Some(DESCRIPTOR_DF) => {
                if size.is_some() || area.is_some() || rules.is_some() {
                    return Err(bad());
                }
                Node::Df(Df {
                    fid,
                    name,
                    children: Vec::new(),
                })
            }
            _ => return Err(bad()),
        };
        Ok(CreateFile { node })
    }
}

/// The CREATE FILE data field for an EF (for hosts and tests).
pub fn create_ef_data(fid: u16, size: u16, area: EfArea, read: AccessRule, update: AccessRule) -> Vec<u8> {
    Tlv::constructed(
        tag!(0x62),
        &[
            Tlv::new(tag!(0x82), [DESCRIPTOR_EF]),
            Tlv::new(tag!(0x83), fid.to_be_bytes()),
            Tlv::new(tag!(0x80), size.to_be_bytes()),
            Tlv::new(tag!(0x85), [area_byte(area)]),
            Tlv::new(tag!(0x8C), [AM_UPDATE | AM_READ, sc_byte(update), sc_byte(read)]),
        ],
    )
    .to_bytes()
}

/// The CREATE FILE data field for a DF.
pub fn create_df_data(fid: u16, name: Option<&[u8]>) -> Vec<u8> {
    let mut fields = vec![
        Tlv::new(tag!(0x82), [DESCRIPTOR_DF]),
        Tlv::new(tag!(0x83), fid.to_be_bytes()),
    ];
    if let Some(n) = name {
        fields.push(Tlv::new(tag!(0x84), n));
    }
    Tlv::constructed(tag!(0x62), &fields).to_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn create_raw(data: Vec<u8>) -> Result<CreateFile, StatusWord> {
        let c = CommandApdu::new(0x00, 0xE0, 0, 0).with_data(data).unwrap();
        CreateFile::try_from(&c)
    }

    /// CREATE FILE with `children` (hex) inside `62`.
    fn create(children: &str) -> Result<CreateFile, StatusWord> {
        let inner = hex::decode(children.replace(' ', "")).unwrap();
        create_raw(Tlv::new(tag!(0x62), inner).to_bytes())
    }

    #[test]
    fn ef_and_df() {
        let ef = create("8201 01 8302 5001 8002 0040 8501 04 8C03 03FF10").unwrap();
        assert_eq!(
            ef.node,
            Node::Ef(Ef {
                fid: 0x5001,
                area: EfArea::Private,
                read: AccessRule::Pin,
                update: AccessRule::Never,
                size: 0x40
            })
        );
        let built = create_ef_data(0x5001, 0x40, EfArea::Private, AccessRule::Pin, AccessRule::Never);
        assert_eq!(
            hex::encode_upper(built),
            "62138201018302500180020040850104 8C0303FF10".replace(' ', "")
        );
        let df = create("8201 38 8302 5015 8401 41").unwrap();
        assert_eq!(
            df.node,
            Node::Df(Df {
                fid: 0x5015,
                name: Some(b"A".to_vec()),
                children: vec![]
            })
        );
        assert_eq!(
            hex::encode_upper(create_df_data(0x5015, Some(b"A"))),
            "620A820138830250158401 41".replace(' ', "")
        );
        // Read only, no update bit: update never.
        let ro = create("8201 01 8302 5001 8002 0040 8501 03 8C02 0100").unwrap();
        assert!(matches!(
            ro.node,
            Node::Ef(Ef {
                read: AccessRule::Always,
                update: AccessRule::Never,
                ..
            })
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            create_raw(hex::decode("6F0483025001").unwrap()).unwrap_err(),
            StatusWord::IncorrectData
        );
        assert_eq!(create_raw(vec![0x62]).unwrap_err(), StatusWord::IncorrectData);
        for bad_data in [
            "8201 01",                                             // no FID
            "8201 01 8302 3F00 8001 00 8501 03 8C01 00",           // reserved FID
            "8201 01 8302 5001 8002 0040 8501 03",                 // no 8C
            "8201 01 8302 5001 8002 0040 8501 05 8C03 03FF10",     // bad area
            "8201 01 8302 5001 8002 0040 8501 03 8C03 03FF11",     // bad SC
            "8201 01 8302 5001 8002 0040 8501 03 8C03 07FF10",     // write binary bit
            "8201 01 8302 5001 8002 0040 8501 03 8C02 03FF",       // an SC missing
            "8201 01 8302 5001 8002 0040 8501 03 8C03 830000",     // AM bit 8
            "8201 01 8302 5001 8000 8501 03 8C01 00",              // empty size
            "8201 38 8302 5015 8002 0040",                         // DF with a size
            "8201 38 8302 5015 8400",                              // empty DF name
            "8201 02 8302 5015",                                   // other descriptor
            "8201 38 8301 50",                                     // short FID
            "8201 38 8302 5015 8302 5016",                         // a tag twice
            "8201 38 8302 5015 9900",                              // unknown tag
            "8201 01 8302 5001 8002 0040 8401 41 8501 03 8C01 00", // EF with a name
        ] {
            assert_eq!(
                create(bad_data).unwrap_err(),
                StatusWord::IncorrectData,
                "{bad_data}"
            );
        }
        assert_eq!(
            create("8201 01 8302 5001 8002 8000 8501 03 8C03 03FF10").unwrap_err(),
            StatusWord::NotEnoughMemory
        );
        let c = CommandApdu::new(0x00, 0xE0, 0x01, 0x00)
            .with_data(create_df_data(0x5015, None))
            .unwrap();
        assert_eq!(CreateFile::try_from(&c).unwrap_err(), StatusWord::IncorrectP1P2);
    }
}
