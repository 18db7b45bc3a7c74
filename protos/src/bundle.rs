//! The station bundle: what `keyserver enroll-station NAME --out FILE`
//! writes and a station reads to reach its keyserver.
//!
//! A TOML file (UTF-8), written with mode 0600 because it holds the
//! station's private key:
//!
//! ```toml
//! format = "cardsmith-station-bundle/1"
//! station = "desk-1"                  # the certificate's subject CN
//! keyserver = "10.0.0.5:7443"         # where to connect (host:port)
//! server_name = "keyserver.example"   # the name the server certificate is checked against
//! jobs = ["people-2025"]              # the jobs enrolled for; empty: all (informational)
//! certificate = """
//! -----BEGIN CERTIFICATE-----
//! …the station's certificate, issued by the enrollment CA…
//! -----END CERTIFICATE-----
//! """
//! private_key = """
//! -----BEGIN PRIVATE KEY-----
//! …the station's PKCS#8 key…
//! -----END PRIVATE KEY-----
//! """
//! ca_certificate = """
//! -----BEGIN CERTIFICATE-----
//! …the enrollment CA: trust anchor for the keyserver's certificate…
//! -----END CERTIFICATE-----
//! """
//! ```
//!
//! Unknown keys are refused, so a typo is not silently ignored.

use std::fmt;

use zeroize::Zeroizing;

/// The `format` value of this version.
pub const BUNDLE_FORMAT: &str = "cardsmith-station-bundle/1";

/// A station's bundle.
#[derive(Clone)]
pub struct StationBundle {
    /// The station's name (its certificate's subject CN).
    pub station: String,
    /// The keyserver's address, `host:port`.
    pub keyserver: String,
    /// The name to verify the keyserver's certificate against.
    pub server_name: String,
    /// The jobs the station is enrolled for (empty: all). Informational:
    /// the keyserver decides.
    pub jobs: Vec<String>,
    /// The station's certificate, PEM.
    pub certificate_pem: String,
    /// The station's private key, PEM (PKCS#8).
    pub private_key_pem: Zeroizing<String>,
    /// The CA certificate that issued both sides' certificates, PEM.
    pub ca_certificate_pem: String,
}

impl fmt::Debug for StationBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StationBundle")
            .field("station", &self.station)
            .field("keyserver", &self.keyserver)
            .field("server_name", &self.server_name)
            .field("jobs", &self.jobs)
            .field("private_key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the station bundle is not valid TOML or lacks a field: {0}")]
    Syntax(String),
    #[error("the station bundle has format {found:?}; this program reads {BUNDLE_FORMAT:?}")]
    Format { found: String },
    #[error("the station bundle's {field} is empty or not PEM")]
    Field { field: &'static str },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    format: String,
    station: String,
    keyserver: String,
    server_name: String,
    #[serde(default)]
    jobs: Vec<String>,
    certificate: String,
    private_key: Zeroizing<String>,
    ca_certificate: String,
}

impl StationBundle {
    /// The bundle as TOML text (it contains the private key: write it with
    /// mode 0600).
    pub fn to_toml(&self) -> Result<Zeroizing<String>, BundleError> {
        let file = BundleFile {
            format: BUNDLE_FORMAT.to_string(),
            station: self.station.clone(),
            keyserver: self.keyserver.clone(),
            server_name: self.server_name.clone(),
            jobs: self.jobs.clone(),
            certificate: self.certificate_pem.clone(),
            private_key: self.private_key_pem.clone(),
            ca_certificate: self.ca_certificate_pem.clone(),
        };
        let body = toml::to_string(&file).map_err(|e| BundleError::Syntax(e.to_string()))?;
        let mut out = Zeroizing::new(String::with_capacity(body.len() + 160));
        out.push_str(
            "# Cardsmith station bundle: this station's TLS identity and where its keyserver is.\n\
             # It holds the station's private key: keep it readable by the station only (0600).\n",
        );
        out.push_str(&body);
        Ok(out)
    }

    /// Reads a bundle.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        // toml's error messages quote the offending line, which may be part
        // of the private key: keep only the message's first line.
        let file: BundleFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().lines().next().unwrap_or("syntax error").to_string();
            BundleError::Syntax(msg)
        })?;
        if file.format != BUNDLE_FORMAT {
            return Err(BundleError::Format { found: file.format });
        }
        let pem = |s: &str| s.contains("-----BEGIN ");
        if file.station.is_empty() {
            return Err(BundleError::Field { field: "station" });
        }
        if file.keyserver.is_empty() {
            return Err(BundleError::Field { field: "keyserver" });
        }
        if file.server_name.is_empty() {
            return Err(BundleError::Field { field: "server_name" });
        }
        if !pem(&file.certificate) {
            return Err(BundleError::Field { field: "certificate" });
        }
        if !pem(&file.private_key) {
            return Err(BundleError::Field { field: "private_key" });
        }
        if !pem(&file.ca_certificate) {
            return Err(BundleError::Field {
                field: "ca_certificate",
            });
        }
        Ok(StationBundle {
            station: file.station,
            keyserver: file.keyserver,
            server_name: file.server_name,
            jobs: file.jobs,
            certificate_pem: file.certificate,
            private_key_pem: file.private_key,
            ca_certificate_pem: file.ca_certificate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StationBundle {
        StationBundle {
            station: "desk-1".into(),
            keyserver: "127.0.0.1:7443".into(),
            server_name: "keyserver.test".into(),
            jobs: vec!["people".into()],
            certificate_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            private_key_pem: Zeroizing::new(
                "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n".into(),
            ),
            ca_certificate_pem: "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n".into(),
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let text = b.to_toml().unwrap();
        assert!(text.starts_with("# Cardsmith station bundle"));
        let back = StationBundle::parse(&text).unwrap();
        assert_eq!(back.station, "desk-1");
        assert_eq!(back.keyserver, "127.0.0.1:7443");
        assert_eq!(back.server_name, "keyserver.test");
        assert_eq!(back.jobs, vec!["people".to_string()]);
        assert_eq!(back.certificate_pem, b.certificate_pem);
        assert_eq!(*back.private_key_pem, *b.private_key_pem);
        assert_eq!(back.ca_certificate_pem, b.ca_certificate_pem);
        assert!(!format!("{back:?}").contains("BBBB"));
    }

    #[test]
    fn refuses_other_formats_unknown_keys_and_missing_pem() {
        let text = sample().to_toml().unwrap();
        let other = text.replace(BUNDLE_FORMAT, "cardsmith-station-bundle/9");
        assert!(matches!(
            StationBundle::parse(&other),
            Err(BundleError::Format { .. })
        ));
        let extra = format!("{}\nsurprise = 1\n", &*text);
        assert!(matches!(
            StationBundle::parse(&extra),
            Err(BundleError::Syntax(_))
        ));
        let no_key = text.replace("-----BEGIN PRIVATE KEY-----", "garbage");
        assert!(matches!(
            StationBundle::parse(&no_key),
            Err(BundleError::Field { field: "private_key" })
        ));
    }
}
