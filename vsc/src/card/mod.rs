//! The software card runtime: a VSC that behaves like a smart card.
//!
//! [`SoftCard`] is an ISO 7816-4 card with three applications over one VSC:
//! the PIV card application (SP 800-73-4 card edge), the GlobalPlatform
//! issuer security domain (ISD) and a data-object file system (the seed's
//! public and private areas as EFs). It implements [`SmartCard`], so it runs
//! in process ([`crate::transport::InProcess`]) and behind pcscd
//! ([`crate::vpcd`]) alike.
//!
//! The dispatcher, in order, for every command APDU:
//!
//! 1. parses it (malformed → `6700`) and checks the class byte (`6E00`;
//!    logical channels other than 0 → `6881`);
//! 2. answers GET RESPONSE from the pending response (61xx chaining);
//! 3. reassembles command chains (CLA bit `10`; `6883` when interrupted);
//! 4. runs INITIALIZE UPDATE and EXTERNAL AUTHENTICATE, and removes the
//!    secure messaging of every command while an SCP03 session is open
//!    (a failure answers `6982` and ends the session). The session belongs
//!    to the card, not to one application: SELECT of PIV inside a session
//!    keeps it, so PIV personalization commands can arrive wrapped;
//! 5. handles SELECT (by AID, right-truncated; unknown AID → `6A82`; by FID
//!    for the file system) and hands every other command to the selected
//!    application;
//! 6. wraps the response (R-MAC, R-ENCRYPTION) and returns at most Ne bytes,
//!    the rest through 61xx.
//!
//! A file-backed card saves its VSC atomically after every command that
//! changed it, before the response leaves; if the save fails the card
//! answers `6581` and reloads the last saved state. Volatile state (selected
//! application, PIN status, secure channel, chains) is cleared by reset and
//! power off.

mod app;
pub mod blank;
pub mod fs;
pub mod gp_state;
pub mod identity;
pub mod isd;
pub mod pin;
pub mod piv;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::codec::{ChainAssembler, CommandApdu, Instruction, ResponseApdu, ResponseChunker, StatusWord};
use crate::file::{State, Unlock, Vsc, VscError};
use crate::scp03::{CardOptions, Protection, Scp03Card};
use crate::transport::SmartCard;

pub use app::{Application, CardStore, Ctx, SecurityStatus};
pub use gp_state::LifeCycle;
pub use identity::CardIdentity;

/// The AID of the GlobalPlatform issuer security domain.
pub const ISD_AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

/// Why a VSC cannot run as a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the VSC is disabled; enable it before using it as a card")]
    Disabled,
    #[error("the VSC is not a card: it lacks {0}")]
    NotACard(&'static str),
    #[error("the VSC's SCP03 key sets are unusable: {0}")]
    Keyset(String),
    #[error(transparent)]
    Vsc(#[from] VscError),
}

/// Which application is selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selected {
    Isd,
    Piv,
    Files,
}

/// State lost on reset and power off.
struct Volatile {
    selected: Selected,
    chain: ChainAssembler,
    out: ResponseChunker,
    scp: Scp03Card,
    security: SecurityStatus,
}

impl Volatile {
    fn new() -> Self {
        Volatile {
            // The ISD is the default selected application (as GlobalPlatform
            // cards do after reset).
            selected: Selected::Isd,
            chain: ChainAssembler::new(),
            out: ResponseChunker::new(),
            scp: Scp03Card::new(CardOptions::default()),
            security: SecurityStatus::default(),
        }
    }
}

struct Persistence {
    path: PathBuf,
    unlock: Unlock,
}

/// A software smart card over a VSC.
pub struct SoftCard {
    store: CardStore,
    identity: CardIdentity,
    persistence: Option<Persistence>,
    rng: StdRng,
    vol: Volatile,
    powered: bool,
    writes: u64,
    isd: isd::IssuerSecurityDomain,
    piv: piv::Piv,
    files: fs::FileSystem,
}

impl std::fmt::Debug for SoftCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftCard")
            .field("serial", &self.identity.serial_text())
            .field("file", &self.persistence.as_ref().map(|p| &p.path))
            .field("powered", &self.powered)
            .finish_non_exhaustive()
    }
}

impl SoftCard {
    /// A card over an in-memory VSC (changes are not saved anywhere).
    pub fn new(vsc: Vsc) -> Result<Self, CardError> {
        Self::build(vsc, None, StdRng::from_entropy())
    }

    /// A card over an in-memory VSC with a seeded random generator, for
    /// reproducible tests.
    pub fn with_seed(vsc: Vsc, seed: u64) -> Result<Self, CardError> {
        Self::build(vsc, None, StdRng::seed_from_u64(seed))
    }

    /// A card backed by a VSC file: every change is saved to it atomically.
    pub fn open_file(path: &Path, unlock: Unlock) -> Result<Self, CardError> {
        let vsc = Vsc::load(path, &unlock)?;
        let persistence = Persistence {
            path: path.to_path_buf(),
            unlock,
        };
        Self::build(vsc, Some(persistence), StdRng::from_entropy())
    }

