//! The self-supervised methods (`[method]`, `method.kind`): what a step does with the views'
//! embeddings beyond SimCLR's in-batch contrast. Each is a parameter of the one training step
//! (`crate::train::step`), not a loop of its own; what they add is written once and shared:
//!
//! - an EMA teacher ([`ema`]): `moco`, `mocov3`, `byol`, `dino`;
//! - a predictor head on the student's projections (`[method.predictor]`, built by
//!   `crate::model::Encoder`): `mocov3`, `byol`, `simsiam`, `nnclr`;
//! - a FIFO queue of embeddings ([`queue`]): `moco` (negatives), `nnclr` (support set);
//! - DINO's prototypes and centre (`crate::model::prototypes`, `crate::loss::dino`).
//!
//! [`objective`] turns the student's and teacher's rows of a step into each method's loss (the
//! formulas are in `crate::loss`), and [`state`] holds what a method keeps between steps — the
//! teacher, the queue, the centre — which goes into the checkpoint beside the weights.
//!
//! Selecting a kind starts the section from that kind's CIFAR-10 defaults ([`MethodConfig::preset`],
//! each value's source beside it), as `augment.preset` does for augmentations; keys that the
//! kind does not use are refused, naming the kinds that do.

pub mod ema;
pub mod objective;
pub mod queue;
pub mod state;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::model::{Extras, HeadConfig};

pub use state::MethodState;

/// The methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// SimCLR (Chen et al. 2020): in-batch negatives, the loss of `[loss]` (NT-Xent and its variants).
    #[default]
    Simclr,
    /// MoCo v2 (He et al. 2020; Chen et al. 2020): EMA key encoder, a queue of negative keys.
    Moco,
    /// MoCo v3 (Chen et al. 2021): EMA key encoder, a predictor, the batch's keys, symmetric.
    Mocov3,
    /// BYOL (Grill et al. 2020): a predictor against an EMA target, no negatives.
    Byol,
    /// SimSiam (Chen & He 2021): a predictor against the stop-gradient of the other view.
    Simsiam,
    /// Barlow Twins (Zbontar et al. 2021): the views' cross-correlation pulled to the identity.
    Barlowtwins,
    /// VICReg (Bardes et al. 2022): invariance, variance and covariance terms.
    Vicreg,
    /// NNCLR (Dwibedi et al. 2021): each view's positive is its nearest neighbour in a queue.
    Nnclr,
    /// DINO (Caron et al. 2021): self-distillation from an EMA teacher over prototypes.
    Dino,
}

impl MethodKind {
    pub const ALL: [MethodKind; 9] = [
        MethodKind::Simclr,
        MethodKind::Moco,
        MethodKind::Mocov3,
        MethodKind::Byol,
        MethodKind::Simsiam,
        MethodKind::Barlowtwins,
        MethodKind::Vicreg,
        MethodKind::Nnclr,
        MethodKind::Dino,
    ];

    /// The name in configurations.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// The `[method]` keys this kind reads (besides `kind`).
    pub fn keys(self) -> &'static [&'static str] {
        use MethodKind::*;
        match self {
            Simclr => &[],
            Moco => &["momentum", "momentum_schedule", "queue_size", "symmetric", "queue_update", "shuffle_bn_splits"],
            Mocov3 | Byol => &["momentum", "momentum_schedule", "predictor"],
            Simsiam => &["stop_gradient", "predictor"],
            Barlowtwins => &["lambda"],
            Vicreg => &["invariance", "variance", "covariance"],
            Nnclr => &["queue_size", "predictor"],
            Dino => &[
                "momentum",
                "momentum_schedule",
                "prototypes",
                "teacher_temperature",
                "warmup_teacher_temperature",
                "warmup_teacher_epochs",
                "student_temperature",
                "center_momentum",
                "freeze_last_layer_epochs",
            ],
        }
    }

    /// Whether the method trains against an EMA teacher.
    pub fn has_teacher(self) -> bool {
        matches!(self, MethodKind::Moco | MethodKind::Mocov3 | MethodKind::Byol | MethodKind::Dino)
    }

    /// Whether it keeps a queue of embeddings.
    pub fn has_queue(self) -> bool {
        matches!(self, MethodKind::Moco | MethodKind::Nnclr)
    }

    /// Whether its student has a predictor head.
    pub fn has_predictor(self) -> bool {
        self.keys().contains(&"predictor")
    }

    /// Whether each view is its own batch-norm batch, as the method's reference implementation
    /// encodes the two views in two passes (SimCLR's and DINO's encode the views of one
    /// resolution together).
    pub fn batch_norm_per_view(self) -> bool {
        !matches!(self, MethodKind::Simclr | MethodKind::Dino)
    }

    /// The network evaluation uses by default: DINO's teacher (as its paper evaluates), the
    /// student otherwise.
    pub fn default_weights(self) -> Weights {
        if self == MethodKind::Dino { Weights::Teacher } else { Weights::Student }
    }
}

