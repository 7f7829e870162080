//! The `[monitor]` section of the configuration: what is watched while pretraining
//! ([`super::monitor`]) and how often.

use serde::{Deserialize, Serialize};

/// The `[monitor]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Compute the statistics every this many steps (0: never).
    pub every: u64,
    /// Images held out of training for the statistics and the online k-NN queries (at most a
    /// tenth of the dataset).
    pub holdout: usize,
    /// Collapse when `std · √d` falls below this.
    pub std_threshold: f64,
    /// Collapse when the effective rank falls below this fraction of the dimension.
    pub rank_threshold: f64,
    /// Stop training (keeping the last good checkpoint) when a rule fires.
    pub stop_on_collapse: bool,
    /// Online k-NN every this many epochs when the data has labels (0: never).
    pub knn_every: u64,
    /// Training images in the online k-NN bank.
    pub knn_bank: usize,
    pub knn_k: usize,
    pub knn_temperature: f64,
    /// Train the online linear classifier when the data has labels ([`crate::train::online_linear`]):
    /// on the detached backbone features of every step's full-size views; its top-1 on the
    /// held-out images is logged at the end of every epoch.
    pub linear: bool,
    /// Its learning rate (SGD, momentum 0.9, no weight decay, cosine to 0 over the run):
    /// solo-learn's `optimizer.classifier_lr` in its CIFAR configs.
    pub linear_lr: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            every: 50,
            holdout: 256,
            std_threshold: 0.1,
            rank_threshold: 0.01,
            stop_on_collapse: false,
            knn_every: 1,
            knn_bank: 2000,
            knn_k: 20,
            knn_temperature: 0.1,
            linear: true,
            linear_lr: 0.1,
        }
    }
}
