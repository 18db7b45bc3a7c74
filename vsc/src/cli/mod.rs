//! The `vsc` command line.

mod blank;
mod feeder;
mod secrets;
mod serve;
mod show;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::rngs::OsRng;
use vsc::file::{Argon2Params, NewVsc, Origin, Protector, State, Unlock, Vsc, VscError, VscFile};

/// A failed command: the message for stderr (after `vsc: `).
#[derive(Debug)]
pub(crate) struct Failure(String);

impl Failure {
    pub(crate) fn msg(m: impl Into<String>) -> Self {
        Failure(m.into())
    }

    /// `path: error: cause: cause …`, the whole chain.
    pub(crate) fn at(path: &Path, e: &VscError) -> Self {
        Failure(format!("{}: {}", path.display(), chain(e)))
    }
}

pub(crate) fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Parser)]
#[command(
    name = "vsc",
    version,
    about = "Create, show and check VSC files (virtual smart cards); serve them as cards through pcscd",
    long_about = "Create, show and check VSC files (virtual smart cards); serve them as cards through pcscd.\n\n\
        A VSC file holds a card's header, its key slots and four areas: public (in clear), \
        private, secret key and password (encrypted). Without a key only the integrity of the \
        file can be checked; a password or KEK also authenticates it.\n\n\
        `vsc blank` makes blank card stock, `vsc serve` puts one card into a vpcd reader of \
        pcscd, `vsc feeder` feeds a stack of cards through vpcd readers into pass and reject bins.\n\n\
        Exit status: 0 success, 1 a check or operation failed, 2 usage error.",
    after_help = "Example:\n  vsc new --label 'VSC 00001079' --password-file pw.txt --out card.vsc\n  \
        vsc verify card.vsc --password-file pw.txt\n  \
        vsc blank --serial 00001079 --out blank.vsc --password-file pw.txt\n  \
        vsc serve blank.vsc --password-file pw.txt"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new, empty, active VSC protected by a password.
    #[command(after_help = "Example:\n  \
        vsc new --label 'VSC 00001079' --password-file pw.txt --out card.vsc --profile piv-basic\n\n\
        The password is the first line of the password file. Without --password-file, vsc asks \
        on the terminal.")]
    New(NewArgs),
    /// Print the header and the public area; --private adds the encrypted areas.
    #[command(after_help = "Example:\n  vsc show card.vsc\n  \
        vsc show card.vsc --private --password-file pw.txt\n\n\
        Secret key material and password verifiers are never printed: only key references, \
        algorithms, attributes and retry counters.")]
    Show(ShowArgs),
    /// Run the consistency check; with a password or KEK, the full check.
    #[command(after_help = "Example:\n  vsc verify card.vsc\n  \
        vsc verify card.vsc --password-file pw.txt\n  \
        vsc verify card.vsc --kek-file archive.kek --kek-id archive-kek/1\n\n\
        Without a key, the integrity digest and the structure are checked but the file \
        authentication tag and the encrypted areas' AEAD tags are not.")]
    Verify(VerifyArgs),
    /// Mark a VSC disabled (kept as a back-up, not usable as a card).
    #[command(after_help = "Example:\n  vsc disable card.vsc --password-file pw.txt\n\n\
        The state is authenticated, so this needs the password or KEK. The file is replaced \
        atomically.")]
    Disable(StateArgs),
    /// Mark a VSC active again.
    #[command(after_help = "Example:\n  vsc enable card.vsc --password-file pw.txt\n\n\
        The state is authenticated, so this needs the password or KEK. The file is replaced \
        atomically.")]
    Enable(StateArgs),
    /// Make blank card stock: one card, or a stack of them.
    #[command(after_help = "Example:\n  \
        vsc blank --serial 00001079 --out blank.vsc --password-file pw.txt\n  \
        vsc blank --serials 00001000-00001015 --out-dir stock --kek-file stock.kek --kek-id stock/1\n\n\
        A blank card is in life cycle OP_READY with the SCP03 transport key set (the \
        GlobalPlatform test keys 40..4F as key version 01 unless --gp-key/--kvn say otherwise), \
        an empty PIV application with the default management key, PIN 123456 and PUK 12345678. \
        A stack is written as DIR/<serial>.vsc, the input of `vsc feeder`.")]
    Blank(blank::BlankArgs),
    /// Put a card into a reader of pcscd (through vsmartcard's vpcd) until Ctrl-C.
    #[command(after_help = "Example:\n  \
        scripts/pcscd start\n  \
        vsc serve card.vsc --password-file pw.txt\n  \
        pkcs15-tool --reader 'Virtual PCD 00 00' --list-certificates\n\n\
        Port 35963 is the reader 'Virtual PCD 00 00', 35964 'Virtual PCD 00 01'. Every change \
        a client makes is saved to the file atomically before the card answers. When pcscd is not \
        running yet or restarts, the card waits and reconnects. Ctrl-C takes the card out of the \
        reader and exits 0.")]
    Serve(serve::ServeArgs),
    /// Feed a stack of blank cards through vpcd readers into pass and reject bins.
    #[command(after_help = "Example:\n  \
        vsc blank --serials 00001000-00001015 --out-dir stock --kek-file stock.kek --kek-id stock/1\n  \
        vsc feeder --ports 35963-35964 --stock stock --out run1 --kek-file stock.kek --kek-id stock/1\n\n\
        One card per port: the next card file is claimed from the stock (moved atomically into \
        OUT/inflight/) and put into the reader. A card whose GlobalPlatform life cycle is SECURED \
        when it is powered off goes to OUT/pass/; a card powered off after personalization \
        started but not SECURED, or idle longer than --idle-timeout, goes to OUT/reject/. A \
        card nobody touches stays in its reader. Every decision is a line of OUT/log.jsonl. \
        Cards an earlier run left in OUT/inflight/ go to OUT/reject/ at start. The feeder exits 0 \
        when the stock is empty and every reader is done; Ctrl-C stops it (untouched cards go \
        back to the stock).")]
    Feeder(feeder::FeederArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OriginArg {
    Master,
    Backup,
    Temporary,
    Chip,
}

impl From<OriginArg> for Origin {
    fn from(o: OriginArg) -> Self {
        match o {
            OriginArg::Master => Origin::Master,
            OriginArg::Backup => Origin::Backup,
            OriginArg::Temporary => Origin::Temporary,
            OriginArg::Chip => Origin::Chip,
        }
    }
}

#[derive(Args)]
struct NewArgs {
    /// The label, e.g. 'VSC 00001079'.
    #[arg(long)]
    label: String,
    /// File whose first line is the password (else asked on the terminal).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Where to write the VSC.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The type: the issuance profile id.
    #[arg(long, value_name = "ID", default_value = "generic")]
    profile: String,
    #[arg(long, value_enum, default_value = "master")]
    origin: OriginArg,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Also protect the VSC with this KEK (32 raw bytes or 64 hex digits).
    #[arg(long, value_name = "FILE", requires = "kek_id")]
    kek_file: Option<PathBuf>,
    /// The id of the KEK in --kek-file, e.g. archive-kek/1.
    #[arg(long, value_name = "ID", requires = "kek_file")]
    kek_id: Option<String>,
    /// Serial number of a chip this VSC belongs to, in hex (repeatable).
    #[arg(long = "chip-serial", value_name = "HEX")]
    chip_serials: Vec<String>,
    #[command(flatten)]
    argon2: Argon2Args,
}

/// The cost of a password protector.
#[derive(Args)]
pub(crate) struct Argon2Args {
    /// Argon2id memory cost in KiB (default: 64 MiB, RFC 9106).
    #[arg(long, value_name = "KIB", default_value_t = Argon2Params::RECOMMENDED.m_cost_kib())]
    argon2_memory: u32,
    /// Argon2id passes.
    #[arg(long, value_name = "N", default_value_t = Argon2Params::RECOMMENDED.t_cost())]
    argon2_time: u32,
    /// Argon2id lanes.
    #[arg(long, value_name = "N", default_value_t = Argon2Params::RECOMMENDED.p_cost())]
    argon2_lanes: u32,
}

impl Argon2Args {
    pub(crate) fn params(&self) -> Result<Argon2Params, Failure> {
        Argon2Params::new(self.argon2_memory, self.argon2_time, self.argon2_lanes)
            .map_err(|e| Failure::msg(chain(&e)))
    }
}

/// How to open a VSC.
#[derive(Args)]
pub(crate) struct UnlockArgs {
    /// File whose first line is the password.
    #[arg(long, value_name = "FILE", conflicts_with = "kek_file")]
    password_file: Option<PathBuf>,
    /// File holding a KEK (32 raw bytes or 64 hex digits); needs --kek-id.
    #[arg(long, value_name = "FILE", requires = "kek_id")]
    kek_file: Option<PathBuf>,
    /// The id of the KEK's slot, e.g. archive-kek/1.
    #[arg(long, value_name = "ID", requires = "kek_file")]
    kek_id: Option<String>,
}

impl UnlockArgs {
    fn given(&self) -> bool {
        self.password_file.is_some() || self.kek_file.is_some()
    }

    /// The unlock given on the command line, else a password from the
    /// terminal, else an error.
    pub(crate) fn resolve(&self, path: &Path) -> Result<Unlock, Failure> {
        if let (Some(file), Some(id)) = (&self.kek_file, &self.kek_id) {
            return Ok(Unlock::Kek {
                key_id: id.clone(),
                key: secrets::kek_from_file(file)?,
            });
        }
        if let Some(file) = &self.password_file {
            return Ok(Unlock::Password(secrets::password_from_file(file)?));
        }
        Ok(Unlock::Password(secrets::prompt_password(
            &format!("Password for {}: ", path.display()),
            false,
        )?))
    }
}

#[derive(Args)]
struct ShowArgs {
    /// The VSC file.
    file: PathBuf,
    /// Also show the private, secret key and password areas (needs the
    /// password or KEK; key material and verifiers are never shown).
    #[arg(long)]
    private: bool,
    #[command(flatten)]
    unlock: UnlockArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// The VSC file.
    file: PathBuf,
    #[command(flatten)]
    unlock: UnlockArgs,
}

#[derive(Args)]
struct StateArgs {
    /// The VSC file.
    file: PathBuf,
    #[command(flatten)]
    unlock: UnlockArgs,
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New(a) => new(a),
        Command::Show(a) => show(a),
        Command::Verify(a) => verify(a),
        Command::Disable(a) => set_state(a, State::Disabled),
        Command::Enable(a) => set_state(a, State::Active),
        Command::Blank(a) => blank::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Feeder(a) => feeder::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(m)) => {
            eprintln!("vsc: {m}");
            ExitCode::from(1)
        }
    }
}

