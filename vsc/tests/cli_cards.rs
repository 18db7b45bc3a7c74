#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `vsc` binary's card subcommands without pcscd: `blank`, and the
//! argument checks of `serve` and `feeder`. (Serving through pcscd is
//! tested end to end in the `tests` crate.)

use std::path::Path;
use std::process::{Command, Output, Stdio};

use vsc::card::blank::{BlankCard, GP_TEST_KEY};
use vsc::card::{gp_state, LifeCycle, SoftCard};
use vsc::file::{Unlock, Vsc};
use vsc::secret::AesKey;

fn vsc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsc"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn kek_unlock() -> Unlock {
    Unlock::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[7; 32]).unwrap(),
    }
}

#[test]
fn blank_makes_one_card_with_the_test_keys() {
    let t = tempfile::tempdir().unwrap();
    let kek = t.path().join("kek");
    std::fs::write(&kek, hex::encode([7u8; 32])).unwrap();
    let card = t.path().join("blank.vsc");
    let o = vsc(&[
        "blank",
        "--serial",
        "00001079",
        "--out",
        s(&card),
        "--kek-file",
        s(&kek),
        "--kek-id",
        "stock/1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sc = SoftCard::open_file(&card, kek_unlock()).unwrap();
    assert_eq!(sc.identity().serial(), 1079);
    assert_eq!(sc.life_cycle(), LifeCycle::OpReady);
    let sets = gp_state::keysets(sc.vsc()).unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].set.kvn, 1);
    assert!(sets[0].factory);
    assert_eq!(sets[0].set.keys.enc().expose_secret(), GP_TEST_KEY);
    assert_eq!(sc.vsc().header().label, BlankCard::new(1079).unwrap().label());
    // Not over an existing file.
    let again = vsc(&[
        "blank",
        "--serial",
        "00001079",
        "--out",
        s(&card),
        "--kek-file",
        s(&kek),
        "--kek-id",
        "stock/1",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).starts_with("vsc: "));
}

#[test]
fn blank_makes_a_stack_with_another_key_set() {
    let t = tempfile::tempdir().unwrap();
    let pw = t.path().join("pw");
    std::fs::write(&pw, "stock password\n").unwrap();
    let dir = t.path().join("stock");
    let key = "000102030405060708090A0B0C0D0E0F";
    let o = vsc(&[
        "blank",
        "--serials",
        "00001000-00001003",
        "--out-dir",
        s(&dir),
        "--password-file",
        s(&pw),
        "--gp-key",
        key,
        "--kvn",
        "30",
        "--argon2-memory",
        "8192",
        "--argon2-time",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["00001000.vsc", "00001001.vsc", "00001002.vsc", "00001003.vsc"]
    );
    let unlock = Unlock::Password(vsc::secret::SecretBytes::from_slice(b"stock password"));
    let v = Vsc::load(&dir.join("00001002.vsc"), &unlock).unwrap();
    let sets = gp_state::keysets(&v).unwrap();
    assert_eq!(sets[0].set.kvn, 0x30);
    assert_eq!(sets[0].set.keys.mac().expose_secret(), hex::decode(key).unwrap());
}

#[test]
fn usage_errors_exit_2_and_bad_values_exit_1() {
    let t = tempfile::tempdir().unwrap();
    // clap: missing/conflicting arguments.
    assert_eq!(vsc(&["blank"]).status.code(), Some(2));
    assert_eq!(
        vsc(&["blank", "--serial", "1", "--serials", "1-2", "--out", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(vsc(&["serve"]).status.code(), Some(2));
    assert_eq!(vsc(&["feeder", "--stock", "x"]).status.code(), Some(2));
    let out = t.path().join("c.vsc");
    for bad in [
        vec!["blank", "--serial", "123456789", "--out", s(&out)],
        vec!["blank", "--serial", "12ab", "--out", s(&out)],
        vec!["blank", "--serial", "1", "--out", s(&out), "--kvn", "00"],
        vec!["blank", "--serial", "1", "--out", s(&out), "--gp-key", "0102"],
        vec!["blank", "--serials", "5-1", "--out-dir", s(t.path())],
    ] {
        let o = vsc(&bad);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("vsc: "), "{bad:?}");
    }
    assert!(!out.exists());
}

#[test]
fn every_card_subcommand_has_help_with_an_example() {
    for sub in ["blank", "serve", "feeder"] {
        let o = vsc(&[sub, "--help"]);
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("Example:"), "{sub}");
    }
}
