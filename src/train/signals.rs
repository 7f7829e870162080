//! Stopping a run on a signal. SIGTERM (what Slurm, Kubernetes and systemd send before they
//! kill), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's `--signal=USR1@120`) ask the pretraining loop to
//! finish its step, write a checkpoint and exit with [`EXIT_RESUMABLE`]; a second signal exits at
//! once with 128 + its number, as if it had not been caught.
//!
//! The signals are received on a thread of their own (signal-hook's iterator), so the handler
//! may print and exit; the loop only reads a flag between steps.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The exit status of a run stopped by a signal once its checkpoint is on disk: 75, sysexits'
/// `EX_TEMPFAIL` ("temporary failure; the user is invited to retry"). A requeue script tells it
/// from a failure (1) and from a finished run (0).
pub const EXIT_RESUMABLE: u8 = 75;

/// The error a stopped run ends with: `main` prints it and exits with [`EXIT_RESUMABLE`].
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by {signal} at step {step}: checkpoint written to {}; run the same command with --resume (or --resume=auto) to continue",
    checkpoint.display()
)]
pub struct StoppedBySignal {
    /// The signal's name, or "a signal on another rank".
    pub signal: String,
    pub step: u64,
    pub checkpoint: PathBuf,
}

/// The name of a signal this module handles.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// The signals received since the last [`reset`](StopRequest::reset), as the loop sees them.
#[derive(Clone)]
pub struct StopRequest {
    /// The first signal received (0: none).
    first: Arc<AtomicI32>,
}

impl StopRequest {
    /// Starts listening (once per process; later calls share the same listener).
    pub fn install() -> std::io::Result<Self> {
        static SHARED: OnceLock<Arc<AtomicI32>> = OnceLock::new();
        if let Some(first) = SHARED.get() {
            return Ok(Self { first: first.clone() });
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1])?;
        let first = SHARED.get_or_init(|| Arc::new(AtomicI32::new(0))).clone();
        let seen = first.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                if seen.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    eprintln!("\n{} again: exiting now without a checkpoint", name(sig));
                    std::process::exit(128 + sig);
                }
                eprintln!(
                    "\n{}: finishing this step and writing a checkpoint (send it again to exit at once)",
                    name(sig)
                );
            }
        })?;
        Ok(Self { first })
    }

    /// Forgets signals received before now (a new run in the same process).
    pub fn reset(&self) {
        self.first.store(0, Ordering::SeqCst);
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        Some(self.first.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}
