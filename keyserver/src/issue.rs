//! One card: identify it, diversify its keys, build and seal its master VSC,
//! compile its SCP03 script, check the station's replies.
//!
//! [`Engine`] implements [`CardEngine`]; the service runs it on a blocking
//! thread, one [`CardSession`] per card, at most three round trips per
//! card whatever the script's length.
//!
//! # Round trip 1 (in clear)
//!
//! | step | command | expect |
//! |---|---|---|
//! | 1 | SELECT ISD `00 A4 04 00 08 A000000151000000 00` | `9000` |
//! | 2 | GET DATA CPLC `80 CA 9F 7F 00` | `9000` |
//! | 3 | INITIALIZE UPDATE `80 50 <transport KVN> 00 08 <host challenge> 00` | `9000` |
//!
//! On the reply the engine reads the chip serial from the CPLC, checks that
//! the key diversification data of INITIALIZE UPDATE is the CPLC's, that
//! the card used the stock's transport KVN, and the card cryptogram (a
//! wrong one voids the card: wrong stock, or a forged card); derives the
//! card's own SCP03 keys ([`IssuerKeys::card_keys`]) and management key;
//! generates the escrowed key pairs (pairwise-checked) and their
//! certificates; compiles the personalization as ONE list of plain
//! commands; builds the master VSC by running that list against a software
//! card made from a blank with this chip's identity (its own SCP03 session
//! with the transport keys, every command must answer `9000`); encrypts it
//! under the archive KEK and **seals it** ([`Escrow::seal`]). Only then is
//! the list wrapped in the card's session and round trip 2 returned: no
//! key leaves before its escrow copy is durable. If sealing fails the card
//! is void.
//!
//! # Round trip 2 (SCP03 level 33: C-DEC, C-MAC, R-MAC, R-ENC)
//!
//! | commands | expect |
//! |---|---|
//! | EXTERNAL AUTHENTICATE `84 82 33 00 10 <host cryptogram> <C-MAC>` | bare `9000` |
//! | SELECT ISD, GET DATA CPLC: round trip 1's clear reads again; the answers must be identical | `9000` |
//! | per DF: SELECT MF (`00 A4 00 0C 3F00`), CREATE FILE DF; per EF: CREATE FILE EF (area, access rules), UPDATE BINARY (content) | `9000` |
//! | SELECT PIV; SET MANAGEMENT KEY (`00 FF FF FF`, AES-192 `0A`, the diversified key) | `9000` |
//! | per escrowed slot: IMPORT ASYMMETRIC KEY (`00 FE alg slot`), PUT DATA certificate | `9000` |
//! | PUT DATA CHUID (fresh GUID), Discovery, Printed Information, Key History (retired slots) | `9000` |
//! | CHANGE REFERENCE DATA PIN (`00 24 00 80`), PUK (`00 24 00 81`), from 123456 / 12345678 | `9000` |
//! | per card-generated slot: GENERATE (`00 47 00 slot AC{80 alg}`), card only | `9000` + public key |
//! | without card-generated keys: SELECT ISD; PUT KEY (card key set, keys under the transport Key-DEK; answer = KVN ‖ KCVs); SET STATUS SECURED `80 F0 80 0F` | `9000` |
//!
//! Every wrapped command carries a Le (`00`, or extended where the command
//! or its answer needs it: RSA GENERATE, long certificates, RSA IMPORT), so
//! answers come back whole through a transparent station.
//!
//! # Round trip 3 (only with card-generated keys, same session)
//!
//! PUT DATA of their certificates (issued now from the public keys the card
//! returned), SELECT ISD, PUT KEY, SET STATUS SECURED.
//!
//! # Replies
//!
//! Every response's status word is checked and every R-MAC verified with
//! the command's context; a missing, extra or garbled response, a stop, a
//! removed card, a flipped bit anywhere voids the card: the reason names
//! the round trip, the step and what failed (never a value), the session
//! keys are dropped, the outcome is recorded ([`Escrow::record`] once
//! sealed) and audited (`card.issue`). Success records `issued`.

