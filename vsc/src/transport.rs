//! One transport trait for every way of reaching a card.
//!
//! [`CardTransport`] is what host code (the station's relay, tests, tools)
//! talks to: transmit bytes, reset, read the ATR. PC/SC readers implement it
//! in the station; [`InProcess`] implements it over a software card in the
//! same process, so host logic runs the same against both.
//!
//! [`SmartCard`] is the other side: a card as a reader drives its contacts
//! (power, reset, ATR, APDUs). The software card implements it; the vpcd
//! bridge and [`InProcess`] drive it.

use crate::codec::{split_chain, CommandApdu, NextStep, ResponseApdu, ResponseCollector, CHAIN_PART_LEN};

/// A card as a reader drives it.
pub trait SmartCard {
    /// Powers the card on (cold reset) and returns its ATR.
    fn power_on(&mut self) -> Vec<u8>;
    /// Removes power: every piece of volatile state is lost.
    fn power_off(&mut self);
    /// Warm reset: volatile state is lost; returns the ATR.
    fn reset(&mut self) -> Vec<u8>;
    /// The ATR the card answers with.
    fn atr(&self) -> Vec<u8>;
    /// Processes one command APDU and returns the response bytes, which
    /// always end in a status word, whatever the input.
    fn process_apdu(&mut self, apdu: &[u8]) -> Vec<u8>;
}

/// Warm or cold reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// Reset without removing power.
    Warm,
    /// Power off, then on.
    Cold,
}

/// A failure to reach the card (not a status word: those are answers).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the card was removed")]
    CardRemoved,
    #[error("the card did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the reader failed: {0}")]
    Reader(String),
    #[error("the card's response is malformed: {0}")]
    MalformedResponse(#[from] crate::codec::ApduError),
    #[error("the card kept chaining its response: {0}")]
    ResponseTooLong(#[from] crate::codec::ResponseTooLong),
}

/// What host code talks to: a card in a reader.
pub trait CardTransport {
    /// Sends one command APDU as bytes; returns the response bytes unchanged.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
    /// Resets the card; returns the ATR after the reset.
    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError>;
    /// The ATR read when the card was connected or last reset.
    fn atr(&self) -> Vec<u8>;
}

/// Sends a command with command chaining where its data exceeds 255 bytes
/// (extended-length commands are sent whole when `chain` is false) and
/// collects a response spread over 61xx / corrected by 6Cxx.
pub fn exchange(
    transport: &mut (impl CardTransport + ?Sized),
    command: &CommandApdu,
    chain: bool,
) -> Result<ResponseApdu, TransportError> {
    let parts = if chain && command.data().len() > CHAIN_PART_LEN {
        split_chain(command, CHAIN_PART_LEN)
    } else {
        vec![command.clone()]
    };
    let last = parts.len().saturating_sub(1);
    let mut response = None;
    for (i, part) in parts.into_iter().enumerate() {
        let r = ResponseApdu::parse(&transport.transmit(&part.to_bytes())?)?;
        if i < last && !r.is_success() {
            // An intermediate part was refused: that is the answer.
            return Ok(r);
        }
        response = Some((part, r));
    }
    let Some((sent, mut resp)) = response else {
        return Err(TransportError::Reader("nothing to send".into()));
    };
    let mut collector = ResponseCollector::new(sent);
    loop {
        match collector.on_response(resp)? {
            NextStep::Done(r) => return Ok(r),
            NextStep::Send(next) => {
                resp = ResponseApdu::parse(&transport.transmit(&next.to_bytes())?)?;
            }
        }
    }
}

/// A software card in this process, reached as if it sat in a reader.
#[derive(Debug)]
pub struct InProcess<C: SmartCard> {
    card: C,
    atr: Vec<u8>,
}

impl<C: SmartCard> InProcess<C> {
    /// Inserts the card: powers it on.
    pub fn insert(mut card: C) -> Self {
        let atr = card.power_on();
        InProcess { card, atr }
    }

    /// Removes the card: powers it off and hands it back.
    pub fn remove(mut self) -> C {
        self.card.power_off();
        self.card
    }

    pub fn card(&self) -> &C {
        &self.card
    }

    pub fn card_mut(&mut self) -> &mut C {
        &mut self.card
    }
}

impl<C: SmartCard> CardTransport for InProcess<C> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.card.process_apdu(command))
    }

    fn reset(&mut self, kind: ResetKind) -> Result<Vec<u8>, TransportError> {
        self.atr = match kind {
            ResetKind::Warm => self.card.reset(),
            ResetKind::Cold => {
                self.card.power_off();
                self.card.power_on()
            }
        };
        Ok(self.atr.clone())
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ChainAssembler, ResponseChunker, StatusWord};

    /// Echoes the data of any command, chaining both ways, counting power.
    #[derive(Default, Debug)]
    struct Echo {
        powered: bool,
        resets: usize,
        chain: ChainAssembler,
        out: ResponseChunker,
    }

    impl SmartCard for Echo {
        fn power_on(&mut self) -> Vec<u8> {
            self.powered = true;
            self.atr()
        }
        fn power_off(&mut self) {
            self.powered = false;
        }
        fn reset(&mut self) -> Vec<u8> {
            self.resets += 1;
            self.atr()
        }
        fn atr(&self) -> Vec<u8> {
            vec![0x3B, 0x00]
        }
        fn process_apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
            let cmd = match CommandApdu::parse(apdu) {
                Ok(c) => c,
                Err(e) => return e.status_word().to_bytes().to_vec(),
            };
            if cmd.ins() == crate::codec::Instruction::GetResponse {
                return self.out.get_response(cmd.ne().unwrap_or(256)).to_bytes();
            }
            match self.chain.push(cmd) {
                Err(e) => e.status_word().to_bytes().to_vec(),
                Ok(None) => StatusWord::Success.to_bytes().to_vec(),
                Ok(Some(cmd)) => {
                    let ne = cmd.ne();
                    self.out
                        .start(ResponseApdu::success(cmd.into_data()), ne)
                        .to_bytes()
                }
            }
        }
    }

    #[test]
    fn exchange_chains_and_collects() {
        let mut t = InProcess::insert(Echo::default());
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let cmd = CommandApdu::new(0, 0xDB, 0x3F, 0xFF)
            .with_data(data.clone())
            .unwrap()
            .with_ne(256)
            .unwrap();
        let r = exchange(&mut t, &cmd, true).unwrap();
        assert_eq!(r, ResponseApdu::success(data));
        assert_eq!(t.reset(ResetKind::Warm).unwrap(), vec![0x3B, 0x00]);
        assert_eq!(t.card().resets, 1);
        let card = t.remove();
        assert!(!card.powered);
    }
}
