//! The run configuration: one TOML document with a section per concern (`[data]`,
//! `[augment]`, …), resolved from defaults, an optional file and `--set key=value` overrides.
//!
//! Resolution: start from the defaults; if `augment.preset` is given (file or `--set`), the
//! augmentation section starts from that preset instead; then every key the user wrote is laid
//! over it. Unknown keys are rejected with their full dotted name, and every value is checked
//! before any work starts; errors name the key and the allowed range.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use selfsup_augment::{AugmentConfig, Preset};

use crate::backend::BackendChoice;
use crate::eval::monitor_config::MonitorConfig;
use crate::loss::LossConfig;
use crate::method::{MethodConfig, MethodKind};
use crate::model::{Encoder, ModelConfig};
use crate::optim::OptimConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table, Value};

/// A byte count that TOML may write as an integer or as a string with a unit ("2GiB", "500MB").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"1234"`, `"64KiB"`, `"2 GiB"`, `"500MB"`, `"1.5GB"` (case-insensitive units).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
        let (num, unit) = (s[..split].trim(), s[split..].trim().to_ascii_lowercase());
        let mult: u64 = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return None,
        };
        let bytes = num.parse::<f64>().ok()? * mult as f64;
        // At most TOML's largest integer, so that a resolved configuration reads back.
        (bytes >= 0.0 && bytes < i64::MAX as f64).then(|| Self(bytes.round() as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(1 << 30) && self.0 > 0 {
            s.serialize_str(&format!("{}GiB", self.0 >> 30))
        } else if self.0.is_multiple_of(1 << 20) && self.0 > 0 {
            s.serialize_str(&format!("{}MiB", self.0 >> 20))
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(v) => Ok(Self(v)),
            Raw::Str(s) => Self::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("{s:?} is not a byte size (e.g. 8GiB, 500MB, 1048576)"))
            }),
        }
    }
}

/// Where and how images are loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Shrink images at load so the shorter side is at most this (pixels); none keeps them whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_size: Option<u32>,
    /// Keep decoded pixels in memory up to this size; beyond it, decode on the fly.
    pub cache_limit: ByteSize,
    /// Refuse images with more pixels than this (decompression bombs).
    pub max_pixels: u64,
    /// Use only a stratified subset of this many images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// WebDataset shards: each epoch visits the shards in a seeded order and draws the samples
    /// through a shuffle buffer of this many (as the `webdataset` package does; 1 = shard order).
    /// It holds indices, not pixels: a larger buffer costs no memory, only read locality.
    pub shuffle_buffer: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            load_size: None,
            cache_limit: ByteSize(8 << 30),
            max_pixels: 178_956_970,
            limit: None,
            shuffle_buffer: 5000,
        }
    }
}

/// The `[train]` section: the loop around the steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: u64,
    /// Images per step (each gives `augment.views + augment.small_views` views, two by default).
    pub batch_size: usize,
    /// Default backend when `--backend` is not given.
    pub backend: BackendChoice,
    /// Write a metrics.jsonl line every this many steps.
    pub log_every: u64,
    /// Write the checkpoint every this many epochs (and always at the end).
    pub checkpoint_every: u64,
    /// Also write it every this many optimizer steps (0: only by epochs and minutes).
    pub checkpoint_every_steps: u64,
    /// Also write it when this many minutes have passed since the last one (0: off).
    pub checkpoint_every_minutes: f64,
    /// Keep the last this many checkpoints in `checkpoints/` (1: only `checkpoint.safetensors`).
    pub keep_checkpoints: usize,
    /// Batches augmented ahead of the one being trained on.
    pub prefetch: usize,
    /// Gradient caching: forward and backward the batch in micro-batches of at most this many
    /// images per process, with the exact gradient of the whole batch's loss (0: off). Memory
    /// is that of one micro-batch; batch norm normalizes each micro-batch by its own statistics.
    #[serde(default)]
    pub micro_batch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 256,
            backend: BackendChoice::Auto,
            log_every: 10,
            checkpoint_every: 1,
            checkpoint_every_steps: 0,
            checkpoint_every_minutes: 0.0,
            keep_checkpoints: 1,
            prefetch: 2,
            micro_batch: 0,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed of every random choice (augmentation, initialization, shuffling, subsets).
    pub seed: u64,
    pub data: DataConfig,
    pub augment: AugmentConfig,
    pub model: ModelConfig,
    /// The self-supervised method (default SimCLR, whose loss is `[loss]`).
    #[serde(default)]
    pub method: MethodConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub monitor: MonitorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 0,
            data: DataConfig::default(),
            augment: AugmentConfig::preset(Preset::Cifar),
            model: ModelConfig::default(),
            method: MethodConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            monitor: MonitorConfig::default(),
        }
    }
}

