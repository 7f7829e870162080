//! Synchronized batch norm (`model.sync_batch_norm`, SimCLR's "global BN"): while a training
//! step runs inside [`scope`] with a world of several ranks, the CPU kernels' training-mode
//! batch norm (`crate::cpu_kernels::batch_norm`) takes its per-channel statistics over the
//! global batch — the forward sums `Σx` and `Σ(x − μ)²` and the backward sums `Σg` and `Σg·x̂`
//! are summed over the ranks — so that N ranks × B/N images normalize exactly as one process
//! × B. Outside a scope (or with one rank) each process normalizes its own images.
//!
//! The step's forward and backward both run on the calling thread (burn's autodiff runs the
//! backward where `backward()` is called), so a thread-local scope reaches both.

use std::cell::RefCell;

use super::World;

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Runs `f` with batch norm synchronized over `world` (when `Some` and of several ranks).
pub fn scope<T>(world: Option<&World>, f: impl FnOnce() -> T) -> T {
    let new = world.filter(|w| w.size() > 1).cloned();
    let before = WORLD.with(|w| w.replace(new));
    let out = f();
    WORLD.with(|w| w.replace(before));
    out
}

/// The world batch norm synchronizes over on this thread, if any.
pub fn current() -> Option<World> {
    WORLD.with(|w| w.borrow().clone())
}

/// Sums `sums` over the ranks of the current scope (nothing outside one).
pub fn reduce(sums: &mut [f64]) {
    if let Some(w) = current() {
        w.all_reduce_sum_f64(sums);
    }
}
