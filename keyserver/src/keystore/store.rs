//! The keystore's sled database (`DATA/keystore`).
//!
//! | Tree | Key | Value |
//! |---|---|---|
//! | `meta` | `format` | `1` (u16, big-endian) |
//! | | `state` | `pending` (init has not delivered every component) or `complete` |
//! | | `id` | the keyserver id (16 hex digits) |
//! | | `custodians` | N (1 byte) |
//! | | `created` | RFC 3339 time of `init` |
//! | | `check/<i>` | custodian i's component check value (3 bytes) |
//! | | `check/root` | the root KEK's check value (3 bytes) |
//! | | `server-names` | extra names of the TLS certificate (JSON list) |
//! | `keys` | key name | the key wrapped under the root KEK ([`aead`](super::aead)) |
//! | `public` | `issuer-ca`, `enrollment-ca`, `server-cert` | certificates, DER |
//! | `rsa-pool` | id (u64, big-endian) | an RSA-2048 key (PKCS#8) wrapped under `rsa-pool-key` |
//!
//! Nothing in it is secret in clear: keys are wrapped, check values are 3
//! bytes of a one-way function of 32-byte random values.

use std::path::{Path, PathBuf};

use vsc::secret::{AesKey, SecretBytes};

use super::aead;
use super::KeystoreError;

/// The keystore format version.
pub const FORMAT: u16 = 1;

pub(crate) struct Store {
    path: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) meta: sled::Tree,
    pub(crate) keys: sled::Tree,
    pub(crate) public: sled::Tree,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Self, KeystoreError> {
        let err = |source| KeystoreError::Store {
            path: path.to_path_buf(),
            op: "opening",
            source,
        };
        let db = sled::Config::new().path(path).open().map_err(err)?;
        Ok(Store {
            path: path.to_path_buf(),
            meta: db.open_tree("meta").map_err(err)?,
            keys: db.open_tree("keys").map_err(err)?,
            public: db.open_tree("public").map_err(err)?,
            db,
        })
    }

    /// The database's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, op: &'static str) -> impl Fn(sled::Error) -> KeystoreError + '_ {
        move |source| KeystoreError::Store {
            path: self.path.clone(),
            op,
            source,
        }
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeystoreError> {
        Ok(self
            .meta
            .get(key)
            .map_err(self.err("reading metadata"))?
            .map(|v| v.to_vec()))
    }

    pub(crate) fn meta_str(&self, key: &str) -> Result<Option<String>, KeystoreError> {
        Ok(self.meta(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(crate) fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), KeystoreError> {
        self.meta
            .insert(key, value)
            .map_err(self.err("writing metadata"))?;
        Ok(())
    }

    pub(crate) fn put_key(&self, root: &AesKey, name: &str, secret: &[u8]) -> Result<(), KeystoreError> {
        let wrapped = aead::wrap(root, name, secret).map_err(|e| KeystoreError::Wrap {
            name: name.into(),
            reason: e.to_string(),
        })?;
        self.keys
            .insert(name, wrapped)
            .map_err(self.err("storing a wrapped key"))?;
        Ok(())
    }

    pub(crate) fn get_key(&self, root: &AesKey, name: &str) -> Result<SecretBytes, KeystoreError> {
        let wrapped = self
            .keys
            .get(name)
            .map_err(self.err("reading a wrapped key"))?
            .ok_or_else(|| KeystoreError::Damaged {
                what: name.into(),
                reason: "it is missing".into(),
            })?;
        aead::unwrap(root, name, &wrapped).map_err(|e| KeystoreError::Damaged {
            what: name.into(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn put_public(&self, name: &str, der: &[u8]) -> Result<(), KeystoreError> {
        self.public
            .insert(name, der)
            .map_err(self.err("storing a certificate"))?;
        Ok(())
    }

    pub(crate) fn get_public(&self, name: &str) -> Result<Vec<u8>, KeystoreError> {
        self.public
            .get(name)
            .map_err(self.err("reading a certificate"))?
            .map(|v| v.to_vec())
            .ok_or_else(|| KeystoreError::Damaged {
                what: format!("certificate {name}"),
                reason: "it is missing".into(),
            })
    }

    /// Names of the wrapped keys.
    pub(crate) fn key_names(&self) -> Result<Vec<String>, KeystoreError> {
        self.keys
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(self.err("listing keys"))
            })
            .collect()
    }

    /// Flushes sled, then fsyncs its files and directories (see
    /// [`fsio::sync_tree`](super::fsio::sync_tree)).
    pub(crate) fn flush(&self) -> Result<(), KeystoreError> {
        self.db.flush().map_err(self.err("flushing"))?;
        super::fsio::sync_tree(&self.path).map_err(|source| KeystoreError::Io {
            op: "syncing",
            path: self.path.clone(),
            source,
        })
    }
}
