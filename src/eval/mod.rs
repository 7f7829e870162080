//! Measuring what an encoder learned, and whether it is collapsing.
//!
//! - [`load`] — a trained encoder from a run or checkpoint, or the random-init baseline;
//! - [`features`] — evaluation views through the backbone (or raw pixels, the other baseline);
//! - [`knn`] — weighted k-NN accuracy;
//! - [`probe`] with [`lbfgs`] — the linear probe;
//! - [`confusion`] — the probe's confusion matrix as CSV and PNG;
//! - [`collapse`] — embedding std, effective rank, alignment, uniformity;
//! - [`monitor`] — those statistics on a held-out batch while pretraining, online k-NN and the
//!   online linear classifier's accuracy; its `[monitor]` section in [`monitor_config`];
//! - [`record`] — results saved as JSON in the run folder.

pub mod collapse;
pub mod confusion;
pub mod features;
pub mod knn;
pub mod lbfgs;
pub mod load;
pub mod monitor;
pub mod monitor_config;
pub mod probe;
pub mod record;
pub mod retrieval;
