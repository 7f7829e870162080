//! The encoder: a backbone and a projection head, built from the `[model]` configuration, and
//! the parts some methods add (`crate::method`): a predictor head (BYOL, SimSiam, MoCo v3,
//! NNCLR) and DINO's prototypes.

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::convnet::ConvNet;
use super::head::{HeadConfig, ProjectionHead};
use super::prototypes::Prototypes;
use super::resnet::{ResNet, Stem};

/// Backbone architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Convnet,
    Resnet18,
    Resnet34,
    Resnet50,
}

/// The `[model]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Stem of ResNet backbones (ignored by convnet).
    pub stem: Stem,
    pub head: HeadConfig,
    /// Under several ranks, batch norm's training statistics over the global batch (SimCLR's
    /// "global BN"; see `crate::dist::sync_bn`); off, each rank normalizes its own images.
    /// No effect in one process.
    #[serde(default)]
    pub sync_batch_norm: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { arch: Arch::Convnet, stem: Stem::Cifar, head: HeadConfig::mlp(0, 128, 2), sync_batch_norm: false }
    }
}

impl ModelConfig {
    /// Builds a freshly initialized encoder (backbone and projection head) on `device`.
    pub fn init(&self, device: &Device) -> Encoder {
        self.init_with(&Extras::default(), device)
    }

    /// Builds a freshly initialized encoder with the `extras` a method adds.
    pub fn init_with(&self, extras: &Extras, device: &Device) -> Encoder {
        let backbone = match self.arch {
            Arch::Convnet => Backbone::ConvNet(ConvNet::new(device)),
            Arch::Resnet18 => Backbone::ResNet(ResNet::new(18, self.stem, device)),
            Arch::Resnet34 => Backbone::ResNet(ResNet::new(34, self.stem, device)),
            Arch::Resnet50 => Backbone::ResNet(ResNet::new(50, self.stem, device)),
        };
        let head = ProjectionHead::new(backbone.dim(), &self.head, self.head.out_dim, device);
        let d = self.head.out_dim;
        let predictor = extras.predictor.as_ref().map(|p| {
            let out = if p.out_dim == 0 { d } else { p.out_dim };
            ProjectionHead::new(d, p, out, device)
        });
        let prototypes = extras.prototypes.map(|k| Prototypes::new(d, k, device));
        let encoder = Encoder { backbone, head, predictor, prototypes };
        // burn initializes parameters lazily, on first use, drawing from the device's random
        // stream: left alone, the weights would depend on which parameter is touched first
        // (a ResNet's forward reaches a block's shortcut before its module order does). Drawing
        // them all now, in module order, makes a seed give the same weights whatever runs first
        // (one process, or rank 0 broadcasting to the others).
        encoder.visit(&mut Materialize);
        encoder
    }
}

/// What a method adds to the backbone and projection head.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    /// A predictor on the projections (its `out_dim` 0: the projection's dimension).
    pub predictor: Option<HeadConfig>,
    /// DINO's prototypes after the head: their number.
    pub prototypes: Option<usize>,
}

/// Reads every parameter once (see [`ModelConfig::init`]).
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Any of the backbones.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model: boxing would only add an indirection
pub enum Backbone {
    ConvNet(ConvNet),
    ResNet(ResNet),
}

impl Backbone {
    /// Feature dimension.
    pub fn dim(&self) -> usize {
        match self {
            Self::ConvNet(m) => m.dim(),
            Self::ResNet(m) => m.dim(),
        }
    }

    /// `[n, 3, h, w]` → `[n, dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ConvNet(m) => m.forward(x),
            Self::ResNet(m) => m.forward(x),
        }
    }
}

/// Backbone and projection head, and a method's predictor or prototypes. A teacher
/// ([`crate::method::ema`]) is an encoder without a predictor.
#[derive(Module, Debug)]
pub struct Encoder {
    pub backbone: Backbone,
    pub head: ProjectionHead,
    pub predictor: Option<ProjectionHead>,
    pub prototypes: Option<Prototypes>,
}

impl Encoder {
    /// Backbone features and their projections.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let h = self.backbone.forward(x);
        let z = self.head.forward(h.clone());
        (h, z)
    }

    /// What the method's loss sees of each view, one row per view: the projection `z`; with a
    /// predictor `[z | p]` (the projection, then the prediction `p` of it, side by side); with
    /// prototypes, DINO's logits over them.
    pub fn rows(&self, x: Tensor<4>) -> Tensor<2> {
        self.rows_and_features(x).0
    }

    /// [`rows`](Self::rows) and the backbone features they came from (what the online linear
    /// classifier learns from).
    pub fn rows_and_features(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let (h, z) = self.forward(x);
        if let Some(p) = &self.prototypes {
            return (p.forward(z), h);
        }
        let rows = match &self.predictor {
            Some(pred) => {
                let p = pred.forward(z.clone());
                Tensor::cat(vec![z, p], 1)
            }
            None => z,
        };
        (rows, h)
    }
}
