//! The MLP heads: SimCLR's projection head, and the same shape for the other methods'
//! projectors and predictors (`[model.head]`, `[method.predictor]`). `layers − 1` hidden blocks
//! of Linear → BatchNorm → activation, then a final Linear to `out_dim`, optionally followed by
//! a BatchNorm (SimSiam's and NNCLR's projectors). A Linear has a bias exactly when no batch
//! norm follows it (lightly's rule). Without `batch_norm` the hidden blocks are Linear →
//! activation (MoCo v2's head). The activation is ReLU, or GELU for DINO's head. SimCLR v1 uses
//! 2 layers, v2 uses 3. The loss sees the head's output; evaluation uses the backbone features
//! before it.

use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The hidden layers' non-linearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
}

/// A head's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Width of the hidden layers; 0 means the input's dimension.
    pub hidden_dim: usize,
    /// Output (embedding) dimension (for a predictor, 0: the projection's).
    pub out_dim: usize,
    /// Number of linear layers (≥ 1).
    pub layers: usize,
    /// Batch norm after every hidden linear layer.
    #[serde(default = "yes")]
    pub batch_norm: bool,
    /// Batch norm after the output layer too.
    #[serde(default)]
    pub output_batch_norm: bool,
    #[serde(default)]
    pub activation: Activation,
}

fn yes() -> bool {
    true
}

impl HeadConfig {
    /// A head of `layers` linear layers, `hidden_dim` wide, with batch norm and ReLU.
    pub fn mlp(hidden_dim: usize, out_dim: usize, layers: usize) -> Self {
        Self { hidden_dim, out_dim, layers, batch_norm: true, output_batch_norm: false, activation: Activation::Relu }
    }
}

/// One hidden block.
#[derive(Module, Debug)]
pub struct HiddenLayer {
    pub linear: Linear,
    pub bn: Option<BatchNorm>,
}

/// The MLP.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    pub hidden: Vec<HiddenLayer>,
    pub out: Linear,
    pub out_bn: Option<BatchNorm>,
    #[module(skip)]
    pub activation: Activation,
}

impl ProjectionHead {
    /// The head `cfg` on `in_dim` inputs (`cfg.hidden_dim = 0`: `in_dim` wide; `out_dim` is
    /// the output dimension, already resolved).
    pub fn new(in_dim: usize, cfg: &HeadConfig, out_dim: usize, device: &Device) -> Self {
        let width = if cfg.hidden_dim == 0 { in_dim } else { cfg.hidden_dim };
        let mut d = in_dim;
        let hidden = (1..cfg.layers.max(1))
            .map(|_| {
                let l = HiddenLayer {
                    linear: LinearConfig::new(d, width).with_bias(!cfg.batch_norm).init(device),
                    bn: cfg.batch_norm.then(|| BatchNormConfig::new(width).init(device)),
                };
                d = width;
                l
            })
            .collect();
        Self {
            hidden,
            out: LinearConfig::new(d, out_dim).with_bias(!cfg.output_batch_norm).init(device),
            out_bn: cfg.output_batch_norm.then(|| BatchNormConfig::new(out_dim).init(device)),
            activation: cfg.activation,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.out.weight.dims()[1]
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(x, |x, h| {
            let y = h.linear.forward(x);
            match (&h.bn, self.activation) {
                // The CPU kernels fuse batch norm with the ReLU after it.
                (Some(bn), Activation::Relu) => crate::cpu_kernels::batch_norm(bn, y, true),
                (Some(bn), Activation::Gelu) => crate::cpu_kernels::gelu(crate::cpu_kernels::batch_norm(bn, y, false)),
                (None, Activation::Relu) => burn::tensor::activation::relu(y),
                (None, Activation::Gelu) => crate::cpu_kernels::gelu(y),
            }
        });
        let y = self.out.forward(x);
        match &self.out_bn {
            Some(bn) => crate::cpu_kernels::batch_norm(bn, y, false),
            None => y,
        }
    }
}
