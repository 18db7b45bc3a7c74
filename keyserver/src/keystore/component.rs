//! The custodians' components of the root key-encryption key.
//!
//! Split knowledge, N of N: each of N ≥ 2 custodians holds one component of
//! 32 random bytes; the root KEK (AES-256) is the XOR of all of them. Any
//! N-1 components together are uniformly random and independent of the root
//! KEK: they reveal nothing about it.
//!
//! A component's **check value** is the AES key check value of the
//! component taken as an AES-256 key: the first 3 bytes of
//! `AES-256(component, 16 × 01)`. The keystore keeps each custodian's check
//! value and the root KEK's, so an unlock names the custodian whose
//! component is wrong.
//!
//! On paper or screen a component is 64 hex digits in 16 groups of 4; a
//! component file (`keyserver init --component-out`) reads:
//!
//! ```text
//! # Cardsmith keyserver 3f9a1c2b7d4e6a01: root key component of custodian 2 of 3.
//! # SECRET. Only custodian 2 may hold it. …
//! keyserver: 3f9a1c2b7d4e6a01
//! custodian: 2 of 3
//! component: 1A2B 3C4D … (16 groups)
//! check: 5A3F01
//! ```
//!
//! Lines starting with `#` and blank lines are ignored (so a file can carry
//! more labels).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use vsc::secret::{AesKey, SecretBytes};
use zeroize::{Zeroize, Zeroizing};

/// Bytes in a component.
pub const COMPONENT_LEN: usize = 32;
/// The most custodians a keystore has.
pub const MAX_CUSTODIANS: u8 = 16;

/// A component could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("{place}: {problem}")]
    Format { place: String, problem: String },
    #[error("reading the component file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn format_err(place: impl Into<String>, problem: impl Into<String>) -> ComponentError {
    ComponentError::Format {
        place: place.into(),
        problem: problem.into(),
    }
}

/// A check value as 6 hex digits.
pub fn check_value_hex(kcv: [u8; 3]) -> String {
    hex::encode_upper(kcv)
}

/// The check value of a 32-byte key or component.
pub fn check_value(key: &AesKey) -> [u8; 3] {
    vsc::scp03::key_check_value(key)
}

/// One custodian's component. Zeroized on drop; `Debug` shows only whose it is.
#[derive(Clone)]
pub struct Component {
    custodian: u8,
    of: u8,
    key: AesKey,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Component(custodian {} of {}, [REDACTED])",
            self.custodian, self.of
        )
    }
}

impl Component {
    /// A fresh random component for `custodian` (1-based) of `of`.
    pub fn random(custodian: u8, of: u8) -> Self {
        Component {
            custodian,
            of,
            key: AesKey::random(&mut OsRng, vsc::secret::AesKeyLen::Aes256),
        }
    }

    /// From 32 bytes.
    pub fn from_secret(custodian: u8, of: u8, bytes: &SecretBytes) -> Result<Self, ComponentError> {
        if bytes.len() != COMPONENT_LEN {
            return Err(format_err(
                format!("custodian {custodian}'s component"),
                format!("has {} bytes; a component has {COMPONENT_LEN}", bytes.len()),
            ));
        }
        let key = AesKey::from_slice(bytes.expose_secret())
            .map_err(|e| format_err(format!("custodian {custodian}'s component"), e.to_string()))?;
        Ok(Component { custodian, of, key })
    }

    /// Parses 64 hex digits; spaces, `-` and `:` between them are ignored.
    pub fn parse_hex(custodian: u8, of: u8, text: &str) -> Result<Self, ComponentError> {
        let place = format!("custodian {custodian}'s component");
        let mut digits = Zeroizing::new(String::with_capacity(64));
        for c in text.chars() {
            if c.is_ascii_hexdigit() {
                digits.push(c);
            } else if !(c.is_whitespace() || c == '-' || c == ':') {
                return Err(format_err(place, "contains a character that is not a hex digit"));
            }
        }
        if digits.len() != 2 * COMPONENT_LEN {
            return Err(format_err(
                place,
                format!(
                    "has {} hex digits; a component has {}",
                    digits.len(),
                    2 * COMPONENT_LEN
                ),
            ));
        }
        let mut bytes = Zeroizing::new(vec![0u8; COMPONENT_LEN]);
        hex::decode_to_slice(digits.as_bytes(), &mut bytes[..])
            .map_err(|_| format_err(place.clone(), "is not valid hex"))?;
        let key = AesKey::from_slice(&bytes).map_err(|e| format_err(place, e.to_string()))?;
        Ok(Component { custodian, of, key })
    }

    /// Which custodian (1-based).
    pub fn custodian(&self) -> u8 {
        self.custodian
    }

    /// Of how many.
    pub fn of(&self) -> u8 {
        self.of
    }

    /// The component's check value.
    pub fn check_value(&self) -> [u8; 3] {
        check_value(&self.key)
    }

    /// The bytes. Keep the borrow short and never log it.
    pub fn expose_secret(&self) -> &[u8] {
        self.key.expose_secret()
    }

    /// 64 upper-case hex digits in 16 groups of 4, 8 groups a line.
    pub fn grouped_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(96));
        let mut h = Zeroizing::new(hex::encode_upper(self.key.expose_secret()));
        for (i, chunk) in h.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                s.push(if i % 8 == 0 { '\n' } else { ' ' });
            }
            s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        h.zeroize();
        s
    }

    /// The text of a component file.
    pub fn file_text(&self, keyserver: &str) -> Zeroizing<String> {
        let mut t = Zeroizing::new(String::with_capacity(512));
        let (c, n) = (self.custodian, self.of);
        let _ = writeln!(
            t,
            "# Cardsmith keyserver {keyserver}: root key component of custodian {c} of {n}."
        );
        let _ = writeln!(
            t,
            "# SECRET. Only custodian {c} may hold this file. With the other {} components it opens",
            n.saturating_sub(1)
        );
        let _ = writeln!(
            t,
            "# every key of this keyserver; alone it reveals nothing. Do not copy it; keep it offline."
        );
        let _ = writeln!(t, "keyserver: {keyserver}");
        let _ = writeln!(t, "custodian: {c} of {n}");
        let grouped = self.grouped_hex();
        let one_line = Zeroizing::new(grouped.replace('\n', " "));
        let _ = writeln!(t, "component: {}", one_line.as_str());
        let _ = writeln!(t, "check: {}", check_value_hex(self.check_value()));
        t
    }
}

