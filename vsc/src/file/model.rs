//! The content of a VSC in this field's words: the header with its attributes
//! and file hierarchy, data objects, secret keys and password verifiers.
//!
//! The byte values given for enumerations are the values stored in the file
//! (see `FORMAT.md`); they never change within format major version 1.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::VscError;
use crate::secret::SecretBytes;

/// Most bytes in a label, type, key id or object name.
pub const MAX_TEXT_LEN: usize = 255;
/// Most FIDs in an EF path, the MF included.
pub const MAX_PATH_LEN: usize = 8;
/// Deepest DF nesting in the hierarchy (the MF is depth 1).
pub const MAX_DF_DEPTH: usize = 8;
/// Most nodes (DFs and EFs, the MF included) in the hierarchy.
pub const MAX_NODES: usize = 1024;
/// Most chip serials in the attributes.
pub const MAX_CHIP_SERIALS: usize = 64;
/// Most bytes in one chip serial.
pub const MAX_SERIAL_LEN: usize = 64;
/// The FID of the master file, the root of every hierarchy.
pub const MF_FID: u16 = 0x3F00;

/// The unique identifier of a VSC: 16 random bytes chosen at creation, never
/// changed afterwards (the keys of the file are bound to it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid([u8; 16]);

impl Uid {
    pub const LEN: usize = 16;

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Uid(bytes)
    }

    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Uid(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({self})")
    }
}

/// Whether the VSC may be used as a card. A disabled VSC is kept as a back-up
/// and enabled only in an emergency (seed 002).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// `01`
    Active,
    /// `02`
    Disabled,
}

/// Why this VSC exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `01`: the master VSC built by the keyserver, the escrow copy.
    Master,
    /// `02`: a back-up copy of a real card's objects.
    Backup,
    /// `03`: a temporary card standing in for a lost one.
    Temporary,
    /// `04`: a software chip: card stock that stands in for a physical card
    /// in tests and demos, and the card personalized from it.
    Chip,
}

/// The attributes in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub state: State,
    pub origin: Origin,
    /// Creation time, seconds since 1970-01-01T00:00:00Z.
    pub created_at: u64,
    /// Serial numbers of the chips this VSC was written to, oldest first.
    pub chip_serials: Vec<Vec<u8>>,
}

/// Which area holds an EF's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EfArea {
    /// `03`: the public area (no access conditions on the file, in clear).
    Public,
    /// `04`: the private area (encrypted).
    Private,
}

/// An access rule of an EF for one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessRule {
    /// `00`: no condition.
    Always,
    /// `01`: after a successful PIN verification.
    Pin,
    /// `02`: never through the card interface.
    Never,
}

/// An elementary file in the hierarchy, with its access conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ef {
    pub fid: u16,
    pub area: EfArea,
    pub read: AccessRule,
    pub update: AccessRule,
    /// Bytes allocated for the content; a data object for this EF may not
    /// be longer.
    pub size: u32,
}

/// A node of the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Df(Df),
    Ef(Ef),
}

impl Node {
    pub fn fid(&self) -> u16 {
        match self {
            Node::Df(d) => d.fid,
            Node::Ef(e) => e.fid,
        }
    }
}

/// A dedicated file: a directory of the card's file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Df {
    pub fid: u16,
    /// The DF name (an application identifier), 1 to 16 bytes, if any.
    pub name: Option<Vec<u8>>,
    pub children: Vec<Node>,
}

impl Df {
    /// An empty master file, `3F00`.
    pub fn master_file() -> Df {
        Df {
            fid: MF_FID,
            name: None,
            children: Vec::new(),
        }
    }

    /// The EF at `path` (which starts with this DF's FID).
    pub fn find_ef(&self, path: &[u16]) -> Option<&Ef> {
        let (first, rest) = path.split_first()?;
        if *first != self.fid {
            return None;
        }
        let (next, tail) = rest.split_first()?;
        self.children.iter().find_map(|c| match c {
            Node::Ef(e) if e.fid == *next && tail.is_empty() => Some(e),
            Node::Df(d) if d.fid == *next => d.find_ef(rest),
            _ => None,
        })
    }

    /// Checks the rules of the format: the root is the MF, sibling FIDs are
    /// unique, `3F00`/`3FFF`/`FFFF` are not used below the root, DF names are
    /// 1..=16 bytes, at most [`MAX_DF_DEPTH`] levels and [`MAX_NODES`] nodes.
    pub fn validate_as_root(&self) -> Result<(), String> {
        if self.fid != MF_FID {
            return Err(format!("the root must be the MF 3F00, not {:04X}", self.fid));
        }
        let mut nodes = 0usize;
        self.validate_at(1, &mut nodes)
    }

