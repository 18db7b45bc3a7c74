#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The keystore's certificate authorities: card certificates, station and
//! server identities, checked with x509-parser and p256 (not rcgen).

mod custody_support;

use ::time::OffsetDateTime;
use custody_support::*;
use keyserver::ports::{
    CertificateRequest, DnAttribute, ExtendedKeyUsage, IssuerKeys, KeyUsage, SubjectAltName,
};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

/// Checks that `cert_der` is signed by the P-256 key of `ca_der`.
fn assert_signed_by(cert_der: &[u8], ca_der: &[u8]) {
    let (_, ca) = parse_x509_certificate(ca_der).unwrap();
    let (_, cert) = parse_x509_certificate(cert_der).unwrap();
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(ca.public_key().subject_public_key.as_ref()).unwrap();
    let sig = p256::ecdsa::DerSignature::try_from(cert.signature_value.as_ref()).unwrap();
    key.verify(cert.tbs_certificate.as_ref(), &sig).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    // The CA's key identifier is the certificate's authority key identifier.
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn request(spki: Vec<u8>) -> CertificateRequest {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    CertificateRequest {
        subject: vec![
            (DnAttribute::Country, "DE".into()),
            (DnAttribute::Organization, "Example AG".into()),
            (DnAttribute::OrganizationalUnit, "Badges".into()),
            (DnAttribute::CommonName, "Jürgen Müller".into()),
            (DnAttribute::EmailAddress, "jm@example.com".into()),
            (DnAttribute::SerialNumber, "E1079".into()),
        ],
        subject_public_key_info: spki,
        not_before: now,
        not_after: now + ::time::Duration::days(3 * 365),
        key_usage: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth, ExtendedKeyUsage::SmartcardLogon],
        subject_alt_names: vec![
            SubjectAltName::Email("jm@example.com".into()),
            SubjectAltName::Dns("jm.example.com".into()),
            SubjectAltName::Uri("urn:example:jm".into()),
        ],
    }
}

#[test]
fn card_certificates_verify_and_carry_the_requested_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, u) = unlocked(dir.path());
    let ca_der = u.issuer().ca_certificate_der().to_vec();
    {
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        let cn = ca.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, format!("Cardsmith Issuer CA {}", u.id()));
        assert!(ca.basic_constraints().unwrap().unwrap().value.ca);
    }

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let rsa_spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa_key.to_public_key())
        .unwrap()
        .as_bytes()
        .to_vec();
    let ec_key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let ec_spki = ec_key
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();

    let mut serials = Vec::new();
    for spki in [rsa_spki, ec_spki] {
        let req = request(spki.clone());
        let der = u.issuer().issue(&req).unwrap();
        assert_signed_by(&der, &ca_der);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.public_key().raw, &spki[..]);
        let subject = cert.subject();
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "Jürgen Müller"
        );
        assert_eq!(
            subject.iter_organization().next().unwrap().as_str().unwrap(),
            "Example AG"
        );
        assert_eq!(
            subject
                .iter_organizational_unit()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "Badges"
        );
        assert_eq!(subject.iter_country().next().unwrap().as_str().unwrap(), "DE");
        assert_eq!(
            subject.iter_email().next().unwrap().as_str().unwrap(),
            "jm@example.com"
        );
        let serial_number = subject
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == "2.5.4.5")
            .unwrap();
        assert_eq!(serial_number.as_str().unwrap(), "E1079");
        assert_eq!(
            cert.validity().not_before.timestamp(),
            req.not_before.unix_timestamp()
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            req.not_after.unix_timestamp()
        );
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_encipherment());
        assert!(!ku.value.key_cert_sign() && !ku.value.non_repudiation());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        let others: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
        assert_eq!(others, ["1.3.6.1.4.1.311.20.2.2"], "smart card logon");
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| match g {
                GeneralName::RFC822Name(s) => format!("email:{s}"),
                GeneralName::DNSName(s) => format!("dns:{s}"),
                GeneralName::URI(s) => format!("uri:{s}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sans,
            ["email:jm@example.com", "dns:jm.example.com", "uri:urn:example:jm"]
        );
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.raw_serial().len() >= 16);
        serials.push(cert.raw_serial().to_vec());
    }
    assert_ne!(serials[0], serials[1], "serials are random");
}

