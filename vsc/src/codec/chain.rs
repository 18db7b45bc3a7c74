//! Command chaining (ISO 7816-4 §5.1.1.1: CLA bit 0x10) and response
//! chaining (61xx with GET RESPONSE, 6Cxx with a corrected Le).
//!
//! Pure state machines: they say which APDU to send next and never transmit.

use zeroize::Zeroize;

use super::{CommandApdu, Instruction, ResponseApdu, StatusWord, CLA_CHAINING};

/// Part size OpenSC and yubico-piv-tool use when chaining.
pub const CHAIN_PART_LEN: usize = 255;

/// Largest command a [`ChainAssembler`] reassembles by default.
pub const MAX_CHAINED_COMMAND: usize = 65_535;

/// Splits `cmd` into a command chain of parts with at most `part_len` data
/// bytes. Every part but the last has the chaining bit set and no Le; the last
/// part carries the original CLA and Ne. A command that fits is returned alone.
pub fn split_chain(cmd: &CommandApdu, part_len: usize) -> Vec<CommandApdu> {
    let part_len = part_len.max(1);
    let data = cmd.data();
    if data.len() <= part_len {
        return vec![cmd.clone()];
    }
    let mut parts = Vec::with_capacity(data.len().div_ceil(part_len));
    let mut chunks = data.chunks(part_len).peekable();
    while let Some(chunk) = chunks.next() {
        parts.push(if chunks.peek().is_none() {
            cmd.chain_part(cmd.cla(), chunk, true)
        } else {
            cmd.chain_part(cmd.cla() | CLA_CHAINING, chunk, false)
        });
    }
    parts
}

/// Why a chain part was refused. Each maps to the status word to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("a different command arrived in the middle of a command chain")]
    Interrupted,
    #[error("the chained command would exceed {0} bytes")]
    TooLong(usize),
}

impl ChainError {
    pub fn status_word(&self) -> StatusWord {
        match self {
            ChainError::Interrupted => StatusWord::LastCommandOfChainExpected,
            ChainError::TooLong(_) => StatusWord::WrongLength,
        }
    }
}

/// Card-side reassembly of a command chain.
#[derive(Debug, Default)]
pub struct ChainAssembler {
    pending: Option<Pending>,
    limit: Option<usize>,
}

#[derive(Debug)]
struct Pending {
    cla: u8,
    ins: Instruction,
    p1: u8,
    p2: u8,
    data: Vec<u8>,
}

/// A chain's data may hold PINs or key parts: wiped when the chain ends.
impl Drop for Pending {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl ChainAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// An assembler that refuses chains longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        ChainAssembler {
            pending: None,
            limit: Some(limit.min(MAX_CHAINED_COMMAND)),
        }
    }

    /// Whether a chain is under way.
    pub fn in_progress(&self) -> bool {
        self.pending.is_some()
    }

    /// Forgets a chain under way (reset, power off, SELECT).
    pub fn clear(&mut self) {
        self.pending = None;
    }

    /// Feeds one received command. `Ok(None)`: a part was stored, answer 9000.
    /// `Ok(Some(cmd))`: the whole command, to execute. An error discards the
    /// chain.
    pub fn push(&mut self, part: CommandApdu) -> Result<Option<CommandApdu>, ChainError> {
        let limit = self.limit.unwrap_or(MAX_CHAINED_COMMAND);
        let base_cla = part.cla() & !CLA_CHAINING;
        if let Some(p) = &self.pending {
            if (p.cla, p.ins, p.p1, p.p2) != (base_cla, part.ins(), part.p1(), part.p2()) {
                self.pending = None;
                return Err(ChainError::Interrupted);
            }
        }
        if part.is_chained() {
            let p = self.pending.get_or_insert_with(|| Pending {
                cla: base_cla,
                ins: part.ins(),
                p1: part.p1(),
                p2: part.p2(),
                data: Vec::new(),
            });
            if p.data.len() + part.data().len() > limit {
                self.pending = None;
                return Err(ChainError::TooLong(limit));
            }
            p.data.extend_from_slice(part.data());
            return Ok(None);
        }
        let Some(mut p) = self.pending.take() else {
            return Ok(Some(part));
        };
        if p.data.len() + part.data().len() > limit {
            return Err(ChainError::TooLong(limit));
        }
        let ne = part.ne();
        p.data.extend_from_slice(part.data());
        let whole = CommandApdu::new(p.cla, p.ins, p.p1, p.p2)
            .with_data(std::mem::take(&mut p.data))
            .map_err(|_| ChainError::TooLong(limit))?;
        Ok(Some(match ne {
            Some(ne) => whole.with_ne(ne).map_err(|_| ChainError::TooLong(limit))?,
            None => whole,
        }))
    }
}