    fn validate_at(&self, depth: usize, nodes: &mut usize) -> Result<(), String> {
        if depth > MAX_DF_DEPTH {
            return Err(format!("DFs nested deeper than {MAX_DF_DEPTH} levels"));
        }
        *nodes += 1;
        if let Some(name) = &self.name {
            if name.is_empty() || name.len() > 16 {
                return Err(format!("DF {:04X}: a DF name has 1 to 16 bytes", self.fid));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.children {
            let fid = c.fid();
            if matches!(fid, 0x3F00 | 0x3FFF | 0xFFFF) {
                return Err(format!("FID {fid:04X} is reserved and cannot be a child"));
            }
            if !seen.insert(fid) {
                return Err(format!("DF {:04X} has two children with FID {fid:04X}", self.fid));
            }
            match c {
                Node::Df(d) => d.validate_at(depth + 1, nodes)?,
                Node::Ef(_) => *nodes += 1,
            }
            if *nodes > MAX_NODES {
                return Err(format!("more than {MAX_NODES} files in the hierarchy"));
            }
        }
        Ok(())
    }
}

/// The header of a VSC (seed 002: unique identifier, label, type,
/// attributes, file hierarchy with access conditions). The structure part of
/// the header is computed when the file is written; see
/// [`AreaStructure`](super::AreaStructure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub uid: Uid,
    /// A name for people, e.g. `VSC 00001079`.
    pub label: String,
    /// The type: the issuance profile id the VSC was built from.
    pub card_type: String,
    pub attributes: Attributes,
    /// The card's file system: the MF and everything below it.
    pub hierarchy: Df,
}

/// Checks a text field: 1..=255 bytes of UTF-8 without control characters.
pub(crate) fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(format!(
            "has {} bytes; at most {MAX_TEXT_LEN} are allowed",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

impl Header {
    /// Checks every header rule of the format.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_text(&self.label).map_err(|p| ("label", p))?;
        check_text(&self.card_type).map_err(|p| ("type", p))?;
        let serials = &self.attributes.chip_serials;
        if serials.len() > MAX_CHIP_SERIALS {
            return Err((
                "chip serials",
                format!(
                    "{} serials; at most {MAX_CHIP_SERIALS} are allowed",
                    serials.len()
                ),
            ));
        }
        if serials.iter().any(|s| s.is_empty() || s.len() > MAX_SERIAL_LEN) {
            return Err((
                "chip serials",
                format!("a chip serial has 1 to {MAX_SERIAL_LEN} bytes"),
            ));
        }
        self.hierarchy.validate_as_root().map_err(|p| ("hierarchy", p))
    }
}

/// The identifier of a data object in the public or private area.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectId {
    /// A PIV data object by its BER tag, e.g. `0x5FC105` (X.509 certificate
    /// for PIV authentication).
    Piv(u32),
    /// An EF by its FID path from the MF, the MF included:
    /// `[0x3F00, 0x5015, 0x4401]`. The EF must exist in the header's
    /// hierarchy, be assigned to the area holding the object, and be large
    /// enough for the value.
    File(Vec<u16>),
    /// A GlobalPlatform data object by its tag, e.g. `0x9F7F` (CPLC).
    Gp(u32),
    /// Any other object, by name (1..=255 bytes of UTF-8, no control
    /// characters).
    Named(String),
}

impl ObjectId {
    /// Checks the rules for identifiers (not the hierarchy).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ObjectId::Piv(_) | ObjectId::Gp(_) => Ok(()),
            ObjectId::File(p) => {
                if p.is_empty() || p.len() > MAX_PATH_LEN {
                    Err(format!("an EF path has 1 to {MAX_PATH_LEN} FIDs"))
                } else if p.first() != Some(&MF_FID) {
                    Err("an EF path starts with the MF, 3F00".into())
                } else {
                    Ok(())
                }
            }
            ObjectId::Named(n) => check_text(n).map_err(|p| format!("object name {p}")),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectId::Piv(t) => write!(f, "PIV {t:02X}"),
            ObjectId::File(p) => {
                f.write_str("EF ")?;
                for (i, fid) in p.iter().enumerate() {
                    if i > 0 {
                        f.write_str("/")?;
                    }
                    write!(f, "{fid:04X}")?;
                }
                Ok(())
            }
            ObjectId::Gp(t) => write!(f, "GP {t:02X}"),
            ObjectId::Named(n) => write!(f, "{:?}", n),
        }
    }
}

/// A data object: an identifier and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataObject {
    pub id: ObjectId,
    pub value: Vec<u8>,
}

