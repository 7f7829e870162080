//! Synchronized batch norm (`model.sync_batch_norm`, SimCLR's "global BN"): while a training
//! step runs inside [`scope`] with a world of several ranks, training-mode batch norm
//! (`crate::cpu_kernels::batch_norm`: the CPU kernel, or [`batch_norm`] here on other devices)
//! takes its per-channel statistics over the global batch — the forward sums `Σx` and
//! `Σ(x − μ)²` and the backward sums `Σg` and `Σg·x̂` are summed over the ranks — so that N
//! ranks × B/N images normalize exactly as one process × B. Outside a scope (or with one rank)
//! each process normalizes its own images.
//!
//! The step's forward and backward both run on the calling thread (burn's autodiff runs the
//! backward where `backward()` is called), so a thread-local scope reaches both.

use std::cell::RefCell;

use burn::tensor::TensorData;

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

/// Training-mode batch norm (then ReLU when `relu`) with the global batch's statistics, in
/// burn's tensor operations, over the ranks of the current [`scope`]: for devices and settings
/// the CPU kernels do not cover (wgpu, `SELFSUP_KERNELS=off`). The per-channel sums `Σx` (with
/// the image count) and `Σ(x − μ)²` go through the differentiable all-reduce ([`super::all_reduce_op`]), so autodiff gives the synchronized
/// backward. Updates the running statistics as the kernels do (biased variance) when `update`.
pub fn batch_norm<const D: usize>(
    bn: &burn::nn::BatchNorm,
    x: burn::Tensor<D>,
    relu: bool,
    update: bool,
) -> burn::Tensor<D> {
    use super::all_reduce_op::all_reduce_sum;
    let dims = x.dims();
    let c = dims[1];
    let local = x.shape().num_elements() / c.max(1);
    // Channels first, everything else flattened: [c, images × positions].
    let mut swapped = dims;
    swapped.swap(0, 1);
    let flat = x.swap_dims(0, 1).reshape([c, local]);
    // This rank's count rides along with the sums: one all-reduce (one host round-trip) for both.
    let count = burn::Tensor::<1>::from_data(TensorData::new(vec![local as f32], [1]), &flat.device());
    let sums = all_reduce_sum(burn::Tensor::cat(vec![flat.clone().sum_dim(1).reshape([c]), count], 0));
    let m = sums.clone().narrow(0, c, 1).detach().clamp_min(1.0);
    let mean = sums.narrow(0, 0, c) / m.clone();
    let centered = flat - mean.clone().reshape([c, 1]);
    let var = all_reduce_sum(centered.clone().powi_scalar(2).sum_dim(1).reshape([c])) / m;
    let scale = bn.gamma.val().div(var.clone().add_scalar(bn.epsilon).sqrt());
    let y = centered * scale.reshape([c, 1]) + bn.beta.val().reshape([c, 1]);
    let y = y.reshape(swapped).swap_dims(0, 1);
    if update {
        crate::cpu_kernels::extension::update_running_stats(bn, mean, var);
    }
    if relu { burn::tensor::activation::relu(y) } else { y }
}
