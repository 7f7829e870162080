//! One training step: the views through the encoder, the contrastive loss on their
//! projections, backward, and the optimizer update. Shared by the training loop, `selfsup bench
//! train` and the cross-backend tests. Its parameters say how the work is split: the ranks of a
//! data-parallel run ([`crate::dist`]: with one rank every collective is a no-op; with several,
//! the loss sees the global batch, gradients are summed over the ranks, and batch norm may use
//! the global batch's statistics) and the micro-batches of gradient caching
//! (`train.micro_batch`).
//!
//! Gradient caching (Gao et al. 2021, "GradCache") makes the gradient of a batch too large to
//! keep the activations of: every micro-batch's projections are computed without autodiff
//! (activations freed as they go); the loss of the whole batch and its gradient with respect to
//! all projections `∂L/∂z` come next (`O(batch × projection dim)` memory); then each micro-batch
//! is forwarded again with autodiff and `Σ z · ∂L/∂z` of its rows is back-propagated, the
//! parameter gradients summed over the micro-batches. The contrastive gradient is exactly the
//! whole batch's; batch norm normalizes each micro-batch by its own statistics (the first pass
//! computes the same statistics as the second and leaves the running ones alone, so they are
//! updated once per micro-batch). Peak memory: one micro-batch's activations.

use std::ops::Range;

use anyhow::{Context, Result};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use super::online_linear::OnlineLinear;
use crate::config::Config;
use crate::dist::{World, global_batch, grads, sync_bn};
use crate::loss::LossOutput;
use crate::method::objective::{self, Effects, Rows};
use crate::method::{MethodKind, MethodState, ema};
use crate::model::Encoder;
use crate::optim::Optimizer;

/// What a step reports.
pub struct StepOutput {
    pub loss: f32,
    /// Mean cosine similarity of positive / negative pairs (device tensors; read them only
    /// when logging, since reading synchronizes).
    pub pos_sim: Tensor<1>,
    pub neg_sim: Tensor<1>,
    /// NNCLR with labels: the share of nearest neighbours that have the anchor's label.
    pub neighbour_agreement: Option<f64>,
    /// The student's backbone features of this rank's full-size views (`[v₀ · n, dim]`,
    /// view-major, without autodiff, from the step's own forward pass): what the online linear
    /// classifier ([`super::online_linear`]) trains on.
    pub features: Tensor<2>,
}

/// Where in the run a step is: its learning rate, and what the method's schedules need.
#[derive(Clone, Copy, Debug)]
pub struct StepAt {
    pub lr: f64,
    /// Steps done before this one.
    pub step: u64,
    /// Steps of the whole run (the teacher's momentum schedule ends there).
    pub total_steps: u64,
    /// The epoch (0-based) the step belongs to (DINO's temperature warm-up and frozen layer).
    pub epoch: u64,
}

impl StepAt {
    /// A step at learning rate `lr` outside any run (benchmarks, tests): step 0 of 1, epoch 0.
    pub fn fixed(lr: f64) -> Self {
        Self { lr, step: 0, total_steps: 1, epoch: 0 }
    }
}

/// One step's views of `n` images on the device, in groups of one resolution each (the
/// full-size views, then multi-crop's small ones): group `g` is `[v_g · n, 3, s_g, s_g]`,
/// view-major (every image's first view of the group, then every image's second, …). The
/// student's rows of all groups, in this order, are the loss's `[V · n, cols]` rows
/// (`V = Σ v_g`); a teacher sees the first group (the full-size views).
#[derive(Clone)]
pub struct StepViews {
    pub groups: Vec<Tensor<4>>,
    pub n: usize,
}

impl StepViews {
    /// Two views of `n` images in one tensor (`[2n, 3, s, s]`: first views, then second ones).
    pub fn pairs(x: Tensor<4>, n: usize) -> Self {
        Self { groups: vec![x], n }
    }

    /// Views per image, over all groups.
    pub fn views(&self) -> usize {
        self.groups.iter().map(|x| x.dims()[0] / self.n).sum()
    }

    /// The same views without autodiff (for the first, activation-free pass).
    fn without_autodiff(&self) -> Self {
        Self { groups: self.groups.iter().map(|x| x.clone().inner()).collect(), n: self.n }
    }

    /// The rows (`Encoder::rows`) of images `rows`' views of the first `groups` groups,
    /// `[V · rows.len(), cols]` in the loss's view-major order, and the backbone features of the
    /// first group's views (`[v₀ · rows.len(), dim]`, view-major, without autodiff: for the
    /// online linear classifier); each group is one forward pass (one batch-norm batch), or
    /// with `per_view` each view of each group.
    fn project(&self, model: &Encoder, rows: &Range<usize>, groups: usize, per_view: bool) -> (Tensor<2>, Tensor<2>) {
        let (mut parts, mut features) = (Vec::new(), Vec::new());
        for (g, x) in self.groups[..groups].iter().enumerate() {
            let views = x.dims()[0] / self.n;
            let view = |v: usize| x.clone().narrow(0, v * self.n + rows.start, rows.len());
            let forwarded: Vec<(Tensor<2>, Tensor<2>)> = if per_view {
                (0..views).map(|v| model.rows_and_features(view(v))).collect()
            } else if rows.len() == self.n {
                vec![model.rows_and_features(x.clone())]
            } else {
                vec![model.rows_and_features(Tensor::cat((0..views).map(view).collect(), 0))]
            };
            for (z, h) in forwarded {
                parts.push(z);
                if g == 0 {
                    features.push(h.inner());
                }
            }
        }
        (cat_rows(parts), cat_rows(features))
    }

    /// The student's rows of every view and the full-size views' features ([`Self::project`]),
    /// batch norm as `bn` says: over `bn.splits` near-equal groups of the images `rows` (each
    /// group its own forward pass; 1: all of them at once), each view on its own with
    /// `bn.per_view`.
    fn student(&self, model: &Encoder, rows: &Range<usize>, bn: BnSplits) -> (Tensor<2>, Tensor<2>) {
        let parts = split(rows, bn.splits);
        let (z, h): (Vec<_>, Vec<_>) =
            parts.iter().map(|r| self.project(model, r, self.groups.len(), bn.per_view)).unzip();
        (view_major(z, &parts, self.views()), view_major(h, &parts, self.full_views()))
    }

    /// Full-size views per image (the first group's).
    fn full_views(&self) -> usize {
        self.groups[0].dims()[0] / self.n
    }

