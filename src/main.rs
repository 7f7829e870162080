//! The `selfsup` binary: parses the command line and reports any error on one line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = selfsup::cli::Cli::parse();
    match selfsup::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
