//! The `vsc` command: create, show, verify, enable and disable VSC files;
//! make blank card stock, serve a card through pcscd, feed a stack of cards.
//! Run `vsc --help` for the subcommands.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