/// What a component file holds.
#[derive(Debug)]
pub struct ComponentFile {
    pub path: PathBuf,
    pub keyserver: String,
    pub component: Component,
}

/// Reads a component file (see the module documentation for its format).
pub fn read_component_file(path: &Path) -> Result<ComponentFile, ComponentError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| ComponentError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    );
    let file = path.display();
    let (mut keyserver, mut custodian, mut component, mut check) = (None, None, None, None);
    for (i, line) in text.lines().enumerate() {
        let place = format!("component file {file} line {}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format_err(&place, "expected `name: value`"))?;
        let value = value.trim();
        match key.trim() {
            "keyserver" => keyserver = Some(value.to_string()),
            "custodian" => {
                let (c, n) = value
                    .split_once(" of ")
                    .and_then(|(c, n)| Some((c.trim().parse::<u8>().ok()?, n.trim().parse::<u8>().ok()?)))
                    .filter(|(c, n)| *c >= 1 && c <= n)
                    .ok_or_else(|| format_err(&place, "expected `custodian: <i> of <n>`"))?;
                custodian = Some((c, n));
            }
            "component" => component = Some((i + 1, Zeroizing::new(value.to_string()))),
            "check" => check = Some(value.to_ascii_uppercase()),
            other => {
                return Err(format_err(
                    &place,
                    format!("unknown field {other:?} (expected keyserver, custodian, component, check)"),
                ))
            }
        }
    }
    let missing = |what: &str| format_err(format!("component file {file}"), format!("has no `{what}:` line"));
    let keyserver = keyserver.ok_or_else(|| missing("keyserver"))?;
    let (c, n) = custodian.ok_or_else(|| missing("custodian"))?;
    let (line, hex) = component.ok_or_else(|| missing("component"))?;
    let component = Component::parse_hex(c, n, &hex).map_err(|e| match e {
        ComponentError::Format { problem, .. } => format_err(
            format!("component file {file} line {line}"),
            format!("the component {problem}"),
        ),
        other => other,
    })?;
    if let Some(check) = check {
        let actual = check_value_hex(component.check_value());
        if check != actual {
            return Err(format_err(
                format!("component file {file}"),
                format!(
                    "the component's check value is {actual} but the file says {check}: the component was \
                     mistyped or changed"
                ),
            ));
        }
    }
    Ok(ComponentFile {
        path: path.to_path_buf(),
        keyserver,
        component,
    })
}

/// The root KEK: the XOR of all components.
pub fn combine(components: &[Component]) -> AesKey {
    let mut acc = Zeroizing::new([0u8; COMPONENT_LEN]);
    for c in components {
        for (a, b) in acc.iter_mut().zip(c.expose_secret()) {
            *a ^= b;
        }
    }
    // 32 bytes are a valid AES-256 key.
    AesKey::from_slice(&acc[..])
        .unwrap_or_else(|_| AesKey::random(&mut OsRng, vsc::secret::AesKeyLen::Aes256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_grouping() {
        let c = Component::random(2, 3);
        let g = c.grouped_hex();
        assert_eq!(g.lines().count(), 2);
        assert!(g
            .lines()
            .all(|l| l.split(' ').count() == 8 && l.split(' ').all(|w| w.len() == 4)));
        let back = Component::parse_hex(2, 3, &g).unwrap();
        assert_eq!(back.expose_secret(), c.expose_secret());
        assert!(Component::parse_hex(2, 3, &g[..g.len() - 1]).is_err());
        assert!(Component::parse_hex(2, 3, &g.replace('A', "x")).is_err() || !g.contains('A'));
    }

    #[test]
    fn file_round_trip_and_typo_detection() {
        let dir = tempfile::tempdir().unwrap();
        let c = Component::random(1, 2);
        let p = dir.path().join("c1");
        std::fs::write(&p, c.file_text("00aa").as_bytes()).unwrap();
        let f = read_component_file(&p).unwrap();
        assert_eq!(
            (f.keyserver.as_str(), f.component.custodian(), f.component.of()),
            ("00aa", 1, 2)
        );
        assert_eq!(f.component.expose_secret(), c.expose_secret());
        // Change one digit of the component: the check line catches it.
        let text = c.file_text("00aa");
        let at = text.find("component: ").unwrap() + 11;
        let mut bad = text.to_string();
        let d = bad.as_bytes()[at];
        bad.replace_range(at..at + 1, if d == b'0' { "1" } else { "0" });
        std::fs::write(&p, bad).unwrap();
        let e = read_component_file(&p).unwrap_err().to_string();
        assert!(e.contains("mistyped"), "{e}");
        assert!(!e.contains(&hex::encode_upper(c.expose_secret())[..8]), "{e}");
    }

    #[test]
    fn combination_is_xor() {
        let a = Component::random(1, 2);
        let b = Component::random(2, 2);
        let k = combine(&[a.clone(), b.clone()]);
        for i in 0..32 {
            assert_eq!(k.expose_secret()[i], a.expose_secret()[i] ^ b.expose_secret()[i]);
        }
    }
}