impl DataObject {
    pub fn new(id: ObjectId, value: impl Into<Vec<u8>>) -> Self {
        DataObject {
            id,
            value: value.into(),
        }
    }
}

/// Which key a secret key entry is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRef {
    /// A PIV key reference: `9A` authentication, `9B` card management key,
    /// `9C` signature, `9D` key management, `9E` card authentication,
    /// `82`–`95` retired key management keys.
    PivSlot(u8),
    /// A GlobalPlatform SCP03 key by key version number and key identifier
    /// (1 ENC, 2 MAC, 3 DEK).
    Scp03 { kvn: u8, kid: u8 },
    /// Any other key, by name.
    Named(String),
}

impl KeyRef {
    /// Whether `slot` is a PIV key reference this format knows.
    pub fn is_known_piv_slot(slot: u8) -> bool {
        matches!(slot, 0x9A..=0x9E | 0x82..=0x95)
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            KeyRef::PivSlot(s) if !KeyRef::is_known_piv_slot(*s) => {
                Err(format!("{s:02X} is not a PIV key reference (9A-9E, 82-95)"))
            }
            KeyRef::Named(n) => check_text(n).map_err(|p| format!("key name {p}")),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::PivSlot(s) => write!(f, "PIV {s:02X}"),
            KeyRef::Scp03 { kvn, kid } => write!(f, "SCP03 KVN {kvn:02X} KID {kid:02X}"),
            KeyRef::Named(n) => write!(f, "{n:?}"),
        }
    }
}

macro_rules! byte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A value this version has no name for, kept as it was read.
            /// Construct it only for values without a name.
            Other(u8),
        }

        impl $name {
            pub fn from_byte(b: u8) -> Self {
                match b {
                    $($val => $name::$var,)*
                    other => $name::Other(other),
                }
            }

            pub fn to_byte(self) -> u8 {
                match self {
                    $($name::$var => $val,)*
                    $name::Other(b) => b,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var => f.write_str($text),)*
                    $name::Other(b) => write!(f, "unknown ({b:02X})"),
                }
            }
        }
    };
}

byte_enum! {
    /// A key algorithm by its PIV algorithm identifier (SP 800-78-4, with
    /// the widely used vendor values for RSA 3072/4096, Ed25519 and X25519).
    KeyAlgorithm {
        /// `03`: three-key Triple DES (24 bytes).
        Tdes = 0x03 => "3DES",
        /// `05`: RSA 3072.
        Rsa3072 = 0x05 => "RSA 3072",
        /// `06`: RSA 1024.
        Rsa1024 = 0x06 => "RSA 1024",
        /// `07`: RSA 2048.
        Rsa2048 = 0x07 => "RSA 2048",
        /// `08`: AES-128.
        Aes128 = 0x08 => "AES-128",
        /// `0A`: AES-192.
        Aes192 = 0x0A => "AES-192",
        /// `0C`: AES-256.
        Aes256 = 0x0C => "AES-256",
        /// `11`: ECC P-256.
        EccP256 = 0x11 => "ECC P-256",
        /// `14`: ECC P-384.
        EccP384 = 0x14 => "ECC P-384",
        /// `16`: RSA 4096.
        Rsa4096 = 0x16 => "RSA 4096",
        /// `E0`: Ed25519.
        Ed25519 = 0xE0 => "Ed25519",
        /// `E1`: X25519.
        X25519 = 0xE1 => "X25519",
    }
}

impl KeyAlgorithm {
    /// The key length in bytes of a symmetric algorithm; `None` for
    /// asymmetric and unknown ones.
    pub fn symmetric_key_len(self) -> Option<usize> {
        match self {
            KeyAlgorithm::Tdes => Some(24),
            KeyAlgorithm::Aes128 => Some(16),
            KeyAlgorithm::Aes192 => Some(24),
            KeyAlgorithm::Aes256 => Some(32),
            _ => None,
        }
    }

    /// Whether the material is a PKCS#8 DER private key.
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, KeyAlgorithm::Other(_)) && self.symmetric_key_len().is_none()
    }
}

byte_enum! {
    /// When the card asks for the PIN before using a key (the values of the
    /// common PIV extension).
    PinPolicy {
        /// `00`: the slot's default.
        Default = 0x00 => "default",
        /// `01`: never.
        Never = 0x01 => "never",
        /// `02`: once per session.
        Once = 0x02 => "once",
        /// `03`: for every use.
        Always = 0x03 => "always",
    }
}

