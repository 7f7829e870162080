//! The encoders selfsup trains: a backbone (what evaluation uses) and a projection head (what
//! the contrastive loss sees), built from the `[model]` configuration.
//!
//! - [`convnet`]: the small 4-layer CPU workhorse;
//! - [`resnet`]: ResNet-18/34/50 with a CIFAR or ImageNet stem;
//! - [`head`]: the projection MLP (and the same shape for predictors);
//! - [`prototypes`]: DINO's weight-normalized last layer;
//! - [`encoder`]: backbone + head (+ a method's predictor or prototypes), and the configuration
//!   that builds them.

pub mod convnet;
pub mod encoder;
pub mod head;
pub mod prototypes;
pub mod resnet;

pub use encoder::{Arch, Backbone, Encoder, Extras, ModelConfig};
pub use head::{Activation, HeadConfig};
pub use resnet::Stem;