impl std::str::FromStr for MethodKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        MethodKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!("unknown method; one of {}", MethodKind::ALL.map(|k| format!("\"{}\"", k.name())).join(", "))
        })
    }
}

/// Which network of a run is evaluated or exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    /// The online network the optimizer trains.
    Student,
    /// The EMA teacher (MoCo, MoCo v3, BYOL, DINO).
    Teacher,
}

impl Weights {
    pub fn name(self) -> &'static str {
        match self {
            Weights::Student => "student",
            Weights::Teacher => "teacher",
        }
    }
}

/// How the teacher's momentum moves over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MomentumSchedule {
    /// BYOL's: from `method.momentum` at the first step to 1 at the last, by a half cosine.
    #[default]
    Cosine,
    /// `method.momentum` throughout.
    Constant,
}

/// moco: when a step's keys enter the queue, as the symmetric loss's second term sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueUpdate {
    /// After the step: both terms' negatives are the queue as it was before the step (MoCo's
    /// paper and its code, solo-learn).
    #[default]
    AfterStep,
    /// Between the terms: the second term, `(q₂, k₁)`, sees the queue after the first term's keys
    /// `k₂` were pushed, the key of its own crop among them (lightly 1.6's `NTXentLoss` memory
    /// bank, which pushes at each call; worth +3.5 points of k-NN at 5 epochs, seed 0, in
    /// BENCHMARKS.md "Methods"). The queue ends the step the same either way.
    BetweenTerms,
}

/// The `[method]` section. Only the keys of the chosen kind are written to (and read from) a
/// configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub kind: MethodKind,
    /// The teacher's EMA momentum at the first step (moco, mocov3, byol, dino).
    pub momentum: f64,
    pub momentum_schedule: MomentumSchedule,
    /// Embeddings in the queue (moco: negative keys; nnclr: the support set).
    pub queue_size: usize,
    /// moco: the loss of both view orders (each view's query against the other's key).
    pub symmetric: bool,
    /// moco: whether the second term of the symmetric loss sees the first term's keys in the
    /// queue (`"between_terms"`, lightly's) or not (`"after_step"`, the paper's).
    pub queue_update: QueueUpdate,
    /// moco: shuffling batch norm — each rank's batch (each micro-batch) normalized in this many
    /// groups, the keys' after a shuffle (1: off; needs `model.sync_batch_norm = false`).
    pub shuffle_bn_splits: usize,
    /// simsiam: no gradient through the target branch; `false` is the ablation that collapses.
    pub stop_gradient: bool,
    /// barlowtwins: weight λ of the off-diagonal (redundancy) terms.
    pub lambda: f64,
    /// vicreg: weights of the invariance, variance and covariance terms.
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
    /// dino: number of prototypes (the last layer's outputs).
    pub prototypes: usize,
    /// dino: the teacher's softmax temperature after the warm-up.
    pub teacher_temperature: f64,
    /// dino: the teacher's temperature at the first epoch, rising linearly to
    /// `teacher_temperature` over `warmup_teacher_epochs` epochs.
    pub warmup_teacher_temperature: f64,
    pub warmup_teacher_epochs: u64,
    /// dino: the student's softmax temperature.
    pub student_temperature: f64,
    /// dino: momentum of the teacher outputs' centre.
    pub center_momentum: f64,
    /// dino: epochs at the start during which the prototypes are not trained.
    pub freeze_last_layer_epochs: u64,
    /// The predictor's shape (mocov3, byol, simsiam, nnclr); `out_dim = 0`: the projection's.
    pub predictor: HeadConfig,
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            kind: MethodKind::Simclr,
            momentum: 0.99,
            momentum_schedule: MomentumSchedule::Cosine,
            queue_size: 4096,
            symmetric: true,
            queue_update: QueueUpdate::AfterStep,
            shuffle_bn_splits: 8,
            stop_gradient: true,
            lambda: 5e-3,
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
            prototypes: 2048,
            teacher_temperature: 0.04,
            warmup_teacher_temperature: 0.04,
            warmup_teacher_epochs: 0,
            student_temperature: 0.1,
            center_momentum: 0.9,
            freeze_last_layer_epochs: 1,
            predictor: HeadConfig::mlp(4096, 0, 2),
        }
    }
}

