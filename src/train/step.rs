//! One training step: both views through the encoder in a single forward pass, the
//! contrastive loss on their projections, backward, and the optimizer update. Shared by the
//! training loop, `selfsup bench train` and the cross-backend tests.

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::config::Config;
use crate::loss::{LossKind, LossOutput, nt_xent::nt_xent, supcon::supcon};
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
    }
}

/// Runs one step on `x` (`[2n, 3, s, s]`). When the loss is not finite, the model is returned
/// unchanged (no update is applied) with the loss, for the caller to report.
pub fn train_step(
    model: Encoder,
    optim: &mut Optimizer,
    cfg: &Config,
    x: Tensor<4>,
    n: usize,
    labels: Option<&[u32]>,
    lr: f64,
) -> Result<(Encoder, StepOutput)> {
    let (_, z) = model.forward(x);
    let out = loss(cfg, z, n, labels);
    let value: f32 = out
        .loss
        .clone()
        .try_into_scalar::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the loss from the device: {e:?}"))?;
    let result = |loss| StepOutput { loss, pos_sim: out.pos_sim.clone(), neg_sim: out.neg_sim.clone() };
    if !value.is_finite() {
        return Ok((model, result(value)));
    }
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    Ok((model, result(value)))
}
