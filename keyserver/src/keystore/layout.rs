//! Where a keyserver keeps things in its data directory.
//!
//! ```text
//! DATA/
//!   keystore/                 sled database (mode 0700): wrapped keys, public
//!                             certificates, custody metadata, the RSA key pool
//!   public/                   what verifiers need without the custodians
//!     keyserver.json          id, custodians, creation time, fingerprints
//!     issuer-ca.pem           the issuer CA certificate (certifies card keys)
//!     enrollment-ca.pem       the CA of station (TLS client) certificates
//!     server.pem              the keyserver's TLS server certificate
//!     log-signing-key.pem     the public key that signs the manifest and the audit log
//!   archive/
//!     vsc/<serial 8 digits>-<uid hex>.vsc    sealed master VSCs, mode 0444
//!     manifest.jsonl          the signed hash chain of archive events
//!     manifest.head           its signed head
//!   audit/
//!     audit.jsonl             the signed hash chain of audit events
//!     audit.head              its signed head
//!     pending.jsonl           events recorded while locked (unsigned, until the next unlock)
//! ```

use std::path::{Path, PathBuf};

/// A keyserver data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sled database of the keystore.
    pub fn keystore(&self) -> PathBuf {
        self.root.join("keystore")
    }

    pub fn public(&self) -> PathBuf {
        self.root.join("public")
    }

    pub fn keyserver_json(&self) -> PathBuf {
        self.public().join("keyserver.json")
    }

    pub fn issuer_ca_pem(&self) -> PathBuf {
        self.public().join("issuer-ca.pem")
    }

    pub fn enrollment_ca_pem(&self) -> PathBuf {
        self.public().join("enrollment-ca.pem")
    }

    pub fn server_cert_pem(&self) -> PathBuf {
        self.public().join("server.pem")
    }

    pub fn log_signing_key_pem(&self) -> PathBuf {
        self.public().join("log-signing-key.pem")
    }

    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// The folder of sealed master VSCs.
    pub fn archive_vsc(&self) -> PathBuf {
        self.archive().join("vsc")
    }

    pub fn manifest(&self) -> PathBuf {
        self.archive().join("manifest.jsonl")
    }

    pub fn manifest_head(&self) -> PathBuf {
        self.archive().join("manifest.head")
    }

    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.audit().join("audit.jsonl")
    }

    pub fn audit_head(&self) -> PathBuf {
        self.audit().join("audit.head")
    }

    pub fn audit_pending(&self) -> PathBuf {
        self.audit().join("pending.jsonl")
    }
}

impl From<&Path> for DataDir {
    fn from(p: &Path) -> Self {
        DataDir::new(p)
    }
}
