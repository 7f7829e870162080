//! The augmentation configuration: one serde/TOML struct holding every operation's parameters,
//! the `cifar` and `imagenet` presets, and validation with errors that name the key.

use serde::{Deserialize, Serialize};

use crate::blur::BlurConfig;
use crate::color_jitter::ColorJitterConfig;
use crate::crop::CropConfig;
use crate::flip::FlipConfig;
use crate::grayscale::GrayscaleConfig;
use crate::noise::NoiseConfig;
use crate::normalize::NormalizeConfig;
use crate::solarize::SolarizeConfig;

/// A rejected configuration value: which key, what it was, and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid config: {key} = {value}: {allowed}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub allowed: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, value: impl std::fmt::Debug, allowed: impl Into<String>) -> Self {
        Self { key: key.into(), value: format!("{value:?}"), allowed: allowed.into() }
    }
}

/// The named starting points of a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 32 px views, blur off (as lightly and google-research's SimCLR do for CIFAR), CIFAR-10
    /// normalization.
    Cifar,
    /// 224 px views, blur on (p = 0.5, kernel 10 % of the side), ImageNet normalization.
    Imagenet,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cifar" => Ok(Self::Cifar),
            "imagenet" => Ok(Self::Imagenet),
            other => Err(format!("unknown augmentation preset {other:?} (expected \"cifar\" or \"imagenet\")")),
        }
    }
}

/// Every parameter of the two-view augmentation, applied in this order: crop (resized to
/// `size`), flip, colour jitter, grayscale, blur, solarize, noise, normalize.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Side of the square output views, in pixels.
    pub size: u32,
    pub crop: CropConfig,
    pub flip: FlipConfig,
    pub color_jitter: ColorJitterConfig,
    pub grayscale: GrayscaleConfig,
    pub blur: BlurConfig,
    pub solarize: SolarizeConfig,
    pub noise: NoiseConfig,
    pub normalize: NormalizeConfig,
    /// Evaluation view: centred square crop of this fraction of the shorter side, resized to
    /// `size` (1.0 for CIFAR-sized images; 0.875 is torchvision's 224-of-256).
    pub eval_crop: f64,
    /// Train the early epochs at a lower resolution (see [`SizeSchedule`]); none: always `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_schedule: Option<SizeSchedule>,
    /// Full-size views per image (SimCLR's 2; more make the loss's multi-positive form).
    #[serde(default = "two")]
    pub views: u32,
    /// Multi-crop (SwAV, Caron et al. 2020): this many extra low-resolution views per image,
    /// cropped and resized as [`SmallViews`] says, with every other operation as for the full
    /// views. 0: none.
    #[serde(default)]
    pub small_views: u32,
    /// The small views' size and crop range.
    #[serde(default)]
    pub small: SmallViews,
}

fn two() -> u32 {
    2
}

/// The low-resolution views of multi-crop: side `size` pixels, crops of `scale` (a fraction of
/// the image area, SwAV's 0.05–0.14 by default: small parts of the image, where the full views
/// take 0.08–1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallViews {
    pub size: u32,
    pub scale: [f64; 2],
}

impl Default for SmallViews {
    fn default() -> Self {
        Self { size: 16, scale: [0.05, 0.14] }
    }
}

/// A resolution schedule (FFCV-SSL, Bordes et al. 2023): views of `min_size` pixels before epoch
/// `ramp_start`, then a linear ramp (rounded to a multiple of 4 pixels) to the configuration's
/// `size`, reached at epoch `ramp_end` and kept after it. Evaluation always uses `size`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeSchedule {
    pub min_size: u32,
    pub ramp_start: RunPoint,
    pub ramp_end: RunPoint,
}

/// A point of the run: an integer is an epoch (0-based), a number with a fraction point
/// (`0.5`) a fraction of the run's epochs, so a recipe scales with `train.epochs` alone.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunPoint {
    Epoch(u64),
    Fraction(f64),
}

