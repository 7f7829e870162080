//! Contrastive losses over the projections of two views.
//!
//! Both losses here are one computation — cross-entropy of each anchor's softmax over cosine
//! similarities (self excluded) against a target distribution over the other embeddings — with
//! different targets: NT-Xent's target is the anchor's twin view ([`nt_xent`]), SupCon's is
//! every other embedding of the same class ([`supcon`]). [`contrastive`] holds the shared part.

pub mod contrastive;
pub mod nt_xent;
pub mod supcon;

use serde::{Deserialize, Serialize};

pub use contrastive::LossOutput;

/// Which loss trains the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// SimCLR's normalized-temperature cross-entropy (unsupervised).
    Ntxent,
    /// Supervised contrastive loss (needs a labelled folder).
    Supcon,
}

/// The `[loss]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    pub kind: LossKind,
    /// Softmax temperature, `> 0`.
    pub temperature: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { kind: LossKind::Ntxent, temperature: 0.5 }
    }
}
