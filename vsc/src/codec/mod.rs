//! The card codec: APDUs, status words, instruction bytes, command and response
//! chaining, BER-TLV. Pure: no I/O, no clock, no randomness.

mod apdu;
mod chain;
mod ins;
mod sw;
mod tlv;

pub use apdu::{
    ApduCase, ApduError, CommandApdu, ResponseApdu, CLA_CHAINING, MAX_EXTENDED_LC, MAX_EXTENDED_NE,
    MAX_SHORT_LC, MAX_SHORT_NE,
};
pub use chain::{
    get_response, split_chain, ChainAssembler, ChainError, NextStep, ResponseChunker, ResponseCollector,
    ResponseTooLong, CHAIN_PART_LEN, MAX_CHAINED_COMMAND, MAX_RESPONSE_ROUNDS,
};
pub use ins::Instruction;
pub use sw::StatusWord;
pub use tlv::{find, write_length, Tag, Tlv, TlvError, TlvRef, MAX_DEPTH};
