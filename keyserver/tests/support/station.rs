//! A test station: the client side of `Keyserver.Control` and
//! `Keyserver.Perso` over mutual TLS, relaying scripts to any
//! `CardTransport` (in-process software cards here). Reusable for the
//! end-to-end tests with the real engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protos::bundle::StationBundle;
use protos::pb;
use protos::pb::keyserver_client::KeyserverClient;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};
use vsc::transport::{CardTransport, ResetKind};

/// How long the test station waits for anything before it calls the test
/// hung (a guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A TLS channel to the keyserver with the bundle's identity.
pub async fn channel(bundle: &StationBundle) -> Result<Channel, tonic::transport::Error> {
    channel_with(
        &bundle.keyserver,
        &bundle.server_name,
        &bundle.ca_certificate_pem,
        Some((&bundle.certificate_pem, &bundle.private_key_pem)),
    )
    .await
}

/// A TLS channel with any (or no) client identity.
pub async fn channel_with(
    address: &str,
    server_name: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{address}"))?
        .tls_config(tls)?
        .connect()
        .await
}

#[derive(Default)]
struct ControlState {
    results: HashMap<String, Vec<pb::Result>>,
    job_status: HashMap<String, pb::JobStatus>,
    /// How the control stream ended (Ok: cleanly).
    ended: Option<Result<(), Status>>,
}

pub struct TestStation {
    pub name: String,
    pub welcome: pb::Welcome,
    client: KeyserverClient<Channel>,
    control: mpsc::Sender<pb::StationEvent>,
    state: Arc<Mutex<ControlState>>,
    changed: Arc<Notify>,
}

/// How one card went, as the station saw it.
#[derive(Debug)]
pub struct CardRun {
    pub done: pb::PersoDone,
    pub result: pb::Result,
    /// Scripts received.
    pub round_trips: u32,
}

/// A Perso stream driven by hand (for malformed-message tests).
pub struct RawPerso {
    pub up: mpsc::Sender<pb::PersoUp>,
    pub down: Streaming<pb::PersoDown>,
}

impl RawPerso {
    pub async fn send(&self, msg: pb::perso_up::Msg) {
        // The stream may already be closed by the keyserver: that is what
        // some tests provoke.
        let _ = self.up.send(pb::PersoUp { msg: Some(msg) }).await;
    }

    /// The next message, or how the stream ended.
    pub async fn next(&mut self) -> Result<Option<pb::PersoDown>, Status> {
        tokio::time::timeout(PATIENCE, self.down.message())
            .await
            .unwrap_or_else(|_| panic!("no message from the keyserver within {PATIENCE:?}"))
    }

    /// Reads until the stream ends; returns its end status (Ok if clean)
    /// and the last PersoDone if any.
    pub async fn end(&mut self) -> (Result<(), Status>, Option<pb::PersoDone>) {
        let mut done = None;
        loop {
            match self.next().await {
                Ok(Some(pb::PersoDown {
                    msg: Some(pb::perso_down::Msg::Done(d)),
                })) => done = Some(d),
                Ok(Some(_)) => {}
                Ok(None) => return (Ok(()), done),
                Err(s) => return (Err(s), done),
            }
        }
    }
}

pub fn open_msg(request_id: &str) -> pb::perso_up::Msg {
    pb::perso_up::Msg::Open(pb::PersoOpen {
        request_id: request_id.to_string(),
    })
}

/// Runs a script on a card as a station does: every step in order, stop at
/// the first status word the script did not expect (an empty `expect`
/// list expects none: the script stops after that step, as perso.proto
/// says). A card that fails is reported lost (`card_removed` with
/// `card_lost_reason`).
pub fn run_script(card: &mut (dyn CardTransport + Send), script: &pb::Script) -> pb::Reply {
    let mut reply = pb::Reply::default();
    for (i, step) in script.steps.iter().enumerate() {
        match &step.step {
            Some(pb::step::Step::Apdu(a)) => {
                let response = match card.transmit(&a.command) {
                    Ok(r) => r,
                    Err(e) => {
                        lost(&mut reply, i, &e);
                        return reply;
                    }
                };
                let n = response.len();
                let sw = if n >= 2 {
                    u32::from(u16::from_be_bytes([response[n - 2], response[n - 1]]))
                } else {
                    0
                };
                reply.responses.push(response);
                let expected = a.expect.iter().any(|p| sw & p.mask == p.value & p.mask);
                if !expected {
                    reply.stopped_at = Some(i as u32);
                    return reply;
                }
            }
            Some(pb::step::Step::Reset(r)) => {
                let kind = if r.cold { ResetKind::Cold } else { ResetKind::Warm };
                match card.reset(kind) {
                    Ok(atr) => {
                        reply.responses.push(Vec::new());
                        reply.atrs_after_reset.push(atr);
                    }
                    Err(e) => {
                        lost(&mut reply, i, &e);
                        return reply;
                    }
                }
            }
            None => {
                reply.stopped_at = Some(i as u32);
                return reply;
            }
        }
    }
    reply
}

