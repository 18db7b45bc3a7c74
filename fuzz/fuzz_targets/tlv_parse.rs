//! BER-TLV parsing on arbitrary bytes: no panic; whatever parses re-encodes
//! and parses to the same objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsc::codec::{Tlv, TlvRef};

fuzz_target!(|data: &[u8]| {
    if let Ok(all) = Tlv::parse_all(data) {
        let mut again = Vec::new();
        for t in &all {
            t.write(&mut again);
            let _ = t.children();
        }
        assert_eq!(Tlv::parse_all(&again).as_ref(), Ok(&all));
    }
    if let Ok(refs) = TlvRef::parse_all(data) {
        for r in refs {
            if let Ok(children) = r.children() {
                for c in children {
                    let _ = c.to_owned_checked();
                }
            }
        }
    }
    let _ = Tlv::parse(data);
});
