//! What travels between keyserver and station, independent of the wire:
//! a script of steps for one card and the station's reply. The service
//! converts these to and from `perso.proto`.

/// A status word pattern: a response's SW matches when `sw & mask == value`.
/// `mask = 0xFFFF` is an exact status word; `0xFF00` matches a family
/// (`61xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwPattern {
    pub value: u16,
    pub mask: u16,
}

impl SwPattern {
    pub const fn exact(sw: u16) -> Self {
        SwPattern {
            value: sw,
            mask: 0xFFFF,
        }
    }

    pub fn matches(&self, sw: u16) -> bool {
        sw & self.mask == self.value & self.mask
    }
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes to the card unchanged; the station stops the script
    /// when the status word matches none of `expect`.
    Apdu {
        command: Vec<u8>,
        expect: Vec<SwPattern>,
        timeout_ms: u32,
    },
    /// Reset the card (the only step a station interprets).
    Reset { cold: bool },
}

/// The steps of one round trip for one card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<Step>,
}

/// The station's answer to a script.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The response to every step run, in order (a reset's entry is empty).
    pub responses: Vec<Vec<u8>>,
    /// The ATR after each reset step, in order.
    pub atrs_after_reset: Vec<Vec<u8>>,
    /// The index of the step whose status word was not expected, if the
    /// script stopped early.
    pub stopped_at: Option<usize>,
    /// The card left the reader during the script.
    pub card_removed: bool,
}