    /// The full-size views of images `images` (indices into this batch), as a batch of their own.
    fn pick(&self, images: &[usize]) -> StepViews {
        let x = &self.groups[0];
        let idx = view_rows(images, self.n, x.dims()[0] / self.n, &x.device());
        StepViews { groups: vec![x.clone().select(0, idx)], n: images.len() }
    }
}

/// The row indices, view-major, of images `images` in a view-major block of `n` images ×
/// `views` views (row `v · n + i` is image `i`'s view `v`).
fn view_rows(images: &[usize], n: usize, views: usize, device: &Device) -> Tensor<1, Int> {
    let idx: Vec<i64> = (0..views).flat_map(|v| images.iter().map(move |&i| (v * n + i) as i64)).collect();
    Tensor::from_data(TensorData::new(idx, [views * images.len()]), device)
}

/// Row blocks one under the other.
fn cat_rows(mut parts: Vec<Tensor<2>>) -> Tensor<2> {
    if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(parts, 0) }
}

/// `rows` in `parts` near-equal consecutive ranges (at most `rows.len()` of them, at least 1).
fn split(rows: &Range<usize>, parts: usize) -> Vec<Range<usize>> {
    let (n, parts) = (rows.len(), parts.clamp(1, rows.len().max(1)));
    (0..parts).map(|k| rows.start + k * n / parts..rows.start + (k + 1) * n / parts).collect()
}

/// The rows of consecutive image ranges `ranges` (`parts[k]`: `[views · ranges[k].len(), d]`,
/// view-major) as the rows of all their images in view-major order.
fn view_major(mut parts: Vec<Tensor<2>>, ranges: &[Range<usize>], views: usize) -> Tensor<2> {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let mut ordered = Vec::with_capacity(views * parts.len());
    for v in 0..views {
        for (rows, part) in ranges.iter().zip(&parts) {
            ordered.push(part.clone().narrow(0, v * rows.len(), rows.len()));
        }
    }
    Tensor::cat(ordered, 0)
}

/// How a step's batch norm is split: each view its own batch-norm batch (`per_view`: the
/// methods whose reference implementations encode the two views in two passes — MoCo, MoCo v3,
/// BYOL, SimSiam, Barlow Twins, VICReg, NNCLR — where SimCLR's and DINO's encode all views of a
/// resolution together), and MoCo's shuffling batch norm (He et al. 2020, §3.3, as
/// lightly emulates it on one device with `SplitBatchNorm`) normalizes each micro-batch (each
/// rank's share) in `method.shuffle_bn_splits` groups, the query encoder's groups in order and
/// the key encoder's after a seeded shuffle, so that an image's key is normalized with other
/// images than its query (else the batch statistics tell the positive key from the queue's).
#[derive(Clone, Copy)]
struct BnSplits {
    splits: usize,
    /// The shuffle's seed for this step.
    seed: u64,
    per_view: bool,
}

impl BnSplits {
    fn of(cfg: &Config, at: &StepAt) -> Self {
        let splits = if cfg.method.kind == MethodKind::Moco { cfg.method.shuffle_bn_splits.max(1) } else { 1 };
        let per_view = cfg.method.kind.batch_norm_per_view();
        Self { splits, seed: cfg.seed ^ at.step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5348_5546, per_view }
    }
}

/// The teacher's rows of the full-size views, `[2n, d]` view-major: each micro-batch forwarded
/// without autodiff, batch norm on its batch statistics (its running ones move, as a momentum
/// encoder's do in training mode), in `bn.splits` groups of shuffled images when split.
fn teacher_rows(teacher: &Encoder, input: &StepViews, chunks: &[Range<usize>], bn: BnSplits) -> Tensor<2> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let plain = input.without_autodiff();
    let views = input.full_views();
    let forward = |batch: &StepViews, rows: &Range<usize>| {
        crate::cpu_kernels::extension::no_grad_training(true, || batch.project(teacher, rows, 1, bn.per_view).0)
    };
    let parts: Vec<Tensor<2>> = chunks
        .iter()
        .map(|rows| {
            if bn.splits <= 1 {
                return forward(&plain, rows);
            }
            let mut order: Vec<usize> = rows.clone().collect();
            order.shuffle(&mut rand::rngs::Xoshiro256PlusPlus::seed_from_u64(bn.seed ^ rows.start as u64));
            let shuffled = plain.pick(&order);
            let groups = split(&(0..order.len()), bn.splits);
            let z = view_major(groups.iter().map(|g| forward(&shuffled, g)).collect(), &groups, views);
            // Back to the images' order: image rows.start + i is at its place in `order`.
            let mut place = vec![0; order.len()];
            for (k, &i) in order.iter().enumerate() {
                place[i - rows.start] = k;
            }
            let idx = view_rows(&place, order.len(), views, &z.device());
            z.select(0, idx)
        })
        .collect();
    view_major(parts, chunks, views)
}

/// The micro-batches of `n` images at most `micro` each (0: one batch), as equal as possible.
pub fn micro_batches(n: usize, micro: usize) -> Vec<Range<usize>> {
    split(&(0..n), if micro == 0 { 1 } else { n.div_ceil(micro) })
}

