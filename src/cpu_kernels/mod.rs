//! The project's own CPU kernels for burn's CPU backends (flex and ndarray), used where
//! measurement says they pay (BENCHMARKS.md, "Training throughput on the CPU": the convnet step
//! 3.0× faster on flex and 1.2× PyTorch's, ResNet-18 about 1.1× PyTorch's; ndarray ~100×
//! faster): a 2-D convolution whose forward, input gradient and weight gradient are each
//! `im2col` + one gemm per chunk of images ([`conv`]), and a training-mode batch norm fused
//! with the ReLU after it, two passes each way ([`batch_norm`]), and the exact GELU of the
//! heads, vectorized ([`gelu`]).
//!
//! They are reached through a burn backend extension ([`extension`]): implemented for `Flex`,
//! `NdArray` and for `Autodiff` over them, so training records their backward step; every
//! other backend (wgpu, cuda) keeps burn's own operations, chosen at run time by the device, so the
//! model code stays backend-free. `SELFSUP_KERNELS=off` turns them off (burn's ops everywhere),
//! for comparison.

pub mod batch_norm;
pub mod conv;
pub mod dino_loss;
pub mod exp;
pub mod extension;
pub mod gelu;

use std::mem::MaybeUninit;

pub use extension::{batch_norm, conv2d, forward_conv, gelu, is_cpu, serve};

/// A vector of `len` values all written by `fill` (which must write every element): no
/// zeroing pass first. (Freed buffers are reused, so zeroing would be a full extra pass.)
pub(crate) fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` initialized all `len` elements (each caller writes every element).
    unsafe { v.set_len(len) };
    v
}

thread_local! {
    /// A per-thread override of `SELFSUP_KERNELS` (see [`with_kernels`]).
    static OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the kernels are on for models run from this thread: they are unless
/// `SELFSUP_KERNELS=off`, or inside [`with_kernels`].
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    OVERRIDE.get().unwrap_or_else(|| *ON.get_or_init(|| std::env::var("SELFSUP_KERNELS").map_or(true, |v| v != "off")))
}

/// Runs `f` with the kernels on or off for this thread (the graph is built, and flex runs,
/// on the calling thread), whatever `SELFSUP_KERNELS` says: for comparisons in one process.
pub fn with_kernels<T>(on: bool, f: impl FnOnce() -> T) -> T {
    let before = OVERRIDE.replace(Some(on));
    let out = f();
    OVERRIDE.set(before);
    out
}

/// Reproducible test values, uniform in `[lo, hi)` (xorshift; independent of `rand`).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u32 << 24) as f32 * (hi - lo) + lo
        })
        .collect()
}