/// Marks the reply: the card was lost at step `i`.
fn lost(reply: &mut pb::Reply, i: usize, e: &vsc::transport::TransportError) {
    use vsc::transport::TransportError;
    reply.card_removed = true;
    reply.card_lost_reason = match e {
        TransportError::CardRemoved => pb::CardLostReason::Removed,
        TransportError::Timeout(_) => pb::CardLostReason::Timeout,
        _ => pb::CardLostReason::ReaderFailed,
    } as i32;
    reply.card_lost_detail = format!("step {i}: {e}");
}

impl TestStation {
    /// Connects with `bundle`, opens the control stream, says Hello and
    /// waits for the Welcome.
    pub async fn connect(bundle: &StationBundle) -> Result<Self, Status> {
        let channel = channel(bundle)
            .await
            .map_err(|e| Status::unavailable(format!("TLS connection failed: {e:?}")))?;
        Self::over(channel, &bundle.station).await
    }

    /// Opens the control stream over an existing channel.
    pub async fn over(channel: Channel, name: &str) -> Result<Self, Status> {
        let mut client = KeyserverClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::StationEvent {
            event: Some(pb::station_event::Event::Hello(pb::Hello {
                station: name.to_string(),
                readers: vec![pb::ReaderInfo {
                    name: "sim 0".into(),
                    card_present: true,
                    failed: false,
                }],
                software_version: "test-station".into(),
            })),
        })
        .await
        .map_err(|_| Status::internal("control channel closed"))?;
        let mut down = client.control(ReceiverStream::new(rx)).await?.into_inner();
        let first = tokio::time::timeout(PATIENCE, down.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Welcome"))??;
        let welcome = match first {
            Some(pb::KeyserverEvent {
                event: Some(pb::keyserver_event::Event::Welcome(w)),
            }) => w,
            other => return Err(Status::internal(format!("expected a Welcome, got {other:?}"))),
        };
        let state = Arc::new(Mutex::new(ControlState::default()));
        let changed = Arc::new(Notify::new());
        let (st, ch) = (state.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let msg = down.message().await;
                let mut s = st.lock().unwrap();
                match msg {
                    Ok(Some(pb::KeyserverEvent { event: Some(e) })) => match e {
                        pb::keyserver_event::Event::Result(r) => {
                            s.results.entry(r.request_id.clone()).or_default().push(r)
                        }
                        pb::keyserver_event::Event::JobStatus(j) => {
                            s.job_status.insert(j.job.clone(), j);
                        }
                        pb::keyserver_event::Event::Welcome(_) => {}
                    },
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        s.ended = Some(Ok(()));
                        drop(s);
                        ch.notify_waiters();
                        return;
                    }
                    Err(status) => {
                        s.ended = Some(Err(status));
                        drop(s);
                        ch.notify_waiters();
                        return;
                    }
                }
                drop(s);
                ch.notify_waiters();
            }
        });
        Ok(TestStation {
            name: name.to_string(),
            welcome,
            client,
            control: tx,
            state,
            changed,
        })
    }

    /// Sends a PersoRequest on the control stream.
    pub async fn request(&self, request_id: &str, job: &str) {
        self.request_atr(request_id, job, vec![0x3B, 0x88, 0x80, 0x01])
            .await
    }

    /// Sends a PersoRequest with the card's own ATR.
    pub async fn request_atr(&self, request_id: &str, job: &str, atr: Vec<u8>) {
        self.control
            .send(pb::StationEvent {
                event: Some(pb::station_event::Event::PersoRequest(pb::PersoRequest {
                    request_id: request_id.to_string(),
                    reader: "sim 0".into(),
                    protocol: 2,
                    atr,
                    job: job.to_string(),
                    resume: false,
                })),
            })
            .await
            .expect("the control stream is closed");
    }

    /// Sends any control event.
    pub async fn send_control(&self, event: pb::station_event::Event) {
        let _ = self.control.send(pb::StationEvent { event: Some(event) }).await;
    }

    /// Opens a Perso stream without sending anything yet.
    pub async fn raw_perso(&self) -> Result<RawPerso, Status> {
        let (tx, rx) = mpsc::channel(16);
        let down = self
            .client
            .clone()
            .perso(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(RawPerso { up: tx, down })
    }

    /// Opens the card's Perso stream and relays every script to `card`
    /// until PersoDone. Returns the PersoDone and the scripts received.
    pub async fn personalize(
        &self,
        request_id: &str,
        card: &mut (dyn CardTransport + Send),
    ) -> Result<(pb::PersoDone, u32), Status> {
        self.personalize_with(request_id, card, |_, _| {}).await
    }

    /// [`Self::personalize`], with `tamper(round trip, reply)` applied to
    /// each reply before it goes up (a faulty or malicious station).
    pub async fn personalize_with(
        &self,
        request_id: &str,
        card: &mut (dyn CardTransport + Send),
        mut tamper: impl FnMut(u32, &mut pb::Reply) + Send,
    ) -> Result<(pb::PersoDone, u32), Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(pb::PersoUp {
            msg: Some(open_msg(request_id)),
        })
        .await
        .map_err(|_| Status::internal("perso channel closed"))?;
        let mut down = self
            .client
            .clone()
            .perso(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut scripts = 0;
        loop {
            let msg = tokio::time::timeout(PATIENCE, down.message())
                .await
                .map_err(|_| Status::deadline_exceeded("the keyserver went silent"))??;
            match msg {
                Some(pb::PersoDown {
                    msg: Some(pb::perso_down::Msg::Script(script)),
                }) => {
                    scripts += 1;
                    assert_eq!(script.round_trip, scripts, "round trips are numbered 1, 2, …");
                    let mut reply = run_script(card, &script);
                    tamper(scripts, &mut reply);
                    tx.send(pb::PersoUp {
                        msg: Some(pb::perso_up::Msg::Reply(reply)),
                    })
                    .await
                    .map_err(|_| Status::internal("perso channel closed"))?;
                }
                Some(pb::PersoDown {
                    msg: Some(pb::perso_down::Msg::Done(done)),
                }) => return Ok((done, scripts)),
                Some(_) => return Err(Status::internal("an empty PersoDown")),
                None => return Err(Status::internal("the Perso stream ended without PersoDone")),
            }
        }
    }

    /// One card from request to Result.
    pub async fn issue(
        &self,
        request_id: &str,
        job: &str,
        card: &mut (dyn CardTransport + Send),
    ) -> Result<CardRun, Status> {
        self.request(request_id, job).await;
        let (done, round_trips) = self.personalize(request_id, card).await?;
        let result = self.result(request_id).await;
        Ok(CardRun {
            done,
            result,
            round_trips,
        })
    }

    /// [`Self::issue`] with a tampering station (see
    /// [`Self::personalize_with`]).
    pub async fn issue_with(
        &self,
        request_id: &str,
        job: &str,
        card: &mut (dyn CardTransport + Send),
        tamper: impl FnMut(u32, &mut pb::Reply) + Send,
    ) -> Result<CardRun, Status> {
        self.request_atr(request_id, job, card.atr()).await;
        let (done, round_trips) = self.personalize_with(request_id, card, tamper).await?;
        let result = self.result(request_id).await;
        Ok(CardRun {
            done,
            result,
            round_trips,
        })
    }

    /// Waits for a condition on the control state.
    async fn wait<T>(&self, what: &str, mut f: impl FnMut(&ControlState) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&self.state.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("station {}: waited {PATIENCE:?} for {what}", self.name);
            }
        }
    }

    /// The first Result for `request_id`.
    pub async fn result(&self, request_id: &str) -> pb::Result {
        self.results(request_id, 1).await.remove(0)
    }

    /// Waits until `n` Results arrived for `request_id`; returns them all.
    pub async fn results(&self, request_id: &str, n: usize) -> Vec<pb::Result> {
        self.wait(&format!("{n} result(s) for {request_id}"), |s| {
            s.results.get(request_id).filter(|r| r.len() >= n).cloned()
        })
        .await
    }

    /// Results received so far for `request_id`.
    pub fn results_now(&self, request_id: &str) -> Vec<pb::Result> {
        self.state
            .lock()
            .unwrap()
            .results
            .get(request_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until a pushed job status satisfies `f`.
    pub async fn job_status_where(&self, job: &str, f: impl Fn(&pb::JobStatus) -> bool) -> pb::JobStatus {
        self.wait(&format!("a status of job {job}"), |s| {
            s.job_status.get(job).filter(|j| f(j)).cloned()
        })
        .await
    }

    /// Waits for the control stream to end; its end status.
    pub async fn control_end(&self) -> Result<(), Status> {
        self.wait("the control stream to end", |s| s.ended.clone()).await
    }
}
