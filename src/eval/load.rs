//! Getting an encoder to evaluate: a trained one from a run folder or checkpoint file, or the
//! same architecture freshly initialized (the `random-init` baseline). Evaluation runs on a
//! plain (non-autodiff) device, so BatchNorm uses its running statistics.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use crate::backend::{self, BackendChoice, ChosenDevice};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::method::Weights;
use crate::model::Encoder;
use crate::named_tensors::{self, NamedTensor};
use crate::train::run_dir::checkpoint_path;

/// An encoder ready for inference, with the configuration it was trained with.
pub struct LoadedEncoder {
    pub encoder: Encoder,
    pub config: Config,
    pub device: ChosenDevice,
    /// Where it came from (checkpoint path or "random-init").
    pub origin: String,
    /// Which network of the run it is (a checkpoint's student or teacher; `None` for the
    /// random-init baseline).
    pub weights: Option<Weights>,
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

/// The tensors of network `weights` of checkpoint `ck` (of configuration `config`), named as
/// the student's are: the student's as they are, or the EMA teacher's.
pub fn network_tensors(ck: &Checkpoint, config: &Config, weights: Weights) -> Result<Vec<NamedTensor>> {
    match weights {
        Weights::Student => Ok(ck.model.clone()),
        Weights::Teacher => {
            let tensors: Vec<NamedTensor> = ck
                .method
                .iter()
                .filter_map(|t| {
                    t.name.strip_prefix("teacher.").map(|n| NamedTensor { name: n.to_string(), ..t.clone() })
                })
                .collect();
            if tensors.is_empty() {
                let kind = config.method.kind;
                let with: Vec<String> =
                    crate::method::MethodKind::ALL.iter().filter(|k| k.has_teacher()).map(|k| k.name()).collect();
                bail!(
                    "--weights teacher: the run was trained with method.kind = \"{}\", which has no teacher ({} have one)",
                    kind.name(),
                    with.join(", ")
                );
            }
            Ok(tensors)
        }
    }
}

/// Network `weights` of checkpoint `ck` as an encoder on `device` (a teacher has no predictor).
pub fn network(ck: &Checkpoint, config: &Config, weights: Weights, device: &Device) -> Result<Encoder> {
    let tensors = network_tensors(ck, config, weights)?;
    let mut encoder = config.encoder(device);
    if weights == Weights::Teacher {
        encoder.predictor = None;
    }
    named_tensors::apply(encoder, &tensors)
}

/// Loads network `weights` (default: the method's, [`crate::method::MethodKind::default_weights`])
/// of the trained run `model` (a run folder or a checkpoint file) onto `backend`.
pub fn load(model: &Path, backend: BackendChoice, weights: Option<Weights>) -> Result<LoadedEncoder> {
    let path = checkpoint_path(model)?;
    let ck = Checkpoint::load(&path)?;
    let config = checkpoint_config(&ck)?;
    let device = backend::choose(backend)?;
    let weights = weights.unwrap_or_else(|| config.method.kind.default_weights());
    let encoder =
        network(&ck, &config, weights, &device.device).with_context(|| format!("loading {}", path.display()))?;
    Ok(LoadedEncoder { encoder, config, device, origin: path.display().to_string(), weights: Some(weights) })
}

/// The untrained baseline: `config`'s architecture initialized with `config.seed`.
pub fn random_init(config: &Config, backend: BackendChoice) -> Result<LoadedEncoder> {
    let device = backend::choose(backend)?;
    device.device.seed(config.seed);
    let encoder = config.encoder(&device.device);
    Ok(LoadedEncoder { encoder, config: config.clone(), device, origin: "random-init".into(), weights: None })
}
