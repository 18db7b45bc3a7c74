//! The `vsc` command: create, show, verify, enable and disable VSC files.
//! Run `vsc --help` for the subcommands.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
