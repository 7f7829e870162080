//! The run configuration: one TOML document with a section per concern (`[data]`,
//! `[augment]`, …), resolved from defaults, an optional file and `--set key=value` overrides.
//!
//! Resolution: start from the defaults; if `augment.preset` is given (file or `--set`), the
//! augmentation section starts from that preset instead; then every key the user wrote is laid
//! over it. Unknown keys are rejected with their full dotted name, and every value is checked
//! before any work starts; errors name the key and the allowed range.

use std::path::Path;

use anyhow::{Context, Result, bail};
use selfsup_augment::{AugmentConfig, Preset};
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
        let v: f64 = num.parse().ok()?;
        (v >= 0.0 && v.is_finite()).then(|| Self((v * mult as f64).round() as u64))
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
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { load_size: None, cache_limit: ByteSize(8 << 30), max_pixels: 178_956_970, limit: None }
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
}

impl Default for Config {
    fn default() -> Self {
        Self { seed: 0, data: DataConfig::default(), augment: AugmentConfig::preset(Preset::Cifar) }
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
        if let Some(s) = self.data.load_size
            && s == 0
        {
            bail!("invalid config: data.load_size = 0: must be at least 1 pixel");
        }
        if self.data.max_pixels == 0 {
            bail!("invalid config: data.max_pixels = 0: must be at least 1");
        }
        if self.data.limit == Some(0) {
            bail!("invalid config: data.limit = 0: must be at least 1 image");
        }
        Ok(())
    }

    /// The resolved configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
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
    }

    #[test]
    fn byte_sizes_parse_with_units_and_round_trip() {
        assert_eq!(ByteSize::parse("1048576"), Some(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("2GiB"), Some(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("1.5 gb"), Some(ByteSize(1_500_000_000)));
        assert_eq!(ByteSize::parse("12 parsecs"), None);
        let c = load("[data]\ncache_limit = \"512MiB\"\n", &[]).unwrap();
        assert_eq!(c.data.cache_limit, ByteSize(512 << 20));
        let back = Config::from_table(toml::from_str(&c.to_toml()).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