fn new(a: NewArgs) -> Result<(), Failure> {
    if !a.force && a.out.exists() {
        return Err(Failure::msg(format!(
            "{} exists; use --force to replace it",
            a.out.display()
        )));
    }
    let params = a.argon2.params()?;
    let mut serials = Vec::new();
    for s in &a.chip_serials {
        serials
            .push(hex::decode(s).map_err(|e| Failure::msg(format!("--chip-serial {s:?} is not hex: {e}")))?);
    }
    let kek = match (&a.kek_file, &a.kek_id) {
        (Some(f), Some(id)) => Some((id.clone(), secrets::kek_from_file(f)?)),
        _ => None,
    };
    let password = match &a.password_file {
        Some(f) => secrets::password_from_file(f)?,
        None => secrets::prompt_password(&format!("New password for {}: ", a.out.display()), true)?,
    };
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut fields = NewVsc::new(a.label, a.profile, created_at);
    fields.origin = a.origin.into();
    fields.chip_serials = serials;
    let mut rng = OsRng;
    let at = |e: VscError| Failure::at(&a.out, &e);
    let mut card = Vsc::create(fields, &Protector::Password { password, params }, &mut rng).map_err(at)?;
    if let Some((key_id, key)) = kek {
        card.add_protector(&Protector::Kek { key_id, key }, &mut rng)
            .map_err(at)?;
    }
    let saved = if a.force {
        card.save(&a.out, &mut rng)
    } else {
        card.save_new(&a.out, &mut rng)
    };
    saved.map_err(|e| match &e {
        VscError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Failure::msg(format!("{} exists; use --force to replace it", a.out.display()))
        }
        _ => at(e),
    })?;
    println!("Created {}", a.out.display());
    println!("UID {}", card.uid());
    Ok(())
}

