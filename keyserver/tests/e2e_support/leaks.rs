//! The leak scan: every secret a keyserver run produced, looked for in
//! every byte of the data directory and the logs — raw, hex (both cases),
//! base64 (each alignment; [`crate::support::needles`]).
//!
//! Secrets that are only decimal digits (PINs, PUKs) are counted raw only
//! where they stand alone (no letter or digit right before or after): a
//! 6-digit PIN also occurs by chance inside the digits of timestamps and
//! hashes of the audit log, and a stored PIN would stand alone. Their hex
//! and base64 forms are counted everywhere.

use std::collections::HashMap;
use std::path::Path;

use keyserver::archive;
use keyserver::keystore::{DataDir, Unlocked};
use keyserver::ports::IssuerKeys;
use vsc::file::{Unlock, Vsc};

/// A secret to look for: what it is (never its value) and its bytes.
pub type Secret = (String, Vec<u8>);

/// Where a secret was found.
#[derive(Debug)]
pub struct Hit {
    pub secret: String,
    pub form: usize,
    pub place: String,
    pub offset: usize,
}

struct Needle {
    secret: usize,
    form: usize,
    bytes: Vec<u8>,
    standalone: bool,
}

/// Finds many needles in one pass: a bitmap of their first three bytes,
/// then a comparison only where one may start.
pub struct Scanner {
    labels: Vec<String>,
    needles: Vec<Needle>,
    bitmap: Vec<u64>,
    by_prefix: HashMap<[u8; 3], Vec<usize>>,
}

fn prefix_index(p: [u8; 3]) -> usize {
    (usize::from(p[0]) << 16) | (usize::from(p[1]) << 8) | usize::from(p[2])
}

impl Scanner {
    pub fn new(secrets: &[Secret]) -> Scanner {
        let mut s = Scanner {
            labels: Vec::new(),
            needles: Vec::new(),
            bitmap: vec![0u64; (1 << 24) / 64],
            by_prefix: HashMap::new(),
        };
        for (label, bytes) in secrets {
            assert!(bytes.len() >= 4, "{label}: too short to scan for");
            let digits = bytes.iter().all(u8::is_ascii_digit);
            let secret = s.labels.len();
            s.labels.push(label.clone());
            for (form, n) in crate::support::needles(bytes).into_iter().enumerate() {
                let standalone = digits && form == 0;
                let p = [n[0], n[1], n[2]];
                let i = prefix_index(p);
                s.bitmap[i / 64] |= 1 << (i % 64);
                s.by_prefix.entry(p).or_default().push(s.needles.len());
                s.needles.push(Needle {
                    secret,
                    form,
                    bytes: n,
                    standalone,
                });
            }
        }
        s
    }

    pub fn secrets(&self) -> usize {
        self.labels.len()
    }

    /// Every hit in `bytes` (from `place`).
    pub fn scan(&self, place: &str, bytes: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
        for i in 0..bytes.len().saturating_sub(2) {
            let p = [bytes[i], bytes[i + 1], bytes[i + 2]];
            let x = prefix_index(p);
            if self.bitmap[x / 64] & (1 << (x % 64)) == 0 {
                continue;
            }
            for &n in &self.by_prefix[&p] {
                let needle = &self.needles[n];
                let end = i + needle.bytes.len();
                if bytes.get(i..end) != Some(needle.bytes.as_slice()) {
                    continue;
                }
                if needle.standalone
                    && (alnum(i.checked_sub(1).and_then(|j| bytes.get(j))) || alnum(bytes.get(end)))
                {
                    continue;
                }
                hits.push(Hit {
                    secret: self.labels[needle.secret].clone(),
                    form: needle.form,
                    place: place.to_string(),
                    offset: i,
                });
            }
        }
        hits
    }

    /// Every hit in the files under `dir`; returns them and the bytes read.
    pub fn scan_dir(&self, dir: &Path) -> (Vec<Hit>, u64) {
        let mut hits = Vec::new();
        let mut read = 0u64;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            for entry in std::fs::read_dir(&p).unwrap() {
                let entry = entry.unwrap();
                let ft = entry.file_type().unwrap();
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() {
                    let bytes = std::fs::read(entry.path()).unwrap();
                    read += bytes.len() as u64;
                    hits.extend(self.scan(&entry.path().display().to_string(), &bytes));
                }
            }
        }
        (hits, read)
    }
}

