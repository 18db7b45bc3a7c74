//! Property tests of the codec: serialize then parse is the identity, and
//! parsing arbitrary bytes never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use vsc::codec::{
    split_chain, ChainAssembler, CommandApdu, Instruction, ResponseApdu, StatusWord, Tag, Tlv, TlvRef,
    MAX_DEPTH,
};

fn command() -> impl Strategy<Value = CommandApdu> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![Just(0usize), 1usize..=255, 256usize..=700, Just(65_535usize)],
        prop_oneof![
            Just(None),
            (1usize..=256).prop_map(Some),
            (257usize..=65_536).prop_map(Some)
        ],
    )
        .prop_map(|(cla, ins, p1, p2, len, ne)| {
            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ p1).collect();
            let c = CommandApdu::new(cla, ins, p1, p2).with_data(data).unwrap();
            match ne {
                Some(ne) => c.with_ne(ne).unwrap(),
                None => c,
            }
        })
}

/// Valid tags of 1 to 3 bytes, primitive or constructed.
fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        any::<u8>().prop_filter_map("single-byte tag", |b| Tag::new(u32::from(b)).ok()),
        (any::<u8>(), 0x1Fu8..=0x7F)
            .prop_map(|(c, n)| Tag::new(u32::from((c & 0xE0) | 0x1F) << 8 | u32::from(n)).unwrap()),
        (any::<u8>(), 0x81u8..=0xFF, 0u8..=0x7F).prop_map(|(c, a, b)| {
            Tag::new((u32::from((c & 0xE0) | 0x1F) << 16) | (u32::from(a) << 8) | u32::from(b)).unwrap()
        }),
    ]
}

fn tlv() -> impl Strategy<Value = Tlv> {
    let leaf = (tag(), prop::collection::vec(any::<u8>(), 0..300)).prop_filter_map("primitive", |(t, v)| {
        (!t.is_constructed()).then(|| Tlv::new(t, v))
    });
    leaf.prop_recursive(4, 64, 6, |inner| {
        (tag(), prop::collection::vec(inner, 0..6)).prop_filter_map("constructed", |(t, children)| {
            t.is_constructed().then(|| Tlv::constructed(t, &children))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn command_apdu_round_trips(c in command()) {
        prop_assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c.clone());
        prop_assert_eq!(CommandApdu::parse(&c.to_bytes_extended()).unwrap(), c);
    }

    #[test]
    fn command_apdu_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(c) = CommandApdu::parse(&bytes) {
            // Whatever parses re-encodes to something that parses the same.
            prop_assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn response_apdu_round_trips(data in prop::collection::vec(any::<u8>(), 0..600), sw in any::<u16>()) {
        let r = ResponseApdu::new(data, StatusWord::from(sw));
        prop_assert_eq!(ResponseApdu::parse(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn chaining_split_then_reassemble_is_identity(c in command(), part in 1usize..=255) {
        let mut asm = ChainAssembler::new();
        let parts = split_chain(&c, part);
        let n = parts.len();
        let mut whole = None;
        for (i, p) in parts.into_iter().enumerate() {
            prop_assert_eq!(p.is_chained(), i + 1 < n || c.is_chained());
            whole = asm.push(p).unwrap();
        }
        // A command that already had the chaining bit is itself a chain part.
        if !c.is_chained() {
            prop_assert_eq!(whole.unwrap(), c);
        }
    }

    #[test]
    fn tlv_round_trips(t in tlv()) {
        let bytes = t.to_bytes();
        prop_assert_eq!(Tlv::parse(&bytes).unwrap(), t.clone());
        prop_assert_eq!(TlvRef::parse_single(&bytes).unwrap().value, t.value());
    }

    #[test]
    fn tlv_sequences_round_trip(ts in prop::collection::vec(tlv(), 0..5)) {
        let mut bytes = Vec::new();
        for t in &ts {
            t.write(&mut bytes);
        }
        prop_assert_eq!(Tlv::parse_all(&bytes).unwrap(), ts);
    }

    #[test]
    fn tlv_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Tlv::parse(&bytes);
        let _ = Tlv::parse_all(&bytes);
        if let Ok(all) = TlvRef::parse_all(&bytes) {
            for t in all {
                let _ = t.children();
            }
        }
    }

    #[test]
    fn instruction_and_status_word_are_lossless(b in any::<u8>(), sw in any::<u16>()) {
        prop_assert_eq!(u8::from(Instruction::from(b)), b);
        prop_assert_eq!(u16::from(StatusWord::from(sw)), sw);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 10 000 nested constructed headers with consistent lengths.
    let mut bytes = vec![0x80, 0x00];
    for _ in 0..10_000 {
        let mut outer = vec![0x30];
        vsc::codec::write_length(bytes.len(), &mut outer);
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    assert!(Tlv::parse(&bytes).is_err());
    const { assert!(MAX_DEPTH < 10_000) };
}