    fn build(vsc: Vsc, persistence: Option<Persistence>, rng: StdRng) -> Result<Self, CardError> {
        if vsc.state() == State::Disabled {
            return Err(CardError::Disabled);
        }
        let identity = CardIdentity::load(&vsc)?;
        // Refuse a VSC whose key sets cannot be used, now rather than at
        // the first INITIALIZE UPDATE.
        gp_state::keysets(&vsc)?;
        Ok(SoftCard {
            store: CardStore::new(vsc),
            identity,
            persistence,
            rng,
            vol: Volatile::new(),
            powered: false,
            writes: 0,
            isd: isd::IssuerSecurityDomain::new(),
            piv: piv::Piv::new(),
            files: fs::FileSystem::new(),
        })
    }

    pub fn identity(&self) -> &CardIdentity {
        &self.identity
    }

    /// The VSC as it stands (saved, for a file-backed card).
    pub fn vsc(&self) -> &Vsc {
        self.store.vsc()
    }

    /// Ends the card and hands back its VSC.
    pub fn into_vsc(self) -> Vsc {
        self.store.into_vsc()
    }

    /// The file behind the card, if any.
    pub fn path(&self) -> Option<&Path> {
        self.persistence.as_ref().map(|p| p.path.as_path())
    }

    /// The GlobalPlatform card life cycle.
    pub fn life_cycle(&self) -> LifeCycle {
        gp_state::life_cycle(self.store.vsc())
    }

    /// How many commands changed the card's persistent state since this
    /// `SoftCard` was made.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Whether an SCP03 session is open (for tests and logs).
    pub fn secure_channel_open(&self) -> bool {
        matches!(self.vol.scp.state(), crate::scp03::CardSessionState::Open(_))
    }

    fn clear_volatile(&mut self) {
        self.vol = Volatile::new();
        self.isd.reset();
        self.piv.reset();
        self.files.reset();
    }

    /// Processes one APDU; the response always ends in a status word.
    fn respond(&mut self, bytes: &[u8]) -> ResponseApdu {
        let response = self.dispatch(bytes);
        if !self.store.is_dirty() {
            return response;
        }
        self.writes += 1;
        match self.persist() {
            Ok(()) => response,
            Err(_) => {
                // The file still holds the last saved state (the save is
                // atomic); go back to it so memory and disk agree.
                self.reload();
                self.vol.out.clear();
                ResponseApdu::status(StatusWord::MemoryFailure)
            }
        }
    }

    fn persist(&mut self) -> Result<(), VscError> {
        if let Some(p) = &self.persistence {
            self.store.vsc().save(&p.path, &mut self.rng)?;
        }
        self.store.mark_clean();
        Ok(())
    }

    fn reload(&mut self) {
        if let Some(p) = &self.persistence {
            if let Ok(vsc) = Vsc::load(&p.path, &p.unlock) {
                self.store.replace(vsc);
                self.clear_volatile();
                return;
            }
        }
        self.store.mark_clean();
    }

    fn dispatch(&mut self, bytes: &[u8]) -> ResponseApdu {
        let received = match CommandApdu::parse(bytes) {
            Ok(c) => c,
            Err(e) => return ResponseApdu::status(e.status_word()),
        };
        if let Err(sw) = check_class(received.cla()) {
            return ResponseApdu::status(sw);
        }
        let interindustry = received.cla() & 0x80 == 0;
        if interindustry && received.ins() == Instruction::GetResponse {
            if (received.p1(), received.p2()) != (0, 0) {
                return ResponseApdu::status(StatusWord::WrongP1P2);
            }
            return self.vol.out.get_response(received.ne().unwrap_or(256));
        }
        self.vol.out.clear();
        let ne = received.ne();
        let cmd = match self.vol.chain.push(received) {
            Err(e) => return ResponseApdu::status(e.status_word()),
            Ok(None) => return ResponseApdu::status(StatusWord::Success),
            Ok(Some(cmd)) => cmd,
        };
        let response = match self.secure_and_route(&cmd) {
            Ok(r) => r,
            Err(sw) => ResponseApdu::status(sw),
        };
        self.vol.out.start(response, ne)
    }

    fn secure_and_route(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        match (cmd.cla(), cmd.ins()) {
            (0x80, Instruction::InitializeUpdate) => return self.initialize_update(cmd),
            (0x84, Instruction::ExternalAuthenticate) => {
                return self.vol.scp.process_external_authenticate(cmd);
            }
            _ => {}
        }
        let (cmd, protection) = self.vol.scp.unwrap_command(cmd)?;
        let response = self.route(&cmd, protection);
        Ok(match protection {
            Protection::Secured(_) => self
                .vol
                .scp
                .wrap_response(response.unwrap_or_else(ResponseApdu::status)),
            Protection::None => response.unwrap_or_else(ResponseApdu::status),
        })
    }

