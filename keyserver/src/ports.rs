//! The interfaces between the keyserver's parts.
//!
//! Issuance (`issue`) needs keys, a certificate authority, an escrow and an
//! audit trail; custody (`keystore`), the archive (`archive`) and the audit
//! log (`audit`) provide them. Issuance depends only on these traits, so it
//! is tested with in-memory stand-ins and runs with the real, durable parts
//! in the server.

use time::OffsetDateTime;
use vsc::file::Uid;
use vsc::scp03::StaticKeys;
use vsc::secret::AesKey;

/// A key could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown card stock {0:?}: no transport key set is registered for it")]
    UnknownStock(String),
    #[error("key derivation for {what} failed: {reason}")]
    Derivation { what: &'static str, reason: String },
    #[error("certificate for {subject} could not be issued: {reason}")]
    Certificate { subject: String, reason: String },
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error("the key store: {0}")]
    Store(String),
}

/// An SCP03 key set with its key version number.
#[derive(Clone, Debug)]
pub struct KeySet {
    pub kvn: u8,
    pub keys: StaticKeys,
}

/// The keys issuance needs, unlocked.
pub trait IssuerKeys: Send + Sync {
    /// The transport key set blank cards of `stock` hold (by default the
    /// GlobalPlatform test keys 40..4F, KVN 01).
    fn transport_keys(&self, stock: &str) -> Result<KeySet, KeyError>;

    /// The card's own SCP03 key set, which key rotation installs with PUT
    /// KEY: diversified from the SCP03 master key set with the card's key
    /// diversification data (NIST SP 800-108, AES-CMAC).
    fn card_keys(&self, kdd: &[u8; 10]) -> Result<KeySet, KeyError>;

    /// The card's PIV management key (AES-192), diversified from the
    /// management-key master with the card's identity (its CPLC serial).
    fn management_key(&self, serial: u32) -> Result<AesKey, KeyError>;

    /// The issuer CA that certifies card keys.
    fn issuer(&self) -> &dyn CertificateIssuer;

    /// The key-encryption key that protects master VSCs: its id and value.
    fn archive_kek(&self) -> (&str, &AesKey);
}

/// A distinguished-name attribute of a certificate subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnAttribute {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    EmailAddress,
    SerialNumber,
}

/// Key usage bits (RFC 5280 §4.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsage {
    DigitalSignature,
    NonRepudiation,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
}

/// Extended key usages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtendedKeyUsage {
    ClientAuth,
    EmailProtection,
    CodeSigning,
    /// Microsoft smart card logon, 1.3.6.1.4.1.311.20.2.2.
    SmartcardLogon,
    /// Any other, by dotted OID.
    Other(String),
}

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectAltName {
    Email(String),
    Dns(String),
    Uri(String),
}

/// What a certificate for a card key says.
#[derive(Clone, Debug)]
pub struct CertificateRequest {
    pub subject: Vec<(DnAttribute, String)>,
    /// The card key's SubjectPublicKeyInfo, DER.
    pub subject_public_key_info: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// The issuer CA.
pub trait CertificateIssuer: Send + Sync {
    /// The CA's own certificate, DER.
    fn ca_certificate_der(&self) -> &[u8];
    /// Issues a certificate, DER.
    fn issue(&self, request: &CertificateRequest) -> Result<Vec<u8>, KeyError>;
}

/// A master VSC to seal in the archive.
#[derive(Debug)]
pub struct SealRequest<'a> {
    pub serial: u32,
    pub uid: Uid,
    pub job: &'a str,
    pub record_id: &'a str,
    /// The encoded master VSC (protected by the archive KEK).
    pub bytes: &'a [u8],
}

/// Proof that a master VSC is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealReceipt {
    /// The manifest entry's sequence number.
    pub entry: u64,
    /// SHA-256 of the sealed file, hex.
    pub sha256: String,
}

/// What became of a card whose master VSC was sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardOutcome {
    Issued,
    Void { reason: String },
}

/// The escrow could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("sealing the master VSC of card {serial:08}: {reason}")]
    Seal { serial: u32, reason: String },
    #[error("recording the outcome of card {serial:08}: {reason}")]
    Record { serial: u32, reason: String },
}

