//! One card's issuance between round trips (see the module documentation
//! of [`crate::issue`]).

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use time::OffsetDateTime;
use vsc::card::{CardIdentity, ISD_AID};
use vsc::codec::{CommandApdu, Instruction, ResponseApdu, TlvRef};
use vsc::file::{Protector, Uid};
use vsc::scp03::{
    HostSession, InitializeUpdate, InitializeUpdateResponse, ResponseContext, Scp03Error, SecurityLevel,
};
use vsc::secret::SecretBytes;
use vsc::tag;

use super::compile::{self, CardInputs, Check, EscrowedKey, PersoCommand, SW_OK};
use super::keys::{spki_from_generate, PrivateKey};
use super::{master, override_detail, Inner, Timings};
use crate::ports::{
    AuditEvent, AuditOutcome, CardOutcome, CardRequest, CardSession, CertificateRequest, Finished,
    IssuedSecrets, KeySet, Next, SealReceipt, SealRequest, SubjectAltName,
};
use crate::profile::{CertificateTemplate, KeyPolicy, Profile, SanTemplate, SecretSource, SlotSpec};
use crate::record::Record;
use crate::script::{Reply, Script, Step, SwPattern};

/// The `i` bits an SCP03 S8 card may set: pseudo-random challenge, R-MAC,
/// R-ENCRYPTION. Any other bit is reserved (Amd D Table 5-1).
const I_KNOWN: u8 = 0x70;

/// How a step's response is checked.
enum How {
    /// In clear (round trip 1).
    Plain,
    /// EXTERNAL AUTHENTICATE: a bare status word, no data.
    Bare,
    /// Secured: R-MAC (and R-ENC) with the command's context.
    Wrapped { ctx: ResponseContext, check: Check },
}

/// What a step of a script must answer.
struct Expected {
    label: String,
    expect: SwPattern,
    how: How,
}

enum Stage {
    /// Round trip 1 is out.
    Identify {
        steps: Vec<Expected>,
    },
    /// Round trip 2 is out; `rest` is round trip 3's tail (rotation and
    /// SECURED) when the card generates keys.
    Personalize {
        steps: Vec<Expected>,
        rest: Vec<PersoCommand>,
        now: OffsetDateTime,
    },
    /// Round trip 3 is out.
    Certify {
        steps: Vec<Expected>,
    },
    Done,
}

pub(crate) struct Session {
    inner: Arc<Inner>,
    request: CardRequest,
    profile: Arc<Profile>,
    transport: KeySet,
    host_challenge: [u8; 8],
    round_trips: u32,
    stage: Stage,
    serial: Option<u32>,
    uid: Option<Uid>,
    sealed: Option<SealReceipt>,
    host: Option<HostSession>,
    secrets: Option<IssuedSecrets>,
}

/// The audit detail naming a request.
pub(crate) fn request_detail(r: &CardRequest, round_trips: u32) -> String {
    format!(
        "job {}, record {}, station {}, reader {:?}, request {}, profile {}, round trips {round_trips}",
        r.job, r.record.id, r.station, r.reader, r.request_id, r.profile
    )
}

fn apdu(cla: u8, ins: Instruction, p1: u8, p2: u8, data: &[u8]) -> Result<CommandApdu, String> {
    let c = CommandApdu::new(cla, ins, p1, p2);
    let c = if data.is_empty() {
        Ok(c)
    } else {
        c.with_data(data.to_vec())
    };
    c.and_then(|c| c.with_ne(256))
        .map_err(|e| format!("a round trip 1 command does not encode: {e}"))
}

/// Random decimal digits from the OS CSPRNG.
fn random_digits(n: usize) -> SecretBytes {
    let mut rng = OsRng;
    SecretBytes::new((0..n).map(|_| b'0' + rng.gen_range(0..10u8)).collect())
}