impl MethodConfig {
    /// `kind` with its CIFAR-10 defaults. "lightly" is lightly's
    /// `docs/source/getting_started/benchmarks/cifar10_benchmark.py` (1.5–1.6), "solo-learn" its
    /// `scripts/pretrain/cifar/<method>.yaml`; the heads' shapes are in `configs/cifar10-<kind>.toml`.
    pub fn preset(kind: MethodKind) -> Self {
        let base = Self { kind, ..Self::default() };
        match kind {
            MethodKind::Simclr => base,
            MethodKind::Moco => Self {
                momentum: 0.99,   // lightly (update_momentum(…, 0.99)); solo-learn base_tau 0.99
                queue_size: 4096, // lightly (NTXentLoss(memory_bank_size=4096))
                symmetric: true,  // lightly ("We use a symmetric loss")
                ..base
            },
            MethodKind::Mocov3 => Self {
                momentum: 0.99,                         // solo-learn mocov3.yaml: base_tau_momentum 0.99
                predictor: HeadConfig::mlp(4096, 0, 2), // solo-learn: pred_hidden_dim 4096
                ..base
            },
            MethodKind::Byol => Self {
                momentum: 0.99,                         // lightly (0.99); solo-learn base_tau 0.99
                predictor: HeadConfig::mlp(1024, 0, 2), // lightly: BYOLPredictionHead(256, 1024, 256)
                ..base
            },
            MethodKind::Simsiam => Self {
                stop_gradient: true,                   // the method; false is the paper's ablation
                predictor: HeadConfig::mlp(512, 0, 2), // lightly: SimSiamPredictionHead(2048, 512, 2048)
                ..base
            },
            MethodKind::Barlowtwins => Self {
                lambda: 5e-3, // lightly (BarlowTwinsLoss default), the paper's 0.005
                ..base
            },
            MethodKind::Vicreg => Self {
                invariance: 25.0, // the paper's λ; lightly VICRegLoss and solo-learn vicreg.yaml
                variance: 25.0,   // μ
                covariance: 1.0,  // ν
                ..base
            },
            MethodKind::Nnclr => Self {
                queue_size: 4096,                       // lightly (NNMemoryBankModule(size=4096))
                predictor: HeadConfig::mlp(4096, 0, 2), // lightly: NNCLRPredictionHead(256, 4096, 256)
                ..base
            },
            MethodKind::Dino => Self {
                momentum: 0.99,                   // lightly (0.99, the CIFAR-10 script)
                prototypes: 2048,                 // lightly: DINOLoss(output_dim=2048)
                teacher_temperature: 0.04,        // lightly: DINOLoss defaults (0.04 throughout)
                warmup_teacher_temperature: 0.04, // lightly
                warmup_teacher_epochs: 0,         // lightly's warm-up from 0.04 to 0.04 is none
                student_temperature: 0.1,         // lightly, solo-learn
                center_momentum: 0.9,             // lightly, solo-learn
                freeze_last_layer_epochs: 1,      // solo-learn dino.yaml (lightly: never frozen)
                ..base
            },
        }
    }

    /// What the method adds to the encoder: its predictor, or DINO's prototypes.
    pub fn extras(&self) -> Extras {
        Extras {
            predictor: self.kind.has_predictor().then(|| self.predictor.clone()),
            prototypes: (self.kind == MethodKind::Dino).then_some(self.prototypes),
        }
    }

    /// The section as a table with only `kind` and the kind's own keys.
    pub fn to_table(&self) -> Table {
        let mut t = Value::try_from(self).expect("method section serializes").as_table().cloned().unwrap_or_default();
        let keep = self.kind.keys();
        t.retain(|k, _| k == "kind" || keep.contains(&k));
        t
    }

