//! BER-TLV as smart cards use it (ISO 7816-4 §5.2, X.690 §8.1).
//!
//! - Tags of 1 to 4 bytes. A first byte whose low five bits are all set
//!   (`xxx1 1111`) announces further tag bytes; each further byte with bit 8
//!   set announces another. The tag keeps its bytes as received, so
//!   `5F C1 05` is `Tag(0x5FC105)`.
//! - Bit 6 of the first tag byte marks a constructed object, whose value is
//!   itself a sequence of TLVs. Parsing checks that, recursively.
//! - Lengths: `00`–`7F` short form; `81`–`84` followed by 1–4 length bytes.
//!   The indefinite form `80` and `85`–`FF` are refused. Lengths are written in
//!   the shortest form; longer forms are accepted on input.
//!
//! Card data objects do not always honour the constructed bit: PIV's CHUID
//! carries the opaque FASC-N under tag `30`. Such contents are read one level
//! at a time with [`TlvRef`], which never looks into values; [`Tlv::parse`]
//! is the strict reader that checks constructed values recursively.
//!
//! Truncated input, a length that runs past the input, trailing bytes after
//! the last object and nesting deeper than [`MAX_DEPTH`] are errors, never
//! panics. Offsets in errors count from the start of the outermost input.

use std::fmt;

/// Deepest nesting of constructed objects the parser follows.
pub const MAX_DEPTH: usize = 32;

/// A malformed BER-TLV encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    #[error("TLV input is empty")]
    Empty,
    #[error("TLV truncated in the {part} at offset {offset}")]
    Truncated { offset: usize, part: &'static str },
    #[error("tag at offset {offset} is longer than 4 bytes")]
    TagTooLong { offset: usize },
    #[error("{0:#X} is not a valid BER-TLV tag")]
    InvalidTag(u32),
    #[error("indefinite length at offset {offset} is not allowed")]
    IndefiniteLength { offset: usize },
    #[error("length at offset {offset} uses {bytes} length bytes; at most 4 are allowed")]
    LengthTooLong { offset: usize, bytes: usize },
    #[error("value at offset {offset} declares {declared} bytes but only {available} remain")]
    ValueOverrun {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("{count} trailing bytes after the TLV object, at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("constructed objects nested deeper than {MAX_DEPTH} at offset {offset}")]
    TooDeep { offset: usize },
    #[error("tag {tag} at offset {offset} is missing")]
    Missing { tag: Tag, offset: usize },
}

/// A BER-TLV tag, holding its encoded bytes as a big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(u32);

/// A tag constant, checked at compile time: `tag!(0x5FC105)`.
#[macro_export]
macro_rules! tag {
    ($raw:expr) => {{
        const T: $crate::codec::Tag = match $crate::codec::Tag::new($raw) {
            Ok(t) => t,
            Err(_) => panic!("invalid BER-TLV tag"),
        };
        T
    }};
}

impl Tag {
    /// A tag from its encoded bytes read as a big-endian number (`0x5FC105`).
    pub const fn new(raw: u32) -> Result<Tag, TlvError> {
        let bytes = raw.to_be_bytes();
        let len = Tag::encoded_len_of(raw);
        let first = bytes[4 - len];
        if len == 1 {
            if first & 0x1F == 0x1F {
                return Err(TlvError::InvalidTag(raw));
            }
            return Ok(Tag(raw));
        }
        if first & 0x1F != 0x1F {
            return Err(TlvError::InvalidTag(raw));
        }
        let mut i = 4 - len + 1;
        while i < 4 {
            let more = bytes[i] & 0x80 != 0;
            if more != (i < 3) {
                return Err(TlvError::InvalidTag(raw));
            }
            i += 1;
        }
        Ok(Tag(raw))
    }

    const fn encoded_len_of(raw: u32) -> usize {
        if raw > 0xFF_FFFF {
            4
        } else if raw > 0xFFFF {
            3
        } else if raw > 0xFF {
            2
        } else {
            1
        }
    }

    /// The tag's bytes as a number, e.g. `0x5FC105`.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Number of encoded bytes (1..=4).
    pub const fn len(self) -> usize {
        Tag::encoded_len_of(self.0)
    }

    /// Always false: a tag has at least one byte. (For clippy's `len` rule.)
    pub const fn is_empty(self) -> bool {
        false
    }

    fn first_byte(self) -> u8 {
        let bytes = self.0.to_be_bytes();
        bytes.get(4 - self.len()).copied().unwrap_or(0)
    }

    /// Whether the value is a sequence of TLVs.
    pub fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    /// The class: 0 universal, 1 application, 2 context-specific, 3 private.
    pub fn class(self) -> u8 {
        self.first_byte() >> 6
    }

    /// Appends the tag's bytes.
    pub fn write(self, out: &mut Vec<u8>) {
        let bytes = self.0.to_be_bytes();
        out.extend_from_slice(bytes.get(4 - self.len()..).unwrap_or(&bytes));
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$X}", self.0, width = self.len() * 2)
    }
}

/// Appends a BER length in its shortest form.
pub fn write_length(len: usize, out: &mut Vec<u8>) {
    let bytes = (len as u64).to_be_bytes();
    let significant = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let tail = bytes.get(significant..).unwrap_or(&[]);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x80 | tail.len() as u8);
        out.extend_from_slice(tail);
    }
}

