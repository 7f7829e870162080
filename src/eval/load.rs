//! Getting an encoder to evaluate: a trained one from a run folder or checkpoint file, or the
//! same architecture freshly initialized (the `random-init` baseline). Evaluation runs on a
//! plain (non-autodiff) device, so BatchNorm uses its running statistics.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;

use crate::backend::{self, BackendChoice, ChosenDevice};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::model::Encoder;
use crate::named_tensors;
use crate::train::run_dir::checkpoint_path;

/// An encoder ready for inference, with the configuration it was trained with.
pub struct LoadedEncoder {
    pub encoder: Encoder,
    pub config: Config,
    pub device: ChosenDevice,
    /// Where it came from (checkpoint path or "random-init").
    pub origin: String,
}

impl LoadedEncoder {
    pub fn device(&self) -> &Device {
        &self.device.device
    }
}

/// The configuration saved in a checkpoint.
pub fn checkpoint_config(ck: &Checkpoint) -> Result<Config> {
    Config::from_table(toml::from_str(&ck.config).context("checkpoint config is not TOML")?)
        .context("checkpoint config")
}

/// Loads the trained encoder of `model` (a run folder or a checkpoint file) onto `backend`.
pub fn load(model: &Path, backend: BackendChoice) -> Result<LoadedEncoder> {
    let path = checkpoint_path(model)?;
    let ck = Checkpoint::load(&path)?;
    let config = checkpoint_config(&ck)?;
    let device = backend::choose(backend)?;
    let encoder = named_tensors::apply(config.model.init(&device.device), &ck.model)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(LoadedEncoder { encoder, config, device, origin: path.display().to_string() })
}

/// The untrained baseline: `config`'s architecture initialized with `config.seed`.
pub fn random_init(config: &Config, backend: BackendChoice) -> Result<LoadedEncoder> {
    let device = backend::choose(backend)?;
    device.device.seed(config.seed);
    let encoder = config.model.init(&device.device);
    Ok(LoadedEncoder { encoder, config: config.clone(), device, origin: "random-init".into() })
}