fn show(a: ShowArgs) -> Result<(), Failure> {
    let bytes = VscFile::read(&a.file).map_err(|e| Failure::at(&a.file, &e))?;
    if a.private || a.unlock.given() {
        let unlock = a.unlock.resolve(&a.file)?;
        let card = Vsc::open(&bytes, &unlock).map_err(|e| Failure::at(&a.file, &e))?;
        let seen = VscFile::inspect(&bytes).map_err(|e| Failure::at(&a.file, &e))?;
        show::opened(&a.file, &seen, &card, a.private);
    } else {
        let seen = VscFile::inspect(&bytes).map_err(|e| Failure::at(&a.file, &e))?;
        show::inspected(&a.file, &seen);
    }
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<(), Failure> {
    let bytes = VscFile::read(&a.file).map_err(|e| Failure::at(&a.file, &e))?;
    let base = "magic, format version, length, SHA-256 integrity digest, body structure and section order, \
                header, key slot descriptors, public area structure";
    if a.unlock.given() {
        let unlock = a.unlock.resolve(&a.file)?;
        let card = Vsc::open(&bytes, &unlock).map_err(|e| Failure::at(&a.file, &e))?;
        let (major, minor) = card.format_version();
        let with = match &unlock {
            Unlock::Password(_) => "the password".to_owned(),
            Unlock::Kek { key_id, .. } => format!("KEK {key_id:?}"),
        };
        println!(
            "OK: {} (format {major}.{minor}): {base}; data-encryption key unwrapped with {with}; \
             file authentication tag (HMAC-SHA256); AES-GCM tags and contents of the private, \
             secret key and password areas.",
            a.file.display()
        );
    } else {
        let seen = VscFile::inspect(&bytes).map_err(|e| Failure::at(&a.file, &e))?;
        let (major, minor) = seen.format_version;
        println!(
            "OK: {} (format {major}.{minor}): {base}. NOT checked without a key: the file \
             authentication tag and the AES-GCM tags of the private, secret key and password areas; \
             the header and public area are intact but not authenticated. Give --password-file or \
             --kek-file/--kek-id for the full check.",
            a.file.display()
        );
    }
    Ok(())
}

fn set_state(a: StateArgs, state: State) -> Result<(), Failure> {
    let unlock = a.unlock.resolve(&a.file)?;
    let mut card = Vsc::load(&a.file, &unlock).map_err(|e| Failure::at(&a.file, &e))?;
    let word = match state {
        State::Active => "active",
        State::Disabled => "disabled",
    };
    if card.state() == state {
        println!("{} is already {word}", a.file.display());
        return Ok(());
    }
    card.set_state(state);
    card.save(&a.file, &mut OsRng)
        .map_err(|e| Failure::at(&a.file, &e))?;
    println!("{} is now {word}", a.file.display());
    Ok(())
}
