#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Profiles: the shipped ones, every error of a broken one with file, line
//! and setting, the escrow defaults and overrides, record checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyserver::profile::{KeyPolicy, Profile, SecretSource};
use keyserver::record::Record;
use proptest::prelude::*;

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

fn shipped(id: &str) -> Profile {
    Profile::load(&profiles_dir().join(format!("{id}.toml"))).unwrap()
}

fn record(pairs: &[(&str, &str)]) -> Record {
    Record {
        id: "row-1".into(),
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn policies(p: &Profile) -> Vec<(u8, KeyPolicy, bool)> {
    p.slots
        .iter()
        .map(|s| (s.slot, s.policy, s.policy_overridden))
        .collect()
}

#[test]
fn piv_escrow_follows_the_defaults() {
    let p = shipped("piv-escrow");
    assert_eq!(
        policies(&p),
        [
            (0x9A, KeyPolicy::Escrow, false),
            (0x9C, KeyPolicy::Card, false),
            (0x9D, KeyPolicy::Escrow, false),
        ]
    );
    assert_eq!(p.slots[2].algorithm.name(), "rsa2048");
    assert!(p.has_card_generated_keys());
    assert_eq!(p.pin, SecretSource::Field("pin".into()));
    assert_eq!(p.puk, SecretSource::Random { digits: 8 });
    assert!(p.chuid && p.discovery && p.printed_information.is_some());
}

#[test]
fn employee_badge_overrides_the_signature_key() {
    let p = shipped("employee-badge");
    assert_eq!(
        policies(&p),
        [
            (0x9A, KeyPolicy::Escrow, false),
            (0x9C, KeyPolicy::Escrow, true),
            (0x9D, KeyPolicy::Escrow, false),
            (0x9E, KeyPolicy::Escrow, false),
        ]
    );
    assert!(p.slots.iter().all(|s| s.algorithm.name() == "p256"));
    assert!(!p.has_card_generated_keys());
    assert_eq!(p.escrow_overrides().map(|s| s.slot).collect::<Vec<_>>(), [0x9C]);
    assert_eq!(p.files.len(), 1);
    assert_eq!(p.files[0].efs.len(), 2);
    assert_eq!(p.pin, SecretSource::Random { digits: 6 });
}

#[test]
fn the_profiles_directory_loads_and_refuses_duplicate_ids() {
    let all = Profile::load_dir(&profiles_dir()).unwrap();
    let ids: Vec<_> = all.iter().map(|p| p.id.as_str()).collect();
    assert!(
        ids.contains(&"piv-escrow") && ids.contains(&"employee-badge"),
        "{ids:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(profiles_dir().join("piv-escrow.toml")).unwrap();
    std::fs::write(dir.path().join("piv-escrow.toml"), &text).unwrap();
    // Same id in a file of another name: refused by its own check already.
    std::fs::write(dir.path().join("other.toml"), &text).unwrap();
    let e = Profile::load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("other.toml") && e.contains("differs from the file name"),
        "{e}"
    );
}

const BROKEN: &str = r#"id = "broken"
security_level = 0x13
colour = "blue"

[card]
validity_days = 365

[fields.name]
required = true
rule = "mail"

[pin]
source = "field"
field = "nope"

[[slot]]
key = "9a"
algorithm = "p256"
[slot.certificate]
subject = { CN = "{name} {surname}" }
validity_days = 400
key_usage = ["key_encipherment"]

[[slot]]
key = "9b"
algorithm = "p256"

[[slot]]
key = "9d"
algorithm = "p384"
escrow = "maybe"
[slot.certificate]
subject = { O = "x" }
validity_days = 10

[[df]]
fid = "3F00"
[[df.ef]]
fid = "5001"
area = "public"
read = "pin"
update = "never"
size = 4
content = "too long for four"
"#;

#[test]
fn a_broken_profile_names_every_error_with_file_line_and_setting() {
    let errors = Profile::parse(BROKEN, "profiles/broken.toml").unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let expected = [
        "profiles/broken.toml:2: security_level: 0x13 is not supported",
        "profiles/broken.toml:3: colour: unknown setting",
        "profiles/broken.toml:10: fields.name.rule: \"mail\" is not a rule (text, digits, alphanumeric, email)",
        "profiles/broken.toml:14: pin.field: \"nope\" is not declared under [fields]",
        "profiles/broken.toml:20: slot[0].certificate.subject.CN: reads field \"surname\", which [fields] does not declare",
        "profiles/broken.toml:21: slot[0].certificate.validity_days: 400 days outlive the card",
        "profiles/broken.toml:22: slot[0].certificate.key_usage[0]: a P-256 key cannot encipher",
        "profiles/broken.toml:24: slot[1].certificate: is required",
        "profiles/broken.toml:25: slot[1].key: \"9b\" is not a key slot (9a, 9c, 9d, 9e, 82-95)",
        "profiles/broken.toml:30: slot[2].algorithm: \"p384\" is not supported (p256, rsa2048)",
        "profiles/broken.toml:31: slot[2].escrow: \"maybe\" is not an escrow policy (escrow, card)",
        "profiles/broken.toml:33: slot[2].certificate.subject.CN: is required",
        "profiles/broken.toml:37: df[0].fid: 3F00 is reserved",
        "profiles/broken.toml:40: df[0].ef[0].area: an EF read only after the PIN belongs in the private area",
        "profiles/broken.toml:44: df[0].ef[0].content: is 17 bytes before any field is filled in; the EF holds 4",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with(want), "{line}\n  does not start with\n{want}");
    }
}

#[test]
fn syntax_errors_and_missing_sections_have_lines_too() {
    let e = Profile::parse("id = \"x\"\n[card]\nvalidity_days = \n", "x.toml").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(e.0[0].to_string().starts_with("x.toml:3: TOML syntax:"), "{e}");
    let e = Profile::parse("id = \"y\"\n", "y.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "y.toml:1: card: is required: [card] validity_days = … (how long the card is valid)"
    );
    let e = Profile::parse("id = \"Bad Id\"\n[card]\nvalidity_days = 1\n", "Bad Id.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Bad Id.toml:1: id: \"Bad Id\" is not a profile id"),
        "{e}"
    );
    let e = Profile::parse("id = \"a\"\n[card]\nvalidity_days = 1\n", "b.toml").unwrap_err();
    assert!(e.to_string().contains("differs from the file name \"b\""), "{e}");
}