/// The private parts of a key's material: the whole material, and for an
/// asymmetric key its scalar (P-256) or d, p, q, dP, dQ (RSA).
pub fn key_parts(label: &str, material: &[u8]) -> Vec<Secret> {
    use p256::pkcs8::DecodePrivateKey;
    use rsa::traits::PrivateKeyParts;
    let mut out = vec![(label.to_string(), material.to_vec())];
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(material) {
        out.push((format!("{label} (P-256 scalar)"), k.to_bytes().to_vec()));
    } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(material) {
        out.push((format!("{label} (RSA d)"), k.d().to_bytes_be()));
        for (i, p) in k.primes().iter().enumerate() {
            out.push((format!("{label} (RSA prime {i})"), p.to_bytes_be()));
        }
        if let Some(dp) = k.dp() {
            out.push((format!("{label} (RSA dP)"), dp.to_bytes_be()));
        }
        if let Some(dq) = k.dq() {
            out.push((format!("{label} (RSA dQ)"), dq.to_bytes_be()));
        }
    }
    out
}

/// Every key of every archived card: the escrowed key pairs and every
/// other secret key of its master VSC (opened with the archive KEK), its
/// SCP03 key set and its management key (derived again).
pub fn card_secrets(data: &Path, unlocked: &Unlocked) -> Vec<Secret> {
    let dd = DataDir::new(data);
    let (id, kek) = unlocked.archive_kek();
    let unlock = Unlock::Kek {
        key_id: id.into(),
        key: kek.clone(),
    };
    let mut out = Vec::new();
    let (cards, _) = archive::cards(&dd).unwrap();
    assert!(!cards.is_empty(), "no card was archived");
    for c in cards {
        let serial = c.serial;
        let master = Vsc::load(&dd.archive_vsc().join(c.file.unwrap()), &unlock).unwrap();
        let mut keys = 0;
        for entry in master.secret_keys() {
            keys += 1;
            out.extend(key_parts(
                &format!("card {serial:08} master key {:?}", entry.id),
                entry.material_for_card_personalization().expose_secret(),
            ));
        }
        assert!(keys > 0, "card {serial:08}: a master VSC without keys");
        let card = vsc::card::SoftCard::new(master).unwrap();
        let kdd = card.identity().kdd();
        let set = unlocked.card_keys(&kdd).unwrap();
        for (name, k) in [
            ("ENC", set.keys.enc()),
            ("MAC", set.keys.mac()),
            ("DEK", set.keys.dek()),
        ] {
            out.push((
                format!("card {serial:08} SCP03 {name}"),
                k.expose_secret().to_vec(),
            ));
        }
        out.push((
            format!("card {serial:08} PIV management key"),
            unlocked.management_key(serial).unwrap().expose_secret().to_vec(),
        ));
    }
    out
}

/// Everything custody holds: every key (the root KEK too), the custodians'
/// components (raw and as the grouped hex their files show), the default
/// stock's transport keys.
pub fn custody_secrets(
    unlocked: &Unlocked,
    components: &[keyserver::keystore::component::Component],
) -> Vec<Secret> {
    let mut out: Vec<Secret> = unlocked
        .all_key_material()
        .into_iter()
        .map(|(name, bytes)| (format!("keystore {name}"), bytes))
        .collect();
    assert!(out.len() >= 12, "{} keys", out.len());
    for c in components {
        out.push((
            format!("custodian {} component", c.custodian()),
            c.expose_secret().to_vec(),
        ));
        // As the terminal shows it (groups on lines) and as its file holds
        // it (one line).
        let grouped = c.grouped_hex();
        for (how, text) in [
            ("lines", grouped.to_string()),
            ("one line", grouped.replace('\n', " ")),
        ] {
            out.push((
                format!("custodian {} component, grouped hex on {how}", c.custodian()),
                text.into_bytes(),
            ));
        }
    }
    let t = unlocked.transport_keys("default").unwrap();
    out.push(("stock default ENC".into(), t.keys.enc().expose_secret().to_vec()));
    out
}

/// The private key of a station's bundle.
pub fn station_key(name: &str, key_pem: &str) -> Vec<Secret> {
    use p256::pkcs8::DecodePrivateKey;
    let k = p256::SecretKey::from_pkcs8_pem(key_pem).unwrap();
    let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&k).unwrap();
    vec![
        (format!("station {name} key scalar"), k.to_bytes().to_vec()),
        (format!("station {name} key PKCS#8"), der.as_bytes().to_vec()),
    ]
}

/// Fails with every hit (named, never shown).
pub fn assert_clean(hits: &[Hit]) {
    if !hits.is_empty() {
        let shown: Vec<String> = hits
            .iter()
            .take(50)
            .map(|h| {
                format!(
                    "{} (form {}) in {} at byte {}",
                    h.secret, h.form, h.place, h.offset
                )
            })
            .collect();
        panic!("{} leak(s):\n{}", hits.len(), shown.join("\n"));
    }
}
