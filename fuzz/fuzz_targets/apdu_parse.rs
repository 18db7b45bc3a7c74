//! Command and response APDU parsing, chaining reassembly and response
//! collection on arbitrary bytes: no panic; whatever parses re-encodes to
//! bytes that parse to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsc::codec::{ChainAssembler, CommandApdu, ResponseApdu, ResponseCollector};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = CommandApdu::parse(data) {
        let again = CommandApdu::parse(&cmd.to_bytes());
        assert_eq!(again.as_ref(), Ok(&cmd));
        assert_eq!(CommandApdu::parse(&cmd.to_bytes_extended()).as_ref(), Ok(&cmd));
    }
    if let Ok(resp) = ResponseApdu::parse(data) {
        assert_eq!(resp.to_bytes(), data);
    }
    // Split the input into APDUs at 0xFF bytes and feed them as a chain.
    let mut asm = ChainAssembler::new();
    for part in data.split(|b| *b == 0xFF) {
        if let Ok(cmd) = CommandApdu::parse(part) {
            let _ = asm.push(cmd);
        }
    }
    let mut collector = ResponseCollector::new(CommandApdu::new(0, 0xCA, 0, 0));
    for part in data.chunks(7) {
        if let Ok(resp) = ResponseApdu::parse(part) {
            if collector.on_response(resp).is_err() {
                break;
            }
        }
    }
});
