//! Strict reading and plain writing of the body's BER-TLV, on top of
//! [`crate::codec`]: shortest-form lengths only, fields in a fixed order,
//! unknown tags skipped only when the file's minor version is newer than this
//! reader's.

use crate::codec::{Tag, Tlv, TlvRef};

use super::error::ContentError;

/// Bytes of the tag and length in front of a value of `vlen` bytes, lengths in
/// the shortest form.
pub(crate) fn encoded_header_len(tag: Tag, vlen: usize) -> usize {
    let len_len = if vlen < 0x80 {
        1
    } else {
        let mut n = 0;
        let mut v = vlen;
        while v > 0 {
            n += 1;
            v >>= 8;
        }
        1 + n
    };
    tag.len() + len_len
}

fn check_minimal(items: &[TlvRef<'_>], total: usize) -> Result<(), ContentError> {
    let sum: usize = items
        .iter()
        .map(|t| encoded_header_len(t.tag, t.value.len()) + t.value.len())
        .sum();
    if sum == total {
        Ok(())
    } else {
        Err(ContentError::NonMinimalLength)
    }
}

/// A sequence of objects filling `bytes` exactly (one level).
pub(crate) fn seq(bytes: &[u8]) -> Result<Vec<TlvRef<'_>>, ContentError> {
    let items = TlvRef::parse_all(bytes)?;
    check_minimal(&items, bytes.len())?;
    Ok(items)
}

/// The children of a constructed object (one level).
pub(crate) fn children<'a>(t: &TlvRef<'a>) -> Result<Vec<TlvRef<'a>>, ContentError> {
    let items = t.children()?;
    check_minimal(&items, t.value.len())?;
    Ok(items)
}

/// Reads the fields of one constructed object in their fixed order.
pub(crate) struct Fields<'a> {
    items: Vec<TlvRef<'a>>,
    pos: usize,
    known: &'static [Tag],
    context: &'static str,
    lenient: bool,
}

impl<'a> Fields<'a> {
    /// `known`: every tag this version defines at this place. `lenient`:
    /// the file's minor version is newer, so other tags are skipped.
    pub(crate) fn new(
        items: Vec<TlvRef<'a>>,
        known: &'static [Tag],
        context: &'static str,
        lenient: bool,
    ) -> Self {
        Fields {
            items,
            pos: 0,
            known,
            context,
            lenient,
        }
    }

    pub(crate) fn of(
        t: &TlvRef<'a>,
        known: &'static [Tag],
        context: &'static str,
        lenient: bool,
    ) -> Result<Self, ContentError> {
        Ok(Fields::new(children(t)?, known, context, lenient))
    }

    fn skip_unknown(&mut self) {
        while let Some(t) = self.items.get(self.pos) {
            if self.lenient && !self.known.contains(&t.tag) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<TlvRef<'a>> {
        self.skip_unknown();
        self.items.get(self.pos).copied()
    }

    /// The next field if it has `tag`.
    pub(crate) fn opt(&mut self, tag: Tag) -> Option<TlvRef<'a>> {
        match self.peek() {
            Some(t) if t.tag == tag => {
                self.pos += 1;
                Some(t)
            }
            _ => None,
        }
    }

    /// The next field, which must have `tag`.
    pub(crate) fn req(&mut self, tag: Tag, field: &'static str) -> Result<TlvRef<'a>, ContentError> {
        if let Some(t) = self.opt(tag) {
            return Ok(t);
        }
        match self.peek() {
            Some(t) if !self.known.contains(&t.tag) => Err(ContentError::UnexpectedTag {
                context: self.context,
                tag: t.tag,
            }),
            _ => Err(ContentError::Missing { field }),
        }
    }

    /// The next field if its tag is one of `tags`.
    pub(crate) fn any_of(&mut self, tags: &[Tag]) -> Option<TlvRef<'a>> {
        match self.peek() {
            Some(t) if tags.contains(&t.tag) => {
                self.pos += 1;
                Some(t)
            }
            _ => None,
        }
    }

