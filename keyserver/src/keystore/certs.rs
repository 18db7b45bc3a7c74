//! The keystore's certificate authorities (rcgen, signing with P-256 keys
//! held in `p256` types, which zeroize on drop).
//!
//! - the **issuer CA** (`CN=Cardsmith Issuer CA <keyserver id>`) certifies
//!   card keys ([`IssuerCa`], the port's `CertificateIssuer`);
//! - the **enrollment CA** (`CN=Cardsmith Enrollment CA <keyserver id>`)
//!   certifies stations' TLS client keys and the keyserver's own TLS server
//!   key.

use std::net::IpAddr;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::ports::{
    CertificateIssuer, CertificateRequest, DnAttribute, ExtendedKeyUsage, KeyError, KeyUsage, SubjectAltName,
};

/// Microsoft smart card logon, 1.3.6.1.4.1.311.20.2.2.
pub const OID_SMARTCARD_LOGON: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 2];
/// PKCS #9 emailAddress.
const OID_EMAIL_ADDRESS: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
/// X.520 serialNumber.
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// How long the CAs are valid.
pub const CA_VALIDITY_DAYS: i64 = 20 * 365;
/// How long a station's certificate is valid.
pub const STATION_VALIDITY_DAYS: i64 = 2 * 365;
/// How long the keyserver's TLS certificate is valid.
pub const SERVER_VALIDITY_DAYS: i64 = 5 * 365;

/// A P-256 signing key. It is held twice: as a `p256` key (zeroized on
/// drop; pairwise checks, PKCS#8) and loaded into ring through rcgen, which
/// signs about 15 times faster than `p256` 0.13 on this hardware (26 µs
/// against 360–500 µs), what every certificate and every manifest and audit
/// entry needs. rcgen's copy of the PKCS#8 is zeroized on drop; ring's own
/// copy of the scalar is not (ring does not zeroize), which is the price of
/// that speed for keys held as long as the process runs.
pub struct P256Signer {
    key: SigningKey,
    fast: rcgen::KeyPair,
    public_sec1: Vec<u8>,
}

impl P256Signer {
    /// Loads `key` for signing and checks, across the two implementations,
    /// that a signature made by the fast one verifies with the public key.
    pub fn new(key: SigningKey) -> Result<Self, KeyError> {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::EncodePrivateKey;
        let bad = |why: String| KeyError::Generation(format!("loading a P-256 signing key: {why}"));
        let der = key.to_pkcs8_der().map_err(|e| bad(e.to_string()))?;
        let fast = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &der.as_bytes().into(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| bad(e.to_string()))?;
        let public_sec1 = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        if fast.public_key_raw() != public_sec1.as_slice() {
            return Err(bad("the two loaded copies have different public keys".into()));
        }
        let mut probe = [0u8; 32];
        OsRng.fill_bytes(&mut probe);
        let sig = rcgen::SigningKey::sign(&fast, &probe).map_err(|e| bad(e.to_string()))?;
        let sig = DerSignature::try_from(sig.as_slice()).map_err(|e| bad(e.to_string()))?;
        key.verifying_key()
            .verify(&probe, &sig)
            .map_err(|e| bad(format!("pairwise check: {e}")))?;
        Ok(P256Signer {
            key,
            fast,
            public_sec1,
        })
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// An ECDSA P-256/SHA-256 signature of `msg`, DER.
    pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        match rcgen::SigningKey::sign(&self.fast, msg) {
            Ok(sig) => sig,
            // ring failing to sign would be a bug; sign the slow way then.
            Err(_) => {
                let sig: DerSignature = self.key.sign(msg);
                sig.as_bytes().to_vec()
            }
        }
    }
}

impl Drop for P256Signer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.fast);
    }
}

impl std::fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Signer([REDACTED])")
    }
}

impl rcgen::PublicKeyData for P256Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.sign_der(msg))
    }
}

/// A random, positive, 16-byte certificate serial number.
pub fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[0] = (b[0] & 0x7F) | 0x40;
    SerialNumber::from_slice(&b)
}

fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The parameters of a CA certificate (path length 0: it certifies end
/// entities only).
pub fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cardsmith");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    let now = now_seconds();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    p.serial_number = Some(random_serial());
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A self-signed CA certificate, DER.
pub fn self_signed_ca(common_name: &str, key: &P256Signer) -> Result<Vec<u8>, KeyError> {
    ca_params(common_name)
        .self_signed(key)
        .map(|c| c.der().to_vec())
        .map_err(|e| KeyError::Certificate {
            subject: common_name.into(),
            reason: e.to_string(),
        })
}

/// A CA: its certificate and its key.
pub struct Ca {
    issuer: rcgen::Issuer<'static, P256Signer>,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ca({} bytes of certificate, [REDACTED key])",
            self.cert_der.len()
        )
    }
}

/// DER to PEM.
pub fn cert_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

impl Ca {
    /// The CA with certificate `cert_der` and key `key` (they must match).
    pub fn new(cert_der: Vec<u8>, key: P256Signer) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::Certificate {
            subject: "a CA certificate".into(),
            reason,
        };
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad(e.to_string()))?;
        if x509.public_key().subject_public_key.as_ref() != key.public_sec1.as_slice() {
            return Err(bad("the certificate is not the key's".into()));
        }
        let not_after = x509.validity().not_after.to_datetime();
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&cert_der.clone().into(), key).map_err(|e| bad(e.to_string()))?;
        let cert_pem = cert_pem(&cert_der);
        Ok(Ca {
            issuer,
            cert_der,
            cert_pem,
            not_after,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    #[cfg(any(test, feature = "leak-scan"))]
    pub(crate) fn signer_key(&self) -> &SigningKey {
        self.issuer.key().key()
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs a certificate for `public` with `params`.
    pub fn sign(
        &self,
        params: &CertificateParams,
        public: &impl rcgen::PublicKeyData,
        subject: &str,
    ) -> Result<Vec<u8>, KeyError> {
        if params.not_after > self.not_after {
            return Err(KeyError::Certificate {
                subject: subject.into(),
                reason: format!(
                    "it would be valid until {}, after the CA itself ({})",
                    params.not_after, self.not_after
                ),
            });
        }
        params
            .signed_by(public, &self.issuer)
            .map(|c| c.der().to_vec())
            .map_err(|e| KeyError::Certificate {
                subject: subject.into(),
                reason: e.to_string(),
            })
    }

    /// An end-entity certificate with a P-256 `key`: `CN=common_name`, the
    /// given EKU and SANs, valid for `days`.
    pub fn sign_p256_end_entity(
        &self,
        common_name: &str,
        key: &SigningKey,
        eku: ExtendedKeyUsagePurpose,
        sans: Vec<SanType>,
        days: i64,
    ) -> Result<Vec<u8>, KeyError> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Cardsmith");
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        let now = now_seconds();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = (now + time::Duration::days(days)).min(self.not_after);
        p.serial_number = Some(random_serial());
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.subject_alt_names = sans;
        p.use_authority_key_identifier_extension = true;
        let public = P256Public(key.verifying_key().to_encoded_point(false).as_bytes().to_vec());
        self.sign(&p, &public, common_name)
    }
}

struct P256Public(Vec<u8>);

impl rcgen::PublicKeyData for P256Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// The SANs of the keyserver's TLS certificate: `localhost`, `127.0.0.1`
/// and `extra` (DNS names or IP addresses).
pub fn server_sans(extra: &[String]) -> Result<Vec<SanType>, KeyError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
        .into_iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e: rcgen::Error| KeyError::Certificate {
                    subject: "the keyserver's TLS certificate".into(),
                    reason: format!("server name {n:?}: {e}"),
                }),
        })
        .collect()
}

fn parse_oid(dotted: &str) -> Option<Vec<u64>> {
    let arcs: Option<Vec<u64>> = dotted.split('.').map(|a| a.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2)
}

/// The issuer CA, as issuance sees it.
#[derive(Debug)]
pub struct IssuerCa {
    ca: Ca,
}

impl IssuerCa {
    pub fn new(ca: Ca) -> Self {
        IssuerCa { ca }
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }
}

fn subject_name(req: &CertificateRequest) -> String {
    req.subject
        .iter()
        .find(|(a, _)| *a == DnAttribute::CommonName)
        .or_else(|| req.subject.first())
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "(empty subject)".into())
}

