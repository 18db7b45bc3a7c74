//! What an application on the software card sees: the [`Application`] trait
//! and the context a command runs in.

use rand::rngs::StdRng;

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};
use crate::file::Vsc;
use crate::scp03::{Protection, SecurityLevel};

use super::identity::CardIdentity;

/// The card's persistent state: its VSC. Every mutable borrow marks it
/// dirty; the card saves a dirty file-backed VSC before the response leaves.
pub struct CardStore {
    vsc: Vsc,
    dirty: bool,
}

impl CardStore {
    pub(crate) fn new(vsc: Vsc) -> Self {
        CardStore { vsc, dirty: false }
    }

    pub fn vsc(&self) -> &Vsc {
        &self.vsc
    }

    /// The VSC, to change it. The change is persisted after the command.
    pub fn vsc_mut(&mut self) -> &mut Vsc {
        self.dirty = true;
        &mut self.vsc
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn mark_clean(&mut self) {
        self.dirty = false;
    }

    pub(crate) fn replace(&mut self, vsc: Vsc) {
        self.vsc = vsc;
        self.dirty = false;
    }

    pub(crate) fn into_vsc(self) -> Vsc {
        self.vsc
    }
}

/// Card-wide security status: volatile, cleared on reset and power off.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecurityStatus {
    /// The PIN (reference `80`) was verified since the last reset. It is the
    /// card's global PIN: PIV and the file system share it.
    pub pin_verified: bool,
}

/// What a command runs with.
pub struct Ctx<'a> {
    pub store: &'a mut CardStore,
    pub rng: &'a mut StdRng,
    pub identity: &'a CardIdentity,
    pub security: &'a mut SecurityStatus,
    /// How the command arrived: `Secured` when it came through an SCP03
    /// session (the issuer's authority); `None` otherwise.
    pub protection: Protection,
    /// The key version number of the key set the open SCP03 session was
    /// opened with (`None` without a session). The issuer security domain
    /// decrypts PUT KEY with that key set's static Key-DEK.
    pub session_kvn: Option<u8>,
}

impl Ctx<'_> {
    /// Whether the command came through an SCP03 session with a C-MAC: the
    /// issuer's keys authorized it.
    pub fn issuer_authorized(&self) -> bool {
        matches!(self.protection, Protection::Secured(_))
    }

    /// The security level of the SCP03 session the command came through.
    pub fn security_level(&self) -> Option<SecurityLevel> {
        match self.protection {
            Protection::Secured(level) => Some(level),
            Protection::None => None,
        }
    }
}

/// An application on the card. The dispatcher hands it complete commands:
/// chains reassembled, secure messaging removed, GET RESPONSE handled.
/// Responses may be longer than Ne; the dispatcher chains them with 61xx.
/// An error is the status word to answer with.
pub trait Application {
    /// The application's AID (selection matches right-truncated AIDs).
    fn aid(&self) -> &'static [u8];

    /// The application is being selected; returns the FCI or application
    /// property template.
    fn select(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord>;

    /// Processes one command while selected.
    fn process(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord>;

    /// Forgets volatile state: reset, power off, another application
    /// selected.
    fn reset(&mut self);
}
