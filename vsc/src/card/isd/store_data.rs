//! STORE DATA to the ISD itself (Card Specification §11.11): the issuer's
//! personalization data for the security domain.
//!
//! `80 E2 P1 P2 Lc data`, within an SCP03 session:
//!
//! - P1 bit 8: last block. Bits 7–6 (encryption) must be `00`: encrypted
//!   data structures are not accepted (`6A86`). Bits 5–4: `01` DGI format,
//!   `10` BER-TLV, `00` (application dependent) is taken as BER-TLV, `11`
//!   answers `6A86`. The other bits are ignored.
//! - P2: the block number, from `00` up by one. A block out of order answers
//!   `6A86`; block `00` always starts a new sequence. Every block must use
//!   the format of the first.
//! - A data structure may be cut at a block boundary and continue in the
//!   next block (§11.11.2.3): the card keeps the incomplete tail (at most
//!   [`MAX_PENDING`] bytes, else `6A84`); after the last block nothing may
//!   be left (`6A80`).
//!
//! Where the data goes, in the VSC's public area:
//!
//! - a BER-TLV object: `ObjectId::Gp(tag)`, its value; GET DATA returns it;
//! - DGI `0070` (the DGI that carries BER-TLV objects): each object inside
//!   it, as above;
//! - any other DGI: `"gp/dgi/<DGI>"`, its value. DGIs `8000`–`FFFF` and
//!   `00B9` (key loading, encrypted key material by convention) are refused
//!   with `6A80`: keys are loaded with PUT KEY.
//!
//! Objects the card makes itself cannot be stored (`6A80`): `9F7F` CPLC,
//! `4F` the ISD AID, `E0` key information, `C1` sequence counter, `C2`
//! confirmation counter, `CF` KDD, `D3` current security level, `2F00`,
//! `FF21`. The objects of one block are all checked before any is stored.
//!
//! Any refused block ends the sequence (§11.11.2.2); so do selecting the ISD,
//! another application, and reset.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, TlvError, TlvRef};
use crate::file::{DataObject, ObjectId};

use super::super::app::Ctx;
use super::super::gp_state;
use super::super::identity::CPLC_TAG;
use super::{require_content_changes, require_issuer};

/// Most bytes of an incomplete data structure kept between blocks.
pub const MAX_PENDING: usize = 32 * 1024;

/// The DGI that carries BER-TLV data objects (§11.11.2.3).
pub const DGI_BER_TLV: u16 = 0x0070;

/// Tags of data the card makes itself.
const CARD_OWNED_TAGS: [u32; 9] = [CPLC_TAG, 0x4F, 0xE0, 0xC1, 0xC2, 0xCF, 0xD3, 0x2F00, 0xFF21];

/// How the data field is structured (P1 bits 5–4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    Dgi,
    BerTlv,
}

/// A parsed STORE DATA block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreData<'a> {
    pub last: bool,
    pub format: DataFormat,
    pub block: u8,
    pub data: &'a [u8],
}

impl<'a> TryFrom<&'a CommandApdu> for StoreData<'a> {
    type Error = StatusWord;

    fn try_from(cmd: &'a CommandApdu) -> Result<Self, StatusWord> {
        let p1 = cmd.p1();
        if p1 & 0x60 != 0 {
            return Err(StatusWord::IncorrectP1P2);
        }
        let format = match (p1 >> 3) & 0x03 {
            0b01 => DataFormat::Dgi,
            0b00 | 0b10 => DataFormat::BerTlv,
            _ => return Err(StatusWord::IncorrectP1P2),
        };
        if cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        Ok(StoreData {
            last: p1 & 0x80 != 0,
            format,
            block: cmd.p2(),
            data: cmd.data(),
        })
    }
}

/// A STORE DATA sequence under way.
#[derive(Debug, Default)]
pub struct Sequence {
    /// The block expected next and the format of the sequence; `None`: only
    /// block `00` may come.
    expect: Option<(u8, DataFormat)>,
    /// The incomplete tail of the last block.
    pending: Vec<u8>,
}

/// What one parsed data structure becomes.
type Item = (ObjectId, Vec<u8>);

/// Whether a TLV error only means the input ends too early.
fn incomplete(e: &TlvError) -> bool {
    matches!(e, TlvError::Truncated { .. } | TlvError::ValueOverrun { .. })
}

fn check_tag(raw: u32) -> Result<(), StatusWord> {
    if CARD_OWNED_TAGS.contains(&raw) {
        Err(StatusWord::IncorrectData)
    } else {
        Ok(())
    }
}

/// Reads whole BER-TLV objects from the front of `buf`; returns them and
/// how many bytes they took.
fn ber_items(buf: &[u8]) -> Result<(Vec<Item>, usize), StatusWord> {
    let mut items = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        match TlvRef::parse_prefix(rest) {
            Ok((t, r)) => {
                check_tag(t.tag.raw())?;
                items.push((ObjectId::Gp(t.tag.raw()), t.value.to_vec()));
                rest = r;
            }
            Err(e) if incomplete(&e) => break,
            Err(_) => return Err(StatusWord::IncorrectData),
        }
    }
    Ok((items, buf.len() - rest.len()))
}