#[test]
fn pin_from_a_field_needs_a_fitting_field() {
    let text = r#"id = "p"
[card]
validity_days = 10
[fields.pin]
rule = "digits"
max_len = 12
[pin]
source = "field"
field = "pin"
digits = 6
"#;
    let e = Profile::parse(text, "p.toml").unwrap_err().to_string();
    assert!(
        e.contains("p.toml:9: pin.field: field \"pin\" must be required, rule = \"digits\""),
        "{e}"
    );
    assert!(
        e.contains("p.toml:10: pin.digits: only with source = \"random\""),
        "{e}"
    );
}

fn badge_record() -> Vec<(&'static str, &'static str)> {
    vec![
        ("given_name", "Ada"),
        ("surname", "Lovelace"),
        ("email", "ada@example.org"),
        ("employee_id", "1815"),
        ("department", "Analytics"),
        ("street", "12 St James's Square"),
        ("city", "London"),
        ("account", "GB33BUKB20201555555555"),
    ]
}

#[test]
fn a_good_record_passes() {
    let p = shipped("employee-badge");
    p.check_record(&record(&badge_record())).unwrap();
    // Optional fields may be absent.
    let without: Vec<_> = badge_record()
        .into_iter()
        .filter(|(k, _)| *k != "department")
        .collect();
    p.check_record(&record(&without)).unwrap();
}

#[test]
fn record_errors_name_each_field() {
    let p = shipped("employee-badge");
    let mut fields = badge_record();
    fields.retain(|(k, _)| *k != "surname");
    for (k, v) in fields.iter_mut() {
        match *k {
            "email" => *v = "ada.example.org",
            "employee_id" => *v = "18a5",
            "account" => *v = "GB33-BUKB",
            _ => {}
        }
    }
    fields.push(("nickname", "Ada"));
    let errors = p.check_record(&record(&fields)).unwrap_err();
    let got: Vec<(String, String)> = errors.into_iter().map(|e| (e.field, e.problem)).collect();
    let fields_named: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields_named,
        ["surname", "email", "employee_id", "account", "nickname"],
        "{got:#?}"
    );
    assert_eq!(got[0].1, "is required");
    assert!(got[1].1.contains("not an e-mail address"));
    assert_eq!(got[2].1, "must be digits only (0-9)");
    assert!(got[3].1.contains("letters and digits only"));
    assert!(got[4].1.starts_with("is not a field of profile employee-badge"));
}

#[test]
fn filled_in_values_must_fit_the_card() {
    // Each field fits its own rule, but together they overflow a small EF.
    let text = std::fs::read_to_string(profiles_dir().join("employee-badge.toml"))
        .unwrap()
        .replace("size = 160", "size = 30");
    let p = Profile::parse(&text, "employee-badge.toml").unwrap();
    let errors = p.check_record(&record(&badge_record())).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "given_name");
    assert!(
        errors[0].problem.starts_with("makes df[0].ef[0].content ")
            && errors[0].problem.ends_with("bytes long (at most 30)"),
        "{}",
        errors[0].problem
    );
}

#[test]
fn the_cli_checks_and_explains() {
    let exe = env!("CARGO_BIN_EXE_keyserver");
    let out = Command::new(exe)
        .args(["profile", "check"])
        .arg(profiles_dir().join("piv-escrow.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("9C digital signature, p256: card, default"),
        "{text}"
    );
    assert!(
        text.contains("9D key management, rsa2048: escrow, default"),
        "{text}"
    );
    assert!(text.contains("pin (required, digits, 6-8 characters)"), "{text}");
    assert!(text.contains("round trips per card: 3"), "{text}");

    let out = Command::new(exe)
        .args(["profile", "check"])
        .arg(profiles_dir().join("employee-badge.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("9C digital signature, p256: escrow, OVERRIDE of the default card"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, BROKEN).unwrap();
    let out = Command::new(exe)
        .args(["profile", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "{}:30: slot[2].algorithm: \"p384\" is not supported (p256, rsa2048)",
            broken.display()
        )),
        "{err}"
    );
    assert!(err.contains("15 error(s)"), "{err}");

    let out = Command::new(exe)
        .args(["profile", "check"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("reading profile"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_any_text_never_panics(text in "\\PC{0,200}") {
        let _ = Profile::parse(&text, "fuzz.toml");
    }

    #[test]
    fn mutated_profiles_never_panic(cut in 0usize..4000, insert in "[\\[\\]{}=\"a-z0-9 \n.,]{0,12}") {
        let text = std::fs::read_to_string(profiles_dir().join("employee-badge.toml")).unwrap();
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mutated = format!("{}{}{}", &text[..at], insert, &text[at..]);
        let _ = Profile::parse(&mutated, "employee-badge.toml");
    }

    #[test]
    fn checking_any_record_never_panics(values in proptest::collection::vec("\\PC{0,80}", 8)) {
        let p = shipped("employee-badge");
        let names = ["given_name", "surname", "email", "employee_id", "department", "street", "city", "account"];
        let fields: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().map(String::as_str)).collect();
        let _ = p.check_record(&record(&fields));
    }
}
