//! The errors of the VSC file: each names the check that failed.

use std::fmt;
use std::path::PathBuf;

use crate::codec::{Tag, TlvError};

/// The sections of the body, in the order the format requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Header,
    KeySlots,
    PublicArea,
    PrivateArea,
    SecretKeyArea,
    PasswordArea,
}

impl Section {
    pub const ALL: [Section; 6] = [
        Section::Header,
        Section::KeySlots,
        Section::PublicArea,
        Section::PrivateArea,
        Section::SecretKeyArea,
        Section::PasswordArea,
    ];
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::KeySlots => "key slots",
            Section::PublicArea => "public area",
            Section::PrivateArea => "private area",
            Section::SecretKeyArea => "secret key area",
            Section::PasswordArea => "password area",
        })
    }
}

/// The four data areas. The byte is the area id of the format, used in the
/// header's structure, in EF descriptors and in the AEAD associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AreaId {
    /// `03`, in clear.
    Public,
    /// `04`, AES-256-GCM.
    Private,
    /// `05`, AES-256-GCM.
    SecretKeys,
    /// `06`, AES-256-GCM.
    Passwords,
}

impl AreaId {
    pub const ALL: [AreaId; 4] = [
        AreaId::Public,
        AreaId::Private,
        AreaId::SecretKeys,
        AreaId::Passwords,
    ];
    pub const ENCRYPTED: [AreaId; 3] = [AreaId::Private, AreaId::SecretKeys, AreaId::Passwords];

    pub fn to_byte(self) -> u8 {
        match self {
            AreaId::Public => 0x03,
            AreaId::Private => 0x04,
            AreaId::SecretKeys => 0x05,
            AreaId::Passwords => 0x06,
        }
    }

    pub fn from_byte(b: u8) -> Option<AreaId> {
        AreaId::ALL.into_iter().find(|a| a.to_byte() == b)
    }

    pub fn section(self) -> Section {
        match self {
            AreaId::Public => Section::PublicArea,
            AreaId::Private => Section::PrivateArea,
            AreaId::SecretKeys => Section::SecretKeyArea,
            AreaId::Passwords => Section::PasswordArea,
        }
    }
}

impl fmt::Display for AreaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.section().fmt(f)
    }
}

/// What is wrong inside a section or an area's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The BER-TLV encoding itself.
    #[error(transparent)]
    Tlv(#[from] TlvError),
    /// A length not written in its shortest form (the format admits exactly
    /// one encoding of each content).
    #[error("a BER-TLV length is not in its shortest form")]
    NonMinimalLength,
    /// A tag that does not belong at this place (in a file of a minor version
    /// this reader knows), or a known tag repeated or out of order.
    #[error("tag {tag} is not expected in {context}")]
    UnexpectedTag { context: &'static str, tag: Tag },
    /// A required field is absent.
    #[error("{field} is missing")]
    Missing { field: &'static str },
    /// A field is present but its value breaks a rule.
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
}

impl ContentError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        ContentError::Invalid {
            field,
            problem: problem.into(),
        }
    }

    /// Whether the problem is in the BER-TLV structure rather than in a value.
    pub(crate) fn is_structural(&self) -> bool {
        matches!(
            self,
            ContentError::Tlv(_) | ContentError::NonMinimalLength | ContentError::UnexpectedTag { .. }
        )
    }

    pub(crate) fn field(&self) -> &'static str {
        match self {
            ContentError::Missing { field } | ContentError::Invalid { field, .. } => field,
            ContentError::UnexpectedTag { context, .. } => context,
            ContentError::Tlv(_) | ContentError::NonMinimalLength => "encoding",
        }
    }
}

/// The file system operation an I/O error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Stat,
    Read,
    CreateTemp,
    Write,
    SyncFile,
    Rename,
    SyncDir,
    Link,
    RemoveTemp,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Stat => "inspect",
            IoOp::Read => "read",
            IoOp::CreateTemp => "create a temporary file beside",
            IoOp::Write => "write",
            IoOp::SyncFile => "flush to disk",
            IoOp::Rename => "rename the temporary file over",
            IoOp::SyncDir => "flush the directory of",
            IoOp::Link => "link the new file as",
            IoOp::RemoveTemp => "remove the temporary file of",
        })
    }
}

