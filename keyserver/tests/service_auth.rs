//! Who may talk to the keyserver: mutual TLS, enrollment, revocation, job
//! permissions, the admin socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;

use protos::bundle::StationBundle;
use protos::pb;
use support::authority::{TestAuthority, SERVER_NAME};
use support::station::{channel, channel_with, open_msg, TestStation};
use support::{blank_card, people, Harness};
use tonic::Code;

/// A control stream over a channel made with `identity`: the error the
/// station gets (TLS refusals surface as a connect or RPC failure).
async fn refused_with(h: &Harness, ca_pem: &str, identity: Option<(&str, &str)>) -> tonic::Status {
    match channel_with(&h.addr(), SERVER_NAME, ca_pem, identity).await {
        Err(e) => tonic::Status::unavailable(format!("connect: {e:?}")),
        Ok(ch) => match TestStation::over(ch, "intruder").await {
            Ok(_) => panic!("the keyserver accepted the connection"),
            Err(s) => s,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_refuses_a_station_without_a_client_certificate_or_from_another_ca() {
    let h = Harness::start().await;
    let none = refused_with(&h, h.authority.ca_pem(), None).await;
    assert_ne!(
        none.code(),
        Code::PermissionDenied,
        "refused by TLS, not by the service: {none:?}"
    );
    let other = TestAuthority::new("Another CA");
    let id = other.client_identity("desk-1");
    let key = std::str::from_utf8(id.key_pem.expose_secret())
        .unwrap()
        .to_string();
    let foreign = refused_with(&h, h.authority.ca_pem(), Some((&id.cert_pem, &key))).await;
    assert_ne!(foreign.code(), Code::PermissionDenied, "{foreign:?}");
    // Neither reached the service.
    assert!(h.audit.with_action("station.refused").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_of_the_ca_that_was_never_enrolled_is_refused() {
    let h = Harness::start().await;
    let id = h.authority.client_identity("desk-9");
    let key = std::str::from_utf8(id.key_pem.expose_secret())
        .unwrap()
        .to_string();
    let s = refused_with(&h, h.authority.ca_pem(), Some((&id.cert_pem, &key))).await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains("desk-9") && s.message().contains("not enrolled"),
        "{s:?}"
    );
    assert_eq!(h.audit.with_action("station.refused").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_station_is_refused_and_a_reenrolled_one_only_with_its_new_bundle() {
    let h = Harness::start().await;
    let old = h.enroll("desk-1", &[]).await;
    let new = h.enroll("desk-1", &[]).await;
    let s = TestStation::connect(&old).await.err().unwrap();
    assert_eq!(s.code(), Code::PermissionDenied);
    assert!(
        s.message().contains("desk-1") && s.message().contains("retired"),
        "{s:?}"
    );
    TestStation::connect(&new).await.unwrap();

    h.revoke("desk-1").await;
    let s = TestStation::connect(&new).await.err().unwrap();
    assert_eq!(s.code(), Code::PermissionDenied);
    assert!(
        s.message().contains("desk-1") && s.message().contains("revoked"),
        "{s:?}"
    );
    // Perso streams too.
    let ch = channel(&new).await.unwrap();
    let mut client = pb::keyserver_client::KeyserverClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::PersoUp {
        msg: Some(open_msg("x")),
    })
    .await
    .unwrap();
    let s = client
        .perso(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .err()
        .unwrap();
    assert_eq!(s.code(), Code::PermissionDenied);
    assert_eq!(h.audit.with_action("station.revoke").len(), 1);
    // Revoking again, or an unknown station, says so.
    let e = h
        .admin()
        .await
        .revoke_station(pb::RevokeStationRequest {
            name: "desk-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = h
        .admin()
        .await
        .revoke_station(pb::RevokeStationRequest {
            name: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_station_revoked_while_connected_loses_its_streams_and_its_card_is_void() {
    let h = Harness::start().await;
    h.submit("batch", &people(2)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    st.request("req-1", "batch").await;
    let mut perso = st.raw_perso().await.unwrap();
    perso.send(open_msg("req-1")).await;
    let first = perso.next().await.unwrap().unwrap();
    assert!(matches!(first.msg, Some(pb::perso_down::Msg::Script(_))));

    h.revoke("desk-1").await;
    let (end, _) = perso.end().await;
    let end = end.unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied, "{end:?}");
    assert!(end.message().contains("desk-1"), "{end:?}");
    let c = st.control_end().await.unwrap_err();
    assert_eq!(c.code(), Code::PermissionDenied, "{c:?}");
    assert!(c.message().contains("revoked"), "{c:?}");

    let s = h.status("batch").await;
    assert_eq!((s.issued, s.queued, s.in_flight, s.voided), (0, 2, 0, 1));
    assert!(
        h.engine.aborts().iter().any(|a| a.contains("retired")),
        "{:?}",
        h.engine.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_the_station_may_not_run_is_refused() {
    let h = Harness::start().await;
    h.submit("batch", &people(1)).await;
    h.submit("secret-batch", &people(1)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &["batch"]).await)
        .await
        .unwrap();
    assert_eq!(st.welcome.jobs, vec!["batch".to_string()]);
    st.request("req-1", "secret-batch").await;
    let r = st.result("req-1").await;
    assert_eq!(r.outcome, pb::Outcome::Failed as i32);
    assert!(r.reason.contains("may not run job secret-batch"), "{r:?}");
    let e = st.personalize("req-1", &mut blank_card(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("desk-1") && e.message().contains("secret-batch"),
        "{e:?}"
    );
    let s = h.status("secret-batch").await;
    assert_eq!((s.queued, s.in_flight), (1, 0));
    assert!(!h.audit.with_action("perso.refused").is_empty());
    // Its own job still works.
    let run = st.issue("req-2", "batch", &mut blank_card(2)).await.unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Ok as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_is_private_and_never_on_the_tls_port() {
    let h = Harness::start().await;
    let meta = std::fs::metadata(h.admin_socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The TLS port serves no Admin service.
    let bundle = h.enroll("desk-1", &[]).await;
    let ch = channel(&bundle).await.unwrap();
    let e = pb::admin_client::AdminClient::new(ch)
        .job_status(pb::JobStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // A second keyserver on the same data directory is refused.
    let mut second = support::Harness::start().await;
    second.stop().await;
    let cfg = keyserver::service::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        admin_socket: h.admin_socket(),
        limits: support::test_limits(),
    };
    let parts = keyserver::service::Parts {
        engine: second.engine.clone(),
        authority: second.authority.clone(),
        audit: second.audit.clone(),
        jobs: second.jobs.clone(),
        stations: second.stations.clone(),
    };
    let e = keyserver::service::start(cfg, parts).await.unwrap_err();
    assert!(
        matches!(e, keyserver::service::ServeError::AlreadyRunning(_)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_names_the_keyserver_and_holds_the_station_identity() {
    let h = Harness::start().await;
    let b: StationBundle = h.enroll("desk-1", &["batch"]).await;
    assert_eq!(b.station, "desk-1");
    assert_eq!(b.keyserver, h.addr());
    assert_eq!(b.server_name, SERVER_NAME);
    assert_eq!(b.jobs, vec!["batch".to_string()]);
    assert_eq!(b.ca_certificate_pem, h.authority.ca_pem());
    assert!(b.private_key_pem.contains("PRIVATE KEY"));
    let e = h
        .admin()
        .await
        .enroll_station(pb::EnrollStationRequest {
            name: "bad name".into(),
            jobs: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(h.audit.with_action("station.enroll").len(), 1);
    // The audit log holds no private key.
    assert!(!h.audit.text().contains("PRIVATE KEY"));
}
