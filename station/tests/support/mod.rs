//! A fake keyserver for the station's tests: `Keyserver.Control` and
//! `Keyserver.Perso` over mutual TLS on loopback, serving scripted scripts
//! (SELECT ISD + GET DATA CPLC, then SELECT PIV) and recording what the
//! station sent. It runs on a runtime of its own, so a test can kill it
//! (every connection drops) and start it again on the same port, with
//! the same "database".

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use protos::bundle::StationBundle;
use protos::pb;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use zeroize::Zeroizing;

/// How long a test waits for anything before it calls the station hung (a
/// guard against hanging, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const SERVER_NAME: &str = "keyserver.test";
pub const JOB: &str = "people";

pub const SELECT_ISD: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00,
];
pub const GET_CPLC: &[u8] = &[0x80, 0xCA, 0x9F, 0x7F, 0x00];
pub const SELECT_PIV: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];

/// A test CA with a server certificate and station certificates.
pub struct TestCa {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    server_cert: String,
    server_key: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "station test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let issuer = Issuer::new(params, key);
        let mut sp = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "keyserver");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let skey = KeyPair::generate().unwrap();
        let server = sp.signed_by(&skey, &issuer).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            issuer,
            server_cert: server.pem(),
            server_key: skey.serialize_pem(),
        }
    }

    /// A bundle for station `name` pointing at `addr`.
    pub fn bundle(&self, name: &str, addr: SocketAddr) -> StationBundle {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        StationBundle {
            station: name.to_string(),
            keyserver: addr.to_string(),
            server_name: SERVER_NAME.to_string(),
            jobs: vec![JOB.to_string()],
            certificate_pem: cert.pem(),
            private_key_pem: Zeroizing::new(key.serialize_pem()),
            ca_certificate_pem: self.ca_pem.clone(),
        }
    }
}

/// What the fake does with one card (taken in order, one per new
/// reservation; `Normal` when the plan is empty).
#[derive(Debug, Clone)]
pub enum CardPlan {
    /// Two round trips, then OK if every status word was 9000.
    Normal,
    /// After the first reply: wait for `release` (the test kills someone
    /// meanwhile, or releases it).
    HoldAfterFirstReply,
    /// Record the card as issued, then hold before sending the Result and
    /// PersoDone (the station is killed meanwhile).
    HoldBeforeResult,
    /// Hold the first script until `n` cards are open at once.
    Barrier(usize),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub ok: bool,
    pub reason: String,
    pub serial: String,
    pub round_trips: u32,
}

/// The fake's database and what it saw.
#[derive(Default)]
pub struct Db {
    pub allowed_jobs: Vec<String>,
    pub revoked: bool,
    pub send_job_status: bool,
    pub queued: u64,
    pub issued: u64,
    pub voided: u64,
    pub plan: VecDeque<CardPlan>,
    /// request id → its card's plan while in flight.
    pub in_flight: HashMap<String, CardPlan>,
    pub finished: HashMap<String, Recorded>,
    /// request id → the refusal's status.
    pub refused: HashMap<String, (tonic::Code, String)>,
    /// Perso streams to refuse next as a busy keyserver does (too many
    /// cards open for the station): RESOURCE_EXHAUSTED, and a Result with
    /// REFUSAL_STATION_BUSY first; the reservation stands.
    pub busy_opens: u32,
    /// Results with a refusal the fake sent, in order: (request id, refusal).
    pub refusals: Vec<(String, pb::Refusal)>,
    pub requests: Vec<pb::PersoRequest>,
    pub hellos: Vec<pb::Hello>,
    pub replies: Vec<(String, pb::Reply)>,
    pub opens: Vec<String>,
    pub open_now: usize,
    pub held: usize,
    pub reader_events: Vec<pb::ReaderInfo>,
    control: Option<mpsc::Sender<Result<pb::KeyserverEvent, Status>>>,
}

/// The fake keyserver's shared state (outlives a kill).
#[derive(Clone)]
pub struct Fake {
    db: Arc<Mutex<Db>>,
    changed: Arc<Notify>,
    release: Arc<Notify>,
}