    fn initialize_update(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        // A TERMINATED card opens no secure channel.
        if gp_state::life_cycle(self.store.vsc()) == LifeCycle::Terminated {
            return Err(StatusWord::ConditionsOfUseNotSatisfied);
        }
        // A personalized card refuses the card stock's transport keys.
        let mut sets: Vec<_> = gp_state::usable_keysets(self.store.vsc())
            .map_err(|_| StatusWord::ReferencedDataNotFound)?
            .into_iter()
            .map(|s| s.set)
            .collect();
        let before: Vec<(u8, u32)> = sets.iter().map(|s| (s.kvn, s.sequence_counter)).collect();
        let aid = match self.vol.selected {
            Selected::Piv => self.piv.aid(),
            Selected::Isd | Selected::Files => ISD_AID,
        };
        let kdd = self.identity.kdd();
        let response = self
            .vol
            .scp
            .process_initialize_update(cmd, &mut sets, &kdd, aid, &mut self.rng)?;
        // The counter is saved before the response leaves the card.
        for (set, (kvn, old)) in sets.iter().zip(before) {
            if set.sequence_counter != old {
                gp_state::set_sequence_counter(self.store.vsc_mut(), kvn, set.sequence_counter)
                    .map_err(|_| StatusWord::MemoryFailure)?;
            }
        }
        Ok(response)
    }

    fn route(&mut self, cmd: &CommandApdu, protection: Protection) -> Result<ResponseApdu, StatusWord> {
        let mut ctx = Ctx {
            store: &mut self.store,
            rng: &mut self.rng,
            identity: &self.identity,
            security: &mut self.vol.security,
            protection,
            session_kvn: self.vol.scp.session_kvn(),
        };
        if cmd.ins() == Instruction::Select && cmd.cla() & 0x80 == 0 {
            return select(
                cmd,
                &mut self.vol.selected,
                &mut ctx,
                &mut self.isd,
                &mut self.piv,
                &mut self.files,
            );
        }
        match self.vol.selected {
            Selected::Isd => self.isd.process(&mut ctx, cmd),
            Selected::Piv => self.piv.process(&mut ctx, cmd),
            Selected::Files => self.files.process(&mut ctx, cmd),
        }
    }
}

/// SELECT: by AID among the applications (right-truncated match), or by
/// FID / path for the file system.
fn select(
    cmd: &CommandApdu,
    selected: &mut Selected,
    ctx: &mut Ctx<'_>,
    isd: &mut isd::IssuerSecurityDomain,
    piv: &mut piv::Piv,
    files: &mut fs::FileSystem,
) -> Result<ResponseApdu, StatusWord> {
    let target = match cmd.p1() {
        0x04 => {
            if cmd.p2() & 0x03 != 0 {
                // Next / last / previous occurrence: there is only one of each.
                return Err(StatusWord::FileNotFound);
            }
            let aid = cmd.data();
            if aid.is_empty() || (aid.len() >= 5 && ISD_AID.starts_with(aid)) {
                Selected::Isd
            } else if aid.len() >= 5 && piv.aid().starts_with(aid) {
                // A CARD_LOCKED or TERMINATED card lets only the ISD be
                // selected (Card Specification §5.1.1.4, Table 11-84).
                if matches!(
                    gp_state::life_cycle(ctx.store.vsc()),
                    LifeCycle::CardLocked | LifeCycle::Terminated
                ) {
                    return Err(StatusWord::FunctionNotSupported);
                }
                Selected::Piv
            } else {
                return Err(StatusWord::FileNotFound);
            }
        }
        0x00..=0x03 | 0x08 | 0x09 => Selected::Files,
        _ => return Err(StatusWord::IncorrectP1P2),
    };
    let response = match target {
        Selected::Isd => isd.select(ctx, cmd),
        Selected::Piv => piv.select(ctx, cmd),
        Selected::Files => files.select(ctx, cmd),
    }?;
    if *selected != target {
        match *selected {
            Selected::Isd => isd.reset(),
            Selected::Piv => piv.reset(),
            Selected::Files => files.reset(),
        }
        *selected = target;
    }
    // P2 bit 0C: no response data wanted.
    Ok(if cmd.p2() & 0x0C == 0x0C {
        ResponseApdu::status(response.sw)
    } else {
        response
    })
}

/// Interindustry classes `0x` and `1x` (chaining), proprietary `8x` and
/// `9x`; only logical channel 0.
fn check_class(cla: u8) -> Result<(), StatusWord> {
    match cla & 0xE0 {
        0x00 | 0x80 => {}
        _ => return Err(StatusWord::ClassNotSupported),
    }
    if cla & 0x03 != 0 {
        return Err(StatusWord::LogicalChannelNotSupported);
    }
    Ok(())
}

impl SmartCard for SoftCard {
    fn power_on(&mut self) -> Vec<u8> {
        self.powered = true;
        self.clear_volatile();
        self.identity.atr().to_vec()
    }

    fn power_off(&mut self) {
        self.powered = false;
        self.clear_volatile();
    }

    fn reset(&mut self) -> Vec<u8> {
        self.clear_volatile();
        self.identity.atr().to_vec()
    }

    fn atr(&self) -> Vec<u8> {
        self.identity.atr().to_vec()
    }

    fn process_apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.respond(apdu).to_bytes()
    }
}
