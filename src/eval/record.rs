//! Evaluation results as files: `selfsup knn` and `selfsup probe` save what they measured as
//! JSON in the run's `eval/` folder (`knn-trained.json`, `probe-random-init.json`, …), which
//! `selfsup report` and `selfsup demo` gather.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::knn::KnnResult;
use super::probe::ProbeResult;
use super::retrieval::RetrievalResult;

/// Which features were evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// The same architecture, untrained.
    RandomInit,
    /// The normalized pixels of the evaluation view.
    Pixels,
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `trained` (the run's default network), `trained-teacher` / `trained-student` (the other
    /// one), `random-init` or `pixels`.
    pub features: String,
    /// Which network of the run was evaluated (`student`, `teacher`; none for a baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    pub train: String,
    pub test: String,
    pub train_images: usize,
    pub test_images: usize,
    pub feature_dim: usize,
    /// Class names in label order.
    #[serde(default)]
    pub classes: Vec<String>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<Vec<KnnResult>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    /// With k-NN: precision@1, recall@k and MAP@R of the test images against the training ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalResult>,
}

/// The label used in file names and tables.
pub fn features_name(baseline: Option<Baseline>) -> &'static str {
    match baseline {
        None => "trained",
        Some(Baseline::RandomInit) => "random-init",
        Some(Baseline::Pixels) => "pixels",
    }
}

impl EvalRecord {
    fn kind(&self) -> &'static str {
        if self.probe.is_some() { "probe" } else { "knn" }
    }

    /// Writes `dir/<kind>-<features>.json`.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}-{}.json", self.kind(), self.features));
        crate::atomic::write_bytes(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    /// Every record in `dir`, sorted by file name (none if the folder is absent).
    pub fn load_all(dir: &Path) -> Result<Vec<EvalRecord>> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{}: not an evaluation record", p.display()))
            })
            .collect()
    }
}
