//! The options every evaluation command shares: which encoder (a trained run, or a baseline),
//! on which backend, and where its results go.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ConfigArgs;
use crate::backend::BackendChoice;
use crate::config::Config;
use crate::data::{Dataset, open_dataset};
use crate::eval::features::{Extractor, Features, extract};
use crate::eval::load::{LoadedEncoder, load, random_init};
use crate::eval::record::{Baseline, features_name};
use crate::method::Weights;
use crate::train::run_dir::RunDir;

#[derive(Args, Debug, Clone)]
pub struct EncoderArgs {
    /// Trained encoder: a run folder or a checkpoint file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Evaluate a baseline instead: `random-init` (the model's architecture, untrained) or
    /// `pixels` (the normalized pixels). Uses --model's configuration when given.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Which network of --model: the trained `student`, or the EMA `teacher` of MoCo, MoCo v3,
    /// BYOL and DINO (default: the teacher for DINO, as its paper evaluates, else the student).
    #[arg(long, value_enum)]
    pub weights: Option<Weights>,
    /// Backend for feature extraction.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Images per feature-extraction batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Where to write results (default: the run folder's eval/ when --model is given).
    #[arg(long)]
    pub eval_dir: Option<PathBuf>,
    /// Configuration for baselines without --model (architecture, evaluation view).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The features' source, resolved.
pub struct Resolved {
    pub config: Config,
    pub encoder: Option<LoadedEncoder>,
    /// The features' name in results (`trained`, `trained-teacher`, `random-init`, `pixels`).
    pub name: String,
    /// Where results are written (None: print only).
    pub out: Option<PathBuf>,
}

impl Resolved {
    /// Which network of the run the features come from (`None` for a baseline).
    pub fn weights(&self) -> Option<Weights> {
        self.encoder.as_ref().and_then(|e| e.weights)
    }

    pub fn extractor(&self) -> Extractor<'_> {
        match &self.encoder {
            Some(e) => Extractor::Encoder(&e.encoder, e.device()),
            None => Extractor::Pixels,
        }
    }

    /// Opens a dataset for evaluation (no training `data.limit`; `limit` instead).
    pub fn open(&self, path: &Path, limit: Option<usize>, verbose: bool) -> Result<Dataset> {
        let mut cfg = self.config.clone();
        cfg.data.limit = limit;
        open_dataset(path, &cfg, verbose)
    }

    /// Features of a whole dataset.
    pub fn features(&self, ds: &Dataset, batch: usize, verbose: bool) -> Result<Features> {
        let aug = selfsup_augment::Augmenter::new(self.config.augment.clone())?;
        Ok(extract(&*crate::dist::world(), &self.extractor(), &aug, ds, None, batch, verbose))
    }

    /// Opens the `--train` and `--test` folders of a supervised evaluation (stratified subsets
    /// when limited) and requires both to be labelled; `purpose` names the evaluation in the
    /// error ("k-NN", "the probe").
    pub fn open_labeled(
        &self,
        train: (&Path, Option<usize>),
        test: (&Path, Option<usize>),
        purpose: &str,
        verbose: bool,
    ) -> Result<(Dataset, Dataset)> {
        let train = self.open(train.0, train.1, verbose)?;
        let test = self.open(test.0, test.1, verbose)?;
        for (ds, what) in [(&train, "--train"), (&test, "--test")] {
            if !ds.is_labeled() {
                bail!(
                    "{what} {}: {purpose} needs labels (a folder of class sub-folders, CIFAR or IDX)",
                    ds.root().display()
                );
            }
        }
        Ok((train, test))
    }

    /// Features of a labelled dataset (opened by [`open_labeled`](Self::open_labeled)) and
    /// its labels.
    pub fn labeled_features(&self, ds: &Dataset, batch: usize, verbose: bool) -> Result<(Features, Vec<u32>)> {
        let f = self.features(ds, batch, verbose)?;
        let labels = f.required_labels().context("unlabelled image")?;
        Ok((f, labels))
    }
}

/// The eval folder belonging to `model` (a run folder or a checkpoint inside one).
fn run_eval_dir(model: &Path) -> PathBuf {
    let root =
        if model.is_dir() { model.to_path_buf() } else { model.parent().map(Path::to_path_buf).unwrap_or_default() };
    RunDir::new(&root).eval()
}

impl EncoderArgs {
    pub fn resolve(&self, verbose: bool) -> Result<Resolved> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let has_config = self.config.config.is_some() || !self.config.sets.is_empty();
        if self.model.is_some() && has_config {
            bail!("--model brings its own configuration; drop --config/--set");
        }
        let out = self.eval_dir.clone().or_else(|| self.model.as_deref().map(run_eval_dir));
        if self.weights.is_some() && (self.model.is_none() || self.baseline.is_some()) {
            bail!("--weights chooses a network of a trained --model; drop it for a baseline");
        }
        let (config, encoder) = match (&self.model, self.baseline) {
            (None, None) => bail!("give --model RUN_OR_CHECKPOINT, or --baseline random-init|pixels"),
            (Some(m), None) => {
                let e = load(m, self.backend, self.weights)?;
                (e.config.clone(), Some(e))
            }
            (model, Some(b)) => {
                let config = match model {
                    Some(m) => load(m, BackendChoice::Flex, None)?.config,
                    None => self.config.load()?,
                };
                let encoder = match b {
                    Baseline::RandomInit => Some(random_init(&config, self.backend)?),
                    Baseline::Pixels => None,
                };
                (config, encoder)
            }
        };
        let name = match encoder.as_ref().and_then(|e| e.weights) {
            // A run's own default network is "trained"; the other one is named.
            Some(w) if w != config.method.kind.default_weights() => format!("trained-{}", w.name()),
            _ => features_name(self.baseline).to_string(),
        };
        if verbose {
            match &encoder {
                Some(e) => eprintln!(
                    "features: {name} {:?} encoder ({}{}) on {}",
                    config.model.arch,
                    e.origin,
                    e.weights.map(|w| format!(", {}", w.name())).unwrap_or_default(),
                    e.device.description
                ),
                None => {
                    eprintln!("features: normalized pixels ({} values)", 3 * config.augment.size * config.augment.size)
                }
            }
        }
        Ok(Resolved { config, encoder, name, out })
    }
}