/// A BER-TLV object borrowed from its input: the tag and the value bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TlvRef<'a> {
    pub tag: Tag,
    pub value: &'a [u8],
    /// Offset of the value within the outermost input.
    value_offset: usize,
}

impl<'a> TlvRef<'a> {
    /// Reads one object from the front of `input`; returns it and the rest.
    /// Constructed values are not looked into.
    pub fn parse_prefix(input: &'a [u8]) -> Result<(TlvRef<'a>, &'a [u8]), TlvError> {
        parse_prefix_at(input, 0)
    }

    /// Reads a sequence of objects that fills `input` exactly (one level).
    pub fn parse_all(input: &'a [u8]) -> Result<Vec<TlvRef<'a>>, TlvError> {
        parse_all_at(input, 0)
    }

    /// Reads exactly one object; trailing bytes are an error.
    pub fn parse_single(input: &'a [u8]) -> Result<TlvRef<'a>, TlvError> {
        let (tlv, rest) = parse_prefix_at(input, 0)?;
        if !rest.is_empty() {
            return Err(TlvError::TrailingBytes {
                offset: input.len() - rest.len(),
                count: rest.len(),
            });
        }
        Ok(tlv)
    }

    /// The objects inside a constructed value (one level).
    pub fn children(&self) -> Result<Vec<TlvRef<'a>>, TlvError> {
        parse_all_at(self.value, self.value_offset)
    }

    /// The first child with `tag`, or a `Missing` error.
    pub fn child(&self, tag: Tag) -> Result<TlvRef<'a>, TlvError> {
        find_in(self.value, self.value_offset, tag)
    }

    /// An owned copy of this object, its constructed values checked.
    pub fn to_owned_checked(&self) -> Result<Tlv, TlvError> {
        if self.tag.is_constructed() {
            check_nested(self.value, self.value_offset, 1)?;
        }
        Ok(Tlv::new(self.tag, self.value.to_vec()))
    }
}

impl fmt::Debug for TlvRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{} bytes] {}",
            self.tag,
            self.value.len(),
            hex::encode_upper(self.value)
        )
    }
}

/// Finds the first object with `tag` in a sequence filling `input`.
pub fn find(input: &[u8], tag: Tag) -> Result<TlvRef<'_>, TlvError> {
    find_in(input, 0, tag)
}

fn find_in(input: &[u8], base: usize, tag: Tag) -> Result<TlvRef<'_>, TlvError> {
    let mut rest = input;
    while !rest.is_empty() {
        let offset = base + input.len() - rest.len();
        let (tlv, r) = parse_prefix_at(rest, offset)?;
        if tlv.tag == tag {
            return Ok(tlv);
        }
        rest = r;
    }
    Err(TlvError::Missing { tag, offset: base })
}

fn parse_all_at(input: &[u8], base: usize) -> Result<Vec<TlvRef<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let offset = base + input.len() - rest.len();
        let (tlv, r) = parse_prefix_at(rest, offset)?;
        out.push(tlv);
        rest = r;
    }
    Ok(out)
}