/// The archive of master VSCs.
pub trait Escrow: Send + Sync {
    /// Writes the master VSC once (file and directory fsynced) and appends a
    /// `sealed` manifest entry; returns only when both are durable. Nothing
    /// of the card may leave the keyserver before this returns Ok.
    fn seal(&self, request: &SealRequest<'_>) -> Result<SealReceipt, EscrowError>;

    /// Appends the card's outcome (`issued` or `void`) to the manifest.
    fn record(&self, serial: u32, uid: Uid, outcome: &CardOutcome) -> Result<(), EscrowError>;
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Ok,
    Failed,
}

/// One line of the audit log: who did what to what, and how it ended.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// A station's name, `admin:<name>`, or `keyserver`.
    pub actor: String,
    /// What was done, e.g. `card.issue`, `key.generate`, `station.enroll`,
    /// `profile.escrow-override`.
    pub action: String,
    /// What it was done to, e.g. a card serial, a job, a station.
    pub subject: String,
    pub outcome: AuditOutcome,
    /// Free text without secrets.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit log could not record {action} on {subject}: {reason}")]
pub struct AuditError {
    pub action: String,
    pub subject: String,
    pub reason: String,
}

/// The audit log.
pub trait AuditSink: Send + Sync {
    /// Appends an event durably.
    fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Appends events durably, in order; returns once all are durable. A
    /// log with group commit makes them durable together (one wait, not
    /// one per event). Stops at the first failure.
    fn record_all(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        events.into_iter().try_for_each(|e| self.record(e))
    }
}

/// Where issuance gets RSA-2048 key pairs: a pool of pre-generated keys
/// (each used once), or generation on the spot.
pub trait RsaKeySource: Send + Sync {
    fn rsa2048(&self) -> Result<rsa::RsaPrivateKey, KeyError>;
}

/// A card a station asks to personalize. (Its `Debug` shows the record's
/// field names only: the values hold secrets such as the PIN.)
#[derive(Clone)]
pub struct CardRequest {
    pub request_id: String,
    /// The station's name (from its TLS certificate).
    pub station: String,
    pub reader: String,
    pub atr: Vec<u8>,
    pub job: String,
    /// The job's profile id.
    pub profile: String,
    /// The card stock the job's blank cards come from.
    pub stock: String,
    pub record: crate::record::Record,
}

impl std::fmt::Debug for CardRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRequest")
            .field("request_id", &self.request_id)
            .field("station", &self.station)
            .field("reader", &self.reader)
            .field("atr", &hex::encode_upper(&self.atr))
            .field("job", &self.job)
            .field("profile", &self.profile)
            .field("stock", &self.stock)
            // Redacted by `Record`'s own Debug: names, no values.
            .field("record", &self.record)
            .finish()
    }
}

/// Secrets the cardholder must receive, generated during issuance (random
/// PIN/PUK); the service keeps them sealed in the job output.
#[derive(Debug)]
pub struct IssuedSecrets {
    pub pin: Option<vsc::secret::SecretBytes>,
    pub puk: Option<vsc::secret::SecretBytes>,
}

/// How one card's issuance ended.
#[derive(Debug)]
pub struct Finished {
    pub outcome: CardOutcome,
    /// The card's chip serial, once round trip 1 identified it.
    pub serial: Option<u32>,
    /// Round trips between keyserver and station for this card.
    pub round_trips: u32,
    /// The master VSC's seal, if it was sealed.
    pub sealed: Option<SealReceipt>,
    pub secrets: Option<IssuedSecrets>,
}

/// What the engine wants after a reply.
#[derive(Debug)]
pub enum Next {
    /// Run this script and reply.
    Script(crate::script::Script),
    /// The card is done.
    Done(Finished),
}

/// One card's issuance, between round trips.
pub trait CardSession: Send {
    /// The station's reply to the last script.
    fn on_reply(&mut self, reply: crate::script::Reply) -> Next;
    /// Ends the session without a reply (station gone, malformed message,
    /// shutdown): the card is void with `reason`.
    fn abort(&mut self, reason: &str) -> Finished;
}

/// A record's field that breaks the profile's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

/// The issuance engine the service drives.
pub trait CardEngine: Send + Sync {
    /// The profile ids the engine knows.
    fn profiles(&self) -> Vec<String>;
    /// The field names a profile reads from a record.
    fn profile_fields(&self, profile: &str) -> Option<Vec<String>>;
    /// Checks a record against its profile, before it is queued.
    fn check_record(&self, profile: &str, record: &crate::record::Record) -> Result<(), Vec<FieldError>>;
    /// Starts a card: round trip 1's script, or an immediate end (e.g. an
    /// unknown profile).
    fn start(&self, request: CardRequest) -> Result<(Box<dyn CardSession>, crate::script::Script), Finished>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_request_shows_no_field_value() {
        let request = CardRequest {
            request_id: "req-1".into(),
            station: "desk-1".into(),
            reader: "sim 0".into(),
            atr: vec![0x3B, 0x88],
            job: "job-1".into(),
            profile: "piv-escrow".into(),
            stock: "default".into(),
            record: crate::record::Record {
                id: "r1".into(),
                fields: [("pin".to_string(), "24681357".to_string())]
                    .into_iter()
                    .collect(),
            },
        };
        for shown in [format!("{request:?}"), format!("{request:#?}")] {
            assert!(!shown.contains("24681357"), "{shown}");
            assert!(
                shown.contains("pin") && shown.contains("req-1") && shown.contains("3B88"),
                "{shown}"
            );
        }
    }
}