    /// The user's `[method]` table resolved: from the preset of its `kind` (default `simclr`),
    /// its keys laid over it. A key the kind does not read is refused, naming the kinds that do.
    pub fn resolve_table(user: Option<&Table>) -> Result<Table> {
        let kind = match user.and_then(|t| t.get("kind")) {
            None => MethodKind::Simclr,
            Some(v) => {
                let name = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                name.parse::<MethodKind>().map_err(|e| anyhow::anyhow!("invalid config: method.kind = {v}: {e}"))?
            }
        };
        let mut base = Self::preset(kind).to_table();
        for (k, v) in user.into_iter().flatten() {
            if k == "kind" {
                continue;
            }
            if !kind.keys().contains(&k.as_str()) {
                let users: Vec<String> =
                    MethodKind::ALL.iter().filter(|m| m.keys().contains(&k.as_str())).map(|m| m.name()).collect();
                if users.is_empty() {
                    bail!("invalid config: method.{k}: unknown key");
                }
                bail!(
                    "invalid config: method.{k} does not apply to method.kind = \"{}\" (it is read by {})",
                    kind.name(),
                    users.join(", ")
                );
            }
            match (base.get_mut(k), v) {
                (Some(Value::Table(b)), Value::Table(o)) => {
                    for (kk, vv) in o {
                        b.insert(kk.clone(), vv.clone());
                    }
                }
                _ => {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(base)
    }

    /// Checks the values of the kind's keys (names the key and the allowed range).
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: &dyn std::fmt::Display, allowed: &str| -> Result<()> {
            bail!("invalid config: method.{key} = {value}: {allowed}")
        };
        let k = self.kind;
        let uses = |key: &str| k.keys().contains(&key);
        if uses("momentum") && !(0.0..=1.0).contains(&self.momentum) {
            bad("momentum", &self.momentum, "must be in [0, 1] (0.99 to 0.999 are typical)")?;
        }
        if uses("queue_size") && self.queue_size == 0 {
            bad("queue_size", &self.queue_size, "at least 1 embedding")?;
        }
        if uses("queue_update") && self.queue_update == QueueUpdate::BetweenTerms && !self.symmetric {
            bad(
                "queue_update",
                &"\"between_terms\"",
                "needs method.symmetric = true (one term has no second term to see the first's keys)",
            )?;
        }
        if uses("shuffle_bn_splits") && self.shuffle_bn_splits == 0 {
            bad("shuffle_bn_splits", &self.shuffle_bn_splits, "at least 1 (1: off)")?;
        }
        if uses("lambda") && !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            bad("lambda", &self.lambda, "must be >= 0")?;
        }
        for (key, v) in [("invariance", self.invariance), ("variance", self.variance), ("covariance", self.covariance)]
        {
            if uses(key) && !(v >= 0.0 && v.is_finite()) {
                bad(key, &v, "must be >= 0")?;
            }
        }
        if uses("prototypes") && self.prototypes == 0 {
            bad("prototypes", &self.prototypes, "at least 1")?;
        }
        for (key, v) in [
            ("teacher_temperature", self.teacher_temperature),
            ("warmup_teacher_temperature", self.warmup_teacher_temperature),
            ("student_temperature", self.student_temperature),
        ] {
            if uses(key) && !(v > 0.0 && v.is_finite()) {
                bad(key, &v, "must be > 0")?;
            }
        }
        if uses("center_momentum") && !(0.0..1.0).contains(&self.center_momentum) {
            bad("center_momentum", &self.center_momentum, "must be in [0, 1)")?;
        }
        if uses("predictor") && self.predictor.layers == 0 {
            bad("predictor.layers", &self.predictor.layers, "at least 1 linear layer")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_round_trips_through_its_table() {
        for kind in MethodKind::ALL {
            let p = MethodConfig::preset(kind);
            p.validate().unwrap();
            let table = MethodConfig::resolve_table(Some(&p.to_table())).unwrap();
            let back: MethodConfig = Value::Table(table).try_into().unwrap();
            assert_eq!(back, p, "{kind:?}");
            assert_eq!(kind.name().parse::<MethodKind>().unwrap(), kind);
        }
    }

    #[test]
    fn keys_of_another_kind_are_refused_naming_the_kinds_that_read_them() {
        let t: Table = toml::from_str("kind = \"byol\"\nqueue_size = 10\n").unwrap();
        let e = MethodConfig::resolve_table(Some(&t)).unwrap_err().to_string();
        assert!(
            e.contains("method.queue_size does not apply to method.kind = \"byol\"") && e.contains("moco, nnclr"),
            "{e}"
        );
        let t: Table = toml::from_str("kind = \"swav\"\n").unwrap();
        let e = MethodConfig::resolve_table(Some(&t)).unwrap_err().to_string();
        assert!(e.contains("method.kind") && e.contains("\"dino\""), "{e}");
        let t: Table = toml::from_str("kind = \"moco\"\nqueue = 10\n").unwrap();
        assert!(MethodConfig::resolve_table(Some(&t)).unwrap_err().to_string().contains("method.queue: unknown key"));
    }
}