fn parse_prefix_at(input: &[u8], base: usize) -> Result<(TlvRef<'_>, &[u8]), TlvError> {
    let truncated = |pos: usize, part| TlvError::Truncated {
        offset: base + pos,
        part,
    };
    let first = *input.first().ok_or(if base == 0 {
        TlvError::Empty
    } else {
        truncated(0, "tag")
    })?;
    let mut pos = 1;
    let mut raw = u32::from(first);
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(pos).ok_or(truncated(pos, "tag"))?;
            pos += 1;
            if pos > 4 {
                return Err(TlvError::TagTooLong { offset: base });
            }
            raw = (raw << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let tag = Tag(raw);

    let len_offset = pos;
    let l0 = *input.get(pos).ok_or(truncated(pos, "length"))?;
    pos += 1;
    let len = match l0 {
        0x00..=0x7F => usize::from(l0),
        0x80 => {
            return Err(TlvError::IndefiniteLength {
                offset: base + len_offset,
            })
        }
        0x81..=0x84 => {
            let n = usize::from(l0 & 0x7F);
            let bytes = input.get(pos..pos + n).ok_or(truncated(pos, "length"))?;
            pos += n;
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        }
        _ => {
            return Err(TlvError::LengthTooLong {
                offset: base + len_offset,
                bytes: usize::from(l0 & 0x7F),
            })
        }
    };
    let available = input.len() - pos;
    if len > available {
        return Err(TlvError::ValueOverrun {
            offset: base + len_offset,
            declared: len,
            available,
        });
    }
    let (value, rest) = input.split_at(pos).1.split_at(len);
    Ok((
        TlvRef {
            tag,
            value,
            value_offset: base + pos,
        },
        rest,
    ))
}

/// Checks a constructed value: a sequence of TLVs, recursively.
fn check_nested(input: &[u8], base: usize, depth: usize) -> Result<(), TlvError> {
    if depth > MAX_DEPTH {
        return Err(TlvError::TooDeep { offset: base });
    }
    for child in parse_all_at(input, base)? {
        if child.tag.is_constructed() {
            check_nested(child.value, child.value_offset, depth + 1)?;
        }
    }
    Ok(())
}

/// An owned BER-TLV object. The value is kept as bytes; for a constructed
/// tag they are the encoding of its children.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tlv {
    tag: Tag,
    value: Vec<u8>,
}

impl Tlv {
    /// An object with `value` as its content bytes. For a constructed tag the
    /// bytes must themselves be TLVs; prefer [`Tlv::constructed`].
    pub fn new(tag: Tag, value: impl Into<Vec<u8>>) -> Tlv {
        Tlv {
            tag,
            value: value.into(),
        }
    }

    /// A constructed object holding `children`, in order.
    pub fn constructed(tag: Tag, children: &[Tlv]) -> Tlv {
        let mut value = Vec::new();
        for c in children {
            c.write(&mut value);
        }
        Tlv { tag, value }
    }

    pub fn tag(&self) -> Tag {
        self.tag
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    pub fn into_value(self) -> Vec<u8> {
        self.value
    }

    /// The children of a constructed value.
    pub fn children(&self) -> Result<Vec<Tlv>, TlvError> {
        parse_all_at(&self.value, 0)?
            .iter()
            .map(TlvRef::to_owned_checked)
            .collect()
    }

    /// Parses exactly one object, checking constructed values recursively;
    /// trailing bytes are an error.
    pub fn parse(input: &[u8]) -> Result<Tlv, TlvError> {
        TlvRef::parse_single(input)?.to_owned_checked()
    }

    /// Parses a sequence of objects that fills `input` exactly.
    pub fn parse_all(input: &[u8]) -> Result<Vec<Tlv>, TlvError> {
        TlvRef::parse_all(input)?
            .iter()
            .map(TlvRef::to_owned_checked)
            .collect()
    }

    /// Appends the encoding.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.tag.write(out);
        write_length(self.value.len(), out);
        out.extend_from_slice(&self.value);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + 8);
        self.write(&mut out);
        out
    }
}

