//! The `selfsup` binary: parses the command line and reports any error on one line.

use std::process::ExitCode;

use clap::Parser;
use selfsup::train::signals::StoppedBySignal;

fn main() -> ExitCode {
    // On headless machines the Vulkan loader's Wayland probe (reached through wgpu, e.g. when
    // `--backend auto` looks for a GPU) prints "error: XDG_RUNTIME_DIR is invalid or not set"
    // lines that look like selfsup's own errors. Pointing it at the temp folder keeps the probe
    // quiet (no display socket is found there, which is the truth on such machines).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    keep_freed_memory();
    // A file-size limit (`ulimit -f`) should fail the write that meets it with an error that
    // names the file (the previous checkpoint stays intact), not kill the process.
    // SAFETY: setting a signal's disposition to "ignore", before any other thread exists.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = selfsup::cli::Cli::parse();
    // Under mpirun/srun: join the other ranks (and shut MPI down when `_engine` drops).
    let (world, _engine) = match selfsup::dist::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let ranks = world.size();
    if ranks > 1 {
        selfsup::dist::install(world.clone());
        // A panic or error on one rank ends every rank (the others would wait for it forever).
        let w = world.clone();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            eprintln!(
                "error (rank {} of {}): selfsup panicked (a bug: please report it); ending every rank",
                w.rank(),
                w.size()
            );
            w.abort(101);
        }));
        match selfsup::dist::watchdog::timeout_from_env() {
            Ok(limit) => selfsup::dist::watchdog::start(world.rank(), ranks, limit),
            Err(e) => {
                eprintln!("error (rank {} of {ranks}): {}", world.rank(), one_line(&e));
                world.abort(2);
            }
        }
    }
    match selfsup::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Stopped by a signal with the checkpoint on disk (every rank gets here, after it).
        Err(e) if e.is::<StoppedBySignal>() => {
            if world.rank() == 0 {
                eprintln!("{e}");
            }
            ExitCode::from(selfsup::train::signals::EXIT_RESUMABLE)
        }
        Err(e) if ranks > 1 => {
            eprintln!("error (rank {} of {ranks}): {}", world.rank(), one_line(&e));
            world.abort(1)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Training frees and reallocates the same large activation buffers every step. glibc returns
/// blocks above its mmap threshold (at most 32 MiB) to the kernel at once, so each step paid
/// for fresh zeroed pages again (15 % of a CPU step in page faults, BENCHMARKS.md). Serving
/// every size from the heap and trimming it rarely keeps those pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
