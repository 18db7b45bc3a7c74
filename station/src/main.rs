//! `station`: the card control system's command line.

fn main() -> std::process::ExitCode {
    station::cli::main()
}