impl fmt::Debug for Tlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag.is_constructed() {
            if let Ok(children) = self.children() {
                return f.debug_tuple(&self.tag.to_string()).field(&children).finish();
            }
        }
        write!(f, "{} {}", self.tag, hex::encode_upper(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn tags() {
        assert_eq!(tag!(0x5FC105).len(), 3);
        assert_eq!(tag!(0x7F49).len(), 2);
        assert!(tag!(0x7C).is_constructed());
        assert!(!tag!(0x53).is_constructed());
        assert_eq!(tag!(0x9F7F).class(), 2);
        assert!(Tag::new(0x1F).is_err(), "single byte announcing more");
        assert!(Tag::new(0x5F).is_err());
        assert!(Tag::new(0x5FC1).is_err(), "last byte with continuation bit");
        assert!(
            Tag::new(0x4105).is_err(),
            "first byte without the multi-byte marker"
        );
        assert!(
            Tag::new(0x5F05C1).is_err(),
            "middle byte without continuation bit"
        );
        assert_eq!(tag!(0x5FC105).to_string(), "5FC105");
    }

    #[test]
    fn piv_chuid_get_data_reply() {
        // 53 L { 30 19 FASC-N, 34 10 GUID, 35 08 expiry, 3E 00, FE 00 }
        let bytes = hex("533B 3019D4E739DA739CED39CE739D836858210842108421C84210C3EB 3410000102030405060708090A0B0C0D0E0F 350832303330303130313E00FE00");
        let t = Tlv::parse(&bytes).unwrap();
        assert_eq!(t.tag(), tag!(0x53));
        // Tag 30 (FASC-N) has the constructed bit but opaque content: the
        // strict reader refuses it, the one-level reader takes it.
        assert!(Tlv::parse_all(t.value()).is_err());
        let inner = TlvRef::parse_all(t.value()).unwrap();
        assert_eq!(inner.len(), 5);
        assert_eq!(inner[1].value, &hex("000102030405060708090A0B0C0D0E0F")[..]);
        assert_eq!(find(t.value(), tag!(0x35)).unwrap().value, b"20300101");
        assert_eq!(t.to_bytes(), bytes);
    }

    #[test]
    fn nested_constructed_and_long_lengths() {
        let sig = vec![0xAB; 256];
        let t = Tlv::constructed(tag!(0x7C), &[Tlv::new(tag!(0x82), sig.clone())]);
        let bytes = t.to_bytes();
        assert_eq!(&bytes[..4], &hex("7C820104")[..]);
        assert_eq!(&bytes[4..8], &hex("82820100")[..]);
        let back = Tlv::parse(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.children().unwrap()[0].value(), &sig[..]);
        // Non-minimal long form is accepted on input.
        let lenient = Tlv::parse(&hex("53 81 02 0102")).unwrap();
        assert_eq!(lenient.value(), &[1, 2]);
        // Four length bytes.
        let four = Tlv::parse(&hex("53 84 00000002 0102")).unwrap();
        assert_eq!(four.value(), &[1, 2]);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(Tlv::parse(&[]), Err(TlvError::Empty));
        assert!(matches!(
            Tlv::parse(&hex("5F")),
            Err(TlvError::Truncated { part: "tag", .. })
        ));
        assert!(matches!(
            Tlv::parse(&hex("53")),
            Err(TlvError::Truncated { part: "length", .. })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5382 01")),
            Err(TlvError::Truncated { part: "length", .. })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5303 0102")),
            Err(TlvError::ValueOverrun {
                declared: 3,
                available: 2,
                ..
            })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5380 0000")),
            Err(TlvError::IndefiniteLength { .. })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5385 0000000001 00")),
            Err(TlvError::LengthTooLong { bytes: 5, .. })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5301 01 FF")),
            Err(TlvError::TrailingBytes { offset: 3, count: 1 })
        ));
        assert!(matches!(
            Tlv::parse(&hex("5FC1C1C105 00")),
            Err(TlvError::TagTooLong { .. })
        ));
        // A constructed value that is not a TLV sequence.
        assert!(matches!(
            Tlv::parse(&hex("7C03 820501")),
            Err(TlvError::ValueOverrun { offset: 3, .. })
        ));
        // Offsets point into the outermost input.
        assert!(matches!(
            Tlv::parse(&hex("7C05 8101AA 8205")),
            Err(TlvError::Truncated { .. }) | Err(TlvError::ValueOverrun { offset: 6, .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut t = Tlv::new(tag!(0x80), vec![1]);
        for _ in 0..MAX_DEPTH + 1 {
            t = Tlv::constructed(tag!(0x30), &[t]);
        }
        assert!(matches!(Tlv::parse(&t.to_bytes()), Err(TlvError::TooDeep { .. })));
    }

    #[test]
    fn missing_child_is_named() {
        let t = Tlv::constructed(tag!(0x7C), &[Tlv::new(tag!(0x82), vec![])]);
        let bytes = t.to_bytes();
        let r = TlvRef::parse_single(&bytes).unwrap();
        assert!(r.child(tag!(0x82)).is_ok());
        assert_eq!(
            r.child(tag!(0x81)),
            Err(TlvError::Missing {
                tag: tag!(0x81),
                offset: 2
            })
        );
    }
}
