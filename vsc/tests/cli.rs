#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `vsc` binary: new, show, verify, disable, enable; exit codes; help.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use vsc::file::{
    Argon2Params, DataObject, KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef, NewVsc, ObjectId, PinPolicy,
    Protector, SecretKeyEntry, TouchPolicy, Unlock, Vsc,
};
use vsc::secret::SecretBytes;

const FAST: [&str; 6] = [
    "--argon2-memory",
    "8192",
    "--argon2-time",
    "1",
    "--argon2-lanes",
    "1",
];

fn vsc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsc"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Dir {
    _t: tempfile::TempDir,
    root: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        std::fs::write(root.join("pw.txt"), "cli password one\n").unwrap();
        std::fs::write(root.join("bad.txt"), "not it\n").unwrap();
        Dir { _t: t, root }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn new_card(&self, name: &str, extra: &[&str]) -> Output {
        let card = self.p(name);
        let pw = self.p("pw.txt");
        let mut args = vec![
            "new",
            "--label",
            "VSC 00001079",
            "--password-file",
            s(&pw),
            "--out",
            s(&card),
        ];
        args.extend_from_slice(&FAST);
        args.extend_from_slice(extra);
        vsc(&args)
    }
}

#[test]
fn new_prints_the_uid_and_refuses_to_overwrite() {
    let d = Dir::new();
    let o = d.new_card(
        "card.vsc",
        &[
            "--profile",
            "piv-basic",
            "--origin",
            "backup",
            "--chip-serial",
            "04A1B2",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let uid = text.lines().find_map(|l| l.strip_prefix("UID ")).unwrap();
    assert_eq!(uid.len(), 32);
    assert!(uid.chars().all(|c| c.is_ascii_hexdigit()));
    let seen = vsc::file::VscFile::inspect_path(&d.p("card.vsc")).unwrap();
    assert_eq!(seen.header.uid.to_string(), uid);
    assert_eq!(seen.header.card_type, "piv-basic");
    assert_eq!(seen.header.attributes.origin, vsc::file::Origin::Backup);
    assert_eq!(seen.header.attributes.chip_serials, vec![vec![0x04, 0xA1, 0xB2]]);

    let before = std::fs::read(d.p("card.vsc")).unwrap();
    let o = d.new_card("card.vsc", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).starts_with("vsc: ") && err(&o).contains("--force"),
        "{}",
        err(&o)
    );
    assert_eq!(std::fs::read(d.p("card.vsc")).unwrap(), before);
    let o = d.new_card("card.vsc", &["--force"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_ne!(std::fs::read(d.p("card.vsc")).unwrap(), before);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.p("card.vsc")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn new_uses_rfc_9106_defaults() {
    let d = Dir::new();
    let card = d.p("default.vsc");
    let pw = d.p("pw.txt");
    let o = vsc(&[
        "new",
        "--label",
        "L",
        "--password-file",
        s(&pw),
        "--out",
        s(&card),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let seen = vsc::file::VscFile::inspect_path(&card).unwrap();
    assert_eq!(
        seen.slots,
        vec![vsc::file::SlotInfo::Password {
            params: Argon2Params::RECOMMENDED
        }]
    );
    assert_eq!(Argon2Params::RECOMMENDED.m_cost_kib(), 65536);
    assert_eq!(Argon2Params::RECOMMENDED.t_cost(), 3);
    assert_eq!(Argon2Params::RECOMMENDED.p_cost(), 1);
}

#[test]
fn verify_without_and_with_a_key() {
    let d = Dir::new();
    assert!(d.new_card("card.vsc", &[]).status.success());
    let card = d.p("card.vsc");
    let o = vsc(&["verify", s(&card)]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(text.starts_with("OK: "), "{text}");
    assert!(
        text.contains("integrity digest") && text.contains("NOT checked"),
        "{text}"
    );
    assert!(text.contains("AES-GCM tags"), "{text}");

    let pw = d.p("pw.txt");
    let o = vsc(&["verify", s(&card), "--password-file", s(&pw)]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("OK: ") && text.contains("file authentication tag"),
        "{text}"
    );
    assert!(!text.contains("NOT checked"), "{text}");

    let bad = d.p("bad.txt");
    let o = vsc(&["verify", s(&card), "--password-file", s(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).starts_with("vsc: ") && err(&o).contains("wrong password"),
        "{}",
        err(&o)
    );
}

#[test]
fn verify_reports_a_corrupted_file() {
    let d = Dir::new();
    assert!(d.new_card("card.vsc", &[]).status.success());
    let card = d.p("card.vsc");
    let mut bytes = std::fs::read(&card).unwrap();
    bytes[40] ^= 0x04;
    std::fs::write(&card, &bytes).unwrap();
    let o = vsc(&["verify", s(&card)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).is_empty());
    let e = err(&o);
    assert!(
        e.starts_with("vsc: ") && e.contains("integrity digest mismatch"),
        "{e}"
    );

    bytes.truncate(100);
    std::fs::write(&card, &bytes).unwrap();
    let o = vsc(&["verify", s(&card)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("truncated"), "{}", err(&o));

    let o = vsc(&["verify", s(&d.p("missing.vsc"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("missing.vsc"), "{}", err(&o));
}

/// A card with private data and a secret key, written through the library.
fn rich_card(d: &Dir) -> (PathBuf, Vec<u8>) {
    let mut rng = rand::rngs::OsRng;
    let protector = Protector::Password {
        password: SecretBytes::from_slice(b"cli password one"),
        params: Argon2Params::new(8192, 1, 1).unwrap(),
    };
    let mut v = Vsc::create(
        NewVsc::new("VSC rich", "piv", 1_700_000_000),
        &protector,
        &mut rng,
    )
    .unwrap();
    v.put_public(DataObject::new(
        ObjectId::Named("Please read".into()),
        b"PUBLIC-TEXT".to_vec(),
    ))
    .unwrap();
    v.put_private(DataObject::new(
        ObjectId::Named("Private Info".into()),
        b"PRIVATE-TEXT-42".to_vec(),
    ))
    .unwrap();
    let material = vec![0xC7u8; 32];
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9B),
            KeyAlgorithm::Aes256,
            SecretBytes::new(material.clone()),
            KeyAttributes {
                origin: KeyOrigin::Imported,
                pin_policy: PinPolicy::Default,
                touch_policy: TouchPolicy::Default,
            },
        )
        .unwrap(),
    );
    v.put_password(
        vsc::file::PasswordEntry::new(
            vsc::file::PasswordRef::Pin,
            &SecretBytes::from_slice(b"123456"),
            3,
            6,
            8,
            &mut rng,
        )
        .unwrap(),
    );
    let path = d.p("rich.vsc");
    v.save(&path, &mut rng).unwrap();
    (path, material)
}

#[test]
fn show_without_a_password_prints_no_private_data() {
    let d = Dir::new();
    let (card, material) = rich_card(&d);
    let o = vsc(&["show", s(&card)]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    for want in [
        "VSC rich",
        "Type:",
        "active",
        "master",
        "2023-11-14",
        "Structure:",
        "Hierarchy:",
        "DF 3F00",
        "PUBLIC-TEXT",
        "NOT authenticated",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let private_hex = hex::encode_upper(b"PRIVATE-TEXT-42");
    for leak in [
        "PRIVATE-TEXT",
        "Private Info",
        &private_hex,
        &hex::encode_upper(&material),
        "123456",
    ] {
        assert!(!text.contains(leak), "{leak:?} shown without a password:\n{text}");
    }

    // --private without a password and without a terminal is a clear error.
    let o = vsc(&["show", s(&card), "--private"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--password-file"), "{}", err(&o));
    assert!(out(&o).is_empty());
}

#[test]
fn show_private_never_prints_key_material_or_verifiers() {
    let d = Dir::new();
    let (card, material) = rich_card(&d);
    let pw = d.p("pw.txt");
    let o = vsc(&["show", s(&card), "--private", "--password-file", s(&pw)]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    for want in [
        "PRIVATE-TEXT-42",
        "Private Info",
        "PIV 9B",
        "AES-256",
        "imported",
        "3 of 3 tries",
        "(authenticated)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let m = hex::encode_upper(&material);
    assert!(!text.contains(&m[..16]), "key material shown:\n{text}");
    assert!(!text.to_lowercase().contains(&m[..16].to_lowercase()));
    assert!(!text.contains("123456"), "{text}");
}

#[test]
fn disable_and_enable() {
    let d = Dir::new();
    assert!(d.new_card("card.vsc", &[]).status.success());
    let card = d.p("card.vsc");
    let pw = d.p("pw.txt");

    // The state is authenticated: no key, no change.
    let before = std::fs::read(&card).unwrap();
    let o = vsc(&["disable", s(&card)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).starts_with("vsc: "), "{}", err(&o));
    let bad = d.p("bad.txt");
    let o = vsc(&["disable", s(&card), "--password-file", s(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&card).unwrap(), before);

    let o = vsc(&["disable", s(&card), "--password-file", s(&pw)]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("disabled"));
    assert!(out(&vsc(&["show", s(&card)])).contains("DISABLED"));
    let v = Vsc::load(
        &card,
        &Unlock::Password(SecretBytes::from_slice(b"cli password one")),
    )
    .unwrap();
    assert_eq!(v.state(), vsc::file::State::Disabled);

    let o = vsc(&["disable", s(&card), "--password-file", s(&pw)]);
    assert!(o.status.success() && out(&o).contains("already"));

    let o = vsc(&["enable", s(&card), "--password-file", s(&pw)]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&vsc(&["show", s(&card)]));
    assert!(text.contains("State:        active"), "{text}");
    assert_eq!(
        vsc(&["verify", s(&card), "--password-file", s(&pw)])
            .status
            .code(),
        Some(0)
    );
    // No temporary files left beside it.
    let names: Vec<String> = std::fs::read_dir(&d.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn kek_protector_from_a_hex_file() {
    let d = Dir::new();
    let kek_file = d.p("archive.kek");
    std::fs::write(&kek_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let raw_file = d.p("raw.kek");
    std::fs::write(&raw_file, [0xAB; 32]).unwrap();
    let o = d.new_card(
        "card.vsc",
        &["--kek-file", s(&kek_file), "--kek-id", "archive-kek/1"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let card = d.p("card.vsc");
    for f in [&kek_file, &raw_file] {
        let o = vsc(&[
            "verify",
            s(&card),
            "--kek-file",
            s(f),
            "--kek-id",
            "archive-kek/1",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        assert!(out(&o).contains("archive-kek/1"));
    }
    let o = vsc(&[
        "verify",
        s(&card),
        "--kek-file",
        s(&kek_file),
        "--kek-id",
        "archive-kek/2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("no key slot"), "{}", err(&o));
    std::fs::write(&kek_file, "abcd").unwrap();
    let o = vsc(&[
        "verify",
        s(&card),
        "--kek-file",
        s(&kek_file),
        "--kek-id",
        "archive-kek/1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("32 raw bytes or 64 hex digits"), "{}", err(&o));
}

#[test]
fn password_file_rules() {
    let d = Dir::new();
    let empty = d.p("empty.txt");
    std::fs::write(&empty, "\nsecond line\n").unwrap();
    let card = d.p("card.vsc");
    let mut args = vec![
        "new",
        "--label",
        "L",
        "--password-file",
        s(&empty),
        "--out",
        s(&card),
    ];
    args.extend_from_slice(&FAST);
    let o = vsc(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("empty"), "{}", err(&o));
    assert!(!card.exists());
    // Only the first line counts, CR LF or LF.
    let crlf = d.p("crlf.txt");
    std::fs::write(&crlf, "cli password one\r\nignored\n").unwrap();
    assert!(d.new_card("card.vsc", &[]).status.success());
    let o = vsc(&["verify", s(&card), "--password-file", s(&crlf)]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vsc(&[]).status.code(), Some(2));
    assert_eq!(vsc(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(vsc(&["new", "--label", "x"]).status.code(), Some(2));
    assert_eq!(
        vsc(&["verify", "a.vsc", "--kek-file", "k"]).status.code(),
        Some(2)
    );
    assert_eq!(
        vsc(&[
            "verify",
            "a.vsc",
            "--kek-file",
            "k",
            "--kek-id",
            "i",
            "--password-file",
            "p"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn every_help_has_an_example() {
    for cmd in [
        vec!["--help"],
        vec!["new", "--help"],
        vec!["show", "--help"],
        vec!["verify", "--help"],
        vec!["disable", "--help"],
        vec!["enable", "--help"],
        vec!["help", "new"],
    ] {
        let o = vsc(&cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(out(&o).contains("Example"), "{cmd:?}:\n{}", out(&o));
    }
}