/// GET RESPONSE for `n` bytes (0 means 256), as OpenSC sends it.
pub fn get_response(n: u8) -> CommandApdu {
    let ne = if n == 0 { 256 } else { usize::from(n) };
    // 1..=256 is always a valid short Ne.
    let cmd = CommandApdu::new(0x00, Instruction::GetResponse, 0, 0);
    cmd.clone().with_ne(ne).unwrap_or(cmd)
}

/// What the host does after a response: send another APDU or stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Send this command and feed its response back.
    Send(CommandApdu),
    /// The complete response.
    Done(ResponseApdu),
}

/// Host-side handling of 61xx and 6Cxx: collects a long response through GET
/// RESPONSE and resends a command whose Le the card corrected.
#[derive(Debug)]
pub struct ResponseCollector {
    command: CommandApdu,
    collected: Vec<u8>,
    rounds: usize,
    limit: usize,
}

/// How many GET RESPONSE / resend rounds a collector allows before it gives
/// up on a card that never finishes.
pub const MAX_RESPONSE_ROUNDS: usize = 1024;

/// The response grew past what any APDU exchange can return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the card kept answering 61xx/6Cxx past {rounds} rounds or {bytes} bytes")]
pub struct ResponseTooLong {
    pub rounds: usize,
    pub bytes: usize,
}

impl ResponseCollector {
    /// Starts collecting the response to `command` (which the caller sends).
    pub fn new(command: CommandApdu) -> Self {
        ResponseCollector {
            command,
            collected: Vec::new(),
            rounds: 0,
            limit: 1 << 20,
        }
    }

    /// Feeds a response; says what to send next or returns the full response.
    pub fn on_response(&mut self, resp: ResponseApdu) -> Result<NextStep, ResponseTooLong> {
        self.rounds += 1;
        if self.rounds > MAX_RESPONSE_ROUNDS || self.collected.len() + resp.data.len() > self.limit {
            return Err(ResponseTooLong {
                rounds: self.rounds,
                bytes: self.collected.len() + resp.data.len(),
            });
        }
        match resp.sw {
            StatusWord::BytesRemaining(n) => {
                self.collected.extend_from_slice(&resp.data);
                Ok(NextStep::Send(get_response(n)))
            }
            StatusWord::WrongLe(n) => {
                let ne = if n == 0 { 256 } else { usize::from(n) };
                let resend = self
                    .command
                    .clone()
                    .with_ne(ne)
                    .unwrap_or_else(|_| self.command.clone());
                Ok(NextStep::Send(resend))
            }
            sw => {
                let mut data = std::mem::take(&mut self.collected);
                data.extend_from_slice(&resp.data);
                Ok(NextStep::Done(ResponseApdu::new(data, sw)))
            }
        }
    }
}

/// Card-side response chaining: hands out a long response in parts of at most
/// Ne bytes, each but the last ending in 61xx.
#[derive(Debug, Default)]
pub struct ResponseChunker {
    remaining: Vec<u8>,
    final_sw: Option<StatusWord>,
}

