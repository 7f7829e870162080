//! Global negatives: every rank's loss sees the whole global batch. Each rank gathers every
//! rank's projections and computes the loss of the global batch, in which its own rows are its
//! live projections and the other ranks' rows are constants. The gradient reaching its own rows
//! is then the whole one — the anchor terms of its own samples *and* the terms where its
//! samples are positives or negatives of other ranks' anchors — because the whole loss is
//! computed here. (A stop-gradient on the gathered copies with each rank's loss over its own
//! anchors only, the usual mistake, drops the latter terms.) Summing the ranks' parameter
//! gradients ([`super::grads`]) then gives exactly the gradient of the one-process loss; what
//! lightly's and solo-learn's `GatherLayer` reach by an all-reduce in the backward pass.
//!
//! The loss itself (a `2B × 2B` similarity matrix) is computed by every rank: at SimCLR's 4,096
//! pairs that is ~50 GFLOP a step per rank (forward and backward), small beside the encoder's
//! on a GPU (BENCHMARKS.md, "On paper: larger clusters").

use burn::prelude::*;

use super::Collective;

/// The global batch's projections, `[V·B, d]` with `B = b × ranks` and `V = views`: the first
/// views of every rank in rank order, then the second views, and so on — the order one process
/// with the whole batch would have. `z` (`[V·b, d]`, this rank's `b` first views then its `b`
/// second views, …) takes its own places and keeps its gradient; the rest are constants.
pub fn projections(world: &dyn Collective, z: Tensor<2>, b: usize, views: usize) -> Tensor<2> {
    let ranks = world.size();
    if ranks == 1 {
        return z;
    }
    let [rows, d] = z.dims();
    assert_eq!(rows, views * b, "projections of {views} views of {b} images");
    let mine = z.clone().detach().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 projections");
    let all = world.all_gather_f32(&mine);
    let device = z.device();
    let mut parts = Vec::with_capacity(views * ranks);
    for view in 0..views {
        for r in 0..ranks {
            if r == world.rank() {
                parts.push(z.clone().narrow(0, view * b, b));
            } else {
                let start = (r * views * b + view * b) * d;
                let values = all[start..start + b * d].to_vec();
                parts.push(Tensor::<2>::from_data(TensorData::new(values, [b, d]), &device));
            }
        }
    }
    Tensor::cat(parts, 0)
}

/// The global batch's labels (for SupCon), in the order of [`projections`].
pub fn labels(world: &dyn Collective, labels: Option<&[u32]>) -> Option<Vec<u32>> {
    let labels = labels?;
    if world.size() == 1 {
        return Some(labels.to_vec());
    }
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let all = world.all_gather_bytes(&bytes);
    Some(all.iter().flat_map(|b| b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::nt_xent;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Two ranks (threads) with 3 pairs each: the loss of the gathered batch equals the loss of
    /// the whole batch in one process, and the gradients each rank gets for its own rows are
    /// the whole batch's gradients of those rows — checked against the one-process gradient
    /// and against the stop-gradient mistake (each rank's loss over its own anchors only),
    /// which must differ.
    #[test]
    fn gathered_loss_and_gradients_equal_the_whole_batch() {
        let (b, d, t) = (3usize, 5usize, 0.5);
        let device = Device::flex().autodiff();
        // The whole batch: pairs 0..6; rank r holds pairs r*3..r*3+3.
        let z1 = crate::cpu_kernels::test_values(2 * b * d, 21, -1.0, 1.0);
        let z2: Vec<f32> = crate::cpu_kernels::test_values(2 * b * d, 22, -1.0, 1.0)
            .iter()
            .zip(&z1)
            .map(|(n, a)| a + 0.4 * n)
            .collect();
        let whole = Tensor::<2>::from_data(TensorData::new([z1.clone(), z2.clone()].concat(), [4 * b, d]), &device)
            .require_grad();
        let out = nt_xent(whole.clone().narrow(0, 0, 2 * b), whole.clone().narrow(0, 2 * b, 2 * b), t);
        let want_loss = out.loss.clone().into_scalar::<f32>();
        let g = out.loss.backward();
        let want_grad = host(whole.grad(&g).unwrap());

        let per_rank = crate::dist::local::run(2, |world| {
            let r = world.rank();
            let rows = |v: &[f32]| v[r * b * d..(r + 1) * b * d].to_vec();
            let mine = [rows(&z1), rows(&z2)].concat();
            let z = Tensor::<2>::from_data(TensorData::new(mine, [2 * b, d]), &device).require_grad();
            let global = projections(&*world, z.clone(), b, 2);
            let out = nt_xent(global.clone().narrow(0, 0, 2 * b), global.narrow(0, 2 * b, 2 * b), t);
            let loss = out.loss.clone().into_scalar::<f32>();
            let grad = host(z.grad(&out.loss.backward()).unwrap());
            // The mistake: the loss terms of this rank's anchors only (against every row, the
            // other rank's being constants), i.e. NT-Xent's targets kept for own anchors only.
            let zs = Tensor::<2>::from_data(z.clone().inner().into_data(), &device).require_grad();
            let global = projections(&*world, zs.clone(), b, 2);
            let m = 4 * b;
            let own = |i: usize| (i % (2 * b)) / b == r;
            let positive: Vec<bool> = (0..m * m).map(|k| k % m == (k / m + 2 * b) % m).collect();
            let weights = (0..m * m).map(|k| if positive[k] && own(k / m) { 1.0 / m as f32 } else { 0.0 }).collect();
            let partial = crate::loss::contrastive::contrastive_loss(global, t, weights, &positive);
            let wrong = host(zs.grad(&partial.loss.backward()).unwrap());
            (loss, grad, wrong)
        });
        for (r, (loss, grad, wrong)) in per_rank.iter().enumerate() {
            assert!((loss - want_loss).abs() <= 1e-6 * want_loss.abs(), "rank {r}: loss {loss} vs {want_loss}");
            let want: Vec<f32> = (0..2)
                .flat_map(|v| want_grad[(v * 2 * b + r * b) * d..(v * 2 * b + (r + 1) * b) * d].to_vec())
                .collect();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (k, (g, w)) in grad.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * scale, "rank {r} grad[{k}]: {g} vs {w}");
            }
            let off = wrong.iter().zip(&want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            assert!(off > 1e-2 * scale, "rank {r}: the stop-gradient form should differ (max diff {off})");
        }
    }
}