impl RunPoint {
    /// The epoch this point is in a run of `epochs` epochs: a fraction `f` is epoch
    /// ⌊f · epochs⌋ (a hair of tolerance, so that 0.82 of 100 is 82 despite binary rounding).
    pub fn epoch(self, epochs: u64) -> u64 {
        match self {
            RunPoint::Epoch(e) => e,
            RunPoint::Fraction(f) => (f * epochs as f64 + 1e-9).floor().max(0.0) as u64,
        }
    }
}

impl std::fmt::Display for RunPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunPoint::Epoch(e) => write!(f, "{e}"),
            RunPoint::Fraction(x) => write!(f, "{x:?}"),
        }
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::preset(Preset::Cifar)
    }
}

impl AugmentConfig {
    /// The SimCLR augmentation at the preset's resolution.
    pub fn preset(preset: Preset) -> Self {
        // Small views (multi-crop): SwAV's 96 px beside 224; half the side at CIFAR's 32.
        let (size, small_size, blur_p, normalize, eval_crop) = match preset {
            Preset::Cifar => (32, 16, 0.0, NormalizeConfig::cifar10(), 1.0),
            Preset::Imagenet => (224, 96, 0.5, NormalizeConfig::imagenet(), 0.875),
        };
        Self {
            size,
            crop: CropConfig::default(),
            flip: FlipConfig { p: 0.5 },
            color_jitter: ColorJitterConfig { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 },
            grayscale: GrayscaleConfig { p: 0.2 },
            blur: BlurConfig { p: blur_p, sigma: [0.1, 2.0], kernel_fraction: 0.1 },
            solarize: SolarizeConfig { p: 0.0, threshold: 0.5 },
            noise: NoiseConfig { p: 0.0, std: 0.05 },
            normalize,
            eval_crop,
            size_schedule: None,
            views: 2,
            small_views: 0,
            small: SmallViews { size: small_size, scale: [0.05, 0.14] },
        }
    }

    /// The configuration of the small views (multi-crop), when there are any: this one at the
    /// small views' size and crop range, with no resolution schedule.
    pub fn small_view_config(&self) -> Option<AugmentConfig> {
        (self.small_views > 0).then(|| AugmentConfig {
            size: self.small.size,
            crop: CropConfig { scale: self.small.scale, ..self.crop.clone() },
            size_schedule: None,
            small_views: 0,
            ..self.clone()
        })
    }

    /// The side of the training views in epoch `epoch` (0-based) of a run of `epochs` epochs.
    pub fn size_at(&self, epoch: u64, epochs: u64) -> u32 {
        let Some(s) = &self.size_schedule else { return self.size };
        let (start, end) = (s.ramp_start.epoch(epochs), s.ramp_end.epoch(epochs));
        if epoch < start {
            s.min_size
        } else if epoch >= end {
            self.size
        } else {
            let f = (epoch - start) as f64 / (end - start) as f64;
            let v = f64::from(s.min_size) + f * f64::from(self.size - s.min_size);
            (((v / 4.0).round() * 4.0) as u32).clamp(s.min_size, self.size)
        }
    }

