//! The `selfsup` binary: parses the command line and reports any error on one line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // On headless machines the Vulkan loader's Wayland probe (reached through wgpu, e.g. when
    // `--backend auto` looks for a GPU) prints "error: XDG_RUNTIME_DIR is invalid or not set"
    // lines that look like selfsup's own errors. Pointing it at the temp folder keeps the probe
    // quiet (no display socket is found there, which is the truth on such machines).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = selfsup::cli::Cli::parse();
    match selfsup::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