mod compile;
mod keys;
mod master;
mod session;
pub mod testing;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore;

use crate::ports::{
    AuditError, AuditEvent, AuditOutcome, AuditSink, CardEngine, CardOutcome, CardRequest, CardSession,
    Escrow, FieldError, Finished, IssuerKeys, RsaKeySource,
};
use crate::profile::{default_policy, slot_purpose, LoadError, Profile};
use crate::record::Record;
use crate::script::Script;

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("loading the issuance profiles")]
    Profiles(#[from] LoadError),
    #[error("two profiles have the id {0:?}")]
    DuplicateProfile(String),
    #[error("recording the escrow override of profile {profile}, slot {slot:02X}, in the audit log")]
    Audit {
        profile: String,
        slot: u8,
        #[source]
        source: AuditError,
    },
}

/// Where the engine's time goes, summed over all cards (nanoseconds).
#[derive(Debug, Default)]
pub(crate) struct Timings {
    pub identify: AtomicU64,
    pub keys: AtomicU64,
    pub certificates: AtomicU64,
    pub compile: AtomicU64,
    pub master: AtomicU64,
    pub encode: AtomicU64,
    pub seal: AtomicU64,
    pub wrap: AtomicU64,
    pub check: AtomicU64,
    pub finish: AtomicU64,
}

impl Timings {
    pub(crate) fn add(counter: &AtomicU64, since: std::time::Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(ns, Ordering::Relaxed);
    }
}

/// A snapshot of [`Engine::timings`]: CPU time per phase, summed over cards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimingReport {
    pub phases: Vec<(&'static str, Duration)>,
}

impl TimingReport {
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

pub(crate) struct Inner {
    pub profiles: BTreeMap<String, Arc<Profile>>,
    pub keys: Arc<dyn IssuerKeys>,
    pub escrow: Arc<dyn Escrow>,
    pub audit: Arc<dyn AuditSink>,
    pub rsa: Arc<dyn RsaKeySource>,
    pub timings: Timings,
}

impl Inner {
    pub(crate) fn audit(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.audit.record(event)
    }
}

/// The issuance engine: profiles and the parts issuance needs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("profiles", &self.inner.profiles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The audit detail of an escrow override.
pub(crate) fn override_detail(profile: &Profile, slot: &crate::profile::SlotSpec) -> String {
    format!(
        "profile {} slot {:02X} ({}, {}): {} instead of the default {}",
        profile.id,
        slot.slot,
        slot_purpose(slot.slot),
        slot.algorithm.name(),
        slot.policy.name(),
        default_policy(slot.slot).name()
    )
}

impl Engine {
    /// An engine for `profiles`. Every escrow override the profiles make is
    /// recorded in the audit log (`profile.escrow-override`) now.
    pub fn new(
        profiles: Vec<Profile>,
        keys: Arc<dyn IssuerKeys>,
        escrow: Arc<dyn Escrow>,
        audit: Arc<dyn AuditSink>,
        rsa: Arc<dyn RsaKeySource>,
    ) -> Result<Engine, IssueError> {
        let mut map = BTreeMap::new();
        for p in profiles {
            if map.contains_key(&p.id) {
                return Err(IssueError::DuplicateProfile(p.id));
            }
            for slot in p.escrow_overrides() {
                audit
                    .record(AuditEvent {
                        actor: "keyserver".into(),
                        action: "profile.escrow-override".into(),
                        subject: format!("profile {}", p.id),
                        outcome: AuditOutcome::Ok,
                        detail: format!("loaded: {}", override_detail(&p, slot)),
                    })
                    .map_err(|source| IssueError::Audit {
                        profile: p.id.clone(),
                        slot: slot.slot,
                        source,
                    })?;
            }
            map.insert(p.id.clone(), Arc::new(p));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                profiles: map,
                keys,
                escrow,
                audit,
                rsa,
                timings: Timings::default(),
            }),
        })
    }

    /// An engine for every profile in `dir` (`*.toml`).
    pub fn from_dir(
        dir: &Path,
        keys: Arc<dyn IssuerKeys>,
        escrow: Arc<dyn Escrow>,
        audit: Arc<dyn AuditSink>,
        rsa: Arc<dyn RsaKeySource>,
    ) -> Result<Engine, IssueError> {
        Engine::new(Profile::load_dir(dir)?, keys, escrow, audit, rsa)
    }

    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.inner.profiles.get(id).map(|p| p.as_ref())
    }

    /// CPU time per phase so far, summed over all cards.
    pub fn timings(&self) -> TimingReport {
        let t = &self.inner.timings;
        let d = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        TimingReport {
            phases: vec![
                ("identify + open SCP03", d(&t.identify)),
                ("key pairs (generate, pairwise check)", d(&t.keys)),
                ("certificates", d(&t.certificates)),
                ("compile", d(&t.compile)),
                ("master VSC (software card)", d(&t.master)),
                ("master VSC encode (encrypt)", d(&t.encode)),
                ("seal (escrow)", d(&t.seal)),
                ("wrap (SCP03)", d(&t.wrap)),
                ("check replies", d(&t.check)),
                ("record outcome + audit", d(&t.finish)),
            ],
        }
    }

    /// Ends a card before round trip 1: audited, nothing sealed.
    fn refuse(&self, request: &CardRequest, reason: String) -> Finished {
        let audited = self.inner.audit(AuditEvent {
            actor: request.station.clone(),
            action: "card.issue".into(),
            subject: format!("request {}", request.request_id),
            outcome: AuditOutcome::Failed,
            detail: format!("{}: {reason}", session::request_detail(request, 0)),
        });
        if let Err(e) = audited {
            tracing::error!(request = %request.request_id, "card refused, and {e}");
        }
        Finished {
            outcome: CardOutcome::Void { reason },
            serial: None,
            round_trips: 0,
            sealed: None,
            secrets: None,
        }
    }
}

