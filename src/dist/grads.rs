//! Keeping the ranks' models identical: they start from rank 0's weights, every rank's
//! gradients (and those of what trains beside the model) are summed in one all-reduce of one
//! flat buffer (not one call per tensor), so
//! every rank applies the same update; and a checksum of the parameters, compared across ranks,
//! catches a rank that drifted anyway.
//!
//! The gradients are *summed*, not averaged: each rank's gradient is its share of the one
//! global loss ([`super::global_batch`]), so their sum is that loss's gradient, and the
//! learning rate means what it means in one process with the whole batch.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::Collective;

struct Flatten<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let n = g.shape().num_elements();
            self.parts.push(g.reshape([n]));
        }
    }
}

struct Unflatten<'a> {
    grads: &'a mut GradientsParams,
    flat: Tensor<1>,
    offset: usize,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let dims = g.dims();
            let n = g.shape().num_elements();
            let summed = self.flat.clone().narrow(0, self.offset, n).reshape(dims);
            self.offset += n;
            self.grads.register::<D>(param.id, summed);
        }
    }
}

/// Replaces every gradient in `grads`, and each tensor of `extra` (gradients trained beside the
/// model: the online linear classifier's), by its sum over the ranks (one all-reduce).
pub fn all_reduce<M: Module>(world: &dyn Collective, model: &M, grads: &mut GradientsParams, extra: &mut [Tensor<1>]) {
    if world.size() == 1 {
        return;
    }
    let mut f = Flatten { grads, parts: Vec::new() };
    model.visit(&mut f);
    let mut parts = f.parts;
    parts.extend(extra.iter().cloned());
    let Some(device) = parts.first().map(|t| t.device()) else { return };
    let mut host = Tensor::cat(parts, 0).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 gradients");
    world.all_reduce_sum_f32(&mut host);
    let n = host.len();
    let flat = Tensor::<1>::from_data(TensorData::new(host, [n]), &device);
    let mut u = Unflatten { grads, flat, offset: 0 };
    model.visit(&mut u);
    for t in extra.iter_mut() {
        let len = t.dims()[0];
        *t = u.flat.clone().narrow(0, u.offset, len);
        u.offset += len;
    }
}

/// A checksum of the trainable parameters (names and exact bits; BatchNorm's running
/// statistics are left out, since without synchronized batch norm each rank keeps its own).
pub fn checksum<M: Module>(model: &M) -> u64 {
    let mut h = super::Fnv::new();
    for t in crate::named_tensors::collect(model) {
        if crate::named_tensors::is_running_stat(&t.name) {
            continue;
        }
        h.eat(t.name.bytes());
        for v in &t.values {
            h.eat(v.to_bits().to_le_bytes());
        }
    }
    h.finish()
}

/// Fails, on every rank alike, when the ranks' parameters differ after `step` steps.
pub fn check_same<M: Module>(world: &dyn Collective, model: &M, step: u64) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let sums: Vec<u64> = world
        .all_gather_bytes(&checksum(model).to_le_bytes())
        .iter()
        .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
        .collect();
    if let Some(r) = sums.iter().position(|&s| s != sums[0]) {
        bail!(
            "the ranks' parameters differ after step {step} (checksum of rank {r} {:016x}, of rank 0 {:016x}): the ranks no longer train the same model (a different selfsup build or MPI library on some node?); stopping",
            sums[r],
            sums[0]
        );
    }
    Ok(())
}

/// Rank 0's weights on every rank (a fresh run's start: the same seed gives every rank the
/// same initialization on the CPU, but nothing promises it on every device).
pub fn broadcast_model<M: Module>(world: &dyn Collective, model: M) -> Result<M> {
    if world.size() == 1 {
        return Ok(model);
    }
    let mut tensors = crate::named_tensors::collect(&model);
    let bytes: Vec<u8> = if world.rank() == 0 {
        tensors.iter().flat_map(|t| t.values.iter().flat_map(|v| v.to_le_bytes())).collect()
    } else {
        Vec::new()
    };
    let bytes = world.broadcast_bytes(bytes);
    let total: usize = tensors.iter().map(|t| t.values.len()).sum();
    if bytes.len() != 4 * total {
        bail!("rank 0's model has {} values, this rank's {total}: the ranks build different models", bytes.len() / 4);
    }
    let mut values = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    for t in &mut tensors {
        for v in &mut t.values {
            *v = values.next().expect("counted above");
        }
    }
    crate::named_tensors::apply(model, &tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Arch;

    /// Ranks that built differently initialized models all hold rank 0's after the broadcast,
    /// and their checksums then agree (they disagreed before).
    #[test]
    fn ranks_start_from_rank_zeros_weights() {
        let out = crate::dist::local::run(2, |world| {
            let mut cfg = Config::default();
            cfg.model.arch = Arch::Resnet18;
            cfg.model.head.hidden_dim = 64;
            let device = Device::flex().autodiff();
            device.seed(world.rank() as u64 + 7);
            let model = cfg.model.init(&device);
            let before = checksum(&model);
            let model = broadcast_model(&*world, model).unwrap();
            let after = crate::named_tensors::collect(&model);
            (before, checksum(&model), after, check_same(&*world, &model, 0).is_ok())
        });
        assert_ne!(out[0].0, out[1].0, "different seeds, different weights");
        assert_eq!(out[0].1, out[1].1);
        assert_eq!(out[0].2, out[1].2);
        assert!(out[0].3 && out[1].3);
    }
}