byte_enum! {
    /// Whether using a key needs a touch on the token.
    TouchPolicy {
        /// `00`: the slot's default.
        Default = 0x00 => "default",
        /// `01`: never.
        Never = 0x01 => "never",
        /// `02`: for every use.
        Always = 0x02 => "always",
        /// `03`: cached for 15 seconds.
        Cached = 0x03 => "cached",
    }
}

/// Where a key was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyOrigin {
    /// `01`: generated on this master VSC (the escrow copy).
    GeneratedOnMaster,
    /// `02`: imported from elsewhere.
    Imported,
    /// `03`: generated by the card runtime itself (GENERATE ASYMMETRIC KEY
    /// PAIR on a software chip); it never existed outside this VSC.
    GeneratedOnCard,
}

/// The attributes of a secret key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAttributes {
    pub origin: KeyOrigin,
    pub pin_policy: PinPolicy,
    pub touch_policy: TouchPolicy,
}

/// An entry of the secret key area. The material is private to this type:
/// it is read only through the deliberately named
/// [`SecretKeyEntry::material_for_card_personalization`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKeyEntry {
    pub id: KeyRef,
    pub algorithm: KeyAlgorithm,
    material: SecretBytes,
    pub attributes: KeyAttributes,
}

impl SecretKeyEntry {
    /// A key entry. `material` is PKCS#8 DER for an asymmetric algorithm,
    /// the raw key bytes for a symmetric one. Checked: the key reference,
    /// the key length of a symmetric algorithm, a DER SEQUENCE for an
    /// asymmetric one.
    pub fn new(
        id: KeyRef,
        algorithm: KeyAlgorithm,
        material: SecretBytes,
        attributes: KeyAttributes,
    ) -> Result<Self, VscError> {
        id.validate().map_err(|p| VscError::invalid("key reference", p))?;
        check_material(algorithm, &material).map_err(|p| VscError::invalid("key material", p))?;
        Ok(SecretKeyEntry {
            id,
            algorithm,
            material,
            attributes,
        })
    }

    /// Built by the reader, which is lenient about key references and
    /// algorithms a later version may add, strict about the material.
    pub(crate) fn from_parts(
        id: KeyRef,
        algorithm: KeyAlgorithm,
        material: SecretBytes,
        attributes: KeyAttributes,
    ) -> Result<Self, String> {
        if let KeyRef::Named(n) = &id {
            check_text(n).map_err(|p| format!("key name {p}"))?;
        }
        check_material(algorithm, &material)?;
        Ok(SecretKeyEntry {
            id,
            algorithm,
            material,
            attributes,
        })
    }

    /// The key material, for the one purpose the VSC design allows it to
    /// leave the secret key area: the keyserver personalizing a real card
    /// from its master VSC (and the card runtime using the key). Never log,
    /// print or store it elsewhere.
    pub fn material_for_card_personalization(&self) -> &SecretBytes {
        &self.material
    }

    pub(crate) fn material(&self) -> &SecretBytes {
        &self.material
    }
}

impl fmt::Debug for SecretKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyEntry")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("material", &self.material)
            .field("attributes", &self.attributes)
            .finish()
    }
}

fn check_material(algorithm: KeyAlgorithm, material: &SecretBytes) -> Result<(), String> {
    let m = material.expose_secret();
    if let Some(len) = algorithm.symmetric_key_len() {
        if m.len() != len {
            return Err(format!("{algorithm} needs {len} key bytes, not {}", m.len()));
        }
    } else if algorithm.is_asymmetric() {
        let ok = crate::codec::TlvRef::parse_single(m)
            .map(|t| t.tag.raw() == 0x30)
            .unwrap_or(false);
        if !ok {
            return Err(format!("{algorithm} material must be one PKCS#8 DER SEQUENCE"));
        }
    } else if m.is_empty() {
        return Err("key material is empty".into());
    }
    Ok(())
}

byte_enum! {
    /// Which secret a password entry verifies (ISO 7816-4 / PIV key
    /// references).
    PasswordRef {
        /// `80`: the PIN.
        Pin = 0x80 => "PIN",
        /// `81`: the PUK.
        Puk = 0x81 => "PUK",
    }
}

type HmacSha256 = Hmac<Sha256>;

/// A salted verifier: HMAC-SHA256 of the secret under a random 32-byte key
/// drawn each time the secret is set. Both live only inside the encrypted
/// password area.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    key: SecretBytes,
    mac: SecretBytes,
}

impl Verifier {
    pub(crate) const KEY_LEN: usize = 32;
    pub(crate) const MAC_LEN: usize = 32;