/// Checks that the SPKI holds a usable public key.
fn check_public_key(spki: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, String> {
    use p256::pkcs8::DecodePublicKey;
    let parsed =
        rcgen::SubjectPublicKeyInfo::from_der(spki).map_err(|e| format!("the subject public key: {e}"))?;
    if p256::PublicKey::from_public_key_der(spki).is_ok() {
        return Ok(parsed);
    }
    if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki) {
        let bits = rsa::traits::PublicKeyParts::size(&k) * 8;
        if bits < 2048 {
            return Err(format!(
                "the subject public key is RSA-{bits}; at least 2048 bits are required"
            ));
        }
        return Ok(parsed);
    }
    let alg = rcgen::PublicKeyData::algorithm(&parsed);
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 || alg == &rcgen::PKCS_RSA_SHA256 {
        return Err("the subject public key is not a valid point or modulus".into());
    }
    Ok(parsed)
}

impl CertificateIssuer for IssuerCa {
    fn ca_certificate_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    fn issue(&self, req: &CertificateRequest) -> Result<Vec<u8>, KeyError> {
        let subject = subject_name(req);
        let bad = |reason: String| KeyError::Certificate {
            subject: subject.clone(),
            reason,
        };
        if req.subject.is_empty() {
            return Err(bad("the subject is empty".into()));
        }
        if req.not_before >= req.not_after {
            return Err(bad(format!(
                "not_before {} is not before not_after {}",
                req.not_before, req.not_after
            )));
        }
        let public = check_public_key(&req.subject_public_key_info).map_err(bad)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (attr, value) in &req.subject {
            let printable = || {
                value
                    .clone()
                    .try_into()
                    .map(DnValue::PrintableString)
                    .map_err(|e: rcgen::Error| bad(format!("{attr:?} {value:?}: {e}")))
            };
            match attr {
                DnAttribute::CommonName => dn.push(DnType::CommonName, DnValue::Utf8String(value.clone())),
                DnAttribute::Organization => {
                    dn.push(DnType::OrganizationName, DnValue::Utf8String(value.clone()))
                }
                DnAttribute::OrganizationalUnit => {
                    dn.push(DnType::OrganizationalUnitName, DnValue::Utf8String(value.clone()))
                }
                DnAttribute::Country => {
                    if value.len() != 2 || !value.chars().all(|c| c.is_ascii_uppercase()) {
                        return Err(bad(format!(
                            "country {value:?} is not a two-letter ISO 3166 code"
                        )));
                    }
                    dn.push(DnType::CountryName, printable()?)
                }
                DnAttribute::EmailAddress => dn.push(
                    DnType::CustomDnType(OID_EMAIL_ADDRESS.to_vec()),
                    value
                        .clone()
                        .try_into()
                        .map(DnValue::Ia5String)
                        .map_err(|e: rcgen::Error| bad(format!("email {value:?}: {e}")))?,
                ),
                DnAttribute::SerialNumber => {
                    dn.push(DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()), printable()?)
                }
            }
        }
        p.distinguished_name = dn;
        p.not_before = req.not_before;
        p.not_after = req.not_after;
        p.serial_number = Some(random_serial());
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = req
            .key_usage
            .iter()
            .map(|u| match u {
                KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
                KeyUsage::NonRepudiation => KeyUsagePurpose::ContentCommitment,
                KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
                KeyUsage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
                KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            })
            .collect();
        p.extended_key_usages = req
            .extended_key_usage
            .iter()
            .map(|e| {
                Ok(match e {
                    ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
                    ExtendedKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
                    ExtendedKeyUsage::SmartcardLogon => {
                        ExtendedKeyUsagePurpose::Other(OID_SMARTCARD_LOGON.to_vec())
                    }
                    ExtendedKeyUsage::Other(dotted) => ExtendedKeyUsagePurpose::Other(
                        parse_oid(dotted)
                            .ok_or_else(|| bad(format!("extended key usage {dotted:?} is not an OID")))?,
                    ),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        p.subject_alt_names = req
            .subject_alt_names
            .iter()
            .map(|s| {
                let (kind, v) = match s {
                    SubjectAltName::Email(v) => ("email", v),
                    SubjectAltName::Dns(v) => ("DNS name", v),
                    SubjectAltName::Uri(v) => ("URI", v),
                };
                let ia5: rcgen::string::Ia5String = v
                    .clone()
                    .try_into()
                    .map_err(|e: rcgen::Error| bad(format!("{kind} {v:?}: {e}")))?;
                Ok(match s {
                    SubjectAltName::Email(_) => SanType::Rfc822Name(ia5),
                    SubjectAltName::Dns(_) => SanType::DnsName(ia5),
                    SubjectAltName::Uri(_) => SanType::URI(ia5),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        self.ca.sign(&p, &public, &subject)
    }
}
