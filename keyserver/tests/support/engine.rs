//! A fake issuance engine: two round trips of real APDUs against a
//! software card (SELECT PIV + GET DATA CHUID, then SELECT PIV + GET DATA
//! discovery), no keys. Records whose `surname` names a behaviour make it
//! misbehave:
//!
//! - `FAIL-START`: `start` ends the card at once (void);
//! - `VOID-RT2`: the card is void after round trip 2;
//! - `PANIC`: the engine panics on the first reply;
//! - `THREE`: a third round trip with a warm reset step.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use keyserver::ports::{
    CardEngine, CardOutcome, CardRequest, CardSession, FieldError, Finished, IssuedSecrets, Next,
};
use keyserver::record::Record;
use keyserver::script::{Reply, Script, Step, SwPattern};
use vsc::secret::SecretBytes;

pub const PROFILE: &str = "test-piv";
pub const FIELDS: [&str; 3] = ["given_name", "surname", "pin"];

const SELECT_PIV: [u8; 16] = [
    0x00, 0xA4, 0x04, 0x00, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
const GET_CHUID: [u8; 10] = [0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02];
const GET_DISCOVERY: [u8; 8] = [0x00, 0xCB, 0x3F, 0xFF, 0x03, 0x5C, 0x01, 0x7E];

#[derive(Default)]
pub struct FakeEngine {
    serial: AtomicU32,
    /// What happened, in order: `start <request>`, `abort <request>: <reason>`,
    /// `done <request> issued|void`.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl FakeEngine {
    pub fn new() -> Self {
        FakeEngine {
            serial: AtomicU32::new(1000),
            log: Arc::default(),
        }
    }

    pub fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn aborts(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.starts_with("abort"))
            .collect()
    }
}

fn apdu(command: &[u8], expect: &[u16]) -> Step {
    Step::Apdu {
        command: command.to_vec(),
        expect: expect.iter().map(|sw| SwPattern::exact(*sw)).collect(),
        timeout_ms: 0,
    }
}

fn sw(response: &[u8]) -> Option<u16> {
    let n = response.len();
    (n >= 2).then(|| u16::from_be_bytes([response[n - 2], response[n - 1]]))
}

struct FakeSession {
    request: CardRequest,
    round_trip: u32,
    serial: u32,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeSession {
    fn finished(&self, outcome: CardOutcome) -> Finished {
        let issued = matches!(outcome, CardOutcome::Issued);
        self.log.lock().unwrap().push(format!(
            "done {} {}",
            self.request.request_id,
            if issued { "issued" } else { "void" }
        ));
        Finished {
            outcome,
            serial: Some(self.serial),
            round_trips: self.round_trip,
            sealed: None,
            secrets: issued.then(|| IssuedSecrets {
                pin: Some(SecretBytes::from_slice(
                    format!("{:06}", 100_000 + self.serial).as_bytes(),
                )),
                puk: Some(SecretBytes::from_slice(
                    format!("{:08}", 20_000_000 + self.serial).as_bytes(),
                )),
            }),
        }
    }

    fn behaviour(&self) -> &str {
        self.request.record.field("surname").unwrap_or("")
    }
}

impl CardSession for FakeSession {
    fn on_reply(&mut self, reply: Reply) -> Next {
        if self.behaviour() == "PANIC" {
            panic!("fake engine: told to panic");
        }
        if reply.card_removed {
            return Next::Done(self.finished(CardOutcome::Void {
                reason: "the card was removed".into(),
            }));
        }
        if reply.stopped_at.is_some() || reply.responses.is_empty() {
            return Next::Done(self.finished(CardOutcome::Void {
                reason: format!("round trip {}: the card refused a command", self.round_trip),
            }));
        }
        let selected = reply.responses.iter().find(|r| !r.is_empty()).and_then(|r| sw(r)) == Some(0x9000);
        if !selected {
            return Next::Done(self.finished(CardOutcome::Void {
                reason: "SELECT PIV failed".into(),
            }));
        }
        match self.round_trip {
            1 => {
                self.round_trip = 2;
                Next::Script(Script {
                    steps: vec![
                        apdu(&SELECT_PIV, &[0x9000]),
                        apdu(&GET_DISCOVERY, &[0x9000, 0x6A82]),
                    ],
                })
            }
            2 if self.behaviour() == "VOID-RT2" => Next::Done(self.finished(CardOutcome::Void {
                reason: "fake: told to void the card".into(),
            })),
            2 if self.behaviour() == "THREE" => {
                self.round_trip = 3;
                Next::Script(Script {
                    steps: vec![Step::Reset { cold: false }, apdu(&SELECT_PIV, &[0x9000])],
                })
            }
            _ => Next::Done(self.finished(CardOutcome::Issued)),
        }
    }

    fn abort(&mut self, reason: &str) -> Finished {
        self.log
            .lock()
            .unwrap()
            .push(format!("abort {}: {reason}", self.request.request_id));
        self.finished(CardOutcome::Void {
            reason: reason.to_string(),
        })
    }
}

impl CardEngine for FakeEngine {
    fn profiles(&self) -> Vec<String> {
        vec![PROFILE.to_string()]
    }

    fn profile_fields(&self, profile: &str) -> Option<Vec<String>> {
        (profile == PROFILE).then(|| FIELDS.iter().map(|f| f.to_string()).collect())
    }

    fn check_record(&self, _profile: &str, record: &Record) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if record.field("given_name").is_none() {
            errors.push(FieldError {
                field: "given_name".into(),
                problem: "is required".into(),
            });
        }
        match record.field("pin") {
            Some(p) if (6..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {}
            Some(_) => errors.push(FieldError {
                field: "pin".into(),
                problem: "must be 6 to 8 digits".into(),
            }),
            None => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn start(&self, request: CardRequest) -> Result<(Box<dyn CardSession>, Script), Finished> {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", request.request_id));
        let session = FakeSession {
            serial: self.serial.fetch_add(1, Ordering::SeqCst),
            request,
            round_trip: 1,
            log: self.log.clone(),
        };
        if session.behaviour() == "FAIL-START" {
            let mut s = session;
            return Err(s.abort("fake: cannot start this card"));
        }
        Ok((
            Box::new(session),
            Script {
                steps: vec![apdu(&SELECT_PIV, &[0x9000]), apdu(&GET_CHUID, &[0x9000, 0x6A82])],
            },
        ))
    }
}