    /// Checks every value; keys in errors are prefixed with `prefix` (e.g. `"augment."`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}{k}");
        let prob = |k: &str, p: f64| {
            if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(ConfigError::new(key(k), p, "a probability in [0, 1]")) }
        };
        if !(1..=4096).contains(&self.size) {
            return Err(ConfigError::new(key("size"), self.size, "an integer in [1, 4096]"));
        }
        if let Some(s) = &self.size_schedule {
            if !(1..=self.size).contains(&s.min_size) {
                return Err(ConfigError::new(key("size_schedule.min_size"), s.min_size, "an integer in [1, size]"));
            }
            for (k, p) in [("size_schedule.ramp_start", s.ramp_start), ("size_schedule.ramp_end", s.ramp_end)] {
                if let RunPoint::Fraction(f) = p
                    && !(0.0..=1.0).contains(&f)
                {
                    return Err(ConfigError::new(
                        key(k),
                        f,
                        "an epoch (an integer) or a fraction of the run in [0, 1] (e.g. 0.5)",
                    ));
                }
            }
        }
        let scale = |k: &str, [s0, s1]: [f64; 2]| {
            if s0 > 0.0 && s0 <= s1 && s1 <= 1.0 {
                Ok(())
            } else {
                Err(ConfigError::new(key(k), [s0, s1], "[min, max] with 0 < min <= max <= 1"))
            }
        };
        scale("crop.scale", self.crop.scale)?;
        if !(1..=64).contains(&self.views) {
            return Err(ConfigError::new(key("views"), self.views, "an integer in [1, 64]"));
        }
        if self.small_views > 64 {
            return Err(ConfigError::new(key("small_views"), self.small_views, "an integer in [0, 64]"));
        }
        if self.views + self.small_views < 2 {
            return Err(ConfigError::new(
                key("views"),
                self.views,
                "at least 2 views per image in all (views + small_views), or the loss has no positive pair",
            ));
        }
        // Checked even without small views: a written configuration must read back the same.
        scale("small.scale", self.small.scale)?;
        let max_small = if self.small_views > 0 { self.size } else { 4096 };
        if !(1..=max_small).contains(&self.small.size) {
            return Err(ConfigError::new(key("small.size"), self.small.size, "an integer in [1, size]"));
        }
        let [r0, r1] = self.crop.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(ConfigError::new(key("crop.ratio"), self.crop.ratio, "[min, max] with 0 < min <= max"));
        }
        prob("flip.p", self.flip.p)?;
        let cj = &self.color_jitter;
        prob("color_jitter.p", cj.p)?;
        for (k, v) in [("brightness", cj.brightness), ("contrast", cj.contrast), ("saturation", cj.saturation)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(ConfigError::new(key(&format!("color_jitter.{k}")), v, "a strength >= 0"));
            }
        }
        if !(0.0..=0.5).contains(&cj.hue) {
            return Err(ConfigError::new(key("color_jitter.hue"), cj.hue, "a hue shift in [0, 0.5] turns"));
        }
        prob("grayscale.p", self.grayscale.p)?;
        prob("blur.p", self.blur.p)?;
        let [g0, g1] = self.blur.sigma;
        if !(g0 > 0.0 && g0 <= g1 && g1.is_finite()) {
            return Err(ConfigError::new(key("blur.sigma"), self.blur.sigma, "[min, max] with 0 < min <= max"));
        }
        if !(self.blur.kernel_fraction > 0.0 && self.blur.kernel_fraction <= 1.0) {
            return Err(ConfigError::new(
                key("blur.kernel_fraction"),
                self.blur.kernel_fraction,
                "a fraction in (0, 1]",
            ));
        }
        prob("solarize.p", self.solarize.p)?;
        if !(0.0..=1.0).contains(&self.solarize.threshold) {
            return Err(ConfigError::new(key("solarize.threshold"), self.solarize.threshold, "a threshold in [0, 1]"));
        }
        prob("noise.p", self.noise.p)?;
        if !(self.noise.std >= 0.0 && self.noise.std.is_finite()) {
            return Err(ConfigError::new(key("noise.std"), self.noise.std, "a standard deviation >= 0"));
        }
        if !(self.eval_crop > 0.0 && self.eval_crop <= 1.0) {
            return Err(ConfigError::new(key("eval_crop"), self.eval_crop, "a fraction in (0, 1]"));
        }
        if self.normalize.std.iter().any(|&s| !(s > 0.0 && s.is_finite()))
            || self.normalize.mean.iter().any(|m| !m.is_finite())
        {
            return Err(ConfigError::new(key("normalize"), &self.normalize, "finite means and stds > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn size_schedule_holds_then_ramps_linearly_in_multiples_of_four() {
        let mut c = AugmentConfig::preset(Preset::Cifar);
        use RunPoint::{Epoch, Fraction};
        assert_eq!((0..5).map(|e| c.size_at(e, 9)).collect::<Vec<_>>(), vec![32; 5]);
        c.size_schedule = Some(SizeSchedule { min_size: 16, ramp_start: Epoch(2), ramp_end: Epoch(6) });
        // 16 + (e − 2)/4 · 16: 16, 20, 24, 28, then 32.
        let ramp = vec![16, 16, 16, 20, 24, 28, 32, 32, 32];
        assert_eq!((0..9).map(|e| c.size_at(e, 9)).collect::<Vec<_>>(), ramp);
        // The same ramp as fractions of 9 epochs (⌊0.25 · 9⌋ = 2, ⌊0.7 · 9⌋ = 6), and scaled to 18.
        c.size_schedule = Some(SizeSchedule { min_size: 16, ramp_start: Fraction(0.25), ramp_end: Fraction(0.7) });
        assert_eq!((0..9).map(|e| c.size_at(e, 9)).collect::<Vec<_>>(), ramp);
        let doubled: Vec<u32> = (0..18).map(|e| c.size_at(e, 18)).collect();
        assert_eq!((doubled[3], doubled[4], doubled[10], doubled[12]), (16, 16, 28, 32), "{doubled:?}");
        assert_eq!(Fraction(0.82).epoch(100), 82, "binary rounding of 0.82 · 100 does not lose the epoch");
        c.size_schedule = Some(SizeSchedule { min_size: 16, ramp_start: Epoch(3), ramp_end: Epoch(3) });
        assert_eq!((2..5).map(|e| c.size_at(e, 9)).collect::<Vec<_>>(), vec![16, 32, 32], "a step at ramp_start");
        c.size_schedule = Some(SizeSchedule { min_size: 40, ramp_start: Epoch(0), ramp_end: Epoch(1) });
        assert!(c.validate("augment.").unwrap_err().to_string().contains("augment.size_schedule.min_size"));
        c.size_schedule = Some(SizeSchedule { min_size: 16, ramp_start: Fraction(1.5), ramp_end: Epoch(1) });
        let e = c.validate("augment.").unwrap_err().to_string();
        assert!(e.contains("augment.size_schedule.ramp_start") && e.contains("1.5") && e.contains("fraction"), "{e}");
    }
    use super::*;

    #[test]
    fn presets_are_valid_and_differ_where_documented() {
        let c = AugmentConfig::preset(Preset::Cifar);
        let i = AugmentConfig::preset(Preset::Imagenet);
        c.validate("augment.").unwrap();
        i.validate("augment.").unwrap();
        assert_eq!((c.size, c.blur.p), (32, 0.0));
        assert_eq!((i.size, i.blur.p), (224, 0.5));
    }

    #[test]
    fn bad_values_are_rejected_naming_the_key() {
        let mut c = AugmentConfig::default();
        c.crop.scale = [0.0, 1.0];
        let e = c.validate("augment.").unwrap_err();
        assert_eq!(e.key, "augment.crop.scale");
        assert!(e.to_string().contains("0 < min <= max <= 1"), "{e}");

        let mut c = AugmentConfig::default();
        c.grayscale.p = 1.5;
        assert_eq!(c.validate("").unwrap_err().key, "grayscale.p");

        let mut c = AugmentConfig::default();
        c.color_jitter.hue = 0.7;
        assert_eq!(c.validate("").unwrap_err().key, "color_jitter.hue");
    }

    #[test]
    fn toml_round_trip_and_unknown_keys_rejected() {
        let c = AugmentConfig::preset(Preset::Imagenet);
        let text = toml::to_string(&c).unwrap();
        let back: AugmentConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let bad = text.replace("[flip]\np = 0.5", "[flip]\np = 0.5\nprobability = 1.0");
        let err = toml::from_str::<AugmentConfig>(&bad).unwrap_err().to_string();
        assert!(err.contains("probability"), "{err}");
    }
}