impl CardEngine for Engine {
    fn profiles(&self) -> Vec<String> {
        self.inner.profiles.keys().cloned().collect()
    }

    fn profile_fields(&self, profile: &str) -> Option<Vec<String>> {
        self.inner.profiles.get(profile).map(|p| p.field_names())
    }

    fn check_record(&self, profile: &str, record: &Record) -> Result<(), Vec<FieldError>> {
        match self.inner.profiles.get(profile) {
            Some(p) => p.check_record(record),
            None => Err(vec![FieldError {
                field: "profile".into(),
                problem: format!("no profile {profile:?} (known: {})", self.profiles().join(", ")),
            }]),
        }
    }

    fn start(&self, request: CardRequest) -> Result<(Box<dyn CardSession>, Script), Finished> {
        let Some(profile) = self.inner.profiles.get(&request.profile).cloned() else {
            let reason = format!("no profile {:?}", request.profile);
            return Err(self.refuse(&request, reason));
        };
        if let Err(errors) = profile.check_record(&request.record) {
            let list: Vec<String> = errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.problem))
                .collect();
            let reason = format!(
                "record {} does not fit profile {}: {}",
                request.record.id,
                profile.id,
                list.join("; ")
            );
            return Err(self.refuse(&request, reason));
        }
        let transport = match self.inner.keys.transport_keys(&request.stock) {
            Ok(k) => k,
            Err(e) => {
                let reason = format!("the transport keys of stock {:?}: {e}", request.stock);
                return Err(self.refuse(&request, reason));
            }
        };
        let mut host_challenge = [0u8; 8];
        OsRng.fill_bytes(&mut host_challenge);
        let commands = match session::Session::round_trip_1(transport.kvn, host_challenge) {
            Ok(c) => c,
            Err(reason) => return Err(self.refuse(&request, reason)),
        };
        let (session, script) = session::Session::start(
            self.inner.clone(),
            request,
            profile,
            transport,
            host_challenge,
            commands,
        );
        Ok((Box::new(session), script))
    }
}