#[test]
fn bad_certificate_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, u) = unlocked(dir.path());
    let ec_spki = p256::SecretKey::random(&mut rand::rngs::OsRng)
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();

    let mut r = request(ec_spki.clone());
    r.subject.clear();
    assert!(u
        .issuer()
        .issue(&r)
        .unwrap_err()
        .to_string()
        .contains("subject is empty"));

    let mut r = request(ec_spki.clone());
    r.not_after = r.not_before + ::time::Duration::days(100 * 365);
    let e = u.issuer().issue(&r).unwrap_err().to_string();
    assert!(
        e.contains("Jürgen Müller") && e.contains("after the CA itself"),
        "{e}"
    );

    let mut r = request(ec_spki.clone());
    r.not_after = r.not_before;
    assert!(u.issuer().issue(&r).is_err());

    let mut garbage = ec_spki.clone();
    let last = garbage.len() - 1;
    garbage[last] ^= 0xFF; // no longer a point on the curve
    let e = u.issuer().issue(&request(garbage)).unwrap_err().to_string();
    assert!(e.contains("public key"), "{e}");
    assert!(u.issuer().issue(&request(vec![0x30, 0x00])).is_err());

    let mut r = request(ec_spki.clone());
    r.extended_key_usage = vec![ExtendedKeyUsage::Other("not.an.oid".into())];
    assert!(u
        .issuer()
        .issue(&r)
        .unwrap_err()
        .to_string()
        .contains("not an OID"));

    let mut r = request(ec_spki);
    r.subject.push((DnAttribute::Country, "Germany".into()));
    assert!(u
        .issuer()
        .issue(&r)
        .unwrap_err()
        .to_string()
        .contains("two-letter"));
}

#[test]
fn station_and_server_identities_come_from_the_enrollment_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (data, u) = unlocked(dir.path());
    let ca_der = pem_to_der(u.enrollment_ca_pem());
    assert_eq!(
        std::fs::read_to_string(data.join("public/enrollment-ca.pem")).unwrap(),
        u.enrollment_ca_pem()
    );

    let s = u.issue_station_identity("desk-1").unwrap();
    assert_eq!(s.ca_pem, u.enrollment_ca_pem());
    let der = pem_to_der(&s.cert_pem);
    assert_signed_by(&der, &ca_der);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "desk-1"
    );
    assert_eq!(hex::encode(cert.raw_serial()), s.serial);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    // The key is the certificate's.
    let key =
        p256::SecretKey::from_pkcs8_pem(std::str::from_utf8(s.key_pem.expose_secret()).unwrap()).unwrap();
    assert_eq!(
        key.public_key().to_public_key_der().unwrap().as_bytes(),
        cert.public_key().raw
    );
    let s2 = u.issue_station_identity("desk-1").unwrap();
    assert_ne!(s2.serial, s.serial);
    assert!(u.issue_station_identity("desk 1/../x").is_err());

    let tls = u.server_identity().unwrap();
    let der = pem_to_der(&tls.cert_pem);
    assert_signed_by(&der, &ca_der);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(s) => s.to_string(),
            GeneralName::IPAddress(ip) => format!("{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["localhost", "[127, 0, 0, 1]", "keyserver.example"]);
    let key =
        p256::SecretKey::from_pkcs8_pem(std::str::from_utf8(tls.key_pem.expose_secret()).unwrap()).unwrap();
    assert_eq!(
        key.public_key().to_public_key_der().unwrap().as_bytes(),
        cert.public_key().raw
    );
    drop(u);
    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    assert!(audit.contains("\"subject\":\"station desk-1\""));
}
