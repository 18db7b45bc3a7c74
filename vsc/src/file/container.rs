//! The container: framing, the consistency check, [`VscFile::inspect`],
//! [`Vsc`] with its areas, writing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::codec::{Tag, Tlv, TlvRef};
use crate::secret::SecretBytes;

use super::crypto::{self, FileKeys};
use super::encode::{self, body, AreaStructure};
use super::error::{AreaId, ContentError, IoOp, Section, VscError};
use super::model::{
    Attributes, DataObject, Df, EfArea, Header, KeyRef, ObjectId, Origin, PasswordEntry, PasswordRef,
    SecretKeyEntry, State, Uid,
};
use super::save::{self, SaveMode};
use super::slots::{Argon2Params, KeySlot, Protector, SlotInfo, SlotKind, Unlock, MAX_SLOTS};
use super::tlvio;

/// The first 8 bytes of every VSC file: `89 56 53 43 0D 0A 1A 0A`
/// (`\x89VSC\r\n\x1a\n`). The high byte catches 7-bit transfers, CR LF and
/// the lone LF catch newline conversion, `1A` stops `type` on DOS.
pub const MAGIC: [u8; 8] = [0x89, b'V', b'S', b'C', 0x0D, 0x0A, 0x1A, 0x0A];
/// The format major version this code reads and writes.
pub const FORMAT_MAJOR: u16 = 1;
/// The format minor version this code writes (and the newest it knows).
pub const FORMAT_MINOR: u16 = 0;
/// Magic, major, minor, body length.
pub const PREFIX_LEN: usize = 16;
/// File authentication tag (HMAC-SHA256) and integrity digest (SHA-256).
pub const TRAILER_LEN: usize = 64;
/// The largest VSC file, in bytes; larger files are refused unread.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;
const MIN_FILE_LEN: u64 = (PREFIX_LEN + TRAILER_LEN) as u64;

/// The framing of a file whose prefix, length and digest checked out.
struct Frame<'a> {
    minor: u16,
    /// Bytes 8..12: major and minor, the version part of every area's AAD.
    version: [u8; 4],
    /// Bytes covered by the file authentication tag: prefix and body.
    authenticated: &'a [u8],
    body: &'a [u8],
    mac: &'a [u8],
}

fn check_frame(bytes: &[u8]) -> Result<Frame<'_>, VscError> {
    let actual = bytes.len() as u64;
    if actual > MAX_FILE_SIZE {
        return Err(VscError::TooLarge {
            size: actual,
            max: MAX_FILE_SIZE,
        });
    }
    let head = bytes.get(..bytes.len().min(MAGIC.len())).unwrap_or(&[]);
    if Some(head) != MAGIC.get(..head.len()) {
        return Err(VscError::BadMagic);
    }
    let truncated = || VscError::Truncated {
        expected: MIN_FILE_LEN,
        actual,
    };
    let version: [u8; 4] = bytes
        .get(8..12)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(truncated)?;
    let [a, b, c, d] = version;
    let (major, minor) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    if major != FORMAT_MAJOR {
        return Err(VscError::UnsupportedVersion { major, minor });
    }
    let len: [u8; 4] = bytes
        .get(12..16)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(truncated)?;
    let body_len = u32::from_be_bytes(len);
    let expected = MIN_FILE_LEN + u64::from(body_len);
    if actual < expected {
        return Err(VscError::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(VscError::TrailingBytes {
            count: actual - expected,
        });
    }
    // From here on the length is exact: every split below succeeds.
    let bad = || VscError::Truncated { expected, actual };
    let (digested, digest) = bytes.split_at_checked(bytes.len() - 32).ok_or_else(bad)?;
    if crypto::sha256(digested).as_slice() != digest {
        return Err(VscError::IntegrityDigestMismatch);
    }
    let (authenticated, mac) = digested.split_at_checked(digested.len() - 32).ok_or_else(bad)?;
    let body = authenticated.get(PREFIX_LEN..).ok_or_else(bad)?;
    Ok(Frame {
        minor,
        version,
        authenticated,
        body,
        mac,
    })
}