/// Runs one step of `cfg.method` on `input` (this rank's `n` images) as one rank of `world`, in
/// micro-batches of at most `cfg.train.micro_batch` images (0: the whole batch at once), with
/// the method's `state` (teacher, queue, centre) as it stands, which the step then moves. The
/// loss (the same value on every rank) is that of the global batch of `n × ranks` images. When
/// it is not finite, the model and state are returned unchanged (no update is applied) with the
/// loss, for the caller to report.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: Encoder,
    state: &mut MethodState,
    optim: &mut Optimizer,
    cfg: &Config,
    input: StepViews,
    labels: Option<&[u32]>,
    at: StepAt,
    world: &World,
    online: Option<&mut OnlineLinear>,
) -> Result<(Encoder, StepOutput)> {
    let synced = cfg.model.sync_batch_norm.then_some(world);
    let (n, views) = (input.n, input.views());
    let chunks = micro_batches(n, cfg.train.micro_batch);
    let bn = BnSplits::of(cfg, &at);
    sync_bn::scope(synced, || {
        let global_labels = global_batch::labels(&**world, labels);
        let teacher = state.teacher.as_ref().map(|t| {
            let rows = teacher_rows(t, &input, &chunks, bn);
            global_batch::projections(&**world, rows, n, input.full_views())
        });
        let global_loss = |z: Tensor<2>| {
            let z = global_batch::projections(&**world, z, n, views);
            let rows = Rows {
                student: z,
                teacher: teacher.clone(),
                n: n * world.size(),
                views,
                labels: global_labels.as_deref(),
            };
            let out = objective::loss(cfg, state, rows, at.epoch);
            let value: f32 = out
                .out
                .loss
                .clone()
                .try_into_scalar::<f32>()
                .map_err(|e| anyhow::anyhow!("reading the loss from the device: {e:?}"))?;
            anyhow::Ok((out, value))
        };
        let report = |out: &LossOutput, loss, effects: &Effects, features: Tensor<2>| StepOutput {
            loss,
            pos_sim: out.pos_sim.clone(),
            neg_sim: out.neg_sim.clone(),
            neighbour_agreement: effects.neighbour_agreement,
            features,
        };
        let (mut grads, out, value, features) = if chunks.len() == 1 {
            let (z, features) = input.student(&model, &chunks[0], bn);
            let (out, value) = global_loss(z)?;
            if !value.is_finite() {
                return Ok((model, report(&out.out, value, &out.effects, features)));
            }
            let grads = GradientsParams::from_grads(out.out.loss.backward(), &model);
            (grads, out, value, features)
        } else {
            // First pass: every micro-batch's rows, no activations kept.
            let (frozen, plain) = (model.valid(), input.without_autodiff());
            let mut z = Vec::new();
            let mut features = Vec::new();
            let mut d = 0;
            for rows in &chunks {
                let (zk, hk) =
                    crate::cpu_kernels::extension::no_grad_training(false, || plain.student(&frozen, rows, bn));
                d = zk.dims()[1];
                z.resize(views * n * d, 0.0);
                scatter_rows(&host(zk)?, &mut z, rows, n, d);
                features.push(hk);
            }
            drop(frozen);
            let features = view_major(features, &chunks, input.full_views());
            let device = input.groups[0].device();
            let z = Tensor::<2>::from_data(TensorData::new(z, [views * n, d]), &device).require_grad();
            let (out, value) = global_loss(z.clone())?;
            if !value.is_finite() {
                return Ok((model, report(&out.out, value, &out.effects, features)));
            }
            let dz = host(z.grad(&out.out.loss.backward()).context("the rows' gradient is missing")?)?;
            // Second pass: each micro-batch again with autodiff, its rows' share of ∂L/∂z
            // back-propagated, the parameter gradients summed.
            let mut sum = GradientsAccumulator::<Encoder>::new();
            for rows in &chunks {
                let (zk, _) = input.student(&model, rows, bn);
                let dzk = Tensor::<2>::from_data(TensorData::new(gather_rows(&dz, rows, n, d), zk.dims()), &device);
                sum.accumulate(&model, GradientsParams::from_grads((zk * dzk).sum().backward(), &model));
            }
            (sum.grads(), out, value, features)
        };
        // DINO keeps its prototypes fixed for the first epochs.
        if cfg.method.kind == MethodKind::Dino
            && at.epoch < cfg.method.freeze_last_layer_epochs
            && let Some(p) = &model.prototypes
        {
            grads.remove::<2>(p.weight.id);
        }
        // The online classifier learns from this step's features; its gradients join the
        // model's in the one all-reduce.
        let mut online_grads: Vec<Tensor<1>> = match (&online, labels) {
            (Some(o), Some(l)) => o.gradients(features.clone(), l, input.full_views() * n * world.size()).into(),
            _ => Vec::new(),
        };
        grads::all_reduce(&**world, &model, &mut grads, &mut online_grads);
        let model = optim.step(at.lr, model, grads);
        if let (Some(o), Ok(g)) = (online, <[Tensor<1>; 2]>::try_from(online_grads)) {
            o.update(g, at.step, at.total_steps);
        }
        let output = report(&out.out, value, &out.effects, features);
        let m = &cfg.method;
        state.update_teacher(&model, ema::momentum_at(m.momentum, m.momentum_schedule, at.step, at.total_steps));
        state.apply(out.effects);
        Ok((model, output))
    })
}

/// A device tensor's values on the host.
fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("reading from the device: {e:?}"))
}

/// Writes micro-batch `rows`' projections `zk` (`[V · rows.len(), d]`, view-major) into their
/// places of the whole batch's `z` (`[V · n, d]`, view-major).
fn scatter_rows(zk: &[f32], z: &mut [f32], rows: &Range<usize>, n: usize, d: usize) {
    for (k, row) in zk.chunks_exact(d).enumerate() {
        let (v, i) = (k / rows.len(), k % rows.len());
        let at = (v * n + rows.start + i) * d;
        z[at..at + d].copy_from_slice(row);
    }
}

