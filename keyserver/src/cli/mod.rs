//! The command line: what each subcommand takes. The work is in the
//! handler files (`custody`, `records`, `profile`, `serve`, `admin`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin;
mod custody;
mod profile;
mod records;
mod serve;

/// What a handler returns: an exit code, or an error whose chain is printed.
pub type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

/// Cardsmith's keyserver: holds every key, builds and seals every card's
/// master VSC, and serves SCP03 personalization scripts to stations.
#[derive(Parser, Debug)]
#[command(name = "keyserver", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a keyserver: custodian components, the root KEK, every key.
    #[command(
        after_help = "Example:\n  keyserver init --data /var/lib/cardsmith --custodians 2\n\n\
        Each custodian receives one component (shown on the terminal, or written to the file \
        given with --component-out). The root key exists only when all components are combined; \
        one component alone reveals nothing."
    )]
    Init(InitArgs),

    /// Unlock with the custodians' components and serve stations.
    #[command(
        after_help = "Example:\n  keyserver serve --data /var/lib/cardsmith --listen 0.0.0.0:7443 --advertise ks.example:7443\n  \
        keyserver serve --data /var/lib/cardsmith --unlock /media/c1/component --unlock /media/c2/component --profiles profiles\n\n\
        Without --unlock, each custodian is asked for a component on the terminal. The profiles are read from \
        DATA/profiles (put them there; `init` creates none) or from --profiles. Stations connect \
        with mutual TLS on --listen; `keyserver job`, `enroll-station` and `revoke-station` use the \
        admin socket DATA/admin.sock (mode 0600). When ready, one line `keyserver ready: …` is printed \
        on standard output. Logs are JSON lines when standard output is not a terminal (RUST_LOG \
        sets the level). SIGINT or SIGTERM stops it: cards in personalization are void and their \
        records queued again."
    )]
    Serve(ServeArgs),

    /// Issuance profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),

    /// Jobs: submit records from CSV, see their progress (needs a running keyserver).
    #[command(subcommand)]
    Job(JobCommand),

    /// Issue a station's certificate bundle (needs a running keyserver).
    #[command(
        after_help = "Example:\n  keyserver enroll-station desk-1 --out desk-1.bundle --data /var/lib/cardsmith"
    )]
    EnrollStation(EnrollArgs),

    /// Revoke a station's certificate (needs a running keyserver).
    #[command(after_help = "Example:\n  keyserver revoke-station desk-1 --data /var/lib/cardsmith")]
    RevokeStation(RevokeArgs),

    /// The master VSC archive and its manifest.
    #[command(subcommand)]
    Archive(ArchiveCommand),

    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Args, Debug)]
pub struct DataArg {
    /// The keyserver's data directory.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// How many custodians share the root key (at least 2).
    #[arg(long, value_name = "N")]
    pub custodians: u8,
    /// Write each custodian's component to these files instead of the
    /// terminal, one file per custodian (for automation and the demo).
    #[arg(long = "component-out", value_name = "FILE")]
    pub component_out: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Address to listen on for stations (mutual TLS).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
    pub listen: String,
    /// The custodians' component files, one per custodian (else asked on
    /// the terminal).
    #[arg(long = "unlock", value_name = "FILE")]
    pub unlock: Vec<PathBuf>,
    /// The issuance profiles' directory (default: DATA/profiles). `init`
    /// puts none there: the administrator copies the profiles in, or points
    /// this at them.
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<PathBuf>,
    /// RSA-2048 keys to keep ready in the key pool, refilled in the
    /// background (default: 64 when a profile escrows an RSA key, else 0).
    #[arg(long = "rsa-pool", value_name = "N")]
    pub rsa_pool: Option<usize>,
    /// The address written into station bundles, `host:port` (default: the
    /// --listen address; set it when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// Check a profile: every error with file, line and field; the escrow
    /// policy it will apply.
    #[command(after_help = "Example:\n  keyserver profile check profiles/piv-escrow.toml")]
    Check {
        /// The profile file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Validate every row of a CSV file, then queue its records as a job.
    #[command(
        after_help = "Example:\n  keyserver job submit people.csv --profile piv-escrow --data /var/lib/cardsmith\n\n\
        Every row is checked first; any error (listed per row and column) means nothing is queued. \
        A record is consumed only when its card is issued; a void card's record is queued again."
    )]
    Submit {
        /// The CSV file: a header row with `record_id` (unique, not secret) and
        /// every field the profile reads, then one row per card.
        csv: PathBuf,
        /// The profile (its id, from the profiles directory).
        #[arg(long)]
        profile: String,
        /// The job's name (default: the CSV file's stem).
        #[arg(long)]
        job: Option<String>,
        /// The card stock the job's blank cards come from.
        #[arg(long, default_value = "default")]
        stock: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Show jobs and their progress.
    #[command(after_help = "Example:\n  keyserver job status --data /var/lib/cardsmith")]
    Status {
        /// One job (default: all).
        job: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Write the PINs and PUKs the keyserver generated for a job's issued
    /// cards to a new file, for the PIN mailers.
    #[command(
        after_help = "Example:\n  keyserver job mailers people-2025 --out /secure/people-2025-mailers.csv --data /var/lib/cardsmith\n\n\
        The file is CSV (`record_id,pin,puk`; a PIN taken from the job's CSV is not repeated: empty), \
        mode 0600, and never overwrites a file. It holds every cardholder's PIN and PUK in clear: \
        print the mailers on a trusted machine, then destroy the file. Each export is audited \
        (who, which job, how many; never the values)."
    )]
    Mailers {
        /// The job.
        job: String,
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The station's name.
    pub name: String,
    /// Where to write the bundle (the station's key and certificate, the CA).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The jobs the station may run (default: all).
    #[arg(long = "job", value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The station's name.
    pub name: String,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// List the archived cards.
    #[command(after_help = "Example:\n  keyserver archive list --data /var/lib/cardsmith")]
    List(DataArg),
    /// Show one card's manifest entries and master VSC header.
    #[command(after_help = "Example:\n  keyserver archive show 00001079 --data /var/lib/cardsmith")]
    Show {
        /// The card's serial.
        serial: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Re-check every file and the whole manifest chain.
    #[command(after_help = "Example:\n  keyserver archive verify --data /var/lib/cardsmith")]
    Verify(DataArg),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Re-check the whole audit log chain and its signatures.
    #[command(after_help = "Example:\n  keyserver audit verify --data /var/lib/cardsmith")]
    Verify(DataArg),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Init(a) => custody::init(a),
        Command::Serve(a) => serve::serve(a),
        Command::Profile(ProfileCommand::Check { file }) => profile::check(&file),
        Command::Job(c) => admin::job(c),
        Command::EnrollStation(a) => admin::enroll_station(a),
        Command::RevokeStation(a) => admin::revoke_station(a),
        Command::Archive(c) => records::archive(c),
        Command::Audit(c) => records::audit(c),
    }
}