fn section_of(tag: Tag) -> Option<Section> {
    Some(match tag {
        t if t == body::HEADER => Section::Header,
        t if t == body::KEY_SLOTS => Section::KeySlots,
        t if t == body::PUBLIC => Section::PublicArea,
        t if t == body::PRIVATE => Section::PrivateArea,
        t if t == body::SECRET_KEYS => Section::SecretKeyArea,
        t if t == body::PASSWORDS => Section::PasswordArea,
        _ => return None,
    })
}

/// The six sections, each once and in order. Unknown top-level objects are
/// an error unless the file's minor version is newer than this reader's.
fn split_sections(body: &[u8], lenient: bool) -> Result<[TlvRef<'_>; 6], VscError> {
    // Parse the whole body at once so that error offsets count from its
    // start; on failure, find the section the broken object would have been.
    let items = match TlvRef::parse_all(body) {
        Ok(items) => items,
        Err(e) => {
            let mut rest = body;
            let mut seen = 0usize;
            while let Ok((_, r)) = TlvRef::parse_prefix(rest) {
                seen += 1;
                rest = r;
            }
            let section = Section::ALL.get(seen).copied().unwrap_or(Section::PasswordArea);
            return Err(VscError::MalformedBody {
                section,
                source: e.into(),
            });
        }
    };
    let base = body.as_ptr() as usize;
    let mut pos = 0usize;
    let mut found: Vec<(Section, TlvRef<'_>)> = Vec::new();
    for t in items {
        let value_start = (t.value.as_ptr() as usize).wrapping_sub(base);
        let minimal = pos + tlvio::encoded_header_len(t.tag, t.value.len()) == value_start;
        pos = value_start + t.value.len();
        let section = section_of(t.tag);
        if !minimal {
            return Err(VscError::MalformedBody {
                section: section.unwrap_or(Section::Header),
                source: ContentError::NonMinimalLength,
            });
        }
        match section {
            Some(s) => found.push((s, t)),
            None if lenient => {}
            None => return Err(VscError::UnknownSection { tag: t.tag }),
        }
    }
    for (i, (s, _)) in found.iter().enumerate() {
        if found.iter().take(i).any(|(p, _)| p == s) {
            return Err(VscError::DuplicateSection { section: *s });
        }
    }
    for pair in found.windows(2) {
        if let [(a, _), (b, _)] = pair {
            if b < a {
                return Err(VscError::SectionOutOfOrder {
                    section: *b,
                    after: *a,
                });
            }
        }
    }
    let get = |s: Section| {
        found
            .iter()
            .find(|(p, _)| *p == s)
            .map(|(_, t)| *t)
            .ok_or(VscError::MissingSection { section: s })
    };
    Ok([
        get(Section::Header)?,
        get(Section::KeySlots)?,
        get(Section::PublicArea)?,
        get(Section::PrivateArea)?,
        get(Section::SecretKeyArea)?,
        get(Section::PasswordArea)?,
    ])
}

fn body_error(section: Section, e: ContentError) -> VscError {
    VscError::MalformedBody { section, source: e }
}

/// Everything the check establishes without a key.
struct Unauthenticated<'a> {
    frame: Frame<'a>,
    header: Header,
    structure: Vec<AreaStructure>,
    slots: Vec<KeySlot>,
    public: BTreeMap<ObjectId, Vec<u8>>,
    /// Nonce and ciphertext of the private, secret key and password areas.
    sealed: [([u8; 12], &'a [u8]); 3],
}

/// The key-less part of the consistency check, in the documented order.
fn check_unauthenticated(bytes: &[u8]) -> Result<Unauthenticated<'_>, VscError> {
    let frame = check_frame(bytes)?;
    let lenient = frame.minor > FORMAT_MINOR;
    let [h, s, public, private, secret_keys, passwords] = split_sections(frame.body, lenient)?;

    let (header, structure) = encode::decode_header(&h, lenient).map_err(|e| {
        if e.is_structural() {
            body_error(Section::Header, e)
        } else {
            VscError::BadHeader {
                field: e.field(),
                problem: e.to_string(),
            }
        }
    })?;

    let slots = encode::decode_slots(&s, lenient).map_err(|(index, e)| {
        if e.is_structural() {
            body_error(Section::KeySlots, e)
        } else {
            VscError::BadSlot {
                index,
                problem: e.to_string(),
            }
        }
    })?;
    if slots.is_empty() || slots.len() > MAX_SLOTS {
        return Err(VscError::BadSlot {
            index: 0,
            problem: format!("a VSC has 1 to {MAX_SLOTS} key slots, not {}", slots.len()),
        });
    }
    for (index, slot) in slots.iter().enumerate() {
        match &slot.kind {
            SlotKind::Password { params, .. } => params.check_bounds(index)?,
            SlotKind::Kek { key_id } => {
                let twice = slots
                    .iter()
                    .take(index)
                    .any(|o| matches!(&o.kind, SlotKind::Kek { key_id: k } if k == key_id));
                if twice {
                    return Err(VscError::BadSlot {
                        index,
                        problem: format!("KEK id {key_id:?} is used by an earlier slot"),
                    });
                }
            }
        }
    }
    // Each password slot is within bounds, and so is their sum: a hostile
    // file must not make an unlock run Argon2 for minutes.
    let work: u64 = slots
        .iter()
        .filter_map(|s| match &s.kind {
            SlotKind::Password { params, .. } => Some(params.work_kib_passes()),
            SlotKind::Kek { .. } => None,
        })
        .sum();
    if work > Argon2Params::MAX_TOTAL_WORK_KIB_PASSES {
        return Err(VscError::KdfBudgetExceeded {
            work_kib_passes: work,
            budget_kib_passes: Argon2Params::MAX_TOTAL_WORK_KIB_PASSES,
        });
    }

    let mut sealed = [([0u8; 12], &[][..]); 3];
    for (slot, (t, area)) in sealed.iter_mut().zip([
        (private, AreaId::Private),
        (secret_keys, AreaId::SecretKeys),
        (passwords, AreaId::Passwords),
    ]) {
        *slot = encode::decode_sealed(&t, lenient).map_err(|e| body_error(area.section(), e))?;
    }
    let stored = [
        public.value.len(),
        sealed[0].1.len(),
        sealed[1].1.len(),
        sealed[2].1.len(),
    ];
    for (s, len) in structure.iter().zip(stored) {
        if s.stored_len as usize != len {
            return Err(VscError::BadHeader {
                field: "structure",
                problem: format!(
                    "the {} is recorded as {} bytes but has {len}",
                    s.area, s.stored_len
                ),
            });
        }
    }

    let items = tlvio::children(&public).map_err(|e| body_error(Section::PublicArea, e))?;
    let public_objects =
        encode::decode_objects(items, lenient, &header.hierarchy, EfArea::Public).map_err(|e| {
            if e.is_structural() {
                body_error(Section::PublicArea, e)
            } else {
                VscError::MalformedArea {
                    area: AreaId::Public,
                    source: e,
                }
            }
        })?;
    check_count(&structure, AreaId::Public, public_objects.len())?;

    Ok(Unauthenticated {
        frame,
        header,
        structure,
        slots,
        public: public_objects,
        sealed,
    })
}

fn check_count(structure: &[AreaStructure], area: AreaId, count: usize) -> Result<(), VscError> {
    let recorded = structure
        .iter()
        .find(|s| s.area == area)
        .map(|s| s.object_count as usize);
    if recorded == Some(count) {
        Ok(())
    } else {
        Err(VscError::MalformedArea {
            area,
            source: ContentError::invalid(
                "object count",
                format!(
                    "the header's structure records {} objects, the area has {count}",
                    recorded.unwrap_or(0)
                ),
            ),
        })
    }
}

fn area_aad(version: &[u8; 4], uid: &Uid, area: AreaId) -> Vec<u8> {
    let mut aad = version.to_vec();
    aad.extend_from_slice(uid.as_bytes());
    aad.push(area.to_byte());
    aad
}

/// What [`VscFile::inspect`] found: the checks possible without a key
/// passed. **The public area here is checked for integrity (SHA-256, which
/// anyone can recompute) but not authenticated**: only [`Vsc::open`] with a
/// key proves it was written by a holder of the file's key.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// Major and minor version from the prefix.
    pub format_version: (u16, u16),
    pub header: Header,
    pub structure: Vec<AreaStructure>,
    pub slots: Vec<SlotInfo>,
    /// The public area: integrity-checked, NOT authenticated.
    pub public_area_unauthenticated: BTreeMap<ObjectId, Vec<u8>>,
}