    fn compute(key: &SecretBytes, secret: &SecretBytes) -> SecretBytes {
        // HMAC accepts keys of any length; this cannot fail.
        let Ok(mut m) = HmacSha256::new_from_slice(key.expose_secret()) else {
            return SecretBytes::default();
        };
        m.update(secret.expose_secret());
        SecretBytes::new(m.finalize().into_bytes().to_vec())
    }

    fn new(secret: &SecretBytes, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let key = SecretBytes::random(rng, Self::KEY_LEN);
        let mac = Self::compute(&key, secret);
        Verifier { key, mac }
    }

    fn matches(&self, candidate: &SecretBytes) -> bool {
        Self::compute(&self.key, candidate).ct_eq(&self.mac).into()
    }

    pub(crate) fn from_parts(key: SecretBytes, mac: SecretBytes) -> Self {
        Verifier { key, mac }
    }

    pub(crate) fn key(&self) -> &SecretBytes {
        &self.key
    }

    pub(crate) fn mac(&self) -> &SecretBytes {
        &self.mac
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(HMAC-SHA256, [REDACTED])")
    }
}

/// An entry of the password area: a verifier for a PIN, PUK or password with
/// its retry counter and length policy. The retry policy itself belongs to
/// the card runtime; this type only keeps the counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordEntry {
    pub id: PasswordRef,
    verifier: Verifier,
    max_retries: u8,
    retries_left: u8,
    min_len: u8,
    max_len: u8,
}

impl PasswordEntry {
    /// An entry for `secret`, with all retries left. Checked: `1 <=
    /// max_retries`, `1 <= min_len <= max_len`, the secret's length within.
    pub fn new(
        id: PasswordRef,
        secret: &SecretBytes,
        max_retries: u8,
        min_len: u8,
        max_len: u8,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, VscError> {
        check_policy(max_retries, max_retries, min_len, max_len)
            .map_err(|p| VscError::invalid("password policy", p))?;
        let mut e = PasswordEntry {
            id,
            verifier: Verifier::new(&SecretBytes::default(), rng),
            max_retries,
            retries_left: max_retries,
            min_len,
            max_len,
        };
        e.set(secret, rng)?;
        Ok(e)
    }

    pub(crate) fn from_parts(
        id: PasswordRef,
        verifier: Verifier,
        max_retries: u8,
        retries_left: u8,
        min_len: u8,
        max_len: u8,
    ) -> Result<Self, String> {
        check_policy(max_retries, retries_left, min_len, max_len)?;
        Ok(PasswordEntry {
            id,
            verifier,
            max_retries,
            retries_left,
            min_len,
            max_len,
        })
    }

    /// Sets a new secret (a fresh verifier key is drawn) and resets the
    /// retry counter. The length must be within the policy.
    pub fn set(
        &mut self,
        secret: &SecretBytes,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(), VscError> {
        let len = secret.len();
        if len < usize::from(self.min_len) || len > usize::from(self.max_len) {
            return Err(VscError::invalid(
                "password",
                format!(
                    "{} must have {} to {} bytes, not {len}",
                    self.id, self.min_len, self.max_len
                ),
            ));
        }
        self.verifier = Verifier::new(secret, rng);
        self.retries_left = self.max_retries;
        Ok(())
    }

    /// Whether `candidate` is the secret, compared in constant time. Does not
    /// touch the retry counter; a blocked entry still answers.
    pub fn check(&self, candidate: &SecretBytes) -> bool {
        self.verifier.matches(candidate)
    }

    /// Counts one failed try; returns the tries left (never below 0).
    pub fn decrement(&mut self) -> u8 {
        self.retries_left = self.retries_left.saturating_sub(1);
        self.retries_left
    }

    /// Restores all tries (after a successful verification or unblock).
    pub fn reset_retries(&mut self) {
        self.retries_left = self.max_retries;
    }

    pub fn is_blocked(&self) -> bool {
        self.retries_left == 0
    }

    pub fn max_retries(&self) -> u8 {
        self.max_retries
    }

    pub fn retries_left(&self) -> u8 {
        self.retries_left
    }

    pub fn min_len(&self) -> u8 {
        self.min_len
    }

    pub fn max_len(&self) -> u8 {
        self.max_len
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

fn check_policy(max_retries: u8, retries_left: u8, min_len: u8, max_len: u8) -> Result<(), String> {
    if max_retries == 0 {
        return Err("at least one retry must be allowed".into());
    }
    if retries_left > max_retries {
        return Err(format!(
            "{retries_left} retries left exceeds the maximum {max_retries}"
        ));
    }
    if min_len == 0 || min_len > max_len {
        return Err(format!(
            "length policy {min_len}..={max_len} is not 1 <= min <= max"
        ));
    }
    Ok(())
}
