//! Pretraining: the loop that turns a folder of images into a trained encoder.
//!
//! - [`run_dir`] — the run folder's layout, its lock, kept checkpoints, and the checks made before
//!   anything is written;
//! - [`resume`] — the checkpoint a run continues from and the configuration check;
//! - [`loader`] — epoch orders and two-view batches augmented on a worker thread ahead of the step;
//! - [`metrics`] — `metrics.jsonl`;
//! - [`tensorboard`] — the same lines as TensorBoard event files;
//! - [`progress`] — the progress bars;
//! - [`step`] — one forward / loss / backward / update;
//! - [`online_linear`] — the linear classifier that learns from each step's features;
//! - [`signals`] — SIGTERM / SIGINT / SIGUSR1: checkpoint and exit with a resumable status;
//! - [`pretrain`] — the loop itself (schedule, logging, checkpoints, resume, divergence).

pub mod loader;
pub mod metrics;
pub mod online_linear;
pub mod pretrain;
pub mod progress;
pub mod resume;
pub mod run_dir;
pub mod signals;
pub mod step;
pub mod tensorboard;

pub use pretrain::{PretrainOptions, PretrainSummary, pretrain};