/// The rows of micro-batch `rows` of the whole batch's `z` (the inverse of [`scatter_rows`]).
fn gather_rows(z: &[f32], rows: &Range<usize>, n: usize, d: usize) -> Vec<f32> {
    let views = z.len() / (n * d);
    (0..views).flat_map(|v| z[(v * n + rows.start) * d..(v * n + rows.end) * d].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::{MethodConfig, MethodKind, MomentumSchedule};
    use crate::model::{Arch, HeadConfig};
    use crate::named_tensors::{NamedTensor, collect};
    use crate::optim::OptimKind;

    /// A batch of `n` pairs of real-looking `size`² images (shapes on backgrounds, the
    /// synthetic set), scaled to about unit spread; a different batch for each `seed`.
    fn batch(n: usize, size: usize, seed: u64, device: &Device) -> Tensor<4> {
        let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(seed);
        let mut pixels = Vec::with_capacity(2 * n * 3 * size * size);
        for i in 0..2 * n {
            let img = selfsup_datasets::synthetic::draw(i % 10, size as u32, &mut rng);
            for c in 0..3 {
                pixels.extend(img.pixels().map(|p| f32::from(p.0[c]) / 64.0 - 2.0));
            }
        }
        Tensor::<4>::from_data(TensorData::new(pixels, [2 * n, 3, size, size]), device)
    }

    /// A fresh `arch` with reproducible weights (the device's seed is shared by the tests
    /// running in parallel, so the random ones are redrawn here from a fixed stream; constant
    /// tensors such as BN's γ, β and statistics are kept).
    fn init(arch: Arch) -> Vec<NamedTensor> {
        let mut cfg = Config::default();
        cfg.model.arch = arch;
        init_for(&cfg)
    }

    /// [`init`] of `cfg`'s whole encoder (with its method's predictor or prototypes). Each
    /// random tensor is redrawn uniform in ±1/√fan-in (Kaiming's uniform bound without its gain;
    /// fan-in from the shape: `[out, in, kh, kw]` convolutions, `[in, out]` linear layers, 0.1
    /// for biases), so the weights are the same in every run of the tests.
    fn init_for(cfg: &Config) -> Vec<NamedTensor> {
        let mut tensors = collect(&cfg.encoder(&Device::flex()));
        for (k, t) in tensors.iter_mut().enumerate() {
            if t.values.iter().all(|v| *v == t.values[0]) {
                continue;
            }
            let bound = match t.shape[..] {
                [_, i, kh, kw] => 1.0 / ((i * kh * kw) as f32).sqrt(),
                [i, _] => 1.0 / (i as f32).sqrt(),
                _ => 0.1,
            };
            t.values = crate::cpu_kernels::test_values(t.values.len(), k as u64 + 1, -bound, bound);
        }
        tensors
    }

    /// The tests' configuration: `arch` trained by SGD with `momentum` and no weight decay.
    fn sgd_config(arch: Arch, momentum: f64) -> Config {
        let mut cfg = Config::default();
        cfg.model.arch = arch;
        cfg.optim.kind = OptimKind::Sgd;
        cfg.optim.momentum = momentum;
        cfg.optim.weight_decay = 0.0;
        cfg
    }

    /// `steps` SGD steps (without weight decay) of `arch` from the weights `start`, with the
    /// CPU kernels on or off: the losses, and every named tensor afterwards.
    fn train(
        device: &Device,
        arch: Arch,
        start: &[NamedTensor],
        kernels: bool,
        steps: u64,
        lr: f64,
        momentum: f64,
    ) -> (Vec<f32>, Vec<NamedTensor>) {
        crate::cpu_kernels::with_kernels(kernels, || {
            let cfg = sgd_config(arch, momentum);
            let device = device.clone().autodiff();
            let mut model = crate::named_tensors::apply(cfg.model.init(&device), start).unwrap();
            let mut optim = Optimizer::new(cfg.optim.clone());
            let mut losses = Vec::new();
            for k in 0..steps {
                let (m, out) = train_step(
                    model,
                    &mut MethodState::default(),
                    &mut optim,
                    &cfg,
                    StepViews::pairs(batch(8, 24, k, &device), 8),
                    None,
                    StepAt::fixed(lr),
                    &crate::dist::single(),
                    None,
                )
                .unwrap();
                model = m;
                losses.push(out.loss);
            }
            (losses, collect(&model))
        })
    }

    /// One plain SGD step (lr 1) from the same weights: the change of every parameter is its
    /// gradient, and the running statistics are those of the batch, so this compares the
    /// gradients and statistics of the whole network with and without the kernels (on flex;
    /// the convnet on ndarray too). The convnet must agree per tensor to 10⁻⁴ (measured:
    /// ≤ 1.6·10⁻⁵). ResNet-18 is held to its whole gradient within 2 % (L2): its pre-activations
    /// sit within rounding of a ReLU's kink often enough that rounding alone flips some and
    /// moves the gradient (over random inits: 10⁻⁵ to 2 % with the kernels, and as much for
    /// burn's own ops against themselves with inputs scaled by 1 + 10⁻⁶); with these weights
    /// it measures 6·10⁻⁶.
    #[test]
    #[allow(deprecated)] // burn-ndarray is deprecated upstream; selfsup still offers it.
    fn cpu_kernels_give_burns_gradients_and_running_stats() {
        for (device, arch) in
            [(Device::flex(), Arch::Convnet), (Device::flex(), Arch::Resnet18), (Device::ndarray(), Arch::Convnet)]
        {
            let before = init(arch);
            let (loss_on, on) = train(&device, arch, &before, true, 1, 1.0, 0.0);
            let (loss_off, off) = train(&device, arch, &before, false, 1, 1.0, 0.0);
            assert!(
                (loss_on[0] - loss_off[0]).abs() <= 1e-5 * loss_off[0].abs(),
                "{arch:?}: {loss_on:?} vs {loss_off:?}"
            );
            assert_eq!(on.len(), off.len());
            let (mut diff2, mut norm2) = (0f64, 0f64);
            for ((a, b), t0) in on.iter().zip(&off).zip(&before) {
                assert_eq!(a.name, b.name);
                let change =
                    |t: &NamedTensor| -> Vec<f32> { t.values.iter().zip(&t0.values).map(|(x, y)| x - y).collect() };
                let (da, db) = (change(a), change(b));
                diff2 += da.iter().zip(&db).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
                norm2 += db.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>();
                let scale = db.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = da.iter().zip(&db).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                if arch == Arch::Convnet {
                    assert!(worst <= 1e-4 * scale + 1e-7, "{arch:?} {}: differs by {worst} (scale {scale})", a.name);
                }
            }
            let rel = (diff2 / norm2).sqrt();
            assert!(rel <= 2e-2, "{arch:?}: the gradients differ by {rel:.2e} (L2, relative)");
        }
    }

    /// A few training steps (SGD with momentum) give the same losses with and without the
    /// kernels. ResNet-18 at batch 8 is chaotic after two steps even on burn's ops alone
    /// (inputs scaled by 1 + 10⁻⁶ move its third loss by 0.6 %), so it is held to two steps and
    /// 1 % (measured: up to 0.12 %, from the ReLU flips above); the convnet to 0.2 % over four
    /// steps (measured: up to 0.024 %).
    #[test]
    fn cpu_kernels_do_not_change_training() {
        for (arch, steps, lr, tol) in [(Arch::Convnet, 4, 0.05, 2e-3), (Arch::Resnet18, 2, 0.01, 1e-2)] {
            let start = init(arch);
            let (on, _) = train(&Device::flex(), arch, &start, true, steps, lr, 0.9);
            let (off, _) = train(&Device::flex(), arch, &start, false, steps, lr, 0.9);
            for (a, b) in on.iter().zip(&off) {
                assert!((a - b).abs() <= tol * b.abs(), "{arch:?}: losses {on:?} vs {off:?}");
            }
        }
    }

    /// `pairs` pairs of views of `size`² images for step `seed` ([`batch`]'s images), as host
    /// values: the first views, then the second views.
    fn host_batch(pairs: usize, size: usize, seed: u64) -> Vec<f32> {
        batch(pairs, size, seed, &Device::flex()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Rank `r`'s share (of `ranks`) of a host batch of `pairs` pairs: its first views, then its
    /// second views (what the loader's shard gives it).
    fn share(all: &[f32], pairs: usize, r: usize, ranks: usize) -> Vec<f32> {
        let img = all.len() / (2 * pairs);
        let b = pairs / ranks;
        let rows = |v: usize| all[(v * pairs + r * b) * img..(v * pairs + (r + 1) * b) * img].to_vec();
        [rows(0), rows(1)].concat()
    }

    /// The configuration of the rank tests: `arch` by SGD (momentum 0.9, no weight decay), with
    /// or without synchronized batch norm and gradient caching.
    fn rank_config(arch: Arch, sync_bn: bool, micro: usize) -> Config {
        let mut cfg = sgd_config(arch, 0.9);
        cfg.model.sync_batch_norm = sync_bn;
        cfg.train.micro_batch = micro;
        cfg
    }

    /// What a run of [`train_as_rank`] ends with.
    struct RankRun {
        losses: Vec<f32>,
        tensors: Vec<NamedTensor>,
        /// The method's state (teacher, queue, centre) as the checkpoint holds it.
        state: Vec<NamedTensor>,
        /// The online linear classifier (3 classes) as the checkpoint holds it, if trained.
        online: Vec<NamedTensor>,
    }

    /// `steps` steps of `cfg` (its method, optimizer, batch norm and micro-batches) from `start`
    /// as one rank of `world` (each step's global batch is `pairs` pairs of 16 px images, this
    /// rank taking its share), with the CPU kernels on or off (off: burn's batch norm, and the
    /// tensor-operation form of the synchronized one, as on a GPU), at learning rate `lr`; with
    /// `online`, the online linear classifier trains beside it (labels: image i of the global
    /// batch is class i % 3).
    #[allow(clippy::too_many_arguments)]
    fn train_as_rank(
        kernels: bool,
        world: &crate::dist::World,
        cfg: &Config,
        start: &[NamedTensor],
        steps: u64,
        pairs: usize,
        lr: f64,
        online: bool,
    ) -> RankRun {
        crate::cpu_kernels::with_kernels(kernels, || {
            let device = Device::flex().autodiff();
            let mut model = crate::named_tensors::apply(cfg.encoder(&device), start).unwrap();
            let mut classifier = online.then(|| OnlineLinear::new(model.backbone.dim(), 3, 0.5, &device));
            let mut state = MethodState::new(cfg, &model, &device);
            let mut optim = Optimizer::new(cfg.optim.clone());
            let b = pairs / world.size();
            let mut losses = Vec::new();
            // Labels for NNCLR's neighbour agreement: image i of the global batch is class i % 3.
            let labels: Vec<u32> = (0..b).map(|i| ((world.rank() * b + i) % 3) as u32).collect();
            for k in 0..steps {
                let x = share(&host_batch(pairs, 16, k), pairs, world.rank(), world.size());
                let x = Tensor::<4>::from_data(TensorData::new(x, [2 * b, 3, 16, 16]), &device);
                let at = StepAt { lr, step: k, total_steps: steps, epoch: 0 };
                let input = StepViews::pairs(x, b);
                let (m, out) = train_step(
                    model,
                    &mut state,
                    &mut optim,
                    cfg,
                    input,
                    Some(&labels),
                    at,
                    world,
                    classifier.as_mut(),
                )
                .unwrap();
                model = m;
                losses.push(out.loss);
            }
            let online = classifier.map(|c| c.export()).unwrap_or_default();
            RankRun { losses, tensors: collect(&model), state: state.export().0, online }
        })
    }

    /// Trains `steps` steps of `cfg` (lr 0.01) on 16 pairs as one process and as two ranks
    /// (threads) of 8 pairs each, holds every rank's losses to the process's (within 10⁻⁵
    /// relative), and returns the process's run and each rank's.
    fn two_ranks_against_one_process(
        kernels: bool,
        cfg: &Config,
        start: &[NamedTensor],
        steps: u64,
    ) -> (RankRun, Vec<RankRun>) {
        let run = |w: &World| train_as_rank(kernels, w, cfg, start, steps, 16, 0.01, true);
        let want = run(&crate::dist::single());
        let ranks = crate::dist::local::run(2, |w| run(&w));
        let what = cfg.method.kind.name();
        for (r, got) in ranks.iter().enumerate() {
            // The online classifier's gradients were summed with the model's.
            assert_close(&got.online, &want.online, None, &format!("{what} rank {r}: online classifier"));
            for (a, b) in got.losses.iter().zip(&want.losses) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1e-3),
                    "{what} {:?} rank {r}: losses {:?} vs {:?}",
                    cfg.model.arch,
                    got.losses,
                    want.losses
                );
            }
        }
        (want, ranks)
    }

    /// The trained tensors of a model's (every one but batch norm's running statistics).
    fn trained(t: &[NamedTensor]) -> Vec<NamedTensor> {
        t.iter().filter(|t| !crate::named_tensors::is_running_stat(&t.name)).cloned().collect()
    }

    /// Holds two sets of tensors to each other. Without `change`: every value within 10⁻⁴ (of 1,
    /// or of the tensor's scale when larger). With `change = Some((start, tol))`, the stricter
    /// test (a step changes weights little, and a gradient that lost a term fails it): every
    /// tensor's difference within `tol` of the reference's change from `start` (its largest
    /// value) — or of 1 % of the largest change of any tensor, for tensors that barely move:
    /// those whose gradient is zero by construction (an output bias that the loss's centring or
    /// the next batch norm cancels), which two ranks move by the rounding of two partial sums
    /// that cancel, one process not at all.
    fn close(got: &[NamedTensor], want: &[NamedTensor], change: Option<(&[NamedTensor], f32)>) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{} tensors vs {}", got.len(), want.len()));
        }
        let largest = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let moved: Vec<f32> = match change {
            Some((start, _)) => want.iter().zip(start).map(|(b, s)| largest(&b.values, &s.values)).collect(),
            None => Vec::new(),
        };
        let most = moved.iter().fold(0f32, |m, v| m.max(*v));
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            if a.name != b.name {
                return Err(format!("{} vs {}", a.name, b.name));
            }
            let worst = largest(&a.values, &b.values);
            match change {
                None => {
                    let scale = b.values.iter().fold(1f32, |m, v| m.max(v.abs()));
                    if worst > 1e-4 * scale {
                        return Err(format!("{} differs by {worst}", a.name));
                    }
                }
                Some((_, tol)) => {
                    if worst > tol * moved[k].max(0.01 * most) + 1e-7 {
                        return Err(format!("{} differs by {worst}, its change is {}", a.name, moved[k]));
                    }
                }
            }
        }
        Ok(())
    }

    fn assert_close(got: &[NamedTensor], want: &[NamedTensor], change: Option<(&[NamedTensor], f32)>, what: &str) {
        if let Err(e) = close(got, want, change) {
            panic!("{what}: {e}");
        }
    }

    /// Two ranks (threads) of 8 pairs with synchronized batch norm train exactly as one process
    /// with the 16 pairs: the same losses and, after three SGD-momentum steps, the same weights
    /// and running statistics (convnet; ResNet-18 for one step).
    #[test]
    fn two_ranks_with_sync_bn_train_as_one_process() {
        for (arch, steps) in [(Arch::Convnet, 3), (Arch::Resnet18, 1)] {
            let start = init(arch);
            let (want, ranks) = two_ranks_against_one_process(true, &rank_config(arch, true, 0), &start, steps);
            for (r, got) in ranks.iter().enumerate() {
                // ResNet-18's many near-zero pre-activations make rounding flip a few ReLUs (see
                // above), so its change is not held element by element.
                let change = (arch == Arch::Convnet).then_some((&start[..], 1e-3));
                assert_close(&got.tensors, &want.tensors, change, &format!("{arch:?} rank {r}"));
            }
            assert_eq!(ranks[0].tensors, ranks[1].tensors, "{arch:?}: the ranks' tensors differ");
        }
    }

    /// The same with the kernels off: batch norm synchronized in burn's operations through the
    /// differentiable all-reduce (the form wgpu and cuda use), against burn's own batch norm in
    /// one process.
    #[test]
    fn two_ranks_with_sync_bn_in_tensor_operations_train_as_one_process() {
        let arch = Arch::Convnet;
        let start = init(arch);
        let (want, ranks) = two_ranks_against_one_process(false, &rank_config(arch, true, 0), &start, 3);
        for (r, got) in ranks.iter().enumerate() {
            assert_close(&got.tensors, &want.tensors, Some((&start[..], 1e-3)), &format!("rank {r}"));
        }
    }

    /// Without synchronized batch norm, two ranks equal one process whose batch norm sees each
    /// rank's images separately (the encoder run once per half, in one graph) while its loss
    /// sees the whole batch: this isolates the global negatives' gradient. One plain SGD step
    /// (lr 1), so each weight's change is its gradient.
    #[test]
    fn two_ranks_without_sync_bn_equal_one_process_normalizing_each_half() {
        let (arch, pairs) = (Arch::Convnet, 16);
        let start = init(arch);
        let cfg = sgd_config(arch, 0.0);
        let device = Device::flex().autodiff();
        let model = crate::named_tensors::apply(cfg.model.init(&device), &start).unwrap();
        let all = host_batch(pairs, 16, 0);
        let b = pairs / 2;
        let z: Vec<Tensor<2>> = (0..2)
            .map(|r| {
                let x = Tensor::<4>::from_data(TensorData::new(share(&all, pairs, r, 2), [2 * b, 3, 16, 16]), &device);
                model.forward(x).1
            })
            .collect();
        let rows = |r: usize, v: usize| z[r].clone().narrow(0, v * b, b);
        let global = Tensor::cat(vec![rows(0, 0), rows(1, 0), rows(0, 1), rows(1, 1)], 0);
        let out = objective::simclr(&cfg, global, pairs, 2, None);
        let want_loss = out.loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        let want = collect(&Optimizer::new(cfg.optim.clone()).step(1.0, model, grads));
        let ranks = crate::dist::local::run(2, |w| train_as_rank(true, &w, &cfg, &start, 1, pairs, 1.0, false));
        for (r, got) in ranks.iter().enumerate() {
            let loss = &got.losses;
            assert!((loss[0] - want_loss).abs() <= 1e-5 * want_loss.abs(), "rank {r}: {} vs {want_loss}", loss[0]);
            let start = trained(&start);
            assert_close(&trained(&got.tensors), &trained(&want), Some((&start, 1e-3)), &format!("rank {r}"));
        }
    }

    /// Gradient caching against one autodiff graph over the same micro-batches: each
    /// micro-batch's views forwarded separately (batch norm per micro-batch and per resolution
    /// group), their rows put in the loss's order, one loss, one backward. One plain SGD step
    /// (lr 1) from the same weights, so each weight's change is its gradient; the running
    /// statistics must equal the reference's too (moved once per micro-batch: a first pass
    /// that also moved them would leave them elsewhere). SimCLR with two views and with 2 full
    /// + 2 small views (multi-crop, whose loss is the multi-positive form), kernels on and off
    /// (off: burn's batch norm, as on a GPU); and the methods whose rows are widest or whose loss
    /// takes batch statistics: BYOL (teacher, `[z | p]` rows), Barlow Twins (the batch's
    /// cross-correlation), DINO with 2 small views (prototypes, centre, teacher on the full views).
    #[test]
    fn gradient_cache_equals_one_graph_over_the_micro_batches() {
        let (arch, n, micro) = (Arch::Convnet, 12, 5); // micro-batches of 4 images
        let cases = [
            (MethodKind::Simclr, 0, true),
            (MethodKind::Simclr, 2, true),
            (MethodKind::Simclr, 2, false),
            (MethodKind::Byol, 0, true),
            (MethodKind::Barlowtwins, 0, true),
            (MethodKind::Dino, 2, true),
        ];
        for (kind, small, kernels) in cases {
            crate::cpu_kernels::with_kernels(kernels, || {
                let mut cfg = if kind == MethodKind::Simclr { sgd_config(arch, 0.0) } else { method_config(kind) };
                cfg.optim.momentum = 0.0;
                cfg.model.sync_batch_norm = false;
                cfg.augment.small_views = small;
                let start = init_for(&cfg);
                let device = Device::flex().autodiff();
                let full = batch(n, 16, 1, &device);
                let mut groups = vec![full];
                if small > 0 {
                    groups.push(batch(n, 8, 2, &device));
                }
                let input = StepViews { groups, n };
                let views = 2 + small as usize;
                let model = crate::named_tensors::apply(cfg.encoder(&device), &start).unwrap();
                let state = MethodState::new(&cfg, &model, &device);
                // Reference: per micro-batch and group, one forward; rows re-ordered view-major.
                let chunks = micro_batches(n, micro);
                assert_eq!(chunks.iter().map(|r| r.len()).collect::<Vec<_>>(), vec![4, 4, 4]);
                let mut rows: Vec<Vec<Tensor<2>>> = vec![Vec::new(); views];
                for r in &chunks {
                    let mut v0 = 0;
                    for x in &input.groups {
                        let gv = x.dims()[0] / n;
                        let xs: Vec<Tensor<4>> =
                            (0..gv).map(|v| x.clone().narrow(0, v * n + r.start, r.len())).collect();
                        // SimCLR and DINO encode a resolution's views together, the others each
                        // view apart.
                        let z = if kind.batch_norm_per_view() {
                            Tensor::cat(xs.into_iter().map(|x| model.rows(x)).collect(), 0)
                        } else {
                            model.rows(Tensor::cat(xs, 0))
                        };
                        for v in 0..gv {
                            rows[v0 + v].push(z.clone().narrow(0, v * r.len(), r.len()));
                        }
                        v0 += gv;
                    }
                }
                let z = Tensor::cat(rows.into_iter().flatten().collect(), 0);
                // The teacher: a copy of its own, so that its running statistics start alike.
                let teacher = state.teacher.as_ref().map(|t| {
                    teacher_rows(&crate::method::ema::copy(t), &input, &chunks, BnSplits::of(&cfg, &StepAt::fixed(1.0)))
                });
                let out = objective::loss(&cfg, &state, Rows { student: z, teacher, n, views, labels: None }, 0).out;
                let want_loss = out.loss.clone().into_scalar::<f32>();
                let grads = GradientsParams::from_grads(out.loss.backward(), &model);
                let want = collect(&Optimizer::new(cfg.optim.clone()).step(1.0, model, grads));

                cfg.train.micro_batch = micro;
                let model = crate::named_tensors::apply(cfg.encoder(&device), &start).unwrap();
                let mut state = MethodState::new(&cfg, &model, &device);
                let mut optim = Optimizer::new(cfg.optim.clone());
                let (model, got_out) = train_step(
                    model,
                    &mut state,
                    &mut optim,
                    &cfg,
                    input,
                    None,
                    StepAt::fixed(1.0),
                    &crate::dist::single(),
                    None,
                )
                .unwrap();
                let got = collect(&model);
                let what = format!("{}, {small} small views, kernels {kernels}", kind.name());
                assert!(
                    (got_out.loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1e-3),
                    "{what}: {} vs {want_loss}",
                    got_out.loss
                );
                assert_close(&got, &want, Some((&start[..], 1e-3)), &what);
                assert!(
                    got.iter()
                        .zip(&start)
                        .any(|(a, b)| crate::named_tensors::is_running_stat(&a.name) && a.values != b.values),
                    "{what}: the running statistics did not move"
                );
            });
        }
    }

    /// MoCo's shuffling batch norm: the queries' rows are those of each consecutive group of
    /// images forwarded on its own (each view apart); the keys' are those of groups of shuffled images, each key
    /// back in its image's row (checked against forwarding each shuffled group by hand); the
    /// shuffle is not the identity, so a key's group differs from its query's.
    #[test]
    fn moco_normalizes_queries_in_groups_and_keys_in_shuffled_groups() {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut cfg = method_config(MethodKind::Moco);
        cfg.model.sync_batch_norm = false;
        cfg.method.shuffle_bn_splits = 3;
        let n = 12;
        let device = Device::flex().autodiff();
        let model = crate::named_tensors::apply(cfg.encoder(&device), &init_for(&cfg)).unwrap();
        let teacher = crate::method::ema::copy(&model);
        let input = StepViews::pairs(batch(n, 16, 3, &device), n);
        let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst < 1e-5, "{what}: {worst}");
        };
        // Queries: groups 0..4, 4..8, 8..12.
        let bn = BnSplits::of(&cfg, &StepAt { lr: 0.0, step: 7, total_steps: 10, epoch: 0 });
        assert!(bn.per_view && bn.splits == 3);
        let q = host(input.student(&model, &(0..n), bn).0);
        let d = q.len() / (2 * n);
        for g in [0..4, 4..8, 8..12] {
            let rows = host(input.project(&model, &g, 1, true).0);
            for v in 0..2 {
                for (k, i) in g.clone().enumerate() {
                    close(
                        &q[(v * n + i) * d..(v * n + i + 1) * d],
                        &rows[(v * 4 + k) * d..(v * 4 + k + 1) * d],
                        "query",
                    );
                }
            }
        }
        // Keys.
        let keys = host(teacher_rows(&teacher, &input, std::slice::from_ref(&(0..n)), bn));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::Xoshiro256PlusPlus::seed_from_u64(bn.seed));
        assert_ne!(order, (0..n).collect::<Vec<_>>(), "the keys are shuffled");
        let plain = input.without_autodiff();
        for g in order.chunks(4) {
            let rows = host(crate::cpu_kernels::extension::no_grad_training(true, || {
                plain.pick(g).project(&teacher, &(0..4), 1, true).0
            }));
            for v in 0..2 {
                for (k, &i) in g.iter().enumerate() {
                    close(
                        &keys[(v * n + i) * d..(v * n + i + 1) * d],
                        &rows[(v * 4 + k) * d..(v * 4 + k + 1) * d],
                        "key",
                    );
                }
            }
        }
        let unsplit = host(teacher_rows(&teacher, &input, std::slice::from_ref(&(0..n)), BnSplits { splits: 1, ..bn }));
        assert!(keys.iter().zip(&unsplit).any(|(a, b)| (a - b).abs() > 1e-3), "groups normalize differently");
    }

    /// The rank tests' configuration of `kind`: small heads (32-d projections), a queue that
    /// wraps within three steps, a constant teacher momentum of 0.9 (so that the teacher moves
    /// visibly in three steps), DINO's prototypes trained from the first step, synchronized
    /// batch norm.
    fn method_config(kind: MethodKind) -> Config {
        let mut cfg = rank_config(Arch::Convnet, true, 0);
        cfg.method = MethodConfig::preset(kind);
        cfg.model.head = HeadConfig::mlp(64, 32, 2);
        cfg.method.predictor = HeadConfig::mlp(48, 0, 2);
        cfg.method.prototypes = 40;
        cfg.method.queue_size = 40;
        cfg.method.momentum = 0.9;
        cfg.method.momentum_schedule = MomentumSchedule::Constant;
        cfg.method.freeze_last_layer_epochs = 0;
        // Synchronized batch norm (global statistics) excludes MoCo's shuffled groups.
        cfg.method.shuffle_bn_splits = 1;
        cfg
    }

    /// Every method in two ranks (threads) × 8 pairs equals one process × 16 pairs with
    /// synchronized batch norm, over three SGD-momentum steps: the same losses (each rank
    /// computes the global batch's: MoCo's logits against the queue, Barlow Twins' and VICReg's
    /// batch statistics, DINO's centred teacher), the same weights (each weight's change within
    /// 10⁻³ of the process's), and the same method state on both ranks and as the process's:
    /// the teacher, the queue (which received every rank's keys, in the process's order, and
    /// wrapped), DINO's centre.
    #[test]
    fn every_method_trains_as_two_ranks_as_one_process() {
        for kind in MethodKind::ALL.into_iter().filter(|k| *k != MethodKind::Simclr) {
            let cfg = method_config(kind);
            let start = init_for(&cfg);
            let (want, ranks) = two_ranks_against_one_process(true, &cfg, &start, 3);
            assert!(want.losses.windows(2).any(|w| w[0] != w[1]), "{kind:?}: {:?}", want.losses);
            for (r, got) in ranks.iter().enumerate() {
                let what = format!("{} rank {r}", kind.name());
                // Measured: 2.4·10⁻³ of the change at most (BYOL: the projection's output bias,
                // which no loss term moves, is moved by the rounding of the ranks' cancelling
                // partial gradients, and reaches the targets through the EMA teacher), 1.0·10⁻³
                // for MoCo (whose temperature of 0.1 amplifies rounding), 10⁻⁴ for most; a
                // gradient off by 1/world_size is off by ½ (the next test).
                assert_close(&got.tensors, &want.tensors, Some((&start[..], 5e-3)), &what);
                assert_close(&got.state, &want.state, None, &format!("{what}: method state"));
            }
            assert_eq!(ranks[0].state, ranks[1].state, "{kind:?}: the ranks' teacher, queue or centre differ");
            assert_eq!(ranks[0].tensors, ranks[1].tensors, "{kind:?}: the ranks' weights differ");
        }
    }

    /// The comparison above catches a gradient off by 1/world_size — what lightly shipped for
    /// Barlow Twins (issue #1977: the cross-correlation all-reduced outside autograd, so each
    /// rank back-propagated its own share only) and SIGReg (#1920): two ranks whose gradients
    /// are halved (under SGD with momentum and no weight decay, exactly the updates of half the
    /// learning rate) fail it, for Barlow Twins and VICReg.
    #[test]
    fn the_rank_comparison_catches_gradients_off_by_the_world_size() {
        for kind in [MethodKind::Barlowtwins, MethodKind::Vicreg] {
            let cfg = method_config(kind);
            let start = init_for(&cfg);
            let want = train_as_rank(true, &crate::dist::single(), &cfg, &start, 3, 16, 0.01, false);
            let ranks = crate::dist::local::run(2, |w| train_as_rank(true, &w, &cfg, &start, 3, 16, 0.005, false));
            let (a, b) = (ranks[0].losses[0], want.losses[0]);
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "{kind:?}: the first loss does not depend on the gradient: {a} vs {b}"
            );
            let verdict = close(&ranks[0].tensors, &want.tensors, Some((&start[..], 5e-3)));
            assert!(verdict.is_err(), "{kind:?}: halved gradients passed the comparison");
        }
    }

    /// Gradient caching under two ranks (threads, 8 pairs each, micro-batches of 4, batch norm
    /// per micro-batch) trains exactly as one process with the 16 pairs and micro-batches of 4:
    /// the ranks' micro-batches are the process's, the loss sees the global batch through the
    /// gathered projections, and the summed gradients are the process's. Three SGD-momentum
    /// steps: the same losses and trained weights (running statistics are each rank's own
    /// without synchronized batch norm: rank 0 saw micro-batches 1–2, the process all four).
    #[test]
    fn two_ranks_with_gradient_caching_train_as_one_process() {
        let arch = Arch::Convnet;
        let start = init(arch);
        let (want, ranks) = two_ranks_against_one_process(true, &rank_config(arch, false, 4), &start, 3);
        for (r, got) in ranks.iter().enumerate() {
            let what = format!("rank {r}");
            assert_close(&trained(&got.tensors), &trained(&want.tensors), Some((&trained(&start), 1e-3)), &what);
        }
    }

    /// The online classifier learns from detached features: with it, every method's encoder,
    /// method state and losses are bit for bit those of the same steps without it; and it does
    /// learn (its weights leave zero).
    #[test]
    fn the_online_classifier_sends_no_gradient_into_the_encoder() {
        for kind in [MethodKind::Simclr, MethodKind::Byol, MethodKind::Dino] {
            let cfg =
                if kind == MethodKind::Simclr { rank_config(Arch::Convnet, false, 0) } else { method_config(kind) };
            let start = init_for(&cfg);
            let single = crate::dist::single();
            let with = train_as_rank(true, &single, &cfg, &start, 2, 8, 0.05, true);
            let without = train_as_rank(true, &single, &cfg, &start, 2, 8, 0.05, false);
            assert_eq!(with.losses, without.losses, "{kind:?}");
            assert_eq!(with.tensors, without.tensors, "{kind:?}");
            assert_eq!(with.state, without.state, "{kind:?}");
            assert!(with.online.iter().any(|t| t.values.iter().any(|&v| v != 0.0)), "{kind:?}: the classifier trained");
        }
    }

    /// Micro-batches split a batch into at most `micro`-image parts of near-equal size, in
    /// order, covering every image once; 0 (off) or `micro ≥ n` is the whole batch.
    #[test]
    fn micro_batches_cover_the_batch_in_near_equal_parts() {
        assert_eq!(micro_batches(10, 0), vec![0..10]);
        assert_eq!(micro_batches(10, 10), vec![0..10]);
        assert_eq!(micro_batches(10, 64), vec![0..10]);
        assert_eq!(micro_batches(10, 4), vec![0..3, 3..6, 6..10]);
        assert_eq!(micro_batches(1024, 256), vec![0..256, 256..512, 512..768, 768..1024]);
        for (n, m) in [(7, 2), (100, 33), (5, 5), (9, 8)] {
            let parts = micro_batches(n, m);
            assert!(parts.iter().all(|r| !r.is_empty() && r.len() <= m), "{n}/{m}: {parts:?}");
            assert_eq!(parts.first().unwrap().start, 0);
            assert_eq!(parts.last().unwrap().end, n);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