/// One DGI from the front of `input`: `DGI(2) ‖ L ‖ value`, with `L` one
/// byte `00`–`FE` or `FF` and two bytes. `None`: incomplete.
fn dgi(input: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let (number, rest) = input.split_first_chunk::<2>()?;
    let (first, rest) = rest.split_first()?;
    let (len, rest) = if *first == 0xFF {
        let (l, rest) = rest.split_first_chunk::<2>()?;
        (usize::from(u16::from_be_bytes(*l)), rest)
    } else {
        (usize::from(*first), rest)
    };
    (rest.len() >= len).then(|| {
        let (value, rest) = rest.split_at(len);
        (u16::from_be_bytes(*number), value, rest)
    })
}

/// Reads whole DGIs from the front of `buf`; returns the objects they hold
/// and how many bytes they took.
fn dgi_items(buf: &[u8]) -> Result<(Vec<Item>, usize), StatusWord> {
    let mut items = Vec::new();
    let mut rest = buf;
    while let Some((number, value, r)) = dgi(rest) {
        if number == DGI_BER_TLV {
            let (inner, used) = ber_items(value)?;
            if used != value.len() {
                return Err(StatusWord::IncorrectData);
            }
            items.extend(inner);
        } else if number >= 0x8000 || number == 0x00B9 {
            return Err(StatusWord::IncorrectData);
        } else {
            items.push((gp_state::dgi_object(number), value.to_vec()));
        }
        rest = r;
    }
    Ok((items, buf.len() - rest.len()))
}

impl Sequence {
    pub fn reset(&mut self) {
        self.expect = None;
        self.pending.clear();
    }

    /// STORE DATA: see the module documentation. Any error ends the
    /// sequence.
    pub fn process(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let result = self.block(ctx, cmd);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn block(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        require_issuer(ctx)?;
        require_content_changes(ctx)?;
        let sd = StoreData::try_from(cmd)?;
        if sd.block == 0 {
            self.reset();
        } else if self.expect != Some((sd.block, sd.format)) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if self.pending.len() + sd.data.len() > MAX_PENDING {
            return Err(StatusWord::NotEnoughMemory);
        }
        self.pending.extend_from_slice(sd.data);
        let (items, used) = match sd.format {
            DataFormat::BerTlv => ber_items(&self.pending)?,
            DataFormat::Dgi => dgi_items(&self.pending)?,
        };
        if sd.last && used != self.pending.len() {
            return Err(StatusWord::IncorrectData);
        }
        if !items.is_empty() {
            let vsc = ctx.store.vsc_mut();
            for (id, value) in items {
                vsc.put_public(DataObject::new(id, value))
                    .map_err(|_| StatusWord::IncorrectData)?;
            }
        }
        self.pending.drain(..used);
        self.expect = if sd.last {
            None
        } else {
            // After block FF no further block can be numbered.
            sd.block.checked_add(1).map(|n| (n, sd.format))
        };
        if sd.last {
            self.pending.clear();
        }
        Ok(ResponseApdu::status(StatusWord::Success))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dgi_lengths() {
        assert_eq!(
            dgi(&[0x01, 0x02, 0x01, 0xAA, 0xBB]),
            Some((0x0102, &[0xAA][..], &[0xBB][..]))
        );
        let long = [&[0x01, 0x02, 0xFF, 0x01, 0x00][..], &[7; 256]].concat();
        let (n, v, r) = dgi(&long).unwrap();
        assert_eq!((n, v.len(), r.len()), (0x0102, 256, 0));
        assert_eq!(dgi(&[0x01, 0x02, 0x03, 0xAA]), None);
        assert_eq!(dgi(&[0x01, 0x02, 0xFF, 0x01]), None);
        assert_eq!(dgi(&[0x01]), None);
    }

    #[test]
    fn items_and_incomplete_tails() {
        let (items, used) = ber_items(&[0x42, 0x01, 0x99, 0x45, 0x03, 0x01]).unwrap();
        assert_eq!(items, vec![(ObjectId::Gp(0x42), vec![0x99])]);
        assert_eq!(used, 3);
        assert_eq!(
            ber_items(&[0x9F, 0x7F, 0x00]).unwrap_err(),
            StatusWord::IncorrectData
        );
        assert_eq!(ber_items(&[0x42, 0x80]).unwrap_err(), StatusWord::IncorrectData);
        let (items, used) =
            dgi_items(&[0x00, 0x70, 0x03, 0x42, 0x01, 0x07, 0x01, 0x01, 0x01, 0x05, 0x02]).unwrap();
        assert_eq!(
            items,
            vec![
                (ObjectId::Gp(0x42), vec![0x07]),
                (gp_state::dgi_object(0x0101), vec![0x05])
            ]
        );
        assert_eq!(used, 10);
        assert_eq!(
            dgi_items(&[0x80, 0x10, 0x01, 0x00]).unwrap_err(),
            StatusWord::IncorrectData
        );
        assert_eq!(
            dgi_items(&[0x00, 0x70, 0x02, 0x42, 0x05]).unwrap_err(),
            StatusWord::IncorrectData
        );
    }
}