/// Everything that can go wrong reading, checking, changing or writing a
/// VSC file. The variants of the load-time consistency check appear in the
/// order the check runs (see `FORMAT.md`, "Check order").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VscError {
    /// The file is larger than any VSC may be; it was not read.
    #[error("the file has {size} bytes; a VSC has at most {max}")]
    TooLarge { size: u64, max: u64 },
    /// The first 8 bytes are not the VSC magic: not a VSC file, or mangled
    /// by a 7-bit or newline-converting transfer.
    #[error("not a VSC file (bad magic bytes)")]
    BadMagic,
    /// A format major version this reader does not know.
    #[error("VSC format version {major}.{minor} is not supported (this reader knows major version 1)")]
    UnsupportedVersion { major: u16, minor: u16 },
    /// The file is shorter than its length field says.
    #[error("the file is truncated: {expected} bytes expected, {actual} present")]
    Truncated { expected: u64, actual: u64 },
    /// The file is longer than its length field says.
    #[error("{count} unexpected bytes after the end of the VSC")]
    TrailingBytes { count: u64 },
    /// The SHA-256 trailer does not match: the file was damaged.
    #[error("integrity digest mismatch: the file is damaged (SHA-256 does not match)")]
    IntegrityDigestMismatch,
    /// The body's BER-TLV structure is broken in `section`.
    #[error("malformed body in the {section}")]
    MalformedBody {
        section: Section,
        #[source]
        source: ContentError,
    },
    /// An unknown top-level object in a file whose minor version this reader
    /// knows (only files of a newer minor may carry unknown objects).
    #[error("unknown top-level object with tag {tag} in the body")]
    UnknownSection { tag: Tag },
    #[error("the {section} is missing")]
    MissingSection { section: Section },
    #[error("the {section} appears twice")]
    DuplicateSection { section: Section },
    #[error("the {section} appears after the {after}; the order is header, key slots, public, private, secret key, password area")]
    SectionOutOfOrder { section: Section, after: Section },
    /// A header field breaks a rule of the format.
    #[error("bad header field {field}: {problem}")]
    BadHeader { field: &'static str, problem: String },
    /// A key slot descriptor breaks a rule of the format.
    #[error("bad key slot {index}: {problem}")]
    BadSlot { index: usize, problem: String },
    /// A password slot asks for Argon2id parameters beyond the load-time
    /// bounds; Argon2 was not run.
    #[error("key slot {index}: Argon2id {param} = {value} is outside {min}..={max}")]
    KdfParamsOutOfRange {
        index: usize,
        param: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    /// The password slots together ask for more Argon2id work than a reader
    /// spends on one unlock; Argon2 was not run.
    #[error(
        "the password slots ask for {work_kib_passes} KiB×passes of Argon2id work in all, \
         over the reader's budget of {budget_kib_passes}"
    )]
    KdfBudgetExceeded {
        work_kib_passes: u64,
        budget_kib_passes: u64,
    },
    /// The file has no slot of the kind (or KEK id) offered.
    #[error("no key slot can be opened with {offered}")]
    NoMatchingSlot { offered: String },
    /// No password slot opened with this password (a wrong password, or a
    /// slot altered by someone who recomputed the integrity digest).
    #[error("wrong password (no password slot opened)")]
    WrongPassword,
    /// The KEK slot named `key_id` did not open with this key.
    #[error("wrong key-encryption key for slot {key_id:?}")]
    WrongKek { key_id: String },
    /// The HMAC over the prefix and body does not verify under the file's
    /// MAC key: the header, slots or areas were changed without the key.
    #[error("file authentication failed: the content was changed by someone without its key")]
    FileAuthenticationFailed,
    /// An area's AES-GCM tag does not verify.
    #[error("authentication of the {area} failed (AES-GCM tag)")]
    AreaAuthenticationFailed { area: AreaId },
    /// An area's content (clear, or decrypted and authenticated) breaks a
    /// rule of the format.
    #[error("malformed {area}")]
    MalformedArea {
        area: AreaId,
        #[source]
        source: ContentError,
    },
    /// An argument or a content change the format cannot represent.
    #[error("invalid {what}: {problem}")]
    Invalid { what: &'static str, problem: String },
    /// Removing this protector would leave the file without any.
    #[error("a VSC keeps at least one protector")]
    LastProtector,
    /// The file was written by a newer minor version; reading it skipped
    /// objects this version does not know, so writing it would lose them.
    #[error(
        "the VSC was read from format version 1.{minor}, newer than this writer's 1.0; it is read-only here"
    )]
    NewerMinorReadOnly { minor: u16 },
    #[error("cannot {op} {}", path.display())]
    Io {
        path: PathBuf,
        op: IoOp,
        #[source]
        source: std::io::Error,
    },
}

impl VscError {
    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        VscError::Invalid {
            what,
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, op: IoOp, source: std::io::Error) -> Self {
        VscError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}
