//! # selfsup-augment
//!
//! The SimCLR augmentation stage of selfsup, with no dependency on burn: it turns an 8-bit RGB
//! image into two independently augmented views, each written as normalized `f32` CHW straight
//! into a caller-provided slice (so a whole batch is filled in place, ready to become a tensor).
//!
//! Each operation lives in its own module with its configuration and probability:
//! [`crop`] (RandomResizedCrop box sampling) and [`resample`] (the crop's bilinear, antialiased
//! resampling), [`flip`], [`color_jitter`], [`grayscale`], [`blur`], [`noise`], [`solarize`] and
//! [`normalize`]. [`config`] gathers them into one serde/TOML configuration with the `cifar` and
//! `imagenet` presets, [`pipeline`] runs them in SimCLR's order on one view, and [`batch`]
//! augments a batch of images in parallel (rayon). [`center`] is the deterministic evaluation
//! view (centred crop, resize, normalize). All randomness comes from [`rng`]: a view's
//! random draws are a pure function of `(seed, epoch, sample index, view)`, so the same seed gives
//! the same views whatever the thread count or batch order.

pub mod batch;
pub mod blur;
pub mod buffer;
pub mod center;
pub mod color_jitter;
pub mod config;
pub mod crop;
pub mod flip;
pub mod grayscale;
pub mod noise;
pub mod normalize;
pub mod pipeline;
pub mod resample;
pub mod rng;
pub mod solarize;

pub use batch::ImageSource;
pub use buffer::{ImageRef, RgbF32};
pub use config::{AugmentConfig, ConfigError, Preset};
pub use pipeline::{Augmenter, Scratch};
pub use rng::{ViewRng, view_rng};