    /// All consecutive fields with `tag`.
    pub(crate) fn many(&mut self, tag: Tag) -> Vec<TlvRef<'a>> {
        let mut out = Vec::new();
        while let Some(t) = self.opt(tag) {
            out.push(t);
        }
        out
    }

    /// Nothing but skippable fields may remain.
    pub(crate) fn finish(mut self) -> Result<(), ContentError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(ContentError::UnexpectedTag {
                context: self.context,
                tag: t.tag,
            }),
        }
    }
}

pub(crate) fn u8_of(t: &TlvRef<'_>, field: &'static str) -> Result<u8, ContentError> {
    Ok(u8::from_be_bytes(fixed(t, field)?))
}

pub(crate) fn u16_of(t: &TlvRef<'_>, field: &'static str) -> Result<u16, ContentError> {
    Ok(u16::from_be_bytes(fixed(t, field)?))
}

pub(crate) fn u32_of(t: &TlvRef<'_>, field: &'static str) -> Result<u32, ContentError> {
    Ok(u32::from_be_bytes(fixed(t, field)?))
}

pub(crate) fn u64_of(t: &TlvRef<'_>, field: &'static str) -> Result<u64, ContentError> {
    Ok(u64::from_be_bytes(fixed(t, field)?))
}

/// A value of exactly `N` bytes.
pub(crate) fn fixed<const N: usize>(t: &TlvRef<'_>, field: &'static str) -> Result<[u8; N], ContentError> {
    <[u8; N]>::try_from(t.value)
        .map_err(|_| ContentError::invalid(field, format!("has {} bytes, not {N}", t.value.len())))
}

/// A UTF-8 text field: 1..=255 bytes, no control characters.
pub(crate) fn text_of(t: &TlvRef<'_>, field: &'static str) -> Result<String, ContentError> {
    let s = std::str::from_utf8(t.value).map_err(|_| ContentError::invalid(field, "is not UTF-8"))?;
    super::model::check_text(s).map_err(|p| ContentError::invalid(field, p))?;
    Ok(s.to_owned())
}

pub(crate) fn prim(tag: Tag, value: impl Into<Vec<u8>>) -> Tlv {
    Tlv::new(tag, value)
}

pub(crate) fn cons(tag: Tag, children: &[Tlv]) -> Tlv {
    Tlv::constructed(tag, children)
}

pub(crate) fn concat(items: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in items {
        t.write(&mut out);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tag;

    #[test]
    fn shortest_lengths_only() {
        assert_eq!(seq(&[0xC1, 0x01, 0xAA]).unwrap().len(), 1);
        assert_eq!(
            seq(&[0xC1, 0x81, 0x01, 0xAA]),
            Err(ContentError::NonMinimalLength)
        );
        let long = Tlv::new(tag!(0xC1), vec![0; 300]).to_bytes();
        assert_eq!(seq(&long).unwrap().len(), 1);
        assert_eq!(seq(&[]).unwrap().len(), 0);
    }

    #[test]
    fn fields_in_order_with_skipping() {
        const KNOWN: &[Tag] = &[tag!(0xC1), tag!(0xC2)];
        let bytes = [0xC1, 0x00, 0xC7, 0x00, 0xC2, 0x00];
        let mut f = Fields::new(seq(&bytes).unwrap(), KNOWN, "test", false);
        assert!(f.opt(tag!(0xC1)).is_some());
        assert!(matches!(
            f.req(tag!(0xC2), "c2"),
            Err(ContentError::UnexpectedTag { .. })
        ));
        let mut f = Fields::new(seq(&bytes).unwrap(), KNOWN, "test", true);
        assert!(f.opt(tag!(0xC1)).is_some());
        assert!(f.req(tag!(0xC2), "c2").is_ok());
        assert!(f.finish().is_ok());
        // Out of order: C2 before C1 leaves C1 unread.
        let bytes = [0xC2, 0x00, 0xC1, 0x00];
        let mut f = Fields::new(seq(&bytes).unwrap(), KNOWN, "test", true);
        assert!(f.opt(tag!(0xC1)).is_none());
        assert!(f.req(tag!(0xC2), "c2").is_ok());
        assert!(f.finish().is_err());
    }
}