/// Parses `--set` values: TOML literals (`0.5`, `true`, `[0.2, 1.0]`, `"x"`), else a bare string.
fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Sets `dotted.key` in `table`, creating tables on the way.
fn set_dotted(table: &mut Table, key: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).with_context(|| format!("--set {key}: empty key"))?;
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new()));
        t = entry.as_table_mut().with_context(|| format!("--set {key}: {p} is not a section"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Lays `over` onto `base`, recursing into tables.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `table` flattened to `dotted.key → value`.
fn flatten(prefix: &str, table: &Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(t) => flatten(&key, t, out),
            v => {
                out.insert(key, v.to_string());
            }
        }
    }
}

/// The keys whose values differ between two configurations (TOML texts), with both values
/// (`"(unset)"` where a side lacks the key), in key order.
pub fn differences(a: &str, b: &str) -> Vec<(String, String, String)> {
    let parse = |s: &str| {
        let mut m = BTreeMap::new();
        flatten("", &toml::from_str::<Table>(s).unwrap_or_default(), &mut m);
        m
    };
    let (a, b) = (parse(a), parse(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let value = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_else(|| "(unset)".into());
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| (k.clone(), value(&a, k), value(&b, k))).collect()
}

impl Config {
    /// Resolves defaults, then `file` (if any), then `sets` (`key=value` strings).
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut user = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str::<Table>(&text).map_err(|e| {
                    anyhow::anyhow!("config {}: {}", p.display(), e.to_string().trim().replace('\n', " "))
                })?
            }
            None => Table::new(),
        };
        for s in sets {
            let (k, v) = s.split_once('=').with_context(|| format!("--set {s:?}: expected key=value"))?;
            set_dotted(&mut user, k.trim(), parse_value(v.trim()))?;
        }
        Self::from_table(user)
    }

    /// Resolves a user table over the defaults (see the module documentation).
    pub fn from_table(mut user: Table) -> Result<Self> {
        let mut base = Value::try_from(Config::default())?.as_table().cloned().expect("config serializes to a table");
        // The method section starts from its kind's preset and refuses other kinds' keys.
        let method = match user.remove("method") {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(v) => bail!("invalid config: method = {v}: expected a section ([method])"),
        };
        base.insert("method".into(), Value::Table(MethodConfig::resolve_table(method.as_ref())?));
        if let Some(Value::Table(aug)) = user.get_mut("augment")
            && let Some(p) = aug.remove("preset")
        {
            let name = p.as_str().map(str::to_string).unwrap_or_else(|| p.to_string());
            let preset: Preset =
                name.parse().map_err(|e: String| anyhow::anyhow!("invalid config: augment.preset = {p}: {e}"))?;
            base.insert("augment".into(), Value::try_from(AugmentConfig::preset(preset))?);
        }
        merge(&mut base, user);
        let cfg: Config = serde_path_to_error::deserialize(Value::Table(base)).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("invalid config: {}: {}", path, e.into_inner().to_string().trim())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value, naming the key and the allowed range on failure.
    pub fn validate(&self) -> Result<()> {
        self.augment.validate("augment.")?;
        self.method.validate()?;
        if let Some(s) = self.data.load_size
            && s == 0
        {
            bail!("invalid config: data.load_size = 0: must be at least 1 pixel");
        }
        if self.data.max_pixels == 0 {
            bail!("invalid config: data.max_pixels = 0: must be at least 1");
        }
        if self.data.shuffle_buffer == 0 {
            bail!("invalid config: data.shuffle_buffer = 0: must be at least 1 (1 reads each shard in order)");
        }
        if self.data.limit == Some(0) {
            bail!("invalid config: data.limit = 0: must be at least 1 image");
        }
        let bad = |key: &str, value: &dyn std::fmt::Display, allowed: &str| -> Result<()> {
            bail!("invalid config: {key} = {value}: {allowed}")
        };
        let (m, l, o, t) = (&self.model, &self.loss, &self.optim, &self.train);
        if m.head.layers == 0 {
            bad("model.head.layers", &m.head.layers, "at least 1 linear layer")?;
        }
        if m.head.out_dim == 0 {
            bad("model.head.out_dim", &m.head.out_dim, "at least 1")?;
        }
        if !(l.temperature > 0.0 && l.temperature.is_finite()) {
            bad("loss.temperature", &l.temperature, "must be > 0 (typical: 0.1 to 0.5)")?;
        }
        if !(0.0..1.0).contains(&l.tau_plus) {
            bad("loss.tau_plus", &l.tau_plus, "must be in [0, 1) (the class prior; 0.1 for 10 balanced classes)")?;
        }
        if !(l.beta >= 0.0 && l.beta.is_finite()) {
            bad("loss.beta", &l.beta, "must be >= 0 (0: no hard-negative weighting)")?;
        }
        if !(l.dclw_sigma > 0.0 && l.dclw_sigma.is_finite()) {
            bad("loss.dclw_sigma", &l.dclw_sigma, "must be > 0 (the paper uses 0.5)")?;
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            bad("optim.lr", &o.lr, "must be > 0")?;
        }
        if !(0.0..1.0).contains(&o.momentum) {
            bad("optim.momentum", &o.momentum, "must be in [0, 1)")?;
        }
        if !(o.weight_decay >= 0.0 && o.weight_decay.is_finite()) {
            bad("optim.weight_decay", &o.weight_decay, "must be >= 0")?;
        }
        if !(o.trust_coefficient > 0.0 && o.trust_coefficient.is_finite()) {
            bad("optim.trust_coefficient", &o.trust_coefficient, "must be > 0")?;
        }
        if !o.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            bad("optim.betas", &format!("{:?}", o.betas), "both must be in [0, 1)")?;
        }
        if !(o.eps > 0.0 && o.eps.is_finite()) {
            bad("optim.eps", &o.eps, "must be > 0")?;
        }
        if !(o.warmup_epochs >= 0.0 && o.warmup_epochs.is_finite()) {
            bad("optim.warmup_epochs", &o.warmup_epochs, "must be >= 0")?;
        }
        if !(0.0..=1.0).contains(&o.min_lr_ratio) {
            bad("optim.min_lr_ratio", &o.min_lr_ratio, "must be in [0, 1]")?;
        }
        if t.epochs == 0 {
            bad("train.epochs", &t.epochs, "at least 1")?;
        }
        if let Some(sched) = &self.augment.size_schedule {
            let (start, end) = (sched.ramp_start.epoch(t.epochs), sched.ramp_end.epoch(t.epochs));
            if start > end {
                bad(
                    "augment.size_schedule.ramp_end",
                    &sched.ramp_end,
                    &format!("must not come before ramp_start ({}): epoch {end} < {start}", sched.ramp_start),
                )?;
            }
            if end >= t.epochs {
                // A run shortened without its schedule would never train at augment.size, the
                // size it is evaluated at.
                bad(
                    "augment.size_schedule.ramp_end",
                    &sched.ramp_end,
                    &format!(
                        "must be below train.epochs ({}) so that the last epochs train at augment.size; scale ramp_start and ramp_end with the epochs, or give them as fractions of the run (e.g. ramp_start = 0.5, ramp_end = 0.85)",
                        t.epochs
                    ),
                )?;
            }
        }
        if t.batch_size < 2 {
            bad("train.batch_size", &t.batch_size, "at least 2 (the loss contrasts images within a batch)")?;
        }
        if t.log_every == 0 {
            bad("train.log_every", &t.log_every, "at least 1 step")?;
        }
        if t.checkpoint_every == 0 {
            bad("train.checkpoint_every", &t.checkpoint_every, "at least 1 epoch")?;
        }
        if !(t.checkpoint_every_minutes >= 0.0 && t.checkpoint_every_minutes.is_finite()) {
            bad("train.checkpoint_every_minutes", &t.checkpoint_every_minutes, "must be >= 0 (0: off)")?;
        }
        if t.keep_checkpoints == 0 {
            bad("train.keep_checkpoints", &t.keep_checkpoints, "at least 1 (the latest)")?;
        }
        if t.prefetch == 0 {
            bad("train.prefetch", &t.prefetch, "at least 1 batch")?;
        }
        if t.micro_batch == 1 {
            bad("train.micro_batch", &t.micro_batch, "0 (off) or at least 2 images (batch norm needs several)")?;
        }
        let views = (self.augment.views, self.augment.small_views);
        let kind = self.method.kind;
        if kind != MethodKind::Simclr && self.loss.kind != crate::loss::LossKind::Ntxent {
            bad(
                "loss.kind",
                &format!("\"{}\"", format!("{:?}", self.loss.kind).to_lowercase()),
                &format!(
                    "is SimCLR's; method.kind = \"{}\" has its own loss (leave loss.kind at \"ntxent\")",
                    kind.name()
                ),
            )?;
        }
        if kind == MethodKind::Moco && self.method.shuffle_bn_splits > 1 && m.sync_batch_norm {
            bad(
                "method.shuffle_bn_splits",
                &self.method.shuffle_bn_splits,
                "1 with model.sync_batch_norm = true (shuffling batch norm splits what synchronized batch norm makes global: choose one)",
            )?;
        }
        if kind == MethodKind::Dino && views.0 != 2 {
            bad(
                "augment.views",
                &views.0,
                "2 for method.kind = \"dino\" (its two global views; more views are augment.small_views)",
            )?;
        }
        if !matches!(kind, MethodKind::Simclr | MethodKind::Dino) && views != (2, 0) {
            bad(
                "augment.views",
                &format!("{} (augment.small_views = {})", views.0, views.1),
                &format!(
                    "method.kind = \"{}\" is defined for two views: augment.views = 2, augment.small_views = 0 (multi-crop: simclr or dino)",
                    kind.name()
                ),
            )?;
        }
        if kind == MethodKind::Simclr
            && views != (2, 0)
            && !matches!(self.loss.kind, crate::loss::LossKind::Ntxent | crate::loss::LossKind::Supcon)
        {
            bad(
                "loss.kind",
                &format!("\"{}\"", format!("{:?}", self.loss.kind).to_lowercase()),
                &format!(
                    "\"ntxent\" or \"supcon\" with augment.views = {} and augment.small_views = {} (their multi-positive form); the other losses are defined for two views",
                    views.0, views.1
                ),
            )?;
        }
        let mo = &self.monitor;
        if !(mo.std_threshold >= 0.0 && mo.std_threshold.is_finite()) {
            bad("monitor.std_threshold", &mo.std_threshold, "must be >= 0 (fraction of 1/√d)")?;
        }
        if !(0.0..=1.0).contains(&mo.rank_threshold) {
            bad("monitor.rank_threshold", &mo.rank_threshold, "must be in [0, 1] (fraction of the dimension)")?;
        }
        if mo.knn_k == 0 {
            bad("monitor.knn_k", &mo.knn_k, "at least 1 neighbour")?;
        }
        if !(mo.knn_temperature > 0.0 && mo.knn_temperature.is_finite()) {
            bad("monitor.knn_temperature", &mo.knn_temperature, "must be > 0")?;
        }
        if !(mo.linear_lr > 0.0 && mo.linear_lr.is_finite()) {
            bad("monitor.linear_lr", &mo.linear_lr, "must be > 0")?;
        }
        Ok(())
    }

    /// The resolved configuration as TOML text (the method section with its kind's keys only).
    pub fn to_toml(&self) -> String {
        let mut t = Value::try_from(self).expect("config serializes").as_table().cloned().expect("a table");
        t.insert("method".into(), Value::Table(self.method.to_table()));
        toml::to_string_pretty(&t).expect("config serializes")
    }

    /// A freshly initialized encoder for this configuration: the model, with what the method
    /// adds to it (a predictor, DINO's prototypes).
    pub fn encoder(&self, device: &burn::tensor::Device) -> Encoder {
        self.model.init_with(&self.method.extras(), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, sets: &[&str]) -> Result<Config> {
        let user: Table = toml::from_str(text)?;
        let mut user = user;
        for s in sets {
            let (k, v) = s.split_once('=').unwrap();
            set_dotted(&mut user, k, parse_value(v))?;
        }
        Config::from_table(user)
    }

    /// Every configuration shipped in `configs/` loads and validates (a user's first command).
    #[test]
    fn every_shipped_configuration_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} configurations in {}", dir.display());
    }

    #[test]
    fn a_size_schedule_in_fractions_scales_with_the_epochs() {
        let sched = "augment.size_schedule={ min_size = 16, ramp_start = 0.5, ramp_end = 0.855 }";
        for (epochs, start, end) in [(96, 48, 82), (57, 28, 48), (1, 0, 0), (2, 1, 1)] {
            let c = load("", &[sched, &format!("train.epochs={epochs}")]).unwrap();
            let s = c.augment.size_schedule.as_ref().unwrap();
            assert_eq!((s.ramp_start.epoch(epochs), s.ramp_end.epoch(epochs)), (start, end), "{epochs} epochs");
        }
        let e = load("", &["augment.size_schedule={ min_size = 16, ramp_start = 0.5, ramp_end = 1.0 }"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("augment.size_schedule.ramp_end = 1.0") && e.contains("must be below train.epochs"), "{e}");
        let e = load("", &["augment.size_schedule={ min_size = 16, ramp_start = 0.6, ramp_end = 0.4 }"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must not come before ramp_start (0.6)"), "{e}");
        // The shipped CPU recipe is in fractions and resolves to its measured epochs 48 → 82 of 96.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cifar10-convnet-cpu.toml");
        let cpu = Config::load(Some(&path), &[]).unwrap();
        let s = cpu.augment.size_schedule.as_ref().unwrap();
        assert_eq!((cpu.train.epochs, s.ramp_start.epoch(96), s.ramp_end.epoch(96)), (96, 48, 82));
        assert!(Config::load(Some(&path), &["train.epochs=1".into()]).is_ok(), "one epoch of the recipe runs");
        // A resolved configuration reads back with the fractions it was given.
        let c = load("", &[sched, "train.epochs=20"]).unwrap();
        let text = c.to_toml();
        assert!(text.contains("ramp_start = 0.5") && text.contains("ramp_end = 0.855"), "{text}");
        assert_eq!(load(&text, &[]).unwrap(), c);
    }

    #[test]
    fn a_size_schedule_must_end_before_the_last_epoch() {
        let sched = "augment.size_schedule={ min_size = 16, ramp_start = 4, ramp_end = 8 }";
        assert!(load("", &[sched, "train.epochs=9"]).is_ok());
        for epochs in ["8", "5"] {
            let e = load("", &[sched, &format!("train.epochs={epochs}")]).unwrap_err().to_string();
            assert!(
                e.contains("augment.size_schedule.ramp_end = 8") && e.contains(&format!("train.epochs ({epochs})")),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_file_and_sets_layer_in_order() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, Config::default());
        let c = load("seed = 3\n[augment.flip]\np = 0.1\n", &["augment.flip.p=0.25", "data.limit=100"]).unwrap();
        assert_eq!((c.seed, c.augment.flip.p, c.data.limit), (3, 0.25, Some(100)));
        assert_eq!(c.augment.size, 32);
    }

    #[test]
    fn preset_is_the_base_and_explicit_keys_win() {
        let c = load("[augment]\npreset = \"imagenet\"\nsize = 96\n", &[]).unwrap();
        assert_eq!(c.augment.size, 96);
        assert_eq!(c.augment.blur.p, 0.5);
        let c = load("", &["augment.preset=imagenet"]).unwrap();
        assert_eq!(c.augment, AugmentConfig::preset(Preset::Imagenet));
        let e = load("[augment]\npreset = \"huge\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("augment.preset") && e.contains("huge"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = load("[augment.flip]\nprobability = 0.5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("augment.flip") && e.contains("probability"), "{e}");
        let e = load("bogus = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = load("", &["augment.crop.scale=[0.5, 1.5]"]).unwrap_err().to_string();
        assert!(e.contains("augment.crop.scale") && e.contains("0 < min <= max <= 1"), "{e}");
        let e = load("", &["augment.flip.p=\"often\""]).unwrap_err().to_string();
        assert!(e.contains("augment.flip.p"), "{e}");
        let e = load("[data]\ncache_limit = \"lots\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("data.cache_limit") && e.contains("lots"), "{e}");
        for (set, key) in [
            ("loss.temperature=0", "loss.temperature"),
            ("loss.temperature=-0.5", "loss.temperature"),
            ("train.batch_size=1", "train.batch_size"),
            ("optim.lr=0", "optim.lr"),
            ("optim.momentum=1.0", "optim.momentum"),
            ("model.head.layers=0", "model.head.layers"),
            ("model.arch=\"vgg\"", "model.arch"),
            ("optim.kind=\"adam\"", "optim.kind"),
        ] {
            let e = load("", &[set]).unwrap_err().to_string();
            assert!(e.contains(key), "{set}: {e}");
        }
    }

    #[test]
    fn byte_sizes_parse_with_units_and_round_trip() {
        assert_eq!(ByteSize::parse("1048576"), Some(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("2GiB"), Some(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("1.5 gb"), Some(ByteSize(1_500_000_000)));
        assert_eq!(ByteSize::parse("12 parsecs"), None);
        // Beyond what TOML can write back as an integer (found by the config fuzzing).
        assert_eq!(ByteSize::parse("1e19"), None);
        assert_eq!(ByteSize::parse("1e30GiB"), None);
        let c = load("[data]\ncache_limit = \"512MiB\"\n", &[]).unwrap();
        assert_eq!(c.data.cache_limit, ByteSize(512 << 20));
        let back = Config::from_table(toml::from_str(&c.to_toml()).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
