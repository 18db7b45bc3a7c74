//! Helpers shared by the custody, archive and audit tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use keyserver::keystore::component::Component;
use keyserver::keystore::{self, ComponentDelivery, InitOptions, KeystoreError, Unlocked};
use vsc::file::{DataObject, NewVsc, ObjectId, Protector, Uid, Vsc};
use vsc::secret::AesKey;

/// Keeps the components in memory (instead of files or the terminal).
#[derive(Default)]
pub struct Collect(pub Vec<Component>);

impl ComponentDelivery for Collect {
    fn prepare(&mut self, _custodians: u8) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn deliver(&mut self, _keyserver: &str, component: &Component) -> Result<(), KeystoreError> {
        self.0.push(component.clone());
        Ok(())
    }
}

/// A keystore in `dir/data` with `n` custodians whose components are returned.
pub fn init_in_memory(dir: &Path, n: u8) -> (PathBuf, Vec<Component>) {
    let data = dir.join("data");
    let mut c = Collect::default();
    keystore::init(
        &data,
        &InitOptions {
            custodians: n,
            server_names: vec!["keyserver.example".into()],
        },
        &mut c,
    )
    .unwrap();
    (data, c.0)
}

/// A keystore in `dir/data` whose components are in `dir/c1`…`dir/cN`.
pub fn init_with_files(dir: &Path, n: u8) -> (PathBuf, Vec<PathBuf>) {
    let data = dir.join("data");
    let files: Vec<PathBuf> = (1..=n).map(|i| dir.join(format!("c{i}"))).collect();
    keystore::init(
        &data,
        &InitOptions {
            custodians: n,
            server_names: Vec::new(),
        },
        &mut keystore::FileDelivery::new(files.clone()),
    )
    .unwrap();
    (data, files)
}

/// An unlocked keystore in a fresh data directory (2 custodians).
pub fn unlocked(dir: &Path) -> (PathBuf, Unlocked) {
    let (data, components) = init_in_memory(dir, 2);
    let u = Unlocked::from_components(&data, &components).unwrap();
    (data, u)
}

/// A small master VSC protected by the archive KEK: its UID and bytes.
pub fn master_vsc(kek: &AesKey, label: &str) -> (Uid, Vec<u8>) {
    let mut rng = rand::rngs::OsRng;
    let protector = Protector::Kek {
        key_id: "archive-kek/1".into(),
        key: kek.clone(),
    };
    let mut v = Vsc::create(
        NewVsc::new(label, "employee-badge", 1_700_000_000),
        &protector,
        &mut rng,
    )
    .unwrap();
    v.put_public(DataObject::new(
        ObjectId::Piv(0x5FC102),
        label.as_bytes().to_vec(),
    ))
    .unwrap();
    let bytes = v.to_bytes(&mut rng).unwrap();
    (v.uid(), bytes)
}

/// Copies a directory tree (file modes included), leaving out `keystore`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "keystore" {
            continue;
        }
        let target = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Rewrites a file that may be read-only.
pub fn force_write(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The lines of a JSON-lines file.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes lines back (each followed by a newline).
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

/// Runs the `keyserver` binary; returns (exit code, stdout + stderr).
pub fn run_cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
