//! `vsc blank`: blank card stock.

use std::path::{Path, PathBuf};

use clap::Args;
use rand::rngs::OsRng;
use vsc::card::blank::BlankCard;
use vsc::file::{Protector, VscError};
use vsc::scp03::StaticKeys;
use vsc::secret::AesKey;
use zeroize::Zeroizing;

use super::{chain, secrets, Argon2Args, Failure};

/// The most cards one `--serials` range makes.
const MAX_STACK: u32 = 10_000;

#[derive(Args)]
pub(crate) struct BlankArgs {
    /// The chip serial, decimal (up to 8 digits), e.g. 00001079.
    #[arg(
        long,
        value_name = "SERIAL",
        required_unless_present = "serials",
        conflicts_with = "serials"
    )]
    serial: Option<String>,
    /// Where to write the card (with --serial).
    #[arg(long, value_name = "FILE", requires = "serial", conflicts_with = "out_dir")]
    out: Option<PathBuf>,
    /// A range of serials for a stack of cards, e.g. 00001000-00001015.
    #[arg(long, value_name = "FIRST-LAST", requires = "out_dir")]
    serials: Option<String>,
    /// The folder the stack is written to, as <serial>.vsc (with --serials).
    #[arg(long, value_name = "DIR", requires = "serials")]
    out_dir: Option<PathBuf>,
    /// File whose first line is the password protecting the card files.
    #[arg(long, value_name = "FILE", conflicts_with = "kek_file")]
    password_file: Option<PathBuf>,
    /// Protect the card files with this KEK (32 raw bytes or 64 hex digits).
    #[arg(long, value_name = "FILE", requires = "kek_id")]
    kek_file: Option<PathBuf>,
    /// The id of the KEK in --kek-file, e.g. stock/1.
    #[arg(long, value_name = "ID", requires = "kek_file")]
    kek_id: Option<String>,
    /// The stock's SCP03 transport key (hex, 16/24/32 bytes), used as
    /// Key-ENC, Key-MAC and Key-DEK. Default: the GlobalPlatform test key
    /// 404142…4F.
    #[arg(long, value_name = "HEX")]
    gp_key: Option<String>,
    /// The key version number of the transport key set, hex.
    #[arg(long, value_name = "HEX", default_value = "01")]
    kvn: String,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    argon2: Argon2Args,
}

/// A chip serial: up to 8 decimal digits.
fn parse_serial(s: &str) -> Result<u32, Failure> {
    let bad = || Failure::msg(format!("{s:?} is not a chip serial (up to 8 decimal digits)"));
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

fn parse_range(s: &str) -> Result<(u32, u32), Failure> {
    let (a, b) = s.split_once('-').ok_or_else(|| {
        Failure::msg(format!(
            "--serials {s:?}: expected FIRST-LAST, e.g. 00001000-00001015"
        ))
    })?;
    let (first, last) = (parse_serial(a)?, parse_serial(b)?);
    if last < first {
        return Err(Failure::msg(format!(
            "--serials {s:?}: the last serial is below the first"
        )));
    }
    if last - first >= MAX_STACK {
        return Err(Failure::msg(format!(
            "--serials {s:?}: at most {MAX_STACK} cards at once"
        )));
    }
    Ok((first, last))
}

fn transport_keys(gp_key: Option<&str>) -> Result<Option<StaticKeys>, Failure> {
    let Some(text) = gp_key else { return Ok(None) };
    let bad = |why: String| Failure::msg(format!("--gp-key: {why}"));
    let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|e| bad(format!("not hex: {e}")))?);
    let key = || AesKey::from_slice(&raw).map_err(|e| bad(e.to_string()));
    let keys = StaticKeys::new(key()?, key()?, key()?).map_err(|e| bad(e.to_string()))?;
    Ok(Some(keys))
}

pub(crate) fn run(a: BlankArgs) -> Result<(), Failure> {
    let kvn_bytes =
        hex::decode(&a.kvn).map_err(|e| Failure::msg(format!("--kvn {:?}: not hex: {e}", a.kvn)))?;
    let kvn = match kvn_bytes.as_slice() {
        [k] if (0x01..=0x7F).contains(k) => *k,
        _ => return Err(Failure::msg(format!("--kvn {:?}: one byte, 01 to 7F", a.kvn))),
    };
    let keys = transport_keys(a.gp_key.as_deref())?;
    // Each card: (serial, file).
    let cards: Vec<(u32, PathBuf)> = match (&a.serial, &a.out, &a.serials, &a.out_dir) {
        (Some(serial), Some(out), None, None) => vec![(parse_serial(serial)?, out.clone())],
        (Some(_), None, _, _) => return Err(Failure::msg("--serial needs --out FILE")),
        (None, _, Some(range), Some(dir)) => {
            let (first, last) = parse_range(range)?;
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::msg(format!("cannot create {}: {e}", dir.display())))?;
            (first..=last)
                .map(|n| (n, dir.join(format!("{n:08}.vsc"))))
                .collect()
        }
        _ => {
            return Err(Failure::msg(
                "give --serial S --out FILE, or --serials A-B --out-dir DIR",
            ))
        }
    };
    if !a.force {
        if let Some((_, p)) = cards.iter().find(|(_, p)| p.exists()) {
            return Err(Failure::msg(format!(
                "{} exists; use --force to replace it",
                p.display()
            )));
        }
    }
    let protector = match (&a.kek_file, &a.kek_id, &a.password_file) {
        (Some(f), Some(id), _) => Protector::Kek {
            key_id: id.clone(),
            key: secrets::kek_from_file(f)?,
        },
        (_, _, Some(f)) => Protector::Password {
            password: secrets::password_from_file(f)?,
            params: a.argon2.params()?,
        },
        _ => Protector::Password {
            password: secrets::prompt_password("Password for the card files: ", true)?,
            params: a.argon2.params()?,
        },
    };
    let mut rng = OsRng;
    for (serial, out) in &cards {
        let mut blank = BlankCard::new(*serial).map_err(|e| Failure::msg(chain(&e)))?;
        blank.kvn = kvn;
        if let Some(k) = &keys {
            blank.keys = k.clone();
        }
        let vsc = blank
            .build(&protector, &mut rng)
            .map_err(|e| Failure::msg(format!("{}: {}", out.display(), chain(&e))))?;
        save(&vsc, out, a.force, &mut rng)?;
    }
    match cards.as_slice() {
        [(serial, out)] => println!("Blank card {serial:08} in {}", out.display()),
        _ => println!(
            "{} blank cards in {}",
            cards.len(),
            a.out_dir.as_deref().unwrap_or(Path::new(".")).display()
        ),
    }
    Ok(())
}

fn save(vsc: &vsc::file::Vsc, out: &Path, force: bool, rng: &mut OsRng) -> Result<(), Failure> {
    let saved = if force {
        vsc.save(out, rng)
    } else {
        vsc.save_new(out, rng)
    };
    saved.map_err(|e| match &e {
        VscError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Failure::msg(format!("{} exists; use --force to replace it", out.display()))
        }
        _ => Failure::at(out, &e),
    })
}
