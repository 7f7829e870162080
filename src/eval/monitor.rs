//! Watching for collapse while pretraining.
//!
//! A fixed set of images is held out of training. Every `monitor.every` steps, both augmented
//! views of them (always the same draws) go through the encoder in inference mode and the
//! [`collapse`](super::collapse) statistics of the backbone features and of the projections are
//! logged. A collapse rule fires when the normalized std falls below `std_threshold / √d` or
//! the effective rank below `rank_threshold × d`. With labels, an online k-NN accuracy (the
//! held-out images against a bank of training images) is logged every `knn_every` epochs, and
//! the online linear classifier's accuracy on the held-out images at the end of every epoch.

use burn::prelude::*;
use selfsup_augment::Augmenter;
use selfsup_datasets::split::stratified_subset;
use serde::{Deserialize, Serialize};

use super::collapse::{Embeddings, SpaceStats, space_stats};
use super::features::{Extractor, extract};
use super::knn::{KnnResult, knn};
pub use super::monitor_config::MonitorConfig;
use crate::data::{Dataset, Images};
use crate::model::Encoder;

/// What is logged under `monitor` in metrics.jsonl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct MonitorRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<SpaceStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<SpaceStats>,
    /// The collapse rules that fired (empty when healthy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapse: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<KnnResult>,
    /// The online linear classifier's accuracy on the held-out images (end of each epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearRecord>,
}

/// The online linear classifier on the held-out images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct LinearRecord {
    pub top1: f64,
    /// Held-out images it was measured on.
    pub images: usize,
}

/// The held-out images and what is needed to measure on them.
pub struct Monitor {
    cfg: MonitorConfig,
    /// Both views of the held-out images (`[2n, 3, s, s]`, host).
    views: Vec<f32>,
    holdout: Vec<usize>,
    bank: Vec<usize>,
    size: usize,
}

/// Splits `ds` into the held-out images and the training images (both sorted), by `seed`.
pub fn split_holdout(ds: &Dataset, cfg: &MonitorConfig, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let linear = cfg.linear && ds.is_labeled();
    let wanted = if cfg.every > 0 || cfg.knn_every > 0 || linear { cfg.holdout.min(ds.len() / 10) } else { 0 };
    if wanted < 2 {
        return (Vec::new(), (0..ds.len()).collect());
    }
    let holdout = stratified_subset(&ds.labels(), wanted, seed ^ 0x004d_4f4e_4954_4f52);
    let mut held = vec![false; ds.len()];
    holdout.iter().for_each(|&i| held[i] = true);
    let train = (0..ds.len()).filter(|&i| !held[i]).collect();
    (holdout, train)
}