impl Fake {
    /// A keyserver with `records` queued for job [`JOB`].
    pub fn new(records: u64) -> Self {
        let db = Db {
            allowed_jobs: vec![JOB.to_string()],
            send_job_status: true,
            queued: records,
            ..Default::default()
        };
        Fake {
            db: Arc::new(Mutex::new(db)),
            changed: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        }
    }

    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap()
    }

    /// Lets every held card go on.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// Waits (blocking, polling) until `f` holds; panics after
    /// [`PATIENCE`].
    pub async fn until(&self, what: &str, f: impl Fn(&Db) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if f(&self.db()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the fake keyserver waited {PATIENCE:?} for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Fake::until`] for tests without a runtime.
    pub fn until_blocking(&self, what: &str, f: impl Fn(&Db) -> bool) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if f(&self.db()) {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("the fake keyserver waited {PATIENCE:?} for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn job_status(db: &Db) -> pb::JobStatus {
        pb::JobStatus {
            job: JOB.to_string(),
            profile: "test".into(),
            total: db.issued + db.queued + db.in_flight.len() as u64 + db.voided,
            issued: db.issued,
            voided: db.voided,
            queued: db.queued,
            in_flight: db.in_flight.len() as u64,
            max_round_trips: 2,
            held: 0,
        }
    }

    fn to_control(&self, event: pb::keyserver_event::Event) {
        let tx = self.db().control.clone();
        if let Some(tx) = tx {
            let _ = tx.try_send(Ok(pb::KeyserverEvent { event: Some(event) }));
        }
    }

    fn push_status(&self) {
        let (send, status) = {
            let db = self.db();
            (db.send_job_status, Self::job_status(&db))
        };
        if send {
            self.to_control(pb::keyserver_event::Event::JobStatus(status));
        }
    }

    fn result_pb(rid: &str, r: &Recorded) -> pb::Result {
        pb::Result {
            request_id: rid.to_string(),
            outcome: if r.ok {
                pb::Outcome::Ok
            } else {
                pb::Outcome::Failed
            } as i32,
            reason: r.reason.clone(),
            card_serial: r.serial.clone(),
            round_trips: r.round_trips,
            refusal: pb::Refusal::None as i32,
        }
    }

    fn refusal_pb(db: &mut Db, rid: &str, refusal: pb::Refusal, reason: String) -> pb::Result {
        db.refusals.push((rid.to_string(), refusal));
        pb::Result {
            request_id: rid.to_string(),
            outcome: pb::Outcome::Failed as i32,
            reason,
            refusal: refusal as i32,
            ..Default::default()
        }
    }

    /// A keyserver restarting voids what was in flight.
    fn void_in_flight(&self) {
        let mut db = self.db();
        let ids: Vec<String> = db.in_flight.keys().cloned().collect();
        for id in ids {
            db.in_flight.remove(&id);
            db.voided += 1;
            db.queued += 1;
            db.finished.insert(
                id,
                Recorded {
                    ok: false,
                    reason: "keyserver restarted".into(),
                    serial: String::new(),
                    round_trips: 0,
                },
            );
        }
    }

    /// Serves on `port` (0: any) on a runtime of its own.
    pub fn start(&self, ca: &TestCa, port: u16) -> Running {
        self.void_in_flight();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&ca.server_cert, &ca.server_key))
            .client_ca_root(Certificate::from_pem(&ca.ca_pem));
        let svc = pb::keyserver_server::KeyserverServer::new(Service { fake: self.clone() });
        let server = Server::builder().tls_config(tls).unwrap().add_service(svc);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = server.serve_with_incoming(TcpIncoming::from(listener)).await;
        });
        Running {
            addr,
            runtime: Some(runtime),
        }
    }
}

/// A serving fake; dropping or [`Running::kill`] drops every connection.
pub struct Running {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Service {
    fake: Fake,
}

fn script(round_trip: u32, commands: &[&[u8]]) -> pb::PersoDown {
    pb::PersoDown {
        msg: Some(pb::perso_down::Msg::Script(pb::Script {
            round_trip,
            steps: commands
                .iter()
                .map(|c| pb::Step {
                    step: Some(pb::step::Step::Apdu(pb::Apdu {
                        command: c.to_vec(),
                        expect: vec![pb::SwPattern {
                            value: 0x9000,
                            mask: 0xFFFF,
                        }],
                        timeout_ms: 0,
                    })),
                })
                .collect(),
        })),
    }
}

fn reply_problem(reply: &pb::Reply, steps: usize) -> Option<String> {
    if reply.card_removed {
        return Some("the card was removed".into());
    }
    if let Some(i) = reply.stopped_at {
        return Some(format!("the station stopped at step {i}"));
    }
    if reply.responses.len() != steps {
        return Some(format!("{} responses to {steps} commands", reply.responses.len()));
    }
    for r in &reply.responses {
        if !r.ends_with(&[0x90, 0x00]) {
            return Some("a status word was not 9000".into());
        }
    }
    None
}

impl Service {
    async fn control_task(
        fake: Fake,
        mut inbound: Streaming<pb::StationEvent>,
        tx: mpsc::Sender<Result<pb::KeyserverEvent, Status>>,
    ) {
        let hello = match inbound.message().await {
            Ok(Some(pb::StationEvent {
                event: Some(pb::station_event::Event::Hello(h)),
            })) => h,
            _ => {
                let _ = tx.send(Err(Status::invalid_argument("Hello first"))).await;
                return;
            }
        };
        let (jobs, status, send_status) = {
            let mut db = fake.db();
            db.hellos.push(hello);
            db.control = Some(tx.clone());
            (db.allowed_jobs.clone(), Fake::job_status(&db), db.send_job_status)
        };
        let welcome = pb::KeyserverEvent {
            event: Some(pb::keyserver_event::Event::Welcome(pb::Welcome {
                keyserver: SERVER_NAME.into(),
                jobs,
            })),
        };
        if tx.send(Ok(welcome)).await.is_err() {
            return;
        }
        if send_status {
            let _ = tx
                .send(Ok(pb::KeyserverEvent {
                    event: Some(pb::keyserver_event::Event::JobStatus(status)),
                }))
                .await;
        }
        while let Ok(Some(msg)) = inbound.message().await {
            match msg.event {
                Some(pb::station_event::Event::PersoRequest(r)) => fake.on_request(r),
                Some(pb::station_event::Event::Reader(r)) => fake.db().reader_events.push(r),
                _ => {}
            }
            fake.changed.notify_waiters();
        }
    }
}

impl Fake {
    fn on_request(&self, r: pb::PersoRequest) {
        let rid = r.request_id.clone();
        let answer = {
            let mut db = self.db();
            db.requests.push(r.clone());
            if let Some(rec) = db.finished.get(&rid) {
                Some(Self::result_pb(&rid, rec))
            } else if db.in_flight.contains_key(&rid) {
                None
            } else if r.resume {
                // Lookup only: never reserve.
                let reason = format!("request {rid} was never reserved");
                db.refused
                    .insert(rid.clone(), (tonic::Code::NotFound, reason.clone()));
                Some(Self::refusal_pb(
                    &mut db,
                    &rid,
                    pb::Refusal::UnknownRequest,
                    reason,
                ))
            } else if !db.allowed_jobs.contains(&r.job) {
                let reason = format!("station may not run job {}", r.job);
                db.refused
                    .insert(rid.clone(), (tonic::Code::PermissionDenied, reason.clone()));
                Some(Self::refusal_pb(
                    &mut db,
                    &rid,
                    pb::Refusal::JobNotAllowed,
                    reason,
                ))
            } else if db.queued == 0 {
                let reason = format!("job {:?} has no queued record left", r.job);
                db.refused
                    .insert(rid.clone(), (tonic::Code::ResourceExhausted, reason.clone()));
                Some(Self::refusal_pb(&mut db, &rid, pb::Refusal::NoRecord, reason))
            } else {
                db.queued -= 1;
                let plan = db.plan.pop_front().unwrap_or(CardPlan::Normal);
                db.in_flight.insert(rid.clone(), plan);
                None
            }
        };
        match answer {
            Some(result) => self.to_control(pb::keyserver_event::Event::Result(result)),
            None => self.push_status(),
        }
    }

    /// Records a card's end; returns its Result.
    fn finish(&self, rid: &str, rec: Recorded) -> pb::Result {
        let mut db = self.db();
        if db.in_flight.remove(rid).is_some() {
            if rec.ok {
                db.issued += 1;
            } else {
                db.voided += 1;
                db.queued += 1;
            }
        }
        db.finished.insert(rid.to_string(), rec.clone());
        Self::result_pb(rid, &rec)
    }

    fn done_msg(rec: &pb::Result) -> pb::PersoDown {
        pb::PersoDown {
            msg: Some(pb::perso_down::Msg::Done(pb::PersoDone {
                outcome: rec.outcome,
                reason: rec.reason.clone(),
            })),
        }
    }

    async fn perso_task(
        self,
        mut inbound: Streaming<pb::PersoUp>,
        tx: mpsc::Sender<Result<pb::PersoDown, Status>>,
    ) {
        let rid = match inbound.message().await {
            Ok(Some(pb::PersoUp {
                msg: Some(pb::perso_up::Msg::Open(o)),
            })) => o.request_id,
            _ => return,
        };
        self.db().opens.push(rid.clone());
        let Some(plan) = self.wait_request(&rid, &tx).await else {
            return;
        };
        let busy = {
            let mut db = self.db();
            if db.busy_opens > 0 {
                db.busy_opens -= 1;
                let reason =
                    "station desk-1: 64 cards are already being personalized (the limit)".to_string();
                Some(Self::refusal_pb(&mut db, &rid, pb::Refusal::StationBusy, reason))
            } else {
                None
            }
        };
        if let Some(result) = busy {
            let message = result.reason.clone();
            self.to_control(pb::keyserver_event::Event::Result(result));
            let _ = tx.send(Err(Status::resource_exhausted(message))).await;
            self.changed.notify_waiters();
            return;
        }
        {
            let mut db = self.db();
            db.open_now += 1;
        }
        let hold_before_result = matches!(plan, CardPlan::HoldBeforeResult);
        let outcome = self.clone().run_card(&rid, plan, &mut inbound, &tx).await;
        self.db().open_now -= 1;
        let rec = match outcome {
            Ok(rec) => rec,
            Err(reason) => Recorded {
                ok: false,
                reason,
                serial: String::new(),
                round_trips: 0,
            },
        };
        let hold_before_result = hold_before_result && rec.ok;
        let result = self.finish(&rid, rec);
        if hold_before_result {
            self.db().held += 1;
            let released = self.release.notified();
            let _ = tokio::time::timeout(PATIENCE, released).await;
        }
        self.to_control(pb::keyserver_event::Event::Result(result.clone()));
        let _ = tx.send(Ok(Self::done_msg(&result))).await;
        self.push_status();
    }

    /// The request a Perso stream serves, waiting a little for its
    /// PersoRequest (sent at the same time); `None` when the stream was
    /// answered (done, refused, unknown).
    async fn wait_request(
        &self,
        rid: &str,
        tx: &mpsc::Sender<Result<pb::PersoDown, Status>>,
    ) -> Option<CardPlan> {
        let rid = rid.to_string();
        // Wait a little for the PersoRequest (sent at the same time).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        enum Found {
            Done(pb::Result),
            Refused(Status),
            Plan(CardPlan),
        }
        loop {
            let notified = self.changed.notified();
            let found = {
                let db = self.db();
                if let Some(rec) = db.finished.get(&rid) {
                    Some(Found::Done(Self::result_pb(&rid, rec)))
                } else if let Some((code, msg)) = db.refused.get(&rid) {
                    Some(Found::Refused(Status::new(*code, msg.clone())))
                } else {
                    db.in_flight.get(&rid).map(|p| Found::Plan(p.clone()))
                }
            };
            match found {
                Some(Found::Done(r)) => {
                    let _ = tx.send(Ok(Self::done_msg(&r))).await;
                    return None;
                }
                Some(Found::Refused(status)) => {
                    let _ = tx.send(Err(status)).await;
                    return None;
                }
                Some(Found::Plan(p)) => return Some(p),
                None => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let _ = tx.send(Err(Status::not_found("no such request"))).await;
                return None;
            }
        }
    }

    async fn next_reply(&self, rid: &str, inbound: &mut Streaming<pb::PersoUp>) -> Result<pb::Reply, String> {
        match inbound.message().await {
            Ok(Some(pb::PersoUp {
                msg: Some(pb::perso_up::Msg::Reply(r)),
            })) => {
                self.db().replies.push((rid.to_string(), r.clone()));
                self.changed.notify_waiters();
                Ok(r)
            }
            Ok(Some(_)) => Err("an unexpected message".into()),
            Ok(None) => Err("the station ended the stream mid-card".into()),
            Err(s) => Err(format!("the stream failed mid-card ({:?})", s.code())),
        }
    }

    async fn run_card(
        self,
        rid: &str,
        plan: CardPlan,
        inbound: &mut Streaming<pb::PersoUp>,
        tx: &mpsc::Sender<Result<pb::PersoDown, Status>>,
    ) -> Result<Recorded, String> {
        if let CardPlan::Barrier(n) = plan {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while self.db().open_now < n {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("fewer than {n} cards were open at once"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tx.send(Ok(script(1, &[SELECT_ISD, GET_CPLC])))
            .await
            .map_err(|_| "the station is gone".to_string())?;
        let r1 = self.next_reply(rid, inbound).await?;
        if let Some(p) = reply_problem(&r1, 2) {
            return Err(p);
        }
        let cplc = r1.responses.get(1).cloned().unwrap_or_default();
        if matches!(plan, CardPlan::HoldAfterFirstReply) {
            self.db().held += 1;
            // Until released, or the stream ends.
            tokio::select! {
                _ = self.release.notified() => {}
                m = inbound.message() => {
                    return Err(match m {
                        Ok(None) => "the station ended the stream mid-card".into(),
                        Err(s) => format!("the stream failed mid-card ({:?})", s.code()),
                        Ok(Some(_)) => "a message while no script was pending".into(),
                    });
                }
            }
        }
        tx.send(Ok(script(2, &[SELECT_PIV])))
            .await
            .map_err(|_| "the station is gone".to_string())?;
        let r2 = self.next_reply(rid, inbound).await?;
        if let Some(p) = reply_problem(&r2, 1) {
            return Err(p);
        }
        // The CPLC's IC serial number stands in for the card's serial.
        let serial = hex::encode(cplc.get(18..22).unwrap_or_default());
        Ok(Recorded {
            ok: true,
            reason: String::new(),
            serial,
            round_trips: 2,
        })
    }
}

#[tonic::async_trait]
impl pb::keyserver_server::Keyserver for Service {
    type ControlStream = ReceiverStream<Result<pb::KeyserverEvent, Status>>;
    type PersoStream = ReceiverStream<Result<pb::PersoDown, Status>>;

    async fn control(
        &self,
        request: Request<Streaming<pb::StationEvent>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::permission_denied("no client certificate"));
        }
        if self.fake.db().revoked {
            return Err(Status::permission_denied(
                "station desk-1: refused: its certificate was revoked",
            ));
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(Service::control_task(self.fake.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn perso(
        &self,
        request: Request<Streaming<pb::PersoUp>>,
    ) -> Result<Response<Self::PersoStream>, Status> {
        if self.fake.db().revoked {
            return Err(Status::permission_denied("revoked"));
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(self.fake.clone().perso_task(request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
