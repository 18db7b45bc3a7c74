//! A stand-in for custody's TLS part: an enrollment CA made with rcgen,
//! the keyserver's server certificate, station certificates.

use keyserver::service::{Authority, AuthorityError, ServerIdentity, StationIdentity};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use vsc::secret::SecretBytes;

/// The DNS name in the test server certificate.
pub const SERVER_NAME: &str = "keyserver.test";

pub struct TestAuthority {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    server_cert_pem: String,
    server_key_pem: String,
}

impl TestAuthority {
    pub fn new(ca_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, ca_name);
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
        TestAuthority {
            ca_pem: ca.pem(),
            issuer,
            server_cert_pem: server.pem(),
            server_key_pem: skey.serialize_pem(),
        }
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate for `name` from this CA (not recorded anywhere).
    pub fn client_identity(&self, name: &str) -> StationIdentity {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        StationIdentity {
            cert_pem: cert.pem(),
            key_pem: SecretBytes::from_slice(key.serialize_pem().as_bytes()),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

impl Authority for TestAuthority {
    fn server_identity(&self) -> Result<ServerIdentity, AuthorityError> {
        Ok(ServerIdentity {
            cert_pem: self.server_cert_pem.clone(),
            key_pem: SecretBytes::from_slice(self.server_key_pem.as_bytes()),
        })
    }

    fn client_ca_pem(&self) -> Result<String, AuthorityError> {
        Ok(self.ca_pem.clone())
    }

    fn issue_station_identity(&self, name: &str) -> Result<StationIdentity, AuthorityError> {
        Ok(self.client_identity(name))
    }
}