impl Monitor {
    /// Prepares the monitor on `ds` (the full dataset) for held-out images `holdout`; the k-NN
    /// bank is drawn from `train` (indices into `ds`). `None` when there is nothing to monitor.
    pub fn new(
        cfg: &MonitorConfig,
        ds: &Dataset,
        aug: &Augmenter,
        holdout: Vec<usize>,
        train: &[usize],
        seed: u64,
    ) -> Option<Self> {
        if holdout.len() < 2 {
            return None;
        }
        let len = aug.view_len();
        let mut views = vec![0.0f32; 2 * holdout.len() * len];
        let (a, b) = views.split_at_mut(holdout.len() * len);
        // A key no training epoch uses: the same views at every check.
        aug.two_views_batch(&Images(ds), &holdout, seed, u64::MAX, a, b);
        let bank = if ds.is_labeled() && cfg.knn_every > 0 {
            let labels: Vec<Option<u32>> = train.iter().map(|&i| ds.label(i)).collect();
            stratified_subset(&labels, cfg.knn_bank, seed).into_iter().map(|k| train[k]).collect()
        } else {
            Vec::new()
        };
        Some(Self { cfg: cfg.clone(), views, holdout, bank, size: aug.size() })
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Whether the statistics are due after global step `step`.
    pub fn due(&self, step: u64) -> bool {
        self.cfg.every > 0 && step.is_multiple_of(self.cfg.every)
    }

    /// Whether the online k-NN is due after epoch `epoch` (1-based, completed).
    pub fn knn_due(&self, epoch: u64) -> bool {
        !self.bank.is_empty() && self.cfg.knn_every > 0 && epoch.is_multiple_of(self.cfg.knn_every)
    }

    /// The statistics of the held-out views through `model` in inference mode on `device`.
    pub fn stats(&self, model: &Encoder, device: &Device) -> MonitorRecord {
        let model = model.valid();
        let n = self.holdout.len();
        let x = Tensor::<4>::from_data(TensorData::new(self.views.clone(), [2 * n, 3, self.size, self.size]), device);
        let (h, z) = model.forward(x);
        let host = |t: Tensor<2>| -> (Embeddings, Embeddings) {
            let d = t.dims()[1];
            let v: Vec<f32> = t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 embeddings");
            (Embeddings::new(n, d, v[..n * d].to_vec()), Embeddings::new(n, d, v[n * d..].to_vec()))
        };
        let (h1, h2) = host(h);
        let (z1, z2) = host(z);
        let backbone = space_stats(&h1, &h2);
        let projection = space_stats(&z1, &z2);
        let mut collapse = Vec::new();
        for (name, s) in [("backbone", &backbone), ("projection", &projection)] {
            if s.std_ratio < self.cfg.std_threshold {
                collapse.push(format!(
                    "{name} embedding std {:.4} is below {:.4} (= monitor.std_threshold {} / √{})",
                    s.std,
                    self.cfg.std_threshold / (s.dim as f64).sqrt(),
                    self.cfg.std_threshold,
                    s.dim
                ));
            }
            if s.effective_rank < self.cfg.rank_threshold * s.dim as f64 {
                collapse.push(format!(
                    "{name} effective rank {:.2} is below {:.2} (= monitor.rank_threshold {} × {})",
                    s.effective_rank,
                    self.cfg.rank_threshold * s.dim as f64,
                    self.cfg.rank_threshold,
                    s.dim
                ));
            }
        }
        MonitorRecord { backbone: Some(backbone), projection: Some(projection), collapse, ..Default::default() }
    }

    /// The held-out images' backbone features (evaluation views, `model` in inference mode;
    /// `[n, dim]` rows) and their labels: what the online linear classifier is measured on.
    pub fn holdout_features(
        &self,
        model: &Encoder,
        device: &Device,
        ds: &Dataset,
        aug: &Augmenter,
    ) -> (Vec<f32>, Vec<u32>) {
        let (emb, labels) = labelled_features(&model.valid(), device, ds, aug, &self.holdout);
        (emb.values, labels)
    }

    /// Online k-NN: the held-out images against the bank, through `model` in inference mode.
    pub fn knn(&self, model: &Encoder, device: &Device, ds: &Dataset, aug: &Augmenter) -> KnnResult {
        let model = model.valid();
        let (bank, bank_labels) = labelled_features(&model, device, ds, aug, &self.bank);
        let (queries, query_labels) = labelled_features(&model, device, ds, aug, &self.holdout);
        knn(&bank, &bank_labels, &queries, &query_labels, &[self.cfg.knn_k], self.cfg.knn_temperature, device).remove(0)
    }
}

/// The evaluation-view backbone features of images `indices` of `ds` through `model` (already in
/// inference mode) and their labels.
fn labelled_features(
    model: &Encoder,
    device: &Device,
    ds: &Dataset,
    aug: &Augmenter,
    indices: &[usize],
) -> (Embeddings, Vec<u32>) {
    let f = extract(&crate::dist::Single, &Extractor::Encoder(model, device), aug, ds, Some(indices), 256, false);
    (f.emb, f.labels.iter().map(|l| l.unwrap_or(0)).collect())
}
