//! One training step: both views through the encoder in a single forward pass, the
//! contrastive loss on their projections, backward, and the optimizer update. Shared by the
//! training loop, `selfsup bench train` and the cross-backend tests. The ranks of a
//! data-parallel run are a parameter ([`crate::dist`]): with one rank every collective is a
//! no-op; with several, the loss sees the global batch, gradients are summed over the ranks,
//! and batch norm may use the global batch's statistics.

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::config::Config;
use crate::dist::{World, global_batch, grads, sync_bn};
use crate::loss::{LossKind, LossOutput, dcl::dcl, debiased::debiased, nt_xent::nt_xent, supcon::supcon};
use crate::model::Encoder;
use crate::optim::Optimizer;

/// What a step reports.
pub struct StepOutput {
    pub loss: f32,
    /// Mean cosine similarity of positive / negative pairs (device tensors; read them only
    /// when logging, since reading synchronizes).
    pub pos_sim: Tensor<1>,
    pub neg_sim: Tensor<1>,
}

/// The configured loss of projections `z` (`[2n, d]`: the `n` first views, then the second).
pub fn loss(cfg: &Config, z: Tensor<2>, n: usize, labels: Option<&[u32]>) -> LossOutput {
    let z1 = z.clone().narrow(0, 0, n);
    let z2 = z.narrow(0, n, n);
    let t = cfg.loss.temperature;
    match cfg.loss.kind {
        LossKind::Ntxent => nt_xent(z1, z2, t),
        LossKind::Supcon => supcon(z1, z2, labels.expect("supcon needs labels (checked before training)"), t),
        LossKind::Dcl => dcl(z1, z2, t, None),
        LossKind::Dclw => dcl(z1, z2, t, Some(cfg.loss.dclw_sigma)),
        LossKind::Debiased => debiased(z1, z2, t, cfg.loss.tau_plus, cfg.loss.beta),
    }
}

