//! A bound on how long a rank waits in a collective. MPI ends the job when a rank dies, but a
//! rank that hangs (stopped, deadlocked, or a launcher that does not kill the rest, such as
//! `srun` without `--kill-on-bad-exit`) would leave the others waiting forever. Each MPI call
//! marks itself as waiting ([`waiting`]); a watchdog thread ends this process, naming the
//! operation and how long it waited, once one call has waited past the limit
//! (`SELFSUP_COLLECTIVE_TIMEOUT` seconds, default 900: long enough for rank 0's checkpoints and
//! evaluations, which the other ranks wait out in their next collective).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since [`EPOCH`] at which the current wait began, or 0 when not waiting.
static SINCE_MS: AtomicU64 = AtomicU64::new(0);
static OP: Mutex<&'static str> = Mutex::new("");
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Nanoseconds spent in collectives so far (for `selfsup bench train`'s communication share).
static TOTAL_NS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Marks this process as waiting in collective `op` until the guard is dropped.
pub fn waiting(op: &'static str) -> Waiting {
    *OP.lock().unwrap_or_else(|p| p.into_inner()) = op;
    SINCE_MS.store(now_ms(), Ordering::SeqCst);
    Waiting(Instant::now())
}

/// See [`waiting`].
pub struct Waiting(Instant);

impl Drop for Waiting {
    fn drop(&mut self) {
        SINCE_MS.store(0, Ordering::SeqCst);
        TOTAL_NS.fetch_add(self.0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Seconds this process has spent in collectives (communicating, or waiting for slower ranks).
pub fn seconds_in_collectives() -> f64 {
    TOTAL_NS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// The limit from `SELFSUP_COLLECTIVE_TIMEOUT` (seconds), default 900 s.
pub fn timeout_from_env() -> anyhow::Result<Duration> {
    match std::env::var("SELFSUP_COLLECTIVE_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(900)),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => anyhow::bail!("SELFSUP_COLLECTIVE_TIMEOUT = {v:?}: expected a number of seconds > 0"),
        },
    }
}

/// Starts the watchdog of rank `rank` of `size` (once per process).
pub fn start(rank: usize, size: usize, limit: Duration) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = now_ms();
        std::thread::Builder::new()
            .name("collective-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(200).min(limit / 4));
                    let since = SINCE_MS.load(Ordering::SeqCst);
                    if since == 0 {
                        continue;
                    }
                    let waited = Duration::from_millis(now_ms().saturating_sub(since));
                    if waited > limit {
                        let op = *OP.lock().unwrap_or_else(|p| p.into_inner());
                        eprintln!(
                            "error (rank {rank} of {size}): waited {:.0} s in an MPI {op} for the other ranks (limit SELFSUP_COLLECTIVE_TIMEOUT = {:.0} s): another rank has died, hung or stopped early; ending this rank",
                            waited.as_secs_f64(),
                            limit.as_secs_f64()
                        );
                        // SAFETY: ends the process at once; MPI's own exit handlers could block
                        // on the very peers that are gone.
                        unsafe { libc::_exit(3) };
                    }
                }
            })
            .expect("spawning the collective watchdog");
    });
}
