//! What the service needs from custody that is not a port yet: the
//! keyserver's TLS identity and the enrollment CA that certifies stations.
//!
//! Custody's [`keystore::Unlocked`](crate::keystore::Unlocked) implements
//! [`Authority`] (`issue_station_identity`, the server's certificate and
//! key, the enrollment CA for client verification); the service's unit
//! tests use a stand-in CA made with rcgen.

use vsc::secret::SecretBytes;

/// An identity could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("issuing a certificate for station {station:?}: {reason}")]
    Station { station: String, reason: String },
    #[error("the keyserver's TLS identity: {0}")]
    Server(String),
}

/// The keyserver's TLS server identity.
pub struct ServerIdentity {
    /// The server certificate (and any intermediates), PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: SecretBytes,
}

/// A station's TLS client identity, freshly issued.
pub struct StationIdentity {
    /// The station certificate (subject CN = the station's name), PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: SecretBytes,
    /// The enrollment CA's certificate, PEM (the station's trust anchor for
    /// the keyserver's certificate).
    pub ca_pem: String,
}

/// Custody's part in the service's TLS.
pub trait Authority: Send + Sync {
    /// The certificate and key the keyserver presents to stations.
    fn server_identity(&self) -> Result<ServerIdentity, AuthorityError>;
    /// The enrollment CA's certificate, PEM: stations' certificates must
    /// chain to it.
    fn client_ca_pem(&self) -> Result<String, AuthorityError>;
    /// Issues a new key pair and certificate for station `name` (subject
    /// CN = `name`, extended key usage clientAuth) from the enrollment CA.
    fn issue_station_identity(&self, name: &str) -> Result<StationIdentity, AuthorityError>;
}