/// Runs one step on `x` (`[2n, 3, s, s]`: this rank's `n` pairs) as one rank of `world`. The
/// loss (the same value on every rank) is that of the global batch of `n × ranks` pairs. When
/// it is not finite, the model is returned unchanged (no update is applied) with the loss, for
/// the caller to report.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: Encoder,
    optim: &mut Optimizer,
    cfg: &Config,
    x: Tensor<4>,
    n: usize,
    labels: Option<&[u32]>,
    lr: f64,
    world: &World,
) -> Result<(Encoder, StepOutput)> {
    let synced = cfg.model.sync_batch_norm.then_some(world);
    sync_bn::scope(synced, || {
        let (_, z) = model.forward(x);
        let z = global_batch::projections(&**world, z, n);
        let labels = global_batch::labels(&**world, labels);
        let out = loss(cfg, z, n * world.size(), labels.as_deref());
        let value: f32 = out
            .loss
            .clone()
            .try_into_scalar::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the loss from the device: {e:?}"))?;
        let result = |loss| StepOutput { loss, pos_sim: out.pos_sim.clone(), neg_sim: out.neg_sim.clone() };
        if !value.is_finite() {
            return Ok((model, result(value)));
        }
        let mut grads = GradientsParams::from_grads(out.loss.backward(), &model);
        grads::all_reduce(&**world, &model, &mut grads);
        let model = optim.step(lr, model, grads);
        Ok((model, result(value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;
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
    /// running in parallel, so the random ones are redrawn here from a fixed stream, at each
    /// tensor's own scale; constant tensors such as BN's γ, β and statistics are kept).
    fn init(arch: Arch) -> Vec<NamedTensor> {
        let mut cfg = Config::default();
        cfg.model.arch = arch;
        let mut tensors = collect(&cfg.model.init(&Device::flex()));
        for (k, t) in tensors.iter_mut().enumerate() {
            if t.values.iter().all(|v| *v == t.values[0]) {
                continue;
            }
            let rms = (t.values.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / t.values.len() as f64).sqrt();
            let fresh = crate::cpu_kernels::test_values(t.values.len(), k as u64 + 1, -1.0, 1.0);
            t.values = fresh.iter().map(|u| u * (rms * 3f64.sqrt()) as f32).collect();
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
                let (m, out) =
                    train_step(model, &mut optim, &cfg, batch(8, 24, k, &device), 8, None, lr, &crate::dist::single())
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

    /// `steps` SGD steps of `arch` from `start` as one rank of `world` (each step's global batch
    /// is `pairs` pairs of 16 px images, this rank taking its share), with the CPU kernels on or
    /// off (off: burn's batch norm, and the tensor-operation form of the synchronized one, as on
    /// a GPU): losses and tensors after.
    #[allow(clippy::too_many_arguments)]
    fn train_as_rank(
        kernels: bool,
        world: &crate::dist::World,
        arch: Arch,
        start: &[NamedTensor],
        sync_bn: bool,
        steps: u64,
        pairs: usize,
        lr: f64,
        momentum: f64,
    ) -> (Vec<f32>, Vec<NamedTensor>) {
        crate::cpu_kernels::with_kernels(kernels, || {
            let mut cfg = sgd_config(arch, momentum);
            cfg.model.sync_batch_norm = sync_bn;
            let device = Device::flex().autodiff();
            let mut model = crate::named_tensors::apply(cfg.model.init(&device), start).unwrap();
            let mut optim = Optimizer::new(cfg.optim.clone());
            let b = pairs / world.size();
            let mut losses = Vec::new();
            for k in 0..steps {
                let x = share(&host_batch(pairs, 16, k), pairs, world.rank(), world.size());
                let x = Tensor::<4>::from_data(TensorData::new(x, [2 * b, 3, 16, 16]), &device);
                let (m, out) = train_step(model, &mut optim, &cfg, x, b, None, lr, world).unwrap();
                model = m;
                losses.push(out.loss);
            }
            (losses, collect(&model))
        })
    }

    /// Holds two sets of tensors to each other: every value within 10⁻⁴ (of 1, or of the
    /// tensor's scale when larger) and, with `change = Some((start, tol))`, every tensor's change
    /// from `start` within `tol` of the reference change's largest value — the stricter test,
    /// since a step changes weights little (a gradient that lost a term fails it).
    fn assert_close(got: &[NamedTensor], want: &[NamedTensor], change: Option<(&[NamedTensor], f32)>, what: &str) {
        assert_eq!(got.len(), want.len());
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert_eq!(a.name, b.name);
            let worst = a.values.iter().zip(&b.values).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let scale = b.values.iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(worst <= 1e-4 * scale, "{what}: {} differs by {worst}", a.name);
            if let Some((start, tol)) = change {
                let moved = b.values.iter().zip(&start[k].values).fold(0f32, |m, (y, z)| m.max((y - z).abs()));
                assert!(worst <= tol * moved + 1e-7, "{what}: {} differs by {worst}, its change is {moved}", a.name);
            }
        }
    }

    /// Two ranks (threads) of 8 pairs with synchronized batch norm train exactly as one process
    /// with the 16 pairs: the same losses and, after three SGD-momentum steps, the same weights
    /// and running statistics (convnet; ResNet-18 for one step).
    #[test]
    fn two_ranks_with_sync_bn_train_as_one_process() {
        for (arch, steps) in [(Arch::Convnet, 3), (Arch::Resnet18, 1)] {
            let start = init(arch);
            let (want_loss, want) =
                train_as_rank(true, &crate::dist::single(), arch, &start, true, steps, 16, 0.01, 0.9);
            let ranks =
                crate::dist::local::run(2, |w| train_as_rank(true, &w, arch, &start, true, steps, 16, 0.01, 0.9));
            for (r, (loss, got)) in ranks.iter().enumerate() {
                for (a, b) in loss.iter().zip(&want_loss) {
                    assert!((a - b).abs() <= 1e-5 * b.abs(), "{arch:?} rank {r}: losses {loss:?} vs {want_loss:?}");
                }
                // ResNet-18's many near-zero pre-activations make rounding flip a few ReLUs (see
                // above), so its change is not held element by element.
                let change = (arch == Arch::Convnet).then_some((&start[..], 1e-3));
                assert_close(got, &want, change, &format!("{arch:?} rank {r}"));
            }
            assert_eq!(ranks[0].1, ranks[1].1, "{arch:?}: the ranks' tensors differ");
        }
    }

    /// The same with the kernels off: batch norm synchronized in burn's operations through the
    /// differentiable all-reduce (the form wgpu and cuda use), against burn's own batch norm in
    /// one process.
    #[test]
    fn two_ranks_with_sync_bn_in_tensor_operations_train_as_one_process() {
        let arch = Arch::Convnet;
        let start = init(arch);
        let (want_loss, want) = train_as_rank(false, &crate::dist::single(), arch, &start, true, 3, 16, 0.01, 0.9);
        let ranks = crate::dist::local::run(2, |w| train_as_rank(false, &w, arch, &start, true, 3, 16, 0.01, 0.9));
        for (r, (loss, got)) in ranks.iter().enumerate() {
            for (a, b) in loss.iter().zip(&want_loss) {
                assert!((a - b).abs() <= 1e-5 * b.abs(), "rank {r}: losses {loss:?} vs {want_loss:?}");
            }
            assert_close(got, &want, Some((&start[..], 1e-3)), &format!("rank {r}"));
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
        let out = loss(&cfg, global, pairs, None);
        let want_loss = out.loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        let want = collect(&Optimizer::new(cfg.optim.clone()).step(1.0, model, grads));
        let trainable = |t: &[NamedTensor]| -> Vec<NamedTensor> {
            t.iter().filter(|t| !crate::named_tensors::is_running_stat(&t.name)).cloned().collect()
        };
        let ranks = crate::dist::local::run(2, |w| train_as_rank(true, &w, arch, &start, false, 1, pairs, 1.0, 0.0));
        for (r, (loss, got)) in ranks.iter().enumerate() {
            assert!((loss[0] - want_loss).abs() <= 1e-5 * want_loss.abs(), "rank {r}: {} vs {want_loss}", loss[0]);
            let start = trainable(&start);
            assert_close(&trainable(got), &trainable(&want), Some((&start, 1e-3)), &format!("rank {r}"));
        }
    }
}
