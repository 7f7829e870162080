//! The SimCLR projection head: `layers − 1` hidden blocks of Linear → BatchNorm → ReLU, then a
//! final Linear to `out_dim` (SimCLR v1 uses 2 layers, v2 uses 3). The contrastive loss sees
//! its output; evaluation uses the backbone features before it.

use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

/// One hidden block.
#[derive(Module, Debug)]
pub struct HiddenLayer {
    pub linear: Linear,
    pub bn: BatchNorm,
    pub relu: Relu,
}

/// The projection MLP.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    pub hidden: Vec<HiddenLayer>,
    pub out: Linear,
}

impl ProjectionHead {
    /// `layers >= 1` linear layers in total; hidden ones are `hidden_dim` wide.
    pub fn new(in_dim: usize, hidden_dim: usize, out_dim: usize, layers: usize, device: &Device) -> Self {
        let mut d = in_dim;
        let hidden = (1..layers)
            .map(|_| {
                let l = HiddenLayer {
                    linear: LinearConfig::new(d, hidden_dim).with_bias(false).init(device),
                    bn: BatchNormConfig::new(hidden_dim).init(device),
                    relu: Relu::new(),
                };
                d = hidden_dim;
                l
            })
            .collect();
        Self { hidden, out: LinearConfig::new(d, out_dim).init(device) }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(x, |x, h| crate::cpu_kernels::batch_norm(&h.bn, h.linear.forward(x), true));
        self.out.forward(x)
    }
}