impl ResponseChunker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a GET RESPONSE would return data now.
    pub fn has_more(&self) -> bool {
        self.final_sw.is_some()
    }

    /// Forgets any pending response data.
    pub fn clear(&mut self) {
        self.remaining.clear();
        self.final_sw = None;
    }

    /// The first part of `resp` for a command that expected `ne` bytes (256
    /// when the command had no Le).
    pub fn start(&mut self, resp: ResponseApdu, ne: Option<usize>) -> ResponseApdu {
        self.clear();
        let ne = ne.unwrap_or(256);
        if resp.data.len() <= ne {
            return resp;
        }
        self.remaining = resp.data;
        self.final_sw = Some(resp.sw);
        self.next_part(ne)
    }

    /// The next part, for GET RESPONSE with `ne` bytes expected. Without a
    /// pending response the answer is 6985.
    pub fn get_response(&mut self, ne: usize) -> ResponseApdu {
        if self.final_sw.is_none() {
            return ResponseApdu::status(StatusWord::ConditionsOfUseNotSatisfied);
        }
        self.next_part(ne)
    }

    fn next_part(&mut self, ne: usize) -> ResponseApdu {
        let take = ne.min(self.remaining.len());
        let rest = self.remaining.split_off(take);
        let part = std::mem::replace(&mut self.remaining, rest);
        if self.remaining.is_empty() {
            let sw = self.final_sw.take().unwrap_or(StatusWord::Success);
            ResponseApdu::new(part, sw)
        } else {
            let left = self.remaining.len();
            // 61 00 means 256 or more.
            let n = if left >= 256 { 0 } else { left as u8 };
            ResponseApdu::new(part, StatusWord::BytesRemaining(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(len: usize) -> CommandApdu {
        CommandApdu::new(0x00, 0xDB, 0x3F, 0xFF)
            .with_data((0..len).map(|i| i as u8).collect::<Vec<_>>())
            .unwrap()
            .with_ne(256)
            .unwrap()
    }

    #[test]
    fn split_sets_chaining_bit_and_keeps_ne_on_last() {
        let c = cmd(600);
        let parts = split_chain(&c, CHAIN_PART_LEN);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].cla(), 0x10);
        assert_eq!(parts[0].data().len(), 255);
        assert_eq!(parts[0].ne(), None);
        assert_eq!(parts[2].cla(), 0x00);
        assert_eq!(parts[2].data().len(), 90);
        assert_eq!(parts[2].ne(), Some(256));
        assert_eq!(split_chain(&cmd(255), 255), vec![cmd(255)]);
    }

    #[test]
    fn reassembly_restores_the_command() {
        for len in [1, 254, 255, 256, 510, 511, 3000] {
            let c = cmd(len);
            let mut asm = ChainAssembler::new();
            let mut out = None;
            for p in split_chain(&c, 255) {
                assert!(out.is_none());
                out = asm.push(p).unwrap();
            }
            assert_eq!(out.unwrap(), c);
            assert!(!asm.in_progress());
        }
    }

    #[test]
    fn a_foreign_command_interrupts_the_chain() {
        let mut asm = ChainAssembler::new();
        let parts = split_chain(&cmd(300), 255);
        assert_eq!(asm.push(parts[0].clone()), Ok(None));
        let other = CommandApdu::new(0x00, 0xCB, 0x3F, 0xFF);
        assert_eq!(asm.push(other), Err(ChainError::Interrupted));
        assert_eq!(
            ChainError::Interrupted.status_word(),
            StatusWord::LastCommandOfChainExpected
        );
        assert!(!asm.in_progress());
    }

    #[test]
    fn chain_limit_is_enforced() {
        let mut asm = ChainAssembler::with_limit(300);
        let parts = split_chain(&cmd(600), 255);
        assert_eq!(asm.push(parts[0].clone()), Ok(None));
        assert_eq!(asm.push(parts[1].clone()), Err(ChainError::TooLong(300)));
    }

    #[test]
    fn chunker_and_collector_agree() {
        let data: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        let mut card = ResponseChunker::new();
        let first = card.start(ResponseApdu::success(data.clone()), Some(256));
        assert_eq!(first.sw, StatusWord::BytesRemaining(0));
        let c = CommandApdu::new(0, 0xCB, 0x3F, 0xFF).with_ne(256).unwrap();
        let mut host = ResponseCollector::new(c);
        let mut resp = first;
        let full = loop {
            match host.on_response(resp).unwrap() {
                NextStep::Send(cmd) => {
                    assert_eq!(cmd.ins(), Instruction::GetResponse);
                    resp = card.get_response(cmd.ne().unwrap());
                }
                NextStep::Done(r) => break r,
            }
        };
        assert_eq!(full, ResponseApdu::success(data));
        assert!(!card.has_more());
        assert_eq!(card.get_response(256).sw, StatusWord::ConditionsOfUseNotSatisfied);
    }

    #[test]
    fn collector_resends_on_wrong_le() {
        let c = CommandApdu::new(0, 0xB0, 0, 0).with_ne(256).unwrap();
        let mut host = ResponseCollector::new(c);
        match host
            .on_response(ResponseApdu::status(StatusWord::WrongLe(0x10)))
            .unwrap()
        {
            NextStep::Send(resend) => assert_eq!(resend.ne(), Some(0x10)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collector_gives_up_on_an_endless_card() {
        let mut host = ResponseCollector::new(CommandApdu::new(0, 0xB0, 0, 0));
        let mut result = Ok(NextStep::Send(get_response(1)));
        for _ in 0..=MAX_RESPONSE_ROUNDS {
            result = host.on_response(ResponseApdu::new(vec![0], StatusWord::BytesRemaining(1)));
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