/// The VSC file format without a key.
pub struct VscFile;

impl VscFile {
    /// Runs every check that needs no key — magic, version, length, the
    /// SHA-256 integrity digest, body structure and section order, header,
    /// key slot descriptors (with the Argon2 bounds), the public area's
    /// structure — and returns what they read. See [`Inspection`] for what
    /// this does not prove.
    pub fn inspect(bytes: &[u8]) -> Result<Inspection, VscError> {
        let u = check_unauthenticated(bytes)?;
        let [a, b, c, d] = u.frame.version;
        Ok(Inspection {
            format_version: (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])),
            slots: u.slots.iter().map(KeySlot::info).collect(),
            header: u.header,
            structure: u.structure,
            public_area_unauthenticated: u.public,
        })
    }

    /// [`VscFile::inspect`] of a file on disk.
    pub fn inspect_path(path: &Path) -> Result<Inspection, VscError> {
        VscFile::inspect(&VscFile::read(path)?)
    }

    /// Reads a file whole, refusing one over [`MAX_FILE_SIZE`] before
    /// reading it.
    pub fn read(path: &Path) -> Result<Vec<u8>, VscError> {
        let file = std::fs::File::open(path).map_err(|e| VscError::io(path, IoOp::Read, e))?;
        let size = file
            .metadata()
            .map_err(|e| VscError::io(path, IoOp::Stat, e))?
            .len();
        if size > MAX_FILE_SIZE {
            return Err(VscError::TooLarge {
                size,
                max: MAX_FILE_SIZE,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // The file may grow while read; never take more than one byte past the limit.
        file.take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| VscError::io(path, IoOp::Read, e))?;
        Ok(bytes)
    }
}

/// The fields of a new VSC's header; the UID is drawn by [`Vsc::create`] and
/// the state starts active.
#[derive(Clone, Debug)]
pub struct NewVsc {
    pub label: String,
    pub card_type: String,
    pub origin: Origin,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub chip_serials: Vec<Vec<u8>>,
    pub hierarchy: Df,
}

impl NewVsc {
    /// A master VSC with an empty MF and no chip serials.
    pub fn new(label: impl Into<String>, card_type: impl Into<String>, created_at: u64) -> Self {
        NewVsc {
            label: label.into(),
            card_type: card_type.into(),
            origin: Origin::Master,
            created_at,
            chip_serials: Vec::new(),
            hierarchy: Df::master_file(),
        }
    }
}

/// An opened VSC: header, key slots, the four areas and the DEK. Every
/// check passed before it was returned. Secrets are zeroized on drop; the
/// `Debug` output holds none.
pub struct Vsc {
    /// The minor version read; a newer one makes the value read-only.
    read_minor: u16,
    header: Header,
    slots: Vec<KeySlot>,
    dek: SecretBytes,
    public: BTreeMap<ObjectId, Vec<u8>>,
    private: BTreeMap<ObjectId, Vec<u8>>,
    secret_keys: BTreeMap<KeyRef, SecretKeyEntry>,
    passwords: BTreeMap<PasswordRef, PasswordEntry>,
}

impl Drop for Vsc {
    fn drop(&mut self) {
        for v in self.private.values_mut() {
            v.zeroize();
        }
        // The DEK, key material and verifiers are `SecretBytes`, zeroized
        // by their own drop.
    }
}

impl fmt::Debug for Vsc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vsc")
            .field("header", &self.header)
            .field("slots", &self.slots.iter().map(KeySlot::info).collect::<Vec<_>>())
            .field("public", &self.public.len())
            .field("private", &self.private.len())
            .field("secret_keys", &self.secret_keys.keys().collect::<Vec<_>>())
            .field("passwords", &self.passwords.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Vsc {
    /// A new, empty, active VSC protected by `protector`: a random UID and a
    /// random 32-byte DEK.
    pub fn create(
        fields: NewVsc,
        protector: &Protector,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vsc, VscError> {
        let header = Header {
            uid: Uid::random(rng),
            label: fields.label,
            card_type: fields.card_type,
            attributes: Attributes {
                state: State::Active,
                origin: fields.origin,
                created_at: fields.created_at,
                chip_serials: fields.chip_serials,
            },
            hierarchy: fields.hierarchy,
        };
        header
            .validate()
            .map_err(|(field, p)| VscError::invalid("header", format!("{field}: {p}")))?;
        let dek = SecretBytes::random(rng, crypto::KEY_LEN);
        let slot = KeySlot::wrap(&dek, &header.uid, protector, rng)?;
        Ok(Vsc {
            read_minor: FORMAT_MINOR,
            header,
            slots: vec![slot],
            dek,
            public: BTreeMap::new(),
            private: BTreeMap::new(),
            secret_keys: BTreeMap::new(),
            passwords: BTreeMap::new(),
        })
    }

    /// Opens a VSC after the whole consistency check (see `FORMAT.md`):
    /// the key-less checks of [`VscFile::inspect`], then the DEK from a slot
    /// `unlock` opens, the file authentication tag, each area's AES-GCM tag,
    /// each area's content. Any failure returns an error and nothing else.
    pub fn open(bytes: &[u8], unlock: &Unlock) -> Result<Vsc, VscError> {
        let u = check_unauthenticated(bytes)?;
        let uid = u.header.uid;
        let mut matched = false;
        let mut dek = None;
        for slot in &u.slots {
            match slot.try_unwrap(&uid, unlock)? {
                None => {}
                Some(None) => matched = true,
                Some(Some(k)) => {
                    dek = Some(k);
                    break;
                }
            }
        }
        let Some(dek) = dek else {
            return Err(if !matched {
                VscError::NoMatchingSlot {
                    offered: unlock.describe(),
                }
            } else {
                match unlock {
                    Unlock::Password(_) => VscError::WrongPassword,
                    Unlock::Kek { key_id, .. } => VscError::WrongKek {
                        key_id: key_id.clone(),
                    },
                }
            });
        };
        Vsc::open_with_dek(u, dek)
    }

    /// The checks that need the DEK.
    fn open_with_dek(u: Unauthenticated<'_>, dek: SecretBytes) -> Result<Vsc, VscError> {
        let uid = u.header.uid;
        let keys = FileKeys::derive(&dek, &uid);
        if !crypto::hmac_verify(&keys.mac, u.frame.authenticated, u.frame.mac) {
            return Err(VscError::FileAuthenticationFailed);
        }
        let mut plaintexts: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(3);
        for (area, (nonce, ct)) in AreaId::ENCRYPTED.into_iter().zip(u.sealed.iter()) {
            let pt = crypto::open(
                keys.area(area),
                nonce,
                &area_aad(&u.frame.version, &uid, area),
                ct,
            )
            .ok_or(VscError::AreaAuthenticationFailed { area })?;
            plaintexts.push(pt);
        }
        let lenient = u.frame.minor > FORMAT_MINOR;
        let malformed = |area| move |source| VscError::MalformedArea { area, source };
        let empty = Zeroizing::new(Vec::new());
        let pt = |i: usize| plaintexts.get(i).unwrap_or(&empty);

        let private_items = tlvio::seq(pt(0)).map_err(malformed(AreaId::Private))?;
        let private = encode::decode_objects(private_items, lenient, &u.header.hierarchy, EfArea::Private)
            .map_err(malformed(AreaId::Private))?;
        check_count(&u.structure, AreaId::Private, private.len())?;
        let secret_keys = encode::decode_keys(pt(1), lenient).map_err(malformed(AreaId::SecretKeys))?;
        check_count(&u.structure, AreaId::SecretKeys, secret_keys.len())?;
        let passwords = encode::decode_passwords(pt(2), lenient).map_err(malformed(AreaId::Passwords))?;
        check_count(&u.structure, AreaId::Passwords, passwords.len())?;

        Ok(Vsc {
            read_minor: u.frame.minor,
            header: u.header,
            slots: u.slots,
            dek,
            public: u.public,
            private,
            secret_keys,
            passwords,
        })
    }

    /// [`Vsc::open`] of a file on disk (refused unread over
    /// [`MAX_FILE_SIZE`]).
    pub fn load(path: &Path, unlock: &Unlock) -> Result<Vsc, VscError> {
        let bytes = Zeroizing::new(VscFile::read(path)?);
        Vsc::open(&bytes, unlock)
    }

    /// The file: fresh nonces for every area, the header's structure
    /// recomputed, authenticated and digested. The result is opened again
    /// with the DEK and compared before it is returned, so a writer bug
    /// cannot produce an archive that does not read back.
    pub fn to_bytes(&self, rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, VscError> {
        if self.read_minor > FORMAT_MINOR {
            return Err(VscError::NewerMinorReadOnly {
                minor: self.read_minor,
            });
        }
        self.header
            .validate()
            .map_err(|(field, p)| VscError::invalid("header", format!("{field}: {p}")))?;
        let uid = self.header.uid;
        let keys = FileKeys::derive(&self.dek, &uid);
        let mut version = [0u8; 4];
        version[..2].copy_from_slice(&FORMAT_MAJOR.to_be_bytes());
        version[2..].copy_from_slice(&FORMAT_MINOR.to_be_bytes());

        let public = encode::encode_objects(self.public.iter());
        let plaintexts = [
            Zeroizing::new(encode::encode_objects(self.private.iter())),
            encode::encode_keys(self.secret_keys.values()),
            encode::encode_passwords(self.passwords.values()),
        ];
        let counts = [
            self.public.len(),
            self.private.len(),
            self.secret_keys.len(),
            self.passwords.len(),
        ];
        let mut sealed = Vec::with_capacity(3);
        for (area, pt) in AreaId::ENCRYPTED.into_iter().zip(plaintexts.iter()) {
            let mut nonce = [0u8; crypto::NONCE_LEN];
            rng.fill_bytes(&mut nonce);
            let ct = crypto::seal(keys.area(area), &nonce, &area_aad(&version, &uid, area), pt)
                .ok_or_else(|| VscError::invalid("area key", "AES-256-GCM refused the key"))?;
            sealed.push((nonce, ct));
        }
        let too_large = |size: usize| VscError::TooLarge {
            size: size as u64,
            max: MAX_FILE_SIZE,
        };
        let mut structure = Vec::with_capacity(4);
        let stored = [public.len()]
            .into_iter()
            .chain(sealed.iter().map(|(_, ct)| ct.len()));
        for ((area, len), count) in AreaId::ALL.into_iter().zip(stored).zip(counts) {
            structure.push(AreaStructure {
                area,
                stored_len: u32::try_from(len).map_err(|_| too_large(len))?,
                object_count: u32::try_from(count).map_err(|_| too_large(count))?,
            });
        }

        let mut body = Vec::new();
        encode::encode_header(&self.header, &structure).write(&mut body);
        encode::encode_slots(&self.slots).write(&mut body);
        Tlv::new(body::PUBLIC, public).write(&mut body);
        let tags = [body::PRIVATE, body::SECRET_KEYS, body::PASSWORDS];
        for (tag, (nonce, ct)) in tags.into_iter().zip(sealed.iter()) {
            encode::encode_sealed(tag, nonce, ct).write(&mut body);
        }
        let total = PREFIX_LEN + body.len() + TRAILER_LEN;
        if total as u64 > MAX_FILE_SIZE {
            return Err(too_large(total));
        }
        let body_len = u32::try_from(body.len()).map_err(|_| too_large(total))?;

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version);
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&body);
        let mac = crypto::hmac_sha256(&keys.mac, &out);
        out.extend_from_slice(&mac);
        let digest = crypto::sha256(&out);
        out.extend_from_slice(&digest);

        self.self_check(&out)?;
        Ok(out)
    }

    /// Reads `bytes` back with the DEK and compares with `self`.
    fn self_check(&self, bytes: &[u8]) -> Result<(), VscError> {
        let failed = |what: String| VscError::invalid("written file", format!("self-check failed: {what}"));
        let u = check_unauthenticated(bytes).map_err(|e| failed(e.to_string()))?;
        let back = Vsc::open_with_dek(u, self.dek.clone()).map_err(|e| failed(e.to_string()))?;
        let same = back.header == self.header
            && back.slots == self.slots
            && back.public == self.public
            && back.private == self.private
            && back.secret_keys == self.secret_keys
            && back.passwords == self.passwords;
        if same {
            Ok(())
        } else {
            Err(failed("the content read back differs".into()))
        }
    }

    /// Writes the file atomically over `path`: a temporary file (mode 0600)
    /// in the same directory, written, flushed to disk, renamed over
    /// `path`, the directory flushed. On any failure the previous file is
    /// untouched.
    pub fn save(&self, path: &Path, rng: &mut (impl RngCore + CryptoRng)) -> Result<(), VscError> {
        let bytes = self.to_bytes(rng)?;
        save::write_atomically(path, &bytes, SaveMode::Replace)
    }

    /// Like [`Vsc::save`] but refuses to replace an existing file, without a
    /// race between the check and the write.
    pub fn save_new(&self, path: &Path, rng: &mut (impl RngCore + CryptoRng)) -> Result<(), VscError> {
        let bytes = self.to_bytes(rng)?;
        save::write_atomically(path, &bytes, SaveMode::CreateNew)
    }

    // ------------------------------------------------------------ header

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn uid(&self) -> Uid {
        self.header.uid
    }

    /// The version of the file this was read from (the current version for a
    /// new VSC).
    pub fn format_version(&self) -> (u16, u16) {
        (FORMAT_MAJOR, self.read_minor)
    }

    pub fn set_label(&mut self, label: impl Into<String>) -> Result<(), VscError> {
        let label = label.into();
        super::model::check_text(&label).map_err(|p| VscError::invalid("label", p))?;
        self.header.label = label;
        Ok(())
    }

    pub fn set_card_type(&mut self, card_type: impl Into<String>) -> Result<(), VscError> {
        let t = card_type.into();
        super::model::check_text(&t).map_err(|p| VscError::invalid("type", p))?;
        self.header.card_type = t;
        Ok(())
    }

    pub fn state(&self) -> State {
        self.header.attributes.state
    }

    /// Enables or disables the VSC. The state is authenticated: saving needs
    /// the DEK, which an opened `Vsc` has.
    pub fn set_state(&mut self, state: State) {
        self.header.attributes.state = state;
    }

    pub fn set_origin(&mut self, origin: Origin) {
        self.header.attributes.origin = origin;
    }

    /// Records a chip this VSC was written to.
    pub fn add_chip_serial(&mut self, serial: Vec<u8>) -> Result<(), VscError> {
        let mut h = self.header.clone();
        h.attributes.chip_serials.push(serial);
        h.validate()
            .map_err(|(field, p)| VscError::invalid("header", format!("{field}: {p}")))?;
        self.header = h;
        Ok(())
    }

    /// Replaces the file hierarchy. Every EF object already in the public or
    /// private area must still fit it.
    pub fn set_hierarchy(&mut self, hierarchy: Df) -> Result<(), VscError> {
        hierarchy
            .validate_as_root()
            .map_err(|p| VscError::invalid("hierarchy", p))?;
        for (map, area) in [(&self.public, EfArea::Public), (&self.private, EfArea::Private)] {
            for (id, value) in map {
                let o = DataObject::new(id.clone(), value.clone());
                encode::check_object_placement(&o, &hierarchy, area)
                    .map_err(|p| VscError::invalid("hierarchy", p))?;
            }
        }
        self.header.hierarchy = hierarchy;
        Ok(())
    }

    // ------------------------------------------------------------ protectors

    /// The key slots, in file order (the index is what
    /// [`Vsc::remove_protector`] takes).
    pub fn protectors(&self) -> Vec<SlotInfo> {
        self.slots.iter().map(KeySlot::info).collect()
    }

    /// Adds a key slot wrapping this file's DEK for `protector`.
    pub fn add_protector(
        &mut self,
        protector: &Protector,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(), VscError> {
        if self.slots.len() >= MAX_SLOTS {
            return Err(VscError::invalid(
                "protector",
                format!("a VSC has at most {MAX_SLOTS} key slots"),
            ));
        }
        if let Protector::Kek { key_id, .. } = protector {
            if self
                .slots
                .iter()
                .any(|s| matches!(&s.kind, SlotKind::Kek { key_id: k } if k == key_id))
            {
                return Err(VscError::invalid(
                    "protector",
                    format!("a slot for KEK {key_id:?} exists already"),
                ));
            }
        }
        let slot = KeySlot::wrap(&self.dek, &self.header.uid, protector, rng)?;
        self.slots.push(slot);
        Ok(())
    }

    /// Removes the key slot at `index`. The last slot cannot be removed.
    ///
    /// This stops that protector from opening copies written from now on;
    /// whoever opened an earlier copy has seen the DEK, which does not
    /// change. Re-issue a new VSC to really revoke a protector.
    pub fn remove_protector(&mut self, index: usize) -> Result<SlotInfo, VscError> {
        if index >= self.slots.len() {
            return Err(VscError::invalid(
                "protector",
                format!("there is no key slot {index}"),
            ));
        }
        if self.slots.len() == 1 {
            return Err(VscError::LastProtector);
        }
        Ok(self.slots.remove(index).info())
    }

    // ------------------------------------------------------------ public area

    /// The public area: data objects without access conditions, stored in
    /// clear (authenticated, since this `Vsc` was opened with a key).
    pub fn public_area(&self) -> &BTreeMap<ObjectId, Vec<u8>> {
        &self.public
    }

    /// Puts an object in the public area; returns the value it replaced.
    pub fn put_public(&mut self, object: DataObject) -> Result<Option<Vec<u8>>, VscError> {
        encode::check_object_placement(&object, &self.header.hierarchy, EfArea::Public)
            .map_err(|p| VscError::invalid("public data object", p))?;
        Ok(self.public.insert(object.id, object.value))
    }

    pub fn remove_public(&mut self, id: &ObjectId) -> Option<Vec<u8>> {
        self.public.remove(id)
    }

    // ------------------------------------------------------------ private area

    /// The private area: data objects stored encrypted.
    pub fn private_area(&self) -> &BTreeMap<ObjectId, Vec<u8>> {
        &self.private
    }

    /// Puts an object in the private area; returns the value it replaced.
    pub fn put_private(&mut self, object: DataObject) -> Result<Option<Vec<u8>>, VscError> {
        encode::check_object_placement(&object, &self.header.hierarchy, EfArea::Private)
            .map_err(|p| VscError::invalid("private data object", p))?;
        Ok(self.private.insert(object.id, object.value))
    }

    pub fn remove_private(&mut self, id: &ObjectId) -> Option<Vec<u8>> {
        self.private.remove(id)
    }

    // ------------------------------------------------------------ secret keys

    /// The secret key entries. Their material is reachable only through
    /// [`SecretKeyEntry::material_for_card_personalization`].
    pub fn secret_keys(&self) -> impl Iterator<Item = &SecretKeyEntry> {
        self.secret_keys.values()
    }

    pub fn secret_key(&self, id: &KeyRef) -> Option<&SecretKeyEntry> {
        self.secret_keys.get(id)
    }

    /// Adds or replaces a key (e.g. one generated on this master VSC);
    /// returns the entry it replaced.
    pub fn put_secret_key(&mut self, entry: SecretKeyEntry) -> Option<SecretKeyEntry> {
        self.secret_keys.insert(entry.id.clone(), entry)
    }

    pub fn remove_secret_key(&mut self, id: &KeyRef) -> bool {
        self.secret_keys.remove(id).is_some()
    }

    // ------------------------------------------------------------ passwords

    pub fn passwords(&self) -> impl Iterator<Item = &PasswordEntry> {
        self.passwords.values()
    }

    pub fn password(&self, id: PasswordRef) -> Option<&PasswordEntry> {
        self.passwords.get(&id)
    }

    /// For setting a new secret or counting retries.
    pub fn password_mut(&mut self, id: PasswordRef) -> Option<&mut PasswordEntry> {
        self.passwords.get_mut(&id)
    }

    /// Adds or replaces an entry; returns the entry it replaced.
    pub fn put_password(&mut self, entry: PasswordEntry) -> Option<PasswordEntry> {
        self.passwords.insert(entry.id, entry)
    }

    pub fn remove_password(&mut self, id: PasswordRef) -> bool {
        self.passwords.remove(&id).is_some()
    }
}

#[cfg(test)]
impl Vsc {
    pub(crate) fn dek_for_tests(&self) -> &SecretBytes {
        &self.dek
    }
}
