//! The losses: SimCLR's contrastive family over the projections of two (or more) views, and
//! the losses of the other methods (`crate::method`).
//!
//! The two main contrastive losses are one computation — cross-entropy of each anchor's softmax over cosine
//! similarities (self excluded) against a target distribution over the other embeddings — with
//! different targets: NT-Xent's target is the anchor's twin view ([`nt_xent`]), SupCon's is
//! every other embedding of the same class ([`supcon`]). [`contrastive`] holds the shared part.
//! Two NT-Xent variants change the denominator instead: [`dcl`] (the positive taken out, and
//! its weighted form) and [`debiased`] (false negatives' expected share subtracted, hard
//! negatives weighted up).
//!
//! The other methods' losses: [`info_nce`] (MoCo v2 against a queue, MoCo v3 against the batch's
//! keys), [`cosine`] (BYOL's and SimSiam's prediction-to-target cosine), [`barlow_twins`]
//! (cross-correlation to the identity), [`vicreg`] (invariance, variance, covariance) and
//! [`dino`] (centred, sharpened teacher distributions); NNCLR uses [`nt_xent`] with its
//! neighbours as the anchors.

pub mod barlow_twins;
pub mod contrastive;
pub mod cosine;
pub mod dcl;
pub mod debiased;
pub mod dino;
pub mod info_nce;
pub mod nt_xent;
pub mod supcon;
pub mod vicreg;

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
    /// Decoupled contrastive loss (Yeh et al. 2022): the positive out of the denominator.
    Dcl,
    /// DCL with the positive weighted by `loss.dclw_sigma` (Yeh et al. 2022).
    Dclw,
    /// Debiased (Chuang et al. 2020, `loss.tau_plus`) with hard-negative weighting (Robinson
    /// et al. 2021, `loss.beta`).
    Debiased,
}

/// The `[loss]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    pub kind: LossKind,
    /// Softmax temperature, `> 0`.
    pub temperature: f64,
    /// `debiased`: the class prior τ⁺ in `[0, 1)` (the share of same-class "negatives").
    pub tau_plus: f64,
    /// `debiased`: the hard-negative concentration β `≥ 0` (0: no reweighting).
    pub beta: f64,
    /// `dclw`: the width σ `> 0` of the positive pairs' weighting.
    pub dclw_sigma: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { kind: LossKind::Ntxent, temperature: 0.5, tau_plus: 0.1, beta: 0.0, dclw_sigma: 0.5 }
    }
}