/// A fresh random GUID (RFC 4122 version 4 layout).
fn random_guid() -> [u8; 16] {
    let mut g = [0u8; 16];
    OsRng.fill_bytes(&mut g);
    g[6] = (g[6] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// The 42 CPLC bytes of a GET DATA `9F7F` answer (`9F7F 2A …`, or bare).
fn cplc_of(data: &[u8]) -> Result<&[u8], String> {
    if data.len() == vsc::card::identity::CPLC_LEN {
        return Ok(data);
    }
    let t =
        TlvRef::parse_single(data).map_err(|_| "the CPLC answer is not one BER-TLV object".to_string())?;
    if t.tag != tag!(0x9F7F) {
        return Err("the CPLC answer is not tagged 9F7F".into());
    }
    Ok(t.value)
}

fn scp_reason(e: &Scp03Error) -> String {
    match e {
        Scp03Error::RMacMismatch { .. } => "the R-MAC does not verify".into(),
        Scp03Error::RMacMissing { len, .. } => format!("{len} bytes of data, too few for an R-MAC"),
        Scp03Error::ResponseDecryption { .. } => "the encrypted answer does not decrypt".into(),
        Scp03Error::UnexpectedResponseData { len, .. } => {
            format!("an error status carries {len} bytes it must not")
        }
        Scp03Error::SessionEnded => "the secure channel ended after an earlier failure".into(),
        other => other.to_string(),
    }
}

/// The certificate request for a card key of `slot`.
fn certificate_request(
    t: &CertificateTemplate,
    record: &Record,
    spki: Vec<u8>,
    now: OffsetDateTime,
) -> CertificateRequest {
    let subject = t
        .subject
        .iter()
        .map(|(a, tpl)| (a.clone(), tpl.render(record)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let subject_alt_names = t
        .subject_alt_names
        .iter()
        .filter_map(|s| {
            let (v, make): (String, fn(String) -> SubjectAltName) = match s {
                SanTemplate::Email(t) => (t.render(record), SubjectAltName::Email),
                SanTemplate::Dns(t) => (t.render(record), SubjectAltName::Dns),
                SanTemplate::Uri(t) => (t.render(record), SubjectAltName::Uri),
            };
            (!v.is_empty()).then(|| make(v))
        })
        .collect();
    CertificateRequest {
        subject,
        subject_public_key_info: spki,
        not_before: now,
        not_after: now + time::Duration::days(i64::from(t.validity_days)),
        key_usage: t.key_usage.clone(),
        extended_key_usage: t.extended_key_usage.clone(),
        subject_alt_names,
    }
}

impl Session {
    /// The commands of round trip 1: SELECT ISD, GET DATA CPLC,
    /// INITIALIZE UPDATE.
    pub(crate) fn round_trip_1(
        kvn: u8,
        host_challenge: [u8; 8],
    ) -> Result<[(&'static str, CommandApdu); 3], String> {
        Ok([
            (
                "SELECT ISD",
                apdu(0x00, Instruction::Select, 0x04, 0x00, ISD_AID)?,
            ),
            (
                "GET DATA CPLC",
                apdu(0x80, Instruction::GetData, 0x9F, 0x7F, &[])?,
            ),
            (
                "INITIALIZE UPDATE",
                InitializeUpdate::new(kvn, host_challenge).to_command(),
            ),
        ])
    }

    /// A session that has sent round trip 1 (`commands`).
    pub(crate) fn start(
        inner: Arc<Inner>,
        request: CardRequest,
        profile: Arc<Profile>,
        transport: KeySet,
        host_challenge: [u8; 8],
        commands: [(&'static str, CommandApdu); 3],
    ) -> (Session, Script) {
        let mut script = Script::default();
        let mut steps = Vec::new();
        for (label, c) in commands {
            script.steps.push(Step::Apdu {
                command: c.to_bytes(),
                expect: vec![SW_OK],
                timeout_ms: 5_000,
            });
            steps.push(Expected {
                label: label.into(),
                expect: SW_OK,
                how: How::Plain,
            });
        }
        let session = Session {
            inner,
            request,
            profile,
            transport,
            host_challenge,
            round_trips: 1,
            stage: Stage::Identify { steps },
            serial: None,
            uid: None,
            sealed: None,
            host: None,
            secrets: None,
        };
        (session, script)
    }

    fn subject(&self) -> String {
        match self.serial {
            Some(s) => format!("{s:08}"),
            None => format!("request {}", self.request.request_id),
        }
    }

    fn event(&self, actor: &str, action: &str, outcome: AuditOutcome, detail: String) -> AuditEvent {
        AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            subject: self.subject(),
            outcome,
            detail,
        }
    }

    fn audit(&self, actor: &str, action: &str, outcome: AuditOutcome, detail: String) -> Result<(), String> {
        self.inner
            .audit(self.event(actor, action, outcome, detail))
            .map_err(|e| format!("the audit log: {e}"))
    }

    /// Records events together (one durable wait for all of them).
    fn audit_all(&self, events: Vec<AuditEvent>) -> Result<(), String> {
        self.inner
            .audit
            .record_all(events)
            .map_err(|e| format!("the audit log: {e}"))
    }

    /// Ends the card as void: session keys dropped, outcome recorded once
    /// the master VSC is sealed, audited.
    fn void(&mut self, reason: String) -> Finished {
        if matches!(self.stage, Stage::Done) {
            return self.stale();
        }
        self.stage = Stage::Done;
        if let Some(mut h) = self.host.take() {
            h.end();
        }
        self.secrets = None;
        let mut reason = reason;
        if let (Some(serial), Some(uid)) = (self.serial, self.uid) {
            if self.sealed.is_some() {
                let outcome = CardOutcome::Void {
                    reason: reason.clone(),
                };
                if let Err(e) = self.inner.escrow.record(serial, uid, &outcome) {
                    reason = format!("{reason} (and recording it failed: {e})");
                }
            }
        }
        let detail = format!("{}: {reason}", request_detail(&self.request, self.round_trips));
        if let Err(e) = self.audit(&self.request.station, "card.issue", AuditOutcome::Failed, detail) {
            tracing::error!(serial = ?self.serial, "card void, and {e}");
        }
        Finished {
            outcome: CardOutcome::Void { reason },
            serial: self.serial,
            round_trips: self.round_trips,
            sealed: self.sealed.clone(),
            secrets: None,
        }
    }

    /// What a call after the end gets: nothing is recorded again.
    fn stale(&self) -> Finished {
        Finished {
            outcome: CardOutcome::Void {
                reason: "the card's issuance had already ended".into(),
            },
            serial: self.serial,
            round_trips: self.round_trips,
            sealed: self.sealed.clone(),
            secrets: None,
        }
    }

    /// Checks a reply's shape, every status word and (secured steps) every
    /// R-MAC; returns the plain responses.
    fn check_reply(&mut self, steps: &[Expected], reply: &Reply) -> Result<Vec<ResponseApdu>, String> {
        let rt = self.round_trips;
        let n = steps.len();
        let m = reply.responses.len();
        if reply.card_removed {
            return Err(format!("round trip {rt}: the card was removed"));
        }
        if !reply.atrs_after_reset.is_empty() {
            return Err(format!(
                "round trip {rt}: the station reports {} reset(s), the script had none",
                reply.atrs_after_reset.len()
            ));
        }
        match reply.stopped_at {
            Some(i) if i >= n || m != i + 1 => {
                return Err(format!(
                "round trip {rt}: the station says it stopped at step {} of {n} but returned {m} response(s)",
                i.saturating_add(1)
            ))
            }
            None if m != n => {
                return Err(format!(
                    "round trip {rt}: the station returned {m} response(s) to {n} command(s)"
                ))
            }
            _ => {}
        }
        let mut out = Vec::with_capacity(n);
        for (i, (step, raw)) in steps.iter().zip(&reply.responses).enumerate() {
            let at = || format!("round trip {rt}, step {} of {n} ({})", i + 1, step.label);
            let resp = ResponseApdu::parse(raw)
                .map_err(|_| format!("{}: {} byte(s), no status word", at(), raw.len()))?;
            let sw = u16::from(resp.sw);
            if !step.expect.matches(sw) {
                return Err(format!(
                    "{}: the card answered {sw:04X}, expected {:04X}",
                    at(),
                    step.expect.value
                ));
            }
            let plain = match &step.how {
                How::Plain => resp,
                How::Bare => {
                    if !resp.data.is_empty() {
                        return Err(format!(
                            "{}: {} byte(s) of data where none belong",
                            at(),
                            resp.data.len()
                        ));
                    }
                    resp
                }
                How::Wrapped { ctx, check } => {
                    let host = self
                        .host
                        .as_mut()
                        .ok_or_else(|| format!("{}: no secure channel is open", at()))?;
                    let plain = host
                        .unwrap(ctx, &resp)
                        .map_err(|e| format!("{}: {}", at(), scp_reason(&e)))?;
                    if let Check::Equals(want) = check {
                        if plain.data != *want {
                            return Err(format!("{}: the answer is not the one expected", at()));
                        }
                    }
                    plain
                }
            };
            out.push(plain);
        }
        if let Some(i) = reply.stopped_at {
            return Err(format!(
                "round trip {rt}: the station stopped at step {} although the card answered as the script expects",
                i + 1
            ));
        }
        Ok(out)
    }

    /// Wraps `commands` in the card's session, appending to the script.
    fn wrap(
        &mut self,
        commands: &[PersoCommand],
        script: &mut Script,
        steps: &mut Vec<Expected>,
    ) -> Result<(), String> {
        let host = self.host.as_mut().ok_or("no secure channel is open")?;
        for c in commands {
            let w = host
                .wrap(&c.apdu)
                .map_err(|e| format!("wrapping {}: {e}", c.label))?;
            script.steps.push(Step::Apdu {
                command: w.apdu.to_bytes(),
                expect: vec![c.expect],
                timeout_ms: c.timeout_ms,
            });
            steps.push(Expected {
                label: c.label.clone(),
                expect: c.expect,
                how: How::Wrapped {
                    ctx: w.expect,
                    check: c.check.clone(),
                },
            });
        }
        Ok(())
    }

    /// Round trip 1's reply: identify, open the channel, build and seal the
    /// master VSC, compile round trip 2.
    fn on_identify(&mut self, steps: &[Expected], reply: &Reply) -> Result<Script, String> {
        let t = Instant::now();
        let responses = self.check_reply(steps, reply)?;
        let [fci, cplc, iu] = responses.as_slice() else {
            return Err("round trip 1: three responses expected".into());
        };
        let cplc_bytes = cplc_of(&cplc.data).map_err(|e| format!("round trip 1: {e}"))?;
        let identity = CardIdentity::from_cplc(cplc_bytes, &self.request.atr)
            .map_err(|e| format!("round trip 1: the card's identity: {e}"))?;
        self.serial = Some(identity.serial());
        let iu = InitializeUpdateResponse::from_response(iu).map_err(|e| format!("round trip 1: {e}"))?;
        let kdd = identity.kdd();
        if iu.key_diversification_data != kdd {
            return Err(
                "round trip 1: the key diversification data of INITIALIZE UPDATE is not the CPLC's: \
                 the chip is not the one it claims to be"
                    .into(),
            );
        }
        if iu.kvn != self.transport.kvn {
            return Err(format!(
                "round trip 1: the card answered with key set {:02X}, not the stock's transport set {:02X}",
                iu.kvn, self.transport.kvn
            ));
        }
        if iu.i_param & !I_KNOWN != 0 {
            return Err(format!(
                "round trip 1: INITIALIZE UPDATE announces reserved options (i = {:02X})",
                iu.i_param
            ));
        }
        let (external_authenticate, host) = HostSession::open(
            &self.transport.keys,
            self.host_challenge,
            &iu,
            SecurityLevel::All,
            Some(ISD_AID),
        )
        .map_err(|e| match e {
            Scp03Error::CardCryptogramMismatch | Scp03Error::CardChallengeMismatch(_) => format!(
                "round trip 1: the card cryptogram is wrong: the card does not hold the transport keys of \
                 stock {:?} (wrong stock) or is forged",
                self.request.stock
            ),
            other => format!("round trip 1: opening the secure channel: {other}"),
        })?;
        self.host = Some(host);
        Timings::add(&self.inner.timings.identify, t);
        self.prepare(identity, &fci.data, &cplc.data, external_authenticate)
    }

    fn prepare(
        &mut self,
        identity: CardIdentity,
        fci: &[u8],
        cplc_response: &[u8],
        external_authenticate: CommandApdu,
    ) -> Result<Script, String> {
        let inner = self.inner.clone();
        let profile = self.profile.clone();
        let record = &self.request.record;
        let serial = identity.serial();
        // The escrow overrides applied and the keys generated are audited
        // together before anything else happens to the card (one durable
        // wait instead of one per event), whatever the outcome.
        let mut events: Vec<AuditEvent> = profile
            .escrow_overrides()
            .map(|slot| {
                self.event(
                    "keyserver",
                    "profile.escrow-override",
                    AuditOutcome::Ok,
                    format!("applied to card {serial:08}: {}", override_detail(&profile, slot)),
                )
            })
            .collect();
        let prepared = self.keys_and_certificates(&profile, &mut events);
        let audited = self.audit_all(events);
        let (escrowed, now) = prepared?;
        audited?;
        let card_keys = inner
            .keys
            .card_keys(&identity.kdd())
            .map_err(|e| format!("deriving the card's SCP03 keys: {e}"))?;
        let management_key = inner
            .keys
            .management_key(serial)
            .map_err(|e| format!("deriving the card's management key: {e}"))?;
        let secret = |s: &SecretSource| match s {
            SecretSource::Random { digits } => (random_digits(*digits), true),
            SecretSource::Field(f) => (
                SecretBytes::from_slice(record.field(f).unwrap_or_default().as_bytes()),
                false,
            ),
        };
        let (pin, pin_random) = secret(&profile.pin);
        let (puk, puk_random) = secret(&profile.puk);

        // One list of plain commands, for the master VSC and the card.
        let t = Instant::now();
        let perso = compile::compile(&CardInputs {
            profile: &profile,
            record,
            fci,
            cplc_response,
            escrowed: &escrowed,
            pin: &pin,
            puk: &puk,
            management_key: &management_key,
            guid: random_guid(),
            now,
            transport: &self.transport,
            card_keys: &card_keys,
        })
        .map_err(|e| format!("compiling the personalization: {e}"))?;
        drop(escrowed);
        Timings::add(&inner.timings.compile, t);

        let t = Instant::now();
        let (kek_id, kek) = inner.keys.archive_kek();
        let protector = Protector::Kek {
            key_id: kek_id.to_string(),
            key: kek.clone(),
        };
        let master = master::build(&identity, &self.transport, &profile.id, &protector, &perso)
            .map_err(|e| format!("building the master VSC: {e}"))?;
        Timings::add(&inner.timings.master, t);
        let t = Instant::now();
        let bytes = master
            .to_bytes(&mut OsRng)
            .map_err(|e| format!("encoding the master VSC: {e}"))?;
        let uid = master.uid();
        drop(master);
        Timings::add(&inner.timings.encode, t);

        // The escrow rule: nothing of the card leaves before this is durable.
        let t = Instant::now();
        let receipt = inner
            .escrow
            .seal(&SealRequest {
                serial,
                uid,
                job: &self.request.job,
                record_id: &record.id,
                bytes: &bytes,
            })
            .map_err(|e| format!("sealing the master VSC: {e}"))?;
        Timings::add(&inner.timings.seal, t);
        self.uid = Some(uid);
        self.sealed = Some(receipt);

        // Round trip 2: EXTERNAL AUTHENTICATE, then everything wrapped.
        let t = Instant::now();
        let mut script = Script::default();
        let mut steps = vec![Expected {
            label: "EXTERNAL AUTHENTICATE".into(),
            expect: SW_OK,
            how: How::Bare,
        }];
        script.steps.push(Step::Apdu {
            command: external_authenticate.to_bytes(),
            expect: vec![SW_OK],
            timeout_ms: 5_000,
        });
        let compile::Personalization {
            main,
            generate,
            finish,
            master_keys,
        } = perso;
        drop(master_keys);
        self.wrap(&main, &mut script, &mut steps)?;
        let rest = if generate.is_empty() {
            self.wrap(&finish, &mut script, &mut steps)?;
            Vec::new()
        } else {
            self.wrap(&generate, &mut script, &mut steps)?;
            finish
        };
        Timings::add(&inner.timings.wrap, t);
        self.secrets = Some(IssuedSecrets {
            pin: pin_random.then_some(pin),
            puk: puk_random.then_some(puk),
        });
        self.stage = Stage::Personalize { steps, rest, now };
        self.round_trips += 1;
        Ok(script)
    }

    /// The escrowed key pairs and their certificates; an audit event for
    /// each key generated goes to `events`.
    fn keys_and_certificates(
        &self,
        profile: &Profile,
        events: &mut Vec<AuditEvent>,
    ) -> Result<(Vec<EscrowedKey>, OffsetDateTime), String> {
        let inner = &self.inner;
        let record = &self.request.record;
        let now = OffsetDateTime::now_utc();
        let mut escrowed = Vec::new();
        for slot in profile.slots.iter().filter(|s| s.policy == KeyPolicy::Escrow) {
            let t = Instant::now();
            let (key, spki) = PrivateKey::generate(slot.algorithm, inner.rsa.as_ref(), &mut OsRng)
                .map_err(|e| format!("generating the key of slot {:02X}: {e}", slot.slot))?;
            Timings::add(&inner.timings.keys, t);
            events.push(self.key_event(slot));
            let t = Instant::now();
            let request = certificate_request(&slot.certificate, record, spki, now);
            let certificate = inner
                .keys
                .issuer()
                .issue(&request)
                .map_err(|e| format!("certifying the key of slot {:02X}: {e}", slot.slot))?;
            Timings::add(&inner.timings.certificates, t);
            escrowed.push(EscrowedKey {
                slot: slot.slot,
                algorithm: slot.algorithm,
                key,
                certificate,
            });
        }
        Ok((escrowed, now))
    }

    fn audit_key(&self, slot: &SlotSpec) -> Result<(), String> {
        self.inner
            .audit(self.key_event(slot))
            .map_err(|e| format!("the audit log: {e}"))
    }

    fn key_event(&self, slot: &SlotSpec) -> AuditEvent {
        self.event(
            "keyserver",
            "key.generate",
            AuditOutcome::Ok,
            format!(
                "slot {:02X} ({}), {}, policy {}{}, {}",
                slot.slot,
                crate::profile::slot_purpose(slot.slot),
                slot.algorithm.name(),
                slot.policy.name(),
                if slot.policy_overridden { " (override)" } else { "" },
                match slot.policy {
                    KeyPolicy::Escrow => "generated on the master VSC",
                    KeyPolicy::Card => "generated on the card",
                }
            ),
        )
    }

    /// Round trip 2's reply: done, or round trip 3 with the certificates
    /// of the keys the card generated.
    fn on_personalize(
        &mut self,
        steps: &[Expected],
        rest: Vec<PersoCommand>,
        now: OffsetDateTime,
        reply: &Reply,
    ) -> Result<Option<Script>, String> {
        let t = Instant::now();
        let responses = self.check_reply(steps, reply)?;
        Timings::add(&self.inner.timings.check, t);
        if rest.is_empty() {
            return Ok(None);
        }
        let profile = self.profile.clone();
        let mut commands = Vec::new();
        for (step, resp) in steps.iter().zip(&responses) {
            let How::Wrapped {
                check: Check::PublicKey { slot, algorithm },
                ..
            } = &step.how
            else {
                continue;
            };
            let spec = profile
                .slots
                .iter()
                .find(|s| s.slot == *slot)
                .ok_or_else(|| format!("slot {slot:02X} is not in the profile"))?;
            let spki = spki_from_generate(&resp.data, *algorithm)
                .map_err(|e| format!("round trip 2, {}: {e}", step.label))?;
            self.audit_key(spec)?;
            let t = Instant::now();
            let request = certificate_request(&spec.certificate, &self.request.record, spki, now);
            let der = self
                .inner
                .keys
                .issuer()
                .issue(&request)
                .map_err(|e| format!("certifying the key of slot {slot:02X}: {e}"))?;
            Timings::add(&self.inner.timings.certificates, t);
            commands.push(compile::put_certificate(*slot, &der)?);
        }
        commands.extend(rest);
        let t = Instant::now();
        let mut script = Script::default();
        let mut steps = Vec::new();
        self.wrap(&commands, &mut script, &mut steps)?;
        Timings::add(&self.inner.timings.wrap, t);
        self.stage = Stage::Certify { steps };
        self.round_trips += 1;
        Ok(Some(script))
    }

    /// Every check passed: record and audit the card as issued.
    fn succeed(&mut self) -> Finished {
        let t = Instant::now();
        if let Some(mut h) = self.host.take() {
            h.end();
        }
        let (Some(serial), Some(uid)) = (self.serial, self.uid) else {
            return self.void("the card was never identified and sealed".into());
        };
        if let Err(e) = self.inner.escrow.record(serial, uid, &CardOutcome::Issued) {
            return self.void(format!(
                "the card is personalized but its outcome could not be recorded: {e}"
            ));
        }
        let detail = request_detail(&self.request, self.round_trips);
        if let Err(e) = self.audit(&self.request.station, "card.issue", AuditOutcome::Ok, detail) {
            return self.void(format!("the card is personalized but {e}"));
        }
        self.stage = Stage::Done;
        Timings::add(&self.inner.timings.finish, t);
        Finished {
            outcome: CardOutcome::Issued,
            serial: self.serial,
            round_trips: self.round_trips,
            sealed: self.sealed.clone(),
            secrets: self.secrets.take(),
        }
    }
}

impl CardSession for Session {
    fn on_reply(&mut self, reply: Reply) -> Next {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Identify { steps } => {
                // `void` needs a live stage to record the outcome.
                self.stage = Stage::Identify { steps: Vec::new() };
                match self.on_identify(&steps, &reply) {
                    Ok(script) => Next::Script(script),
                    Err(reason) => Next::Done(self.void(reason)),
                }
            }
            Stage::Personalize { steps, rest, now } => {
                self.stage = Stage::Certify { steps: Vec::new() };
                match self.on_personalize(&steps, rest, now, &reply) {
                    Ok(Some(script)) => Next::Script(script),
                    Ok(None) => Next::Done(self.succeed()),
                    Err(reason) => Next::Done(self.void(reason)),
                }
            }
            Stage::Certify { steps } => {
                self.stage = Stage::Certify { steps: Vec::new() };
                let t = Instant::now();
                let checked = self.check_reply(&steps, &reply);
                Timings::add(&self.inner.timings.check, t);
                match checked {
                    Ok(_) => Next::Done(self.succeed()),
                    Err(reason) => Next::Done(self.void(reason)),
                }
            }
            Stage::Done => Next::Done(self.stale()),
        }
    }

    fn abort(&mut self, reason: &str) -> Finished {
        self.void(format!("aborted: {reason}"))
    }
}

impl Drop for Session {
    /// A session dropped before its end (a bug in the caller) voids the
    /// card, so that the escrow and the audit log still say what happened.
    fn drop(&mut self) {
        if !matches!(self.stage, Stage::Done) {
            let _ = self.void("the issuance session was dropped without an outcome".into());
        }
    }
}
